//! Sealing of llxprt's token documents: authenticated encryption bound to the provider and
//! bucket a document belongs to, and the storage key file that holds the key.
//!
//! This crate's API is small on purpose and kept stable: the encrypted file store and the team
//! (PostgreSQL) store both seal with it, so a token sealed by one opens in the other.
//!
//! # The sealed layout (version 1)
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | format version, `1` |
//! | 8 | the key's check value ([`StorageKey::check_value`]): tells a wrong key from tampering |
//! | 4 | length of the ciphertext that follows the nonce, big-endian |
//! | 24 | a random nonce |
//! | rest | XChaCha20-Poly1305 ciphertext of the document, with its 16-byte tag |
//!
//! The associated data is a fixed label, the whole header above, and the provider's and the
//! bucket's names, each prefixed with its length. A blob copied over another bucket's, or
//! another provider's, therefore fails to open, as does any change to any byte.
//!
//! ```
//! use llxprt_domain::{BucketId, OAuthProvider};
//! use llxprt_seal::StorageKey;
//!
//! let key = StorageKey::generate()?;
//! let bucket = BucketId::default_for(OAuthProvider::Gemini);
//! let sealed = key.seal(&bucket, b"{\"access_token\":\"...\"}")?;
//! assert_eq!(&key.open(&bucket, &sealed)?[..], b"{\"access_token\":\"...\"}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod key_file;

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use llxprt_domain::BucketId;
use rand::rngs::OsRng;
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use key_file::{KeyFile, KeyFileError, LoadedKey};

/// The length of a storage key: 32 random bytes.
pub const KEY_LEN: usize = 32;

/// The format version this crate writes, the first byte of every sealed blob.
pub const FORMAT_VERSION: u8 = 1;

const CHECK_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + CHECK_LEN + 4 + NONCE_LEN;
const AAD_LABEL: &[u8] = b"llxprt-seal/1";

/// A 256-bit storage key. Its bytes are wiped when it is dropped and never printed.
#[derive(Clone)]
pub struct StorageKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageKey([redacted], check {})", self.check_value())
    }
}

/// A short, public fingerprint of a key ([`StorageKey::check_value`]): equal check values mean
/// the same key, without revealing anything about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCheck(pub [u8; CHECK_LEN]);

impl fmt::Display for KeyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why a document could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The operating system's random number generator failed.
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    /// The document is larger than a sealed blob can hold (4 GiB).
    #[error("the document is {0} bytes long, too large to seal")]
    TooLarge(usize),
}

/// Why a sealed blob could not be opened. Each is a different thing for the user to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The blob is shorter than its header says: the write was cut short.
    #[error("it is truncated ({actual} bytes, {expected} expected)")]
    Truncated {
        /// The bytes present.
        actual: usize,
        /// The bytes the header announces (or the least any sealed blob has).
        expected: usize,
    },
    /// The blob was not written by this format (or is not sealed at all).
    #[error("it is not sealed in a format this llxprt knows (format byte {0:#04x})")]
    UnsupportedVersion(u8),
    /// The blob was sealed with another key.
    #[error(
        "it was sealed with another storage key (key check {found}, this key's is {expected})"
    )]
    WrongKey {
        /// The check value of the key the blob was sealed with.
        found: KeyCheck,
        /// The check value of the key tried.
        expected: KeyCheck,
    },
    /// The blob does not authenticate: a byte was changed, or it belongs to another provider or
    /// bucket.
    #[error(
        "it does not authenticate: it was changed, or it was sealed for another provider or bucket"
    )]
    Tampered,
}

impl StorageKey {
    /// A new key from the operating system's random number generator.
    ///
    /// # Errors
    /// [`SealError::Random`] when the generator fails.
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Self(bytes))
    }

    /// The key made of these bytes (e.g. read back from a keyring entry).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key made of these bytes, or `None` unless there are exactly [`KEY_LEN`] of them.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self::from_bytes(array))
    }

    /// The key's bytes, for keeping it somewhere safe (a key file, a keyring entry). Each call
    /// is a place that reveals the key.
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key's public check value: the first bytes of a SHA-256 of a fixed label and the key.
    /// Stored in every blob; a team store may keep it to refuse a machine with another key.
    pub fn check_value(&self) -> KeyCheck {
        let digest = Sha256::new()
            .chain_update(b"llxprt-seal key check/1")
            .chain_update(self.0.as_ref())
            .finalize();
        let mut check = [0u8; CHECK_LEN];
        check.copy_from_slice(&digest[..CHECK_LEN]);
        KeyCheck(check)
    }

    /// Seals `document` for `bucket`: only this key, and only for this provider and bucket,
    /// opens it again.
    ///
    /// # Errors
    /// [`SealError::Random`] when no nonce can be drawn, [`SealError::TooLarge`] past 4 GiB.
    pub fn seal(&self, bucket: &BucketId, document: &[u8]) -> Result<Vec<u8>, SealError> {
        let too_large = || SealError::TooLarge(document.len());
        let sealed_len = document.len().checked_add(TAG_LEN).ok_or_else(too_large)?;
        let sealed_len_field = u32::try_from(sealed_len).map_err(|_| too_large())?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;

        let mut blob = Vec::with_capacity(HEADER_LEN + sealed_len);
        blob.push(FORMAT_VERSION);
        blob.extend_from_slice(&self.check_value().0);
        blob.extend_from_slice(&sealed_len_field.to_be_bytes());
        blob.extend_from_slice(&nonce);
        let aad = associated_data(&blob, bucket);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: document,
                    aad: &aad,
                },
            )
            // The only failure of this AEAD is a message too long for it, far beyond 4 GiB.
            .map_err(|_| too_large())?;
        blob.extend_from_slice(&ciphertext);
        Ok(blob)
    }

    /// Opens a blob sealed by [`StorageKey::seal`] for `bucket`. The document is wiped from
    /// memory when the returned buffer is dropped.
    ///
    /// # Errors
    /// [`OpenError::Truncated`], [`OpenError::UnsupportedVersion`], [`OpenError::WrongKey`] or
    /// [`OpenError::Tampered`], checked in that order.
    pub fn open(&self, bucket: &BucketId, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let Some(&version) = blob.first() else {
            return Err(OpenError::Truncated {
                actual: 0,
                expected: HEADER_LEN + TAG_LEN,
            });
        };
        if version != FORMAT_VERSION {
            return Err(OpenError::UnsupportedVersion(version));
        }
        if blob.len() < HEADER_LEN + TAG_LEN {
            return Err(OpenError::Truncated {
                actual: blob.len(),
                expected: HEADER_LEN + TAG_LEN,
            });
        }
        let (header, ciphertext) = blob.split_at(HEADER_LEN);
        let mut found = [0u8; CHECK_LEN];
        found.copy_from_slice(&header[1..1 + CHECK_LEN]);
        let expected = self.check_value();
        if found != expected.0 {
            return Err(OpenError::WrongKey {
                found: KeyCheck(found),
                expected,
            });
        }
        let mut length = [0u8; 4];
        length.copy_from_slice(&header[1 + CHECK_LEN..1 + CHECK_LEN + 4]);
        let announced = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
        if ciphertext.len() < announced {
            return Err(OpenError::Truncated {
                actual: blob.len(),
                expected: HEADER_LEN.saturating_add(announced),
            });
        }
        if ciphertext.len() > announced {
            return Err(OpenError::Tampered);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[1 + CHECK_LEN + 4..]);
        let aad = associated_data(header, bucket);
        self.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Tampered)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }
}

/// The label, the header, then the provider's and bucket's names each after its length, so no
/// two different (provider, bucket) pairs give the same bytes.
fn associated_data(header: &[u8], bucket: &BucketId) -> Vec<u8> {
    let provider = bucket.provider.as_str().as_bytes();
    let name = bucket.bucket.as_str().as_bytes();
    let mut aad =
        Vec::with_capacity(AAD_LABEL.len() + header.len() + provider.len() + name.len() + 16);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(header);
    for part in [provider, name] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

fn fill_random(bytes: &mut [u8]) -> Result<(), SealError> {
    OsRng
        .try_fill_bytes(bytes)
        .map_err(|e| SealError::Random(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_domain::{BucketName, OAuthProvider};
    use proptest::prelude::*;

    fn bucket(provider: OAuthProvider, name: &str) -> BucketId {
        BucketId::new(provider, BucketName::parse(name).unwrap())
    }

    const DOC: &[u8] = br#"{"access_token":"at-secret","refresh_token":"rt-secret"}"#;

    #[test]
    fn a_sealed_document_opens_with_its_key_and_bucket_and_hides_its_text() {
        let key = StorageKey::generate().unwrap();
        let work = bucket(OAuthProvider::Codex, "work@example.com");
        let sealed = key.seal(&work, DOC).unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"at-secret"));
        assert_eq!(&key.open(&work, &sealed).unwrap()[..], DOC);
        assert_ne!(
            sealed,
            key.seal(&work, DOC).unwrap(),
            "every seal draws a new nonce"
        );
    }

    #[test]
    fn a_blob_copied_to_another_bucket_or_provider_is_refused() {
        let key = StorageKey::generate().unwrap();
        let sealed = key
            .seal(&bucket(OAuthProvider::Gemini, "work"), DOC)
            .unwrap();
        for other in [
            bucket(OAuthProvider::Gemini, "home"),
            bucket(OAuthProvider::Qwen, "work"),
            BucketId::default_for(OAuthProvider::Gemini),
        ] {
            assert_eq!(
                key.open(&other, &sealed),
                Err(OpenError::Tampered),
                "{other}"
            );
        }
    }

    #[test]
    fn wrong_key_tampered_truncated_and_foreign_are_told_apart() {
        let (key, other) = (
            StorageKey::generate().unwrap(),
            StorageKey::generate().unwrap(),
        );
        let id = BucketId::default_for(OAuthProvider::Anthropic);
        let sealed = key.seal(&id, DOC).unwrap();
        assert!(matches!(
            other.open(&id, &sealed),
            Err(OpenError::WrongKey { .. })
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&id, &flipped), Err(OpenError::Tampered));
        assert!(matches!(
            key.open(&id, &sealed[..sealed.len() - 1]),
            Err(OpenError::Truncated { .. })
        ));
        assert!(matches!(
            key.open(&id, &[]),
            Err(OpenError::Truncated { .. })
        ));
        assert_eq!(key.open(&id, DOC), Err(OpenError::UnsupportedVersion(b'{')));
    }

    #[test]
    fn the_check_value_and_debug_never_show_the_key() {
        let key = StorageKey::from_bytes([7u8; KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("0707"));
        assert_eq!(
            key.check_value(),
            StorageKey::from_bytes([7u8; KEY_LEN]).check_value()
        );
        assert_ne!(
            key.check_value(),
            StorageKey::from_bytes([8u8; KEY_LEN]).check_value()
        );
    }

    proptest! {
        #[test]
        fn any_cut_or_changed_byte_is_refused(
            doc in proptest::collection::vec(any::<u8>(), 0..300),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let key = StorageKey::from_bytes([42u8; KEY_LEN]);
            let id = bucket(OAuthProvider::Qwen, "a@b.c");
            let sealed = key.seal(&id, &doc).unwrap();
            let i = at.index(sealed.len());
            prop_assert!(key.open(&id, &sealed[..i]).is_err());
            let mut changed = sealed.clone();
            changed[i] ^= 1 << bit;
            prop_assert!(key.open(&id, &changed).is_err());
            prop_assert_eq!(&key.open(&id, &sealed).unwrap()[..], &doc[..]);
        }
    }
}
