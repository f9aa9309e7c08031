//! The device flows: Qwen's RFC 8628 grant with PKCE and Codex's headless device login.
//! Their token polling lives with the token endpoints (Qwen) or here (Codex).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use llxprt_domain::OAuthProvider;
use serde_json::{json, Value};

use super::state::{self, Approval, CodexPoll};
use super::wire::{self, ClientAuth, OAuthError, Params};
use super::{Shared, Sim};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/qwen/api/v1/oauth2/device/code", post(qwen_device_code))
        .route(
            "/qwen/authorize",
            get(|sim: Sim, q: RawQuery| async move { device_page(&sim, q, OAuthProvider::Qwen) }),
        )
        .route(
            "/codex/api/accounts/deviceauth/usercode",
            post(codex_user_code),
        )
        .route(
            "/codex/api/accounts/deviceauth/token",
            post(codex_device_token),
        )
        .route(
            "/codex/codex/device",
            get(|sim: Sim, q: RawQuery| async move { device_page(&sim, q, OAuthProvider::Codex) }),
        )
}

/// Qwen's device authorization endpoint: form with `client_id`, `scope` and a PKCE S256
/// challenge.
async fn qwen_device_code(
    sim: Sim,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let provider = OAuthProvider::Qwen;
    let params = Params::form(&headers, &body)?;
    let client = ClientAuth::from_request(&headers, &params)?;
    let mut state = sim.lock();
    if client.client_id != state.client_id(provider) {
        return Err(OAuthError::invalid_client("unknown client_id"));
    }
    let scope = params.require("scope")?;
    wire::check_scope(scope, state::QWEN_SCOPES)?;
    let challenge = wire::check_pkce_request(&params)?;
    let issued = state.issue_device(provider, &client.client_id, Some(challenge), scope);
    let verification_uri = state.urls().qwen.verification_uri.clone();
    let complete = wire::with_query(
        &verification_uri,
        &[("user_code", &issued.user_code), ("client", "qwen-code")],
    );
    Ok(wire::no_store(
        StatusCode::OK,
        json!({
            "device_code": issued.device_code,
            "user_code": issued.user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": complete,
            "expires_in": issued.expires_in_secs,
            "interval": issued.interval_secs,
        }),
    ))
}

/// The page a user visits with the user code: visiting it approves as the login account.
fn device_page(sim: &Shared, RawQuery(query): RawQuery, provider: OAuthProvider) -> Response {
    let params = Params::parse_urlencoded(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let Some(user_code) = params.get("user_code").filter(|c| !c.is_empty()) else {
        return wire::html_page(
            StatusCode::OK,
            "Device login",
            "<form method=\"get\"><label>Enter the code shown in your terminal: \
             <input name=\"user_code\"></label><button>Continue</button></form>",
        );
    };
    let approval = sim.lock().approve_device(provider, user_code);
    match approval {
        Approval::Approved(account) => wire::html_page(
            StatusCode::OK,
            "Device approved",
            &format!(
                "<p id=\"device-approved\">Signed in as {}. You can return to the terminal.</p>",
                html_escape::encode_quoted_attribute(&account)
            ),
        ),
        Approval::Denied => wire::html_page(
            StatusCode::FORBIDDEN,
            "Device login denied",
            "<p id=\"auth-error\">access_denied: the request was denied</p>",
        ),
        Approval::Expired => wire::html_page(
            StatusCode::GONE,
            "Device login expired",
            "<p id=\"auth-error\">expired_token: this code has expired or was used</p>",
        ),
        Approval::Unknown => wire::html_page(
            StatusCode::NOT_FOUND,
            "Unknown code",
            "<p id=\"auth-error\">invalid_request: no such code</p>",
        ),
    }
}

/// Codex's device login start: JSON `{client_id}` → `device_auth_id`, `user_code`, `interval`
/// (a string, as the real server sends it).
async fn codex_user_code(sim: Sim, headers: HeaderMap, body: Bytes) -> Response {
    let provider = OAuthProvider::Codex;
    let body = match json_object(&headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = sim.lock();
    let client_id = state.client_id(provider).to_owned();
    if body.get("client_id").and_then(Value::as_str) != Some(client_id.as_str()) {
        return wire::json_error(StatusCode::BAD_REQUEST, "invalid_client");
    }
    let scope = state::CODEX_SCOPES.join(" ");
    let issued = state.issue_device(provider, &client_id, None, &scope);
    Json(json!({
        "device_auth_id": issued.device_code,
        "user_code": issued.user_code,
        "interval": issued.interval_secs.to_string(),
    }))
    .into_response()
}

/// Codex's device login poll: `403` while pending, then the authorization code and the
/// verifier to exchange it with.
async fn codex_device_token(sim: Sim, headers: HeaderMap, body: Bytes) -> Response {
    let body = match json_object(&headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default();
    let poll = sim
        .lock()
        .poll_codex_device(field("device_auth_id"), field("user_code"));
    match poll {
        CodexPoll::Pending => wire::json_error(StatusCode::FORBIDDEN, "authorization_pending"),
        CodexPoll::Unknown => wire::json_error(StatusCode::NOT_FOUND, "not_found"),
        CodexPoll::WrongUserCode => wire::json_error(StatusCode::BAD_REQUEST, "invalid_request"),
        CodexPoll::Denied => wire::json_error(StatusCode::BAD_REQUEST, "access_denied"),
        CodexPoll::Expired => wire::json_error(StatusCode::BAD_REQUEST, "expired_token"),
        CodexPoll::Consumed => wire::json_error(StatusCode::BAD_REQUEST, "invalid_grant"),
        CodexPoll::Approved {
            authorization_code,
            code_challenge,
            code_verifier,
        } => Json(json!({
            "authorization_code": authorization_code,
            "code_challenge": code_challenge,
            "code_verifier": code_verifier,
        }))
        .into_response(),
    }
}

/// A JSON object body, refusing any other content type.
fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, Response> {
    if !wire::has_content_type(headers, "application/json") {
        return Err(wire::json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(wire::json_error(StatusCode::BAD_REQUEST, "invalid_request")),
    }
}
