//! Anthropic: the pasted `CODE#STATE`, the JSON token endpoint, rotating refresh tokens, and
//! the Messages API's headers.

use llxprt_domain::{ChatProvider, OAuthProvider};
use llxprt_simulator::{Consent, Simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

const P: OAuthProvider = OAuthProvider::Anthropic;

#[tokio::test]
async fn a_correct_client_signs_in_and_chats() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize(&sim);
    let (code, shown_state) = anthropic_code(&sim, &request).await;
    assert!(
        shown_state == request.state,
        "the code page shows the state that was sent"
    );

    let (status, tokens) = send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&anthropic_exchange_body(&request, &code, &shown_state)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&tokens));
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], ANTHROPIC_SCOPES);
    assert!(tokens["refresh_token"].is_string());

    let (status, reply) = send(anthropic_messages(&sim, str_of(&tokens, "access_token"))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["type"], "message");
    assert_eq!(
        reply["content"][0]["text"],
        "[simulated anthropic/user1] you said: hello"
    );

    let counted = sim.counters(P, "user1");
    assert_eq!(counted.authorize_hits, 1);
    assert_eq!(counted.token_exchanges, 1);
    assert_eq!(counted.chat_requests, 1);
}

#[tokio::test]
async fn the_exchange_refuses_a_state_other_than_the_one_sent() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize(&sim);
    let (code, _) = anthropic_code(&sim, &request).await;
    let (status, body) = send(http().post(&sim.endpoints().anthropic.token_url).json(
        &anthropic_exchange_body(&request, &code, "some-other-state"),
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
    assert_eq!(sim.counters(P, "user1").token_exchanges, 0);
}

#[tokio::test]
async fn the_exchange_refuses_a_wrong_pkce_verifier() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize(&sim);
    let (code, state) = anthropic_code(&sim, &request).await;
    let mut body = anthropic_exchange_body(&request, &code, &state);
    body["code_verifier"] = json!(pkce().0);
    let (status, answer) = send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&answer), "invalid_grant");
}

#[tokio::test]
async fn the_exchange_refuses_a_form_body() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize(&sim);
    let (code, state) = anthropic_code(&sim, &request).await;
    let body = anthropic_exchange_body(&request, &code, &state);
    let form: Vec<(String, String)> = body
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let (status, answer) = send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .form(&form),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&answer), "invalid_request");
}

#[tokio::test]
async fn a_code_works_once() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize(&sim);
    let (code, state) = anthropic_code(&sim, &request).await;
    let exchange = || {
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&anthropic_exchange_body(&request, &code, &state))
    };
    assert_eq!(send(exchange()).await.0, StatusCode::OK);
    let (status, body) = send(exchange()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
    assert_eq!(sim.counters(P, "user1").token_exchanges, 1);
}

#[tokio::test]
async fn a_code_expires() {
    let sim = Simulator::start_with(SimulatorConfig {
        code_lifetime_secs: 0,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let request = anthropic_authorize(&sim);
    let (code, state) = anthropic_code(&sim, &request).await;
    let (status, body) = send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&anthropic_exchange_body(&request, &code, &state)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
}

#[tokio::test]
async fn the_exchange_refuses_a_redirect_uri_other_than_the_authorize_one() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize(&sim);
    let (code, state) = anthropic_code(&sim, &request).await;
    let mut body = anthropic_exchange_body(&request, &code, &state);
    body["redirect_uri"] = json!("https://console.anthropic.com/oauth/code/callback");
    let (status, answer) = send(
        http()
            .post(&sim.endpoints().anthropic.token_url)
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&answer), "invalid_grant");
}

#[tokio::test]
async fn authorize_refuses_an_unregistered_redirect_without_redirecting() {
    let sim = Simulator::start().await.unwrap();
    let request = anthropic_authorize_with(&sim, &[("redirect_uri", "http://localhost:9999/cb")]);
    match sim.consent(&request.url).await.unwrap() {
        Consent::Page(page) => {
            assert_eq!(page.status, 400);
            assert!(page.shown_error().unwrap().starts_with("invalid_request"));
        }
        other => panic!("expected an error page, got {other:?}"),
    }
}

#[tokio::test]
async fn authorize_reports_missing_parameters_on_the_code_page() {
    let sim = Simulator::start().await.unwrap();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("code", "")], "invalid_request"),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("code_challenge", "")], "invalid_request"),
        (&[("scope", "user:inference")], "invalid_scope"),
        (&[("response_type", "token")], "unsupported_response_type"),
    ];
    for (overrides, error) in cases {
        let request = anthropic_authorize_with(&sim, overrides);
        match sim.consent(&request.url).await.unwrap() {
            Consent::Page(page) => {
                let shown = page.shown_error().unwrap();
                assert!(shown.starts_with(error), "{overrides:?}: {shown}");
            }
            other => panic!("{overrides:?}: expected an error page, got {other:?}"),
        }
    }
    assert_eq!(sim.counters(P, "user1").authorize_hits, 5);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_is_refused_and_counted() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let first = str_of(&tokens, "refresh_token");

    let (status, refreshed) = anthropic_refresh(&sim, first).await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&refreshed));
    let second = str_of(&refreshed, "refresh_token");
    assert!(second != first, "a new refresh token comes back");

    let (status, reused) = anthropic_refresh(&sim, first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&reused), "invalid_grant");

    let (status, _) = anthropic_refresh(&sim, second).await;
    assert_eq!(status, StatusCode::OK);
    let counted = sim.counters(P, "user1");
    assert_eq!(counted.refreshes, 2);
    assert_eq!(counted.reused_refresh_tokens, 1);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let refresh_token = str_of(&tokens, "refresh_token").to_owned();
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (sim, token) = (sim.clone(), refresh_token.clone());
            tokio::spawn(async move { anthropic_refresh(&sim, &token).await.0 })
        })
        .collect();
    let mut ok = 0;
    for attempt in attempts {
        if attempt.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
    let counted = sim.counters(P, "user1");
    assert_eq!(counted.refreshes, 1);
    assert_eq!(counted.reused_refresh_tokens, 19);
}

#[tokio::test]
async fn messages_with_a_token_need_the_oauth_beta_and_the_version() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    let url = format!("{}/v1/messages", sim.endpoints().anthropic.base_url);

    let no_beta = http()
        .post(&url)
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_message_body("hi"));
    let (status, body) = send(no_beta).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["type"], "authentication_error");

    let no_version = http()
        .post(&url)
        .bearer_auth(token)
        .header("anthropic-beta", "oauth-2025-04-20")
        .json(&anthropic_message_body("hi"));
    assert_eq!(send(no_version).await.0, StatusCode::BAD_REQUEST);

    let other_betas = http()
        .post(&url)
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "claude-code-20250219,oauth-2025-04-20")
        .json(&anthropic_message_body("hi"));
    assert_eq!(send(other_betas).await.0, StatusCode::OK);

    let no_max_tokens = anthropic_messages(&sim, token)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(send(no_max_tokens).await.0, StatusCode::BAD_REQUEST);

    let unknown = anthropic_messages(&sim, "sk-ant-oat01-not-issued");
    assert_eq!(send(unknown).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.counters(P, "user1").chat_requests, 1);
}

#[tokio::test]
async fn messages_with_a_key_use_x_api_key_and_no_oauth_beta() {
    let sim = Simulator::start().await.unwrap();
    let key = SimulatorConfig::default_api_key(ChatProvider::Anthropic);
    let url = format!("{}/v1/messages", sim.endpoints().anthropic.base_url);
    let with_key = |key: &str| {
        http()
            .post(&url)
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&anthropic_message_body("hello"))
    };

    let (status, reply) = send(with_key(key.expose())).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["content"][0]["text"],
        "[simulated anthropic/api-key] you said: hello"
    );

    let (status, _) =
        send(with_key(key.expose()).header("anthropic-beta", "oauth-2025-04-20")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(with_key("sk-ant-wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_revoked_account_gets_403_and_cannot_refresh_until_it_signs_in_again() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    sim.revoke(P, "user1");

    let (status, body) = send(anthropic_messages(&sim, str_of(&tokens, "access_token"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["type"], "permission_error");
    let (status, body) = anthropic_refresh(&sim, str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
    let counted = sim.counters(P, "user1");
    assert_eq!(counted.rejected_refreshes, 1);
    assert_eq!(counted.rejected_chat_requests, 1);

    let fresh = anthropic_login(&sim).await;
    let (status, _) = send(anthropic_messages(&sim, str_of(&fresh, "access_token"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn messages_stream_as_server_sent_events() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let mut body = anthropic_message_body("hello");
    body["stream"] = json!(true);
    let response =
        send_raw(anthropic_messages(&sim, str_of(&tokens, "access_token")).json(&body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let events = parse_sse(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let text: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .map(|(_, data)| data["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "[simulated anthropic/user1] you said: hello");
}

#[tokio::test]
async fn a_denied_consent_shows_access_denied_on_the_code_page() {
    let sim = Simulator::start().await.unwrap();
    sim.deny_next_consent(P);
    let request = anthropic_authorize(&sim);
    match sim.consent(&request.url).await.unwrap() {
        Consent::Page(page) => assert!(page.shown_error().unwrap().starts_with("access_denied")),
        other => panic!("expected an error page, got {other:?}"),
    }
    // Only the next one.
    let request = anthropic_authorize(&sim);
    assert!(matches!(
        sim.consent(&request.url).await.unwrap(),
        Consent::CodeShown(_)
    ));
}

#[tokio::test]
async fn the_login_account_consents() {
    let sim = Simulator::start().await.unwrap();
    sim.set_login_account(P, "alice@example.com");
    let tokens = anthropic_login(&sim).await;
    let (_, reply) = send(anthropic_messages(&sim, str_of(&tokens, "access_token"))).await;
    assert_eq!(
        reply["content"][0]["text"],
        Value::from("[simulated anthropic/alice@example.com] you said: hello")
    );
    assert_eq!(sim.counters(P, "alice@example.com").token_exchanges, 1);
    assert_eq!(sim.counters(P, "user1").token_exchanges, 0);
}
