//! The chat adapters: one [`ChatClient`] per provider protocol, over one shared HTTP client.
//!
//! Each client is built from a config of base URLs with no defaults of its own: the composition
//! root fills them from the settings. Failures are classified into [`ChatError`] from the status,
//! the rate-limit headers and the provider's error body; a token or key never appears in an error.

pub mod anthropic;
mod codex;
mod completions;
pub mod gemini;
#[cfg(test)]
mod hostile_tests;
mod http;
mod limits;
pub mod openai;
pub mod qwen;
mod sse;
#[cfg(test)]
mod wire_tests;

use std::sync::Arc;
use std::time::Duration;

use llxprt_application::ports::{ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest};
use llxprt_application::services::ChatClients;
use llxprt_domain::{ChatProvider, Secret};

pub use anthropic::{AnthropicChat, AnthropicConfig};
pub use gemini::{GeminiChat, GeminiConfig};
pub use openai::{OpenAiChat, OpenAiConfig};
pub use qwen::{QwenChat, QwenConfig};

/// How the shared HTTP client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long to wait between two reads of an answer: bounds a silent server without cutting
    /// off a long stream that keeps sending.
    pub read_timeout: Duration,
    /// Whether the system's proxy settings (`HTTPS_PROXY`, ...) apply. Off for the simulated
    /// providers on loopback, which a proxy cannot reach.
    pub system_proxy: bool,
}

/// The HTTP client the chat adapters share (one connection pool for every provider); every
/// request says `User-Agent: llxprt/<version> (<os>; <arch>)`. It follows no redirects: a
/// redirect would take the key or token, with the conversation, to another host. A redirect
/// answer is reported as an error instead.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn http_client(options: HttpOptions) -> Result<reqwest::Client, ChatError> {
    let builder = reqwest::Client::builder()
        .user_agent(crate::user_agent())
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout);
    let builder = if options.system_proxy {
        builder
    } else {
        builder.no_proxy()
    };
    builder.build().map_err(|e| http::network(&e))
}

/// Every provider's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEndpoints {
    /// Anthropic's Messages API.
    pub anthropic: AnthropicConfig,
    /// Gemini's Generative Language and Code Assist APIs.
    pub gemini: GeminiConfig,
    /// Qwen's DashScope compatible mode.
    pub qwen: QwenConfig,
    /// OpenAI's platform API and the Codex backend.
    pub openai: OpenAiConfig,
}

/// The four HTTP clients, at `endpoints`, sharing `http` (one connection pool). A reply with no
/// text is an error from each of them, never a silent success.
pub fn chat_clients(endpoints: ChatEndpoints, http: &reqwest::Client) -> ChatClients {
    clients_with(endpoints, http, |qwen| qwen)
}

/// [`chat_clients`] for the sandbox, whose endpoints are all on loopback: no request leaves
/// this machine, even where a token names its own API base (Qwen's `resource_url`).
pub fn sandbox_chat_clients(endpoints: ChatEndpoints, http: &reqwest::Client) -> ChatClients {
    clients_with(endpoints, http, QwenChat::confined_to_loopback)
}

fn clients_with(
    endpoints: ChatEndpoints,
    http: &reqwest::Client,
    qwen: impl FnOnce(QwenChat) -> QwenChat,
) -> ChatClients {
    let mut clients = ChatClients::new();
    clients.register(Arc::new(NotEmpty(AnthropicChat::new(
        endpoints.anthropic,
        http.clone(),
    ))));
    clients.register(Arc::new(NotEmpty(GeminiChat::new(
        endpoints.gemini,
        http.clone(),
    ))));
    clients.register(Arc::new(NotEmpty(qwen(QwenChat::new(
        endpoints.qwen,
        http.clone(),
    )))));
    clients.register(Arc::new(NotEmpty(OpenAiChat::new(
        endpoints.openai,
        http.clone(),
    ))));
    clients
}

/// A client whose empty replies are errors: a provider (or a proxy in front of it) that
/// answers 200 with nothing must not look like a model that had nothing to say.
struct NotEmpty<C>(C);

#[async_trait::async_trait]
impl<C: ChatClient> ChatClient for NotEmpty<C> {
    fn provider(&self) -> ChatProvider {
        self.0.provider()
    }

    async fn send(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        let reply = self.0.send(request, auth, on_text).await?;
        if reply.text.trim().is_empty() {
            return Err(ChatError::Network(
                "the provider sent an empty reply (no text at all); try again, or another model"
                    .to_owned(),
            ));
        }
        Ok(reply)
    }
}

/// The secret a request is sent with, to keep it out of errors.
fn credential<'a>(auth: ChatAuth<'a>) -> &'a Secret {
    match auth {
        ChatAuth::ApiKey(key) => key,
        ChatAuth::OAuth { token, .. } => &token.access_token,
    }
}
