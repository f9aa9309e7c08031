//! The error of the stores that keep what llxprt learns between runs (statistics, bucket
//! health): one type, classified by whether trying again can help.

/// Why statistics or bucket health could not be read or saved. The stored data is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistenceError {
    /// What is stored is not valid; it is left in place for the user to look at. Retrying
    /// cannot help.
    #[error("{place} is corrupt ({reason})")]
    Corrupt {
        /// What is corrupt, as the user finds it (`the statistics file /home/u/.llxprt/stats.json`).
        place: String,
        /// What is wrong.
        reason: String,
    },
    /// The store refused for good (permissions, a directory in the way, a full disk).
    /// Retrying cannot help until the user fixes it.
    #[error("could not access {place}: {message}")]
    Refused {
        /// The file or store involved.
        place: String,
        /// What the operating system or the store said.
        message: String,
    },
    /// The store could not be reached just now (a lock held too long, a database away).
    /// Retrying may help.
    #[error("could not reach {place}: {message}")]
    Unavailable {
        /// The file or store involved.
        place: String,
        /// What went wrong.
        message: String,
    },
}

impl PersistenceError {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_store_is_worth_retrying() {
        let place = "stats.json".to_owned();
        let (reason, message) = ("bad".to_owned(), "no".to_owned());
        assert!(!PersistenceError::Corrupt {
            place: place.clone(),
            reason
        }
        .is_retryable());
        assert!(!PersistenceError::Refused {
            place: place.clone(),
            message: message.clone()
        }
        .is_retryable());
        assert!(PersistenceError::Unavailable { place, message }.is_retryable());
    }
}
