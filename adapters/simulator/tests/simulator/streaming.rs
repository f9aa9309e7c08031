//! Streams as the real services send them: only when asked, as `text/event-stream`, and failing
//! mid-reply in each provider's own shape when told to.

use std::time::Duration;

use llxprt_domain::{ChatProvider, OAuthProvider};
use llxprt_simulator::{Pause, Simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn anthropic_streams_only_when_the_body_says_so_and_fails_mid_stream_on_demand() {
    let sim = Simulator::start().await.unwrap();
    let tokens = anthropic_login(&sim).await;
    let token = str_of(&tokens, "access_token").to_owned();

    let (status, body) = send(anthropic_messages(&sim, &token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["type"], "message", "no stream without stream: true");
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, "user1")
            .streamed_replies,
        0
    );

    let mut streaming = anthropic_message_body("hello");
    streaming["stream"] = json!(true);
    let request = || {
        http()
            .post(format!(
                "{}/v1/messages",
                sim.endpoints().anthropic.base_url
            ))
            .bearer_auth(&token)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "oauth-2025-04-20")
            .json(&streaming)
    };
    let response = send_raw(request()).await;
    assert!(content_type(&response).starts_with("text/event-stream"));
    let events = parse_sse(&response.text().await.unwrap());
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, "user1")
            .streamed_replies,
        1
    );

    sim.slow_next_chat_replies(
        OAuthProvider::Anthropic,
        "user1",
        1,
        Duration::ZERO,
        Pause::FailAfterFirstDelta,
    );
    let events = parse_sse(&send_raw(request()).await.text().await.unwrap());
    let deltas = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .count();
    assert_eq!(deltas, 1, "{events:?}");
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    assert_eq!(data["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn gemini_streams_server_sent_events_with_alt_sse_and_a_json_array_without() {
    let sim = Simulator::start_with(SimulatorConfig::default())
        .await
        .unwrap();
    let key = SimulatorConfig::default_api_key(ChatProvider::Gemini);
    let url = |query: &str| {
        format!(
            "{}/v1beta/models/gemini-2.5-pro:streamGenerateContent{query}",
            sim.endpoints().gemini.base_url
        )
    };
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]});
    let post = |url: String| {
        http()
            .post(url)
            .header("x-goog-api-key", key.expose())
            .json(&body)
    };

    let response = send_raw(post(url("?alt=sse"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(content_type(&response).starts_with("text/event-stream"));
    let events = parse_sse(&response.text().await.unwrap());
    let text: String = events
        .iter()
        .map(|(_, d)| {
            d["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text, "[simulated gemini/api-key] you said: hi there");
    assert!(events.len() > 1, "one event per piece");

    let response = send_raw(post(url(""))).await;
    assert!(content_type(&response).starts_with("application/json"));
    let array: Value = response.json().await.unwrap();
    assert!(array.as_array().is_some_and(|a| a.len() > 1), "{array}");
    assert_eq!(
        sim.counters(OAuthProvider::Gemini, "api-key")
            .streamed_replies,
        1
    );
}
