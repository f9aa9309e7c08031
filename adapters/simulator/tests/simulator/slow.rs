//! Slowed chat answers: a reply held back, a stream that stalls after its first words, and
//! neither holding up a shutdown.

use std::time::Duration;

use llxprt_domain::OAuthProvider;
use llxprt_simulator::{Pause, Simulator, SimulatorHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

/// Waits until the account's `n`-th chat request has reached the simulator.
async fn until_chat_requests(sim: &SimulatorHandle, provider: OAuthProvider, n: u64) {
    for _ in 0..500 {
        if sim.counters(provider, "user1").chat_requests >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("chat request {n} never reached the simulator");
}

/// The text of every `response.output_text.delta` in a Codex event stream.
fn codex_text(events: &str) -> String {
    parse_sse(events)
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("response.output_text.delta"))
        .map(|(_, data)| data["delta"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_slowed_reply_waits_while_the_next_one_is_answered_at_once() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token").to_owned();
    sim.slow_next_chat_replies(
        OAuthProvider::Anthropic,
        "user1",
        1,
        Duration::from_secs(60),
        Pause::BeforeReply,
    );

    let slowed = tokio::spawn({
        let (sim, token) = (sim.clone(), token.clone());
        async move { send(anthropic_messages(&sim, &token)).await }
    });
    until_chat_requests(&sim, OAuthProvider::Anthropic, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!slowed.is_finished(), "the slowed reply was answered");

    // Only one reply was slowed: the next is answered while the first still waits.
    let (status, body) = send(anthropic_messages(&sim, &token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["content"][0]["text"],
        "[simulated anthropic/user1] you said: hello"
    );
    assert!(!slowed.is_finished(), "the slowed reply was answered");

    // Stopping the simulator ends the wait instead of hanging the shutdown.
    tokio::time::timeout(Duration::from_secs(20), sim.shutdown())
        .await
        .expect("shutdown does not wait for the slowed answer");
    let (status, _) = tokio::time::timeout(Duration::from_secs(20), slowed)
        .await
        .expect("the slowed request ended")
        .unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_slowed_answer_comes_whole_once_its_delay_has_passed() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token");
    sim.slow_next_chat_replies(
        OAuthProvider::Anthropic,
        "user1",
        2,
        Duration::from_millis(100),
        Pause::AfterFirstDelta,
    );
    // Anthropic does not stream here, so the whole answer waits.
    let (status, body) = send(anthropic_messages(&sim, token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["content"][0]["text"],
        "[simulated anthropic/user1] you said: hello"
    );
    // A forced failure is slowed too, and still arrives as itself.
    sim.fail_next_chat_requests(
        OAuthProvider::Anthropic,
        "user1",
        1,
        llxprt_simulator::ForcedFailure::ServerError,
    );
    let (status, _) = send(anthropic_messages(&sim, token)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let codex = codex_login(&sim).await;
    sim.slow_next_chat_replies(
        OAuthProvider::Codex,
        "user1",
        1,
        Duration::from_millis(100),
        Pause::AfterFirstDelta,
    );
    let response = send_raw(codex_responses(
        &sim,
        str_of(&codex, "access_token"),
        &codex_account_id(&codex),
    ))
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let events = response.text().await.unwrap();
    assert_eq!(
        codex_text(&events),
        "[simulated codex/user1] you said: hello"
    );
    assert!(events.contains("response.completed"), "{events}");
}

#[tokio::test]
async fn a_codex_stream_stalls_after_its_first_delta() {
    let sim = Simulator::start().await.unwrap();
    let tokens = codex_login(&sim).await;
    let (token, account_id) = (str_of(&tokens, "access_token"), codex_account_id(&tokens));
    let slow = http()
        .post(format!(
            "{}/codex/accounts/user1/slow-next",
            sim.endpoints().controls
        ))
        .json(&json!({"count": 1, "seconds": 60, "pause": "after_first_delta"}));
    assert_eq!(send_raw(slow).await.status(), StatusCode::NO_CONTENT);

    let mut stalled = send_raw(codex_responses(&sim, token, &account_id)).await;
    assert_eq!(stalled.status(), StatusCode::OK);
    let mut received = String::new();
    for _ in 0..100 {
        if !codex_text(&received).is_empty() {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), stalled.chunk())
            .await
            .expect("the first words arrive")
            .unwrap()
            .expect("the stream is still open");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    let first = codex_text(&received);
    assert!(
        "[simulated codex/user1] you said: hello".starts_with(&first) && !first.is_empty(),
        "{received}"
    );
    let more = tokio::time::timeout(Duration::from_millis(300), stalled.chunk()).await;
    assert!(more.is_err(), "the stream went on: {more:?}");

    // The next reply streams in full while the first one stalls.
    let response = send_raw(codex_responses(&sim, token, &account_id)).await;
    let events = response.text().await.unwrap();
    assert_eq!(
        codex_text(&events),
        "[simulated codex/user1] you said: hello"
    );

    // Stopping the simulator ends the stalled stream, unfinished.
    tokio::time::timeout(Duration::from_secs(20), sim.shutdown())
        .await
        .expect("shutdown does not wait for the stalled stream");
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = String::new();
        while let Ok(Some(chunk)) = stalled.chunk().await {
            rest.push_str(&String::from_utf8_lossy(&chunk));
        }
        rest
    })
    .await
    .expect("the stalled stream ended");
    assert!(!rest.contains("response.completed"), "{rest}");
}

#[tokio::test]
async fn slowing_an_unknown_provider_over_http_is_not_found() {
    let sim = Simulator::start().await.unwrap();
    let slow = http()
        .post(format!(
            "{}/claude/accounts/user1/slow-next",
            sim.endpoints().controls
        ))
        .json(&json!({"count": 1, "seconds": 1}));
    let response = send_raw(slow).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let _: Value = response.json().await.unwrap();
}
