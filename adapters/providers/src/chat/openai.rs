//! OpenAI: chat completions with an API key, the Codex Responses API with a ChatGPT
//! subscription's OAuth token.

use async_trait::async_trait;
use llxprt_application::ports::{ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest};
use llxprt_domain::ChatProvider;
use url::Url;

use super::{codex, completions, http};

/// Where the two OpenAI APIs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// The platform API base, for API keys (`https://api.openai.com/v1` in production).
    pub base_url: Url,
    /// The Codex backend base, for OAuth tokens (`https://chatgpt.com/backend-api/codex` in
    /// production).
    pub codex_base_url: Url,
}

/// Sends messages to OpenAI; either way the reply streams through `on_text`.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    config: OpenAiConfig,
    http: reqwest::Client,
}

impl OpenAiChat {
    /// A client for `config`'s endpoints over a shared HTTP client.
    pub fn new(config: OpenAiConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }
}

#[async_trait]
impl ChatClient for OpenAiChat {
    fn provider(&self) -> ChatProvider {
        ChatProvider::OpenAi
    }

    async fn send(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        let result = match auth {
            ChatAuth::ApiKey(key) => {
                completions::send(&self.http, &self.config.base_url, key, request, on_text).await
            }
            ChatAuth::OAuth { token, .. } => {
                codex::send(
                    &self.http,
                    &self.config.codex_base_url,
                    token,
                    request,
                    on_text,
                )
                .await
            }
        };
        result.map_err(|e| http::redact(e, super::credential(auth)))
    }
}
