//! What the benchmarks share: a tokio runtime, the provider simulator on loopback, a temporary
//! `LLXPRT_HOME` with the real file stores, the services wired as `bin/wiring.rs` wires them, a
//! bare HTTP client for the baselines, and the printing of each ratio from criterion's estimates
//! of the same run.

// Each bench binary uses part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use criterion::Criterion;
use llxprt::compose::{compose, BrowserChoice, Composition, Services};
use llxprt_application::ports::{
    Browser, BrowserError, ChatMessage, ChatRequest, Clock, PromptError, Role, TokenStore,
    UserPrompt,
};
use llxprt_application::services::{AuthService, ChatService, SendTarget, TokenService};
use llxprt_application::settings::Settings;
use llxprt_domain::precedence::{resolve_credential, CredentialSources};
use llxprt_domain::{BucketId, BucketName, ChatProvider, OAuthProvider, Token};
use llxprt_providers::chat::{self, HttpOptions};
use llxprt_simulator::sandbox::settings_overrides;
use llxprt_simulator::{Consent, Simulator, SimulatorHandle};

/// The model every benchmark request names.
pub(crate) const MODEL: &str = "claude-sonnet-4";

/// Criterion sized for a shared two-core machine: the whole suite runs in a few minutes.
/// Command-line options (`cargo bench -- --sample-size 50`) still override these.
pub(crate) fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

/// A simulator, a home with the real stores, and the services over them.
pub(crate) struct Rig {
    /// Runs the simulator's server and every request. Two workers: the machine's two cores.
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) sim: SimulatorHandle,
    pub(crate) home: tempfile::TempDir,
    pub(crate) settings: Settings,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) tokens: Arc<TokenService>,
    pub(crate) auth: Arc<AuthService>,
    pub(crate) chat: Arc<ChatService>,
    /// Everything the factory wired, for what needs more than the fields above.
    pub(crate) services: Services,
    pub(crate) clock: Arc<dyn Clock>,
    /// Plays the user at a login: the browser that consents and the hand that pastes the code.
    pub(crate) user: Arc<ConsentingUser>,
    /// The baselines' client, configured as the product's own chat client.
    pub(crate) bare: reqwest::Client,
}

impl Rig {
    pub(crate) fn new() -> Self {
        Self::with_settings(&[])
    }

    /// A rig whose settings also have these `NAME=VALUE` overrides (`storage.backend=keyring`).
    pub(crate) fn with_settings(extra: &[(&str, &str)]) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let sim = rt
            .block_on(Simulator::start())
            .expect("the simulator starts");
        let home = tempfile::Builder::new()
            .prefix("llxprt-bench-")
            .tempdir()
            .expect("a temporary home");
        let user = Arc::new(ConsentingUser {
            sim: sim.clone(),
            opened: Mutex::new(None),
        });
        let mut overrides = settings_overrides(&sim);
        overrides.extend(
            extra
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        let services = compose(Composition {
            overrides: settings_overrides(&sim)
                .into_iter()
                .chain(
                    extra
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
                )
                .collect(),
            browser: BrowserChoice::Given(user.clone()),
            loopback: true,
            ..Composition::new(home.path())
        })
        .expect("the services compose");
        let Services {
            settings,
            store,
            tokens,
            auth,
            chat,
            clock,
            ..
        } = services.clone();
        Self {
            rt,
            sim,
            home,
            settings,
            store,
            tokens,
            auth,
            chat,
            services,
            clock,
            user,
            bare: http_client(),
        }
    }

    /// Signs in to the Anthropic bucket `name` as the simulated account of the same name, through
    /// the real flow, and returns the stored token.
    pub(crate) fn login(&self, name: &str) -> Token {
        self.sim.set_login_account(OAuthProvider::Anthropic, name);
        self.rt
            .block_on(self.auth.login(&bucket(name), self.user.as_ref()))
            .expect("the login succeeds")
    }

    /// Where and with what a message goes when OAuth is enabled and a profile names `buckets`
    /// (none: the default bucket), decided by the real precedence rules.
    pub(crate) fn target(&self, buckets: &[&str]) -> SendTarget {
        let provider = ChatProvider::Anthropic;
        SendTarget::new(
            provider,
            resolve_credential(CredentialSources {
                provider,
                command_line: None,
                profile_key: None,
                settings_key: None,
                env: provider
                    .api_key_env_vars()
                    .iter()
                    .map(|var| (*var, None))
                    .collect(),
                oauth_enabled: true,
                profile_buckets: buckets.iter().map(|b| name(b)).collect(),
            }),
        )
    }

    /// `POST {base}/v1/messages` with the body and headers Anthropic's chat client sends, on a
    /// bare `reqwest` client; returns the answer's body.
    pub(crate) async fn bare_post(&self, token: &Token) -> Vec<u8> {
        let (status, body) = self.bare_post_answer(token).await;
        assert!(status.is_success(), "{status}");
        body
    }

    /// The same bare POST, whatever its answer (a forced `429`): its status and whole body.
    pub(crate) async fn bare_post_answer(&self, token: &Token) -> (reqwest::StatusCode, Vec<u8>) {
        let url = format!("{}/v1/messages", self.settings.providers.anthropic.base_url);
        let response = self
            .bare
            .post(url)
            .header("anthropic-version", "2023-06-01")
            .bearer_auth(token.access_token.expose())
            .header("anthropic-beta", "oauth-2025-04-20")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&anthropic_body(&hello()))
            .send()
            .await
            .expect("the simulator answers");
        let status = response.status();
        (
            status,
            response.bytes().await.expect("the body arrives").to_vec(),
        )
    }
}

/// The product's chat HTTP client, as `bin/wiring.rs` builds it for the sandbox.
fn http_client() -> reqwest::Client {
    chat::http_client(HttpOptions {
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(120),
        system_proxy: false,
    })
    .expect("an HTTP client")
}

pub(crate) fn name(text: &str) -> BucketName {
    BucketName::parse(text).expect("a valid bucket name")
}

pub(crate) fn bucket(text: &str) -> BucketId {
    BucketId::new(OAuthProvider::Anthropic, name(text))
}

/// The message every benchmark sends.
pub(crate) fn hello() -> ChatRequest {
    ChatRequest {
        model: MODEL.to_owned(),
        messages: vec![ChatMessage {
            role: Role::User,
            text: "hello".to_owned(),
        }],
    }
}

/// The Messages API body Anthropic's chat client builds for `request` (a copy: the baseline must
/// carry the same bytes without going through the adapter).
pub(crate) fn anthropic_body(request: &ChatRequest) -> serde_json::Value {
    let messages: Vec<_> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            serde_json::json!({ "role": role, "content": m.text })
        })
        .collect();
    serde_json::json!({
        "model": request.model,
        "max_tokens": 8192,
        "messages": messages,
        "stream": true,
    })
}

/// A browser that remembers the authorize URL it was asked to open, and a user who, asked for
/// the code, consents at that URL in the simulator and pastes the `CODE#STATE` it shows.
pub(crate) struct ConsentingUser {
    sim: SimulatorHandle,
    opened: Mutex<Option<String>>,
}

#[async_trait]
impl Browser for ConsentingUser {
    async fn open(&self, url: &str) -> Result<(), BrowserError> {
        *self.opened.lock().unwrap() = Some(url.to_owned());
        Ok(())
    }
}

#[async_trait]
impl UserPrompt for ConsentingUser {
    fn show(&self, _line: &str) {}

    fn waiting(&self, _what: &str, _done: bool) {}

    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        let url = self.opened.lock().unwrap().take();
        let url = url.ok_or_else(|| PromptError::NoInput(question.to_owned()))?;
        match self.sim.consent(&url).await {
            Ok(Consent::CodeShown(code)) => Ok(code.expose().to_owned()),
            _ => Err(PromptError::NoInput(question.to_owned())),
        }
    }
}

/// A prompt that discards what it is shown but counts the lines, and never answers.
#[derive(Default)]
pub(crate) struct Discard {
    pub(crate) lines: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl UserPrompt for Discard {
    fn show(&self, _line: &str) {
        self.lines
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn waiting(&self, _what: &str, _done: bool) {}

    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        Err(PromptError::NoInput(question.to_owned()))
    }
}

/// One figure to print: a benchmark's median over its baseline's, both of `group` and measured
/// in this run.
pub(crate) struct Ratio<'a> {
    pub(crate) subject: &'a str,
    pub(crate) baseline: &'a str,
    /// The goal for the ratio, if it sets one.
    pub(crate) goal: Option<f64>,
}

/// Prints each ratio of `group`, and the absolute medians, from the estimates criterion wrote
/// after `started`. An estimate from an earlier run (a filtered or test-mode run did not measure
/// it) is reported as missing rather than mixed into a ratio.
pub(crate) fn report_ratios(group: &str, started: SystemTime, ratios: &[Ratio<'_>]) {
    for ratio in ratios {
        let subject = median_ns(group, ratio.subject, started);
        let baseline = median_ns(group, ratio.baseline, started);
        let (Some(subject), Some(baseline)) = (subject, baseline) else {
            println!(
                "ratio {group}/{} over {group}/{}: not measured in this run",
                ratio.subject, ratio.baseline
            );
            continue;
        };
        let value = subject / baseline;
        let goal = match ratio.goal {
            Some(goal) if value <= goal => format!(", goal ≤ {goal:.2}: met"),
            Some(goal) => format!(", goal ≤ {goal:.2}: NOT met"),
            None => String::new(),
        };
        println!(
            "ratio {group}/{} over {group}/{}: {value:.2}× ({} / {}){goal}",
            ratio.subject,
            ratio.baseline,
            human(subject),
            human(baseline),
        );
    }
}

/// One figure to print: a benchmark's median over the sum of several baselines' medians, all of
/// `group` and measured in this run (e.g. one refresh plus the same callers on a fresh token).
pub(crate) struct SumRatio<'a> {
    pub(crate) subject: &'a str,
    pub(crate) baselines: &'a [&'a str],
    /// The goal for the ratio, if it sets one.
    pub(crate) goal: Option<f64>,
}

/// Prints a [`SumRatio`] as a `ratio` line, like [`report_ratios`].
pub(crate) fn report_sum_ratio(group: &str, started: SystemTime, ratio: &SumRatio<'_>) {
    let names = ratio
        .baselines
        .iter()
        .map(|b| format!("{group}/{b}"))
        .collect::<Vec<_>>()
        .join(" + ");
    let subject = median_ns(group, ratio.subject, started);
    let baselines: Option<Vec<f64>> = ratio
        .baselines
        .iter()
        .map(|b| median_ns(group, b, started))
        .collect();
    let (Some(subject), Some(baselines)) = (subject, baselines) else {
        println!(
            "ratio {group}/{} over {names}: not measured in this run",
            ratio.subject
        );
        return;
    };
    let baseline: f64 = baselines.iter().sum();
    let value = subject / baseline;
    let parts = baselines
        .iter()
        .map(|b| human(*b))
        .collect::<Vec<_>>()
        .join(" + ");
    println!(
        "ratio {group}/{} over {names}: {value:.2}× ({} / ({parts})){}",
        ratio.subject,
        human(subject),
        goal_text(value, ratio.goal),
    );
}

/// `, goal ≤ G: met` (or `NOT met`), or nothing without a goal.
fn goal_text(value: f64, goal: Option<f64>) -> String {
    match goal {
        Some(goal) if value <= goal => format!(", goal ≤ {goal:.2}: met"),
        Some(goal) => format!(", goal ≤ {goal:.2}: NOT met"),
        None => String::new(),
    }
}

/// Prints `per` units of a benchmark's median (e.g. per bucket), and whether it stays under
/// `limit`, when one is given.
pub(crate) fn report_per(
    group: &str,
    id: &str,
    started: SystemTime,
    per: usize,
    unit: &str,
    limit: Option<Duration>,
) {
    let Some(median) = median_ns(group, id, started) else {
        println!("ratio {group}/{id}: not measured in this run");
        return;
    };
    let limit = match limit {
        Some(limit) if median <= limit.as_nanos() as f64 => format!(", under {limit:?}: met"),
        Some(limit) => format!(", under {limit:?}: NOT met"),
        None => String::new(),
    };
    // A `ratio` line too, so that scripts/bench puts it in its table.
    println!(
        "ratio {group}/{id}: {} in all, {} per {unit} ({per} {unit}s){limit}",
        human(median),
        human(median / per as f64),
    );
}

/// The median point estimate (nanoseconds) criterion wrote for `group/id` after `started`.
fn median_ns(group: &str, id: &str, started: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < started {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// Where criterion writes: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// target directory `cargo metadata` names (criterion's own order).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let metadata = std::env::var_os("CARGO").and_then(|cargo| {
        std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()
    });
    metadata
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .and_then(|meta| meta["target_directory"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

/// A duration in nanoseconds, in the unit that reads best.
pub(crate) fn human(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
