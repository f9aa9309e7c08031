//! The session: what a REPL session changes (provider, model, session key, `/set` overrides,
//! the loaded profile, the conversation) and a typed operation for every slash command and
//! message, over the services.
//!
//! Every operation returns a typed result or a [`SessionError`]; the text shell that front ends
//! drive ([`crate::shell::Shell`]) is implemented over these in [`crate::presenter`], which
//! renders them as the lines of `cli.md`. A program that embeds the core calls the typed
//! operations and never parses text.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use llxprt_domain::failover::BucketStatus;
use llxprt_domain::loadbalance::UnknownPolicy;
use llxprt_domain::precedence::Credential;
use llxprt_domain::stats::StatsTotals;
use llxprt_domain::{
    bucket_status, BucketId, BucketName, ChatProvider, InvalidProfileName, OAuthProvider, Profile,
    ProfileName, ReportedLimits, Secret, UnixSeconds,
};

use crate::commands::{self, LogoutTarget};
use crate::ports::{
    ChatMessage, Clock, ConfigError, KeyFiles, LoginMethod, PersistenceError, ProfileStore, Role,
    SettingsStore, StoreCatalog, StoreError, UserPrompt,
};
use crate::services::{
    migrate, AuthError, AuthService, ChatService, CredentialContext, CredentialService,
    MessageError, MessageService, MessageTarget, MigrateError, SendError,
};
use crate::settings::{SettingError, Settings, StorageBackend};

/// What a session starts with, from the command line.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SessionOptions {
    /// `--provider`.
    pub provider: Option<ChatProvider>,
    /// `--model`.
    pub model: Option<String>,
    /// `--key`, `--keyfile` or `--set auth-key`, already read.
    pub key: Option<Secret>,
}

impl SessionOptions {
    /// Options with the command line's provider, model and key.
    pub fn new(provider: Option<ChatProvider>, model: Option<String>, key: Option<Secret>) -> Self {
        Self {
            provider,
            model,
            key,
        }
    }
}

/// The services a session drives.
#[derive(Clone)]
pub struct SessionServices {
    /// Settings.
    pub settings: Arc<dyn SettingsStore>,
    /// Saved profiles.
    pub profiles: Arc<dyn ProfileStore>,
    /// Key files.
    pub key_files: Arc<dyn KeyFiles>,
    /// Login and logout.
    pub auth: Arc<AuthService>,
    /// Sending messages.
    pub chat: Arc<ChatService>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The process environment (API key variables are read from it).
    pub env: BTreeMap<String, String>,
    /// The token stores, for `/storage` and `/storage migrate`.
    pub storage: Arc<dyn StoreCatalog>,
}

/// Why a session operation failed. Its message is the one line shown after `Error: `, except
/// for [`SendError::Exhausted`], whose report a front end renders bucket by bucket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Settings, a profile or a key file could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A setting's value was refused.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// Signing in or out failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A message got no reply.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The statistics could not be read.
    #[error(transparent)]
    Persistence(#[from] PersistenceError),
    /// The token store could not be reached or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A migration between token stores stopped; every bucket not moved is still where it was.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// A loadbalancer policy llxprt does not know.
    #[error(transparent)]
    Policy(#[from] UnknownPolicy),
    /// A profile name that breaks the naming rules.
    #[error("invalid profile name '{given}': {reason}")]
    InvalidProfileName {
        /// What was typed, shortened.
        given: String,
        /// Which rule it breaks.
        reason: InvalidProfileName,
    },
    /// `/auth P logout BUCKET` of a bucket that holds no token.
    #[error("{}", no_such_bucket(*provider, name, existing))]
    NoSuchBucket {
        /// The provider.
        provider: OAuthProvider,
        /// The bucket asked for.
        name: BucketName,
        /// The buckets that do hold a token.
        existing: Vec<BucketName>,
    },
    /// A model profile naming a bucket that holds no token.
    #[error(
        "bucket {bucket} does not exist for {provider}; run /auth {provider} login {bucket} first"
    )]
    MissingBucket {
        /// The provider.
        provider: OAuthProvider,
        /// The bucket named.
        bucket: BucketName,
    },
    /// A loadbalancer naming another loadbalancer.
    #[error("{0} is a loadbalancer profile; a loadbalancer lists model profiles")]
    NestedLoadBalancer(ProfileName),
    /// `/set` of a setting read only at start.
    #[error("{0} is read at start; pass --set {0}=VALUE or put it in settings.json")]
    ReadAtStart(String),
    /// `/key` alone, and no key came (the question was cancelled, or the answer was empty).
    #[error("no key set: {0}")]
    NoKeyGiven(String),
    /// `/set default_profile`.
    #[error("the default profile is not a session setting; use /profile set-default {0}")]
    DefaultProfileIsNotASessionSetting(String),
}

impl SessionError {
    /// The send failure inside, if this is one.
    pub fn send_error(&self) -> Option<&SendError> {
        match self {
            Self::Message(MessageError::Send(error)) => Some(error),
            _ => None,
        }
    }
}

/// The one-line error for a bucket that has no tokens, naming those that do.
fn no_such_bucket(provider: OAuthProvider, name: &BucketName, existing: &[BucketName]) -> String {
    if existing.is_empty() {
        return format!("{provider} has no bucket '{name}' (nothing is logged in); sign in with /auth {provider} login [BUCKET]");
    }
    let names: Vec<&str> = existing.iter().map(BucketName::as_str).collect();
    format!(
        "{provider} has no bucket '{name}'; its buckets are: {} (or use --all)",
        names.join(", ")
    )
}

/// A reply to a message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reply {
    /// The reply's text.
    pub text: String,
    /// Whether the text was already shown piece by piece as it arrived.
    pub streamed: bool,
}

/// The state of the token a provider would use, for `/auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSummary {
    /// No OAuth token is involved (a key, or nothing).
    NotUsed,
    /// A usable token that expires in this many seconds.
    ExpiresIn(i64),
    /// Expired; a refresh will renew it.
    ExpiredWillRefresh,
    /// Every bucket is cooling down; the first one ends then.
    CoolingUntil(UnixSeconds),
    /// The provider refuses the account to llxprt.
    Refused(llxprt_domain::failover::RefusalCause),
    /// No usable bucket is signed in.
    NotLoggedIn,
}

/// One provider's line of `/auth`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProviderAuth {
    /// The provider.
    pub provider: OAuthProvider,
    /// The credential a request would use.
    pub credential: Credential,
    /// Whether lazy OAuth is enabled.
    pub oauth_enabled: bool,
    /// Whether a request would find a credential to use now.
    pub usable: bool,
    /// The token in use, when OAuth is.
    pub token: TokenSummary,
    /// Buckets signed in although OAuth is off (so nothing uses them).
    pub unused_buckets: Vec<BucketName>,
}

/// One bucket of `/auth P status`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BucketLine {
    /// The bucket.
    pub name: BucketName,
    /// Its status, or why its token could not be read.
    pub status: Result<BucketStatus, String>,
    /// The latest limits its provider reported, when it reported any.
    pub limits: Option<ReportedLimits>,
}

/// One bucket of `/stats quota`: the latest limits its provider reported.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuotaLine {
    /// The bucket.
    pub bucket: BucketId,
    /// What its provider reported, and when.
    pub limits: ReportedLimits,
}

/// A finished sign-in.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoggedIn {
    /// The bucket signed in.
    pub bucket: BucketId,
    /// Seconds until its access token expires.
    pub seconds_left: i64,
}

/// One saved profile of `/profile list`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProfileEntry {
    /// Its name.
    pub name: ProfileName,
    /// Whether it loads at start.
    pub is_default: bool,
    /// The profile, or why it cannot be read.
    pub profile: Result<Profile, ConfigError>,
}

/// Where tokens are kept and what the store holds (`/storage`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StorageReport {
    /// The store in use, in one phrase (backend, where, where its key is).
    pub summary: String,
    /// The buckets it holds, per provider that has any.
    pub buckets: Vec<(OAuthProvider, Vec<BucketName>)>,
}

/// What `/storage migrate BACKEND` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migrated {
    /// The tokens already were in that store; only the setting changed.
    AlreadyThere {
        /// The store, in one phrase.
        summary: String,
    },
    /// Every bucket moved.
    Moved {
        /// How many buckets moved.
        count: usize,
        /// The new store, in one phrase.
        summary: String,
    },
}

/// What `/set NAME VALUE` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetOutcome {
    /// The session key of this provider was set (or cleared by an empty value).
    AuthKey(ChatProvider),
    /// The setting holds for the rest of the session.
    Setting(String),
}

#[derive(Default)]
struct State {
    provider: Option<ChatProvider>,
    model: Option<String>,
    /// The key given on the command line or with `/key`, `/keyfile`, `/set auth-key`, and the
    /// provider that was active then: a key for one provider is never sent to another.
    session_key: Option<(ChatProvider, Secret)>,
    overrides: Vec<(String, String)>,
    profile: Option<(ProfileName, Profile)>,
    conversation: Vec<ChatMessage>,
}

/// One user's session.
pub struct Session {
    pub(crate) services: SessionServices,
    messages: MessageService,
    state: Mutex<State>,
}

impl Session {
    /// A session with the command line's choices. The profile named by `--profile`, else the
    /// default profile, is loaded by [`Session::start`].
    pub fn new(services: SessionServices, options: SessionOptions) -> Self {
        let state = State {
            provider: options.provider,
            model: options.model,
            session_key: options
                .key
                .map(|key| (options.provider.unwrap_or(ChatProvider::Anthropic), key)),
            ..State::default()
        };
        let messages = MessageService::new(
            services.chat.clone(),
            services.profiles.clone(),
            CredentialService::new(services.env.clone()),
        );
        Self {
            services,
            messages,
            state: Mutex::new(state),
        }
    }

    /// Loads the start-up profile (`--profile`, else the settings' default profile), keeping
    /// `--provider` and `--model` over the profile's. A command-line key belongs to the provider
    /// active once the profile is loaded.
    ///
    /// # Errors
    /// [`SessionError::Config`] when the settings or the profile cannot be loaded.
    pub fn start(&self, profile: Option<ProfileName>) -> Result<(), SessionError> {
        let settings = self.settings()?;
        let Some(name) = profile.or(settings.default_profile) else {
            return Ok(());
        };
        let loaded = self.services.profiles.load_profile(&name)?;
        let mut state = self.state();
        let (provider, model) = (state.provider, state.model.clone());
        Self::apply_profile(&mut state, name, loaded);
        state.provider = provider.or(state.provider);
        state.model = model.or(state.model.take());
        let active = state.provider.unwrap_or(ChatProvider::Anthropic);
        if let Some((owner, _)) = &mut state.session_key {
            *owner = active;
        }
        Ok(())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings in effect: the store's, with the session's `/set` overrides.
    ///
    /// # Errors
    /// [`SessionError::Config`] or [`SessionError::Setting`].
    pub fn settings(&self) -> Result<Settings, SessionError> {
        let mut settings = self.services.settings.load_settings()?;
        for (name, value) in &self.state().overrides {
            settings.apply(name, value)?;
        }
        Ok(settings)
    }

    /// The active provider.
    pub fn provider(&self) -> ChatProvider {
        self.state().provider.unwrap_or(ChatProvider::Anthropic)
    }

    /// The active model.
    pub fn model(&self) -> String {
        let state = self.state();
        let provider = state.provider.unwrap_or(ChatProvider::Anthropic);
        state
            .model
            .clone()
            .unwrap_or_else(|| provider.default_model().to_owned())
    }

    /// The time, as the session's clock tells it.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.services.clock
    }

    /// Makes `provider` active; a change of provider resets the model and the conversation.
    /// Returns the provider's default model.
    pub fn set_provider(&self, provider: ChatProvider) -> &'static str {
        let mut state = self.state();
        if state.provider != Some(provider) {
            state.model = None;
            state.conversation.clear();
        }
        state.provider = Some(provider);
        provider.default_model()
    }

    /// Sets the active model.
    pub fn set_model(&self, model: String) {
        self.state().model = Some(model);
    }

    /// Sets the session key for the active provider (`/key`), and returns that provider.
    pub fn set_key(&self, key: Secret) -> ChatProvider {
        let provider = self.provider();
        self.state().session_key = Some((provider, key));
        provider
    }

    /// Reads the session key for the active provider from a key file (`/keyfile`), and returns
    /// that provider.
    ///
    /// # Errors
    /// [`SessionError::Config`] when the file cannot be read or holds no key.
    pub fn set_key_file(&self, path: &str) -> Result<ChatProvider, SessionError> {
        let key = self.services.key_files.read_key_file(path)?;
        Ok(self.set_key(key))
    }

    /// Turns lazy OAuth on or off for `provider`, persistently.
    ///
    /// # Errors
    /// [`SessionError::Config`] when the settings cannot be written.
    pub fn set_oauth_enabled(
        &self,
        provider: OAuthProvider,
        enabled: bool,
    ) -> Result<(), SessionError> {
        Ok(self
            .services
            .settings
            .set_oauth_enabled(provider, enabled)?)
    }

    /// The credential a request to `provider` would use now, with the loaded profile.
    pub fn credential(&self, settings: &Settings, provider: ChatProvider) -> Credential {
        let state = self.state();
        let profile = state.profile.as_ref().map(|(_, p)| p);
        self.messages.credentials().credential(CredentialContext {
            provider,
            active: state.provider.unwrap_or(ChatProvider::Anthropic),
            session_key: state.session_key.as_ref(),
            settings,
            profile,
        })
    }

    fn apply_profile(state: &mut State, name: ProfileName, profile: Profile) {
        if let Profile::Model {
            provider, model, ..
        } = &profile
        {
            state.provider = Some(*provider);
            state.model = model.clone();
        }
        state.conversation.clear();
        state.profile = Some((name, profile));
    }

    /// Sends a message of the conversation with the active provider, model and profile, and
    /// returns the reply (already shown piece by piece through `prompt` when it streamed).
    ///
    /// # Errors
    /// [`SessionError::Message`] when no reply came ([`SessionError::send_error`] tells why),
    /// or the settings cannot be read.
    pub async fn send(&self, text: &str, prompt: &dyn UserPrompt) -> Result<Reply, SessionError> {
        let settings = self.settings()?;
        let (provider, model, session_key, profile, mut messages) = {
            let state = self.state();
            (
                state.provider.unwrap_or(ChatProvider::Anthropic),
                state.model.clone(),
                state.session_key.clone(),
                state.profile.clone(),
                state.conversation.clone(),
            )
        };
        messages.push(ChatMessage {
            role: Role::User,
            text: text.to_owned(),
        });
        let sent = self
            .messages
            .send(
                MessageTarget {
                    provider,
                    model: model.as_deref(),
                    session_key: session_key.as_ref(),
                    settings: &settings,
                    profile: profile.as_ref().map(|(n, p)| (n, p)),
                },
                &messages,
                prompt,
            )
            .await?;
        let mut state = self.state();
        state.conversation = messages;
        state.conversation.push(ChatMessage {
            role: Role::Assistant,
            text: sent.reply.text.clone(),
        });
        Ok(Reply {
            text: sent.reply.text,
            streamed: sent.streamed,
        })
    }

    /// Every provider's credential and token state (`/auth`).
    ///
    /// # Errors
    /// [`SessionError::Config`] when the settings cannot be read, [`SessionError::Auth`] when
    /// the token store cannot be listed.
    pub async fn auth_overview(&self) -> Result<Vec<ProviderAuth>, SessionError> {
        let settings = self.settings()?;
        self.services.chat.load_shared_health().await;
        let now = self.services.clock.now();
        let mut lines = Vec::new();
        for oauth in OAuthProvider::ALL {
            let credential = self.credential(&settings, oauth.chat_provider());
            let (usable, token) = match &credential {
                Credential::ApiKey { .. } => (true, TokenSummary::NotUsed),
                Credential::None => (false, TokenSummary::NotUsed),
                Credential::OAuth(plan) => {
                    let mut best: Option<BucketStatus> = None;
                    for name in plan.buckets() {
                        let bucket = BucketId::new(oauth, name.clone());
                        let token = self
                            .services
                            .auth
                            .stored_token(&bucket)
                            .await
                            .ok()
                            .flatten();
                        let status =
                            bucket_status(token.as_ref(), &self.services.chat.health(&bucket), now);
                        if matches!(status, BucketStatus::Ok { .. }) || best.is_none() {
                            best = Some(status);
                            if matches!(status, BucketStatus::Ok { .. }) {
                                break;
                            }
                        }
                    }
                    match best {
                        Some(BucketStatus::Ok { seconds_left }) => {
                            (true, TokenSummary::ExpiresIn(seconds_left))
                        }
                        Some(BucketStatus::Expired) => (true, TokenSummary::ExpiredWillRefresh),
                        Some(BucketStatus::Cooldown { until }) => {
                            (false, TokenSummary::CoolingUntil(until))
                        }
                        Some(BucketStatus::Refused { cause }) => {
                            (false, TokenSummary::Refused(cause))
                        }
                        _ => (false, TokenSummary::NotLoggedIn),
                    }
                }
            };
            let unused_buckets = match credential {
                Credential::None => self.services.auth.buckets(oauth).await?,
                _ => Vec::new(),
            };
            lines.push(ProviderAuth {
                provider: oauth,
                credential,
                oauth_enabled: settings.is_oauth_enabled(oauth),
                usable,
                token,
                unused_buckets,
            });
        }
        Ok(lines)
    }

    /// Every bucket of `provider` with its status (`/auth P status`).
    ///
    /// # Errors
    /// [`SessionError::Auth`] when the token store cannot be listed.
    pub async fn auth_status(
        &self,
        provider: OAuthProvider,
    ) -> Result<Vec<BucketLine>, SessionError> {
        let names = self.services.auth.buckets(provider).await?;
        let switch_at_percent = self.settings()?.switch_at_percent();
        self.services.chat.load_shared_health().await;
        let now = self.services.clock.now();
        let mut lines = Vec::new();
        for name in names {
            let bucket = BucketId::new(provider, name.clone());
            // As the next request will see it: a bucket its figures hold back is cooling.
            let health = self
                .services
                .chat
                .health_for_next_request(&bucket, switch_at_percent);
            let status = match self.services.auth.stored_token(&bucket).await {
                Err(error) => Err(error.to_string()),
                Ok(token) => Ok(bucket_status(token.as_ref(), &health, now)),
            };
            let limits = self.services.chat.limits(&bucket);
            lines.push(BucketLine {
                name,
                status,
                limits,
            });
        }
        Ok(lines)
    }

    /// The latest limits every bucket's provider reported (`/stats quota`), by provider and
    /// bucket.
    pub async fn quota(&self) -> Vec<QuotaLine> {
        self.services.chat.load_shared_health().await;
        let mut lines: Vec<QuotaLine> = self
            .services
            .chat
            .all_limits()
            .into_iter()
            .map(|(bucket, limits)| QuotaLine { bucket, limits })
            .collect();
        lines.sort_by(|a, b| a.bucket.cmp(&b.bucket));
        lines
    }

    /// Runs `bucket`'s login flow now (`/auth P login`, `--device` for the device login),
    /// through `prompt`.
    ///
    /// # Errors
    /// [`SessionError::Auth`] when the flow fails or the token cannot be saved.
    pub async fn login(
        &self,
        bucket: BucketId,
        method: LoginMethod,
        prompt: &dyn UserPrompt,
    ) -> Result<LoggedIn, SessionError> {
        let token = self
            .services
            .auth
            .login_with(&bucket, method, prompt)
            .await?;
        self.services.chat.mark_usable(&bucket).await;
        Ok(LoggedIn {
            seconds_left: token.seconds_left(self.services.clock.now()),
            bucket,
        })
    }

    /// Deletes a bucket's tokens, or all of a provider's (`/auth P logout`). Returns the
    /// buckets removed.
    ///
    /// # Errors
    /// [`SessionError::NoSuchBucket`] when the bucket holds no token, [`SessionError::Auth`]
    /// when the store fails.
    pub async fn logout(
        &self,
        provider: OAuthProvider,
        target: LogoutTarget,
    ) -> Result<Vec<BucketId>, SessionError> {
        let removed = match target {
            LogoutTarget::All => self.services.auth.logout_all(provider).await?,
            LogoutTarget::Bucket(name) => {
                let bucket = BucketId::new(provider, name.clone());
                if !self.services.auth.logout(&bucket).await? {
                    let existing = self.services.auth.buckets(provider).await?;
                    return Err(SessionError::NoSuchBucket {
                        provider,
                        name,
                        existing,
                    });
                }
                vec![bucket]
            }
        };
        for bucket in &removed {
            self.services.chat.mark_usable(bucket).await;
        }
        Ok(removed)
    }

    /// Lifts a bucket's cooldown or `[refused]` mark by hand (`/auth P clear BUCKET`): the
    /// next request tries it again.
    ///
    /// # Errors
    /// [`SessionError::NoSuchBucket`] when the bucket holds no token.
    pub async fn clear(
        &self,
        provider: OAuthProvider,
        name: BucketName,
    ) -> Result<BucketId, SessionError> {
        let existing = self.services.auth.buckets(provider).await?;
        if !existing.contains(&name) {
            return Err(SessionError::NoSuchBucket {
                provider,
                name,
                existing,
            });
        }
        let bucket = BucketId::new(provider, name);
        self.services.chat.mark_usable(&bucket).await;
        Ok(bucket)
    }

    /// Sets a setting for the rest of the session (`/set NAME VALUE`); `auth-key` sets the
    /// session key of the active provider.
    ///
    /// # Errors
    /// [`SessionError::Setting`] when the value does not fit the setting,
    /// [`SessionError::ReadAtStart`] for settings read only at start.
    pub fn set(&self, name: String, value: String) -> Result<SetOutcome, SessionError> {
        if name.replace('_', "-") == "auth-key" {
            let provider = self.provider();
            let key = Some(Secret::new(value)).filter(|k| !k.is_empty());
            self.state().session_key = key.map(|key| (provider, key));
            return Ok(SetOutcome::AuthKey(provider));
        }
        // Check the setting against the current settings before keeping it.
        self.settings()?.apply(&name, &value)?;
        let key = name.replace('-', "_");
        // Endpoints and OAuth clients are built once at start, so a session override of
        // them would be accepted and then silently ignored.
        if key.starts_with("providers.") {
            return Err(SessionError::ReadAtStart(name));
        }
        if key == "default_profile" {
            return Err(SessionError::DefaultProfileIsNotASessionSetting(value));
        }
        self.state().overrides.push((name.clone(), value));
        Ok(SetOutcome::Setting(name))
    }

    /// Saves the active provider, model and session key with an ordered bucket list as a model
    /// profile (`/profile save model`), and returns it.
    ///
    /// # Errors
    /// [`SessionError::MissingBucket`] for a bucket that holds no token; a bad name; the store.
    pub async fn save_model_profile(
        &self,
        name: &str,
        buckets: Vec<BucketName>,
    ) -> Result<(ProfileName, Profile), SessionError> {
        let name = profile_name(name)?;
        let provider = self.provider();
        let oauth = provider.oauth_provider();
        let existing = self.services.auth.buckets(oauth).await?;
        if let Some(missing) = buckets.iter().find(|b| !existing.contains(b)) {
            return Err(SessionError::MissingBucket {
                provider: oauth,
                bucket: missing.clone(),
            });
        }
        let key = self
            .state()
            .session_key
            .clone()
            .filter(|(owner, _)| *owner == provider)
            .map(|(_, key)| key);
        // A profile of buckets without a key goes out with OAuth: its default model is the
        // subscription's.
        let model = match (
            self.state().model.clone(),
            buckets.is_empty() || key.is_some(),
        ) {
            (Some(model), _) => model,
            (None, true) => provider.default_model().to_owned(),
            (None, false) => provider.default_oauth_model().to_owned(),
        };
        let profile = Profile::Model {
            provider,
            model: Some(model),
            key,
            buckets,
        };
        self.services.profiles.save_profile(&name, &profile)?;
        Ok((name, profile))
    }

    /// Saves a loadbalancer profile over model profiles (`/profile save loadbalancer`).
    ///
    /// # Errors
    /// An unknown policy, a bad or missing member, a member that is itself a loadbalancer.
    pub fn save_balancer_profile(
        &self,
        name: &str,
        policy: &str,
        members: &[String],
    ) -> Result<(ProfileName, Profile), SessionError> {
        let name = profile_name(name)?;
        let policy = policy.parse()?;
        let members = members
            .iter()
            .map(|m| profile_name(m))
            .collect::<Result<Vec<_>, _>>()?;
        for member in &members {
            if let Profile::LoadBalancer { .. } = self.services.profiles.load_profile(member)? {
                return Err(SessionError::NestedLoadBalancer(member.clone()));
            }
        }
        let profile = Profile::LoadBalancer { policy, members };
        self.services.profiles.save_profile(&name, &profile)?;
        Ok((name, profile))
    }

    /// Loads a saved profile into the session (`/profile load`), and returns it.
    ///
    /// # Errors
    /// A bad name, or the profile cannot be loaded.
    pub fn load_profile(&self, name: &str) -> Result<(ProfileName, Profile), SessionError> {
        let name = profile_name(name)?;
        let profile = self.services.profiles.load_profile(&name)?;
        Self::apply_profile(&mut self.state(), name.clone(), profile.clone());
        Ok((name, profile))
    }

    /// Deletes a saved profile (`/profile delete`), unloading it if it was loaded.
    ///
    /// # Errors
    /// A bad name, or the profile cannot be deleted.
    pub fn delete_profile(&self, name: &str) -> Result<ProfileName, SessionError> {
        let name = profile_name(name)?;
        self.services.profiles.delete_profile(&name)?;
        let mut state = self.state();
        if state
            .profile
            .as_ref()
            .is_some_and(|(loaded, _)| *loaded == name)
        {
            state.profile = None;
        }
        Ok(name)
    }

    /// Makes a saved profile load at start (`/profile set-default`).
    ///
    /// # Errors
    /// A bad name, a missing profile, or the settings cannot be written.
    pub fn set_default_profile(&self, name: &str) -> Result<ProfileName, SessionError> {
        let name = profile_name(name)?;
        self.services.settings.set_default_profile(Some(&name))?;
        Ok(name)
    }

    /// Every saved profile (`/profile list`).
    ///
    /// # Errors
    /// The profiles or the settings cannot be read.
    pub fn profiles(&self) -> Result<Vec<ProfileEntry>, SessionError> {
        let names = self.services.profiles.list_profiles()?;
        let default = self.settings()?.default_profile;
        Ok(names
            .into_iter()
            .map(|name| ProfileEntry {
                is_default: default.as_ref() == Some(&name),
                profile: self.services.profiles.load_profile(&name),
                name,
            })
            .collect())
    }

    /// The store in use, in one phrase, or why it cannot be read (the last line of `/auth`).
    pub async fn storage_summary(&self) -> Result<String, StoreError> {
        Ok(self.services.storage.current().await?.info.summary())
    }

    /// Where tokens are kept and which buckets the store holds (`/storage`).
    ///
    /// # Errors
    /// [`SessionError::Store`] when the store cannot be reached or listed.
    pub async fn storage(&self) -> Result<StorageReport, SessionError> {
        let current = self.services.storage.current().await?;
        let mut buckets = Vec::new();
        for provider in OAuthProvider::ALL {
            let names = current.store.list(provider).await?;
            if !names.is_empty() {
                buckets.push((provider, names));
            }
        }
        Ok(StorageReport {
            summary: current.info.summary(),
            buckets,
        })
    }

    /// Moves every token to another store (`/storage migrate BACKEND`), then makes it the one in
    /// use and records it in the settings. `prompt` shows that it waits.
    ///
    /// # Errors
    /// [`SessionError::Store`] when a store cannot be opened, [`SessionError::Migrate`] when a
    /// bucket could not be moved (it is still in the old store), or the settings.
    pub async fn storage_migrate(
        &self,
        backend: StorageBackend,
        prompt: &dyn UserPrompt,
    ) -> Result<Migrated, SessionError> {
        let from = self.services.storage.current().await?;
        let to = self.services.storage.open(backend).await?;
        if (from.info.chosen, &from.info.location) == (to.info.chosen, &to.info.location) {
            self.services.settings.set_storage_backend(backend)?;
            return Ok(Migrated::AlreadyThere {
                summary: to.info.summary(),
            });
        }
        prompt.busy(
            &format!(
                "Moving tokens from {} to {}",
                from.info.chosen, to.info.chosen
            ),
            false,
        );
        let done = migrate(from.store.as_ref(), to.store.as_ref()).await;
        prompt.busy("", true);
        let done = done?;
        self.services.settings.set_storage_backend(backend)?;
        self.services.storage.switch_to(to.clone());
        Ok(Migrated::Moved {
            count: done.moved.len(),
            summary: to.info.summary(),
        })
    }

    /// The request statistics of every bucket (`/stats buckets`).
    ///
    /// # Errors
    /// [`SessionError::Persistence`] when they cannot be read.
    pub async fn statistics(&self) -> Result<StatsTotals, SessionError> {
        Ok(self.services.chat.statistics().await?)
    }

    /// The bucket names of every provider and the saved profile names, for completion.
    pub async fn names(&self) -> (Vec<(OAuthProvider, Vec<BucketName>)>, Vec<ProfileName>) {
        let mut buckets = Vec::new();
        for provider in OAuthProvider::ALL {
            let names = self
                .services
                .auth
                .buckets(provider)
                .await
                .unwrap_or_default();
            buckets.push((provider, names));
        }
        let profiles = self.services.profiles.list_profiles().unwrap_or_default();
        (buckets, profiles)
    }
}

fn profile_name(text: &str) -> Result<ProfileName, SessionError> {
    ProfileName::parse(text).map_err(|reason| SessionError::InvalidProfileName {
        given: commands::shown(text).to_string(),
        reason,
    })
}
