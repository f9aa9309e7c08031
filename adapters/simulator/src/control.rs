//! The controls over HTTP, under `/_sim`, for child processes and sandbox users. Each one does
//! what the [`SimulatorHandle`](super::SimulatorHandle) method of the same name does.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use llxprt_domain::{ChatProvider, OAuthProvider};
use serde::Deserialize;
use serde_json::json;

use super::state::{DeviceOutcome, SlowReply};
use super::{wire, ForcedFailure, Pause, Shared, Sim};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/secrets", get(secrets))
        .route("/_sim/requests", get(requests_seen))
        .route(
            "/_sim/{provider}/login-account",
            put(set_login_account).get(login_account),
        )
        .route("/_sim/{provider}/token-lifetime", put(set_token_lifetime))
        .route(
            "/_sim/{provider}/deny-next-consent",
            post(deny_next_consent),
        )
        .route("/_sim/{provider}/deny-next-device", post(deny_next_device))
        .route(
            "/_sim/{provider}/slow-down-next-polls",
            post(slow_down_next_polls),
        )
        .route(
            "/_sim/{provider}/hold-next-refresh",
            post(hold_next_refresh),
        )
        .route(
            "/_sim/{provider}/expire-next-device",
            post(expire_next_device),
        )
        .route("/_sim/{provider}/counters", get(provider_counters))
        .route(
            "/_sim/{provider}/accounts/{account}/expire-tokens",
            post(expire_tokens),
        )
        .route("/_sim/{provider}/accounts/{account}/revoke", post(revoke))
        .route(
            "/_sim/gemini/accounts/{account}/code-assist",
            put(set_code_assist_account),
        )
        .route(
            "/_sim/{provider}/accounts/{account}/fail-next",
            post(fail_next),
        )
        .route(
            "/_sim/{provider}/accounts/{account}/slow-next",
            post(slow_next),
        )
        .route(
            "/_sim/{provider}/accounts/{account}/counters",
            get(counters),
        )
        .route("/_sim/{provider}/accounts/{account}/usage", put(set_usage))
        .route(
            "/_sim/{provider}/api-keys",
            post(add_api_key).delete(remove_api_key),
        )
}

/// A provider named in the path; an unknown one is a `404`.
fn parse<P: FromStr>(name: &str) -> Result<P, Response> {
    name.parse()
        .map_err(|_| wire::json_error(StatusCode::NOT_FOUND, "unknown_provider"))
}

type Done = Result<StatusCode, Response>;

#[derive(Deserialize)]
struct AccountBody {
    account: String,
}

#[derive(Deserialize)]
struct SecondsBody {
    seconds: u64,
}

#[derive(Deserialize)]
struct FailBody {
    count: u32,
    failure: ForcedFailure,
}

#[derive(Deserialize)]
struct SlowBody {
    count: u32,
    seconds: u64,
    #[serde(default)]
    pause: Pause,
}

#[derive(Deserialize)]
struct KeyBody {
    key: String,
    #[serde(default)]
    account: Option<String>,
}

async fn requests_seen(sim: Sim) -> Response {
    Json(json!(sim.lock().requests_seen())).into_response()
}

async fn secrets(sim: Sim) -> Response {
    Json(json!(sim.lock().secrets())).into_response()
}

async fn set_login_account(sim: Sim, Path(p): Path<String>, Json(b): Json<AccountBody>) -> Done {
    sim.lock().set_login_account(parse(&p)?, &b.account);
    Ok(StatusCode::NO_CONTENT)
}

async fn login_account(sim: Sim, Path(p): Path<String>) -> Result<Response, Response> {
    let provider: OAuthProvider = parse(&p)?;
    let account = sim.lock().login_account(provider).to_owned();
    Ok(Json(json!({ "account": account })).into_response())
}

async fn set_token_lifetime(sim: Sim, Path(p): Path<String>, Json(b): Json<SecondsBody>) -> Done {
    sim.lock().set_token_lifetime(parse(&p)?, b.seconds);
    Ok(StatusCode::NO_CONTENT)
}

async fn deny_next_consent(sim: Sim, Path(p): Path<String>) -> Done {
    sim.lock().deny_next_consent(parse(&p)?);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct CountBody {
    count: u32,
}

async fn slow_down_next_polls(sim: Sim, Path(p): Path<String>, Json(b): Json<CountBody>) -> Done {
    sim.lock().slow_down_next_polls(parse(&p)?, b.count);
    Ok(StatusCode::NO_CONTENT)
}

async fn hold_next_refresh(sim: Sim, Path(p): Path<String>) -> Done {
    sim.lock().hold_next_refresh(parse(&p)?);
    Ok(StatusCode::NO_CONTENT)
}

async fn deny_next_device(sim: Sim, Path(p): Path<String>) -> Done {
    sim.lock()
        .preset_next_device(parse(&p)?, DeviceOutcome::Denied);
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_next_device(sim: Sim, Path(p): Path<String>) -> Done {
    sim.lock()
        .preset_next_device(parse(&p)?, DeviceOutcome::Expired);
    Ok(StatusCode::NO_CONTENT)
}

async fn expire_tokens(sim: Sim, Path((p, account)): Path<(String, String)>) -> Done {
    sim.lock().expire_access_tokens(parse(&p)?, &account);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct CodeAssistBody {
    kind: super::CodeAssistAccount,
}

async fn set_code_assist_account(
    sim: Sim,
    Path(account): Path<String>,
    Json(b): Json<CodeAssistBody>,
) -> Done {
    sim.lock().set_code_assist_account(&account, b.kind);
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke(sim: Sim, Path((p, account)): Path<(String, String)>) -> Done {
    sim.lock().revoke(parse(&p)?, &account);
    Ok(StatusCode::NO_CONTENT)
}

async fn fail_next(
    sim: Sim,
    Path((p, account)): Path<(String, String)>,
    Json(b): Json<FailBody>,
) -> Done {
    sim.lock()
        .fail_next(parse(&p)?, &account, b.count, b.failure);
    Ok(StatusCode::NO_CONTENT)
}

async fn slow_next(
    sim: Sim,
    Path((p, account)): Path<(String, String)>,
    Json(b): Json<SlowBody>,
) -> Done {
    let slow = SlowReply {
        delay: Duration::from_secs(b.seconds),
        pause: b.pause,
    };
    sim.lock().slow_next(parse(&p)?, &account, b.count, slow);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct UsageBody {
    windows: Vec<UsageWindowBody>,
}

/// `{"window": "5h", "percent": 96, "resets_in_secs": 2700}` (`resets_in_secs` optional).
#[derive(Deserialize)]
struct UsageWindowBody {
    window: String,
    percent: f64,
    #[serde(default)]
    resets_in_secs: Option<u64>,
}

/// `PUT /_sim/{provider}/accounts/{account}/usage`: an unknown window or a bad share is a `400`
/// saying why.
async fn set_usage(
    sim: Sim,
    Path((p, account)): Path<(String, String)>,
    Json(b): Json<UsageBody>,
) -> Done {
    let provider: OAuthProvider = parse(&p)?;
    let mut settings = Vec::with_capacity(b.windows.len());
    for w in b.windows {
        let Some(window) = super::usage::window_named(provider, &w.window) else {
            let why = format!(
                "{provider} reports no {} window ({})",
                w.window,
                super::usage::known_windows(provider)
            );
            return Err(wire::json_error(StatusCode::BAD_REQUEST, &why));
        };
        settings.push((window, w.percent, w.resets_in_secs.map(Duration::from_secs)));
    }
    sim.lock()
        .set_usage(provider, &account, &settings)
        .map_err(|e| wire::json_error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn counters(
    sim: Sim,
    Path((p, account)): Path<(String, String)>,
) -> Result<Response, Response> {
    let counters = sim.lock().counters(parse(&p)?, &account);
    Ok(Json(counters).into_response())
}

async fn provider_counters(sim: Sim, Path(p): Path<String>) -> Result<Response, Response> {
    let counters = sim.lock().provider_counters(parse(&p)?);
    Ok(Json(counters).into_response())
}

async fn add_api_key(sim: Sim, Path(p): Path<String>, Json(b): Json<KeyBody>) -> Done {
    let provider: ChatProvider = parse(&p)?;
    let account = b.account.as_deref().unwrap_or(super::API_KEY_ACCOUNT);
    sim.lock().add_api_key(provider, &b.key, account);
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_api_key(sim: Sim, Path(p): Path<String>, Json(b): Json<KeyBody>) -> Done {
    let provider: ChatProvider = parse(&p)?;
    sim.lock().remove_api_key(provider, &b.key);
    Ok(StatusCode::NO_CONTENT)
}
