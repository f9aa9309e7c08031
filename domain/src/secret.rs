//! Secrets: values that must never be printed or logged.

use std::fmt;

/// An access token, refresh token, authorization code, PKCE verifier or API key.
///
/// `Debug` and `Display` show `[redacted]`; the value is read only through [`Secret::expose`],
/// so every place that reveals a secret is visible in the code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself, for the one place that must send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an empty key is no key).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let s = Secret::new("sk-simulated-123");
        assert!(!format!("{s}").contains("sk-simulated"));
        assert!(!format!("{s:?}").contains("sk-simulated"));
        assert!(!format!("{:?}", Some(&s)).contains("sk-simulated"));
        assert_eq!(s.expose(), "sk-simulated-123");
    }
}
