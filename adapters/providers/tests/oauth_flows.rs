//! The four sign-in flows end to end against the provider simulator, over real HTTP on loopback.
//!
//! The browser is played by [`SimBrowser`], which consents through the simulator and follows the
//! redirect to the flow's own callback server; the user by [`ScriptedUser`], which records what
//! it is shown and answers questions from a script. Every test ends by checking that nothing the
//! user saw, and no error, holds a secret the simulator issued.

// The helpers panic, like the tests, on what a working flow and simulator never do (clippy's test
// exemption covers only the `#[test]` functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use llxprt_application::ports::{
    Browser, BrowserError, Clock, FlowError, LoginMethod, LoginRequest, OAuthFlow, PromptError,
    RefreshError, UserPrompt,
};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};
use llxprt_providers::oauth::{
    AnthropicConfig, AnthropicFlow, BrowserEnv, CodexConfig, CodexFlow, GeminiConfig, GeminiFlow,
    OAuthHttp, QwenConfig, QwenFlow, SystemBrowser,
};
use llxprt_simulator::{Consent, Simulator, SimulatorConfig, SimulatorHandle};
use sha2::Digest as _;

/// No flow in these tests may take longer than this.
const BOUND: Duration = Duration::from_secs(60);

/// The moment every test's clock shows, so expiries can be checked exactly.
const NOW: UnixSeconds = UnixSeconds(1_800_000_000);

const USER: &str = "user1";

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> UnixSeconds {
        NOW
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted user

/// What the scripted user answers to the next question.
#[derive(Debug, Clone)]
enum Answer {
    /// This text.
    Text(String),
    /// What the browser put on the pasteboard (the code a provider page showed).
    Pasteboard,
    /// The pasteboard up to its `#`: the code without the state.
    PasteboardCodeOnly,
    /// Open the last URL shown on another device, consent there, and paste where the browser
    /// ended: the redirect address, or the code the provider page showed.
    ConsentToShownUrl,
    /// As [`Answer::ConsentToShownUrl`], but paste the address with its `state` replaced.
    ConsentWithState(&'static str),
    /// As [`Answer::ConsentToShownUrl`], but paste only the `code` of the address.
    ConsentCodeOnly,
    /// Consent to the last URL shown, keep where the browser ended on the pasteboard (a live
    /// answer of this sign-in, for another one to be handed), and paste nothing.
    ConsentAndKeep,
}

struct ScriptedUser {
    sim: SimulatorHandle,
    lines: Mutex<Vec<String>>,
    questions: Mutex<Vec<String>>,
    waits: AtomicUsize,
    answers: Mutex<VecDeque<Answer>>,
    pasteboard: Arc<Mutex<Option<String>>>,
}

impl ScriptedUser {
    fn new(sim: &SimulatorHandle, answers: &[Answer]) -> Self {
        Self {
            sim: sim.clone(),
            lines: Mutex::default(),
            questions: Mutex::default(),
            waits: AtomicUsize::new(0),
            answers: Mutex::new(answers.iter().cloned().collect()),
            pasteboard: Arc::default(),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn questions(&self) -> Vec<String> {
        self.questions.lock().unwrap().clone()
    }

    fn shown(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }

    fn take_pasteboard(&self) -> String {
        self.pasteboard
            .lock()
            .unwrap()
            .take()
            .expect("the browser put something on the pasteboard")
    }

    fn last_url(&self) -> String {
        self.lines()
            .into_iter()
            .rev()
            .find(|l| l.starts_with("http"))
            .expect("a URL was shown")
    }

    /// Consents to the last URL shown, as a browser on another device would.
    async fn consent_to_shown_url(&self) -> String {
        match self.sim.consent(&self.last_url()).await.unwrap() {
            Consent::Redirect(to) | Consent::CodeShown(to) => to.expose().to_owned(),
            Consent::Page(page) => panic!("consent ended on a page: {page:?}"),
        }
    }

    /// Nothing the user was shown or asked, and none of `errors`, holds an issued secret.
    fn assert_no_secret_leaked(&self, errors: &[String]) {
        let mut seen = self.lines();
        seen.extend(self.questions());
        seen.extend(errors.iter().cloned());
        assert_no_secret_in(&self.sim, &seen);
    }
}

fn assert_no_secret_in(sim: &SimulatorHandle, texts: &[String]) {
    let secrets = sim.issued_secrets();
    assert!(!secrets.is_empty(), "the simulator issued nothing to check");
    for text in texts {
        for secret in &secrets {
            assert!(
                !text.contains(secret.expose()),
                "an issued secret leaked into: {text:?}"
            );
        }
    }
}

#[async_trait]
impl UserPrompt for ScriptedUser {
    fn show(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_owned());
    }

    fn waiting(&self, _what: &str, done: bool) {
        if !done {
            self.waits.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        self.questions.lock().unwrap().push(question.to_owned());
        let answer = self.answers.lock().unwrap().pop_front();
        match answer {
            None => Err(PromptError::NoInput(
                "the script has no more answers".into(),
            )),
            Some(Answer::Text(text)) => Ok(text),
            Some(Answer::Pasteboard) => Ok(self.take_pasteboard()),
            Some(Answer::PasteboardCodeOnly) => {
                let pasted = self.take_pasteboard();
                Ok(pasted.split('#').next().unwrap().to_owned())
            }
            Some(Answer::ConsentToShownUrl) => Ok(self.consent_to_shown_url().await),
            Some(Answer::ConsentWithState(state)) => {
                let to = self.consent_to_shown_url().await;
                Ok(with_param(&to, "state", state))
            }
            Some(Answer::ConsentCodeOnly) => {
                let to = self.consent_to_shown_url().await;
                Ok(param(&to, "code").expect("the redirect carries a code"))
            }
            Some(Answer::ConsentAndKeep) => {
                let to = self.consent_to_shown_url().await;
                *self.pasteboard.lock().unwrap() = Some(to);
                Ok(String::new())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The simulated browser

/// What the simulated browser does with the URL it is asked to open.
#[derive(Debug, Clone, Copy)]
/// A browser whose launch fails (it is not known in advance that none can open): Gemini then
/// asks for the redirect address, since it already sent the loopback one. Without any browser
/// (`--nobrowser`) it uses its code page instead (`tests/command_line.rs`).
struct LaunchFails;

#[async_trait]
impl Browser for LaunchFails {
    async fn open(&self, _url: &str) -> Result<(), BrowserError> {
        Err(BrowserError::LaunchFailed(
            "the test's browser never opens".to_owned(),
        ))
    }
}

enum Act {
    /// Consent and follow every redirect, the flow's callback included.
    Follow,
    /// Consent and put the code the provider page shows on the pasteboard.
    CodeToPasteboard,
    /// Consent, then deliver the callback first with a forged `state`, then the real one.
    ForgedStateFirst,
    /// Swap the PKCE challenge in the authorize URL for another verifier's, then follow.
    SwappedChallenge,
    /// Poll the device token endpoint once itself (so the flow's first poll comes too soon),
    /// then approve.
    PollThenApprove,
    /// Refuse: no browser here.
    Unavailable,
}

struct SimBrowser {
    sim: SimulatorHandle,
    act: Act,
    pasteboard: Arc<Mutex<Option<String>>>,
    opened: Mutex<Vec<String>>,
    pages: Mutex<Vec<(u16, String)>>,
}

impl SimBrowser {
    fn new(sim: &SimulatorHandle, act: Act, user: &ScriptedUser) -> Arc<Self> {
        Arc::new(Self {
            sim: sim.clone(),
            act,
            pasteboard: user.pasteboard.clone(),
            opened: Mutex::default(),
            pages: Mutex::default(),
        })
    }

    fn opened(&self) -> Vec<String> {
        self.opened.lock().unwrap().clone()
    }

    fn pages(&self) -> Vec<(u16, String)> {
        self.pages.lock().unwrap().clone()
    }

    async fn browse(&self, url: &str) -> Result<(), BrowserError> {
        let page = self
            .sim
            .browse(url)
            .await
            .map_err(|e| BrowserError::LaunchFailed(e.to_string()))?;
        self.pages.lock().unwrap().push((page.status, page.body));
        Ok(())
    }

    async fn consent(&self, url: &str) -> Consent {
        self.sim
            .consent(url)
            .await
            .expect("the authorize page loads")
    }
}

#[async_trait]
impl Browser for SimBrowser {
    async fn open(&self, url: &str) -> Result<(), BrowserError> {
        self.opened.lock().unwrap().push(url.to_owned());
        match self.act {
            Act::Unavailable => Err(BrowserError::Unavailable("a test without a browser".into())),
            Act::Follow => self.browse(url).await,
            Act::CodeToPasteboard => match self.consent(url).await {
                Consent::CodeShown(code) => {
                    *self.pasteboard.lock().unwrap() = Some(code.expose().to_owned());
                    Ok(())
                }
                other => panic!("expected a code page, got {other:?}"),
            },
            Act::ForgedStateFirst => match self.consent(url).await {
                Consent::Redirect(to) => {
                    self.browse(&with_param(to.expose(), "state", "forged-state"))
                        .await?;
                    self.browse(to.expose()).await
                }
                other => panic!("expected a redirect, got {other:?}"),
            },
            Act::SwappedChallenge => {
                let other_verifier = "another-verifier-another-verifier-another-verifier-0123";
                let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(other_verifier.as_bytes()));
                self.browse(&with_param(url, "code_challenge", &challenge))
                    .await
            }
            Act::PollThenApprove => {
                let qwen = &self.sim.endpoints().qwen;
                let device_code = self
                    .sim
                    .issued_secrets()
                    .into_iter()
                    .find(|s| s.expose().starts_with("sim-device-"))
                    .expect("a device code was issued");
                let answer = reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .unwrap()
                    .post(&qwen.token_url)
                    .form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        (
                            "client_id",
                            SimulatorConfig::real_client_id(OAuthProvider::Qwen),
                        ),
                        ("device_code", device_code.expose()),
                        ("code_verifier", "the-browser-does-not-know-the-verifier"),
                    ])
                    .send()
                    .await
                    .unwrap();
                let answer = answer.text().await.unwrap();
                assert!(answer.contains("authorization_pending"), "{answer}");
                self.browse(url).await
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// URLs

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

// ---------------------------------------------------------------------------------------------
// The flows, configured for the simulator

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn http() -> OAuthHttp {
    OAuthHttp::direct().unwrap()
}

fn anthropic(sim: &SimulatorHandle, browser: Arc<dyn Browser>) -> AnthropicFlow {
    let e = &sim.endpoints().anthropic;
    let config = AnthropicConfig {
        authorize_url: e.authorize_url.clone(),
        token_url: e.token_url.clone(),
        client_id: SimulatorConfig::real_client_id(OAuthProvider::Anthropic).to_owned(),
        redirect_uri: e.redirect_uri.clone(),
        scopes: strings(&["org:create_api_key", "user:profile", "user:inference"]),
    };
    AnthropicFlow::new(config, http(), browser, Arc::new(FixedClock)).unwrap()
}

fn gemini(sim: &SimulatorHandle, browser: Arc<dyn Browser>) -> GeminiFlow {
    let e = &sim.endpoints().gemini;
    let config = GeminiConfig {
        authorize_url: e.authorize_url.clone(),
        token_url: e.token_url.clone(),
        client_id: SimulatorConfig::real_client_id(OAuthProvider::Gemini).to_owned(),
        client_secret: Secret::new(SimulatorConfig::REAL_GEMINI_CLIENT_SECRET),
        scopes: strings(&[
            "https://www.googleapis.com/auth/cloud-platform",
            "https://www.googleapis.com/auth/userinfo.email",
            "https://www.googleapis.com/auth/userinfo.profile",
        ]),
        manual_redirect_uri: e.manual_redirect_uri.clone(),
    };
    GeminiFlow::new(config, http(), browser, Arc::new(FixedClock))
        .unwrap()
        .with_callback_timeout(Duration::from_secs(30))
}

fn qwen(sim: &SimulatorHandle, browser: Arc<dyn Browser>) -> QwenFlow {
    let e = &sim.endpoints().qwen;
    let config = QwenConfig {
        device_authorization_url: e.device_authorization_url.clone(),
        token_url: e.token_url.clone(),
        client_id: SimulatorConfig::real_client_id(OAuthProvider::Qwen).to_owned(),
        scopes: strings(&["openid", "profile", "email", "model.completion"]),
    };
    QwenFlow::new(config, http(), browser, Arc::new(FixedClock)).unwrap()
}

fn codex(sim: &SimulatorHandle, ports: (u16, u16), browser: Arc<dyn Browser>) -> CodexFlow {
    let config = CodexConfig {
        issuer: sim.endpoints().codex.issuer.clone(),
        client_id: SimulatorConfig::real_client_id(OAuthProvider::Codex).to_owned(),
        scopes: strings(&["openid", "profile", "email", "offline_access"]),
        callback_port: ports.0,
        fallback_port: ports.1,
    };
    CodexFlow::new(config, http(), browser, Arc::new(FixedClock))
        .unwrap()
        .with_callback_timeout(Duration::from_secs(30))
}

/// Two loopback ports that were free a moment ago, so Codex tests do not fight over 1455.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

async fn sim_for_codex(ports: (u16, u16)) -> SimulatorHandle {
    Simulator::start_with(SimulatorConfig {
        codex_callback_ports: vec![ports.0, ports.1],
        ..SimulatorConfig::default()
    })
    .await
    .unwrap()
}

async fn login(flow: &dyn OAuthFlow, user: &ScriptedUser) -> Result<Token, FlowError> {
    tokio::time::timeout(BOUND, flow.login(user))
        .await
        .expect("the flow finished in time")
}

async fn refresh(flow: &dyn OAuthFlow, token: &Secret) -> Result<Token, RefreshError> {
    tokio::time::timeout(BOUND, flow.refresh(token))
        .await
        .expect("the refresh finished in time")
}

fn refresh_token(token: &Token) -> Secret {
    token.refresh_token.clone().expect("a refresh token")
}

// ---------------------------------------------------------------------------------------------
// Anthropic

#[tokio::test]
async fn anthropic_signs_in_with_the_pasted_code_and_state() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[Answer::Pasteboard]);
    let browser = SimBrowser::new(&sim, Act::CodeToPasteboard, &user);
    let token = login(&anthropic(&sim, browser.clone()), &user)
        .await
        .unwrap();

    assert_eq!(token.expiry, NOW + 3600);
    assert!(token.refresh_token.is_some());
    assert_eq!(user.questions(), ["Paste the authorization code:"]);
    let opened = browser.opened();
    assert_eq!(opened.len(), 1);
    assert!(
        user.lines().contains(&opened[0]),
        "the URL is shown as opened"
    );
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, USER).token_exchanges,
        1
    );
    user.assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn anthropic_accepts_a_bare_code_and_refuses_another_sign_ins_state() {
    let sim = Simulator::start().await.unwrap();

    let user = ScriptedUser::new(&sim, &[Answer::PasteboardCodeOnly]);
    let browser = SimBrowser::new(&sim, Act::CodeToPasteboard, &user);
    let bare = login(&anthropic(&sim, browser), &user).await;
    assert!(bare.is_ok(), "{bare:?}");

    let user = ScriptedUser::new(&sim, &[Answer::Text("somecode#not-the-state".into())]);
    let browser = SimBrowser::new(&sim, Act::Unavailable, &user);
    let forged = login(&anthropic(&sim, browser), &user).await;
    assert!(matches!(forged, Err(FlowError::Invalid(_))), "{forged:?}");
    user.assert_no_secret_leaked(&[format!("{forged:?}")]);
}

#[tokio::test]
async fn anthropic_without_a_browser_still_shows_the_url_and_asks_for_the_code() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[Answer::ConsentToShownUrl]);
    let browser = SimBrowser::new(&sim, Act::Unavailable, &user);
    let token = login(&anthropic(&sim, browser.clone()), &user).await;
    assert!(token.is_ok(), "{token:?}");
    assert!(user.lines().contains(&browser.opened()[0]));
    assert!(user.shown("a test without a browser"));
    user.assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn anthropic_refresh_rotates_and_a_reused_token_needs_a_login() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[Answer::Pasteboard]);
    let flow = anthropic(&sim, SimBrowser::new(&sim, Act::CodeToPasteboard, &user));
    let first = login(&flow, &user).await.unwrap();

    let second = refresh(&flow, &refresh_token(&first)).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(refresh_token(&second), refresh_token(&first), "rotated");
    assert_eq!(second.expiry, NOW + 3600);

    let reused = refresh(&flow, &refresh_token(&first)).await;
    assert!(
        matches!(reused, Err(RefreshError::NeedsLogin(_))),
        "{reused:?}"
    );
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, USER)
            .reused_refresh_tokens,
        1
    );
    user.assert_no_secret_leaked(&[format!("{reused:?}"), reused.unwrap_err().to_string()]);
}

// ---------------------------------------------------------------------------------------------
// Gemini

#[tokio::test]
async fn gemini_signs_in_through_the_loopback_callback() {
    let sim = Simulator::start().await.unwrap();
    sim.set_token_lifetime(OAuthProvider::Gemini, 120);
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::Follow, &user);
    let token = login(&gemini(&sim, browser.clone()), &user).await.unwrap();

    assert_eq!(token.expiry, NOW + 120);
    assert!(token.refresh_token.is_some());
    let opened = browser.opened();
    assert!(user.lines().contains(&opened[0]));
    let redirect = param(&opened[0], "redirect_uri").unwrap();
    assert!(redirect.starts_with("http://localhost:"), "{redirect}");
    assert!(redirect.ends_with("/oauth2callback"), "{redirect}");
    let (status, page) = browser.pages().pop().unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("return to the terminal"), "{page}");
    assert!(
        user.waits.load(Ordering::SeqCst) > 0,
        "the user saw it waiting"
    );
    assert!(user.questions().is_empty());
    user.assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn gemini_ignores_a_forged_state_and_waits_for_the_real_callback() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::ForgedStateFirst, &user);
    let token = login(&gemini(&sim, browser.clone()), &user).await;

    assert!(token.is_ok(), "{token:?}");
    let pages = browser.pages();
    assert_eq!(pages[0].0, 400, "the forged callback is refused");
    assert!(pages[0].1.contains("state mismatch"));
    assert_eq!(pages[1].0, 200);
    assert!(user.shown("state does not match"));
    user.assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn gemini_fails_when_the_pkce_challenge_was_swapped() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::SwappedChallenge, &user);
    let result = login(&gemini(&sim, browser), &user).await;

    match &result {
        Err(FlowError::Rejected(why)) => assert!(why.contains("invalid_grant"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.counters(OAuthProvider::Gemini, USER).token_exchanges, 0);
    user.assert_no_secret_leaked(&[format!("{result:?}")]);
}

#[tokio::test]
async fn gemini_shows_access_denied_from_the_callback() {
    let sim = Simulator::start().await.unwrap();
    sim.deny_next_consent(OAuthProvider::Gemini);
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::Follow, &user);
    let result = login(&gemini(&sim, browser.clone()), &user).await;

    assert!(matches!(result, Err(FlowError::Denied(_))), "{result:?}");
    assert!(user.shown("access_denied"));
    let (_, page) = browser.pages().pop().unwrap();
    assert!(page.contains("access_denied"), "{page}");
    user.assert_no_secret_leaked(&[format!("{result:?}")]);
}

#[tokio::test]
async fn gemini_whose_browser_fails_to_launch_takes_the_pasted_redirect_url_or_code() {
    let sim = Simulator::start().await.unwrap();
    let nobrowser: Arc<dyn Browser> = Arc::new(LaunchFails);

    let user = ScriptedUser::new(&sim, &[Answer::ConsentToShownUrl]);
    let token = login(&gemini(&sim, nobrowser.clone()), &user).await;
    assert!(token.is_ok(), "{token:?}");
    assert!(user.shown("could not be launched"));
    assert_eq!(user.questions().len(), 1);
    assert!(user.questions()[0].starts_with("Paste the redirect URL"));

    let user = ScriptedUser::new(&sim, &[Answer::ConsentCodeOnly]);
    let token = login(&gemini(&sim, nobrowser.clone()), &user).await;
    assert!(token.is_ok(), "a bare code is accepted: {token:?}");

    let user = ScriptedUser::new(&sim, &[Answer::ConsentWithState("forged")]);
    let result = login(&gemini(&sim, nobrowser), &user).await;
    assert!(matches!(result, Err(FlowError::Invalid(_))), "{result:?}");
    user.assert_no_secret_leaked(&[format!("{result:?}")]);
}

#[tokio::test]
async fn gemini_refresh_keeps_the_refresh_token_working() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let flow = gemini(&sim, SimBrowser::new(&sim, Act::Follow, &user));
    let first = login(&flow, &user).await.unwrap();
    let rt = refresh_token(&first);

    let second = refresh(&flow, &rt).await.unwrap();
    let third = refresh(&flow, &rt).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(third.access_token, second.access_token);
    assert_eq!(
        first.clone().merge_refresh(third).refresh_token,
        Some(rt.clone()),
        "Google sends no new refresh token; the old one is kept"
    );

    sim.revoke(OAuthProvider::Gemini, USER);
    let revoked = refresh(&flow, &rt).await;
    assert!(
        matches!(revoked, Err(RefreshError::NeedsLogin(_))),
        "{revoked:?}"
    );
    user.assert_no_secret_leaked(&[revoked.unwrap_err().to_string()]);
}

// ---------------------------------------------------------------------------------------------
// Qwen

#[tokio::test]
async fn qwen_shows_the_device_code_and_polls_until_approved() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::Follow, &user);
    let token = login(&qwen(&sim, browser.clone()), &user).await.unwrap();

    let lines = user.lines();
    let code = lines
        .iter()
        .find_map(|l| l.strip_prefix("Device code: "))
        .expect("the device code is shown");
    assert!(lines.contains(&format!("Enter code: {code}")));
    assert!(lines.contains(&format!("Visit: {}", sim.endpoints().qwen.verification_uri)));
    assert_eq!(
        param(&browser.opened()[0], "user_code").as_deref(),
        Some(code),
        "the complete verification URL was opened"
    );
    assert_eq!(
        token.resource_url.as_deref(),
        Some(sim.endpoints().qwen.resource_url.as_str())
    );
    assert_eq!(token.expiry, NOW + 3600);
    assert!(user.waits.load(Ordering::SeqCst) > 0);
    user.assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn qwen_without_a_browser_is_approved_from_the_printed_code() {
    let sim = Simulator::start().await.unwrap();
    let user = Arc::new(ScriptedUser::new(&sim, &[]));
    let flow = qwen(&sim, SimBrowser::new(&sim, Act::Unavailable, &user));
    // Another device: reads the printed lines, visits the URL and types the code.
    let other_device = {
        let (user, sim) = (user.clone(), sim.clone());
        tokio::spawn(async move {
            for _ in 0..400 {
                let lines = user.lines();
                let visit = lines.iter().find_map(|l| l.strip_prefix("Visit: "));
                let code = lines.iter().find_map(|l| l.strip_prefix("Enter code: "));
                if let (Some(visit), Some(code)) = (visit, code) {
                    let page = sim
                        .browse(&format!("{visit}?user_code={code}"))
                        .await
                        .unwrap();
                    return page.status;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the code was never shown");
        })
    };
    let token = login(&flow, user.as_ref()).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(other_device.await.unwrap(), 200);
}

#[tokio::test]
async fn qwen_stops_on_denial_and_on_expiry() {
    let sim = Simulator::start().await.unwrap();

    sim.deny_next_device_authorization(OAuthProvider::Qwen);
    let user = ScriptedUser::new(&sim, &[]);
    let denied = login(
        &qwen(&sim, SimBrowser::new(&sim, Act::Follow, &user)),
        &user,
    )
    .await;
    assert!(matches!(denied, Err(FlowError::Denied(_))), "{denied:?}");

    sim.expire_next_device_authorization(OAuthProvider::Qwen);
    let user = ScriptedUser::new(&sim, &[]);
    let expired = login(
        &qwen(&sim, SimBrowser::new(&sim, Act::Follow, &user)),
        &user,
    )
    .await;
    assert!(matches!(expired, Err(FlowError::Expired(_))), "{expired:?}");
    user.assert_no_secret_leaked(&[format!("{denied:?}"), format!("{expired:?}")]);
}

#[tokio::test]
async fn qwen_slows_down_when_told_and_still_signs_in() {
    // A two-second interval leaves ample room for the flow's first poll to come too soon after
    // the browser's own poll, however slow the machine.
    let sim = Simulator::start_with(SimulatorConfig {
        device_interval_secs: 2,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::PollThenApprove, &user);
    // Had the flow not added 5 s after `slow_down`, every later poll would come too soon as
    // well, and the flow would never finish.
    let token = login(&qwen(&sim, browser), &user).await;
    assert!(token.is_ok(), "{token:?}");
}

#[tokio::test]
async fn qwen_refresh_keeps_the_api_address() {
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let flow = qwen(&sim, SimBrowser::new(&sim, Act::Follow, &user));
    let first = login(&flow, &user).await.unwrap();

    let refreshed = refresh(&flow, &refresh_token(&first)).await.unwrap();
    assert_ne!(refreshed.access_token, first.access_token);
    let merged = first.clone().merge_refresh(refreshed);
    assert_eq!(merged.resource_url, first.resource_url);
    assert_eq!(merged.refresh_token, first.refresh_token);

    sim.revoke(OAuthProvider::Qwen, USER);
    let revoked = refresh(&flow, &refresh_token(&first)).await;
    assert!(
        matches!(revoked, Err(RefreshError::NeedsLogin(_))),
        "{revoked:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Codex

/// Serializes the tests that bind the real Codex ports 1455 and 1457.
static REAL_CODEX_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn codex_signs_in_and_reads_the_account_id() {
    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::Follow, &user);
    let token = login(&codex(&sim, ports, browser.clone()), &user)
        .await
        .unwrap();

    let opened = &browser.opened()[0];
    assert!(user.lines().contains(opened));
    assert_eq!(
        param(opened, "redirect_uri"),
        Some(format!("http://localhost:{}/auth/callback", ports.0))
    );
    assert!(token.account_id.as_deref().is_some_and(|a| !a.is_empty()));
    assert!(token.id_token.is_some());
    assert_eq!(token.expiry, NOW + 3600);
    let (status, page) = browser.pages().pop().unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("return to the terminal"));
    assert!(!user.shown("busy"));
    user.assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn codex_falls_back_to_1457_when_1455_is_busy() {
    let _ports = REAL_CODEX_PORTS.lock().await;
    // If something else already holds 1455, it is busy all the same.
    let _holder = std::net::TcpListener::bind("127.0.0.1:1455").ok();
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let browser = SimBrowser::new(&sim, Act::Follow, &user);
    let token = login(&codex(&sim, (1455, 1457), browser.clone()), &user).await;

    assert!(token.is_ok(), "{token:?}");
    assert!(user.shown("Port 1455 is busy"));
    assert!(user.shown("using port 1457"));
    assert_eq!(
        param(&browser.opened()[0], "redirect_uri").as_deref(),
        Some("http://localhost:1457/auth/callback")
    );
}

#[tokio::test]
async fn codex_over_ssh_takes_the_pasted_redirect_url_and_refuses_a_bare_code() {
    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let ssh = BrowserEnv {
        ssh_connection: Some("10.0.0.1 50000 10.0.0.2 22".into()),
        ..BrowserEnv::default()
    };
    let browser: Arc<dyn Browser> = Arc::new(SystemBrowser::new(ssh, false));

    let user = ScriptedUser::new(&sim, &[Answer::ConsentToShownUrl]);
    let token = login(&codex(&sim, ports, browser.clone()), &user).await;
    assert!(token.is_ok_and(|t| t.account_id.is_some()));
    assert!(user.shown("no browser available"));

    let user = ScriptedUser::new(&sim, &[Answer::ConsentCodeOnly]);
    let result = login(&codex(&sim, ports, browser), &user).await;
    assert!(matches!(result, Err(FlowError::Invalid(_))), "{result:?}");
    user.assert_no_secret_leaked(&[format!("{result:?}")]);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn codex_without_a_display_takes_the_pasted_redirect_url() {
    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let no_display: Arc<dyn Browser> = Arc::new(SystemBrowser::new(BrowserEnv::default(), false));
    let user = ScriptedUser::new(&sim, &[Answer::ConsentToShownUrl]);
    let token = login(&codex(&sim, ports, no_display), &user).await;
    assert!(token.is_ok(), "{token:?}");
    assert!(user.shown("no display"));
    assert!(
        user.shown("`/auth codex login --device` signs in with a code"),
        "the paste flow says the device login exists: {:?}",
        user.lines()
    );
}

async fn device_login(
    flow: &CodexFlow,
    bucket: &str,
    user: &ScriptedUser,
) -> Result<Token, FlowError> {
    let request = LoginRequest {
        bucket: BucketId::new(OAuthProvider::Codex, BucketName::parse(bucket).unwrap()),
        method: LoginMethod::Device,
    };
    tokio::time::timeout(BOUND, flow.login_for(&request, user))
        .await
        .expect("the flow finished in time")
}

/// Another device: reads the printed lines, visits the page and types the code there.
fn enter_the_code_elsewhere(
    sim: &SimulatorHandle,
    user: &Arc<ScriptedUser>,
) -> tokio::task::JoinHandle<u16> {
    let (user, sim) = (user.clone(), sim.clone());
    tokio::spawn(async move {
        for _ in 0..400 {
            let lines = user.lines();
            let visit = lines.iter().find_map(|l| l.strip_prefix("Visit: "));
            let code = lines.iter().find_map(|l| l.strip_prefix("Enter code: "));
            if let (Some(visit), Some(code)) = (visit, code) {
                let page = sim
                    .browse(&format!("{visit}?user_code={code}"))
                    .await
                    .unwrap();
                return page.status;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the code was never shown");
    })
}

#[tokio::test]
async fn codex_device_login_shows_the_code_waits_and_signs_in_with_no_browser() {
    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let user = Arc::new(ScriptedUser::new(&sim, &[]));
    let browser = SimBrowser::new(&sim, Act::Unavailable, &user);
    let flow = codex(&sim, ports, browser.clone());
    let other_device = enter_the_code_elsewhere(&sim, &user);
    let token = device_login(&flow, "work1", &user).await.unwrap();

    assert_eq!(other_device.await.unwrap(), 200);
    let lines = user.lines();
    assert!(
        lines.contains(&format!(
            "Visit: {}/codex/device",
            sim.endpoints().codex.issuer
        )),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Enter code: ")),
        "{lines:?}"
    );
    assert!(
        browser.opened().is_empty(),
        "a device login opens no browser"
    );
    assert!(user.waits.load(Ordering::SeqCst) > 0, "the wait is shown");
    assert!(token.account_id.as_deref().is_some_and(|a| !a.is_empty()));
    assert!(token.refresh_token.is_some());
    let counted = sim.counters(OAuthProvider::Codex, USER);
    assert_eq!(counted.device_code_requests, 1);
    // The device token refreshes like any other.
    let refreshed = refresh(&flow, &refresh_token(&token)).await;
    assert!(refreshed.is_ok(), "{refreshed:?}");
    user.assert_no_secret_leaked(&[]);
}

#[tokio::test]
async fn codex_device_login_stops_on_denial_expiry_and_its_time_limit() {
    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let no_browser =
        || -> Arc<dyn Browser> { Arc::new(SystemBrowser::new(BrowserEnv::default(), true)) };

    sim.deny_next_device_authorization(OAuthProvider::Codex);
    let user = Arc::new(ScriptedUser::new(&sim, &[]));
    let entered = enter_the_code_elsewhere(&sim, &user);
    let denied = device_login(&codex(&sim, ports, no_browser()), "default", &user).await;
    assert!(matches!(denied, Err(FlowError::Denied(_))), "{denied:?}");
    entered.await.unwrap();

    sim.expire_next_device_authorization(OAuthProvider::Codex);
    let user = Arc::new(ScriptedUser::new(&sim, &[]));
    let expired = device_login(&codex(&sim, ports, no_browser()), "work2", &user).await;
    let Err(FlowError::Expired(why)) = &expired else {
        panic!("{expired:?}")
    };
    assert!(why.contains("/auth codex login work2 --device"), "{why}");

    // Nobody enters the code: the flow gives up at its limit and says how to start again.
    let user = Arc::new(ScriptedUser::new(&sim, &[]));
    let flow = codex(&sim, ports, no_browser()).with_device_timeout(Duration::from_millis(1500));
    let late = device_login(&flow, "default", &user).await;
    let Err(FlowError::Expired(why)) = &late else {
        panic!("{late:?}")
    };
    assert!(
        why.contains("not entered") && why.contains("/auth codex login --device"),
        "{why}"
    );
    user.assert_no_secret_leaked(&[
        format!("{denied:?}"),
        format!("{expired:?}"),
        format!("{late:?}"),
    ]);
}

#[tokio::test]
async fn codex_refresh_rotates_keeps_the_account_and_refuses_reuse() {
    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let user = ScriptedUser::new(&sim, &[]);
    let flow = codex(&sim, ports, SimBrowser::new(&sim, Act::Follow, &user));
    let first = login(&flow, &user).await.unwrap();

    let second = refresh(&flow, &refresh_token(&first)).await.unwrap();
    assert_ne!(refresh_token(&second), refresh_token(&first), "rotated");
    let merged = first.clone().merge_refresh(second);
    assert_eq!(merged.account_id, first.account_id);

    let reused = refresh(&flow, &refresh_token(&first)).await;
    match &reused {
        Err(RefreshError::NeedsLogin(why)) => assert!(why.contains("refresh_token_reused")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sim.counters(OAuthProvider::Codex, USER)
            .reused_refresh_tokens,
        1
    );
    user.assert_no_secret_leaked(&[format!("{reused:?}")]);
}

// ---------------------------------------------------------------------------------------------
// Pasted answers that must not sign anyone in

/// Gives each pasted answer to a new sign-in through `flow` and checks that none ends in a
/// login, that `provider` exchanged no code, and that no error holds a secret.
async fn assert_no_paste_logs_in(
    sim: &SimulatorHandle,
    provider: OAuthProvider,
    flow: impl Fn(&ScriptedUser) -> Box<dyn OAuthFlow>,
    pasted: &[String],
    ports: &[u16],
) {
    for text in pasted {
        // The last sign-in's callback server lets its fixed port go a moment after it ends.
        for port in ports {
            let mut free = false;
            for _ in 0..100 {
                free = std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok();
                if free {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(free, "port {port} stayed busy");
        }
        let user = ScriptedUser::new(sim, &[Answer::Text(text.clone())]);
        let result = login(flow(&user).as_ref(), &user).await;
        assert!(
            matches!(result, Err(FlowError::Invalid(_) | FlowError::Rejected(_))),
            "{provider} signed in with {text:?}: {result:?}"
        );
        user.assert_no_secret_leaked(&[format!("{result:?}"), format!("{:?}", result.err())]);
    }
    assert_eq!(
        sim.provider_counters(provider).token_exchanges,
        0,
        "{provider} exchanged a code"
    );
}

/// Answers that are no answer at all, for every flow.
fn malformed() -> Vec<String> {
    strings(&[
        "",
        "   ",
        "#",
        "\u{0}",
        "http://",
        "://",
        "http://[::1",
        "http://localhost:1/cb?code=&state=",
        "http://localhost:1/cb?state=&code=x&state=",
    ])
}

#[tokio::test]
async fn anthropic_never_signs_in_with_another_sign_ins_code_or_a_malformed_one() {
    let sim = Simulator::start().await.unwrap();
    // A live CODE#STATE of another sign-in, never exchanged: its flow got an empty paste.
    let other = ScriptedUser::new(&sim, &[Answer::Text(String::new())]);
    let browser = SimBrowser::new(&sim, Act::CodeToPasteboard, &other);
    let abandoned = login(&anthropic(&sim, browser), &other).await;
    assert!(
        matches!(abandoned, Err(FlowError::Invalid(_))),
        "{abandoned:?}"
    );
    let stolen = other.take_pasteboard();
    let (code, state) = stolen.split_once('#').unwrap();

    let mut pasted = malformed();
    pasted.extend([
        stolen.clone(),
        format!("{code}#"),
        format!("#{state}"),
        format!("{code}#{state}#{state}"),
        // A bare code is taken on trust, and the provider then refuses it: it was issued with
        // another state and another PKCE challenge.
        code.to_owned(),
        "not-a-code".to_owned(),
    ]);
    assert_no_paste_logs_in(
        &sim,
        OAuthProvider::Anthropic,
        |user| {
            Box::new(anthropic(
                &sim,
                SimBrowser::new(&sim, Act::Unavailable, user),
            ))
        },
        &pasted,
        &[],
    )
    .await;
}

#[tokio::test]
async fn gemini_never_signs_in_with_another_sign_ins_redirect_or_a_malformed_one() {
    let sim = Simulator::start().await.unwrap();
    let nobrowser: Arc<dyn Browser> = Arc::new(LaunchFails);
    let other = ScriptedUser::new(&sim, &[Answer::ConsentAndKeep]);
    let abandoned = login(&gemini(&sim, nobrowser.clone()), &other).await;
    assert!(
        matches!(abandoned, Err(FlowError::Invalid(_))),
        "{abandoned:?}"
    );
    let stolen = other.take_pasteboard();
    let code = param(&stolen, "code").unwrap();

    let mut pasted = malformed();
    pasted.extend([
        stolen.clone(),
        with_param(&stolen, "state", "not-this-sign-ins"),
        format!("{stolen}&state=also-repeated"),
        // Taken on trust as a bare code; refused at the exchange (another loopback port and
        // another PKCE challenge).
        code,
    ]);
    assert_no_paste_logs_in(
        &sim,
        OAuthProvider::Gemini,
        |_| Box::new(gemini(&sim, nobrowser.clone())),
        &pasted,
        &[],
    )
    .await;
}

#[tokio::test]
async fn codex_never_signs_in_with_another_sign_ins_redirect_or_a_malformed_one() {
    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let nobrowser: Arc<dyn Browser> = Arc::new(SystemBrowser::new(BrowserEnv::default(), true));
    let other = ScriptedUser::new(&sim, &[Answer::ConsentAndKeep]);
    let abandoned = login(&codex(&sim, ports, nobrowser.clone()), &other).await;
    assert!(
        matches!(abandoned, Err(FlowError::Invalid(_))),
        "{abandoned:?}"
    );
    let stolen = other.take_pasteboard();
    let code = param(&stolen, "code").unwrap();

    let mut pasted = malformed();
    pasted.extend([
        stolen.clone(),
        with_param(&stolen, "state", "not-this-sign-ins"),
        format!("{stolen}&code=another"),
        code.clone(),
        format!("{code}#whatever"),
    ]);
    assert_no_paste_logs_in(
        &sim,
        OAuthProvider::Codex,
        |_| Box::new(codex(&sim, ports, nobrowser.clone())),
        &pasted,
        &[ports.0],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Refresh failures that are not the provider's refusal

/// A token endpoint that answers every request with `status`, `content_type` and `body`.
async fn stub_token_endpoint(
    status: u16,
    content_type: &'static str,
    body: &'static str,
) -> String {
    use axum::http::{header, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || async move {
        (
            StatusCode::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, content_type)],
            body,
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn qwen_at(token_url: &str) -> QwenFlow {
    let config = QwenConfig {
        device_authorization_url: format!("{token_url}/device"),
        token_url: token_url.to_owned(),
        client_id: "client".into(),
        scopes: strings(&["openid"]),
    };
    QwenFlow::new(
        config,
        http(),
        Arc::new(SystemBrowser::new(BrowserEnv::default(), true)),
        Arc::new(FixedClock),
    )
    .unwrap()
}

#[tokio::test]
async fn refresh_failures_are_classified_for_the_token_service() {
    let rt = Secret::new("rt-stub");
    let transient = [
        stub_token_endpoint(503, "text/html", "<h1>down</h1>").await,
        stub_token_endpoint(500, "application/json", r#"{"error":"server_error"}"#).await,
        stub_token_endpoint(429, "application/json", r#"{"error":"rate_limited"}"#).await,
        stub_token_endpoint(200, "application/json", "{not json").await,
        stub_token_endpoint(302, "text/plain", "elsewhere").await,
        {
            // Nothing listens here any more.
            let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/token", gone.local_addr().unwrap())
        },
    ];
    for url in transient {
        let result = refresh(&qwen_at(&url), &rt).await;
        assert!(
            matches!(result, Err(RefreshError::Transient(_))),
            "{url}: {result:?}"
        );
    }
    let refused = [
        stub_token_endpoint(400, "text/html", "<h1>bad request</h1>").await,
        stub_token_endpoint(401, "text/plain", "no").await,
        stub_token_endpoint(400, "application/json", r#"{"error":"invalid_grant"}"#).await,
    ];
    for url in refused {
        let result = refresh(&qwen_at(&url), &rt).await;
        assert!(
            matches!(result, Err(RefreshError::NeedsLogin(_))),
            "{url}: {result:?}"
        );
    }
}

/// How a broken token endpoint answers.
#[derive(Debug, Clone, Copy)]
enum Broken {
    /// `500` with a text body.
    ServerError,
    /// `200` with a sign-in page in HTML, as a captive portal or a misrouted proxy answers.
    HtmlPage,
    /// `200` that says JSON and is not.
    InvalidJson,
    /// `200` with ten megabytes, streamed.
    Huge,
    /// Takes the request and says nothing for a minute.
    Silent,
}

/// A token endpoint that answers every request the `broken` way.
async fn broken_token_endpoint(broken: Broken) -> String {
    use axum::body::{Body, Bytes};
    use axum::http::{header, Response, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || async move {
        let answer = |status: StatusCode, content_type: &str, body: Body| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, content_type)
                .body(body)
                .unwrap()
        };
        match broken {
            Broken::ServerError => answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                Body::from("internal error"),
            ),
            Broken::HtmlPage => answer(
                StatusCode::OK,
                "text/html",
                Body::from("<!doctype html><html><body><form>Sign in</form></body></html>"),
            ),
            Broken::InvalidJson => answer(
                StatusCode::OK,
                "application/json",
                Body::from(r#"{"access_token": "at-new", "#),
            ),
            Broken::Huge => {
                let chunk = Bytes::from(vec![b' '; 64 << 10]);
                let chunks = std::iter::repeat_n(chunk, 160).map(Ok::<_, std::io::Error>);
                answer(
                    StatusCode::OK,
                    "application/json",
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }
            Broken::Silent => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                answer(StatusCode::OK, "application/json", Body::from("{}"))
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_broken_token_endpoint_is_a_clear_error_in_time_and_the_stored_token_stays() {
    use llxprt_application::ports::TokenStore;
    use llxprt_application::services::{FlowRegistry, TokenError, TokenService};
    use llxprt_domain::BucketId;
    use llxprt_store_file::FileTokenStore;

    // A short request timeout, so that the silent endpoint costs a second, not a minute.
    let http =
        OAuthHttp::direct_with_timeouts(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
    let nobrowser: Arc<dyn Browser> = Arc::new(SystemBrowser::new(BrowserEnv::default(), true));
    let cases = [
        (Broken::ServerError, "HTTP 500"),
        (Broken::HtmlPage, "could not be read"),
        (Broken::InvalidJson, "could not be read"),
        (Broken::Huge, "too large"),
        (Broken::Silent, "timed out"),
    ];
    for (broken, expected) in cases {
        let url = broken_token_endpoint(broken).await;
        // Anthropic's JSON exchange is written by hand; Qwen's form goes through `oauth2`.
        let flows: [Arc<dyn OAuthFlow>; 2] = [
            Arc::new(
                AnthropicFlow::new(
                    AnthropicConfig {
                        authorize_url: format!("{url}/authorize"),
                        token_url: url.clone(),
                        client_id: "client".into(),
                        redirect_uri: format!("{url}/code"),
                        scopes: strings(&["user:inference"]),
                    },
                    http.clone(),
                    nobrowser.clone(),
                    Arc::new(FixedClock),
                )
                .unwrap(),
            ),
            Arc::new(
                QwenFlow::new(
                    QwenConfig {
                        device_authorization_url: format!("{url}/device"),
                        token_url: url.clone(),
                        client_id: "client".into(),
                        scopes: strings(&["openid"]),
                    },
                    http.clone(),
                    nobrowser.clone(),
                    Arc::new(FixedClock),
                )
                .unwrap(),
            ),
        ];
        for flow in flows {
            let provider = flow.provider();
            let home = tempfile::tempdir().unwrap();
            let store = Arc::new(FileTokenStore::new(home.path().join("oauth")));
            let bucket = BucketId::default_for(provider);
            let mut expired = Token::new(Secret::new("at-old"), NOW - 10);
            expired.refresh_token = Some(Secret::new("rt-old"));
            store.save(&bucket, &expired).await.unwrap();
            let file = home.path().join("oauth").join(format!("{provider}.json"));
            let before = std::fs::read(&file).unwrap();
            let mut registry = FlowRegistry::new();
            registry.register(flow);
            let service = TokenService::new(store.clone(), registry, Arc::new(FixedClock));

            let result =
                tokio::time::timeout(Duration::from_secs(20), service.valid_token(&bucket))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("{provider} {broken:?}: no answer within the timeout")
                    });
            let error = result.unwrap_err();
            assert!(
                matches!(error, TokenError::Transient { .. }),
                "{provider} {broken:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("could not refresh {provider}"))
                    && message.contains(expected),
                "{provider} {broken:?}: {message}"
            );
            assert_eq!(
                std::fs::read(&file).unwrap(),
                before,
                "{provider} {broken:?}: the stored token changed"
            );
            assert_eq!(store.load(&bucket).await.unwrap(), Some(expired));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets stay out of logs

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every event of this test binary, at TRACE. A process-wide subscriber, because a per-test
/// default loses events whenever another test thread caches a callsite as uninteresting.
fn captured_logs() -> &'static LogBuffer {
    static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test sets a global subscriber");
        logs
    })
}

#[tokio::test]
async fn no_log_line_holds_an_issued_secret() {
    let logs = captured_logs();

    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let user = ScriptedUser::new(&sim, &[Answer::Pasteboard, Answer::ConsentToShownUrl]);
    let follow = SimBrowser::new(&sim, Act::Follow, &user);
    let flows: Vec<Box<dyn OAuthFlow>> = vec![
        Box::new(anthropic(
            &sim,
            SimBrowser::new(&sim, Act::CodeToPasteboard, &user),
        )),
        Box::new(gemini(&sim, SimBrowser::new(&sim, Act::Unavailable, &user))),
        Box::new(qwen(&sim, follow.clone())),
        Box::new(codex(&sim, ports, follow)),
    ];
    let mut errors = Vec::new();
    for flow in &flows {
        let token = login(flow.as_ref(), &user).await.unwrap();
        let rt = refresh_token(&token);
        let refreshed = refresh(flow.as_ref(), &rt).await.unwrap();
        errors.push(format!("{token:?} {refreshed:?}"));
        sim.revoke(flow.provider(), USER);
        let refused = refresh(flow.as_ref(), &rt).await.unwrap_err();
        errors.push(format!("{refused} {refused:?}"));
    }
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("llxprt_providers::oauth"),
        "the flows' own events were captured"
    );
    errors.push(logged);
    user.assert_no_secret_leaked(&errors);
}

// ---------------------------------------------------------------------------------------------
// With the file store and the token service

#[tokio::test]
async fn signed_in_tokens_are_stored_as_providers_md_says_and_refreshed_by_the_service() {
    use llxprt_application::ports::TokenStore;
    use llxprt_application::services::{FlowRegistry, TokenService};
    use llxprt_domain::BucketId;
    use llxprt_store_file::FileTokenStore;

    let ports = free_ports();
    let sim = sim_for_codex(ports).await;
    let home = tempfile::tempdir().unwrap();
    let store = Arc::new(FileTokenStore::new(home.path().join("oauth")));
    let user = ScriptedUser::new(&sim, &[]);
    let follow = SimBrowser::new(&sim, Act::Follow, &user);
    let flows: [Arc<dyn OAuthFlow>; 2] = [
        Arc::new(qwen(&sim, follow.clone())),
        Arc::new(codex(&sim, ports, follow)),
    ];
    let mut registry = FlowRegistry::new();
    for flow in &flows {
        // Issued already expired, so the service has to refresh before handing them out.
        sim.set_token_lifetime(flow.provider(), 0);
        let token = login(flow.as_ref(), &user).await.unwrap();
        store
            .save(&BucketId::default_for(flow.provider()), &token)
            .await
            .unwrap();
        sim.set_token_lifetime(flow.provider(), 3600);
        registry.register(flow.clone());
    }
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(home.path().join("oauth").join(name)).unwrap(),
        )
        .unwrap()
    };
    let qwen_file = read("qwen.json");
    assert!(qwen_file["access_token"].is_string() && qwen_file["refresh_token"].is_string());
    assert_eq!(qwen_file["expiry"], NOW.0);
    assert_eq!(qwen_file["token_type"], "Bearer");
    assert_eq!(
        qwen_file["resource_url"],
        sim.endpoints().qwen.resource_url.as_str()
    );
    let codex_file = read("codex.json");
    assert!(codex_file["account_id"].is_string() && codex_file["id_token"].is_string());

    let service = TokenService::new(store, registry, Arc::new(FixedClock));
    for flow in &flows {
        let provider = flow.provider();
        let token = service
            .valid_token(&BucketId::default_for(provider))
            .await
            .unwrap();
        assert_eq!(token.expiry, NOW + 3600, "{provider} was refreshed");
        assert_eq!(sim.provider_counters(provider).refreshes, 1);
    }
    // The callers have their tokens; the saves end before the process would exit.
    service.finish_refreshes().await;
    let refreshed = read("qwen.json");
    assert_ne!(refreshed["access_token"], qwen_file["access_token"]);
    assert_eq!(refreshed["resource_url"], qwen_file["resource_url"]);
    assert_eq!(
        refreshed["refresh_token"], qwen_file["refresh_token"],
        "Qwen keeps it"
    );
    let refreshed = read("codex.json");
    assert_ne!(
        refreshed["refresh_token"], codex_file["refresh_token"],
        "Codex rotates it"
    );
    assert_eq!(refreshed["account_id"], codex_file["account_id"]);
}

/// A Qwen device endpoint that hands out `complete` as its `verification_uri_complete`, and a
/// token endpoint that then denies.
async fn hostile_device_endpoint(complete: &'static str) -> String {
    use axum::http::StatusCode;
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/token/device",
            post(move || async move {
                axum::Json(serde_json::json!({
                    "device_code": "dc-hostile",
                    "user_code": "HOST-ILE1",
                    "verification_uri": "https://chat.qwen.ai/authorize",
                    "verification_uri_complete": complete,
                    "expires_in": 60,
                    "interval": 1,
                }))
            }),
        )
        .route(
            "/token",
            post(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "access_denied"})),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/token")
}

#[cfg(unix)]
#[tokio::test]
async fn an_address_from_a_device_endpoint_that_is_not_https_never_reaches_the_browser() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let opened = dir.path().join("opened");
    let script = dir.path().join("browser");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = BrowserEnv {
        browser: Some(script.display().to_string()),
        display: Some(":0".into()),
        ..BrowserEnv::default()
    };
    for hostile in [
        "--help",
        "-a /System/Applications/Calculator.app",
        "file:///etc/passwd",
        "/etc/passwd",
        "http://evil.example/phish",
    ] {
        let token_url = hostile_device_endpoint(hostile).await;
        let config = QwenConfig {
            device_authorization_url: format!("{token_url}/device"),
            token_url: token_url.clone(),
            client_id: "client".into(),
            scopes: strings(&["openid"]),
        };
        let browser = Arc::new(SystemBrowser::new(env.clone(), false));
        let flow = QwenFlow::new(config, http(), browser, Arc::new(FixedClock)).unwrap();
        let sim = Simulator::start().await.unwrap();
        let user = ScriptedUser::new(&sim, &[]);
        let result = login(&flow, &user).await;
        assert!(
            matches!(result, Err(FlowError::Denied(_))),
            "{hostile}: {result:?}"
        );
        assert!(
            !opened.exists(),
            "{hostile:?} was handed to the browser: {}",
            std::fs::read_to_string(&opened).unwrap_or_default()
        );
    }
    // The same browser does open a real https address.
    let token_url =
        hostile_device_endpoint("https://chat.qwen.ai/authorize?user_code=HOST-ILE1").await;
    let config = QwenConfig {
        device_authorization_url: format!("{token_url}/device"),
        token_url,
        client_id: "client".into(),
        scopes: strings(&["openid"]),
    };
    let flow = QwenFlow::new(
        config,
        http(),
        Arc::new(SystemBrowser::new(env, false)),
        Arc::new(FixedClock),
    )
    .unwrap();
    let sim = Simulator::start().await.unwrap();
    let _ = login(&flow, &ScriptedUser::new(&sim, &[])).await;
    assert_eq!(
        std::fs::read_to_string(&opened).unwrap(),
        "https://chat.qwen.ai/authorize?user_code=HOST-ILE1\n"
    );
}

#[tokio::test]
async fn codex_device_polling_told_to_slow_down_goes_on_and_exchanges_what_it_got() {
    use axum::http::StatusCode;
    use axum::routing::post;
    let polls = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let counted = polls.clone();
    let app = axum::Router::new()
        .route(
            "/api/accounts/deviceauth/usercode",
            post(|| async {
                axum::Json(serde_json::json!({
                    "device_auth_id": "dev-1", "user_code": "SLOW-1234", "interval": "1"
                }))
            }),
        )
        .route(
            "/api/accounts/deviceauth/token",
            post(move || {
                let counted = counted.clone();
                async move {
                    if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            axum::Json(serde_json::json!({})),
                        )
                    } else {
                        (
                            StatusCode::OK,
                            axum::Json(serde_json::json!({
                                "authorization_code": "ac-1", "code_verifier": "cv-1"
                            })),
                        )
                    }
                }
            }),
        )
        .route(
            "/oauth/token",
            post(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "invalid_grant"})),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = CodexConfig {
        issuer,
        client_id: "client".into(),
        scopes: strings(&["openid"]),
        callback_port: 0,
        fallback_port: 0,
    };
    let flow = CodexFlow::new(
        config,
        http(),
        Arc::new(SystemBrowser::new(BrowserEnv::default(), true)),
        Arc::new(FixedClock),
    )
    .unwrap();
    let sim = Simulator::start().await.unwrap();
    let user = ScriptedUser::new(&sim, &[]);
    let result = device_login(&flow, "default", &user).await;
    // The 429 was a signal to wait longer, not a failure: the next poll got the code, and the
    // exchange was tried with it (this issuer then refuses it).
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    assert!(
        matches!(&result, Err(FlowError::Rejected(why)) if why.contains("invalid_grant")),
        "{result:?}"
    );
}
