//! The keyring token store: one entry per provider and bucket in the operating system's
//! keyring (Secret Service on Linux, Keychain on macOS, Credential Manager on Windows) through
//! the `keyring` crate.
//!
//! - Entries are named service `llxprt:{home}`, user `{provider}/{bucket}`, so two homes (two
//!   users of one account, or tests) never share tokens. The value is the token's JSON document.
//! - A keyring that is missing, locked or refuses access is [`StoreError::Unavailable`] saying
//!   which, never "not logged in" and never a fall back to files. Every call is bounded
//!   ([`KEYRING_TIMEOUT`]): a keyring waiting on an unlock prompt nobody sees is reported, not
//!   waited on forever.
//! - The keyring cannot list entries portably, so the buckets are kept in a small non-secret
//!   index, `$LLXPRT_HOME/keyring-index.json`, written before an entry is made and after one is
//!   removed, so it always names every entry (a name whose entry is gone is skipped).
//! - Bucket locks are the file store's `flock`s in `$LLXPRT_HOME/oauth/locks`: one process at a
//!   time refreshes a bucket, whichever store holds it.
//!
//! The store passes the contract suite of `llxprt_application::testkit::token_store`.

mod index;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{BucketLock, StoreError, TokenStore};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};
use llxprt_seal::StorageKey;
use llxprt_store_file::json::{token_from_json, token_to_json};
use llxprt_store_file::FileTokenStore;

use index::Index;

/// The longest any one keyring call is waited for.
pub const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);

/// The user name of the entry holding the storage key of the encrypted store.
const STORAGE_KEY_USER: &str = "storage-key";

/// Tokens in the OS keyring, for one `$LLXPRT_HOME`.
#[derive(Debug, Clone)]
pub struct KeyringTokenStore {
    home: PathBuf,
    keyring: Keyring,
    index: Arc<Index>,
    locks: FileTokenStore,
}

impl KeyringTokenStore {
    /// The store of the home `home` (its index and locks live there).
    pub fn new(home: &Path) -> Self {
        Self {
            home: home.to_owned(),
            keyring: Keyring::for_home(home),
            index: Arc::new(Index::new(home.join("keyring-index.json"))),
            locks: FileTokenStore::new(home.join("oauth")),
        }
    }

    /// The keyring this store writes to.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The home whose index and locks the store keeps.
    pub fn home(&self) -> &Path {
        &self.home
    }
}

/// One home's entries in the OS keyring.
#[derive(Debug, Clone)]
pub struct Keyring {
    service: String,
}

impl Keyring {
    /// The entries of the home `home`.
    pub fn for_home(home: &Path) -> Self {
        Self {
            service: format!("llxprt:{}", home.display()),
        }
    }

    /// What the keyring is, for `/storage`.
    pub fn describe() -> &'static str {
        if cfg!(target_os = "macos") {
            "the macOS Keychain"
        } else if cfg!(windows) {
            "the Windows Credential Manager"
        } else {
            "the Secret Service keyring"
        }
    }

    /// Whether a keyring answers: a harmless read that must come back, found or not.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] saying why none answers (missing, locked, refusing, slow).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.get("probe").await.map(drop)
    }

    /// The storage key kept in the keyring for the encrypted store, made and stored on first
    /// use. Returns it and whether it was made now.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no keyring answers, [`StoreError::Corrupt`]-like
    /// [`StoreError::Io`] when the entry holds something that is not a key.
    pub async fn storage_key(&self) -> Result<(StorageKey, bool), StoreError> {
        if let Some(bytes) = self.get_secret(STORAGE_KEY_USER).await? {
            let key = StorageKey::from_slice(&bytes).ok_or_else(|| StoreError::Io {
                path: self.shown(STORAGE_KEY_USER),
                message: format!("it holds {} bytes, not a 32-byte storage key", bytes.len()),
            })?;
            return Ok((key, false));
        }
        let key = StorageKey::generate().map_err(|e| StoreError::Io {
            path: self.shown(STORAGE_KEY_USER),
            message: e.to_string(),
        })?;
        self.set_secret(STORAGE_KEY_USER, key.expose_bytes().to_vec())
            .await?;
        Ok((key, true))
    }

    fn shown(&self, user: &str) -> String {
        format!("{} entry {}/{user}", Self::describe(), self.service)
    }

    async fn get(&self, user: &str) -> Result<Option<String>, StoreError> {
        self.call(user, |entry| entry.get_password()).await
    }

    async fn get_secret(&self, user: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(user, |entry| entry.get_secret()).await
    }

    async fn set(&self, user: &str, value: String) -> Result<(), StoreError> {
        self.call(user, move |entry| entry.set_password(&value))
            .await
            .map(drop)
    }

    async fn set_secret(&self, user: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.call(user, move |entry| entry.set_secret(&value))
            .await
            .map(drop)
    }

    /// Deletes an entry; whether there was one.
    async fn remove(&self, user: &str) -> Result<bool, StoreError> {
        self.call(user, |entry| entry.delete_credential())
            .await
            .map(|done| done.is_some())
    }

    /// Runs one keyring call off the async threads, bounded by [`KEYRING_TIMEOUT`]; a missing
    /// entry is `None`.
    async fn call<T: Send + 'static>(
        &self,
        user: &str,
        work: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        let (service, owned_user) = (self.service.clone(), user.to_owned());
        let task = tokio::task::spawn_blocking(move || {
            keyring::Entry::new(&service, &owned_user).and_then(|entry| work(&entry))
        });
        match tokio::time::timeout(KEYRING_TIMEOUT, task).await {
            Err(_) => Err(unavailable(
                format!(
                    "it did not answer within {} seconds (it may be waiting for an unlock prompt)",
                    KEYRING_TIMEOUT.as_secs()
                ),
                LOCKED_HINT,
            )),
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(_)) => Err(StoreError::Io {
                path: self.shown(user),
                message: "the runtime shut down before the keyring answered".to_owned(),
            }),
            Ok(Ok(Ok(value))) => Ok(Some(value)),
            Ok(Ok(Err(keyring::Error::NoEntry))) => Ok(None),
            Ok(Ok(Err(e))) => Err(self.classify(user, e)),
        }
    }

    fn classify(&self, user: &str, error: keyring::Error) -> StoreError {
        match error {
            keyring::Error::NoStorageAccess(e) => {
                unavailable(format!("it is locked or refused access ({e})"), LOCKED_HINT)
            }
            keyring::Error::PlatformFailure(e) => {
                let text = e.to_string();
                if looks_missing(&text) {
                    unavailable(format!("none answers ({text})"), MISSING_HINT)
                } else {
                    unavailable(format!("it failed ({text})"), MISSING_HINT)
                }
            }
            other => StoreError::Io {
                path: self.shown(user),
                message: other.to_string(),
            },
        }
    }
}

const LOCKED_HINT: &str = "unlock the keyring (log in to the desktop session, or `gnome-keyring-daemon --unlock`) and try again, or choose another store with `--set storage.backend=encrypted`";
const MISSING_HINT: &str = "start a Secret Service (gnome-keyring, KeePassXC) on the session bus named by DBUS_SESSION_BUS_ADDRESS, or choose another store with `--set storage.backend=encrypted`";

fn unavailable(reason: String, hint: &str) -> StoreError {
    StoreError::Unavailable {
        store: Keyring::describe().to_owned(),
        reason,
        hint: hint.to_owned(),
    }
}

/// Whether a platform failure means no keyring service is there at all.
fn looks_missing(text: &str) -> bool {
    [
        "ServiceUnknown",
        "no secret service provider",
        "dbus session",
        "NameHasNoOwner",
        "was not provided by any",
        "No such file",
        "Connection refused",
        "DBUS_SESSION_BUS_ADDRESS",
        "address",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

fn user_of(bucket: &BucketId) -> String {
    format!("{}/{}", bucket.provider, bucket.bucket)
}

#[async_trait]
impl TokenStore for KeyringTokenStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        let user = user_of(bucket);
        let Some(text) = self.keyring.get(&user).await? else {
            return Ok(None);
        };
        token_from_json(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: self.keyring.shown(&user),
                reason: e.to_string(),
                provider: bucket.provider,
                bucket: bucket.bucket.clone(),
            })
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        // The index first: a crash after it leaves a name without an entry, which `list`
        // skips, never an entry nobody can find.
        self.index.change(bucket, true).await?;
        self.keyring
            .set(&user_of(bucket), token_to_json(token))
            .await
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        let existed = self.keyring.remove(&user_of(bucket)).await?;
        self.index.change(bucket, false).await?;
        Ok(existed)
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
        let mut present = Vec::new();
        for name in self.index.buckets(provider).await? {
            let bucket = BucketId::new(provider, name);
            if self.keyring.get(&user_of(&bucket)).await?.is_some() {
                present.push(bucket.bucket);
            }
        }
        present.sort();
        Ok(present)
    }

    async fn lock(
        &self,
        bucket: &BucketId,
        timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError> {
        self.locks.lock(bucket, timeout).await
    }
}

/// Where the index of a home is, for tests and `/storage`.
pub fn index_path(home: &Path) -> PathBuf {
    home.join("keyring-index.json")
}
