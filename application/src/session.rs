//! The session: the `Shell` that runs every slash command and message against the services.
//!
//! It holds what a REPL session changes (provider, model, session key, `/set` overrides, the
//! loaded profile, the conversation) and turns each command into calls on the services, showing
//! the result through the `UserPrompt` it is given. It never prints by itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use llxprt_domain::precedence::{resolve_credential, Credential, CredentialSources};
use llxprt_domain::time::{humanize_ago, humanize_seconds};
use llxprt_domain::{
    bucket_status, BucketId, BucketName, BucketStatus, ChatProvider, LoadBalancer, OAuthProvider,
    Profile, ProfileName, Secret,
};

use crate::commands::{self, Command, LogoutTarget, COMMANDS};
use crate::ports::{ChatMessage, ChatRequest, Clock, ConfigStore, Role, UserPrompt};
use crate::services::{AuthService, ChatService, SendTarget};
use crate::settings::Settings;
use crate::shell::{CompletionData, LineOutcome, Shell};

/// What a session starts with, from the command line.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// `--provider`.
    pub provider: Option<ChatProvider>,
    /// `--model`.
    pub model: Option<String>,
    /// `--key`, `--keyfile` or `--set auth-key`, already read.
    pub key: Option<Secret>,
}

/// The services a session drives.
pub struct SessionServices {
    /// Settings and profiles.
    pub config: Arc<dyn ConfigStore>,
    /// Login and logout.
    pub auth: Arc<AuthService>,
    /// Sending messages.
    pub chat: Arc<ChatService>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The process environment (API key variables are read from it).
    pub env: BTreeMap<String, String>,
}

/// A failed command: the one line shown after `Error: `.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

type Run = Result<(), Failure>;

#[derive(Default)]
struct State {
    provider: Option<ChatProvider>,
    model: Option<String>,
    /// The key given on the command line or with `/key`, `/keyfile`, `/set auth-key`, and the
    /// provider that was active then: a key for one provider is never sent to another.
    session_key: Option<(ChatProvider, Secret)>,
    overrides: Vec<(String, String)>,
    profile: Option<(ProfileName, Profile)>,
    balancers: HashMap<ProfileName, LoadBalancer>,
    conversation: Vec<ChatMessage>,
}

/// One user's session.
pub struct Session {
    services: SessionServices,
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
        Self {
            services,
            state: Mutex::new(state),
        }
    }

    /// Loads the start-up profile (`--profile`, else the settings' default profile), keeping
    /// `--provider` and `--model` over the profile's. A command-line key belongs to the provider
    /// active once the profile is loaded.
    ///
    /// # Errors
    /// A one-line description when the settings or the profile cannot be loaded.
    pub fn start(&self, profile: Option<ProfileName>) -> Result<(), String> {
        let settings = self.settings().map_err(|f| f.0)?;
        let Some(name) = profile.or(settings.default_profile) else {
            return Ok(());
        };
        let loaded = self
            .services
            .config
            .load_profile(&name)
            .map_err(|e| e.to_string())?;
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

    fn settings(&self) -> Result<Settings, Failure> {
        let mut settings = self.services.config.load_settings()?;
        for (name, value) in &self.state().overrides {
            settings.apply(name, value)?;
        }
        Ok(settings)
    }

    fn active_provider(&self) -> ChatProvider {
        self.state().provider.unwrap_or(ChatProvider::Anthropic)
    }

    fn active_model(&self) -> String {
        let state = self.state();
        let provider = state.provider.unwrap_or(ChatProvider::Anthropic);
        state
            .model
            .clone()
            .unwrap_or_else(|| provider.default_model().to_owned())
    }

    /// The credential a request to `provider` would use now. A session key belongs to the
    /// provider that was active when it was given; the profile's key to the profile's provider;
    /// the settings' `auth-key` to the active provider; environment variables and OAuth are per
    /// provider.
    fn credential(
        &self,
        settings: &Settings,
        provider: ChatProvider,
        profile: Option<&Profile>,
    ) -> Credential {
        let state = self.state();
        let active = state.provider.unwrap_or(ChatProvider::Anthropic) == provider;
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
            .map(|var| (*var, self.services.env.get(*var).map(Secret::new)))
            .collect();
        resolve_credential(CredentialSources {
            provider,
            command_line: state
                .session_key
                .clone()
                .filter(|(owner, _)| *owner == provider)
                .map(|(_, key)| key),
            profile_key,
            settings_key: settings.auth_key.clone().filter(|_| active),
            env,
            oauth_enabled: settings.is_oauth_enabled(provider.oauth_provider()),
            profile_buckets,
        })
    }

    async fn run(&self, command: Command, prompt: &dyn UserPrompt) -> Run {
        match command {
            Command::Nothing | Command::Quit => Ok(()),
            Command::Help => {
                help(prompt);
                Ok(())
            }
            Command::Message(text) => self.message(text, prompt).await,
            Command::AuthOverview => self.auth_overview(prompt).await,
            Command::AuthStatus(p) => self.auth_status(p, prompt).await,
            Command::AuthEnable(p) => {
                self.services.config.set_oauth_enabled(p, true)?;
                prompt.show(&format!(
                    "OAuth enabled for {p}; sign-in starts on the first request (or now with /auth {p} login)"
                ));
                Ok(())
            }
            Command::AuthDisable(p) => {
                self.services.config.set_oauth_enabled(p, false)?;
                prompt.show(&format!("OAuth disabled for {p}"));
                Ok(())
            }
            Command::AuthLogin(p, bucket) => self.login(BucketId::new(p, bucket), prompt).await,
            Command::AuthLogout(p, target) => self.logout(p, target, prompt).await,
            Command::AuthClear(p, name) => {
                let existing = self.services.auth.store().list(p).await?;
                if !existing.contains(&name) {
                    return Err(Failure(no_such_bucket(p, &name, &existing)));
                }
                let bucket = BucketId::new(p, name);
                self.services.chat.mark_usable(&bucket).await;
                prompt.show(&format!(
                    "Cleared {bucket}: the next request tries it again"
                ));
                Ok(())
            }
            Command::Provider(None) => {
                prompt.show(&format!("Provider: {}", self.active_provider()));
                Ok(())
            }
            Command::Provider(Some(p)) => {
                let mut state = self.state();
                if state.provider != Some(p) {
                    state.model = None;
                    state.conversation.clear();
                }
                state.provider = Some(p);
                prompt.show(&format!(
                    "Provider set to {p} (model {})",
                    p.default_model()
                ));
                Ok(())
            }
            Command::Model(None) => {
                prompt.show(&format!("Model: {}", self.active_model()));
                Ok(())
            }
            Command::Model(Some(m)) => {
                prompt.show(&format!("Model set to {m}"));
                self.state().model = Some(m);
                Ok(())
            }
            Command::Key(key) => {
                let provider = self.active_provider();
                self.state().session_key = Some((provider, Secret::new(key)));
                prompt.show(&format!("API key set for {provider} for this session"));
                Ok(())
            }
            Command::KeyFile(path) => {
                let key = self.services.config.read_key_file(&path)?;
                let provider = self.active_provider();
                self.state().session_key = Some((provider, key));
                prompt.show(&format!(
                    "API key for {provider} read from {path} for this session"
                ));
                Ok(())
            }
            Command::Set(name, value) => self.set(name, value, prompt),
            Command::ProfileSaveModel(name, buckets) => {
                self.save_model_profile(&name, buckets, prompt).await
            }
            Command::ProfileSaveLoadBalancer(name, policy, members) => {
                self.save_balancer_profile(&name, &policy, &members, prompt)
            }
            Command::ProfileLoad(name) => {
                let name = profile_name(&name)?;
                let profile = self.services.config.load_profile(&name)?;
                prompt.show(&format!("Profile {name} loaded ({})", describe(&profile)));
                Self::apply_profile(&mut self.state(), name, profile);
                Ok(())
            }
            Command::ProfileList => self.profile_list(prompt),
            Command::ProfileDelete(name) => {
                let name = profile_name(&name)?;
                self.services.config.delete_profile(&name)?;
                let mut state = self.state();
                if state
                    .profile
                    .as_ref()
                    .is_some_and(|(loaded, _)| *loaded == name)
                {
                    state.profile = None;
                }
                prompt.show(&format!("Profile {name} deleted"));
                Ok(())
            }
            Command::ProfileSetDefault(name) => {
                let name = profile_name(&name)?;
                self.services.config.set_default_profile(Some(&name))?;
                prompt.show(&format!("Profile {name} will load at start"));
                Ok(())
            }
            Command::StatsBuckets => self.stats(prompt).await,
        }
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

    async fn message(&self, text: String, prompt: &dyn UserPrompt) -> Run {
        let settings = self.settings()?;
        let loaded = self.state().profile.clone();
        let members = match &loaded {
            Some((name, Profile::LoadBalancer { policy, members })) => {
                let order = self
                    .state()
                    .balancers
                    .entry(name.clone())
                    .or_insert_with(|| LoadBalancer::new(*policy, members.len()))
                    .next_order();
                let mut targets = Vec::new();
                for index in order {
                    let Some(member) = members.get(index) else {
                        continue;
                    };
                    targets.push((
                        Some(member.clone()),
                        self.services.config.load_profile(member)?,
                    ));
                }
                targets
                    .into_iter()
                    .map(|(n, p)| (n, Some(p)))
                    .collect::<Vec<_>>()
            }
            Some((_, profile @ Profile::Model { .. })) => vec![(None, Some(profile.clone()))],
            None => vec![(None, None)],
        };
        let balanced = matches!(loaded, Some((_, Profile::LoadBalancer { .. })));
        let policy = match &loaded {
            Some((_, Profile::LoadBalancer { policy, .. })) => Some(*policy),
            _ => None,
        };
        let mut messages = self.state().conversation.clone();
        messages.push(ChatMessage {
            role: Role::User,
            text: text.clone(),
        });
        let mut last_failure = None;
        for (member, profile) in members {
            let (provider, chosen_model) = match &profile {
                Some(Profile::Model {
                    provider, model, ..
                }) if balanced => (*provider, model.clone()),
                _ => (self.active_provider(), self.state().model.clone()),
            };
            let target = SendTarget {
                provider,
                credential: self.credential(&settings, provider, profile.as_ref()),
            };
            // A subscription may take other models than the key API: the default follows the
            // credential the request goes out with.
            let model = chosen_model.unwrap_or_else(|| match target.credential {
                llxprt_domain::Credential::OAuth(_) => provider.default_oauth_model().to_owned(),
                _ => provider.default_model().to_owned(),
            });
            let request = ChatRequest {
                model,
                messages: messages.clone(),
            };
            let streaming = StreamTracking::new(prompt, &format!("Waiting for {provider}"));
            let sent = self.services.chat.send(&target, &request, &streaming).await;
            streaming.not_busy();
            match sent {
                Ok(reply) => {
                    if streaming.streamed() {
                        prompt.stream("\n");
                    } else {
                        prompt.show(&reply.text);
                    }
                    let mut state = self.state();
                    state.conversation = messages;
                    state.conversation.push(ChatMessage {
                        role: Role::Assistant,
                        text: reply.text,
                    });
                    return Ok(());
                }
                Err(error) => {
                    let moves_on =
                        policy.is_some_and(|p| llxprt_domain::moves_on(p, error.member_failure()));
                    if let (true, Some(member)) = (moves_on, &member) {
                        // The member's own error may run over several lines (the exhausted
                        // report); its first line says enough while the request goes on.
                        let error_text = error.to_string();
                        let first = error_text.lines().next().unwrap_or_default();
                        prompt.show_error(&format!(
                            "Profile {member} failed ({first}); trying the next profile"
                        ));
                        last_failure = Some(Failure(error.to_string()));
                        continue;
                    }
                    return Err(Failure(error.to_string()));
                }
            }
        }
        Err(last_failure.unwrap_or_else(|| Failure("no profile could answer".to_owned())))
    }

    async fn auth_overview(&self, prompt: &dyn UserPrompt) -> Run {
        let settings = self.settings()?;
        self.services.chat.load_shared_health().await;
        let profile = self.state().profile.clone().map(|(_, p)| p);
        let now = self.services.clock.now();
        for oauth in OAuthProvider::ALL {
            let provider = oauth.chat_provider();
            let credential = self.credential(&settings, provider, profile.as_ref());
            let enabled = if settings.is_oauth_enabled(oauth) {
                "enabled"
            } else {
                "disabled"
            };
            let (ok, expiry) = match &credential {
                Credential::ApiKey { .. } => (true, String::new()),
                Credential::None => (false, String::new()),
                Credential::OAuth(plan) => {
                    let mut best: Option<BucketStatus> = None;
                    for name in plan.buckets() {
                        let bucket = BucketId::new(oauth, name.clone());
                        let token = self
                            .services
                            .auth
                            .store()
                            .load(&bucket)
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
                        Some(BucketStatus::Ok { seconds_left }) => (
                            true,
                            format!(", token expires in {}", humanize_seconds(seconds_left)),
                        ),
                        Some(BucketStatus::Expired) => {
                            (true, ", token expired (will refresh)".to_owned())
                        }
                        Some(BucketStatus::Cooldown { until }) => (
                            false,
                            format!(
                                ", cooling down until {}",
                                self.services.clock.time_of_day(until)
                            ),
                        ),
                        Some(BucketStatus::Refused { cause }) => {
                            (false, format!(", refused by the provider ({cause})"))
                        }
                        _ => (false, ", not logged in".to_owned()),
                    }
                }
            };
            let mark = if ok { '✓' } else { '✗' };
            let signed_in = match credential {
                Credential::None => self.services.auth.store().list(oauth).await?,
                _ => Vec::new(),
            };
            // Signing in does not turn OAuth on, which surprises: say what would use it.
            let why = if signed_in.is_empty() {
                credential.why()
            } else {
                let names: Vec<&str> = signed_in.iter().map(BucketName::as_str).collect();
                format!(
                    "signed in ({}) but OAuth is off: /auth {oauth} enable uses it",
                    names.join(", ")
                )
            };
            prompt.show(&format!(
                "{mark} {oauth}: {} ({enabled}){expiry} — {why}",
                credential.method(),
            ));
        }
        Ok(())
    }

    async fn auth_status(&self, provider: OAuthProvider, prompt: &dyn UserPrompt) -> Run {
        let store = self.services.auth.store();
        let names = store.list(provider).await?;
        self.services.chat.load_shared_health().await;
        let now = self.services.clock.now();
        prompt.show(&format!("OAuth Buckets for {provider}:"));
        if names.is_empty() {
            prompt.show(&format!("  (none; run /auth {provider} login [BUCKET])"));
        }
        for name in names {
            let bucket = BucketId::new(provider, name.clone());
            let health = self.services.chat.health(&bucket);
            let line = match store.load(&bucket).await {
                Err(error) => format!("  [needs login] {name} ({error})"),
                Ok(token) => match bucket_status(token.as_ref(), &health, now) {
                    BucketStatus::Ok { seconds_left } => {
                        format!(
                            "  [ok] {name} (expires in {})",
                            humanize_seconds(seconds_left)
                        )
                    }
                    BucketStatus::Expired => format!("  [expired] {name}"),
                    BucketStatus::Cooldown { until } => format!(
                        "  [cooldown] {name} (until {})",
                        self.services.clock.time_of_day(until)
                    ),
                    BucketStatus::NeedsLogin => format!("  [needs login] {name}"),
                    BucketStatus::Refused { cause } => format!("  [refused] {name} ({cause})"),
                },
            };
            prompt.show(&line);
        }
        Ok(())
    }

    async fn login(&self, bucket: BucketId, prompt: &dyn UserPrompt) -> Run {
        prompt.show(&format!("Signing in to {bucket}…"));
        if let Some(notice) = bucket.provider.terms_notice() {
            prompt.show(notice);
        }
        let token = self.services.auth.login(&bucket, prompt).await?;
        self.services.chat.mark_usable(&bucket).await;
        let left = token.seconds_left(self.services.clock.now());
        prompt.show(&format!(
            "✓ Logged in to {bucket} (expires in {})",
            humanize_seconds(left)
        ));
        Ok(())
    }

    async fn logout(
        &self,
        provider: OAuthProvider,
        target: LogoutTarget,
        prompt: &dyn UserPrompt,
    ) -> Run {
        match target {
            LogoutTarget::All => {
                let removed = self.services.auth.logout_all(provider).await?;
                for bucket in &removed {
                    self.services.chat.mark_usable(bucket).await;
                }
                prompt.show(&format!(
                    "Logged out of {} bucket(s) of {provider}",
                    removed.len()
                ));
            }
            LogoutTarget::Bucket(name) => {
                let bucket = BucketId::new(provider, name.clone());
                if !self.services.auth.logout(&bucket).await? {
                    let existing = self.services.auth.store().list(provider).await?;
                    return Err(Failure(no_such_bucket(provider, &name, &existing)));
                }
                self.services.chat.mark_usable(&bucket).await;
                prompt.show(&format!("Logged out of {bucket}"));
            }
        }
        Ok(())
    }

    fn set(&self, name: String, value: String, prompt: &dyn UserPrompt) -> Run {
        if name.replace('_', "-") == "auth-key" {
            let provider = self.active_provider();
            let key = Some(Secret::new(value)).filter(|k| !k.is_empty());
            self.state().session_key = key.map(|key| (provider, key));
            prompt.show(&format!("auth-key set for {provider} for this session"));
            return Ok(());
        }
        // Check the setting against the current settings before keeping it.
        self.settings()?.apply(&name, &value)?;
        let key = name.replace('-', "_");
        // Endpoints and OAuth clients are built once at start, so a session override of
        // them would be accepted and then silently ignored.
        if key.starts_with("providers.") {
            return Err(Failure(format!(
                "{name} is read at start; pass --set {name}=VALUE or put it in settings.json"
            )));
        }
        if key == "default_profile" {
            return Err(Failure(format!(
                "the default profile is not a session setting; use /profile set-default {value}"
            )));
        }
        prompt.show(&format!("{name} set for this session"));
        self.state().overrides.push((name, value));
        Ok(())
    }

    async fn save_model_profile(
        &self,
        name: &str,
        buckets: Vec<BucketName>,
        prompt: &dyn UserPrompt,
    ) -> Run {
        let name = profile_name(name)?;
        let provider = self.active_provider();
        let oauth = provider.oauth_provider();
        let existing = self.services.auth.store().list(oauth).await?;
        if let Some(missing) = buckets.iter().find(|b| !existing.contains(b)) {
            return Err(Failure(format!(
                "bucket {missing} does not exist for {oauth}; run /auth {oauth} login {missing} first"
            )));
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
        self.services.config.save_profile(&name, &profile)?;
        prompt.show(&format!("Profile {name} saved ({})", describe(&profile)));
        Ok(())
    }

    fn save_balancer_profile(
        &self,
        name: &str,
        policy: &str,
        members: &[String],
        prompt: &dyn UserPrompt,
    ) -> Run {
        let name = profile_name(name)?;
        let policy = policy.parse()?;
        let members = members
            .iter()
            .map(|m| profile_name(m))
            .collect::<Result<Vec<_>, _>>()?;
        for member in &members {
            match self.services.config.load_profile(member)? {
                Profile::Model { .. } => {}
                Profile::LoadBalancer { .. } => {
                    return Err(Failure(format!(
                        "{member} is a loadbalancer profile; a loadbalancer lists model profiles"
                    )))
                }
            }
        }
        let profile = Profile::LoadBalancer { policy, members };
        self.services.config.save_profile(&name, &profile)?;
        prompt.show(&format!("Profile {name} saved ({})", describe(&profile)));
        Ok(())
    }

    fn profile_list(&self, prompt: &dyn UserPrompt) -> Run {
        let names = self.services.config.list_profiles()?;
        let default = self.settings()?.default_profile;
        if names.is_empty() {
            prompt.show("No saved profiles (save one with /profile save model NAME)");
        }
        for name in names {
            let what = match self.services.config.load_profile(&name) {
                Ok(profile) => describe(&profile),
                Err(error) => format!("unreadable: {error}"),
            };
            let mark = if default.as_ref() == Some(&name) {
                " [default]"
            } else {
                ""
            };
            prompt.show(&format!("  {name}{mark}: {what}"));
        }
        Ok(())
    }

    async fn stats(&self, prompt: &dyn UserPrompt) -> Run {
        let totals = self.services.chat.statistics().await?;
        let now = self.services.clock.now();
        prompt.show("OAuth Bucket Statistics:");
        if totals.is_empty() {
            prompt.show("  (no requests yet)");
        }
        for (bucket, stats) in totals.iter() {
            let last = stats
                .last_used
                .map_or_else(|| "never".to_owned(), |at| humanize_ago(now, at));
            prompt.show(&format!(
                "  {bucket}: {} requests (last used: {last})",
                stats.requests
            ));
        }
        Ok(())
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

fn profile_name(text: &str) -> Result<ProfileName, Failure> {
    ProfileName::parse(text).map_err(|e| {
        Failure(format!(
            "invalid profile name '{}': {e}",
            commands::shown(text)
        ))
    })
}

fn describe(profile: &Profile) -> String {
    match profile {
        Profile::Model {
            provider,
            model,
            buckets,
            key,
        } => {
            let mut text = format!(
                "{provider} {}",
                model.as_deref().unwrap_or(provider.default_model())
            );
            if !buckets.is_empty() {
                let names: Vec<_> = buckets.iter().map(BucketName::as_str).collect();
                text.push_str(&format!(", buckets {}", names.join(" → ")));
            }
            if key.is_some() {
                text.push_str(", with a key");
            }
            text
        }
        Profile::LoadBalancer { policy, members } => {
            let names: Vec<_> = members.iter().map(ProfileName::as_str).collect();
            format!("loadbalancer {policy} over {}", names.join(", "))
        }
    }
}

fn help(prompt: &dyn UserPrompt) {
    for line in [
        "Commands:",
        "  /auth                                   status of every provider",
        "  /auth P [status]                        buckets of P (anthropic, gemini, qwen, codex)",
        "  /auth P enable|disable                  lazy OAuth on or off for P",
        "  /auth P login [BUCKET]                  sign in now",
        "  /auth P logout [BUCKET|--all]           delete tokens",
        "  /auth P clear BUCKET                    lift a cooldown or [refused] mark",
        "  /provider [P], /model [M]               show or set (anthropic, gemini, qwen, openai)",
        "  /key KEY, /keyfile PATH, /set NAME VALUE  session credentials and settings",
        "  /profile save model NAME [BUCKET...]    save provider, model and buckets",
        "  /profile save loadbalancer NAME failover|roundrobin PROFILE...",
        "  /profile load|delete|set-default NAME, /profile list",
        "  /stats buckets                          requests per bucket",
        "  /help, /quit",
        "Anything else is a message to the active provider.",
    ] {
        prompt.show(line);
    }
    debug_assert!(COMMANDS.contains(&"/help"));
}

/// Passes everything to the real prompt, shows that a reply is awaited until anything else is
/// shown (a sign-in's question, the first streamed words), and remembers whether any reply text
/// streamed.
struct StreamTracking<'a> {
    inner: &'a dyn UserPrompt,
    streamed: AtomicBool,
    busy: AtomicBool,
}

impl<'a> StreamTracking<'a> {
    fn new(inner: &'a dyn UserPrompt, what: &str) -> Self {
        inner.busy(what, false);
        Self {
            inner,
            streamed: AtomicBool::new(false),
            busy: AtomicBool::new(true),
        }
    }

    fn streamed(&self) -> bool {
        self.streamed.load(Ordering::SeqCst)
    }

    fn not_busy(&self) {
        if self.busy.swap(false, Ordering::SeqCst) {
            self.inner.busy("", true);
        }
    }
}

/// A cancelled request (Ctrl-C drops it) leaves no indicator behind.
impl Drop for StreamTracking<'_> {
    fn drop(&mut self) {
        self.not_busy();
    }
}

#[async_trait]
impl UserPrompt for StreamTracking<'_> {
    fn show(&self, line: &str) {
        self.not_busy();
        self.inner.show(line);
    }
    fn show_error(&self, line: &str) {
        self.not_busy();
        self.inner.show_error(line);
    }
    fn stream(&self, text: &str) {
        self.not_busy();
        self.streamed.store(true, Ordering::SeqCst);
        self.inner.stream(text);
    }
    fn waiting(&self, what: &str, done: bool) {
        self.not_busy();
        self.inner.waiting(what, done);
    }
    async fn ask(&self, question: &str) -> Result<String, crate::ports::PromptError> {
        self.not_busy();
        self.inner.ask(question).await
    }
}

#[async_trait]
impl Shell for Session {
    async fn run_line(&self, line: &str, prompt: &dyn UserPrompt) -> LineOutcome {
        let command = match commands::parse(line) {
            Ok(command) => command,
            Err(error) => {
                prompt.show_error(&format!("Error: {error}"));
                return LineOutcome::Failed;
            }
        };
        let quit = command == Command::Quit;
        match self.run(command, prompt).await {
            Ok(()) if quit => LineOutcome::Quit,
            Ok(()) => LineOutcome::Succeeded,
            Err(Failure(message)) => {
                prompt.show_error(&format!("Error: {message}"));
                LineOutcome::Failed
            }
        }
    }

    async fn completion_data(&self) -> CompletionData {
        let mut buckets = Vec::new();
        for provider in OAuthProvider::ALL {
            let names = self
                .services
                .auth
                .store()
                .list(provider)
                .await
                .unwrap_or_default();
            buckets.push((
                provider.as_str().to_owned(),
                names.iter().map(|n| n.as_str().to_owned()).collect(),
            ));
        }
        let profiles = self
            .services
            .config
            .list_profiles()
            .unwrap_or_default()
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        CompletionData { buckets, profiles }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PromptError;

    /// Records every call, in order.
    #[derive(Default)]
    struct Calls(Mutex<Vec<String>>);

    #[async_trait]
    impl UserPrompt for Calls {
        fn show(&self, line: &str) {
            self.0.lock().unwrap().push(format!("show {line}"));
        }
        fn stream(&self, text: &str) {
            self.0.lock().unwrap().push(format!("stream {text}"));
        }
        fn waiting(&self, what: &str, done: bool) {
            self.0
                .lock()
                .unwrap()
                .push(format!("waiting {what} {done}"));
        }
        fn busy(&self, what: &str, done: bool) {
            self.0.lock().unwrap().push(format!("busy {what} {done}"));
        }
        async fn ask(&self, question: &str) -> Result<String, PromptError> {
            self.0.lock().unwrap().push(format!("ask {question}"));
            Ok("answer".to_owned())
        }
    }

    #[tokio::test]
    async fn the_reply_indicator_stops_before_anything_else_is_shown_and_when_dropped() {
        let calls = Calls::default();
        {
            let tracking = StreamTracking::new(&calls, "Waiting for anthropic");
            tracking.ask("Paste the authorization code:").await.unwrap();
            tracking.show("a line");
        }
        {
            let tracking = StreamTracking::new(&calls, "Waiting for openai");
            tracking.stream("Hel");
            tracking.stream("lo");
            assert!(tracking.streamed());
        }
        // Cancelled while waiting: dropping clears the indicator.
        drop(StreamTracking::new(&calls, "Waiting for qwen"));
        assert_eq!(
            *calls.0.lock().unwrap(),
            [
                "busy Waiting for anthropic false",
                "busy  true",
                "ask Paste the authorization code:",
                "show a line",
                "busy Waiting for openai false",
                "busy  true",
                "stream Hel",
                "stream lo",
                "busy Waiting for qwen false",
                "busy  true",
            ]
        );
    }
}
