//! Qwen: the device flow with PKCE, its polling errors, `resource_url`, and both chat bases.

use llxprt_domain::{ChatProvider, OAuthProvider};
use llxprt_simulator::{Simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const P: OAuthProvider = OAuthProvider::Qwen;

/// A simulator whose device interval is far longer than any test takes between two polls, so
/// that every second poll is "too fast" whatever the machine's speed.
async fn slow_interval_simulator() -> llxprt_simulator::SimulatorHandle {
    Simulator::start_with(SimulatorConfig {
        device_interval_secs: 600,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_correct_client_signs_in_with_the_device_flow_and_chats() {
    let sim = Simulator::start().await.unwrap();
    let start = qwen_device_code(&sim).await;
    let body = &start.body;
    assert_eq!(body["interval"], 1);
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    assert!(str_of(body, "verification_uri_complete").contains(str_of(body, "user_code")));
    assert_eq!(
        str_of(body, "verification_uri"),
        sim.endpoints().qwen.verification_uri
    );

    let (status, pending) = qwen_poll(&sim, &start).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&pending), "authorization_pending");

    let page = sim
        .browse(str_of(body, "verification_uri_complete"))
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("user1"));

    // Honour the interval before the next poll, as a client must.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, tokens) = qwen_poll(&sim, &start).await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&tokens));
    assert_eq!(
        str_of(&tokens, "resource_url"),
        sim.endpoints().qwen.resource_url
    );
    assert_eq!(tokens["scope"], QWEN_SCOPES);

    let (status, reply) = send(
        http()
            .post(format!(
                "{}/v1/chat/completions",
                str_of(&tokens, "resource_url")
            ))
            .bearer_auth(str_of(&tokens, "access_token"))
            .json(&chat_completion_body("hello")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "[simulated qwen/user1] you said: hello"
    );

    let counted = sim.counters(P, "user1");
    assert_eq!(counted.device_code_requests, 1);
    assert_eq!(counted.token_exchanges, 1);
    assert_eq!(counted.chat_requests, 1);

    // The device code is spent.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = qwen_poll(&sim, &start).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
}

#[tokio::test]
async fn polling_faster_than_the_interval_gets_slow_down() {
    let sim = slow_interval_simulator().await;
    let start = qwen_device_code(&sim).await;
    assert_eq!(
        oauth_error(&qwen_poll(&sim, &start).await.1),
        "authorization_pending"
    );
    let (status, body) = qwen_poll(&sim, &start).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "Qwen sends slow_down as 429"
    );
    assert_eq!(oauth_error(&body), "slow_down");
    // Still too fast, even once approved.
    sim.browse(str_of(&start.body, "verification_uri_complete"))
        .await
        .unwrap();
    assert_eq!(oauth_error(&qwen_poll(&sim, &start).await.1), "slow_down");
}

#[tokio::test]
async fn a_wrong_verifier_is_refused() {
    let sim = Simulator::start_with(SimulatorConfig {
        device_interval_secs: 0,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let start = qwen_device_code(&sim).await;
    sim.browse(str_of(&start.body, "verification_uri_complete"))
        .await
        .unwrap();
    let (status, body) = qwen_poll_with(&sim, str_of(&start.body, "device_code"), &pkce().0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
    assert_eq!(sim.counters(P, "user1").token_exchanges, 0);
}

#[tokio::test]
async fn a_denied_authorization_answers_access_denied() {
    let sim = Simulator::start().await.unwrap();
    sim.deny_next_device_authorization(P);
    let start = qwen_device_code(&sim).await;
    let page = sim
        .browse(str_of(&start.body, "verification_uri_complete"))
        .await
        .unwrap();
    assert!(page.shown_error().unwrap().starts_with("access_denied"));
    let (status, body) = qwen_poll(&sim, &start).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "access_denied");
}

#[tokio::test]
async fn an_expired_device_code_answers_expired_token() {
    let sim = Simulator::start().await.unwrap();
    sim.expire_next_device_authorization(P);
    let start = qwen_device_code(&sim).await;
    assert_eq!(
        oauth_error(&qwen_poll(&sim, &start).await.1),
        "expired_token"
    );

    let sim = Simulator::start_with(SimulatorConfig {
        device_expires_in_secs: 0,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let start = qwen_device_code(&sim).await;
    let page = sim
        .browse(str_of(&start.body, "verification_uri_complete"))
        .await
        .unwrap();
    assert!(page.shown_error().unwrap().starts_with("expired_token"));
    assert_eq!(
        oauth_error(&qwen_poll(&sim, &start).await.1),
        "expired_token"
    );
}

#[tokio::test]
async fn the_device_request_must_be_a_form_with_pkce_and_the_scopes() {
    let sim = Simulator::start().await.unwrap();
    let url = &sim.endpoints().qwen.device_authorization_url;
    let (_, challenge) = pkce();
    let as_json = http().post(url).json(&json!({
        "client_id": client_id(P), "scope": QWEN_SCOPES,
        "code_challenge": challenge, "code_challenge_method": "S256",
    }));
    let (status, body) = send(as_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_request");

    let no_pkce = http()
        .post(url)
        .form(&[("client_id", client_id(P)), ("scope", QWEN_SCOPES)]);
    assert_eq!(oauth_error(&send(no_pkce).await.1), "invalid_request");

    let wrong_scope = http().post(url).form(&[
        ("client_id", client_id(P)),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    assert_eq!(oauth_error(&send(wrong_scope).await.1), "invalid_scope");

    let wrong_client = http().post(url).form(&[
        ("client_id", "someone-else"),
        ("scope", QWEN_SCOPES),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let (status, body) = send(wrong_client).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(oauth_error(&body), "invalid_client");
    assert_eq!(sim.counters(P, "user1").device_code_requests, 0);
}

#[tokio::test]
async fn refresh_keeps_the_refresh_token_and_resource_url() {
    let sim = Simulator::start().await.unwrap();
    let tokens = qwen_login(&sim).await;
    let refresh = || {
        http().post(&sim.endpoints().qwen.token_url).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", str_of(&tokens, "refresh_token")),
            ("client_id", client_id(P)),
        ])
    };
    for _ in 0..2 {
        let (status, body) = send(refresh()).await;
        assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
        assert!(body.get("refresh_token").is_none());
        assert_eq!(
            str_of(&body, "resource_url"),
            sim.endpoints().qwen.resource_url
        );
    }
    assert_eq!(sim.counters(P, "user1").refreshes, 2);
}

#[tokio::test]
async fn the_dashscope_base_takes_a_key_and_streams() {
    let sim = Simulator::start().await.unwrap();
    let key = SimulatorConfig::default_api_key(ChatProvider::Qwen);
    let url = format!("{}/chat/completions", sim.endpoints().qwen.base_url);
    let (status, reply) = send(
        http()
            .post(&url)
            .bearer_auth(key.expose())
            .json(&chat_completion_body("hello")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "[simulated qwen/api-key] you said: hello"
    );

    let mut body = chat_completion_body("hello");
    body["stream"] = json!(true);
    let response = send_raw(http().post(&url).bearer_auth(key.expose()).json(&body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = parse_sse(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let text: String = events
        .iter()
        .filter_map(|(_, data)| data["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "[simulated qwen/api-key] you said: hello");

    // An OAuth token is not a DashScope key, and a key is not an OAuth token.
    let tokens = qwen_login(&sim).await;
    let token_at_dashscope = http()
        .post(&url)
        .bearer_auth(str_of(&tokens, "access_token"))
        .json(&chat_completion_body("hello"));
    assert_eq!(send(token_at_dashscope).await.0, StatusCode::UNAUTHORIZED);
    let key_at_resource = http()
        .post(format!(
            "{}/v1/chat/completions",
            sim.endpoints().qwen.resource_url
        ))
        .bearer_auth(key.expose())
        .json(&chat_completion_body("hello"));
    assert_eq!(send(key_at_resource).await.0, StatusCode::UNAUTHORIZED);
}
