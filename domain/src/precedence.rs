//! Which credential a request to a chat provider uses, and why (cli.md "Authentication
//! precedence").
//!
//! The order, highest first: the command line (`--key`, `--keyfile`, `--set auth-key`, and their
//! REPL forms), the loaded profile's key, `settings.json`'s `auth-key`, the provider's API key
//! environment variables in order, and last OAuth, only when it is enabled for the provider or
//! the profile names buckets. A lower source is never consulted when a higher one is present, so
//! with any key no browser ever opens: an [`OAuthPlan`], which every lazy login requires, can only
//! come out of [`resolve_credential`], and only when no key exists.

use std::fmt;

use crate::bucket::BucketName;
use crate::provider::{ChatProvider, OAuthProvider};
use crate::secret::Secret;

/// Everything that may hold a credential for one chat provider, as the caller found it.
///
/// A value that is empty or only white space counts as absent, wherever it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSources {
    /// The provider the request goes to.
    pub provider: ChatProvider,
    /// The key given by `--key`, `--keyfile` or `--set auth-key` (or `/key`, `/keyfile`,
    /// `/set auth-key` in the REPL): one source, whichever of them set it last.
    pub command_line: Option<Secret>,
    /// The key stored in the loaded profile.
    pub profile_key: Option<Secret>,
    /// `settings.json`'s `auth-key`.
    pub settings_key: Option<Secret>,
    /// The provider's API key environment variables with their values, highest precedence first
    /// (the order of [`ChatProvider::api_key_env_vars`]).
    pub env: Vec<(&'static str, Option<Secret>)>,
    /// Whether OAuth is enabled for the provider (`/auth P enable`).
    pub oauth_enabled: bool,
    /// The buckets the loaded profile lists, primary first; empty when it names none.
    pub profile_buckets: Vec<BucketName>,
}

/// Where an API key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// `--key`, `--keyfile`, `--set auth-key` or their REPL forms.
    CommandLine,
    /// The loaded profile.
    Profile,
    /// `settings.json`'s `auth-key`.
    Settings,
    /// The named environment variable.
    Environment(&'static str),
}

/// Shown after `api-key from `: `command line`, `profile`, `settings.json auth-key`, or the
/// variable's name.
impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CommandLine => f.write_str("command line"),
            Self::Profile => f.write_str("profile"),
            Self::Settings => f.write_str("settings.json auth-key"),
            Self::Environment(name) => f.write_str(name),
        }
    }
}

/// The permission to use OAuth for one provider: the provider and the buckets to try, in order.
///
/// Only [`resolve_credential`] makes one, and only when no API key is present. Services require
/// `&OAuthPlan` to start a lazy login, so code holding a key has no way to open a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthPlan {
    provider: OAuthProvider,
    buckets: Vec<BucketName>,
    named_by_profile: bool,
}

impl OAuthPlan {
    /// The OAuth provider that signs in for the chat provider.
    pub fn provider(&self) -> OAuthProvider {
        self.provider
    }

    /// The buckets to try, primary first, without repeats. Never empty: the default bucket when
    /// the profile names none.
    pub fn buckets(&self) -> &[BucketName] {
        &self.buckets
    }

    /// Whether the buckets came from the profile (rather than being the default bucket).
    pub fn named_by_profile(&self) -> bool {
        self.named_by_profile
    }
}

/// The credential a request uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key, with leading and trailing white space removed.
    ApiKey {
        /// The key.
        key: Secret,
        /// Where it came from.
        source: KeySource,
    },
    /// OAuth tokens from the plan's buckets.
    OAuth(OAuthPlan),
    /// Nothing: no key anywhere and OAuth neither enabled nor named by the profile.
    None,
}

impl Credential {
    /// The method `/auth` shows: `api-key`, `oauth` or `none`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::ApiKey { .. } => "api-key",
            Self::OAuth(_) => "oauth",
            Self::None => "none",
        }
    }

    /// Why this credential was chosen, for `/auth`: `api-key from ANTHROPIC_API_KEY`,
    /// `oauth: enabled`, `oauth: profile buckets work1, work2`, `none: no key and OAuth not
    /// enabled`. Never contains the key.
    pub fn why(&self) -> String {
        match self {
            Self::ApiKey { source, .. } => format!("api-key from {source}"),
            Self::OAuth(plan) if plan.named_by_profile => {
                let names: Vec<&str> = plan.buckets.iter().map(BucketName::as_str).collect();
                format!("oauth: profile buckets {}", names.join(", "))
            }
            Self::OAuth(_) => "oauth: enabled".to_owned(),
            Self::None => "none: no key and OAuth not enabled".to_owned(),
        }
    }
}

/// Decides the credential for one provider from its sources, highest precedence first.
///
/// OAuth is chosen when it is enabled or the profile names buckets, and only when no key is
/// present. Repeated profile buckets are kept once, at their first place.
///
/// ```
/// use llxprt_domain::{resolve_credential, BucketName, ChatProvider, Credential, CredentialSources, KeySource, Secret};
///
/// let work = BucketName::parse("work@example.com").unwrap();
/// let sources = CredentialSources {
///     provider: ChatProvider::Anthropic,
///     command_line: None,
///     profile_key: None,
///     settings_key: None,
///     env: vec![("ANTHROPIC_API_KEY", None)],
///     oauth_enabled: false,
///     profile_buckets: vec![work.clone()],
/// };
/// // No key anywhere, and the profile names a bucket: OAuth over that bucket.
/// match resolve_credential(sources.clone()) {
///     Credential::OAuth(plan) => assert_eq!(plan.buckets(), [work]),
///     other => panic!("expected OAuth, got {other:?}"),
/// }
///
/// // Any key outranks OAuth, and the command line outranks the environment.
/// let keyed = CredentialSources {
///     command_line: Some(Secret::new("  sk-from-flag ")),
///     env: vec![("ANTHROPIC_API_KEY", Some(Secret::new("sk-from-env")))],
///     ..sources
/// };
/// match resolve_credential(keyed) {
///     Credential::ApiKey { key, source } => {
///         assert_eq!(key.expose(), "sk-from-flag");
///         assert_eq!(source, KeySource::CommandLine);
///     }
///     other => panic!("expected the command line's key, got {other:?}"),
/// }
/// ```
pub fn resolve_credential(sources: CredentialSources) -> Credential {
    let keys = [
        (KeySource::CommandLine, sources.command_line),
        (KeySource::Profile, sources.profile_key),
        (KeySource::Settings, sources.settings_key),
    ]
    .into_iter()
    .chain(
        sources
            .env
            .into_iter()
            .map(|(name, value)| (KeySource::Environment(name), value)),
    );
    for (source, value) in keys {
        if let Some(key) = value.as_ref().and_then(present) {
            return Credential::ApiKey { key, source };
        }
    }

    let named_by_profile = !sources.profile_buckets.is_empty();
    if !(sources.oauth_enabled || named_by_profile) {
        return Credential::None;
    }
    let mut buckets: Vec<BucketName> = Vec::with_capacity(sources.profile_buckets.len().max(1));
    for bucket in sources.profile_buckets {
        if !buckets.contains(&bucket) {
            buckets.push(bucket);
        }
    }
    if buckets.is_empty() {
        buckets.push(BucketName::default_bucket());
    }
    Credential::OAuth(OAuthPlan {
        provider: sources.provider.oauth_provider(),
        buckets,
        named_by_profile,
    })
}

/// The key without surrounding white space, or `None` when nothing else is left.
fn present(value: &Secret) -> Option<Secret> {
    let trimmed = value.expose().trim();
    (!trimmed.is_empty()).then(|| Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sources(provider: ChatProvider) -> CredentialSources {
        CredentialSources {
            provider,
            command_line: None,
            profile_key: None,
            settings_key: None,
            env: provider
                .api_key_env_vars()
                .iter()
                .map(|name| (*name, None))
                .collect(),
            oauth_enabled: false,
            profile_buckets: Vec::new(),
        }
    }

    fn bucket(name: &str) -> BucketName {
        BucketName::parse(name).unwrap()
    }

    fn key_of(credential: &Credential) -> Option<(&str, KeySource)> {
        match credential {
            Credential::ApiKey { key, source } => Some((key.expose(), *source)),
            _ => None,
        }
    }

    #[test]
    fn nothing_configured_means_no_credential() {
        let credential = resolve_credential(sources(ChatProvider::Anthropic));
        assert_eq!(credential, Credential::None);
        assert_eq!(credential.method(), "none");
    }

    #[test]
    fn an_environment_key_is_used_and_named() {
        let mut s = sources(ChatProvider::Anthropic);
        s.env = vec![("ANTHROPIC_API_KEY", Some(Secret::new("sk-env")))];
        s.oauth_enabled = true;
        let credential = resolve_credential(s);
        assert_eq!(
            key_of(&credential),
            Some(("sk-env", KeySource::Environment("ANTHROPIC_API_KEY")))
        );
        assert_eq!(credential.why(), "api-key from ANTHROPIC_API_KEY");
        assert_eq!(credential.method(), "api-key");
    }

    #[test]
    fn environment_variables_are_taken_in_their_order() {
        let mut s = sources(ChatProvider::Gemini);
        s.env = vec![
            ("GEMINI_API_KEY", Some(Secret::new("  \n"))),
            ("GOOGLE_API_KEY", Some(Secret::new("g-key"))),
        ];
        assert_eq!(
            key_of(&resolve_credential(s.clone())),
            Some(("g-key", KeySource::Environment("GOOGLE_API_KEY")))
        );
        s.env[0].1 = Some(Secret::new("gem-key"));
        assert_eq!(
            key_of(&resolve_credential(s)),
            Some(("gem-key", KeySource::Environment("GEMINI_API_KEY")))
        );
    }

    #[test]
    fn a_key_loses_its_surrounding_white_space() {
        let mut s = sources(ChatProvider::OpenAi);
        s.command_line = Some(Secret::new(" sk-file\n"));
        assert_eq!(
            key_of(&resolve_credential(s)),
            Some(("sk-file", KeySource::CommandLine))
        );
    }

    #[test]
    fn enabled_oauth_plans_the_default_bucket_of_the_signing_provider() {
        let mut s = sources(ChatProvider::OpenAi);
        s.oauth_enabled = true;
        let credential = resolve_credential(s);
        let Credential::OAuth(plan) = &credential else {
            panic!("expected OAuth, got {credential:?}");
        };
        assert_eq!(plan.provider(), OAuthProvider::Codex);
        assert_eq!(plan.buckets(), [BucketName::default_bucket()]);
        assert!(!plan.named_by_profile());
        assert_eq!(credential.why(), "oauth: enabled");
    }

    #[test]
    fn profile_buckets_choose_oauth_even_when_it_is_disabled() {
        let mut s = sources(ChatProvider::Anthropic);
        s.profile_buckets = vec![bucket("work1"), bucket("work2"), bucket("work1")];
        let credential = resolve_credential(s);
        let Credential::OAuth(plan) = &credential else {
            panic!("expected OAuth, got {credential:?}");
        };
        assert_eq!(plan.buckets(), [bucket("work1"), bucket("work2")]);
        assert_eq!(credential.why(), "oauth: profile buckets work1, work2");
    }

    #[test]
    fn the_reason_never_shows_the_key() {
        let mut s = sources(ChatProvider::Qwen);
        s.settings_key = Some(Secret::new("sk-very-secret"));
        let credential = resolve_credential(s);
        assert_eq!(credential.why(), "api-key from settings.json auth-key");
        assert!(!format!("{credential:?}").contains("sk-very-secret"));
    }

    /// One value a source may hold: absent, blank, or a key.
    fn source_value() -> impl Strategy<Value = Option<Secret>> {
        prop_oneof![
            Just(None),
            "[ \t\r\n]{0,3}".prop_map(|s| Some(Secret::new(s))),
            "[ \n]{0,2}[A-Za-z0-9-]{1,12}[ \n]{0,2}".prop_map(|s| Some(Secret::new(s))),
        ]
    }

    fn any_sources() -> impl Strategy<Value = CredentialSources> {
        (
            prop::sample::select(ChatProvider::ALL.to_vec()),
            source_value(),
            source_value(),
            source_value(),
            prop::collection::vec(source_value(), 2),
            any::<bool>(),
            prop::collection::vec("[a-c]{1,2}", 0..4),
        )
            .prop_map(
                |(provider, command_line, profile_key, settings_key, env, enabled, buckets)| {
                    CredentialSources {
                        provider,
                        command_line,
                        profile_key,
                        settings_key,
                        env: provider
                            .api_key_env_vars()
                            .iter()
                            .copied()
                            .zip(env)
                            .collect(),
                        oauth_enabled: enabled,
                        profile_buckets: buckets.iter().map(|b| bucket(b)).collect(),
                    }
                },
            )
    }

    fn is_key(value: &Option<Secret>) -> bool {
        value
            .as_ref()
            .is_some_and(|v| !v.expose().trim().is_empty())
    }

    proptest! {
        #[test]
        fn with_any_key_present_oauth_is_never_chosen(s in any_sources()) {
            let any_key = is_key(&s.command_line)
                || is_key(&s.profile_key)
                || is_key(&s.settings_key)
                || s.env.iter().any(|(_, v)| is_key(v));
            let credential = resolve_credential(s);
            if any_key {
                prop_assert!(
                    matches!(credential, Credential::ApiKey { .. }),
                    "chose {:?} with a key present", credential
                );
            }
        }

        #[test]
        fn each_key_source_beats_all_lower_ones(s in any_sources()) {
            let mut ranked = vec![
                (KeySource::CommandLine, s.command_line.clone()),
                (KeySource::Profile, s.profile_key.clone()),
                (KeySource::Settings, s.settings_key.clone()),
            ];
            ranked.extend(s.env.iter().map(|(n, v)| (KeySource::Environment(n), v.clone())));
            let highest = ranked.into_iter().find(|(_, v)| is_key(v));
            let credential = resolve_credential(s);
            match highest {
                Some((source, value)) => {
                    let expected = value.map(|v| v.expose().trim().to_owned());
                    prop_assert_eq!(
                        key_of(&credential).map(|(k, s)| (k.to_owned(), s)),
                        expected.map(|k| (k, source))
                    );
                }
                None => prop_assert!(key_of(&credential).is_none()),
            }
        }

        #[test]
        fn without_a_key_oauth_is_chosen_exactly_when_enabled_or_buckets_are_named(
            mut s in any_sources()
        ) {
            s.command_line = None;
            s.profile_key = None;
            s.settings_key = None;
            for (_, v) in &mut s.env {
                *v = None;
            }
            let wants_oauth = s.oauth_enabled || !s.profile_buckets.is_empty();
            let first_named = s.profile_buckets.first().cloned();
            match resolve_credential(s) {
                Credential::OAuth(plan) => {
                    prop_assert!(wants_oauth);
                    prop_assert!(!plan.buckets().is_empty());
                    let expected_first = first_named.unwrap_or_else(BucketName::default_bucket);
                    prop_assert_eq!(&plan.buckets()[0], &expected_first);
                }
                Credential::None => prop_assert!(!wants_oauth),
                other => prop_assert!(false, "chose {:?} with no key", other),
            }
        }
    }
}
