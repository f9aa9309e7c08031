//! The configuration ports, one per role: settings ([`SettingsStore`]), saved profiles
//! ([`ProfileStore`]) and key files ([`KeyFiles`]). They share one error type.

use llxprt_domain::{InvalidProfile, OAuthProvider, Profile, ProfileName, Secret};

use crate::settings::{SettingError, Settings, StorageBackend};

/// Why settings or a profile could not be read or written. Every message names the file or the
/// variable at fault and never repeats a value, which may be a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A settings or profile file is not valid JSON or does not have the expected shape. It is
    /// left untouched for the user to fix.
    #[error("{path} is invalid: {reason}")]
    InvalidFile {
        /// The file at fault.
        path: String,
        /// What is wrong, with a line and column where known.
        reason: String,
    },
    /// A file or environment variable names a provider llxprt does not know.
    #[error("{path}: unknown provider '{given}' in {section}; valid providers are: {valid}")]
    UnknownProvider {
        /// The file or environment variable at fault.
        path: String,
        /// Where in it: `oauth_enabled`, `providers` or `provider`.
        section: String,
        /// The name found.
        given: String,
        /// The valid names, comma separated.
        valid: &'static str,
    },
    /// An `LLXPRT_…` environment variable has a value that does not fit its setting.
    #[error("{origin}: {reason}")]
    InvalidEnvironment {
        /// The variable, or the environment as a whole when it cannot be pinned down.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// A profile to be saved breaks one of [`Profile::check`]'s rules; nothing was written.
    #[error(transparent)]
    InvalidProfile(#[from] InvalidProfile),
    /// A `--set NAME=VALUE` given on the command line was refused.
    #[error("--set: {0}")]
    InvalidOverride(SettingError),
    /// No profile is saved under that name.
    #[error("no profile named '{0}'; `/profile list` shows the saved ones")]
    NotFound(ProfileName),
    /// The file system refused (permissions, a full disk, a directory in the way).
    #[error("could not access {path}: {message}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// What the operating system said.
        message: String,
    },
}

/// Where the settings live (`settings.json`, the environment, `--set`).
///
/// Settings are small local files read at start and on the user's commands, so the port is
/// synchronous; an adapter may block briefly on the file system.
pub trait SettingsStore: Send + Sync {
    /// The settings in effect: defaults, overridden by the settings file, then the environment,
    /// then the command line. Read afresh on each call, so a change written by
    /// [`set_oauth_enabled`](SettingsStore::set_oauth_enabled) is seen by the next call (unless a
    /// higher source overrides it).
    ///
    /// # Errors
    /// [`ConfigError::InvalidFile`] or [`ConfigError::UnknownProvider`] naming the file,
    /// [`ConfigError::InvalidEnvironment`], [`ConfigError::InvalidOverride`], or
    /// [`ConfigError::Io`].
    fn load_settings(&self) -> Result<Settings, ConfigError>;

    /// Records persistently whether lazy OAuth is enabled for a provider (`/auth P enable`),
    /// keeping every other setting, including ones llxprt does not know.
    ///
    /// # Errors
    /// [`ConfigError::InvalidFile`] when the existing file cannot be read as settings (it is
    /// then left untouched), or [`ConfigError::Io`].
    fn set_oauth_enabled(&self, provider: OAuthProvider, enabled: bool) -> Result<(), ConfigError>;

    /// Records persistently the profile loaded at start (`/profile set-default`), or clears it
    /// with `None`, keeping every other setting.
    ///
    /// # Errors
    /// [`ConfigError::NotFound`] when no such profile is saved, [`ConfigError::InvalidFile`]
    /// when the existing settings file cannot be read (it is then left untouched), or
    /// [`ConfigError::Io`].
    fn set_default_profile(&self, name: Option<&ProfileName>) -> Result<(), ConfigError>;

    /// Records persistently where tokens are kept (`storage.backend`, set by `/storage
    /// migrate` once every bucket has moved), keeping every other setting.
    ///
    /// # Errors
    /// [`ConfigError::InvalidFile`] when the existing settings file cannot be read (it is then
    /// left untouched), or [`ConfigError::Io`].
    fn set_storage_backend(&self, backend: StorageBackend) -> Result<(), ConfigError>;
}

/// Where saved profiles live (`profiles/{name}.json`). Synchronous, like [`SettingsStore`].
pub trait ProfileStore: Send + Sync {
    /// Saves a profile under a name, replacing any profile of that name atomically.
    ///
    /// # Errors
    /// [`ConfigError::InvalidProfile`] when the profile breaks a rule of [`Profile::check`]
    /// (nothing is written), or [`ConfigError::Io`].
    fn save_profile(&self, name: &ProfileName, profile: &Profile) -> Result<(), ConfigError>;

    /// Loads a saved profile.
    ///
    /// # Errors
    /// [`ConfigError::NotFound`], [`ConfigError::InvalidFile`] or
    /// [`ConfigError::UnknownProvider`] naming the file, or [`ConfigError::Io`].
    fn load_profile(&self, name: &ProfileName) -> Result<Profile, ConfigError>;

    /// The names of the saved profiles, sorted.
    ///
    /// # Errors
    /// [`ConfigError::Io`] when the profiles cannot be listed.
    fn list_profiles(&self) -> Result<Vec<ProfileName>, ConfigError>;

    /// Deletes a saved profile.
    ///
    /// # Errors
    /// [`ConfigError::NotFound`] when there is no such profile, or [`ConfigError::Io`].
    fn delete_profile(&self, name: &ProfileName) -> Result<(), ConfigError>;
}

/// Reads API keys from files the user names (`--keyfile`, `/keyfile`).
pub trait KeyFiles: Send + Sync {
    /// The API key in a key file (`--keyfile`, `/keyfile`), without its surrounding white space.
    ///
    /// # Errors
    /// [`ConfigError::Io`] when the file cannot be read, [`ConfigError::InvalidFile`] when it
    /// holds no key or is not text.
    fn read_key_file(&self, path: &str) -> Result<Secret, ConfigError>;
}
