//! Anthropic's Messages API.

use async_trait::async_trait;
use llxprt_application::ports::{ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest, Role};
use llxprt_domain::ChatProvider;
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::http;

/// The API version every request names.
const API_VERSION: &str = "2023-06-01";

/// The beta that lets the Messages API accept a subscription's OAuth token.
const OAUTH_BETA: &str = "oauth-2025-04-20";

/// The Messages API requires a bound on the reply; this one is generous for a conversation.
const MAX_TOKENS: u32 = 8192;

/// Where the Messages API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicConfig {
    /// The API base (`https://api.anthropic.com` in production).
    pub base_url: Url,
}

/// Sends messages to `POST {base}/v1/messages`, with `x-api-key` or an OAuth bearer token.
#[derive(Debug, Clone)]
pub struct AnthropicChat {
    config: AnthropicConfig,
    http: reqwest::Client,
}

impl AnthropicChat {
    /// A client for `config`'s endpoint over a shared HTTP client.
    pub fn new(config: AnthropicConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    async fn post(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
    ) -> Result<ChatReply, ChatError> {
        let url = http::endpoint(&self.config.base_url, &["v1", "messages"])?;
        let builder = self
            .http
            .post(url)
            .header("anthropic-version", API_VERSION)
            .json(&body(request));
        let builder = match auth {
            ChatAuth::ApiKey(key) => builder.header("x-api-key", key.expose()),
            ChatAuth::OAuth { token, .. } => builder
                .bearer_auth(token.access_token.expose())
                .header("anthropic-beta", OAUTH_BETA),
        };
        let reply: MessagesReply = http::read_json(http::send(builder).await?).await?;
        Ok(ChatReply {
            text: reply_text(reply),
        })
    }
}

#[async_trait]
impl ChatClient for AnthropicChat {
    fn provider(&self) -> ChatProvider {
        ChatProvider::Anthropic
    }

    async fn send(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        _on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        self.post(request, auth)
            .await
            .map_err(|e| http::redact(e, super::credential(auth)))
    }
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
    json!({ "model": request.model, "max_tokens": MAX_TOKENS, "messages": messages })
}

#[derive(Deserialize)]
struct MessagesReply {
    #[serde(default)]
    content: Vec<ContentBlock>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// The text blocks of the reply, in order (thinking and tool-use blocks are not text).
fn reply_text(reply: MessagesReply) -> String {
    reply
        .content
        .into_iter()
        .filter(|block| block.kind == "text")
        .filter_map(|block| block.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_application::ports::ChatMessage;

    #[test]
    fn the_body_names_the_model_a_token_bound_and_the_conversation() {
        let request = ChatRequest {
            model: "claude-sonnet-4".into(),
            messages: vec![ChatMessage {
                role: Role::User,
                text: "hi".into(),
            }],
        };
        let body = body(&request);
        assert_eq!(body["model"], "claude-sonnet-4");
        assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
    }

    #[test]
    fn the_reply_joins_the_text_blocks() {
        let reply: MessagesReply = serde_json::from_str(
            r#"{"id":"msg_1","type":"message","role":"assistant","content":[
                {"type":"thinking","thinking":"hmm"},
                {"type":"text","text":"Hello"},
                {"type":"tool_use","id":"t","name":"x","input":{}},
                {"type":"text","text":", world"}],"stop_reason":"end_turn"}"#,
        )
        .unwrap();
        assert_eq!(reply_text(reply), "Hello, world");
    }
}
