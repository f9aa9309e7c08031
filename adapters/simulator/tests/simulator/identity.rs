//! Who is calling: the simulator records every request's User-Agent and refuses it where the
//! real service does (providers.md, "Identity").

use llxprt_domain::OAuthProvider;
use llxprt_simulator::{ForcedFailure, Simulator};
use reqwest::header::USER_AGENT as UA;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn no_user_agent() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn anthropics_token_endpoint_refuses_a_request_without_a_user_agent() {
    let sim = Simulator::start().await.unwrap();
    let body = json!({"grant_type": "refresh_token", "refresh_token": "x",
                      "client_id": client_id(OAuthProvider::Anthropic)});
    let bare = no_user_agent()
        .post(&sim.endpoints().anthropic.token_url)
        .json(&body);
    let (status, error) = send(bare).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["error"]["type"], "permission_error");
    let seen = sim.requests_seen();
    assert_eq!(seen.last().unwrap().user_agent, None);
    // With one, the same request reaches the OAuth logic (and fails as a bad grant).
    let (status, error) = anthropic_refresh(&sim, "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&error), "invalid_grant");
    assert_eq!(
        sim.requests_seen().last().unwrap().user_agent.as_deref(),
        Some(USER_AGENT)
    );
}

#[tokio::test]
async fn anthropic_answers_404_to_claude_cli_and_at_the_old_token_endpoint() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    let borrowed = anthropic_messages(&sim, token).header(UA, "claude-cli/2.1.0 (external, cli)");
    let (status, error) = send(borrowed).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["type"], "not_found_error");
    assert_eq!(
        send(anthropic_messages(&sim, token)).await.0,
        StatusCode::OK
    );

    let old = http().post(&sim.endpoints().anthropic.old_token_url).json(
        &json!({"grant_type": "refresh_token", "refresh_token": str_of(&tokens, "refresh_token"),
                      "client_id": client_id(OAuthProvider::Anthropic)}),
    );
    let (status, error) = send(old).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"]["type"], "not_found_error");
    assert_eq!(sim.counters(OAuthProvider::Anthropic, "user1").refreshes, 0);
}

#[tokio::test]
async fn chatgpt_answers_an_html_403_without_a_user_agent_and_refuses_other_models() {
    let sim = Simulator::start().await.unwrap();
    let tokens = codex_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    let account_id = codex_account_id(&tokens);
    let bare = no_user_agent()
        .post(format!("{}/responses", sim.endpoints().codex.base_url))
        .bearer_auth(token)
        .header("chatgpt-account-id", &account_id)
        .header("originator", "codex_cli_rs")
        .json(&json!({"model": "gpt-5.5", "input": "hello", "stream": true}));
    let answer = send_raw(bare).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(answer.text().await.unwrap().contains("<html"));

    let other_model = codex_responses(&sim, token, &account_id)
        .json(&json!({"model": "gpt-5", "input": "hello", "stream": true}));
    let (status, error) = send(other_model).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["detail"]
        .as_str()
        .unwrap()
        .contains("'gpt-5' model is not supported"));
    assert_eq!(
        send_raw(codex_responses(&sim, token, &account_id))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn policy_refusals_come_in_each_providers_shape() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    let p = OAuthProvider::Anthropic;
    sim.fail_next_chat_requests(p, "user1", 1, ForcedFailure::PolicyRefusal);
    sim.fail_next_chat_requests(p, "user1", 1, ForcedFailure::ExtraUsageExhausted);
    sim.fail_next_chat_requests(p, "user1", 1, ForcedFailure::CdnChallenge);
    let (status, error) = send(anthropic_messages(&sim, token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("only authorized for use with Claude Code"));
    let (status, error) = send(anthropic_messages(&sim, token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Third-party apps now draw from your extra usage"));
    let page = send_raw(anthropic_messages(&sim, token)).await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await.unwrap().contains("<html"));
    assert_eq!(sim.counters(p, "user1").chat_requests, 3);
}
