//! The usage windows a subscription's answers report (Anthropic's unified headers, Codex's
//! `x-codex-*`), `set_usage`, and the refusal once a window is used up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llxprt_domain::{ChatProvider, OAuthProvider, WindowName};
use llxprt_simulator::{ForcedFailure, Simulator, SimulatorConfig, SimulatorHandle, UsageError};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::support::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
        .to_str()
        .unwrap()
}

fn number(headers: &HeaderMap, name: &str) -> f64 {
    header(headers, name).parse().unwrap()
}

fn unix(headers: &HeaderMap, name: &str) -> u64 {
    header(headers, name).parse().unwrap()
}

async fn anthropic_answer(sim: &SimulatorHandle, token: &str) -> reqwest::Response {
    send_raw(anthropic_messages(sim, token)).await
}

async fn codex_answer(sim: &SimulatorHandle, tokens: &serde_json::Value) -> reqwest::Response {
    send_raw(codex_responses(
        sim,
        str_of(tokens, "access_token"),
        &codex_account_id(tokens),
    ))
    .await
}

#[tokio::test]
async fn every_anthropic_subscription_answer_reports_the_same_fixed_windows() {
    let sim = Simulator::start().await.unwrap();
    let started = now();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    let first = anthropic_answer(&sim, token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let h = first.headers().clone();
    assert_eq!(header(&h, "anthropic-ratelimit-unified-status"), "allowed");
    assert_eq!(
        number(&h, "anthropic-ratelimit-unified-5h-utilization"),
        0.0
    );
    assert_eq!(
        number(&h, "anthropic-ratelimit-unified-7d-utilization"),
        0.0
    );
    let five_hours = unix(&h, "anthropic-ratelimit-unified-5h-reset");
    let seven_days = unix(&h, "anthropic-ratelimit-unified-7d-reset");
    assert!(five_hours > started + 4 * 3600 && five_hours <= now() + 5 * 3600);
    assert!(seven_days > started + 6 * 86_400 && seven_days <= now() + 7 * 86_400);
    assert!(h.contains_key("anthropic-ratelimit-unified-reset"));

    // The figures do not move between answers (a streamed one included).
    let mut stream = anthropic_messages(&sim, token).json(&serde_json::json!({
        "model": "claude-sonnet-4", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}));
    stream = stream.header("accept", "text/event-stream");
    let again = send_raw(stream).await;
    assert_eq!(again.status(), StatusCode::OK);
    for name in [
        "anthropic-ratelimit-unified-status",
        "anthropic-ratelimit-unified-5h-utilization",
        "anthropic-ratelimit-unified-5h-reset",
        "anthropic-ratelimit-unified-7d-utilization",
        "anthropic-ratelimit-unified-7d-reset",
        "anthropic-ratelimit-unified-reset",
    ] {
        assert_eq!(header(again.headers(), name), header(&h, name), "{name}");
    }
}

#[tokio::test]
async fn an_anthropic_api_key_answer_reports_no_unified_windows() {
    let sim = Simulator::start().await.unwrap();
    let key = SimulatorConfig::default_api_key(ChatProvider::Anthropic);
    let response = send_raw(
        http()
            .post(format!(
                "{}/v1/messages",
                sim.endpoints().anthropic.base_url
            ))
            .header("x-api-key", key.expose())
            .header("anthropic-version", "2023-06-01")
            .json(&anthropic_message_body("hello")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let unified: Vec<_> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("anthropic-ratelimit-unified"))
        .collect();
    assert!(unified.is_empty(), "{unified:?}");
}

#[tokio::test]
async fn set_usage_changes_what_the_answers_report_and_warns_from_80_percent() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let account = sim.login_account(OAuthProvider::Anthropic);
    let before = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    let seven_days = unix(before.headers(), "anthropic-ratelimit-unified-7d-reset");
    sim.set_usage(
        OAuthProvider::Anthropic,
        &account,
        &[(WindowName::FiveHour, 96.0, Some(Duration::from_secs(2700)))],
    )
    .unwrap();
    let set_at = now();
    let after = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    assert_eq!(after.status(), StatusCode::OK);
    let h = after.headers();
    assert_eq!(
        header(h, "anthropic-ratelimit-unified-status"),
        "allowed_warning"
    );
    assert_eq!(
        number(h, "anthropic-ratelimit-unified-5h-utilization"),
        0.96
    );
    let reset = unix(h, "anthropic-ratelimit-unified-5h-reset");
    assert!(
        (set_at - 1 + 2700..=now() + 2700).contains(&reset),
        "{reset}"
    );
    assert_eq!(
        unix(h, "anthropic-ratelimit-unified-reset"),
        reset,
        "the 5h window binds"
    );
    // The window not given keeps its figures.
    assert_eq!(number(h, "anthropic-ratelimit-unified-7d-utilization"), 0.0);
    assert_eq!(unix(h, "anthropic-ratelimit-unified-7d-reset"), seven_days);

    sim.set_usage(
        OAuthProvider::Anthropic,
        &account,
        &[(WindowName::FiveHour, 79.0, None)],
    )
    .unwrap();
    let below = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    assert_eq!(
        header(below.headers(), "anthropic-ratelimit-unified-status"),
        "allowed"
    );
    assert_eq!(
        unix(below.headers(), "anthropic-ratelimit-unified-5h-reset"),
        reset
    );
}

#[tokio::test]
async fn a_used_up_anthropic_window_is_refused_with_429_until_its_reset() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let account = sim.login_account(OAuthProvider::Anthropic);
    sim.set_usage(
        OAuthProvider::Anthropic,
        &account,
        &[
            (WindowName::FiveHour, 40.0, None),
            (
                WindowName::SevenDay,
                100.0,
                Some(Duration::from_secs(86_400)),
            ),
        ],
    )
    .unwrap();
    let before = sim.counters(OAuthProvider::Anthropic, &account);
    let refused = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = refused.headers().clone();
    assert_eq!(header(&h, "anthropic-ratelimit-unified-status"), "rejected");
    let reset = unix(&h, "anthropic-ratelimit-unified-7d-reset");
    assert_eq!(unix(&h, "anthropic-ratelimit-unified-reset"), reset);
    assert_eq!(
        number(&h, "anthropic-ratelimit-unified-7d-utilization"),
        1.0
    );
    assert_eq!(
        number(&h, "anthropic-ratelimit-unified-5h-utilization"),
        0.4
    );
    let retry_after = unix(&h, "retry-after");
    assert!(
        retry_after > 86_000 && retry_after <= 86_400,
        "{retry_after}"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let after = sim.counters(OAuthProvider::Anthropic, &account);
    assert_eq!(after.chat_requests, before.chat_requests + 1);
    assert_eq!(after.usage_limit_refusals, before.usage_limit_refusals + 1);
    assert_eq!(after.streamed_replies, before.streamed_replies);

    // Once the window is below 100 % again, the account is served.
    sim.set_usage(
        OAuthProvider::Anthropic,
        &account,
        &[(WindowName::SevenDay, 99.0, None)],
    )
    .unwrap();
    let served = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    assert_eq!(served.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_window_whose_reset_has_passed_starts_again() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let account = sim.login_account(OAuthProvider::Anthropic);
    sim.set_usage(
        OAuthProvider::Anthropic,
        &account,
        &[(WindowName::FiveHour, 100.0, Some(Duration::ZERO))],
    )
    .unwrap();
    let served = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(
        number(
            served.headers(),
            "anthropic-ratelimit-unified-5h-utilization"
        ),
        0.0
    );
    assert!(unix(served.headers(), "anthropic-ratelimit-unified-5h-reset") >= now() + 4 * 3600);
}

#[tokio::test]
async fn a_forced_rate_limit_keeps_its_own_reset_and_carries_the_windows() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let account = sim.login_account(OAuthProvider::Anthropic);
    sim.fail_next_chat_requests(
        OAuthProvider::Anthropic,
        &account,
        1,
        ForcedFailure::RateLimited {
            retry_after_secs: 30,
        },
    );
    let refused = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = refused.headers();
    assert_eq!(header(h, "retry-after"), "30");
    assert!(unix(h, "anthropic-ratelimit-unified-reset") <= now() + 30);
    assert_eq!(header(h, "anthropic-ratelimit-unified-status"), "rejected");
    assert_eq!(number(h, "anthropic-ratelimit-unified-5h-utilization"), 0.0);
}

#[tokio::test]
async fn every_codex_answer_reports_its_windows_and_credits() {
    let sim = Simulator::start().await.unwrap();
    let tokens = codex_login(&sim).await;
    let account = sim.login_account(OAuthProvider::Codex);
    let first = codex_answer(&sim, &tokens).await;
    assert_eq!(first.status(), StatusCode::OK);
    let h = first.headers().clone();
    assert_eq!(number(&h, "x-codex-primary-used-percent"), 0.0);
    assert_eq!(header(&h, "x-codex-primary-window-minutes"), "300");
    assert_eq!(number(&h, "x-codex-secondary-used-percent"), 0.0);
    assert_eq!(header(&h, "x-codex-secondary-window-minutes"), "10080");
    assert!(unix(&h, "x-codex-secondary-reset-at") > unix(&h, "x-codex-primary-reset-at"));
    assert_eq!(header(&h, "x-codex-credits-has-credits"), "false");
    assert_eq!(header(&h, "x-codex-credits-unlimited"), "false");
    assert!(h.contains_key("x-codex-credits-balance"));

    sim.set_usage(
        OAuthProvider::Codex,
        &account,
        &[(WindowName::Weekly, 31.5, None)],
    )
    .unwrap();
    let after = codex_answer(&sim, &tokens).await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(
        number(after.headers(), "x-codex-secondary-used-percent"),
        31.5
    );
    assert_eq!(
        header(after.headers(), "x-codex-primary-reset-at"),
        header(&h, "x-codex-primary-reset-at")
    );
}

#[tokio::test]
async fn a_used_up_codex_window_is_refused_with_usage_limit_reached() {
    let sim = Simulator::start().await.unwrap();
    let tokens = codex_login(&sim).await;
    let account = sim.login_account(OAuthProvider::Codex);
    sim.set_usage(
        OAuthProvider::Codex,
        &account,
        &[(WindowName::FiveHour, 100.0, Some(Duration::from_secs(1800)))],
    )
    .unwrap();
    let before = sim.counters(OAuthProvider::Codex, &account);
    let refused = codex_answer(&sim, &tokens).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let reset = unix(refused.headers(), "x-codex-primary-reset-at");
    assert_eq!(
        number(refused.headers(), "x-codex-primary-used-percent"),
        100.0
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["resets_at"].as_u64(), Some(reset));
    let resets_in = body["error"]["resets_in_seconds"].as_u64().unwrap();
    assert!(resets_in > 1700 && resets_in <= 1800, "{resets_in}");
    let after = sim.counters(OAuthProvider::Codex, &account);
    assert_eq!(after.chat_requests, before.chat_requests + 1);
    assert_eq!(after.usage_limit_refusals, before.usage_limit_refusals + 1);
    assert_eq!(after.streamed_replies, before.streamed_replies);
}

#[tokio::test]
async fn set_usage_refuses_windows_the_provider_does_not_report() {
    let sim = Simulator::start().await.unwrap();
    let error = sim
        .set_usage(
            OAuthProvider::Codex,
            "work",
            &[(WindowName::SevenDay, 5.0, None)],
        )
        .unwrap_err();
    assert_eq!(
        error,
        UsageError::UnknownWindow {
            provider: OAuthProvider::Codex,
            window: WindowName::SevenDay
        }
    );
    assert_eq!(
        error.to_string(),
        "codex reports no 7d window (its windows: 5h, weekly)"
    );
    assert!(sim
        .set_usage(
            OAuthProvider::Gemini,
            "work",
            &[(WindowName::FiveHour, 5.0, None)]
        )
        .is_err());
    assert!(sim
        .set_usage(
            OAuthProvider::Anthropic,
            "work",
            &[(WindowName::FiveHour, -1.0, None)]
        )
        .is_err());
}

#[tokio::test]
async fn the_usage_control_over_http_sets_the_same_figures() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let account = sim.login_account(OAuthProvider::Anthropic);
    let url = format!(
        "{}/_sim/anthropic/accounts/{account}/usage",
        sim.endpoints().root
    );
    let (status, _) = send(http().put(&url).json(&serde_json::json!({
        "windows": [{"window": "5h", "percent": 72, "resets_in_secs": 600}]
    })))
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = anthropic_answer(&sim, str_of(&tokens, "access_token")).await;
    assert_eq!(
        number(
            answer.headers(),
            "anthropic-ratelimit-unified-5h-utilization"
        ),
        0.72
    );
    let (status, body) = send(http().put(&url).json(&serde_json::json!({
        "windows": [{"window": "weekly", "percent": 10}]
    })))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("5h, 7d"), "{body}");
}
