//! The JSON shapes of `settings.json` and `profiles/{name}.json`, and their conversion to the
//! application's types. Every field is optional: what is missing keeps its default.

use std::collections::BTreeMap;

use llxprt_application::settings::{parse_percent, Settings};
use llxprt_domain::{
    BucketName, ChatProvider, LoadBalancePolicy, OAuthProvider, Profile, ProfileName, Secret,
    UnknownProvider,
};
use serde::{Deserialize, Serialize};

/// `settings.json`, or the same keys merged from the environment by the `config` crate.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SettingsDto {
    oauth_enabled: Option<BTreeMap<String, bool>>,
    default_profile: Option<String>,
    /// `auth-key` as the file spells it.
    #[serde(rename = "auth-key")]
    auth_key_dashed: Option<String>,
    /// `LLXPRT_AUTH_KEY` arrives as `auth_key`, since variable names cannot hold `-`. Both keys
    /// land in one merged map, so this spelling wins: it can only have come from the
    /// environment, which outranks the file, or from a file that used it alone.
    auth_key: Option<String>,
    providers: Option<ProvidersDto>,
    idle_timeout_secs: Option<u64>,
    storage: Option<StorageDto>,
    failover: Option<FailoverDto>,
}

/// `failover`.
#[derive(Debug, Default, Deserialize)]
struct FailoverDto {
    /// A number in the file; text when it comes from the environment.
    switch_at_percent: Option<serde_json::Value>,
}

/// `storage`.
#[derive(Debug, Default, Deserialize)]
struct StorageDto {
    backend: Option<String>,
    key_file: Option<String>,
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProvidersDto {
    anthropic: Option<ProviderDto>,
    gemini: Option<ProviderDto>,
    qwen: Option<ProviderDto>,
    codex: Option<ProviderDto>,
    openai: Option<ProviderDto>,
}

/// One provider's block. The providers share one shape; a key another provider uses is ignored
/// like any other key llxprt does not know.
#[derive(Debug, Default, Deserialize)]
struct ProviderDto {
    base_url: Option<String>,
    code_assist_base_url: Option<String>,
    project: Option<String>,
    oauth: Option<OAuthDto>,
}

#[derive(Debug, Default, Deserialize)]
struct OAuthDto {
    authorize_url: Option<String>,
    token_url: Option<String>,
    device_authorization_url: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uri: Option<String>,
    manual_redirect_uri: Option<String>,
    callback_port: Option<u16>,
    scopes: Option<ScopesDto>,
}

/// Scopes as a list, or as one string separated by spaces or commas (the form an environment
/// variable can carry).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopesDto {
    List(Vec<String>),
    Text(String),
}

impl ScopesDto {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::List(list) => list,
            Self::Text(text) => text
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// The provider names `providers` accepts: the four OAuth providers and `openai`'s key side.
pub(super) const PROVIDER_SECTIONS: [&str; 5] = ["anthropic", "gemini", "qwen", "codex", "openai"];

/// The valid `providers` names, as error messages list them.
pub(super) const PROVIDER_SECTIONS_TEXT: &str = "anthropic, gemini, qwen, codex, openai";

fn replace<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

impl SettingsDto {
    /// The settings these keys describe, defaults filling every gap.
    ///
    /// Provider names were checked before deserialising, so an unknown one cannot reach here.
    pub(super) fn into_settings(self) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (name, enabled) in self.oauth_enabled.unwrap_or_default() {
            let provider = name.parse::<OAuthProvider>().map_err(|e| e.to_string())?;
            settings.oauth_enabled.insert(provider, enabled);
        }
        settings.default_profile = match self.default_profile.as_deref() {
            None | Some("") => None,
            Some(name) => {
                Some(ProfileName::parse(name).map_err(|e| format!("default_profile: {e}"))?)
            }
        };
        settings.auth_key = self
            .auth_key
            .or(self.auth_key_dashed)
            .map(Secret::new)
            .filter(|k| !k.is_empty());

        let storage = self.storage.unwrap_or_default();
        if let Some(backend) = storage.backend {
            settings.storage.backend = backend
                .parse()
                .map_err(|e| format!("storage.backend: {e}"))?;
        }
        settings.storage.key_file = storage.key_file.filter(|f| !f.trim().is_empty());
        settings.storage.url = storage.url.filter(|u| !u.trim().is_empty());

        if let Some(value) = self.failover.and_then(|f| f.switch_at_percent) {
            let text = match &value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            settings.switch_at_percent =
                Some(parse_percent(&text).map_err(|e| format!("failover.switch_at_percent: {e}"))?);
        }
        settings.idle_timeout_secs = match self.idle_timeout_secs {
            Some(0) => return Err("idle_timeout_secs: expected seconds above 0".to_owned()),
            other => other,
        };
        let dto = self.providers.unwrap_or_default();
        let p = &mut settings.providers;
        if let Some(dto) = dto.anthropic {
            let oauth = dto.oauth.unwrap_or_default();
            replace(&mut p.anthropic.base_url, dto.base_url);
            replace(&mut p.anthropic.oauth.authorize_url, oauth.authorize_url);
            replace(&mut p.anthropic.oauth.token_url, oauth.token_url);
            replace(&mut p.anthropic.oauth.client_id, oauth.client_id);
            replace(&mut p.anthropic.oauth.redirect_uri, oauth.redirect_uri);
            replace(
                &mut p.anthropic.oauth.scopes,
                oauth.scopes.map(ScopesDto::into_vec),
            );
        }
        if let Some(dto) = dto.gemini {
            let oauth = dto.oauth.unwrap_or_default();
            replace(&mut p.gemini.base_url, dto.base_url);
            replace(&mut p.gemini.code_assist_base_url, dto.code_assist_base_url);
            if let Some(project) = dto.project.filter(|p| !p.trim().is_empty()) {
                p.gemini.project = Some(project);
            }
            replace(
                &mut p.gemini.oauth.manual_redirect_uri,
                oauth.manual_redirect_uri,
            );
            replace(&mut p.gemini.oauth.authorize_url, oauth.authorize_url);
            replace(&mut p.gemini.oauth.token_url, oauth.token_url);
            replace(&mut p.gemini.oauth.client_id, oauth.client_id);
            replace(
                &mut p.gemini.oauth.client_secret,
                oauth.client_secret.map(Secret::new),
            );
            replace(
                &mut p.gemini.oauth.scopes,
                oauth.scopes.map(ScopesDto::into_vec),
            );
        }
        if let Some(dto) = dto.qwen {
            let oauth = dto.oauth.unwrap_or_default();
            replace(&mut p.qwen.base_url, dto.base_url);
            replace(
                &mut p.qwen.oauth.device_authorization_url,
                oauth.device_authorization_url,
            );
            replace(&mut p.qwen.oauth.token_url, oauth.token_url);
            replace(&mut p.qwen.oauth.client_id, oauth.client_id);
            replace(
                &mut p.qwen.oauth.scopes,
                oauth.scopes.map(ScopesDto::into_vec),
            );
        }
        if let Some(dto) = dto.codex {
            let oauth = dto.oauth.unwrap_or_default();
            replace(&mut p.codex.base_url, dto.base_url);
            replace(&mut p.codex.oauth.issuer, oauth.issuer);
            replace(&mut p.codex.oauth.client_id, oauth.client_id);
            replace(&mut p.codex.oauth.callback_port, oauth.callback_port);
            replace(
                &mut p.codex.oauth.scopes,
                oauth.scopes.map(ScopesDto::into_vec),
            );
        }
        if let Some(dto) = dto.openai {
            replace(&mut p.openai.base_url, dto.base_url);
        }
        Ok(settings)
    }
}

/// `profiles/{name}.json`:
///
/// ```json
/// {"type": "model", "provider": "anthropic", "model": "claude-sonnet-4-5",
///  "auth-key": "…", "buckets": ["work1@company.com", "work2@company.com"]}
/// {"type": "loadbalancer", "policy": "failover", "profiles": ["claude-team", "gemini-team"]}
/// ```
///
/// `model` and `auth-key` are left out when unset; `buckets` are in priority order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum ProfileDto {
    Model {
        provider: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(rename = "auth-key", default, skip_serializing_if = "Option::is_none")]
        auth_key: Option<String>,
        #[serde(default)]
        buckets: Vec<String>,
    },
    #[serde(rename = "loadbalancer")]
    LoadBalancer {
        policy: String,
        profiles: Vec<String>,
    },
}

/// Why a profile file's content is not a profile.
pub(super) enum ProfileProblem {
    /// The provider is not one llxprt knows.
    UnknownProvider(UnknownProvider),
    /// Anything else, in words.
    Invalid(String),
}

impl ProfileDto {
    pub(super) fn from_profile(profile: &Profile) -> Self {
        match profile {
            Profile::Model {
                provider,
                model,
                key,
                buckets,
            } => Self::Model {
                provider: provider.as_str().to_owned(),
                model: model.clone(),
                // The one place a profile's key leaves its `Secret`: to be written to a 0600 file.
                auth_key: key.as_ref().map(|k| k.expose().to_owned()),
                buckets: buckets.iter().map(|b| b.as_str().to_owned()).collect(),
            },
            Profile::LoadBalancer { policy, members } => Self::LoadBalancer {
                policy: policy.as_str().to_owned(),
                profiles: members.iter().map(|m| m.as_str().to_owned()).collect(),
            },
        }
    }

    pub(super) fn into_profile(self, name: &ProfileName) -> Result<Profile, ProfileProblem> {
        let profile = match self {
            Self::Model {
                provider,
                model,
                auth_key,
                buckets,
            } => Profile::Model {
                provider: provider
                    .parse::<ChatProvider>()
                    .map_err(ProfileProblem::UnknownProvider)?,
                model: model.filter(|m| !m.is_empty()),
                key: auth_key.map(Secret::new).filter(|k| !k.is_empty()),
                buckets: buckets
                    .iter()
                    .map(|b| BucketName::parse(b))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ProfileProblem::Invalid(format!("buckets: {e}")))?,
            },
            Self::LoadBalancer { policy, profiles } => Profile::LoadBalancer {
                policy: policy
                    .parse::<LoadBalancePolicy>()
                    .map_err(|e| ProfileProblem::Invalid(e.to_string()))?,
                members: profiles
                    .iter()
                    .map(|p| ProfileName::parse(p))
                    .collect::<Result<_, _>>()
                    .map_err(|e| ProfileProblem::Invalid(format!("profiles: {e}")))?,
            },
        };
        profile
            .check(name)
            .map_err(|e| ProfileProblem::Invalid(e.to_string()))?;
        Ok(profile)
    }
}
