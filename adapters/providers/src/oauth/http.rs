//! What every flow shares on the wire: the HTTP client, the token response, and how failures are
//! classified for the user (`FlowError`) and for the token service (`RefreshError`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use llxprt_application::ports::{FlowError, RefreshError};
use llxprt_domain::token::DEFAULT_LIFETIME_SECONDS;
use llxprt_domain::{OAuthProvider, Secret, Token, UnixSeconds};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::http::{header, HeaderValue, Method, StatusCode};
use oauth2::{
    AsyncHttpClient, Client, ClientId, EndpointNotSet, EndpointSet, ErrorResponseType,
    ExtraTokenFields, HttpRequest, HttpResponse, RequestTokenError, StandardErrorResponse,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use url::Url;

/// How long to wait for a provider to accept a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request to a provider may take in all: token calls take 40–60 s at busy
/// times (providers.md).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A flow's settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthConfigError {
    /// A URL setting does not parse.
    #[error("the {provider} OAuth setting `{key}` is not a valid URL: {value}")]
    InvalidUrl {
        /// The provider whose settings are wrong.
        provider: OAuthProvider,
        /// The settings key.
        key: &'static str,
        /// What it holds.
        value: String,
    },
    /// The HTTP client could not be built (TLS set-up failed).
    #[error("the HTTP client for sign-in could not be built: {0}")]
    HttpClient(String),
}

/// The HTTP client of every flow: an honest `User-Agent` ([`crate::user_agent`]), no redirects followed (a token endpoint that redirects is
/// misconfigured, and following it could carry a code elsewhere), bounded connect and request
/// times. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct OAuthHttp {
    transport: Transport,
}

/// The client as `oauth2` sees it (kept apart so its error type stays private).
#[derive(Debug, Clone)]
pub(crate) struct Transport(reqwest::Client);

impl OAuthHttp {
    /// A client with [`DEFAULT_CONNECT_TIMEOUT`] and [`DEFAULT_REQUEST_TIMEOUT`].
    ///
    /// # Errors
    /// [`OAuthConfigError::HttpClient`] when the TLS back end cannot be initialised.
    pub fn new() -> Result<Self, OAuthConfigError> {
        Self::with_timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT)
    }

    /// A client with the given timeouts.
    ///
    /// # Errors
    /// [`OAuthConfigError::HttpClient`] when the TLS back end cannot be initialised.
    pub fn with_timeouts(connect: Duration, request: Duration) -> Result<Self, OAuthConfigError> {
        Self::build(reqwest::Client::builder(), connect, request)
    }

    /// A client that ignores the system's proxy settings (`HTTP_PROXY` and the like), for
    /// providers on loopback: the sandbox and tests.
    ///
    /// # Errors
    /// [`OAuthConfigError::HttpClient`] when the TLS back end cannot be initialised.
    pub fn direct() -> Result<Self, OAuthConfigError> {
        Self::direct_with_timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT)
    }

    /// [`OAuthHttp::direct`] with the given timeouts.
    ///
    /// # Errors
    /// [`OAuthConfigError::HttpClient`] when the TLS back end cannot be initialised.
    pub fn direct_with_timeouts(
        connect: Duration,
        request: Duration,
    ) -> Result<Self, OAuthConfigError> {
        Self::build(reqwest::Client::builder().no_proxy(), connect, request)
    }

    fn build(
        builder: reqwest::ClientBuilder,
        connect: Duration,
        request: Duration,
    ) -> Result<Self, OAuthConfigError> {
        let client = builder
            .user_agent(crate::user_agent())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect)
            .timeout(request)
            .build()
            .map_err(|e| OAuthConfigError::HttpClient(e.to_string()))?;
        Ok(Self {
            transport: Transport(client),
        })
    }

    /// What `oauth2` requests are sent with.
    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Sends a JSON POST to a token endpoint, for the providers whose endpoint departs from the
    /// standard form encoding, and reads the answer as a token response.
    pub(crate) async fn post_json_for_token(
        &self,
        url: &Url,
        body: &serde_json::Value,
    ) -> Result<ProviderTokenResponse, TokenRequestError> {
        let request = oauth2::http::Request::builder()
            .method(Method::POST)
            .uri(url.as_str())
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .body(serde_json::to_vec(body).unwrap_or_default())
            .map_err(|_| RequestTokenError::Other("could not build the request".to_owned()))?;
        let response = self.transport.call(request).await?;
        if response.status() != StatusCode::OK {
            return Err(
                match serde_json::from_slice::<BasicErrorResponse>(response.body()) {
                    Ok(error) => RequestTokenError::ServerResponse(error),
                    Err(_) => RequestTokenError::Other(UNREADABLE.to_owned()),
                },
            );
        }
        let mut json = serde_json::Deserializer::from_slice(response.body());
        // The path names the field at fault; the body (which may hold tokens) is not kept.
        serde_path_to_error::deserialize(&mut json)
            .map_err(|e| RequestTokenError::Parse(e, Vec::new()))
    }
}

impl OAuthHttp {
    /// A JSON POST whose answer is returned whatever its status (read up to
    /// [`MAX_ANSWER_BYTES`]), for endpoints whose statuses are not OAuth's: Codex's device
    /// login answers `403` or `404` while the user has not entered the code yet.
    pub(crate) async fn post_json(
        &self,
        url: &Url,
        body: &serde_json::Value,
    ) -> Result<(u16, Vec<u8>), HttpFailure> {
        let response = self
            .transport
            .0
            .post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, read_capped(response).await?))
    }
}

const UNREADABLE: &str = "the provider's answer could not be read";

/// The most a token endpoint's answer may hold. Real answers are a few kilobytes (a Codex id
/// token is the largest part); anything bigger is not a token response, and reading it whole
/// would let a broken or hostile endpoint fill the memory.
pub(crate) const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a request to a provider got no usable answer, before any OAuth error is read. The text
/// carries kinds and status codes only, never a body or URL, so it cannot leak a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpFailure {
    #[error("the request timed out")]
    Timeout,
    #[error("could not connect to the provider")]
    Connect,
    #[error("the request failed")]
    Request,
    /// A server failure, rate limit or unexpected status: worth trying again later.
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    /// A 400 or 401 without an OAuth error body: a refusal all the same.
    #[error("the provider refused the request (HTTP {0})")]
    Refused(u16),
    /// The answer exceeds [`MAX_ANSWER_BYTES`]; reading stopped there.
    #[error("the provider's answer is too large (over {} KiB)", MAX_ANSWER_BYTES / 1024)]
    TooLarge,
}

impl From<reqwest::Error> for HttpFailure {
    fn from(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else {
            Self::Request
        }
    }
}

/// The only field of an OAuth error body that matters to tell it from any other body.
#[derive(Deserialize)]
struct OAuthErrorProbe {
    error: String,
}

/// Status handling happens here, before `oauth2` reads the body, so that every flow classifies
/// alike: 200 and OAuth error bodies pass through (a `429` only with `slow_down`); server errors, rate limits and other
/// surprises become [`HttpFailure::Status`] (transient); a bare 400/401 becomes
/// [`HttpFailure::Refused`].
impl<'c> AsyncHttpClient<'c> for Transport {
    type Error = HttpFailure;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpFailure>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|_| HttpFailure::Request)?;
            let response = self.0.execute(request).await?;
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let body = read_capped(response).await?;
            let oauth_error = || serde_json::from_slice::<OAuthErrorProbe>(&body).ok();
            let is_oauth_error = || oauth_error().is_some();
            match status.as_u16() {
                200 => {}
                // Qwen sends a device poll's `slow_down` as 429: a polling signal for the flow
                // (RFC 8628 §3.5), not a rate limit.
                429 if oauth_error().is_some_and(|e| e.error == "slow_down") => {}
                408 | 429 => return Err(HttpFailure::Status(status.as_u16())),
                400..=499 if is_oauth_error() => {}
                code @ (400 | 401) => return Err(HttpFailure::Refused(code)),
                code => return Err(HttpFailure::Status(code)),
            }
            let mut builder = oauth2::http::Response::builder().status(status);
            if let Some(content_type) = content_type {
                builder = builder.header(header::CONTENT_TYPE, content_type);
            }
            builder.body(body).map_err(|_| HttpFailure::Request)
        })
    }
}

/// The answer's body, refused as soon as it is known to exceed [`MAX_ANSWER_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, HttpFailure> {
    let declared = response.content_length().unwrap_or(0);
    if declared > MAX_ANSWER_BYTES as u64 {
        return Err(HttpFailure::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(HttpFailure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The provider-specific fields some token responses add.
#[derive(Clone, Default, Deserialize, Serialize)]
pub(crate) struct ProviderFields {
    /// Qwen: where the API that accepts this token lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource_url: Option<String>,
    /// Codex (OpenID Connect): the id token that carries the ChatGPT account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<String>,
}

impl std::fmt::Debug for ProviderFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderFields")
            .field("resource_url", &self.resource_url)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ExtraTokenFields for ProviderFields {}

/// A token endpoint's answer, standard fields plus [`ProviderFields`].
pub(crate) type ProviderTokenResponse = StandardTokenResponse<ProviderFields, BasicTokenType>;

/// Every way a token request can fail.
pub(crate) type TokenRequestError = RequestTokenError<HttpFailure, BasicErrorResponse>;

/// The `oauth2` client of every flow, typed by which of the authorize, device and token URLs are
/// set.
pub(crate) type OAuthClient<HasAuthUrl, HasDeviceUrl, HasTokenUrl = EndpointSet> = Client<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuthUrl,
    HasDeviceUrl,
    EndpointNotSet,
    EndpointNotSet,
    HasTokenUrl,
>;

/// A client with only its id set; each flow sets the endpoints it uses.
pub(crate) fn new_client(
    client_id: &str,
) -> OAuthClient<EndpointNotSet, EndpointNotSet, EndpointNotSet> {
    Client::new(ClientId::new(client_id.to_owned()))
}

/// The longest lifetime a token may claim: ten years. Beyond it `expires_in` is not a lifetime
/// but a broken or hostile answer, and a token that never expires would never be refreshed.
pub(crate) const MAX_LIFETIME_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// The range a device endpoint's polling `interval` is held to: a hostile or broken endpoint
/// could otherwise make us poll in a tight loop (0) or wait for ever (a day).
const POLL_INTERVAL: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// The interval actually waited between two polls of a device flow (Qwen's, Codex's).
pub(crate) fn poll_interval(asked: Duration) -> Duration {
    asked.clamp(POLL_INTERVAL.0, POLL_INTERVAL.1)
}

/// A token endpoint answered 200 with a token llxprt must not keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the provider sent an unusable token: {0}; nothing was saved")]
pub(crate) struct UnusableToken(pub(crate) String);

impl From<UnusableToken> for FlowError {
    fn from(error: UnusableToken) -> Self {
        FlowError::Rejected(error.to_string())
    }
}

impl From<UnusableToken> for RefreshError {
    fn from(error: UnusableToken) -> Self {
        // The stored token is left as it was; the next request may try again.
        RefreshError::Transient(error.to_string())
    }
}

/// The standard fields of a token response as a [`Token`], its expiry counted from `now`.
/// Provider-specific fields are the caller's to add.
///
/// # Errors
/// An empty access token, one holding control characters or white space (it would break the
/// `Authorization` header, or smuggle another header into it), or a lifetime over ten years.
pub(crate) fn token_from(
    response: &ProviderTokenResponse,
    now: UnixSeconds,
) -> Result<Token, UnusableToken> {
    let access_token = response.access_token().secret();
    if access_token.trim().is_empty() {
        return Err(UnusableToken("its access_token is empty".to_owned()));
    }
    if access_token
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(UnusableToken(
            "its access_token holds control characters or spaces".to_owned(),
        ));
    }
    if let Some(refresh) = response.refresh_token() {
        if refresh.secret().chars().any(char::is_control) {
            return Err(UnusableToken(
                "its refresh_token holds control characters".to_owned(),
            ));
        }
    }
    let lifetime = match response.expires_in() {
        None => DEFAULT_LIFETIME_SECONDS,
        Some(d) if d.as_secs() > MAX_LIFETIME_SECONDS => {
            return Err(UnusableToken(format!(
                "its expires_in of {} seconds is over ten years",
                d.as_secs()
            )))
        }
        // The bound above keeps this exact.
        Some(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
    };
    tracing::debug!(
        lifetime,
        refresh_token = response.refresh_token().is_some(),
        "the token endpoint issued a token"
    );
    let mut token = Token::new(Secret::new(access_token.clone()), now + lifetime);
    token.refresh_token = response
        .refresh_token()
        .map(|t| Secret::new(t.secret().clone()));
    token.token_type = match response.token_type() {
        BasicTokenType::Bearer => "Bearer".to_owned(),
        other => other.as_ref().to_owned(),
    };
    token.scope = response.scopes().map(|scopes| {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    });
    Ok(token)
}

/// `text` with every secret of `sent` replaced by `[redacted]`, also where a cut at the end of
/// `text` left only the start of one: a provider that echoes what it was sent (a refresh token,
/// a code, a verifier) in its error must not have it shown.
pub(crate) fn redact_sent(text: &str, sent: &[&str]) -> String {
    /// A shorter tail is too common to be a secret's start, and shows too little of one.
    const MIN_PARTIAL: usize = 6;
    let mut clean = text.to_owned();
    for secret in sent.iter().filter(|s| !s.is_empty()) {
        clean = clean.replace(secret, "[redacted]");
    }
    for secret in sent.iter().filter(|s| s.len() > MIN_PARTIAL) {
        let partial = (MIN_PARTIAL..secret.len())
            .rev()
            .filter(|&n| secret.is_char_boundary(n))
            .find(|&n| clean.trim_end_matches('…').ends_with(&secret[..n]));
        if let Some(n) = partial {
            let end = clean.trim_end_matches('…').len();
            clean.replace_range(end - n..end, "[redacted]");
        }
    }
    clean
}

/// A flow's error with the secrets of `sent` redacted from the provider's words.
pub(crate) fn redact_flow_error(error: FlowError, sent: &[&str]) -> FlowError {
    match error {
        FlowError::Denied(m) => FlowError::Denied(redact_sent(&m, sent)),
        FlowError::Expired(m) => FlowError::Expired(redact_sent(&m, sent)),
        FlowError::Invalid(m) => FlowError::Invalid(redact_sent(&m, sent)),
        FlowError::Rejected(m) => FlowError::Rejected(redact_sent(&m, sent)),
        FlowError::Transient(m) => FlowError::Transient(redact_sent(&m, sent)),
        prompt @ FlowError::Prompt(_) => prompt,
        // A kind of error added after this was written: kept unless its text holds a secret.
        other => match redact_sent(&other.to_string(), sent) {
            clean if clean == other.to_string() => other,
            clean => FlowError::Rejected(clean),
        },
    }
}

/// A refresh's error with the secrets of `sent` redacted from the provider's words.
pub(crate) fn redact_refresh_error(error: RefreshError, sent: &[&str]) -> RefreshError {
    match error {
        RefreshError::NeedsLogin(m) => RefreshError::NeedsLogin(redact_sent(&m, sent)),
        RefreshError::Transient(m) => RefreshError::Transient(redact_sent(&m, sent)),
        // A kind of error added after this was written: kept unless its text holds a secret.
        other => match redact_sent(&other.to_string(), sent) {
            clean if clean == other.to_string() => other,
            clean => RefreshError::Transient(clean),
        },
    }
}

/// Parses a configured URL, naming the setting when it is wrong.
pub(crate) fn parse_url(
    provider: OAuthProvider,
    key: &'static str,
    value: &str,
) -> Result<Url, OAuthConfigError> {
    Url::parse(value).map_err(|_| OAuthConfigError::InvalidUrl {
        provider,
        key,
        value: value.to_owned(),
    })
}

/// `error` and `error_description` of an OAuth error, as one line fit for a terminal.
pub(crate) fn describe_oauth_error<T>(error: &StandardErrorResponse<T>) -> String
where
    T: ErrorResponseType + AsRef<str>,
{
    describe(
        error.error().as_ref(),
        error.error_description().map(String::as_str),
    )
}

/// `error: description`, with control characters dropped (they could drive the terminal) and the
/// description cut short (a provider page is not a log).
pub(crate) fn describe(error: &str, description: Option<&str>) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars().filter(|c| !c.is_control()).take(max).collect()
    };
    match description {
        Some(d) if !d.trim().is_empty() => format!("{}: {}", clean(error, 64), clean(d, 300)),
        _ => clean(error, 64),
    }
}

/// A failed code exchange, as the user should hear it.
pub(crate) fn exchange_error(error: TokenRequestError) -> FlowError {
    match error {
        RequestTokenError::ServerResponse(e) => FlowError::Rejected(describe_oauth_error(&e)),
        RequestTokenError::Request(HttpFailure::Refused(status)) => {
            FlowError::Rejected(format!("HTTP {status}"))
        }
        RequestTokenError::Request(failure) => FlowError::Transient(failure.to_string()),
        RequestTokenError::Parse(e, _) => FlowError::Rejected(unreadable_field(&e)),
        // It carries text that may quote the response body, which holds tokens on success.
        RequestTokenError::Other(_) => FlowError::Transient(UNREADABLE.to_owned()),
    }
}

/// Which field of a token answer could not be read. Only the path is named: the parser's own
/// words may quote a value, which may be a token.
fn unreadable_field(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    match error.path().to_string().as_str() {
        "." | "" => format!("{UNREADABLE} (it is not a token response)"),
        path => format!(
            "{UNREADABLE}: its field `{}` is missing or not what a token response holds; nothing was saved",
            path.chars().filter(|c| !c.is_control()).take(64).collect::<String>()
        ),
    }
}

/// A failed refresh, classified for the token service: a refusal means a new login is needed,
/// anything else may pass.
pub(crate) fn refresh_error(error: TokenRequestError) -> RefreshError {
    match error {
        RequestTokenError::ServerResponse(e) => {
            let code = e.error().as_ref();
            if matches!(code, "temporarily_unavailable" | "server_error") {
                RefreshError::Transient(describe_oauth_error(&e))
            } else {
                RefreshError::NeedsLogin(describe_oauth_error(&e))
            }
        }
        RequestTokenError::Request(HttpFailure::Refused(status)) => {
            RefreshError::NeedsLogin(format!("HTTP {status}"))
        }
        RequestTokenError::Request(failure) => RefreshError::Transient(failure.to_string()),
        RequestTokenError::Parse(e, _) => RefreshError::Transient(unreadable_field(&e)),
        RequestTokenError::Other(_) => RefreshError::Transient(UNREADABLE.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_cannot_drive_the_terminal() {
        assert_eq!(
            describe("access_denied", Some("no\x1b[31m thanks")),
            "access_denied: no[31m thanks"
        );
        assert_eq!(describe("invalid_grant", Some("  ")), "invalid_grant");
        assert_eq!(describe("x", Some(&"d".repeat(1000))).len(), 303);
    }

    /// A token endpoint answering 200 with ten megabytes, streamed in chunks when `chunked`,
    /// else in one body with its `content-length`.
    async fn huge_answer(chunked: bool) -> Url {
        use axum::body::Body;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
        let app = axum::Router::new().fallback(move || async move {
            const SIZE: usize = 10 << 20;
            let body = if chunked {
                let chunk = axum::body::Bytes::from(vec![b' '; 64 << 10]);
                let chunks = std::iter::repeat_n(chunk, SIZE / (64 << 10));
                Body::from_stream(futures_util::stream::iter(
                    chunks.map(Ok::<_, std::convert::Infallible>),
                ))
            } else {
                Body::from(vec![b' '; SIZE])
            };
            axum::http::Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(body)
                .unwrap()
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    #[tokio::test]
    async fn a_huge_answer_is_refused_before_it_is_read_whole() {
        let http = OAuthHttp::direct().unwrap();
        for chunked in [true, false] {
            let url = huge_answer(chunked).await;
            let answer = http
                .post_json_for_token(&url, &serde_json::json!({"grant_type": "refresh_token"}))
                .await;
            assert!(
                matches!(
                    answer,
                    Err(RequestTokenError::Request(HttpFailure::TooLarge))
                ),
                "chunked {chunked}: {answer:?}"
            );
        }
    }

    fn answer(json: &str) -> ProviderTokenResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn unusable_tokens_are_refused() {
        for (case, json) in [
            ("empty", r#"{"access_token":"","token_type":"Bearer"}"#),
            ("blank", r#"{"access_token":"   ","token_type":"Bearer"}"#),
            (
                "a header smuggled in",
                r#"{"access_token":"at\r\nX-Evil: 1","token_type":"Bearer"}"#,
            ),
            (
                "an escape",
                r#"{"access_token":"at\u001b[2J","token_type":"Bearer"}"#,
            ),
            (
                "a refresh token with a newline",
                r#"{"access_token":"at","refresh_token":"rt\n","token_type":"Bearer"}"#,
            ),
            (
                "eleven years",
                r#"{"access_token":"at","token_type":"Bearer","expires_in":347155200}"#,
            ),
        ] {
            let refused = token_from(&answer(json), UnixSeconds(0));
            let Err(error) = refused else {
                panic!("{case}: accepted");
            };
            assert!(
                error.to_string().contains("nothing was saved"),
                "{case}: {error}"
            );
        }
        // The lifetime bound leaves every real one alone.
        let week = token_from(
            &answer(r#"{"access_token":"at","token_type":"Bearer","expires_in":604800}"#),
            UnixSeconds(0),
        );
        assert_eq!(week.unwrap().expiry, UnixSeconds(604_800));
    }

    #[test]
    fn a_negative_lifetime_is_named_without_quoting_the_answer() {
        let body = br#"{"access_token":"at-secret","token_type":"Bearer","expires_in":-5}"#;
        let mut json = serde_json::Deserializer::from_slice(body);
        let error = serde_path_to_error::deserialize::<_, ProviderTokenResponse>(&mut json)
            .map(drop)
            .unwrap_err();
        let shown = exchange_error(RequestTokenError::Parse(error, Vec::new())).to_string();
        assert!(shown.contains("expires_in"), "{shown}");
        assert!(!shown.contains("at-secret"), "{shown}");
    }

    #[test]
    fn every_secret_sent_is_redacted_even_when_cut_short() {
        let sent = ["rt-0123456789abcdef", "verifier-xyz-42"];
        assert_eq!(
            redact_sent("refresh token rt-0123456789abcdef is not valid", &sent),
            "refresh token [redacted] is not valid"
        );
        assert_eq!(
            redact_sent("bad verifier-xyz-42 and rt-0123456789abcdef", &sent),
            "bad [redacted] and [redacted]"
        );
        // The provider's words were cut at the end of a line, in the middle of the token.
        assert_eq!(
            redact_sent("reused: rt-0123456…", &sent),
            "reused: [redacted]…"
        );
        assert_eq!(redact_sent("nothing here", &sent), "nothing here");
        assert_eq!(redact_sent("x", &[""]), "x");
    }

    #[test]
    fn a_missing_lifetime_means_an_hour() {
        let response: ProviderTokenResponse =
            serde_json::from_str(r#"{"access_token":"at","token_type":"bearer"}"#).unwrap();
        let token = token_from(&response, UnixSeconds(1000)).unwrap();
        assert_eq!(token.expiry, UnixSeconds(1000 + 3600));
        assert_eq!(token.token_type, "Bearer");
        assert_eq!(token.refresh_token, None);
    }

    #[test]
    fn provider_fields_are_read_and_never_printed() {
        let response: ProviderTokenResponse = serde_json::from_str(
            r#"{"access_token":"at-secret","token_type":"Bearer","expires_in":60,
                "refresh_token":"rt-secret","scope":"a b","resource_url":"portal.qwen.ai",
                "id_token":"idt-secret"}"#,
        )
        .unwrap();
        let fields = response.extra_fields();
        assert_eq!(fields.resource_url.as_deref(), Some("portal.qwen.ai"));
        assert_eq!(fields.id_token.as_deref(), Some("idt-secret"));
        let debug = format!("{response:?}");
        assert!(!debug.contains("secret"), "{debug}");
        let token = token_from(&response, UnixSeconds(0)).unwrap();
        assert_eq!(token.scope.as_deref(), Some("a b"));
        assert_eq!(token.expiry, UnixSeconds(60));
    }
}
