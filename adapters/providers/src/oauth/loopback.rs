//! The browser half of the Gemini and Codex flows: a one-shot callback server on 127.0.0.1 that
//! the provider redirects to, and the paste fallback when no browser can be opened.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use llxprt_application::ports::{Browser, FlowError, UserPrompt};
use llxprt_domain::{OAuthProvider, Secret};
use oauth2::CsrfToken;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use url::Url;

use super::http::describe;

/// How long a browser sign-in may take before the flow gives up.
pub const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a stopping server may take to finish answering before it is cut off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the user is shown that the flow is still waiting.
const WAITING_TICK: Duration = Duration::from_secs(1);

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
    events: mpsc::Sender<CallbackEvent>,
}

/// A callback server waiting for one valid redirect. Dropping it stops the server and frees the
/// port, after giving answers in flight a moment to finish.
pub(crate) struct CallbackServer {
    events: mpsc::Receiver<CallbackEvent>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl CallbackServer {
    /// Serves `path` on `listener` (bound to 127.0.0.1 by the caller) for the sign-in that sent
    /// `state`. Every other path answers 404.
    pub(crate) fn start(listener: TcpListener, path: &str, state: &CsrfToken) -> Self {
        let (events_tx, events) = mpsc::channel(64);
        let shared = Shared {
            state: Arc::new(state.secret().clone()),
            events: events_tx,
        };
        let router = Router::new()
            .route(path, get(callback))
            .fallback(|| async { page(StatusCode::NOT_FOUND, "Not found", "Nothing here.") })
            .with_state(shared);
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the sign-in callback server stopped");
            }
        });
        Self {
            events,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Waits for the one valid callback and returns its code, telling the user about rejected
    /// callbacks and showing that it is waiting.
    pub(crate) async fn wait_for_code(
        mut self,
        prompt: &dyn UserPrompt,
        timeout: Duration,
    ) -> Result<Secret, FlowError> {
        const WHAT: &str = "Waiting for the sign-in to finish in the browser";
        let deadline = tokio::time::Instant::now() + timeout;
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
                    tracing::debug!(why, "ignored a sign-in callback");
                    prompt.show(&format!(
                        "Ignored a sign-in callback: {why}; still waiting."
                    ));
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
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Graceful shutdown waits for open connections, which a browser may keep alive; cut
        // them off after a grace period so the port (1455 for Codex) is freed.
        if let (Some(task), Ok(runtime)) = (self.task.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(async move {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                task.abort();
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
    let (event, response) = judge(&pairs, &shared.state);
    if shared.events.send(event).await.is_err() {
        // The flow has finished: this answer changes nothing, and must not say it did.
        return page(
            StatusCode::GONE,
            "Sign-in not accepted",
            "No sign-in is waiting for this answer any more. Return to the terminal.",
        );
    }
    response
}

/// What a callback means for the sign-in, and the page the browser gets.
fn judge(pairs: &[(String, String)], state: &str) -> (CallbackEvent, Response) {
    if repeats_a_parameter(pairs) {
        return (
            CallbackEvent::Ignored("it repeats a parameter"),
            page(
                StatusCode::BAD_REQUEST,
                "Sign-in not accepted",
                "This answer repeats a parameter, so it cannot be trusted. Return to the terminal.",
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
                "Sign-in not accepted",
                "This answer does not belong to the sign-in in progress (state mismatch). \
                 Return to the terminal and start the sign-in again if needed.",
            ),
        );
    }
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").map(|d| (*d).to_owned());
        let text = describe(error, description.as_deref());
        return (
            CallbackEvent::ProviderError {
                error: (*error).to_owned(),
                description,
            },
            page(
                StatusCode::OK,
                "Sign-in failed",
                &format!("The provider said: {text}. You can close this window and return to the terminal."),
            ),
        );
    }
    match params.get("code").filter(|c| !c.is_empty()) {
        Some(code) => (
            CallbackEvent::Code(Secret::new(*code)),
            page(
                StatusCode::OK,
                "Signed in",
                "Sign-in complete. You can close this window and return to the terminal.",
            ),
        ),
        None => (
            CallbackEvent::Ignored("it carries no authorization code"),
            page(
                StatusCode::BAD_REQUEST,
                "Sign-in not accepted",
                "The answer carries no authorization code. Return to the terminal.",
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

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{message}</p></body></html>",
        title = html_escape::encode_quoted_attribute(title),
        message = html_escape::encode_quoted_attribute(message),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
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

/// One browser sign-in: the URL to open and the state it carries.
pub(crate) struct BrowserSignIn<'a> {
    pub(crate) provider: OAuthProvider,
    pub(crate) url: &'a Url,
    pub(crate) state: &'a CsrfToken,
    pub(crate) bare_code: BareCode,
    pub(crate) timeout: Duration,
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
            self.provider
        ));
        prompt.show(self.url.as_str());
        match browser.open(self.url.as_str()).await {
            Ok(()) => server.wait_for_code(prompt, self.timeout).await,
            Err(error) => {
                // Stop listening, so a browser on this machine lands on an error page whose
                // address the user can copy, instead of a success page nobody waits for.
                drop(server);
                prompt.show(&format!("{error}."));
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

    async fn server() -> (CallbackServer, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        (CallbackServer::start(listener, "/cb", &state()), base)
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = CsrfToken::new(state.to_owned());
        (CallbackServer::start(listener, "/cb", &state), base)
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
            assert!(!body.contains("Sign-in complete"), "{body}");
        }

        // The same, deterministic: nobody is waiting any more.
        let (events, receiver) = mpsc::channel(1);
        drop(receiver);
        let shared = Shared {
            state: Arc::new("st-123".to_owned()),
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
            let (event, response) = judge(&pairs, "st-123");
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
            let _ = judge(&pairs, "st-123");
        }
    }
}
