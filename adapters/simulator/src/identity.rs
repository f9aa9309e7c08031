//! Who is calling: every request's `User-Agent` is recorded, and refused where the real service
//! refuses it (providers.md, "Identity: every request says honestly who sends it").
//!
//! - Anthropic refuses `claude-cli/*` User-Agents outright: `404` on every endpoint.
//! - Anthropic's token endpoint answers `403` to a request without a User-Agent.
//! - chatgpt.com (Codex's Responses API) answers a request without a User-Agent with a
//!   Cloudflare HTML page and `403`.
//! - The old token endpoint (`console.anthropic.com/v1/oauth/token`, here
//!   [`AnthropicEndpoints::old_token_url`](super::AnthropicEndpoints::old_token_url)) answers
//!   `404 not_found_error` for exchange and refresh alike.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{wire, Shared, Sim};

/// How many requests [`SimulatorHandle::requests_seen`](super::SimulatorHandle::requests_seen)
/// keeps (the newest).
pub(super) const KEPT: usize = 2000;

/// One request the simulator received (controls under `/_sim` are not recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The `User-Agent` header, if one was sent.
    pub user_agent: Option<String>,
}

/// The path of the old Anthropic token endpoint's stand-in.
pub(super) const OLD_ANTHROPIC_TOKEN_PATH: &str = "/anthropic/console/v1/oauth/token";

pub(super) async fn check(sim: Sim, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/_sim") {
        return next.run(request).await;
    }
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|ua| !ua.trim().is_empty());
    record(
        &sim,
        SeenRequest {
            method: request.method().to_string(),
            path: path.clone(),
            user_agent: user_agent.clone(),
        },
    );
    if let Some(refusal) = refusal(&path, user_agent.as_deref()) {
        return refusal;
    }
    next.run(request).await
}

fn record(sim: &Arc<Shared>, seen: SeenRequest) {
    let mut state = sim.lock();
    state.saw_request(seen);
}

fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

fn refusal(path: &str, user_agent: Option<&str>) -> Option<Response> {
    let anthropic = path.starts_with("/anthropic/");
    if path == OLD_ANTHROPIC_TOKEN_PATH {
        return Some(anthropic_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "Not Found",
        ));
    }
    if anthropic && user_agent.is_some_and(|ua| ua.starts_with("claude-cli/")) {
        return Some(anthropic_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "Not Found",
        ));
    }
    if user_agent.is_some() {
        return None;
    }
    if path == "/anthropic/v1/oauth/token" {
        return Some(anthropic_error(
            StatusCode::FORBIDDEN,
            "permission_error",
            "Request not allowed",
        ));
    }
    if path.starts_with("/codex/backend-api/") {
        return Some(cdn_challenge());
    }
    None
}

/// The page a CDN in front of a provider answers when it will not let a request through.
pub(super) fn cdn_challenge() -> Response {
    wire::html_page(
        StatusCode::FORBIDDEN,
        "Just a moment...",
        "<p>Enable JavaScript and cookies to continue.</p>\
         <p>Cloudflare Ray ID: 0000000000000000 (simulated)</p>",
    )
}
