//! Credential assembly: which credential a request to a provider uses, from every source a
//! session knows (its key, the loaded profile, the settings, the environment, OAuth), decided
//! by the domain's precedence rules.

use std::collections::BTreeMap;

use llxprt_domain::precedence::{resolve_credential, Credential, CredentialSources};
use llxprt_domain::{ChatProvider, Profile, Secret};

use crate::settings::Settings;

/// What a caller knows when it asks for a credential.
#[derive(Debug, Clone, Copy)]
pub struct CredentialContext<'a> {
    /// The provider the request goes to.
    pub provider: ChatProvider,
    /// The session's active provider: the settings' `auth-key` belongs to it.
    pub active: ChatProvider,
    /// The key given on the command line or in the session, with the provider it belongs to.
    pub session_key: Option<&'a (ChatProvider, Secret)>,
    /// The settings in effect.
    pub settings: &'a Settings,
    /// The loaded model profile, if any: its key and buckets belong to its provider.
    pub profile: Option<&'a Profile>,
}

/// Assembles the credential sources of a request and resolves them.
#[derive(Debug, Clone, Default)]
pub struct CredentialService {
    env: BTreeMap<String, String>,
}

impl CredentialService {
    /// A service reading API key variables from `env` (the process environment, as text).
    pub fn new(env: BTreeMap<String, String>) -> Self {
        Self { env }
    }

    /// The credential a request to `context.provider` would use now. A session key belongs to
    /// the provider that was active when it was given; the profile's key to the profile's
    /// provider; the settings' `auth-key` to the active provider; environment variables and
    /// OAuth are per provider.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use llxprt_application::services::{CredentialContext, CredentialService};
    /// use llxprt_application::settings::Settings;
    /// use llxprt_domain::ChatProvider;
    ///
    /// let env = BTreeMap::from([("ANTHROPIC_API_KEY".to_owned(), "sk-test".to_owned())]);
    /// let credential = CredentialService::new(env).credential(CredentialContext {
    ///     provider: ChatProvider::Anthropic,
    ///     active: ChatProvider::Anthropic,
    ///     session_key: None,
    ///     settings: &Settings::default(),
    ///     profile: None,
    /// });
    /// assert_eq!(credential.method(), "api-key");
    /// ```
    pub fn credential(&self, context: CredentialContext<'_>) -> Credential {
        let CredentialContext {
            provider,
            active,
            session_key,
            settings,
            profile,
        } = context;
        let (profile_key, profile_buckets) = match profile {
            Some(Profile::Model {
                provider: p,
                key,
                buckets,
                ..
            }) if *p == provider => (key.clone(), buckets.clone()),
            _ => (None, Vec::new()),
        };
        let env = provider
            .api_key_env_vars()
            .iter()
            .map(|var| (*var, self.env.get(*var).map(Secret::new)))
            .collect();
        resolve_credential(CredentialSources {
            provider,
            command_line: session_key
                .filter(|(owner, _)| *owner == provider)
                .map(|(_, key)| key.clone()),
            profile_key,
            settings_key: settings.auth_key.clone().filter(|_| active == provider),
            env,
            oauth_enabled: settings.is_oauth_enabled(provider.oauth_provider()),
            profile_buckets,
        })
    }
}
