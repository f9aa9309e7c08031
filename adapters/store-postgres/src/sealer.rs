//! What the store needs from the team key: sealing each token with associated data that names
//! its bucket, and a check value that tells one key from another without revealing it.

use llxprt_domain::BucketId;

/// Why a token could not be sealed or opened. Never carries plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The value was sealed with another key.
    #[error("it was sealed with another storage key")]
    WrongKey,
    /// Anything else: tampered, truncated, sealed for another bucket, or no randomness.
    #[error("{0}")]
    Failed(String),
}

/// Authenticated encryption of tokens with the team key, bound to their bucket.
///
/// The composition gives the store one built on `llxprt-seal`, so that the team store seals
/// exactly as the encrypted file store does.
pub trait TokenSealer: Send + Sync {
    /// `plaintext` sealed for `bucket`.
    ///
    /// # Errors
    /// [`SealError`] when sealing fails (no randomness).
    fn seal(&self, bucket: &BucketId, plaintext: &[u8]) -> Result<Vec<u8>, SealError>;

    /// The plaintext of a value sealed for `bucket`.
    ///
    /// # Errors
    /// [`SealError`] when the key is not the one it was sealed with, the value was changed, or
    /// it was sealed for another bucket.
    fn open(&self, bucket: &BucketId, sealed: &[u8]) -> Result<Vec<u8>, SealError>;

    /// A value that is the same for the same key and differs between keys, from which the key
    /// cannot be learned; the database keeps the team key's.
    fn check_value(&self) -> Vec<u8>;
}

/// The team store seals as the encrypted file store does: with `llxprt-seal`.
impl TokenSealer for llxprt_seal::StorageKey {
    fn seal(&self, bucket: &BucketId, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        llxprt_seal::StorageKey::seal(self, bucket, plaintext)
            .map_err(|e| SealError::Failed(e.to_string()))
    }

    fn open(&self, bucket: &BucketId, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        llxprt_seal::StorageKey::open(self, bucket, sealed)
            .map(|plain| plain.to_vec())
            .map_err(|e| match e {
                llxprt_seal::OpenError::WrongKey { .. } => SealError::WrongKey,
                other => SealError::Failed(other.to_string()),
            })
    }

    fn check_value(&self) -> Vec<u8> {
        llxprt_seal::StorageKey::check_value(self).0.to_vec()
    }
}
