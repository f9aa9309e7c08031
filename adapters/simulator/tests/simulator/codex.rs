//! Codex: the fixed loopback ports, the id_token's account id, rotating refresh tokens, the
//! device login, and the Responses API's events and headers.

use llxprt_domain::OAuthProvider;
use llxprt_simulator::{Consent, ForcedFailure, Simulator};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const P: OAuthProvider = OAuthProvider::Codex;

fn refresh_form(refresh_token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.to_owned()),
        ("client_id", client_id(P).to_owned()),
        ("scope", "openid profile email".to_owned()),
    ]
}

#[tokio::test]
async fn a_correct_client_signs_in_and_streams_a_response() {
    let sim = Simulator::start().await.unwrap();
    let request = codex_authorize_with(&sim, CODEX_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    assert!(redirect.starts_with("http://localhost:1455/auth/callback?"));
    assert_eq!(query_param(&redirect, "state").unwrap(), request.state);
    let code = query_param(&redirect, "code").unwrap();
    let (status, tokens) = send(
        http()
            .post(format!("{}/oauth/token", sim.endpoints().codex.issuer))
            .form(&codex_exchange_form(&request, &code)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&tokens));
    let claims = jwt_payload(str_of(&tokens, "id_token"));
    assert_eq!(claims["email"], "user1@sim.example");
    let account_id = codex_account_id(&tokens);
    assert!(!account_id.is_empty());

    let response = send_raw(codex_responses(
        &sim,
        str_of(&tokens, "access_token"),
        &account_id,
    ))
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let events = parse_sse(&response.text().await.unwrap());
    for (name, data) in &events {
        assert_eq!(
            data["type"].as_str(),
            name.as_deref(),
            "event name and type agree"
        );
    }
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let text: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("response.output_text.delta"))
        .map(|(_, data)| data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "[simulated codex/user1] you said: hello");
    assert_eq!(events.last().unwrap().1["response"]["status"], "completed");
}

#[tokio::test]
async fn only_ports_1455_and_1457_on_localhost_are_registered() {
    let sim = Simulator::start().await.unwrap();
    let request = codex_authorize_with(&sim, "http://localhost:1457/auth/callback", &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    assert!(redirect.starts_with("http://localhost:1457/auth/callback?code="));
    for bad in [
        "http://localhost:1456/auth/callback",
        "http://127.0.0.1:1455/auth/callback",
        "http://localhost:1455/callback",
    ] {
        let request = codex_authorize_with(&sim, bad, &[]);
        match sim.consent(&request.url).await.unwrap() {
            Consent::Page(page) => assert_eq!(page.status, 400, "{bad}"),
            other => panic!("{bad}: expected an error page, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn authorize_needs_the_codex_parameters() {
    let sim = Simulator::start().await.unwrap();
    for missing in [
        "id_token_add_organizations",
        "codex_cli_simplified_flow",
        "originator",
        "state",
    ] {
        let request = codex_authorize_with(&sim, CODEX_REDIRECT, &[(missing, "")]);
        let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
        assert_eq!(
            query_param(&redirect, "error").as_deref(),
            Some("invalid_request"),
            "{missing}"
        );
    }
}

#[tokio::test]
async fn the_token_endpoint_refuses_json() {
    let sim = Simulator::start().await.unwrap();
    let request = codex_authorize_with(&sim, CODEX_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let body: serde_json::Map<String, serde_json::Value> = codex_exchange_form(&request, &code)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let (status, answer) = send(
        http()
            .post(format!("{}/oauth/token", sim.endpoints().codex.issuer))
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&answer), "invalid_request");
}

#[tokio::test]
async fn a_reused_refresh_token_gets_refresh_token_reused_and_is_counted() {
    let sim = Simulator::start().await.unwrap();
    let tokens = codex_login(&sim).await;
    let token_url = format!("{}/oauth/token", sim.endpoints().codex.issuer);
    let first = str_of(&tokens, "refresh_token");

    let (status, refreshed) = send(http().post(&token_url).form(&refresh_form(first))).await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&refreshed));
    assert!(str_of(&refreshed, "refresh_token") != first);
    assert_eq!(codex_account_id(&refreshed), codex_account_id(&tokens));

    let (status, reused) = send(http().post(&token_url).form(&refresh_form(first))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(oauth_error(&reused), "refresh_token_reused");
    let counted = sim.counters(P, "user1");
    assert_eq!(counted.refreshes, 1);
    assert_eq!(counted.reused_refresh_tokens, 1);
}

#[tokio::test]
async fn responses_check_the_account_header_originator_and_streaming() {
    let sim = Simulator::start().await.unwrap();
    let tokens = codex_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    let account_id = codex_account_id(&tokens);

    let (status, _) = send(codex_responses(&sim, token, "acct-someone-else")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let no_originator = http()
        .post(format!("{}/responses", sim.endpoints().codex.base_url))
        .bearer_auth(token)
        .header("chatgpt-account-id", &account_id)
        .json(&json!({"model": "gpt-5.5", "input": "hello", "stream": true}));
    assert_eq!(send(no_originator).await.0, StatusCode::BAD_REQUEST);

    let not_streaming = codex_responses(&sim, token, &account_id)
        .json(&json!({"model": "gpt-5.5", "input": "hello", "stream": false}));
    assert_eq!(send(not_streaming).await.0, StatusCode::BAD_REQUEST);

    let unknown_token = codex_responses(&sim, "sim-codex-at-never-issued", &account_id);
    assert_eq!(send(unknown_token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.counters(P, "user1").chat_requests, 0);
}

#[tokio::test]
async fn a_usage_limit_answers_429_with_resets_in_seconds() {
    let sim = Simulator::start().await.unwrap();
    let tokens = codex_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    let account_id = codex_account_id(&tokens);
    sim.fail_next_chat_requests(
        P,
        "user1",
        1,
        ForcedFailure::RateLimited {
            retry_after_secs: 30,
        },
    );
    let response = send_raw(codex_responses(&sim, token, &account_id)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "30");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "usage_limit_reached");
    assert_eq!(body["error"]["resets_in_seconds"], 30);
    let response = send_raw(codex_responses(&sim, token, &account_id)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(sim.counters(P, "user1").chat_requests, 2);
}

#[tokio::test]
async fn the_device_login_hands_out_a_code_to_exchange() {
    let sim = Simulator::start().await.unwrap();
    let issuer = sim.endpoints().codex.issuer.clone();
    let (status, start) = send(
        http()
            .post(format!("{issuer}/api/accounts/deviceauth/usercode"))
            .json(&json!({"client_id": client_id(P)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{start}");
    assert!(
        start["interval"].is_string(),
        "the interval comes as a string"
    );
    let poll = || {
        http()
            .post(format!("{issuer}/api/accounts/deviceauth/token"))
            .json(&json!({"device_auth_id": start["device_auth_id"],
                          "user_code": start["user_code"]}))
    };
    assert_eq!(send(poll()).await.0, StatusCode::FORBIDDEN, "pending");

    let page = sim
        .browse(&url_with(
            &format!("{issuer}/codex/device"),
            &[("user_code", str_of(&start, "user_code"))],
        ))
        .await
        .unwrap();
    assert_eq!(page.status, 200);

    let (status, granted) = send(poll()).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", str_of(&granted, "authorization_code")),
        ("redirect_uri", &format!("{issuer}/deviceauth/callback")),
        ("client_id", client_id(P)),
        ("code_verifier", str_of(&granted, "code_verifier")),
    ];
    let (status, tokens) = send(http().post(format!("{issuer}/oauth/token")).form(&form)).await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&tokens));
    assert!(!codex_account_id(&tokens).is_empty());
    let counted = sim.counters(P, "user1");
    assert_eq!(counted.device_code_requests, 1);
    assert_eq!(counted.token_exchanges, 1);
}

#[tokio::test]
async fn a_denied_device_login_stops_polling() {
    let sim = Simulator::start().await.unwrap();
    sim.deny_next_device_authorization(P);
    let issuer = sim.endpoints().codex.issuer.clone();
    let (_, start) = send(
        http()
            .post(format!("{issuer}/api/accounts/deviceauth/usercode"))
            .json(&json!({"client_id": client_id(P)})),
    )
    .await;
    let (status, body) = send(
        http()
            .post(format!("{issuer}/api/accounts/deviceauth/token"))
            .json(&json!({"device_auth_id": start["device_auth_id"],
                          "user_code": start["user_code"]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "access_denied");
}
