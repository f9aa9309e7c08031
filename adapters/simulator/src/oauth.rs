//! Authorize pages, the pages that show a code to paste, and the token endpoints.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use llxprt_domain::OAuthProvider;

use super::state::{self, AuthCode, NewCode, State};
use super::wire::{self, ClientAuth, OAuthError, Params};
use super::{Shared, Sim};

pub(super) fn routes() -> Router<Arc<Shared>> {
    use OAuthProvider::{Anthropic, Codex, Gemini};
    Router::new()
        .route(
            "/anthropic/oauth/authorize",
            get(|sim: Sim, q: RawQuery| async move { authorize(&sim, q, Anthropic) }),
        )
        .route(
            "/gemini/o/oauth2/v2/auth",
            get(|sim: Sim, q: RawQuery| async move { authorize(&sim, q, Gemini) }),
        )
        .route(
            "/codex/oauth/authorize",
            get(|sim: Sim, q: RawQuery| async move { authorize(&sim, q, Codex) }),
        )
        .route("/anthropic/oauth/code/callback", get(anthropic_code_page))
        .route("/gemini/authcode", get(gemini_code_page))
        .route(
            "/codex/deviceauth/callback",
            get(codex_device_callback_page),
        )
        .route("/anthropic/v1/oauth/token", post(anthropic_token))
        .route("/gemini/token", post(gemini_token))
        .route("/qwen/api/v1/oauth2/token", post(qwen_token))
        .route("/codex/oauth/token", post(codex_token))
}

/// The authorize page of a browser flow. Consent is automatic, as the login account.
fn authorize(sim: &Shared, RawQuery(query): RawQuery, provider: OAuthProvider) -> Response {
    let mut state = sim.lock();
    let account = state.authorize_hit(provider);
    let params = match Params::parse_urlencoded(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(err) => return authorize_error_page(&err),
    };
    // RFC 6749 §4.1.2.1: with a bad client or redirect_uri, never redirect.
    if params.get("client_id") != Some(state.client_id(provider)) {
        return authorize_error_page(&OAuthError::invalid_client("unknown or missing client_id"));
    }
    let Some(redirect_uri) = params
        .get("redirect_uri")
        .filter(|uri| is_registered_redirect(&state, provider, uri))
    else {
        return authorize_error_page(&OAuthError::invalid_request(
            "redirect_uri is missing or not registered for this client",
        ));
    };
    let client_state = params.get("state");
    if let Err(err) = check_authorize_request(&params, provider) {
        return redirect_to_client(
            redirect_uri,
            client_state,
            &[
                ("error", err.error),
                ("error_description", &err.description),
            ],
        );
    }
    if state.take_deny_next_consent(provider) {
        return redirect_to_client(
            redirect_uri,
            client_state,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied access"),
            ],
        );
    }
    let client_id = state.client_id(provider).to_owned();
    let code = state.issue_code(NewCode {
        provider,
        account: &account,
        client_id: &client_id,
        redirect_uri,
        challenge: params.get("code_challenge").unwrap_or_default(),
        state: client_state,
        scope: params.get("scope").unwrap_or_default(),
    });
    tracing::debug!(%provider, account, "simulated consent");
    redirect_to_client(redirect_uri, client_state, &[("code", &code)])
}

/// What every authorize request must carry, with each provider's extras.
fn check_authorize_request(params: &Params, provider: OAuthProvider) -> Result<(), OAuthError> {
    if params.get("response_type") != Some("code") {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            "response_type must be 'code'",
        ));
    }
    params.require("state")?;
    wire::check_scope(params.require("scope")?, state::scopes(provider))?;
    wire::check_pkce_request(params)?;
    let extras: &[(&str, &str)] = match provider {
        OAuthProvider::Anthropic => &[("code", "true")],
        OAuthProvider::Gemini => &[("access_type", "offline")],
        OAuthProvider::Codex => &[
            ("id_token_add_organizations", "true"),
            ("codex_cli_simplified_flow", "true"),
            ("originator", "codex_cli_rs"),
        ],
        OAuthProvider::Qwen => &[],
    };
    for (name, value) in extras {
        if params.get(name) != Some(value) {
            return Err(OAuthError::invalid_request(format!(
                "this client must send {name}={value}"
            )));
        }
    }
    Ok(())
}

/// The redirect URIs each provider has registered for its CLI client.
fn is_registered_redirect(state: &State, provider: OAuthProvider, uri: &str) -> bool {
    match provider {
        OAuthProvider::Anthropic => uri == state.urls().anthropic.redirect_uri,
        OAuthProvider::Gemini => {
            uri == state.urls().gemini.manual_redirect_uri || is_loopback_callback(uri)
        }
        OAuthProvider::Codex => state
            .cfg()
            .codex_callback_ports
            .iter()
            .any(|port| uri == format!("http://localhost:{port}/auth/callback")),
        OAuthProvider::Qwen => false,
    }
}

/// Google's loopback redirect for installed apps: `http://localhost:PORT/oauth2callback` or
/// `http://127.0.0.1:PORT/oauth2callback`.
fn is_loopback_callback(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && matches!(url.host_str(), Some("localhost" | "127.0.0.1"))
        && url.port().is_some()
        && url.path() == "/oauth2callback"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.as_str() == uri
}

/// The redirect back to the client with `pairs` and the client's `state`.
fn redirect_to_client(redirect_uri: &str, state: Option<&str>, pairs: &[(&str, &str)]) -> Response {
    let mut pairs = pairs.to_vec();
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    redirect(&wire::with_query(redirect_uri, &pairs))
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_owned())],
        "Redirecting",
    )
        .into_response()
}

fn authorize_error_page(err: &OAuthError) -> Response {
    wire::html_page(
        StatusCode::BAD_REQUEST,
        "Authorization error",
        &format!(
            "<p id=\"auth-error\">{}: {}</p>",
            err.error,
            html_escape::encode_quoted_attribute(&err.description)
        ),
    )
}

/// Anthropic's console page that shows the user `CODE#STATE` to paste.
async fn anthropic_code_page(RawQuery(query): RawQuery) -> Response {
    code_page(query, |code, state| {
        format!("{code}#{}", state.unwrap_or_default())
    })
}

/// Google's manual-mode page that shows the user the code to paste.
async fn gemini_code_page(RawQuery(query): RawQuery) -> Response {
    code_page(query, |code, _| code.to_owned())
}

fn code_page(query: Option<String>, shown: impl Fn(&str, Option<&str>) -> String) -> Response {
    let params = match Params::parse_urlencoded(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(err) => return authorize_error_page(&err),
    };
    if let Some(error) = params.get("error") {
        let description = params.get("error_description").unwrap_or_default();
        return wire::html_page(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            &format!(
                "<p id=\"auth-error\">{}: {}</p>",
                html_escape::encode_quoted_attribute(error),
                html_escape::encode_quoted_attribute(description)
            ),
        );
    }
    let Some(code) = params.get("code") else {
        return authorize_error_page(&OAuthError::invalid_request("no code to show"));
    };
    wire::html_page(
        StatusCode::OK,
        "Authentication code",
        &format!(
            "<p>Paste this code into your terminal:</p>\n<code id=\"auth-code\">{}</code>",
            html_escape::encode_quoted_attribute(&shown(code, params.get("state")))
        ),
    )
}

async fn codex_device_callback_page() -> Response {
    wire::html_page(
        StatusCode::OK,
        "Signed in",
        "<p>You can return to the terminal.</p>",
    )
}

/// Anthropic's token endpoint: JSON only, `state` checked on exchange.
async fn anthropic_token(
    sim: Sim,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let provider = OAuthProvider::Anthropic;
    let params = Params::json(&headers, &body)?;
    let mut state = sim.lock();
    state.saw_verifier(params.get("code_verifier"));
    let client_id = params.require("client_id")?;
    if client_id != state.client_id(provider) {
        return Err(OAuthError::invalid_client("unknown client_id"));
    }
    match params.require("grant_type")? {
        "authorization_code" => {
            let record = state.redeem_code(provider, params.require("code")?)?;
            if params.require("state")? != record.state.as_deref().unwrap_or_default() {
                return Err(OAuthError::invalid_grant(
                    "state does not match the authorization request",
                ));
            }
            check_exchange(&record, client_id, &params)?;
            Ok(granted(&mut state, &record))
        }
        "refresh_token" => refresh(&mut state, provider, client_id, &params),
        other => Err(unsupported_grant(other)),
    }
}

/// Google's token endpoint: form only, client secret required.
async fn gemini_token(sim: Sim, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let provider = OAuthProvider::Gemini;
    let params = Params::form(&headers, &body)?;
    let client = ClientAuth::from_request(&headers, &params)?;
    let mut state = sim.lock();
    state.saw_verifier(params.get("code_verifier"));
    if client.client_id != state.client_id(provider)
        || client.client_secret.as_deref() != Some(state.cfg().gemini_client_secret.as_str())
    {
        return Err(OAuthError::invalid_client(
            "unknown client_id or wrong client_secret",
        ));
    }
    match params.require("grant_type")? {
        "authorization_code" => {
            let record = state.redeem_code(provider, params.require("code")?)?;
            check_exchange(&record, &client.client_id, &params)?;
            Ok(granted(&mut state, &record))
        }
        "refresh_token" => refresh(&mut state, provider, &client.client_id, &params),
        other => Err(unsupported_grant(other)),
    }
}

/// Qwen's token endpoint: form only; the device grant (with PKCE) and refresh.
async fn qwen_token(sim: Sim, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let provider = OAuthProvider::Qwen;
    let params = Params::form(&headers, &body)?;
    let client = ClientAuth::from_request(&headers, &params)?;
    let mut state = sim.lock();
    state.saw_verifier(params.get("code_verifier"));
    if client.client_id != state.client_id(provider) {
        return Err(OAuthError::invalid_client("unknown client_id"));
    }
    match params.require("grant_type")? {
        "urn:ietf:params:oauth:grant-type:device_code" => {
            params.require("code_verifier")?;
            let body = state.poll_qwen_device(
                params.require("device_code")?,
                &client.client_id,
                |challenge| wire::check_verifier(&params, challenge),
            )?;
            Ok(wire::no_store(StatusCode::OK, body))
        }
        "refresh_token" => refresh(&mut state, provider, &client.client_id, &params),
        other => Err(unsupported_grant(other)),
    }
}

/// OpenAI's token endpoint for Codex: form only; refresh tokens rotate.
async fn codex_token(sim: Sim, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let provider = OAuthProvider::Codex;
    let params = Params::form(&headers, &body)?;
    let client = ClientAuth::from_request(&headers, &params)?;
    let mut state = sim.lock();
    state.saw_verifier(params.get("code_verifier"));
    if client.client_id != state.client_id(provider) {
        return Err(OAuthError::invalid_client("unknown client_id"));
    }
    match params.require("grant_type")? {
        "authorization_code" => {
            let record = state.redeem_code(provider, params.require("code")?)?;
            check_exchange(&record, &client.client_id, &params)?;
            Ok(granted(&mut state, &record))
        }
        "refresh_token" => refresh(&mut state, provider, &client.client_id, &params),
        other => Err(unsupported_grant(other)),
    }
}

/// The checks every code exchange makes (RFC 6749 §4.1.3, RFC 7636 §4.6).
fn check_exchange(record: &AuthCode, client_id: &str, params: &Params) -> Result<(), OAuthError> {
    if record.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if params.require("redirect_uri")? != record.redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    wire::check_verifier(params, &record.challenge)
}

fn granted(state: &mut State, record: &AuthCode) -> Response {
    let body = state.grant(record.provider, &record.account, &record.scope, true, false);
    wire::no_store(StatusCode::OK, body)
}

/// A refresh grant. Rotating providers answer a new refresh token and refuse a reused one;
/// Google and Qwen keep theirs and answer none.
fn refresh(
    state: &mut State,
    provider: OAuthProvider,
    client_id: &str,
    params: &Params,
) -> Result<Response, OAuthError> {
    let (reused, revoked) = match provider {
        OAuthProvider::Codex => (
            OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "refresh_token_reused",
                "this refresh token was already used to get a new access token",
            ),
            OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "refresh_token_invalidated",
                "this refresh token was revoked",
            ),
        ),
        _ => (
            OAuthError::invalid_grant("refresh token already used"),
            OAuthError::invalid_grant("refresh token revoked"),
        ),
    };
    let (account, scope) = state.use_refresh_token(
        provider,
        params.require("refresh_token")?,
        client_id,
        params.get("scope"),
        reused,
        revoked,
    )?;
    let body = state.grant(provider, &account, &scope, state::rotates(provider), true);
    let mut response = wire::no_store(StatusCode::OK, body);
    if state.take_hold_next_refresh(provider) {
        tracing::debug!(%provider, account, "refreshed; holding the answer back");
        response.extensions_mut().insert(HeldRefresh);
    }
    Ok(response)
}

/// Marks a refresh answer that [`hold_held_refreshes`] must never deliver.
#[derive(Clone, Copy)]
struct HeldRefresh;

/// Middleware of the token endpoints: a refresh the provider has already done (tokens rotated,
/// counted) but whose answer was asked to be held stays unanswered until the simulator stops,
/// like a provider whose reply is lost after it changed its state.
pub(super) async fn hold_held_refreshes(sim: Sim, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<HeldRefresh>().is_none() {
        return response;
    }
    let mut released = sim.released.clone();
    // Ends when the simulator shuts down (a value is sent) or its last handle is gone (the
    // sender is dropped); either way nobody should get the tokens any more.
    let _ = released.changed().await;
    wire::json_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
}

fn unsupported_grant(grant_type: &str) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        format!("grant_type '{grant_type}' is not supported here"),
    )
}
