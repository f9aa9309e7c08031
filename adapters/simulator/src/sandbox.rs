//! `llxprt --sandbox`: every provider simulated on loopback inside the process.
//!
//! The simulator's URLs replace every provider endpoint in the settings; a simulated browser
//! consents over real HTTP, so the loopback and device flows run for real; the Anthropic code
//! that the simulated page shows is pasted for the user; and `/sandbox` commands let a user make
//! an account rate-limited, revoked, expired or slow to watch failover or Ctrl-C happen. In the sandbox each
//! bucket signs in as a simulated account of the same name.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{Browser, BrowserError, PromptError, UserPrompt};
use llxprt_application::shell::{CompletionData, LineOutcome, Shell};
use llxprt_domain::{ChatProvider, OAuthProvider, Secret};
use tokio::sync::Notify;

use crate::usage::{self, UsageSetting};
use crate::{Consent, ForcedFailure, Pause, SimulatorConfig, SimulatorHandle};

/// The settings that point every provider at the simulator, as `NAME=VALUE` overrides.
pub fn settings_overrides(sim: &SimulatorHandle) -> Vec<(String, String)> {
    let e = sim.endpoints();
    [
        ("providers.anthropic.base_url", &e.anthropic.base_url),
        (
            "providers.anthropic.oauth.authorize_url",
            &e.anthropic.authorize_url,
        ),
        (
            "providers.anthropic.oauth.token_url",
            &e.anthropic.token_url,
        ),
        (
            "providers.anthropic.oauth.redirect_uri",
            &e.anthropic.redirect_uri,
        ),
        ("providers.gemini.base_url", &e.gemini.base_url),
        (
            "providers.gemini.code_assist_base_url",
            &e.gemini.code_assist_base_url,
        ),
        (
            "providers.gemini.oauth.authorize_url",
            &e.gemini.authorize_url,
        ),
        ("providers.gemini.oauth.token_url", &e.gemini.token_url),
        (
            "providers.gemini.oauth.manual_redirect_uri",
            &e.gemini.manual_redirect_uri,
        ),
        ("providers.qwen.base_url", &e.qwen.base_url),
        (
            "providers.qwen.oauth.device_authorization_url",
            &e.qwen.device_authorization_url,
        ),
        ("providers.qwen.oauth.token_url", &e.qwen.token_url),
        ("providers.codex.base_url", &e.codex.base_url),
        ("providers.codex.oauth.issuer", &e.codex.issuer),
        ("providers.openai.base_url", &e.openai.base_url),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.clone()))
    .collect()
}

/// A code the simulated Anthropic page showed, waiting to be "pasted".
#[derive(Default)]
struct ShownCode {
    code: Mutex<Option<Secret>>,
    arrived: Notify,
}

/// Plays the user's browser against the simulator: consents to every authorize page, approves
/// device codes, and remembers a code page's `CODE#STATE` for the sandbox shell to paste.
pub struct SandboxBrowser {
    sim: SimulatorHandle,
    shown: Arc<ShownCode>,
}

/// Wraps the front end's prompt so that the sandbox "pastes" the code its browser was shown,
/// and enters a device login's code at the page it names, as the user would on another device.
struct SandboxPrompt<'a> {
    inner: &'a dyn UserPrompt,
    shown: &'a ShownCode,
    sim: &'a SimulatorHandle,
    /// The last `Visit: URL` shown, waiting for its `Enter code: CODE`.
    visit: Mutex<Option<String>>,
}

impl SandboxPrompt<'_> {
    /// Codex's device login names a page and a code and opens nothing: the simulated user
    /// types the code there. (Qwen's flow opens its page with the code itself.)
    fn enter_device_code(&self, line: &str) {
        if let Some(url) = line.strip_prefix("Visit: ") {
            *self.visit.lock().unwrap_or_else(PoisonError::into_inner) = Some(url.to_owned());
            return;
        }
        let Some(code) = line.strip_prefix("Enter code: ") else {
            return;
        };
        let visit = self
            .visit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let device_page = format!("{}/codex/device", self.sim.endpoints().codex.issuer);
        if visit.as_deref() != Some(device_page.as_str()) {
            return;
        }
        self.inner
            .show("(sandbox: the simulated user enters the code at that page)");
        let (sim, page) = (self.sim.clone(), format!("{device_page}?user_code={code}"));
        tokio::spawn(async move {
            if let Err(error) = sim.browse(&page).await {
                tracing::warn!(%error, "the simulated user could not enter the device code");
            }
        });
    }
}

impl SandboxBrowser {
    /// A browser that consents through `sim`.
    pub fn new(sim: SimulatorHandle) -> Self {
        Self {
            sim,
            shown: Arc::new(ShownCode::default()),
        }
    }

    /// Wraps the session's shell with the `/sandbox` commands and, when `paste_codes` (this
    /// browser is the one the flows open), the pasting of codes this browser is shown. With
    /// `--nobrowser` nothing is ever shown, so the user is asked at once.
    pub fn shell(&self, inner: Arc<dyn Shell>, paste_codes: bool) -> SandboxShell {
        let shown = paste_codes.then(|| self.shown.clone());
        SandboxShell::new(inner, self.sim.clone(), shown)
    }
}

#[async_trait]
impl Browser for SandboxBrowser {
    async fn open(&self, url: &str) -> Result<(), BrowserError> {
        let sim = self.sim.clone();
        let shown = self.shown.clone();
        let url = url.to_owned();
        // Like a real browser, the page loads while the command line goes on waiting.
        tokio::spawn(async move {
            let outcome = match sim.consent(&url).await {
                Ok(Consent::CodeShown(code)) => {
                    *shown.code.lock().unwrap_or_else(PoisonError::into_inner) = Some(code);
                    shown.arrived.notify_one();
                    Ok(())
                }
                Ok(Consent::Redirect(callback)) => sim.browse(callback.expose()).await.map(drop),
                Ok(Consent::Page(_)) => Ok(()),
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, "the simulated browser failed");
            }
        });
        Ok(())
    }
}

#[async_trait]
impl UserPrompt for SandboxPrompt<'_> {
    fn show(&self, line: &str) {
        self.inner.show(line);
        self.enter_device_code(line);
    }
    fn show_error(&self, line: &str) {
        self.inner.show_error(line);
    }
    fn stream(&self, text: &str) {
        self.inner.stream(text);
    }
    fn busy(&self, what: &str, done: bool) {
        self.inner.busy(what, done);
    }
    fn waiting(&self, what: &str, done: bool) {
        self.inner.waiting(what, done);
    }

    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        if question.contains("authorization code") {
            let take = || {
                self.shown
                    .code
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
            };
            // A code that arrived before the question left a stored wake-up behind, so one
            // wake-up does not mean a code is there: look again until the deadline.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let code = loop {
                let arrived = self.shown.arrived.notified();
                if let Some(code) = take() {
                    break Some(code);
                }
                if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                    break None;
                }
            };
            if let Some(code) = code {
                self.inner.show(&format!(
                    "{question} (sandbox: pasting the code the simulated page showed)"
                ));
                return Ok(code.expose().to_owned());
            }
        }
        self.inner.ask(question).await
    }
}

/// The session's shell plus the `/sandbox` commands, and bucket names used as simulated
/// account names at login.
pub struct SandboxShell {
    inner: Arc<dyn Shell>,
    sim: SimulatorHandle,
    /// Where the simulated browser leaves codes to paste; `None` with `--nobrowser`.
    shown: Option<Arc<ShownCode>>,
}

impl SandboxShell {
    /// Wraps `inner`. Every provider's simulated login account starts as `default`.
    fn new(inner: Arc<dyn Shell>, sim: SimulatorHandle, shown: Option<Arc<ShownCode>>) -> Self {
        for provider in OAuthProvider::ALL {
            sim.set_login_account(provider, "default");
        }
        Self { inner, sim, shown }
    }

    fn sandbox_command(&self, words: &[&str], prompt: &dyn UserPrompt) -> LineOutcome {
        let usage = [
            "/sandbox limit P BUCKET [SECONDS]   the bucket's next request gets 429 (retry-after SECONDS, 60 by default)",
            "/sandbox quota P BUCKET             the bucket's next request gets 402",
            "/sandbox usage P BUCKET W=PCT[@IN]  the bucket's answers report window W PCT % used (anthropic: 5h, 7d; codex: 5h, weekly), resetting IN from now (30s, 45m, 2h, 3d); at 100 the provider refuses with 429",
            "/sandbox revoke P BUCKET            revoke the bucket's tokens (403/refresh rejected)",
            "/sandbox expire P BUCKET            the simulator expires the bucket's access token now (llxprt finds out at its next request: 401, then a refresh)",
            "/sandbox lifetime P SECONDS         lifetime of tokens issued from now on (0: issued already expired)",
            "/sandbox slow P BUCKET SECONDS      the bucket's next reply stalls SECONDS after its first words; Ctrl-C cancels it",
            "/sandbox cut P BUCKET               the bucket's next reply fails after its first words (the reply is cut short, nothing is sent again)",
            "/sandbox refuse P BUCKET            the provider refuses the account to llxprt (anthropic: Claude Code only; gemini: UNSUPPORTED_CLIENT; qwen: free tier ended)",
            "/sandbox extra-usage P BUCKET       anthropic's 400 \"Third-party apps now draw from your extra usage\" (elsewhere 402)",
            "/sandbox cdn P BUCKET               the next request meets a CDN's HTML 403 page",
            "/sandbox fail P BUCKET              the next request gets 500",
        ];
        let provider = |p: &str| p.parse::<OAuthProvider>();
        let result = match words {
            ["limit", p, bucket, rest @ ..] => provider(p).map(|p| {
                let secs = rest.first().and_then(|s| s.parse().ok()).unwrap_or(60);
                self.sim.fail_next_chat_requests(
                    p,
                    bucket,
                    1,
                    ForcedFailure::RateLimited {
                        retry_after_secs: secs,
                    },
                );
                format!("{p}/{bucket}: the next request will be rate limited for {secs} s")
            }),
            ["quota", p, bucket] => provider(p).map(|p| {
                self.sim
                    .fail_next_chat_requests(p, bucket, 1, ForcedFailure::PaymentRequired);
                format!("{p}/{bucket}: the next request will get 402")
            }),
            ["usage", p, bucket, windows @ ..] => match provider(p) {
                Ok(p) => match parse_usage(p, windows).and_then(|settings| {
                    self.sim
                        .set_usage(p, bucket, &settings)
                        .map_err(|e| e.to_string())?;
                    Ok(settings)
                }) {
                    Ok(settings) => Ok(format!(
                        "{p}/{bucket}: its answers report {}",
                        describe_usage(&settings)
                    )),
                    Err(why) => {
                        prompt.show_error(&format!("Error: {why}"));
                        return LineOutcome::Failed;
                    }
                },
                Err(e) => Err(e),
            },
            ["refuse", p, bucket] => provider(p).map(|p| {
                // Qwen's ended tier refuses the refreshed token too.
                let count = if p == OAuthProvider::Qwen { 2 } else { 1 };
                self.sim
                    .fail_next_chat_requests(p, bucket, count, ForcedFailure::PolicyRefusal);
                format!("{p}/{bucket}: the provider will refuse the account to llxprt")
            }),
            ["extra-usage", p, bucket] => provider(p).map(|p| {
                self.sim
                    .fail_next_chat_requests(p, bucket, 1, ForcedFailure::ExtraUsageExhausted);
                format!("{p}/{bucket}: the next request finds no extra usage left")
            }),
            ["cdn", p, bucket] => provider(p).map(|p| {
                self.sim
                    .fail_next_chat_requests(p, bucket, 1, ForcedFailure::CdnChallenge);
                format!("{p}/{bucket}: the next request meets a CDN challenge page")
            }),
            ["fail", p, bucket] => provider(p).map(|p| {
                self.sim
                    .fail_next_chat_requests(p, bucket, 1, ForcedFailure::ServerError);
                format!("{p}/{bucket}: the next request gets 500")
            }),
            ["revoke", p, bucket] => provider(p).map(|p| {
                self.sim.revoke(p, bucket);
                format!("{p}/{bucket}: tokens revoked")
            }),
            ["expire", p, bucket] => provider(p).map(|p| {
                self.sim.expire_access_tokens(p, bucket);
                format!("{p}/{bucket}: access token expired")
            }),
            ["lifetime", p, secs] => match secs.parse::<u64>() {
                Ok(secs) => provider(p).map(|p| {
                    self.sim.set_token_lifetime(p, secs);
                    format!("{p}: new tokens live {secs} s")
                }),
                Err(_) => return not_seconds(secs, prompt),
            },
            ["slow", p, bucket, secs] => match secs.parse::<u64>() {
                Ok(secs) => provider(p).map(|p| {
                    self.sim.slow_next_chat_replies(
                        p,
                        bucket,
                        1,
                        Duration::from_secs(secs),
                        Pause::AfterFirstDelta,
                    );
                    format!("{p}/{bucket}: the next reply will take {secs} s")
                }),
                Err(_) => return not_seconds(secs, prompt),
            },
            ["cut", p, bucket] => provider(p).map(|p| {
                self.sim.slow_next_chat_replies(
                    p,
                    bucket,
                    1,
                    Duration::ZERO,
                    Pause::FailAfterFirstDelta,
                );
                format!("{p}/{bucket}: the next reply will fail after its first words")
            }),
            _ => {
                for line in usage {
                    prompt.show(line);
                }
                let keys: Vec<String> = ChatProvider::ALL
                    .iter()
                    .map(|p| SimulatorConfig::default_api_key(*p).expose().to_owned())
                    .collect();
                prompt.show(&format!(
                    "P is anthropic, gemini, qwen or codex; each BUCKET signs in as the simulated account of that name. API keys the simulator accepts: {}",
                    keys.join(", ")
                ));
                return if words.is_empty() {
                    LineOutcome::Succeeded
                } else {
                    LineOutcome::Failed
                };
            }
        };
        match result {
            Ok(line) => {
                prompt.show(&line);
                LineOutcome::Succeeded
            }
            Err(error) => {
                prompt.show_error(&format!("Error: {error}"));
                LineOutcome::Failed
            }
        }
    }
}

/// The settings of `/sandbox usage P BUCKET W=PCT[@IN] ...`, or what is wrong with them in a
/// line that says how to write them.
fn parse_usage(provider: OAuthProvider, words: &[&str]) -> Result<Vec<UsageSetting>, String> {
    let known = || usage::known_windows(provider);
    if usage::usage_windows(provider).is_empty() {
        return Err(format!("{provider} reports no usage windows"));
    }
    if words.is_empty() {
        return Err(format!(
            "name a window and its share, e.g. /sandbox usage {provider} BUCKET 5h=96@45m ({})",
            known()
        ));
    }
    words
        .iter()
        .map(|word| {
            let (name, figure) = word
                .split_once('=')
                .ok_or_else(|| format!("'{word}' is not WINDOW=PERCENT[@RESETS_IN] ({})", known()))?;
            let window = usage::window_named(provider, name)
                .ok_or_else(|| format!("{provider} reports no '{name}' window ({})", known()))?;
            let (percent, resets_in) = match figure.split_once('@') {
                Some((percent, resets_in)) => (percent, Some(resets_in)),
                None => (figure, None),
            };
            let percent = percent
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p >= 0.0)
                .ok_or_else(|| format!("'{percent}' is not a percentage (write {name}=96)"))?;
            let resets_in = resets_in
                .map(|r| {
                    duration(r).ok_or_else(|| {
                        format!("'{r}' is not a time from now (write {name}={percent}@45m; s, m, h or d)")
                    })
                })
                .transpose()?;
            Ok((window, percent, resets_in))
        })
        .collect()
}

/// `30s`, `45m`, `2h`, `3d`, or plain seconds.
fn duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let count: u64 = digits.parse().ok()?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    count.checked_mul(unit).map(Duration::from_secs)
}

/// `5h 96% (resets in 2700 s), 7d 31%`.
fn describe_usage(settings: &[UsageSetting]) -> String {
    let parts: Vec<String> = settings
        .iter()
        .map(|(window, percent, resets_in)| match resets_in {
            Some(d) => format!("{window} {percent}% (resets in {} s)", d.as_secs()),
            None => format!("{window} {percent}%"),
        })
        .collect();
    parts.join(", ")
}

fn not_seconds(word: &str, prompt: &dyn UserPrompt) -> LineOutcome {
    prompt.show_error(&format!("Error: '{word}' is not a number of seconds"));
    LineOutcome::Failed
}

#[async_trait]
impl Shell for SandboxShell {
    async fn run_line(&self, line: &str, prompt: &dyn UserPrompt) -> LineOutcome {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["/sandbox", rest @ ..] => return self.sandbox_command(rest, prompt),
            ["/auth", p, "login", rest @ ..] => {
                if let Ok(p) = p.parse::<OAuthProvider>() {
                    let account = rest
                        .iter()
                        .copied()
                        .find(|word| !word.starts_with("--"))
                        .unwrap_or("default");
                    self.sim.set_login_account(p, account);
                }
            }
            _ => {}
        }
        let outcome = match &self.shown {
            Some(shown) => {
                // A code no earlier line asked for belongs to no sign-in of this line.
                *shown.code.lock().unwrap_or_else(PoisonError::into_inner) = None;
                let prompt = SandboxPrompt {
                    inner: prompt,
                    shown,
                    sim: &self.sim,
                    visit: Mutex::new(None),
                };
                self.inner.run_line(line, &prompt).await
            }
            None => self.inner.run_line(line, prompt).await,
        };
        for provider in OAuthProvider::ALL {
            self.sim.set_login_account(provider, "default");
        }
        outcome
    }

    async fn completion_data(&self) -> CompletionData {
        self.inner.completion_data().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Simulator;
    use llxprt_domain::WindowName;

    /// What a `/sandbox` line showed, each line marked `out` or `err`.
    #[derive(Default)]
    struct Shown(Mutex<Vec<String>>);

    #[async_trait]
    impl UserPrompt for Shown {
        fn show(&self, line: &str) {
            self.0.lock().unwrap().push(format!("out {line}"));
        }
        fn show_error(&self, line: &str) {
            self.0.lock().unwrap().push(format!("err {line}"));
        }
        fn waiting(&self, _what: &str, _done: bool) {}
        async fn ask(&self, _question: &str) -> Result<String, PromptError> {
            Err(PromptError::Cancelled)
        }
    }

    struct NoShell;

    #[async_trait]
    impl Shell for NoShell {
        async fn run_line(&self, _line: &str, _prompt: &dyn UserPrompt) -> LineOutcome {
            LineOutcome::Succeeded
        }
        async fn completion_data(&self) -> CompletionData {
            CompletionData::default()
        }
    }

    async fn run(sim: &SimulatorHandle, line: &str) -> (LineOutcome, Vec<String>) {
        let shell = SandboxShell::new(Arc::new(NoShell), sim.clone(), None);
        let shown = Shown::default();
        let outcome = shell.run_line(line, &shown).await;
        let lines = shown.0.into_inner().unwrap();
        (outcome, lines)
    }

    #[tokio::test]
    async fn sandbox_usage_sets_the_reported_percentages() {
        let sim = Simulator::start().await.unwrap();
        let (outcome, lines) = run(&sim, "/sandbox usage anthropic work 5h=96@45m 7d=31").await;
        assert_eq!(outcome, LineOutcome::Succeeded, "{lines:?}");
        assert_eq!(
            lines,
            ["out anthropic/work: its answers report 5h 96% (resets in 2700 s), 7d 31%"]
        );
        let windows = sim.shared.lock().usage(OAuthProvider::Anthropic, "work");
        assert_eq!(windows[0].percent, 96.0);
        assert_eq!(windows[1].percent, 31.0);
        let (outcome, _) = run(&sim, "/sandbox usage codex work weekly=100@2h 5h=3").await;
        assert_eq!(outcome, LineOutcome::Succeeded);
        let windows = sim.shared.lock().usage(OAuthProvider::Codex, "work");
        assert_eq!(
            (windows[0].name, windows[0].percent),
            (WindowName::FiveHour, 3.0)
        );
        assert_eq!(
            (windows[1].name, windows[1].percent),
            (WindowName::Weekly, 100.0)
        );
    }

    #[tokio::test]
    async fn sandbox_usage_explains_bad_input_in_one_line_naming_the_windows() {
        let sim = Simulator::start().await.unwrap();
        for (line, says) in [
            (
                "/sandbox usage codex work 7d=31",
                "Error: codex reports no '7d' window (its windows: 5h, weekly)",
            ),
            (
                "/sandbox usage anthropic work 5h",
                "Error: '5h' is not WINDOW=PERCENT[@RESETS_IN] (its windows: 5h, 7d)",
            ),
            (
                "/sandbox usage anthropic work 5h=lots",
                "Error: 'lots' is not a percentage (write 5h=96)",
            ),
            (
                "/sandbox usage anthropic work 5h=96@soon",
                "Error: 'soon' is not a time from now (write 5h=96@45m; s, m, h or d)",
            ),
            (
                "/sandbox usage anthropic work",
                "Error: name a window and its share, e.g. /sandbox usage anthropic BUCKET 5h=96@45m (its windows: 5h, 7d)",
            ),
            (
                "/sandbox usage gemini work 5h=50",
                "Error: gemini reports no usage windows",
            ),
        ] {
            let (outcome, lines) = run(&sim, line).await;
            assert_eq!(outcome, LineOutcome::Failed, "{line}");
            assert_eq!(lines, [format!("err {says}")], "{line}");
        }
        // Nothing was set by the bad lines.
        let windows = sim.shared.lock().usage(OAuthProvider::Anthropic, "work");
        assert!(windows.iter().all(|w| w.percent == 0.0));
    }

    #[tokio::test]
    async fn the_sandbox_help_lists_usage_and_keeps_quota() {
        let sim = Simulator::start().await.unwrap();
        let (outcome, lines) = run(&sim, "/sandbox").await;
        assert_eq!(outcome, LineOutcome::Succeeded);
        assert!(lines
            .iter()
            .any(|l| l.starts_with("out /sandbox usage P BUCKET W=PCT[@IN]")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("out /sandbox quota P BUCKET")));
    }
}
