//! The typed settings every service reads, with the real providers' values as defaults, and the
//! `NAME=VALUE` overrides of `--set` and `/set`.
//!
//! Where the values come from (`settings.json`, `LLXPRT_…` environment variables) is the
//! [`SettingsStore`](crate::ports::SettingsStore)'s business; this module only knows their meaning.

use std::collections::BTreeMap;

use llxprt_domain::{OAuthProvider, ProfileName, Secret};

/// Everything llxprt can be told through `settings.json`, the environment or `--set`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Settings {
    /// Lazy OAuth per provider (`/auth P enable`); a provider missing here is disabled.
    pub oauth_enabled: BTreeMap<OAuthProvider, bool>,
    /// The profile loaded at start.
    pub default_profile: Option<ProfileName>,
    /// A key for the active provider (`auth-key`); it outranks the environment and OAuth.
    pub auth_key: Option<Secret>,
    /// Endpoints and OAuth clients of each provider.
    pub providers: ProviderSettings,
    /// `idle_timeout_secs`: how long a reply may send nothing before it is given up (a stalled
    /// stream); [`Settings::IDLE_TIMEOUT_SECS`] when unset. A reply that keeps coming is never
    /// cut off, however long it takes.
    pub idle_timeout_secs: Option<u64>,
    /// Where tokens are kept (`storage.*`).
    pub storage: StorageSettings,
    /// `failover.switch_at_percent`: a bucket whose provider reports any of its windows at or
    /// above this share used is passed over until that window resets; 100 when unset.
    pub switch_at_percent: Option<u8>,
}

/// `storage`: which token store, and its key and address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageSettings {
    /// `storage.backend`.
    pub backend: StorageBackend,
    /// `storage.key_file`: the storage key's file (`LLXPRT_STORAGE_KEY_FILE` outranks it).
    pub key_file: Option<String>,
    /// `storage.url`: the team store's address.
    pub url: Option<String>,
}

/// Where OAuth tokens live (`storage.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum StorageBackend {
    /// Plain JSON files, `0600` in a `0700` directory.
    #[default]
    File,
    /// The operating system's keyring, one entry per provider and bucket.
    Keyring,
    /// Files sealed with the storage key.
    Encrypted,
    /// The keyring where one answers, else encrypted files with a key file.
    Auto,
    /// The team store: PostgreSQL at `storage.url`, tokens sealed with the storage key.
    Postgres,
}

impl StorageBackend {
    /// Every backend, in the order users are shown them.
    pub const ALL: [StorageBackend; 5] = [
        Self::File,
        Self::Keyring,
        Self::Encrypted,
        Self::Auto,
        Self::Postgres,
    ];

    /// The name `settings.json` and `/storage migrate` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Keyring => "keyring",
            Self::Encrypted => "encrypted",
            Self::Auto => "auto",
            Self::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for StorageBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `storage.backend` that llxprt does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown storage backend '{0}'; expected file, keyring, encrypted, auto or postgres")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for StorageBackend {
    type Err = UnknownBackend;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|b| b.as_str() == text)
            .ok_or(UnknownBackend(text))
    }
}

impl Settings {
    /// The idle limit of a reply when `idle_timeout_secs` is not set.
    pub const IDLE_TIMEOUT_SECS: u64 = 120;

    /// How long a reply may send nothing before it is given up.
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.idle_timeout_secs
                .unwrap_or(Self::IDLE_TIMEOUT_SECS)
                .max(1),
        )
    }
}

/// Endpoints and OAuth clients of every provider, by the names `settings.json` uses.
///
/// `Default` gives the real providers' values; tests, the sandbox and enterprise proxies point
/// them elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderSettings {
    /// `providers.anthropic`.
    pub anthropic: AnthropicSettings,
    /// `providers.gemini`.
    pub gemini: GeminiSettings,
    /// `providers.qwen`.
    pub qwen: QwenSettings,
    /// `providers.codex`: the ChatGPT subscription behind provider `openai` with OAuth.
    pub codex: CodexSettings,
    /// `providers.openai`: the API-key side of provider `openai`.
    pub openai: OpenAiSettings,
}

impl ProviderSettings {
    /// The real providers' endpoints and clients; the same as `Default`.
    pub fn real_defaults() -> Self {
        Self::default()
    }
}

/// `providers.anthropic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicSettings {
    /// The Messages API base; requests go to `{base_url}/v1/messages`.
    pub base_url: String,
    /// The authorization-code flow whose code the user pastes.
    pub oauth: AnthropicOAuthSettings,
}

/// `providers.anthropic.oauth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicOAuthSettings {
    /// Where the user's browser is sent to consent.
    pub authorize_url: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_url: String,
    /// The public client id.
    pub client_id: String,
    /// The page that shows the user the code to paste.
    pub redirect_uri: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

impl Default for AnthropicSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.anthropic.com".into(),
            oauth: AnthropicOAuthSettings {
                authorize_url: "https://claude.ai/oauth/authorize".into(),
                token_url: "https://platform.claude.com/v1/oauth/token".into(),
                client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".into(),
                redirect_uri: "https://platform.claude.com/oauth/code/callback".into(),
                scopes: words("org:create_api_key user:profile user:inference"),
            },
        }
    }
}

/// `providers.gemini`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiSettings {
    /// The API-key base; requests go to `{base_url}/v1beta/models/{model}:generateContent`.
    pub base_url: String,
    /// The Code Assist base used with OAuth: `{code_assist_base_url}/v1internal:…`.
    pub code_assist_base_url: String,
    /// The Google Cloud project of a Workspace or Code Assist Standard/Enterprise account
    /// (`providers.gemini.project`); the composition root falls back to `GOOGLE_CLOUD_PROJECT`,
    /// then `GOOGLE_CLOUD_PROJECT_ID`.
    pub project: Option<String>,
    /// The browser flow with a loopback redirect.
    pub oauth: GeminiOAuthSettings,
}

/// `providers.gemini.oauth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiOAuthSettings {
    /// Where the user's browser is sent to consent.
    pub authorize_url: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_url: String,
    /// The installed-app client id.
    pub client_id: String,
    /// The installed-app client secret. Google documents it as not secret, but it is kept out of
    /// logs like any other credential.
    pub client_secret: Secret,
    /// Where the browser is sent when there is no browser on this machine (`--nobrowser`, no
    /// display, SSH): a page that shows the code to paste.
    pub manual_redirect_uri: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

impl Default for GeminiSettings {
    fn default() -> Self {
        Self {
            base_url: "https://generativelanguage.googleapis.com".into(),
            code_assist_base_url: "https://cloudcode-pa.googleapis.com".into(),
            project: None,
            oauth: GeminiOAuthSettings {
                authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
                token_url: "https://oauth2.googleapis.com/token".into(),
                client_id:
                    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
                        .into(),
                client_secret: Secret::new("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"),
                manual_redirect_uri: "https://codeassist.google.com/authcode".into(),
                scopes: words(
                    "https://www.googleapis.com/auth/cloud-platform \
                     https://www.googleapis.com/auth/userinfo.email \
                     https://www.googleapis.com/auth/userinfo.profile",
                ),
            },
        }
    }
}

/// `providers.qwen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QwenSettings {
    /// The API-key (DashScope) base; with OAuth the token's `resource_url` gives the base instead.
    pub base_url: String,
    /// The device authorization grant.
    pub oauth: QwenOAuthSettings,
}

/// `providers.qwen.oauth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QwenOAuthSettings {
    /// Where the device code is requested.
    pub device_authorization_url: String,
    /// Where the device code is polled and refresh tokens are exchanged.
    pub token_url: String,
    /// The public client id.
    pub client_id: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

impl Default for QwenSettings {
    fn default() -> Self {
        Self {
            base_url: "https://dashscope.aliyuncs.com/compatible-mode/v1".into(),
            oauth: QwenOAuthSettings {
                device_authorization_url: "https://chat.qwen.ai/api/v1/oauth2/device/code".into(),
                token_url: "https://chat.qwen.ai/api/v1/oauth2/token".into(),
                client_id: "f0304373b74a44d2b584a3fb70ca9e56".into(),
                scopes: words("openid profile email model.completion"),
            },
        }
    }
}

/// `providers.codex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexSettings {
    /// The Responses API base; requests go to `{base_url}/responses`.
    pub base_url: String,
    /// The browser flow on a fixed loopback port.
    pub oauth: CodexOAuthSettings,
}

/// `providers.codex.oauth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexOAuthSettings {
    /// The issuer: `{issuer}/oauth/authorize`, `{issuer}/oauth/token` and the device login.
    pub issuer: String,
    /// The public client id.
    pub client_id: String,
    /// The loopback port of the redirect; the provider only allows 1455 and 1457.
    pub callback_port: u16,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

impl Default for CodexSettings {
    fn default() -> Self {
        Self {
            base_url: "https://chatgpt.com/backend-api/codex".into(),
            oauth: CodexOAuthSettings {
                issuer: "https://auth.openai.com".into(),
                client_id: "app_EMoamEEZ73f0CkXaXp7hrann".into(),
                callback_port: 1455,
                scopes: words("openid profile email offline_access"),
            },
        }
    }
}

/// `providers.openai`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiSettings {
    /// The chat completions base used with an API key: `{base_url}/chat/completions`.
    pub base_url: String,
}

impl Default for OpenAiSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
        }
    }
}

/// Splits a scope list as users write it: separated by spaces or commas.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A `--set` or `/set` override was refused. The messages never repeat the value, which may be
/// a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    /// `--set` text without `=`.
    #[error("expected NAME=VALUE, e.g. auth-key=KEY or providers.anthropic.base_url=URL")]
    NotAnAssignment,
    /// No setting has that name.
    #[error("unknown setting '{name}'; {hint}")]
    Unknown {
        /// The name as given.
        name: String,
        /// The valid names nearest to it.
        hint: String,
    },
    /// The setting exists but the value does not fit it.
    #[error("invalid value for {name}: {reason}")]
    BadValue {
        /// The setting's name as given.
        name: String,
        /// What the value must look like.
        reason: String,
    },
}

/// Splits `--set NAME=VALUE` at the first `=`.
///
/// # Errors
/// [`SettingError::NotAnAssignment`] when there is no `=` or no name before it.
pub fn split_assignment(text: &str) -> Result<(&str, &str), SettingError> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim(), value)),
        _ => Err(SettingError::NotAnAssignment),
    }
}

impl Settings {
    /// Every name `--set` and `/set` accept, as `settings.json` spells the keys (dotted for
    /// nesting). `-` and `_` are interchangeable when typed.
    pub const NAMES: &'static [&'static str] = &[
        "auth-key",
        "default_profile",
        "oauth_enabled.anthropic",
        "oauth_enabled.gemini",
        "oauth_enabled.qwen",
        "oauth_enabled.codex",
        "providers.anthropic.base_url",
        "providers.anthropic.oauth.authorize_url",
        "providers.anthropic.oauth.token_url",
        "providers.anthropic.oauth.client_id",
        "providers.anthropic.oauth.redirect_uri",
        "providers.anthropic.oauth.scopes",
        "providers.gemini.base_url",
        "providers.gemini.code_assist_base_url",
        "providers.gemini.project",
        "providers.gemini.oauth.authorize_url",
        "providers.gemini.oauth.token_url",
        "providers.gemini.oauth.client_id",
        "providers.gemini.oauth.client_secret",
        "providers.gemini.oauth.manual_redirect_uri",
        "providers.gemini.oauth.scopes",
        "providers.qwen.base_url",
        "providers.qwen.oauth.device_authorization_url",
        "providers.qwen.oauth.token_url",
        "providers.qwen.oauth.client_id",
        "providers.qwen.oauth.scopes",
        "providers.codex.base_url",
        "providers.codex.oauth.issuer",
        "providers.codex.oauth.client_id",
        "providers.codex.oauth.callback_port",
        "providers.codex.oauth.scopes",
        "providers.openai.base_url",
        "storage.backend",
        "storage.key_file",
        "storage.url",
        "failover.switch_at_percent",
    ];

    /// The share of a window at which requests move on to another bucket
    /// (`failover.switch_at_percent`, default 100).
    pub fn switch_at_percent(&self) -> u8 {
        self.switch_at_percent.unwrap_or(100)
    }

    /// Whether lazy OAuth is enabled for a provider.
    pub fn is_oauth_enabled(&self, provider: OAuthProvider) -> bool {
        self.oauth_enabled.get(&provider).copied().unwrap_or(false)
    }

    /// Applies one `NAME=VALUE` override, as `--set` and the REPL's session-only `/set` do.
    ///
    /// An empty value clears `auth-key` and `default_profile`; every other setting needs a
    /// value. Scopes are separated by spaces or commas; switches take `true`/`false` (also
    /// `on`/`off`, `yes`/`no`, `1`/`0`).
    ///
    /// # Errors
    /// [`SettingError::Unknown`] with the nearest valid names, or [`SettingError::BadValue`];
    /// the settings are then unchanged.
    pub fn apply(&mut self, name: &str, value: &str) -> Result<(), SettingError> {
        let key = name.replace('-', "_");
        let p = &mut self.providers;
        match key.as_str() {
            "auth_key" => self.auth_key = Some(Secret::new(value)).filter(|k| !k.is_empty()),
            "default_profile" if value.is_empty() => self.default_profile = None,
            "default_profile" => {
                let profile = ProfileName::parse(value).map_err(|e| bad(name, e))?;
                self.default_profile = Some(profile);
            }
            "providers.anthropic.base_url" => p.anthropic.base_url = text(name, value)?,
            "providers.anthropic.oauth.authorize_url" => {
                p.anthropic.oauth.authorize_url = text(name, value)?;
            }
            "providers.anthropic.oauth.token_url" => {
                p.anthropic.oauth.token_url = text(name, value)?;
            }
            "providers.anthropic.oauth.client_id" => {
                p.anthropic.oauth.client_id = text(name, value)?;
            }
            "providers.anthropic.oauth.redirect_uri" => {
                p.anthropic.oauth.redirect_uri = text(name, value)?;
            }
            "providers.anthropic.oauth.scopes" => p.anthropic.oauth.scopes = words(value),
            "providers.gemini.base_url" => p.gemini.base_url = text(name, value)?,
            "providers.gemini.code_assist_base_url" => {
                p.gemini.code_assist_base_url = text(name, value)?;
            }
            "providers.gemini.project" => {
                p.gemini.project = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            }
            "providers.gemini.oauth.manual_redirect_uri" => {
                p.gemini.oauth.manual_redirect_uri = text(name, value)?;
            }
            "providers.gemini.oauth.authorize_url" => {
                p.gemini.oauth.authorize_url = text(name, value)?;
            }
            "providers.gemini.oauth.token_url" => p.gemini.oauth.token_url = text(name, value)?,
            "providers.gemini.oauth.client_id" => p.gemini.oauth.client_id = text(name, value)?,
            "providers.gemini.oauth.client_secret" => {
                p.gemini.oauth.client_secret = Secret::new(text(name, value)?);
            }
            "providers.gemini.oauth.scopes" => p.gemini.oauth.scopes = words(value),
            "providers.qwen.base_url" => p.qwen.base_url = text(name, value)?,
            "providers.qwen.oauth.device_authorization_url" => {
                p.qwen.oauth.device_authorization_url = text(name, value)?;
            }
            "providers.qwen.oauth.token_url" => p.qwen.oauth.token_url = text(name, value)?,
            "providers.qwen.oauth.client_id" => p.qwen.oauth.client_id = text(name, value)?,
            "providers.qwen.oauth.scopes" => p.qwen.oauth.scopes = words(value),
            "providers.codex.base_url" => p.codex.base_url = text(name, value)?,
            "providers.codex.oauth.issuer" => p.codex.oauth.issuer = text(name, value)?,
            "providers.codex.oauth.client_id" => p.codex.oauth.client_id = text(name, value)?,
            "providers.codex.oauth.callback_port" => {
                p.codex.oauth.callback_port = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(name, "expected a port number from 0 to 65535"))?;
            }
            "providers.codex.oauth.scopes" => p.codex.oauth.scopes = words(value),
            "providers.openai.base_url" => p.openai.base_url = text(name, value)?,
            "storage.backend" => {
                self.storage.backend = value.parse().map_err(|e| bad(name, e))?;
            }
            "storage.key_file" => self.storage.key_file = Some(text(name, value)?),
            "storage.url" => self.storage.url = Some(text(name, value)?),
            "failover.switch_at_percent" => {
                self.switch_at_percent = Some(parse_percent(value).map_err(|e| bad(name, e))?);
            }
            "idle_timeout_secs" => {
                self.idle_timeout_secs = Some(
                    value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|&secs| secs > 0)
                        .ok_or_else(|| bad(name, "expected a whole number of seconds above 0"))?,
                );
            }
            _ => {
                let provider = key
                    .strip_prefix("oauth_enabled.")
                    .and_then(|p| p.parse::<OAuthProvider>().ok())
                    .ok_or_else(|| unknown(name))?;
                self.oauth_enabled.insert(provider, switch(name, value)?);
            }
        }
        Ok(())
    }
}

fn bad(name: &str, reason: impl ToString) -> SettingError {
    SettingError::BadValue {
        name: name.to_owned(),
        reason: reason.to_string(),
    }
}

fn text(name: &str, value: &str) -> Result<String, SettingError> {
    match value.trim() {
        "" => Err(bad(name, "a value is needed")),
        value => Ok(value.to_owned()),
    }
}

fn switch(name: &str, value: &str) -> Result<bool, SettingError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(bad(name, "expected true or false")),
    }
}

/// The error for an unknown name, listing the valid names under the longest dotted prefix the
/// name shares with them, so `providers.anthropic.oauth.foo` lists Anthropic's OAuth settings
/// rather than all thirty.
fn unknown(name: &str) -> SettingError {
    let normalized = name.replace('-', "_");
    let known = |prefix: &str| -> Vec<&'static str> {
        Settings::NAMES
            .iter()
            .copied()
            .filter(|n| n.replace('-', "_").starts_with(prefix))
            .collect()
    };
    let segments: Vec<&str> = normalized.split('.').collect();
    let prefix = (0..=segments.len())
        .rev()
        .map(|n| {
            segments[..n]
                .iter()
                .map(|s| format!("{s}."))
                .collect::<String>()
        })
        .find(|prefix| !known(prefix).is_empty())
        .unwrap_or_default();
    let mut children: Vec<String> = Vec::new();
    for full in known(&prefix) {
        let rest = &full[prefix.len()..];
        let child = match rest.split_once('.') {
            Some((segment, _)) => format!("{segment}.…"),
            None => rest.to_owned(),
        };
        if !children.contains(&child) {
            children.push(child);
        }
    }
    let place = match prefix.strip_suffix('.') {
        Some(parent) => format!("valid names under '{parent}' are"),
        None => "valid names are".to_owned(),
    };
    SettingError::Unknown {
        name: name.to_owned(),
        hint: format!("{place}: {}", children.join(", ")),
    }
}

/// A `failover.switch_at_percent` value: a whole share from 1 to 100 (a `%` after it is
/// allowed).
///
/// # Errors
/// What the value should have been.
pub fn parse_percent(value: &str) -> Result<u8, &'static str> {
    value
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or("expected a whole percentage from 1 to 100")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_real_providers() {
        let s = Settings::default();
        assert_eq!(s.providers.anthropic.base_url, "https://api.anthropic.com");
        assert_eq!(
            s.providers.qwen.oauth.device_authorization_url,
            "https://chat.qwen.ai/api/v1/oauth2/device/code"
        );
        assert_eq!(s.providers.codex.oauth.callback_port, 1455);
        assert_eq!(
            s.providers.anthropic.oauth.scopes,
            ["org:create_api_key", "user:profile", "user:inference"]
        );
        assert_eq!(s.providers.gemini.oauth.scopes.len(), 3);
        // Out of the box every endpoint is a real service's, over TLS: nothing on loopback or
        // in plain HTTP, where a local process could pose as the provider.
        let p = &s.providers;
        for url in [
            &p.anthropic.base_url,
            &p.anthropic.oauth.authorize_url,
            &p.anthropic.oauth.token_url,
            &p.anthropic.oauth.redirect_uri,
            &p.gemini.base_url,
            &p.gemini.code_assist_base_url,
            &p.gemini.oauth.authorize_url,
            &p.gemini.oauth.token_url,
            &p.qwen.base_url,
            &p.qwen.oauth.device_authorization_url,
            &p.qwen.oauth.token_url,
            &p.codex.base_url,
            &p.codex.oauth.issuer,
            &p.openai.base_url,
        ] {
            assert!(url.starts_with("https://"), "{url} is not TLS");
            assert!(
                !["localhost", "127.0.0.1", "[::1]"]
                    .iter()
                    .any(|host| url.contains(host)),
                "{url} is on loopback"
            );
        }
        assert!(OAuthProvider::ALL.iter().all(|p| !s.is_oauth_enabled(*p)));
        assert_eq!(s.auth_key, None);
    }

    #[test]
    fn every_listed_name_can_be_set() {
        for name in Settings::NAMES {
            let value = match *name {
                n if n.starts_with("oauth_enabled.") => "true",
                "providers.codex.oauth.callback_port" => "1457",
                "default_profile" => "team-claude",
                "storage.backend" => "keyring",
                "failover.switch_at_percent" => "90",
                _ => "http://127.0.0.1:9/x",
            };
            let mut s = Settings::default();
            s.apply(name, value)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_ne!(s, Settings::default(), "{name} changed nothing");
        }
    }

    #[test]
    fn overrides_reach_their_field() {
        let mut s = Settings::default();
        s.apply("auth-key", "sk-test").unwrap();
        s.apply("oauth_enabled.gemini", "true").unwrap();
        s.apply("providers.anthropic.base_url", "http://127.0.0.1:1")
            .unwrap();
        s.apply("providers.codex.oauth.callback_port", "1457")
            .unwrap();
        s.apply("providers.qwen.oauth.scopes", "openid, profile email")
            .unwrap();
        s.apply("default-profile", "team").unwrap();
        assert_eq!(s.auth_key.as_ref().map(Secret::expose), Some("sk-test"));
        assert!(s.is_oauth_enabled(OAuthProvider::Gemini));
        assert!(!s.is_oauth_enabled(OAuthProvider::Anthropic));
        assert_eq!(s.providers.anthropic.base_url, "http://127.0.0.1:1");
        assert_eq!(s.providers.codex.oauth.callback_port, 1457);
        assert_eq!(
            s.providers.qwen.oauth.scopes,
            ["openid", "profile", "email"]
        );
        assert_eq!(s.default_profile.as_ref().map(|p| p.as_str()), Some("team"));

        s.apply("auth_key", "").unwrap();
        s.apply("default_profile", "").unwrap();
        s.apply("oauth_enabled.gemini", "off").unwrap();
        assert_eq!(s.auth_key, None);
        assert_eq!(s.default_profile, None);
        assert!(!s.is_oauth_enabled(OAuthProvider::Gemini));
    }

    #[test]
    fn an_unknown_name_lists_the_nearest_valid_ones() {
        let mut s = Settings::default();
        let err = s
            .apply("providers.anthropic.oauth.secret", "x")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown setting 'providers.anthropic.oauth.secret'; valid names under \
             'providers.anthropic.oauth' are: authorize_url, token_url, client_id, redirect_uri, scopes"
        );
        let err = s.apply("providers.claude.base_url", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown setting 'providers.claude.base_url'; valid names under 'providers' are: \
             anthropic.…, gemini.…, qwen.…, codex.…, openai.…"
        );
        let err = s.apply("colour", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown setting 'colour'; valid names are: auth-key, default_profile, \
             oauth_enabled.…, providers.…, storage.…, failover.…"
        );
        let err = s.apply("oauth_enabled.openai", "true").unwrap_err();
        assert!(
            err.to_string().contains("anthropic, gemini, qwen, codex"),
            "{err}"
        );
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn a_bad_value_is_refused_without_repeating_it() {
        let mut s = Settings::default();
        for (name, value) in [
            ("oauth_enabled.gemini", "sk-looks-like-a-key"),
            ("providers.codex.oauth.callback_port", "sk-looks-like-a-key"),
            ("providers.openai.base_url", "  "),
            ("default_profile", "../sk-looks-like-a-key"),
        ] {
            let err = s.apply(name, value).unwrap_err();
            assert!(matches!(err, SettingError::BadValue { .. }), "{err:?}");
            assert!(!err.to_string().contains("sk-looks"), "{err}");
        }
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn an_assignment_splits_at_the_first_equals_sign() {
        assert_eq!(split_assignment("auth-key=a=b"), Ok(("auth-key", "a=b")));
        assert_eq!(split_assignment("auth-key="), Ok(("auth-key", "")));
        assert_eq!(
            split_assignment("sk-secret"),
            Err(SettingError::NotAnAssignment)
        );
        assert_eq!(split_assignment("=x"), Err(SettingError::NotAnAssignment));
    }
}
