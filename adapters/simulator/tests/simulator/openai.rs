//! OpenAI with a key: chat completions.

use llxprt_domain::ChatProvider;
use llxprt_simulator::{Simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn chat_completions_take_a_bearer_key_and_nothing_else() {
    let sim = Simulator::start().await.unwrap();
    let url = format!("{}/chat/completions", sim.endpoints().openai.base_url);
    let key = SimulatorConfig::default_api_key(ChatProvider::OpenAi);
    let body = json!({"model": "gpt-4.1", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    ]});

    let (status, reply) = send(http().post(&url).bearer_auth(key.expose()).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "[simulated openai/api-key] you said: hello"
    );

    assert_eq!(
        send(http().post(&url).bearer_auth("sk-wrong").json(&body))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let tokens = codex_login(&sim).await;
    let with_codex_token = http()
        .post(&url)
        .bearer_auth(str_of(&tokens, "access_token"))
        .json(&body);
    assert_eq!(send(with_codex_token).await.0, StatusCode::UNAUTHORIZED);
    let as_text = http()
        .post(&url)
        .bearer_auth(key.expose())
        .header("content-type", "text/plain")
        .body(body.to_string());
    assert_eq!(send(as_text).await.0, StatusCode::BAD_REQUEST);
}
