//! Settings, profiles and key files kept in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use llxprt_domain::{OAuthProvider, Profile, ProfileName, Secret};

use super::faults::Faults;
use crate::ports::{ConfigError, KeyFiles, ProfileStore, SettingsStore};
use crate::settings::{Settings, StorageBackend};

/// An operation of the configuration ports, to make a [`MemoryConfigStore`] fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigOperation {
    /// [`SettingsStore::load_settings`].
    LoadSettings,
    /// [`SettingsStore::set_oauth_enabled`] and [`SettingsStore::set_default_profile`].
    WriteSettings,
    /// [`ProfileStore::save_profile`] and [`ProfileStore::delete_profile`].
    WriteProfile,
    /// [`ProfileStore::load_profile`] and [`ProfileStore::list_profiles`].
    ReadProfile,
    /// [`KeyFiles::read_key_file`].
    ReadKeyFile,
}

/// Settings, saved profiles and key files in memory, with the file store's rules: a profile
/// that breaks [`Profile::check`] is refused, a default profile must be saved, a key file's key
/// is trimmed and an empty one refused. A failed write changes nothing.
#[derive(Debug, Default)]
pub struct MemoryConfigStore {
    state: Mutex<ConfigState>,
    faults: Faults<ConfigOperation, ConfigError>,
}

#[derive(Debug, Default)]
struct ConfigState {
    settings: Settings,
    profiles: BTreeMap<ProfileName, Profile>,
    key_files: BTreeMap<String, String>,
}

impl MemoryConfigStore {
    /// The default settings, no profiles, no key files.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `settings` (a test's endpoints, say).
    pub fn with_settings(settings: Settings) -> Self {
        let store = Self::default();
        store.state().settings = settings;
        store
    }

    /// Puts a key file at `path` holding `contents`.
    pub fn put_key_file(&self, path: &str, contents: &str) {
        self.state()
            .key_files
            .insert(path.to_owned(), contents.to_owned());
    }

    /// Every later call of `operation` fails with `error` until [`heal`](Self::heal).
    pub fn fail(&self, operation: ConfigOperation, error: ConfigError) {
        self.faults.always(operation, error);
    }

    /// Nothing fails any more.
    pub fn heal(&self) {
        self.faults.heal();
    }

    fn state(&self) -> MutexGuard<'_, ConfigState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SettingsStore for MemoryConfigStore {
    fn load_settings(&self) -> Result<Settings, ConfigError> {
        self.faults.check(ConfigOperation::LoadSettings)?;
        Ok(self.state().settings.clone())
    }

    fn set_oauth_enabled(&self, provider: OAuthProvider, enabled: bool) -> Result<(), ConfigError> {
        self.faults.check(ConfigOperation::WriteSettings)?;
        self.state()
            .settings
            .oauth_enabled
            .insert(provider, enabled);
        Ok(())
    }

    fn set_default_profile(&self, name: Option<&ProfileName>) -> Result<(), ConfigError> {
        self.faults.check(ConfigOperation::WriteSettings)?;
        let mut state = self.state();
        if let Some(name) = name {
            if !state.profiles.contains_key(name) {
                return Err(ConfigError::NotFound(name.clone()));
            }
        }
        state.settings.default_profile = name.cloned();
        Ok(())
    }

    fn set_storage_backend(&self, backend: StorageBackend) -> Result<(), ConfigError> {
        self.faults.check(ConfigOperation::WriteSettings)?;
        self.state().settings.storage.backend = backend;
        Ok(())
    }
}

impl ProfileStore for MemoryConfigStore {
    fn save_profile(&self, name: &ProfileName, profile: &Profile) -> Result<(), ConfigError> {
        self.faults.check(ConfigOperation::WriteProfile)?;
        profile.check(name)?;
        self.state().profiles.insert(name.clone(), profile.clone());
        Ok(())
    }

    fn load_profile(&self, name: &ProfileName) -> Result<Profile, ConfigError> {
        self.faults.check(ConfigOperation::ReadProfile)?;
        self.state()
            .profiles
            .get(name)
            .cloned()
            .ok_or_else(|| ConfigError::NotFound(name.clone()))
    }

    fn list_profiles(&self) -> Result<Vec<ProfileName>, ConfigError> {
        self.faults.check(ConfigOperation::ReadProfile)?;
        Ok(self.state().profiles.keys().cloned().collect())
    }

    fn delete_profile(&self, name: &ProfileName) -> Result<(), ConfigError> {
        self.faults.check(ConfigOperation::WriteProfile)?;
        match self.state().profiles.remove(name) {
            Some(_) => Ok(()),
            None => Err(ConfigError::NotFound(name.clone())),
        }
    }
}

impl KeyFiles for MemoryConfigStore {
    fn read_key_file(&self, path: &str) -> Result<Secret, ConfigError> {
        self.faults.check(ConfigOperation::ReadKeyFile)?;
        let state = self.state();
        let contents = state.key_files.get(path).ok_or_else(|| ConfigError::Io {
            path: path.to_owned(),
            message: "No such file or directory".to_owned(),
        })?;
        match contents.trim() {
            "" => Err(ConfigError::InvalidFile {
                path: path.to_owned(),
                reason: "the key file is empty".to_owned(),
            }),
            key => Ok(Secret::new(key)),
        }
    }
}
