//! The OpenAI chat-completions protocol, spoken by OpenAI with a key and by Qwen (its OAuth
//! portal and DashScope's compatible mode).

use llxprt_application::ports::{ChatError, ChatReply, ChatRequest, Role};
use llxprt_domain::Secret;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::http;

/// `POST {base}/chat/completions` with `Authorization: Bearer`.
pub(crate) async fn send(
    client: &reqwest::Client,
    base: &Url,
    bearer: &Secret,
    request: &ChatRequest,
) -> Result<ChatReply, ChatError> {
    let url = http::endpoint(base, &["chat", "completions"])?;
    let response = http::send(
        client
            .post(url)
            .bearer_auth(bearer.expose())
            .json(&body(request)),
    )
    .await?;
    let reply: Completion = http::read_json(response).await?;
    reply_text(reply).map(|text| ChatReply { text })
}

fn body(request: &ChatRequest) -> serde_json::Value {
    let messages: Vec<_> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({ "role": role, "content": m.text })
        })
        .collect();
    json!({ "model": request.model, "messages": messages })
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    /// Text, `null` (a reply made only of tool calls), or a list of typed parts.
    #[serde(default)]
    content: serde_json::Value,
}

fn reply_text(reply: Completion) -> Result<String, ChatError> {
    let choice = reply
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| http::unreadable("the reply has no choices"))?;
    Ok(match choice.message.content {
        serde_json::Value::String(text) => text,
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect(),
        _ => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_application::ports::ChatMessage;

    fn parse(body: &str) -> Result<String, ChatError> {
        reply_text(serde_json::from_str(body).unwrap())
    }

    #[test]
    fn the_body_carries_the_model_and_the_conversation() {
        let request = ChatRequest {
            model: "qwen3-coder-plus".into(),
            messages: vec![
                ChatMessage {
                    role: Role::User,
                    text: "hi".into(),
                },
                ChatMessage {
                    role: Role::Assistant,
                    text: "hello".into(),
                },
            ],
        };
        assert_eq!(
            body(&request),
            json!({"model": "qwen3-coder-plus", "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]})
        );
    }

    #[test]
    fn the_reply_is_the_first_choice() {
        assert_eq!(
            parse(r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi!"}},{"message":{"content":"no"}}]}"#).unwrap(),
            "Hi!"
        );
        assert_eq!(
            parse(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#).unwrap(),
            "ab"
        );
        assert_eq!(
            parse(r#"{"choices":[{"message":{"content":null}}]}"#).unwrap(),
            ""
        );
        assert!(matches!(
            parse(r#"{"choices":[]}"#),
            Err(ChatError::Network(_))
        ));
    }
}
