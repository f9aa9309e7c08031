//! The controls tests use: forced failures, lifetimes, expiry, accounts, keys, counters and
//! the issued secrets, through the handle and over HTTP.

use std::time::{SystemTime, UNIX_EPOCH};

use llxprt_domain::{ChatProvider, OAuthProvider, Secret};
use llxprt_simulator::{Counters, ForcedFailure, Simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_rate_limited_account_gets_429_with_its_reset_then_recovers() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    sim.fail_next_chat_requests(
        OAuthProvider::Anthropic,
        "user1",
        2,
        ForcedFailure::RateLimited {
            retry_after_secs: 120,
        },
    );
    let before = now();
    for _ in 0..2 {
        let response = send_raw(anthropic_messages(&sim, token)).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "120");
        let reset: u64 = response.headers()["anthropic-ratelimit-unified-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset >= before + 120);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
    }
    assert_eq!(
        send(anthropic_messages(&sim, token)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, "user1")
            .chat_requests,
        3
    );
}

#[tokio::test]
async fn payment_required_and_server_errors_can_be_forced() {
    let sim = Simulator::start().await.unwrap();
    let tokens = gemini_login(&sim).await;
    let base = &sim.endpoints().gemini.code_assist_base_url;
    let generate = || {
        http()
            .post(format!("{base}/v1internal:generateContent"))
            .bearer_auth(str_of(&tokens, "access_token"))
            .json(
                &json!({"model": "gemini-2.5-pro", "project": "sim-project-user1",
                          "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}),
            )
    };
    sim.fail_next_chat_requests(
        OAuthProvider::Gemini,
        "user1",
        1,
        ForcedFailure::PaymentRequired,
    );
    sim.fail_next_chat_requests(
        OAuthProvider::Gemini,
        "user1",
        1,
        ForcedFailure::ServerError,
    );
    assert_eq!(send(generate()).await.0, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(send(generate()).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(send(generate()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_rate_limited_gemini_request_carries_retry_info() {
    let sim = Simulator::start().await.unwrap();
    let key = SimulatorConfig::default_api_key(ChatProvider::Gemini);
    sim.fail_next_chat_requests(
        OAuthProvider::Gemini,
        "api-key",
        1,
        ForcedFailure::RateLimited {
            retry_after_secs: 7,
        },
    );
    let response = send_raw(
        http()
            .post(format!(
                "{}/v1beta/models/gemini-2.5-flash:generateContent",
                sim.endpoints().gemini.base_url
            ))
            .header("x-goog-api-key", key.expose())
            .json(&json!({"contents": [{"parts": [{"text": "hello"}]}]})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        response.headers().get("retry-after").is_none(),
        "Google says how long in the body only"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(body["error"]["details"][0]["retryDelay"], "7s");
}

#[tokio::test]
async fn a_zero_lifetime_issues_expired_tokens_that_a_refresh_replaces() {
    let sim = Simulator::start().await.unwrap();
    sim.set_token_lifetime(OAuthProvider::Anthropic, 0);
    let tokens = anthropic_login(&sim).await;
    assert_eq!(tokens["expires_in"], 0);
    let (status, body) = send(anthropic_messages(&sim, str_of(&tokens, "access_token"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, "user1")
            .rejected_chat_requests,
        1
    );

    sim.set_token_lifetime(OAuthProvider::Anthropic, 3600);
    let (status, refreshed) = anthropic_refresh(&sim, str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refreshed["expires_in"], 3600);
    let (status, _) = send(anthropic_messages(&sim, str_of(&refreshed, "access_token"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn expiring_an_account_now_leaves_its_refresh_token_usable() {
    let sim = Simulator::start().await.unwrap();
    let tokens = qwen_login(&sim).await;
    let chat = |token: &str| {
        http()
            .post(format!(
                "{}/v1/chat/completions",
                sim.endpoints().qwen.resource_url
            ))
            .bearer_auth(token)
            .json(&chat_completion_body("hi"))
    };
    assert_eq!(
        send(chat(str_of(&tokens, "access_token"))).await.0,
        StatusCode::OK
    );
    sim.expire_access_tokens(OAuthProvider::Qwen, "user1");
    assert_eq!(
        send(chat(str_of(&tokens, "access_token"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, refreshed) = send(http().post(&sim.endpoints().qwen.token_url).form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", str_of(&tokens, "refresh_token")),
        ("client_id", client_id(OAuthProvider::Qwen)),
    ]))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        send(chat(str_of(&refreshed, "access_token"))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn api_keys_can_be_added_and_removed() {
    let sim = Simulator::start().await.unwrap();
    let url = format!("{}/chat/completions", sim.endpoints().openai.base_url);
    let key = Secret::new("sk-sim-team-b");
    let chat = || {
        http()
            .post(&url)
            .bearer_auth(key.expose())
            .json(&chat_completion_body("hi"))
    };
    assert_eq!(send(chat()).await.0, StatusCode::UNAUTHORIZED);
    sim.add_api_key(ChatProvider::OpenAi, &key, "team-b");
    let (status, reply) = send(chat()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "[simulated openai/team-b] you said: hi"
    );
    assert_eq!(
        sim.counters(OAuthProvider::Codex, "team-b").chat_requests,
        1
    );
    sim.remove_api_key(ChatProvider::OpenAi, &key);
    assert_eq!(send(chat()).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_controls_work_over_http() {
    let sim = Simulator::start().await.unwrap();
    let controls = sim.endpoints().controls.clone();
    let client = http();

    let status = |r: reqwest::Response| r.status();
    let put = client
        .put(format!("{controls}/anthropic/login-account"))
        .json(&json!({"account": "bob"}));
    assert_eq!(status(send_raw(put).await), StatusCode::NO_CONTENT);
    assert_eq!(sim.login_account(OAuthProvider::Anthropic), "bob");
    let (_, got) = send(client.get(format!("{controls}/anthropic/login-account"))).await;
    assert_eq!(got["account"], "bob");

    let lifetime = client
        .put(format!("{controls}/anthropic/token-lifetime"))
        .json(&json!({"seconds": 42}));
    assert_eq!(status(send_raw(lifetime).await), StatusCode::NO_CONTENT);
    let tokens = anthropic_login(&sim).await;
    assert_eq!(tokens["expires_in"], 42);

    let fail = client
        .post(format!("{controls}/anthropic/accounts/bob/fail-next"))
        .json(&json!({"count": 1, "failure": {"kind": "payment_required"}}));
    assert_eq!(status(send_raw(fail).await), StatusCode::NO_CONTENT);
    let token = str_of(&tokens, "access_token");
    assert_eq!(
        send(anthropic_messages(&sim, token)).await.0,
        StatusCode::PAYMENT_REQUIRED
    );

    let revoke = client.post(format!("{controls}/anthropic/accounts/bob/revoke"));
    assert_eq!(status(send_raw(revoke).await), StatusCode::NO_CONTENT);
    assert_eq!(
        send(anthropic_messages(&sim, token)).await.0,
        StatusCode::FORBIDDEN
    );

    let (code, counted) =
        send(client.get(format!("{controls}/anthropic/accounts/bob/counters"))).await;
    assert_eq!(code, StatusCode::OK);
    let counted: Counters = serde_json::from_value(counted).unwrap();
    assert_eq!(counted, sim.counters(OAuthProvider::Anthropic, "bob"));
    assert_eq!(counted.chat_requests, 1);
    assert_eq!(counted.rejected_chat_requests, 1);
    let (_, total) = send(client.get(format!("{controls}/anthropic/counters"))).await;
    assert_eq!(total["token_exchanges"], 1);

    let deny = client.post(format!("{controls}/qwen/deny-next-device"));
    assert_eq!(status(send_raw(deny).await), StatusCode::NO_CONTENT);
    let start = qwen_device_code(&sim).await;
    assert_eq!(
        oauth_error(&qwen_poll(&sim, &start).await.1),
        "access_denied"
    );

    let add_key = client
        .post(format!("{controls}/openai/api-keys"))
        .json(&json!({"key": "sk-over-http", "account": "carol"}));
    assert_eq!(status(send_raw(add_key).await), StatusCode::NO_CONTENT);
    let (code, _) = send(
        client
            .post(format!(
                "{}/chat/completions",
                sim.endpoints().openai.base_url
            ))
            .bearer_auth("sk-over-http")
            .json(&chat_completion_body("hi")),
    )
    .await;
    assert_eq!(code, StatusCode::OK);

    let (code, secrets) = send(client.get(format!("{controls}/secrets"))).await;
    assert_eq!(code, StatusCode::OK);
    let secrets: Vec<String> = serde_json::from_value(secrets).unwrap();
    assert!(secrets.iter().any(|s| s == token));

    let unknown = client.post(format!("{controls}/claude/deny-next-consent"));
    assert_eq!(status(send_raw(unknown).await), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_issued_secret_is_listed_and_none_shows_in_debug_output() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize(&sim);
    let consent = sim.consent(&request.url).await.unwrap();
    let debug_of_consent = format!("{consent:?}");
    let (code, state) = anthropic_code(&sim, &request).await;
    let (_, tokens) = send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&anthropic_exchange_body(&request, &code, &state)),
    )
    .await;
    let codex = codex_login(&sim).await;
    let qwen = qwen_login(&sim).await;

    let secrets: Vec<String> = sim
        .issued_secrets()
        .iter()
        .map(|s| s.expose().to_owned())
        .collect();
    let anthropic_key = SimulatorConfig::default_api_key(ChatProvider::Anthropic);
    let expected = [
        code.as_str(),
        request.verifier.as_str(),
        str_of(&tokens, "access_token"),
        str_of(&tokens, "refresh_token"),
        str_of(&codex, "access_token"),
        str_of(&codex, "refresh_token"),
        str_of(&codex, "id_token"),
        str_of(&qwen, "access_token"),
        str_of(&qwen, "refresh_token"),
        anthropic_key.expose(),
    ];
    for secret in expected {
        assert!(
            secrets.iter().any(|s| s == secret),
            "a secret is missing from issued_secrets"
        );
    }
    for secret in &secrets {
        assert!(
            !debug_of_consent.contains(secret.as_str()),
            "Debug of a consent shows a secret"
        );
    }

    let page = sim.browse(&anthropic_authorize(&sim).url).await.unwrap();
    assert!(page.shown_code().is_some());
    let debug_of_page = format!("{page:?}");
    for secret in sim.issued_secrets() {
        assert!(
            !debug_of_page.contains(secret.expose()),
            "Debug of a page shows a secret"
        );
    }
}

#[tokio::test]
async fn a_shut_down_simulator_refuses_connections() {
    let sim = Simulator::start().await.unwrap();
    let url = sim.endpoints().anthropic.authorize_url.clone();
    let other = sim.clone();
    sim.shutdown().await;
    assert!(http().get(&url).send().await.is_err());
    assert!(other.consent(&url).await.is_err());
}

#[tokio::test]
async fn a_held_refresh_rotates_the_token_and_never_answers() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let old = str_of(&tokens, "refresh_token");
    let hold = http().post(format!(
        "{}/anthropic/hold-next-refresh",
        sim.endpoints().controls
    ));
    assert_eq!(send_raw(hold).await.status(), StatusCode::NO_CONTENT);

    let held = tokio::spawn({
        let sim = sim.clone();
        let old = old.to_owned();
        async move { anthropic_refresh(&sim, &old).await }
    });
    // The provider side is done as soon as the refresh is counted; the answer never comes.
    let mut counted = false;
    for _ in 0..200 {
        if sim.counters(OAuthProvider::Anthropic, "user1").refreshes == 1 {
            counted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(counted, "the held refresh reached the provider");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the held refresh was answered");

    // The old token was spent by the held refresh; only the next refresh is answered again.
    let (status, body) = anthropic_refresh(&sim, old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, "user1")
            .reused_refresh_tokens,
        1
    );

    // Stopping the simulator lets the held request end instead of hanging the shutdown.
    tokio::time::timeout(std::time::Duration::from_secs(20), sim.shutdown())
        .await
        .expect("shutdown does not wait for the held answer");
    let (status, _) = tokio::time::timeout(std::time::Duration::from_secs(20), held)
        .await
        .expect("the held request ended")
        .unwrap();
    assert_ne!(status, StatusCode::OK);
}
