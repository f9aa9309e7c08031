//! Choosing and opening token stores by name, for `/storage` and `/storage migrate`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ports::{StoreError, TokenStore};
use crate::settings::StorageBackend;

/// Where a store keeps tokens, as `/storage` and `/auth` show it. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageInfo {
    /// What `storage.backend` asked for.
    pub requested: StorageBackend,
    /// What serves it: never [`StorageBackend::Auto`].
    pub chosen: StorageBackend,
    /// Where the tokens are (a directory, the keyring's name).
    pub location: String,
    /// Where the storage key is, for stores that seal with one.
    pub key: Option<String>,
    /// Why `auto` chose what it chose.
    pub reason: Option<String>,
}

impl StorageInfo {
    /// One line: `encrypted (auto: no keyring answered) in /h/oauth, key /h/storage.key`.
    pub fn summary(&self) -> String {
        let mut text = self.chosen.to_string();
        if self.requested != self.chosen {
            match &self.reason {
                Some(reason) => text.push_str(&format!(" ({}: {reason})", self.requested)),
                None => text.push_str(&format!(" ({})", self.requested)),
            }
        }
        text.push_str(&format!(" in {}", self.location));
        if let Some(key) = &self.key {
            text.push_str(&format!(", key {key}"));
        }
        text
    }
}

/// A store opened by name, with what it is.
#[derive(Clone)]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn TokenStore>,
    /// Where it keeps tokens.
    pub info: StorageInfo,
}

/// The factory's knowledge of the stores: the one in use, and any other by name.
#[async_trait]
pub trait StoreCatalog: Send + Sync {
    /// The store in use (the one every service was built on), with what it is. For `auto`, the
    /// choice is made on first use and kept.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the chosen store cannot be reached or its key read.
    async fn current(&self) -> Result<OpenedStore, StoreError>;

    /// Another store of the same home, by backend name, as `storage.backend` would choose it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it cannot be reached or its key read or made.
    async fn open(&self, backend: StorageBackend) -> Result<OpenedStore, StoreError>;

    /// From now on, the services built on [`StoreCatalog::current`] use `store` (after
    /// `/storage migrate` moved every token there).
    fn switch_to(&self, store: OpenedStore);
}
