//! Settings and profiles: `settings.json`, environment overrides, `--set`, `profiles/*.json`.
//!
//! Settings are layered, each layer overriding the one before: the real providers' defaults,
//! `$LLXPRT_HOME/settings.json` (a missing file is no overrides), `LLXPRT_…` environment
//! variables with `__` between levels (`LLXPRT_PROVIDERS__ANTHROPIC__BASE_URL`, the `config`
//! crate's convention), then the command line's `--set NAME=VALUE`. The environment is handed in
//! as a map, so nothing here reads the process's own.
//!
//! Writes (`/auth P enable`, `/profile set-default`, `/profile save`) replace whole files
//! atomically: a temporary file in the same directory, flushed to disk, then renamed over the
//! old one. Settings keys llxprt does not know survive a rewrite. Profiles may hold keys, so
//! their files are `0600`.

mod dto;
mod files;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use llxprt_application::ports::{ConfigError, KeyFiles, ProfileStore, SettingsStore};
use llxprt_application::settings::Settings;
use llxprt_domain::{OAuthProvider, Profile, ProfileName, Secret};
use serde_json::{Map, Value};

use dto::{ProfileDto, ProfileProblem, SettingsDto, PROVIDER_SECTIONS, PROVIDER_SECTIONS_TEXT};
use files::{io_error, read_optional, redact, write_atomically, SettingsLock};

/// The variable that chooses the home directory; it is not a setting.
const HOME_VARIABLE: &str = "LLXPRT_HOME";

/// The prefix of the environment variables that override settings.
const ENV_PREFIX: &str = "LLXPRT_";

/// `settings.json` as read: its text, for the `config` crate, and its JSON object, for checks
/// and rewrites.
struct SettingsFile {
    text: String,
    root: Map<String, Value>,
}

/// Settings and profiles kept as files under `$LLXPRT_HOME`.
#[derive(Debug, Clone)]
pub struct FileConfigStore {
    home: PathBuf,
    env: BTreeMap<String, String>,
    overrides: Vec<(String, String)>,
}

impl FileConfigStore {
    /// A store rooted at `home` (`$LLXPRT_HOME`), overridden by the `LLXPRT_…` variables of `env`
    /// (other variables are ignored, so the whole process environment may be passed) and then by
    /// the command line's `--set` pairs, in order.
    pub fn new(
        home: PathBuf,
        env: BTreeMap<String, String>,
        overrides: Vec<(String, String)>,
    ) -> Self {
        Self {
            home,
            env,
            overrides,
        }
    }

    /// The directory everything is kept under.
    pub fn home(&self) -> &Path {
        &self.home
    }

    fn settings_path(&self) -> PathBuf {
        self.home.join("settings.json")
    }

    fn profiles_dir(&self) -> PathBuf {
        self.home.join("profiles")
    }

    fn profile_path(&self, name: &ProfileName) -> PathBuf {
        // A profile name cannot hold a separator or be `.`/`..`, so this stays in the folder.
        self.profiles_dir().join(format!("{name}.json"))
    }

    /// The `LLXPRT_…` variables that are settings, with unknown provider names refused here,
    /// where the variable can still be named.
    fn settings_env(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut vars = BTreeMap::new();
        for (key, value) in &self.env {
            let upper = key.to_ascii_uppercase();
            let Some(rest) = upper.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if upper == HOME_VARIABLE {
                continue;
            }
            let rest = rest.to_ascii_lowercase();
            let mut levels = rest.split("__");
            if let (Some(section), Some(provider)) = (levels.next(), levels.next()) {
                check_provider_name(section, provider, || format!("environment variable {key}"))?;
            }
            vars.insert(key.clone(), value.clone());
        }
        Ok(vars)
    }

    /// Reads `settings.json`, which must hold a JSON object; `None` when there is no file.
    fn read_settings_file(&self) -> Result<Option<SettingsFile>, ConfigError> {
        let path = self.settings_path();
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let invalid = |reason: String| ConfigError::InvalidFile {
            path: path.display().to_string(),
            reason: redact(&reason),
        };
        match serde_json::from_str::<Value>(&text).map_err(|e| invalid(e.to_string()))? {
            Value::Object(root) => Ok(Some(SettingsFile { text, root })),
            _ => Err(invalid("the settings must be a JSON object".to_owned())),
        }
    }

    /// Rewrites `settings.json` with one change, under a lock so that two processes changing
    /// different keys at once both keep their change.
    fn update_settings_file(
        &self,
        change: impl FnOnce(&mut Map<String, Value>) -> Result<(), String>,
    ) -> Result<(), ConfigError> {
        files::create_private_dir(&self.home)?;
        let _lock = SettingsLock::take(&self.home.join("settings.json.lock"))?;
        let path = self.settings_path();
        let mut root = self
            .read_settings_file()?
            .map(|file| file.root)
            .unwrap_or_default();
        change(&mut root).map_err(|reason| ConfigError::InvalidFile {
            path: path.display().to_string(),
            reason,
        })?;
        let mut text =
            serde_json::to_string_pretty(&Value::Object(root)).map_err(|e| io_error(&path, &e))?;
        text.push('\n');
        write_atomically(&path, text.as_bytes())
    }
}

/// Refuses a provider name under `oauth_enabled` or `providers` that llxprt does not know, so a
/// typo is reported rather than silently ignored.
fn check_provider_name(
    section: &str,
    provider: &str,
    origin: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    let valid = match (section, provider.parse::<OAuthProvider>()) {
        ("oauth_enabled", Err(unknown)) => unknown.valid,
        ("providers", _) if !PROVIDER_SECTIONS.contains(&provider) => PROVIDER_SECTIONS_TEXT,
        _ => return Ok(()),
    };
    Err(ConfigError::UnknownProvider {
        path: origin(),
        section: section.to_owned(),
        given: provider.to_owned(),
        valid,
    })
}

impl SettingsStore for FileConfigStore {
    fn load_settings(&self) -> Result<Settings, ConfigError> {
        let path = self.settings_path();
        let file = self.read_settings_file()?;
        let mut layers = Config::builder();
        if let Some(SettingsFile { text, root }) = &file {
            // The file is checked on its own first, so that its mistakes are reported against
            // it rather than against the merged result.
            for section in ["oauth_enabled", "providers"] {
                if let Some(Value::Object(entries)) = root.get(section) {
                    for provider in entries.keys() {
                        check_provider_name(section, provider, || path.display().to_string())?;
                    }
                }
            }
            serde_json::from_str::<SettingsDto>(text)
                .map_err(|e| e.to_string())
                .and_then(SettingsDto::into_settings)
                .map_err(|reason| ConfigError::InvalidFile {
                    path: path.display().to_string(),
                    reason: redact(&reason),
                })?;
            layers = layers.add_source(File::from_str(text, FileFormat::Json));
        }
        let env = self.settings_env()?;
        layers = layers.add_source(
            Environment::with_prefix(ENV_PREFIX.trim_end_matches('_'))
                .prefix_separator("_")
                .separator("__")
                .source(Some(env.into_iter().collect())),
        );
        // The file alone was valid, so what fails now came from the environment.
        let invalid_env = |reason: String| ConfigError::InvalidEnvironment {
            origin: format!("the {ENV_PREFIX}… environment variables"),
            reason: redact(&reason),
        };
        let mut settings = layers
            .build()
            .and_then(Config::try_deserialize::<SettingsDto>)
            .map_err(|e| invalid_env(e.to_string()))?
            .into_settings()
            .map_err(invalid_env)?;
        for (name, value) in &self.overrides {
            settings
                .apply(name, value)
                .map_err(ConfigError::InvalidOverride)?;
        }
        Ok(settings)
    }

    fn set_oauth_enabled(&self, provider: OAuthProvider, enabled: bool) -> Result<(), ConfigError> {
        self.update_settings_file(|root| {
            let section = root
                .entry("oauth_enabled")
                .or_insert_with(|| Value::Object(Map::new()));
            match section {
                Value::Object(section) => {
                    section.insert(provider.as_str().to_owned(), Value::Bool(enabled));
                    Ok(())
                }
                _ => Err("oauth_enabled must be a JSON object".to_owned()),
            }
        })
    }

    fn set_default_profile(&self, name: Option<&ProfileName>) -> Result<(), ConfigError> {
        if let Some(name) = name {
            if !self.profile_path(name).is_file() {
                return Err(ConfigError::NotFound(name.clone()));
            }
        }
        self.update_settings_file(|root| {
            match name {
                Some(name) => root.insert("default_profile".to_owned(), name.as_str().into()),
                None => root.remove("default_profile"),
            };
            Ok(())
        })
    }
}

impl ProfileStore for FileConfigStore {
    fn save_profile(&self, name: &ProfileName, profile: &Profile) -> Result<(), ConfigError> {
        profile.check(name)?;
        let path = self.profile_path(name);
        let mut text = serde_json::to_string_pretty(&ProfileDto::from_profile(profile))
            .map_err(|e| io_error(&path, &e))?;
        text.push('\n');
        files::create_private_dir(&self.home)?;
        files::create_private_dir(&self.profiles_dir())?;
        write_atomically(&path, text.as_bytes())
    }

    fn load_profile(&self, name: &ProfileName) -> Result<Profile, ConfigError> {
        let path = self.profile_path(name);
        let text = read_optional(&path)?.ok_or_else(|| ConfigError::NotFound(name.clone()))?;
        let file = path.display().to_string();
        let invalid = |reason: String| ConfigError::InvalidFile {
            path: file.clone(),
            reason: redact(&reason),
        };
        serde_json::from_str::<ProfileDto>(&text)
            .map_err(|e| invalid(e.to_string()))?
            .into_profile(name)
            .map_err(|problem| match problem {
                ProfileProblem::UnknownProvider(unknown) => ConfigError::UnknownProvider {
                    path: file.clone(),
                    section: "provider".to_owned(),
                    given: unknown.given,
                    valid: unknown.valid,
                },
                ProfileProblem::Invalid(reason) => invalid(reason),
            })
    }

    fn list_profiles(&self) -> Result<Vec<ProfileName>, ConfigError> {
        let dir = self.profiles_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, &e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let file_name = entry.map_err(|e| io_error(&dir, &e))?.file_name();
            // Temporary files of an interrupted save and anything a user dropped here that
            // could not be a profile's file are not profiles.
            let name = file_name
                .to_str()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|stem| ProfileName::parse(stem).ok());
            names.extend(name);
        }
        names.sort();
        Ok(names)
    }

    fn delete_profile(&self, name: &ProfileName) -> Result<(), ConfigError> {
        let path = self.profile_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ConfigError::NotFound(name.clone()))
            }
            Err(e) => Err(io_error(&path, &e)),
        }
    }
}

impl KeyFiles for FileConfigStore {
    fn read_key_file(&self, path: &str) -> Result<Secret, ConfigError> {
        const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
        let path = Path::new(path);
        let invalid = |reason: &str| ConfigError::InvalidFile {
            path: path.display().to_string(),
            reason: reason.to_owned(),
        };
        // A FIFO is an error, not a hang; a key file others can change is not your key.
        let bytes = llxprt_fs::read_regular(path, llxprt_fs::Links::Follow, MAX_KEY_FILE_BYTES)
            .map_err(|(p, e)| io_error(&p, &e))?
            .ok_or_else(|| io_error(path, &std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        let text = String::from_utf8(bytes).map_err(|_| invalid("not a text file"))?;
        let key = text.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(invalid("expected one API key and nothing else"));
        }
        Ok(Secret::new(key))
    }
}
