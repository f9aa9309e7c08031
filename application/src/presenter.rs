//! The text shell over a [`Session`]: parses each line, calls the session's typed operation and
//! renders its result or error as the lines of `cli.md`, through the [`UserPrompt`] it is
//! given. This is the driving port the terminal front end uses; it never prints by itself.

use async_trait::async_trait;
use llxprt_domain::failover::{BucketStatus, ExhaustedReport, SkipReason};
use llxprt_domain::precedence::Credential;
use llxprt_domain::time::{humanize_ago, humanize_seconds};
use llxprt_domain::{
    BucketId, BucketName, OAuthProvider, Profile, ProfileName, ReportedLimits, Secret,
};

use crate::commands::{self, Command, LogoutTarget, COMMANDS};
use crate::ports::{Clock, LoginMethod, UserPrompt};
use crate::services::{MessageError, SendError};
use crate::session::{Migrated, Session, SessionError, SetOutcome, TokenSummary};
use crate::shell::{CompletionData, LineOutcome, Shell};

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
        match run(self, command, prompt).await {
            Ok(()) if quit => LineOutcome::Quit,
            Ok(()) => LineOutcome::Succeeded,
            Err(error) => {
                prompt.show_error(&format!(
                    "Error: {}",
                    render_error(&error, self.clock().as_ref())
                ));
                LineOutcome::Failed
            }
        }
    }

    async fn completion_data(&self) -> CompletionData {
        let (buckets, profiles) = self.names().await;
        CompletionData {
            buckets: buckets
                .into_iter()
                .map(|(provider, names)| {
                    (
                        provider.as_str().to_owned(),
                        names.iter().map(|n| n.as_str().to_owned()).collect(),
                    )
                })
                .collect(),
            profiles: profiles.iter().map(|n| n.as_str().to_owned()).collect(),
        }
    }
}

/// A session error as the text after `Error: `: one line, or the exhausted report bucket by
/// bucket with times of day on `clock`.
pub fn render_error(error: &SessionError, clock: &dyn Clock) -> String {
    match error {
        SessionError::Message(MessageError::Send(SendError::Exhausted { provider, report })) => {
            render_exhausted(*provider, report, clock)
        }
        other => other.to_string(),
    }
}

/// `All OAuth buckets exhausted…` followed by every bucket, by name, with its reason, and the
/// earliest time one becomes usable again.
pub fn render_exhausted(
    provider: OAuthProvider,
    report: &ExhaustedReport,
    clock: &dyn Clock,
) -> String {
    let mut text = ExhaustedReport::HEADLINE.to_owned();
    for entry in &report.buckets {
        let reason = match entry.reason {
            SkipReason::Cooling { until, cause } => {
                format!("{cause} until {}", clock.time_of_day(until))
            }
            SkipReason::NeedsLogin { cause } => format!(
                "needs login ({cause}); run `/auth {provider} login{}`",
                if entry.bucket.is_default() {
                    String::new()
                } else {
                    format!(" {}", entry.bucket)
                }
            ),
            other => other.to_string(),
        };
        text.push_str(&format!("\n  {provider}/{}: {reason}", entry.bucket));
    }
    if let Some(at) = report.earliest_usable {
        let wait = at.seconds_since(clock.now());
        text.push_str(&format!(
            "\n  earliest usable again: {} (in {})",
            clock.time_of_day(at),
            humanize_seconds(wait)
        ));
    }
    text
}

async fn run(
    session: &Session,
    command: Command,
    prompt: &dyn UserPrompt,
) -> Result<(), SessionError> {
    match command {
        Command::Nothing | Command::Quit => {}
        Command::Help => help(prompt),
        Command::Message(text) => {
            let reply = session.send(&text, prompt).await?;
            if reply.streamed {
                prompt.stream("\n");
            } else {
                prompt.show(&reply.text);
            }
        }
        Command::AuthOverview => auth_overview(session, prompt).await?,
        Command::AuthStatus(p) => auth_status(session, p, prompt).await?,
        Command::AuthEnable(p) => {
            session.set_oauth_enabled(p, true)?;
            prompt.show(&format!(
                "OAuth enabled for {p}; sign-in starts on the first request (or now with /auth {p} login)"
            ));
        }
        Command::AuthDisable(p) => {
            session.set_oauth_enabled(p, false)?;
            prompt.show(&format!("OAuth disabled for {p}"));
        }
        Command::AuthLogin(p, bucket) => {
            login(
                session,
                BucketId::new(p, bucket),
                LoginMethod::Usual,
                prompt,
            )
            .await?;
        }
        Command::AuthDeviceLogin(p, bucket) => {
            login(
                session,
                BucketId::new(p, bucket),
                LoginMethod::Device,
                prompt,
            )
            .await?;
        }
        Command::AuthLogout(p, target) => {
            let all = matches!(target, LogoutTarget::All);
            let removed = session.logout(p, target).await?;
            match (all, removed.first()) {
                (false, Some(bucket)) => prompt.show(&format!("Logged out of {bucket}")),
                _ => prompt.show(&format!("Logged out of {} bucket(s) of {p}", removed.len())),
            }
        }
        Command::AuthClear(p, name) => {
            let bucket = session.clear(p, name).await?;
            prompt.show(&format!(
                "Cleared {bucket}: the next request tries it again"
            ));
        }
        Command::Provider(None) => prompt.show(&format!("Provider: {}", session.provider())),
        Command::Provider(Some(p)) => {
            let model = session.set_provider(p);
            prompt.show(&format!("Provider set to {p} (model {model})"));
        }
        Command::Model(None) => prompt.show(&format!("Model: {}", session.model())),
        Command::Model(Some(m)) => {
            prompt.show(&format!("Model set to {m}"));
            session.set_model(m);
        }
        Command::Key(key) => {
            let provider = session.set_key(Secret::new(key));
            prompt.show(&format!("API key set for {provider} for this session"));
        }
        Command::AskKey => {
            let provider = session.provider();
            let key = prompt
                .ask_secret(&format!("API key for {provider} (not shown):"))
                .await
                .map_err(|e| SessionError::NoKeyGiven(e.to_string()))?;
            if key.is_empty() {
                return Err(SessionError::NoKeyGiven("the key was empty".to_owned()));
            }
            session.set_key(Secret::new(key));
            prompt.show(&format!("API key set for {provider} for this session"));
        }
        Command::KeyFile(path) => {
            let provider = session.set_key_file(&path)?;
            prompt.show(&format!(
                "API key for {provider} read from {path} for this session"
            ));
        }
        Command::Set(name, value) => match session.set(name, value)? {
            SetOutcome::AuthKey(provider) => {
                prompt.show(&format!("auth-key set for {provider} for this session"));
            }
            SetOutcome::Setting(name) => prompt.show(&format!("{name} set for this session")),
        },
        Command::ProfileSaveModel(name, buckets) => {
            let (name, profile) = session.save_model_profile(&name, buckets).await?;
            prompt.show(&format!("Profile {name} saved ({})", describe(&profile)));
        }
        Command::ProfileSaveLoadBalancer(name, policy, members) => {
            let (name, profile) = session.save_balancer_profile(&name, &policy, &members)?;
            prompt.show(&format!("Profile {name} saved ({})", describe(&profile)));
        }
        Command::ProfileLoad(name) => {
            let (name, profile) = session.load_profile(&name)?;
            prompt.show(&format!("Profile {name} loaded ({})", describe(&profile)));
        }
        Command::ProfileList => {
            let entries = session.profiles()?;
            if entries.is_empty() {
                prompt.show("No saved profiles (save one with /profile save model NAME)");
            }
            for entry in entries {
                let what = match &entry.profile {
                    Ok(profile) => describe(profile),
                    Err(error) => format!("unreadable: {error}"),
                };
                let mark = if entry.is_default { " [default]" } else { "" };
                prompt.show(&format!("  {}{mark}: {what}", entry.name));
            }
        }
        Command::ProfileDelete(name) => {
            let name = session.delete_profile(&name)?;
            prompt.show(&format!("Profile {name} deleted"));
        }
        Command::ProfileSetDefault(name) => {
            let name = session.set_default_profile(&name)?;
            prompt.show(&format!("Profile {name} will load at start"));
        }
        Command::Storage => {
            let report = session.storage().await?;
            prompt.show(&format!("Tokens are kept in {}", report.summary));
            let mut total = 0;
            for (provider, names) in &report.buckets {
                total += names.len();
                let names: Vec<&str> = names.iter().map(BucketName::as_str).collect();
                prompt.show(&format!("  {provider}: {}", names.join(", ")));
            }
            let plural = if total == 1 { "" } else { "s" };
            prompt.show(&format!("{total} bucket{plural}"));
        }
        Command::StorageMigrate(backend) => match session.storage_migrate(backend, prompt).await? {
            Migrated::AlreadyThere { summary } => prompt.show(&format!(
                "Tokens are already kept in {summary}; storage.backend is now {backend}"
            )),
            Migrated::Moved { count, summary } => {
                let plural = if count == 1 { "" } else { "s" };
                prompt.show(&format!(
                    "✓ Moved {count} bucket{plural} to {summary}; storage.backend is now {backend}"
                ));
            }
        },
        Command::StatsBuckets => {
            let totals = session.statistics().await?;
            let now = session.clock().now();
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
        }
        Command::StatsQuota => {
            let lines = session.quota().await;
            prompt.show("OAuth Bucket Quota:");
            if lines.is_empty() {
                prompt
                    .show("  (no bucket has reported its limits yet; they come with each answer)");
            }
            for line in lines {
                prompt.show(&format!(
                    "  {}: {}",
                    line.bucket,
                    render_quota(&line.limits, session.clock().as_ref())
                ));
            }
        }
    }
    Ok(())
}

/// A bucket's reported limits as `/stats quota` shows them: `5h 72% (resets 18:00), 7d 31%
/// (resets Fri 09:00)`, the credits where reported, and when the figures were seen once that
/// is more than a minute ago.
pub fn render_quota(reported: &ReportedLimits, clock: &dyn Clock) -> String {
    let now = clock.now();
    let mut parts: Vec<String> = reported
        .limits
        .windows
        .iter()
        .map(|w| {
            let reset = match w.resets_at {
                Some(at) if at > now => format!(" (resets {})", clock.when(at)),
                // The figure predates the reset: the window has started again since.
                Some(at) => format!(" (reset at {})", clock.time_of_day(at)),
                None => String::new(),
            };
            format!("{} {}%{reset}", w.name, w.used_percent)
        })
        .collect();
    if let Some(credits) = &reported.limits.credits {
        parts.push(credits.to_string());
    }
    let mut text = parts.join(", ");
    if now.seconds_since(reported.seen_at) >= 60 {
        text.push_str(&format!(" (seen {})", humanize_ago(now, reported.seen_at)));
    }
    text
}

async fn login(
    session: &Session,
    bucket: BucketId,
    method: LoginMethod,
    prompt: &dyn UserPrompt,
) -> Result<(), SessionError> {
    prompt.show(&format!("Signing in to {bucket}…"));
    if let Some(notice) = bucket.provider.terms_notice() {
        prompt.show(notice);
    }
    let done = session.login(bucket, method, prompt).await?;
    prompt.show(&format!(
        "✓ Logged in to {} (expires in {})",
        done.bucket,
        humanize_seconds(done.seconds_left)
    ));
    Ok(())
}

async fn auth_overview(session: &Session, prompt: &dyn UserPrompt) -> Result<(), SessionError> {
    for line in session.auth_overview().await? {
        let oauth = line.provider;
        let enabled = if line.oauth_enabled {
            "enabled"
        } else {
            "disabled"
        };
        let expiry = match line.token {
            TokenSummary::NotUsed => String::new(),
            TokenSummary::ExpiresIn(seconds) => {
                format!(", token expires in {}", humanize_seconds(seconds))
            }
            TokenSummary::ExpiredWillRefresh => ", token expired (will refresh)".to_owned(),
            TokenSummary::CoolingUntil(until) => format!(
                ", cooling down until {}",
                session.clock().time_of_day(until)
            ),
            TokenSummary::Refused(cause) => format!(", refused by the provider ({cause})"),
            TokenSummary::NotLoggedIn => ", not logged in".to_owned(),
        };
        let mark = if line.usable { '✓' } else { '✗' };
        // Signing in does not turn OAuth on, which surprises: say what would use it.
        let why = match (&line.credential, line.unused_buckets.is_empty()) {
            (Credential::None, false) => {
                let names: Vec<&str> = line.unused_buckets.iter().map(BucketName::as_str).collect();
                format!(
                    "signed in ({}) but OAuth is off: /auth {oauth} enable uses it",
                    names.join(", ")
                )
            }
            (credential, _) => credential.why(),
        };
        prompt.show(&format!(
            "{mark} {oauth}: {} ({enabled}){expiry} — {why}",
            line.credential.method(),
        ));
    }
    // Which store answered matters as much as what it holds (`auto` chooses at run time).
    match session.storage_summary().await {
        Ok(summary) => prompt.show(&format!("Tokens are kept in {summary}")),
        Err(error) => prompt.show(&format!("Tokens cannot be read: {error}")),
    }
    Ok(())
}

async fn auth_status(
    session: &Session,
    provider: OAuthProvider,
    prompt: &dyn UserPrompt,
) -> Result<(), SessionError> {
    let lines = session.auth_status(provider).await?;
    prompt.show(&format!("OAuth Buckets for {provider}:"));
    if lines.is_empty() {
        prompt.show(&format!("  (none; run /auth {provider} login [BUCKET])"));
    }
    for line in lines {
        let name = &line.name;
        // The latest figures end the line: `(expires in 59 minutes; 5h 72%, 7d 31%)`.
        let figures = line
            .limits
            .as_ref()
            .map(|l| l.limits.percentages())
            .filter(|p| !p.is_empty());
        let with_figures = |state: &str, detail: Option<String>| match (detail, &figures) {
            (Some(detail), Some(figures)) => format!("  [{state}] {name} ({detail}; {figures})"),
            (Some(detail), None) => format!("  [{state}] {name} ({detail})"),
            (None, Some(figures)) => format!("  [{state}] {name} ({figures})"),
            (None, None) => format!("  [{state}] {name}"),
        };
        prompt.show(&match line.status {
            Err(error) => format!("  [needs login] {name} ({error})"),
            Ok(BucketStatus::Ok { seconds_left }) => with_figures(
                "ok",
                Some(format!("expires in {}", humanize_seconds(seconds_left))),
            ),
            Ok(BucketStatus::Expired) => with_figures("expired", None),
            Ok(BucketStatus::Cooldown { until }) => with_figures(
                "cooldown",
                Some(format!("until {}", session.clock().when(until))),
            ),
            Ok(BucketStatus::NeedsLogin) => format!("  [needs login] {name}"),
            Ok(BucketStatus::Refused { cause }) => format!("  [refused] {name} ({cause})"),
        });
    }
    Ok(())
}

/// A profile in one phrase: `anthropic claude-sonnet-4, buckets w1 → w2, with a key`.
pub fn describe(profile: &Profile) -> String {
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
        "  /auth codex login [BUCKET] --device     sign in with a code entered on another device",
        "  /auth P logout [BUCKET|--all]           delete tokens",
        "  /auth P clear BUCKET                    lift a cooldown or [refused] mark",
        "  /provider [P], /model [M]               show or set (anthropic, gemini, qwen, openai)",
        "  /key KEY, /keyfile PATH, /set NAME VALUE  session credentials and settings",
        "  /profile save model NAME [BUCKET...]    save provider, model and buckets",
        "  /profile save loadbalancer NAME failover|roundrobin PROFILE...",
        "  /profile load|delete|set-default NAME, /profile list",
        "  /stats buckets                          requests per bucket",
        "  /stats quota                            each bucket's reported limits and resets",
        "  /storage [migrate BACKEND]              where tokens are kept; move them (file, keyring, encrypted, auto)",
        "  /help, /quit",
        "Anything else is a message to the active provider.",
    ] {
        prompt.show(line);
    }
    debug_assert!(COMMANDS.contains(&"/help"));
}
