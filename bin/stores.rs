//! Which token store serves: the part of the factory that reads `storage.*`.
//!
//! [`Stores`] opens any store of the home by backend name (`/storage migrate` uses it too) and
//! holds the one in use; [`CurrentStore`] is the `TokenStore` every service is built on, which
//! forwards to it. `auto` and `encrypted` without a key file ask the keyring whether it answers,
//! so the choice is made on first use (asynchronously) and then kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{
    BucketLock, OpenedStore, StorageInfo, StoreCatalog, StoreError, TokenStore,
};
use llxprt_application::settings::{StorageBackend, StorageSettings};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Token};
use llxprt_seal::{KeyFile, StorageKey};
use llxprt_store_encrypted::EncryptedTokenStore;
use llxprt_store_file::{FileTokenStore, DEFAULT_REVALIDATE_AFTER};
use llxprt_store_keyring::{Keyring, KeyringTokenStore};

/// The variable naming the storage key file; it outranks `storage.key_file`.
pub const KEY_FILE_VAR: &str = "LLXPRT_STORAGE_KEY_FILE";

/// The token stores of one home.
pub struct Stores {
    home: PathBuf,
    settings: StorageSettings,
    /// `LLXPRT_STORAGE_KEY_FILE`, else `storage.key_file`; relative paths are under the home.
    key_file: Option<PathBuf>,
    current: RwLock<Option<OpenedStore>>,
    choosing: tokio::sync::Mutex<()>,
    /// The team store, when `storage.backend` is `postgres` (opened once, at start).
    team: Option<(Arc<dyn TokenStore>, String)>,
}

impl Stores {
    /// The stores of `home`, choosing by `settings` and the environment `env`.
    pub fn new(home: PathBuf, settings: StorageSettings, env: &BTreeMap<String, String>) -> Self {
        let key_file = env
            .get(KEY_FILE_VAR)
            .filter(|v| !v.trim().is_empty())
            .or(settings.key_file.as_ref())
            .map(|path| home.join(path));
        Self {
            home,
            settings,
            key_file,
            current: RwLock::new(None),
            choosing: tokio::sync::Mutex::new(()),
            team: None,
        }
    }

    /// The stores of a home whose tokens live in the team store `team`, shown as `address`
    /// (`postgres://USER@HOST:PORT/DB`, never the password).
    pub fn with_team(mut self, team: Arc<dyn TokenStore>, address: String) -> Self {
        self.team = Some((team, address));
        self
    }

    fn oauth_dir(&self) -> PathBuf {
        self.home.join("oauth")
    }

    /// The file store; `revalidate_after` as in [`FileTokenStore::with_revalidate_after`].
    fn file_store(&self, revalidate_after: Duration) -> OpenedStore {
        OpenedStore {
            store: Arc::new(
                FileTokenStore::new(self.oauth_dir()).with_revalidate_after(revalidate_after),
            ),
            info: info(
                StorageBackend::File,
                StorageBackend::File,
                &self.oauth_dir(),
            ),
        }
    }

    fn keyring_store(&self, requested: StorageBackend) -> OpenedStore {
        OpenedStore {
            store: Arc::new(KeyringTokenStore::new(&self.home)),
            info: StorageInfo {
                requested,
                chosen: StorageBackend::Keyring,
                location: Keyring::describe().to_owned(),
                key: None,
                reason: None,
            },
        }
    }

    fn encrypted_store(
        &self,
        requested: StorageBackend,
        key: StorageKey,
        shown: String,
    ) -> OpenedStore {
        let mut info = info(requested, StorageBackend::Encrypted, &self.oauth_dir());
        info.key = Some(shown);
        OpenedStore {
            store: Arc::new(EncryptedTokenStore::new(self.oauth_dir(), key)),
            info,
        }
    }

    /// The key file's key (made on first use): the named one, else `$LLXPRT_HOME/storage.key`.
    fn key_from_file(&self) -> Result<(StorageKey, String), StoreError> {
        let file = KeyFile::new(
            self.key_file
                .clone()
                .unwrap_or_else(|| self.home.join("storage.key")),
        );
        let loaded = file.load_or_create().map_err(|e| StoreError::Unavailable {
            store: "the storage key".to_owned(),
            reason: e.to_string(),
            hint: format!(
                "fix the key file, or name another with {KEY_FILE_VAR} or storage.key_file"
            ),
        })?;
        if loaded.created {
            tracing::info!(path = %file.path().display(), "made a new storage key");
        }
        Ok((loaded.key, file.path().display().to_string()))
    }

    async fn choose(
        &self,
        backend: StorageBackend,
        revalidate_after: Duration,
    ) -> Result<OpenedStore, StoreError> {
        let keyring = Keyring::for_home(&self.home);
        match backend {
            StorageBackend::File => Ok(self.file_store(revalidate_after)),
            StorageBackend::Postgres => match &self.team {
                Some((store, address)) => Ok(OpenedStore {
                    store: store.clone(),
                    info: StorageInfo {
                        requested: backend,
                        chosen: backend,
                        location: address.clone(),
                        key: self.key_file.as_ref().map(|p| p.display().to_string()),
                        reason: None,
                    },
                }),
                None => Err(StoreError::Unavailable {
                    store: "the team store".to_owned(),
                    reason: "it is opened only when llxprt starts with storage.backend postgres"
                        .to_owned(),
                    hint: "start llxprt with --set storage.backend=postgres and storage.url set, then migrate from there".to_owned(),
                }),
            },
            StorageBackend::Keyring => Ok(self.keyring_store(backend)),
            StorageBackend::Encrypted => {
                if self.key_file.is_some() {
                    let (key, shown) = self.key_from_file()?;
                    return Ok(self.encrypted_store(backend, key, shown));
                }
                match keyring.probe().await {
                    Ok(()) => {
                        let (key, _) = keyring.storage_key().await?;
                        let shown = format!("in {}", Keyring::describe());
                        Ok(self.encrypted_store(backend, key, shown))
                    }
                    Err(why) => {
                        tracing::debug!("no keyring for the storage key ({why}); using a key file");
                        let (key, shown) = self.key_from_file()?;
                        Ok(self.encrypted_store(backend, key, shown))
                    }
                }
            }
            StorageBackend::Auto => match keyring.probe().await {
                Ok(()) => {
                    let mut opened = self.keyring_store(backend);
                    opened.info.reason = Some("a keyring answered".to_owned());
                    Ok(opened)
                }
                Err(why) => {
                    let (key, shown) = self.key_from_file()?;
                    let mut opened = self.encrypted_store(backend, key, shown);
                    opened.info.reason = Some(format!("no keyring answered: {why}"));
                    Ok(opened)
                }
            },
        }
    }
}

fn info(requested: StorageBackend, chosen: StorageBackend, dir: &Path) -> StorageInfo {
    StorageInfo {
        requested,
        chosen,
        location: dir.display().to_string(),
        key: None,
        reason: None,
    }
}

#[async_trait]
impl StoreCatalog for Stores {
    async fn current(&self) -> Result<OpenedStore, StoreError> {
        if let Some(current) = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(current);
        }
        // One choice per process, even when many tasks ask at once.
        let _choosing = self.choosing.lock().await;
        if let Some(current) = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(current);
        }
        // The store every request goes through: a token it read or wrote is served from memory
        // for a second, without a `stat` (README, "Performance").
        let chosen = self
            .choose(self.settings.backend, DEFAULT_REVALIDATE_AFTER)
            .await?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(chosen.clone());
        Ok(chosen)
    }

    async fn open(&self, backend: StorageBackend) -> Result<OpenedStore, StoreError> {
        // Checked on every load: `/storage migrate` reads back from the file what it copied.
        self.choose(backend, Duration::ZERO).await
    }

    fn switch_to(&self, store: OpenedStore) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(store);
    }
}

/// The token store the services use: whichever [`Stores`] holds now.
pub struct CurrentStore(pub Arc<Stores>);

impl CurrentStore {
    async fn store(&self) -> Result<Arc<dyn TokenStore>, StoreError> {
        self.0.current().await.map(|opened| opened.store)
    }
}

#[async_trait]
impl TokenStore for CurrentStore {
    async fn load(&self, bucket: &BucketId) -> Result<Option<Token>, StoreError> {
        self.store().await?.load(bucket).await
    }

    async fn save(&self, bucket: &BucketId, token: &Token) -> Result<(), StoreError> {
        self.store().await?.save(bucket, token).await
    }

    async fn delete(&self, bucket: &BucketId) -> Result<bool, StoreError> {
        self.store().await?.delete(bucket).await
    }

    async fn list(&self, provider: OAuthProvider) -> Result<Vec<BucketName>, StoreError> {
        self.store().await?.list(provider).await
    }

    async fn lock(
        &self,
        bucket: &BucketId,
        timeout: Duration,
    ) -> Result<Box<dyn BucketLock>, StoreError> {
        self.store().await?.lock(bucket, timeout).await
    }
}
