//! The browser half of the Gemini and Codex flows: a one-shot callback server on loopback that
//! the provider redirects to, the pages the person in the browser sees, and the paste fallback
//! when no browser can be opened.
//!
//! The redirect says `localhost`, which a browser may resolve to `::1` before `127.0.0.1`; the
//! server listens on both, on the same port, so the browser finds it either way and no other
//! user of the machine can take the IPv6 side of the port and receive the code.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use llxprt_application::ports::{Browser, FlowError, UserPrompt};
use llxprt_domain::{BucketId, Secret};
use oauth2::CsrfToken;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use url::Url;

use super::http::describe;

/// How long a browser sign-in may take before the flow gives up.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a stopping server may take to finish answering before it is cut off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the user is shown that the flow is still waiting.
const WAITING_TICK: Duration = Duration::from_secs(1);

/// The listeners of one callback server: `127.0.0.1` and, where the machine has IPv6, `[::1]`,
/// on the same port.
pub(crate) struct Loopback {
    listeners: Vec<TcpListener>,
    port: u16,
}

impl Loopback {
    /// Listens on `port` (0: one the system picks) of `127.0.0.1` and of `[::1]`.
    ///
    /// # Errors
    /// The first side's error; [`ErrorKind::AddrInUse`] also when only the IPv6 side is taken
    /// (by someone who would receive the browser's code), so the caller picks another port.
    pub(crate) async fn bind(port: u16) -> std::io::Result<Self> {
        let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        let port = v4.local_addr()?.port();
        let mut listeners = vec![v4];
        match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await {
            Ok(v6) => listeners.push(v6),
            // Someone else holds [::1]:port and would receive a browser that tries IPv6 first.
            Err(e) if e.kind() == ErrorKind::AddrInUse => return Err(e),
            // No IPv6 loopback on this machine: a browser cannot reach `::1` either.
            Err(error) => {
                tracing::debug!(%error, "no IPv6 loopback here; listening on 127.0.0.1 only");
            }
        }
        Ok(Self { listeners, port })
    }

    /// Listens on a port the system picks, free on both sides; a port whose IPv6 side is taken
    /// is given up for another.
    pub(crate) async fn bind_any() -> std::io::Result<Self> {
        let mut last = None;
        for _ in 0..8 {
            match Self::bind(0).await {
                Ok(loopback) => return Ok(loopback),
                Err(e) if e.kind() == ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ErrorKind::AddrInUse.into()))
    }

    /// The port both sides listen on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// What reached the callback server, as the waiting flow needs to know it.
enum CallbackEvent {
    /// A callback with the right state and a code: the sign-in can finish.
    Code(Secret),
    /// The provider redirected with `error=` (and the right state).
    ProviderError {
        error: String,
        description: Option<String>,
    },
    /// A request on the callback path that does not finish the sign-in; the flow keeps waiting.
    Ignored(&'static str),
}

#[derive(Clone)]
struct Shared {
    state: Arc<String>,
    bucket: Arc<BucketId>,
    events: mpsc::Sender<CallbackEvent>,
}

/// A callback server waiting for one valid redirect. Dropping it stops the server and frees the
/// port, after giving answers in flight a moment to finish.
pub(crate) struct CallbackServer {
    events: mpsc::Receiver<CallbackEvent>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl CallbackServer {
    /// Serves `path` on every listener of `loopback` for the sign-in of `bucket` that sent
    /// `state`. Every other path answers 404.
    pub(crate) fn start(
        loopback: Loopback,
        path: &str,
        state: &CsrfToken,
        bucket: &BucketId,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(64);
        let shared = Shared {
            state: Arc::new(state.secret().clone()),
            bucket: Arc::new(bucket.clone()),
            events: events_tx,
        };
        let router = Router::new()
            .route(path, get(callback))
            .fallback(|| async {
                page(
                    StatusCode::NOT_FOUND,
                    Tone::Failed,
                    "Nothing here",
                    &["This address belongs to a sign-in of llxprt and has nothing else to show."],
                )
            })
            .with_state(shared);
        let (shutdown, stop) = watch::channel(false);
        let tasks = loopback
            .listeners
            .into_iter()
            .map(|listener| {
                let (router, mut stop) = (router.clone(), stop.clone());
                tokio::spawn(async move {
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|stopped| *stopped).await;
                        })
                        .await;
                    if let Err(error) = served {
                        tracing::warn!(%error, "the sign-in callback server stopped");
                    }
                })
            })
            .collect();
        drop(stop);
        Self {
            events,
            shutdown,
            tasks,
        }
    }

    /// Waits for the one valid callback and returns its code, telling the user (once) about
    /// rejected callbacks and showing that it is waiting.
    pub(crate) async fn wait_for_code(
        mut self,
        prompt: &dyn UserPrompt,
        timeout: Duration,
    ) -> Result<Secret, FlowError> {
        const WHAT: &str = "Waiting for the sign-in to finish in the browser";
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ignored = 0_u64;
        let outcome = loop {
            prompt.waiting(WHAT, false);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break Err(FlowError::Expired(format!(
                    "no sign-in came back from the browser within {} seconds",
                    timeout.as_secs()
                )));
            }
            match tokio::time::timeout(left.min(WAITING_TICK), self.events.recv()).await {
                Err(_) => continue,
                Ok(Some(CallbackEvent::Code(code))) => {
                    tracing::debug!("the browser came back with an authorization code");
                    break Ok(code);
                }
                Ok(Some(CallbackEvent::ProviderError { error, description })) => {
                    break Err(provider_error(prompt, &error, description.as_deref()))
                }
                Ok(Some(CallbackEvent::Ignored(why))) => {
                    ignored += 1;
                    tracing::debug!(why, ignored, "ignored a sign-in callback");
                    // One line however many come: a flood must not bury the terminal.
                    if ignored == 1 {
                        prompt.show(&format!(
                            "Ignored a sign-in callback ({why}); still waiting. Any further ones are ignored without a word."
                        ));
                    }
                }
                Ok(None) => {
                    break Err(FlowError::Transient(
                        "the sign-in callback server stopped".to_owned(),
                    ))
                }
            }
        };
        prompt.waiting(WHAT, true);
        outcome
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // Graceful shutdown waits for open connections, which a browser may keep alive; cut
        // them off after a grace period so the port (1455 for Codex) is freed.
        let tasks = std::mem::take(&mut self.tasks);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                for task in tasks {
                    task.abort();
                }
            });
        }
    }
}

async fn callback(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let pairs: Vec<(String, String)> = query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let (event, response) = judge(&pairs, &shared.state, &shared.bucket);
    if shared.events.send(event).await.is_err() {
        // The flow has finished: this answer changes nothing, and must not say it did.
        let bucket = &shared.bucket;
        return page(
            StatusCode::GONE,
            Tone::Failed,
            "This sign-in has already ended",
            &[
                &format!("llxprt is no longer waiting for a sign-in to {bucket}: it finished, timed out or was cancelled. Nothing was changed by this page."),
                &format!("Look at the terminal. To sign in again, run {}.", login_command(bucket)),
            ],
        );
    }
    response
}

/// The command that starts this bucket's sign-in again.
fn login_command(bucket: &BucketId) -> String {
    if bucket.bucket.is_default() {
        format!("/auth {} login", bucket.provider)
    } else {
        format!("/auth {} login {}", bucket.provider, bucket.bucket)
    }
}

/// What a callback means for the sign-in, and the page the browser gets.
fn judge(pairs: &[(String, String)], state: &str, bucket: &BucketId) -> (CallbackEvent, Response) {
    let again = format!(
        "Return to the terminal; if the sign-in there has ended, run {} to start a new one.",
        login_command(bucket)
    );
    if repeats_a_parameter(pairs) {
        return (
            CallbackEvent::Ignored("it repeats a parameter"),
            page(
                StatusCode::BAD_REQUEST,
                Tone::Failed,
                "Sign-in not accepted",
                &[
                    &format!("This answer for the sign-in to {bucket} repeats a parameter, so it cannot be trusted. Nothing was saved."),
                    &again,
                ],
            ),
        );
    }
    let params: HashMap<&str, &str> = pairs
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    if params.get("state") != Some(&state) {
        return (
            CallbackEvent::Ignored("its state does not match this sign-in"),
            page(
                StatusCode::BAD_REQUEST,
                Tone::Failed,
                "This page belongs to another sign-in",
                &[
                    &format!("llxprt is waiting for a sign-in to {bucket}, and this answer does not belong to it (state mismatch): it may come from an older sign-in, or from another tab or program. Nothing was saved."),
                    &format!("Finish the sign-in from the address printed in the terminal, or run {} again.", login_command(bucket)),
                ],
            ),
        );
    }
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").map(|d| (*d).to_owned());
        let text = describe(error, description.as_deref());
        let (title, what) = if *error == "access_denied" {
            (
                "Sign-in denied",
                format!("The sign-in to {bucket} was denied at the provider's consent page ({text}). Nothing was saved."),
            )
        } else {
            (
                "Sign-in failed",
                format!("The provider refused the sign-in to {bucket}: {text}. Nothing was saved."),
            )
        };
        return (
            CallbackEvent::ProviderError {
                error: (*error).to_owned(),
                description,
            },
            page(
                StatusCode::OK,
                Tone::Failed,
                title,
                &[
                    &what,
                    &format!("To try again, run {} in the terminal and allow access; or use an API key instead.", login_command(bucket)),
                ],
            ),
        );
    }
    match params.get("code").filter(|c| !c.is_empty()) {
        Some(code) => (
            CallbackEvent::Code(Secret::new(*code)),
            page(
                StatusCode::OK,
                Tone::Done,
                "Signed in",
                &[
                    &format!("llxprt received the sign-in to {bucket} and is finishing it in the terminal."),
                    "You can close this tab and return to the terminal.",
                ],
            ),
        ),
        None => (
            CallbackEvent::Ignored("it carries no authorization code"),
            page(
                StatusCode::BAD_REQUEST,
                Tone::Failed,
                "Sign-in not accepted",
                &[
                    &format!("This answer for the sign-in to {bucket} carries no authorization code. Nothing was saved."),
                    &again,
                ],
            ),
        ),
    }
}

/// RFC 6749 §3.1: no parameter may be sent twice. Readers disagree on which copy counts, so an
/// answer that repeats one of those that decide a sign-in is trusted with neither.
fn repeats_a_parameter(pairs: &[(String, String)]) -> bool {
    ["state", "code", "error"]
        .into_iter()
        .any(|name| pairs.iter().filter(|(key, _)| key == name).count() > 1)
}

/// Whether a page reports success.
#[derive(Clone, Copy)]
enum Tone {
    Done,
    Failed,
}

/// A page for the person in the browser: self-contained (inline style, no script, no external
/// resource, which the content security policy also forbids), every text escaped.
fn page(status: StatusCode, tone: Tone, title: &str, paragraphs: &[&str]) -> Response {
    let (mark, colour, id) = match tone {
        Tone::Done => ("✓", "#1a7f37", "signed-in"),
        Tone::Failed => ("✗", "#cf222e", "sign-in-failed"),
    };
    let text: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>", html_escape::encode_text(p)))
        .collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>llxprt: {title}</title><style>\
         body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f6f8fa;\
         color:#1f2328;margin:0;display:flex;min-height:100vh;align-items:center;\
         justify-content:center}}\
         main{{background:#fff;border:1px solid #d0d7de;border-radius:12px;padding:2rem 2.5rem;\
         max-width:34rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}}\
         h1{{font-size:1.5rem;margin:0 0 1rem}}h1 span{{color:{colour};margin-right:.5rem}}\
         p{{line-height:1.5;margin:.5rem 0}}footer{{margin-top:1.5rem;color:#656d76;\
         font-size:.85rem}}</style></head><body><main id=\"{id}\">\
         <h1><span>{mark}</span>{title}</h1>{text}<footer>llxprt sign-in</footer></main>\
         </body></html>",
        title = html_escape::encode_text(title),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// Tells the user what the provider said and turns it into the flow's error.
fn provider_error(prompt: &dyn UserPrompt, error: &str, description: Option<&str>) -> FlowError {
    let text = describe(error, description);
    prompt.show(&format!("The provider refused the sign-in: {text}"));
    if error == "access_denied" {
        FlowError::Denied(text)
    } else {
        FlowError::Rejected(text)
    }
}

/// Whether a pasted answer may be a bare code (no state to check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BareCode {
    Accepted,
    Refused,
}

/// The code in what the user pasted: a redirect URL (`…?code=C&state=S`, state checked),
/// `CODE#STATE` (state checked), or, where allowed, a bare code.
pub(crate) fn parse_pasted(
    prompt: &dyn UserPrompt,
    pasted: &str,
    state: &CsrfToken,
    bare: BareCode,
) -> Result<Secret, FlowError> {
    let pasted = pasted.trim();
    let mismatch = || {
        FlowError::Invalid(
            "the pasted answer belongs to another sign-in (state mismatch)".to_owned(),
        )
    };
    if pasted.is_empty() {
        return Err(FlowError::Invalid("nothing was pasted".to_owned()));
    }
    if pasted.contains("://") {
        let url = Url::parse(pasted)
            .map_err(|_| FlowError::Invalid("the pasted text is not a valid URL".to_owned()))?;
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        if repeats_a_parameter(&pairs) {
            return Err(FlowError::Invalid(
                "the pasted address repeats a parameter, so it cannot be trusted".to_owned(),
            ));
        }
        let params: HashMap<String, String> = pairs.into_iter().collect();
        if params.get("state") != Some(state.secret()) {
            return Err(mismatch());
        }
        if let Some(error) = params.get("error") {
            let description = params.get("error_description").map(String::as_str);
            return Err(provider_error(prompt, error, description));
        }
        return params
            .get("code")
            .filter(|c| !c.is_empty())
            .map(|c| Secret::new(c.clone()))
            .ok_or_else(|| FlowError::Invalid("the pasted URL carries no code".to_owned()));
    }
    if let Some((code, pasted_state)) = pasted.split_once('#') {
        if pasted_state != state.secret() {
            return Err(mismatch());
        }
        if code.is_empty() {
            return Err(FlowError::Invalid(
                "the pasted answer carries no code".to_owned(),
            ));
        }
        return Ok(Secret::new(code));
    }
    match bare {
        BareCode::Accepted if !pasted.contains(char::is_whitespace) => Ok(Secret::new(pasted)),
        BareCode::Accepted => Err(FlowError::Invalid(
            "the pasted text is not an authorization code".to_owned(),
        )),
        BareCode::Refused => Err(FlowError::Invalid(
            "paste the whole address of the page the browser was sent to".to_owned(),
        )),
    }
}

/// One browser sign-in: the bucket it fills, the URL to open and the state it carries.
pub(crate) struct BrowserSignIn<'a> {
    pub(crate) bucket: &'a BucketId,
    pub(crate) url: &'a Url,
    pub(crate) state: &'a CsrfToken,
    pub(crate) bare_code: BareCode,
    pub(crate) timeout: Duration,
    /// Another way to sign in without a browser on this machine, told to the user when none
    /// opens (Codex's `--device`).
    pub(crate) without_browser: Option<String>,
}

impl BrowserSignIn<'_> {
    /// Shows the URL, opens it, and waits on `server` for the code; when no browser opens, asks
    /// the user to paste the redirect URL instead. `server` must already be listening.
    pub(crate) async fn obtain_code(
        &self,
        server: CallbackServer,
        browser: &dyn Browser,
        prompt: &dyn UserPrompt,
    ) -> Result<Secret, FlowError> {
        prompt.show(&format!(
            "Sign in to {} in your browser. If it does not open, visit:",
            self.bucket.provider
        ));
        prompt.show(self.url.as_str());
        match browser.open(self.url.as_str()).await {
            Ok(()) => server.wait_for_code(prompt, self.timeout).await,
            Err(error) => {
                // Stop listening, so a browser on this machine lands on an error page whose
                // address the user can copy, instead of a success page nobody waits for.
                drop(server);
                prompt.show(&format!("{error}."));
                if let Some(other_way) = &self.without_browser {
                    prompt.show(other_way);
                }
                prompt.show(
                    "Open the URL above in any browser and sign in. The browser then goes to a \
                     localhost address that may fail to load: copy that whole address.",
                );
                let question = match self.bare_code {
                    BareCode::Accepted => "Paste the redirect URL (or the code):",
                    BareCode::Refused => "Paste the redirect URL:",
                };
                let answer = prompt.ask(question).await?;
                parse_pasted(prompt, &answer, self.state, self.bare_code)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use llxprt_application::ports::PromptError;
    use proptest::prelude::*;

    use super::*;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    #[async_trait]
    impl UserPrompt for Lines {
        fn show(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
        fn waiting(&self, _what: &str, _done: bool) {}
        async fn ask(&self, _question: &str) -> Result<String, PromptError> {
            Err(PromptError::NoInput("test".into()))
        }
    }

    fn state() -> CsrfToken {
        CsrfToken::new("st-123".to_owned())
    }

    fn work() -> BucketId {
        BucketId::new(
            llxprt_domain::OAuthProvider::Gemini,
            llxprt_domain::BucketName::parse("work").unwrap(),
        )
    }

    async fn server() -> (CallbackServer, String) {
        let loopback = Loopback::bind(0).await.unwrap();
        let base = format!("http://127.0.0.1:{}", loopback.port());
        (
            CallbackServer::start(loopback, "/cb", &state(), &work()),
            base,
        )
    }

    async fn get(url: &str) -> (u16, String) {
        let response = reqwest::get(url).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    #[tokio::test]
    async fn waits_through_junk_and_a_wrong_state_for_the_valid_callback() {
        let (server, base) = server().await;
        let prompt = Lines::default();
        let (waited, ()) = tokio::join!(
            server.wait_for_code(&prompt, Duration::from_secs(20)),
            async {
                assert_eq!(get(&format!("{base}/favicon.ico")).await.0, 404);
                let (status, body) = get(&format!("{base}/cb?code=c-1&state=wrong")).await;
                assert_eq!(status, 400);
                assert!(body.contains("state mismatch"));
                assert_eq!(get(&format!("{base}/cb?state=st-123")).await.0, 400);
                let status_line = raw_get(
                    &base,
                    &format!("/cb?junk={}&state=st-123", "x".repeat(100 * 1024)),
                )
                .await;
                assert!(status_line.starts_with("HTTP/1.1 4"), "{status_line}");
                let many: Vec<_> = (0..8)
                    .map(|i| tokio::spawn(get_owned(format!("{base}/cb?code=j{i}&state=no"))))
                    .collect();
                for request in many {
                    assert_eq!(request.await.unwrap().0, 400);
                }
                let (status, body) = get(&format!("{base}/cb?code=good-code&state=st-123")).await;
                assert_eq!(status, 200);
                assert!(body.contains("return to the terminal"));
                assert!(!body.contains("good-code"));
            }
        );
        assert_eq!(waited.unwrap().expose(), "good-code");
        let shown = prompt.0.lock().unwrap().join("\n");
        assert!(shown.contains("state does not match"), "{shown}");
        assert!(!shown.contains("j1") && !shown.contains("c-1"), "{shown}");
    }

    /// A request too long for an HTTP client library to send: only its status line is kept.
    async fn raw_get(base: &str, target: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        // The server may answer and close before reading everything; that is fine.
        let _ = stream.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    }

    async fn get_owned(url: String) -> (u16, String) {
        get(&url).await
    }

    async fn server_for(state: &str) -> (CallbackServer, String) {
        let loopback = Loopback::bind(0).await.unwrap();
        let base = format!("http://127.0.0.1:{}", loopback.port());
        let state = CsrfToken::new(state.to_owned());
        (
            CallbackServer::start(loopback, "/cb", &state, &work()),
            base,
        )
    }

    #[tokio::test]
    async fn a_repeated_state_or_code_is_never_trusted() {
        let (server, base) = server().await;
        let prompt = Lines::default();
        let (waited, ()) = tokio::join!(
            server.wait_for_code(&prompt, Duration::from_secs(20)),
            async {
                for query in [
                    "state=forged&state=st-123&code=c-1",
                    "state=st-123&code=c-2&state=forged",
                    "state=st-123&state=st-123&code=c-3",
                    "state=st-123&code=c-4&code=c-5",
                    "state=st-123&code=c-6&error=access_denied&error=server_error",
                ] {
                    let (status, body) = get(&format!("{base}/cb?{query}")).await;
                    assert_eq!(status, 400, "{query}");
                    assert!(body.contains("repeats a parameter"), "{query}: {body}");
                }
                assert_eq!(
                    get(&format!("{base}/cb?state=st-123&code=good")).await.0,
                    200
                );
            }
        );
        assert_eq!(waited.unwrap().expose(), "good");
    }

    #[tokio::test]
    async fn each_of_two_sign_ins_ignores_the_others_callback() {
        let (first, first_base) = server_for("state-of-the-first").await;
        let (second, second_base) = server_for("state-of-the-second").await;
        let prompt = Lines::default();
        let (first_code, second_code, ()) = tokio::join!(
            first.wait_for_code(&prompt, Duration::from_secs(20)),
            second.wait_for_code(&prompt, Duration::from_secs(20)),
            async {
                let crossed = [
                    format!("{first_base}/cb?code=meant-for-second&state=state-of-the-second"),
                    format!("{second_base}/cb?code=meant-for-first&state=state-of-the-first"),
                ];
                for url in crossed {
                    assert_eq!(get(&url).await.0, 400, "{url}");
                }
                let own = [
                    format!("{first_base}/cb?code=first-code&state=state-of-the-first"),
                    format!("{second_base}/cb?code=second-code&state=state-of-the-second"),
                ];
                for url in own {
                    assert_eq!(get(&url).await.0, 200, "{url}");
                }
            }
        );
        assert_eq!(first_code.unwrap().expose(), "first-code");
        assert_eq!(second_code.unwrap().expose(), "second-code");
    }

    #[tokio::test]
    async fn a_callback_after_the_sign_in_finished_changes_nothing_and_says_so() {
        let (server, base) = server().await;
        // One client, so the late callback may reuse the first one's kept-alive connection.
        let browser = reqwest::Client::new();
        let prompt = Lines::default();
        let (waited, status) = tokio::join!(
            server.wait_for_code(&prompt, Duration::from_secs(20)),
            async {
                let url = format!("{base}/cb?code=first&state=st-123");
                browser.get(url).send().await.unwrap().status().as_u16()
            }
        );
        assert_eq!(status, 200);
        assert_eq!(waited.unwrap().expose(), "first");
        // The server is stopping: the late answer is refused or told it came too late.
        let late = browser
            .get(format!("{base}/cb?code=second&state=st-123"))
            .send()
            .await;
        if let Ok(late) = late {
            let status = late.status().as_u16();
            let body = late.text().await.unwrap_or_default();
            assert_ne!(status, 200, "{body}");
            assert!(!body.contains("id=\"signed-in\""), "{body}");
        }

        // The same, deterministic: nobody is waiting any more.
        let (events, receiver) = mpsc::channel(1);
        drop(receiver);
        let shared = Shared {
            state: Arc::new("st-123".to_owned()),
            bucket: Arc::new(work()),
            events,
        };
        let late = callback(
            State(shared),
            RawQuery(Some("code=second&state=st-123".to_owned())),
        )
        .await;
        assert_eq!(late.status(), StatusCode::GONE);
    }

    #[tokio::test]
    async fn a_provider_error_ends_the_wait_and_is_shown_escaped() {
        let (server, base) = server().await;
        let prompt = Lines::default();
        let (waited, (status, body)) = tokio::join!(
            server.wait_for_code(&prompt, Duration::from_secs(20)),
            get_owned(format!(
                "{base}/cb?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E&state=st-123"
            ))
        );
        assert_eq!(status, 200);
        assert!(body.contains("&lt;b&gt;no"), "{body}");
        assert!(matches!(waited, Err(FlowError::Denied(_))), "{waited:?}");
        let shown = prompt.0.lock().unwrap().join("\n");
        assert!(shown.contains("access_denied: <b>no</b>"), "{shown}");
    }

    #[tokio::test]
    async fn a_flood_of_ignored_callbacks_gets_one_line() {
        let (server, base) = server().await;
        let prompt = Lines::default();
        let (waited, ()) = tokio::join!(
            server.wait_for_code(&prompt, Duration::from_secs(60)),
            async {
                let client = reqwest::Client::new();
                for round in 0..30 {
                    let batch: Vec<_> = (0..100)
                        .map(|i| {
                            let url = format!("{base}/cb?code=junk{round}x{i}&state=forged");
                            let client = client.clone();
                            tokio::spawn(
                                async move { client.get(url).send().await.map(|r| r.status()) },
                            )
                        })
                        .collect();
                    for request in batch {
                        assert_eq!(request.await.unwrap().unwrap(), 400);
                    }
                }
                let ok = client
                    .get(format!("{base}/cb?code=good&state=st-123"))
                    .send()
                    .await;
                assert_eq!(ok.unwrap().status(), 200);
            }
        );
        assert_eq!(waited.unwrap().expose(), "good");
        let shown = prompt.0.lock().unwrap().clone();
        assert_eq!(shown.len(), 1, "3000 ignored callbacks: {shown:?}");
        assert!(
            shown[0].contains("Ignored") && shown[0].contains("state"),
            "{shown:?}"
        );
    }

    /// Whether this machine has an IPv6 loopback at all.
    fn has_ipv6_loopback() -> bool {
        std::net::TcpListener::bind("[::1]:0").is_ok()
    }

    #[tokio::test]
    async fn the_listener_answers_on_both_loopbacks_and_leaves_a_squatted_port() {
        assert!(
            has_ipv6_loopback(),
            "this test needs an IPv6 loopback (::1)"
        );
        let (server, base) = server().await;
        let port = base.rsplit(':').next().unwrap().to_owned();
        let prompt = Lines::default();
        let (waited, ()) = tokio::join!(
            server.wait_for_code(&prompt, Duration::from_secs(20)),
            async {
                let (status, _) =
                    get(&format!("http://[::1]:{port}/cb?code=six&state=forged")).await;
                assert_eq!(status, 400, "the IPv6 side answers as ours");
                let (status, _) =
                    get(&format!("http://[::1]:{port}/cb?code=v6&state=st-123")).await;
                assert_eq!(status, 200);
            }
        );
        assert_eq!(waited.unwrap().expose(), "v6");

        // Another user holding [::1]:PORT would receive a browser that tries IPv6 first.
        let squatter = std::net::TcpListener::bind("[::1]:0").unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let refused = Loopback::bind(taken).await.err().map(|e| e.kind());
        assert_eq!(refused, Some(ErrorKind::AddrInUse));
        let fine = Loopback::bind_any().await.unwrap();
        assert_ne!(fine.port(), taken);
        assert_eq!(fine.listeners.len(), 2);
    }

    #[tokio::test]
    async fn every_page_names_the_bucket_says_what_next_and_loads_nothing_from_elsewhere() {
        let (first, base) = server().await;
        let prompt = Lines::default();
        let client = reqwest::Client::new();
        let (waited, pages) = tokio::join!(
            first.wait_for_code(&prompt, Duration::from_secs(20)),
            async {
                let mut pages = Vec::new();
                for query in [
                    "code=old&state=stale",
                    "state=st-123",
                    "code=a&code=b&state=st-123",
                    "error=access_denied&state=st-123",
                ] {
                    let answer = client
                        .get(format!("{base}/cb?{query}"))
                        .send()
                        .await
                        .unwrap();
                    let csp = answer.headers()["content-security-policy"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    pages.push((query, csp, answer.text().await.unwrap()));
                }
                pages
            }
        );
        assert!(matches!(waited, Err(FlowError::Denied(_))), "{waited:?}");
        for (query, csp, body) in &pages {
            assert!(csp.starts_with("default-src 'none'"), "{query}: {csp}");
            assert!(body.contains("gemini/work"), "{query}: {body}");
            assert!(body.contains("/auth gemini login work"), "{query}: {body}");
            assert!(body.contains("Nothing was saved"), "{query}: {body}");
            for external in ["src=", "href=", "url(", "http:", "https:", "<script"] {
                assert!(!body.contains(external), "{query} loads {external}: {body}");
            }
        }
        assert!(pages[0].2.contains("another sign-in"), "{}", pages[0].2);
        assert!(pages[3].2.contains("denied"), "{}", pages[3].2);

        let (server, base) = server().await;
        let (waited, body) = tokio::join!(
            server.wait_for_code(&prompt, Duration::from_secs(20)),
            async { get(&format!("{base}/cb?code=fine&state=st-123")).await.1 }
        );
        assert_eq!(waited.unwrap().expose(), "fine");
        assert!(
            body.contains("Signed in") && body.contains("gemini/work"),
            "{body}"
        );
        assert!(body.contains("close this tab"), "{body}");
    }

    #[tokio::test]
    async fn nobody_coming_back_expires() {
        let (server, _base) = server().await;
        let waited = server
            .wait_for_code(&Lines::default(), Duration::from_millis(200))
            .await;
        assert!(matches!(waited, Err(FlowError::Expired(_))), "{waited:?}");
    }

    #[tokio::test]
    async fn a_stopped_server_frees_its_port() {
        let (server, base) = server().await;
        drop(server);
        let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
        let mut freed = false;
        for _ in 0..100 {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(freed);
    }

    #[test]
    fn a_pasted_answer_is_checked_against_the_state() {
        let p = Lines::default();
        let s = state();
        let ok = |text: &str, bare| parse_pasted(&p, text, &s, bare).map(|c| c.expose().to_owned());
        assert_eq!(
            ok(
                "http://localhost:1455/auth/callback?code=abc&state=st-123",
                BareCode::Refused
            ),
            Ok("abc".to_owned())
        );
        assert_eq!(
            ok("  abc#st-123\n", BareCode::Refused),
            Ok("abc".to_owned())
        );
        assert_eq!(ok("abc", BareCode::Accepted), Ok("abc".to_owned()));
        assert!(matches!(
            ok("abc", BareCode::Refused),
            Err(FlowError::Invalid(_))
        ));
        assert!(matches!(
            ok("abc#other", BareCode::Accepted),
            Err(FlowError::Invalid(_))
        ));
        assert!(matches!(
            ok(
                "http://localhost:1/cb?code=abc&state=other",
                BareCode::Accepted
            ),
            Err(FlowError::Invalid(_))
        ));
        assert!(matches!(
            ok("http://localhost:1/cb?code=abc", BareCode::Accepted),
            Err(FlowError::Invalid(_))
        ));
        assert!(matches!(
            ok(
                "http://localhost:1/cb?error=access_denied&state=st-123",
                BareCode::Accepted
            ),
            Err(FlowError::Denied(_))
        ));
        assert!(matches!(
            ok("", BareCode::Accepted),
            Err(FlowError::Invalid(_))
        ));
        assert!(matches!(
            ok("a b", BareCode::Accepted),
            Err(FlowError::Invalid(_))
        ));
        for repeated in [
            "http://localhost:1/cb?code=abc&state=other&state=st-123",
            "http://localhost:1/cb?code=abc&code=def&state=st-123",
        ] {
            assert!(
                matches!(ok(repeated, BareCode::Accepted), Err(FlowError::Invalid(_))),
                "{repeated}"
            );
        }
        let err = ok(
            "http://localhost:1/cb?code=leaky&state=bad",
            BareCode::Accepted,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("leaky"));
    }

    /// A query parameter name the callback gives a meaning to, or any other.
    fn any_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("state".to_owned()),
            Just("code".to_owned()),
            Just("error".to_owned()),
            Just("error_description".to_owned()),
            any::<String>(),
        ]
    }

    /// The sign-in's state, an empty one, or anything.
    fn any_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("st-123".to_owned()),
            Just(String::new()),
            any::<String>()
        ]
    }

    proptest! {
        #[test]
        fn a_pasted_text_never_panics(text in any::<String>()) {
            let p = Lines::default();
            for bare in [BareCode::Accepted, BareCode::Refused] {
                let _ = parse_pasted(&p, &text, &state(), bare);
            }
        }

        #[test]
        fn a_pasted_address_never_panics(query in any::<String>(), fragment in any::<String>()) {
            let p = Lines::default();
            let text = format!("http://localhost:8085/oauth2callback?{query}#{fragment}");
            let _ = parse_pasted(&p, &text, &state(), BareCode::Refused);
        }

        #[test]
        fn another_sign_ins_state_is_never_accepted(
            code in "[A-Za-z0-9_.~-]{1,24}",
            other in any::<String>().prop_filter("not ours", |s| s.trim() != "st-123"),
        ) {
            let p = Lines::default();
            let mut url = Url::parse("http://localhost:1455/auth/callback").unwrap();
            url.query_pairs_mut().append_pair("code", &code).append_pair("state", &other);
            let pasted = [url.to_string(), format!("{code}#{other}")];
            for text in pasted {
                for bare in [BareCode::Accepted, BareCode::Refused] {
                    prop_assert!(parse_pasted(&p, &text, &state(), bare).is_err(), "{}", text);
                }
            }
        }

        #[test]
        fn a_callback_completes_only_with_one_matching_state_and_one_code(
            pairs in proptest::collection::vec((any_name(), any_value()), 0..6),
        ) {
            let (event, response) = judge(&pairs, "st-123", &work());
            let count = |name: &str| pairs.iter().filter(|(k, _)| k == name).count();
            let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            match event {
                CallbackEvent::Code(code) => {
                    prop_assert_eq!(response.status(), StatusCode::OK);
                    prop_assert_eq!(count("state"), 1);
                    prop_assert_eq!(value("state"), Some("st-123"));
                    prop_assert_eq!(count("code"), 1);
                    prop_assert_eq!(count("error"), 0);
                    prop_assert_eq!(Some(code.expose()), value("code"));
                    prop_assert!(!code.expose().is_empty());
                }
                CallbackEvent::ProviderError { .. } => {
                    prop_assert_eq!(value("state"), Some("st-123"));
                    prop_assert_eq!(count("error"), 1);
                }
                CallbackEvent::Ignored(_) => {
                    prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                }
            }
        }

        #[test]
        fn any_raw_query_is_judged_without_panicking(query in any::<Vec<u8>>()) {
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(&query).into_owned().collect();
            let _ = judge(&pairs, "st-123", &work());
        }
    }
}
