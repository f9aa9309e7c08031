//! The token storage port.

use std::time::Duration;

use async_trait::async_trait;
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};

/// Why a token could not be loaded, saved, listed, deleted or locked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored token cannot be read as a token. It is left in place for the user to act on.
    #[error("the token file {path} is corrupt ({reason}); run `/auth {provider} login {bucket}` to replace it")]
    Corrupt {
        /// Where the bad token is.
        path: String,
        /// What is wrong with it.
        reason: String,
        /// The provider, for the command to run.
        provider: OAuthProvider,
        /// The bucket, for the command to run.
        bucket: BucketName,
    },
    /// The stored token was sealed with another storage key than the one in use. It is left in
    /// place: with the right key it opens again.
    #[error("the token {path} was sealed with another storage key; point storage.key_file (or LLXPRT_STORAGE_KEY_FILE) at the key it was made with, or run `/auth {provider} login {bucket}` to replace it")]
    WrongKey {
        /// Where the sealed token is.
        path: String,
        /// The provider, for the command to run.
        provider: OAuthProvider,
        /// The bucket, for the command to run.
        bucket: BucketName,
    },
    /// The store itself cannot be used: a keyring that is missing, locked or refuses llxprt, or
    /// a storage key that cannot be read. Never a reason to fall back to another store.
    #[error("{store}: {reason}; {hint}")]
    Unavailable {
        /// The store, as the user knows it (`the keyring (Secret Service)`, `the storage key
        /// /home/u/.llxprt/storage.key`).
        store: String,
        /// What is wrong.
        reason: String,
        /// What to do about it.
        hint: String,
    },
    /// The operating system refused access.
    #[error("permission denied on {path}")]
    PermissionDenied {
        /// The file or directory refused.
        path: String,
    },
    /// Any other input/output failure.
    #[error("could not access {path}: {message}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// What the operating system said.
        message: String,
    },
    /// Another holder kept the bucket's lock longer than the caller would wait.
    #[error("timed out after {waited:?} waiting for the lock on {bucket} ({holder})")]
    LockTimeout {
        /// The bucket whose lock was busy.
        bucket: BucketId,
        /// How long the caller waited.
        waited: Duration,
        /// Who held it, as far as the store knows (e.g. `held by process 1234`).
        holder: String,
    },
}

/// An exclusive hold on one bucket. Dropping it releases the lock.
pub trait BucketLock: Send {}

/// Where OAuth tokens are kept: one token per provider and bucket.
///
/// Every implementation passes the contract suite in `testkit` (feature `testkit`).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The token of a bucket, or `None` when the bucket has never been logged in.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stored token cannot be parsed (the file is kept),
    /// [`StoreError::PermissionDenied`] or [`StoreError::Io`] when it cannot be read.
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError>;

    /// Replaces a bucket's token atomically: a reader sees the old token or the new one, never a
    /// mix, even if the process dies part way through.
    ///
    /// # Errors
    /// [`StoreError::PermissionDenied`] or [`StoreError::Io`]; the old token is then untouched.
    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError>;

    /// Deletes a bucket's token. Returns whether there was one.
    ///
    /// # Errors
    /// [`StoreError::PermissionDenied`] or [`StoreError::Io`].
    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError>;

    /// The buckets of a provider that hold a token, sorted by name.
    ///
    /// # Errors
    /// [`StoreError::PermissionDenied`] or [`StoreError::Io`] when the store cannot be listed.
    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError>;

    /// Takes the exclusive lock of one bucket, held across read → refresh → write, waiting at
    /// most `timeout`. The lock excludes other holders in this process and, for stores shared
    /// between processes, in every other process; it is released when the guard is dropped or
    /// the holder dies.
    ///
    /// # Errors
    /// [`StoreError::LockTimeout`] when the lock stayed busy for `timeout`;
    /// [`StoreError::PermissionDenied`] or [`StoreError::Io`] when it cannot be taken at all.
    async fn lock(
        &self,
        bucket: &BucketId,
        timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError>;

    /// Checks, without changing any token, that a token for `bucket` could be saved now, so a
    /// sign-in is not run only to find its token cannot be kept. Stores that cannot tell
    /// answer `Ok`.
    ///
    /// # Errors
    /// [`StoreError::PermissionDenied`] or [`StoreError::Io`] when saving would fail.
    async fn check_writable(&self, bucket: &BucketId) -> Result<(), StoreError> {
        let _ = bucket;
        Ok(())
    }
}
