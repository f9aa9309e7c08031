//! Qwen: OpenAI-compatible chat completions, at the token's `resource_url` with OAuth and at
//! DashScope's compatible mode with a key.

use async_trait::async_trait;
use llxprt_application::ports::{ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest};
use llxprt_domain::ChatProvider;
use url::Url;

use super::{completions, http};

/// Where Qwen's chat completions are when the credential does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QwenConfig {
    /// The DashScope compatible-mode base, for API keys and for tokens without a
    /// `resource_url` (`https://dashscope.aliyuncs.com/compatible-mode/v1` in production).
    pub base_url: Url,
}

/// Sends messages to `POST {base}/chat/completions` with a bearer key or token.
#[derive(Debug, Clone)]
pub struct QwenChat {
    config: QwenConfig,
    http: reqwest::Client,
    /// Every request stays on this machine (the sandbox), whatever a token's `resource_url`
    /// says.
    loopback_only: bool,
}

impl QwenChat {
    /// A client for `config`'s endpoint over a shared HTTP client.
    pub fn new(config: QwenConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            loopback_only: false,
        }
    }

    /// This client, refusing to send anything off this machine: for the sandbox, where a
    /// token's `resource_url` naming a real host would carry a token and the conversation out.
    pub fn confined_to_loopback(mut self) -> Self {
        self.loopback_only = true;
        self
    }

    async fn post(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
    ) -> Result<ChatReply, ChatError> {
        let base = match auth {
            ChatAuth::OAuth { token, .. } => match token.resource_url.as_deref() {
                Some(resource_url) => {
                    let base = oauth_base(resource_url);
                    let url = Url::parse(&base).map_err(|e| {
                        ChatError::Network(format!(
                            "the token's resource_url gives no usable API base ({}): {e}",
                            http::truncate(&base)
                        ))
                    })?;
                    if self.loopback_only && !is_loopback(&url) {
                        return Err(ChatError::Forbidden(format!(
                            "the sandbox sends nothing off this machine, and this token's resource_url points at {}; sign in again inside the sandbox",
                            http::truncate(url.host_str().unwrap_or("another host"))
                        )));
                    }
                    // The token would travel in clear text over the network.
                    if !crate::is_safe_transport(&url) {
                        return Err(ChatError::Forbidden(format!(
                            "the token's resource_url {} is not https (nor http to this machine), so the token is not sent; sign in again with /auth qwen login",
                            http::truncate(&base)
                        )));
                    }
                    url
                }
                None => self.config.base_url.clone(),
            },
            ChatAuth::ApiKey(_) => self.config.base_url.clone(),
        };
        completions::send(&self.http, &base, super::credential(auth), request).await
    }
}

#[async_trait]
impl ChatClient for QwenChat {
    fn provider(&self) -> ChatProvider {
        ChatProvider::Qwen
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

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The API base a Qwen token's `resource_url` names, derived as Qwen Code does: `https://` in
/// front when it has no scheme, `/v1` behind unless it already ends so
/// (`portal.qwen.ai` → `https://portal.qwen.ai/v1`).
pub fn oauth_base(resource_url: &str) -> String {
    let trimmed = resource_url.trim().trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    if with_scheme.ends_with("/v1") {
        with_scheme
    } else {
        format!("{with_scheme}/v1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_resource_url_becomes_a_v1_base() {
        assert_eq!(oauth_base("portal.qwen.ai"), "https://portal.qwen.ai/v1");
        assert_eq!(oauth_base("portal.qwen.ai/"), "https://portal.qwen.ai/v1");
        assert_eq!(
            oauth_base("https://portal.qwen.ai/v1"),
            "https://portal.qwen.ai/v1"
        );
        assert_eq!(
            oauth_base("http://127.0.0.1:4011/qwen"),
            "http://127.0.0.1:4011/qwen/v1"
        );
        assert_eq!(
            oauth_base("http://127.0.0.1:4011/qwen/v1/"),
            "http://127.0.0.1:4011/qwen/v1"
        );
    }

    proptest! {
        #[test]
        fn the_base_always_has_a_scheme_and_ends_with_v1(resource_url in any::<String>()) {
            let base = oauth_base(&resource_url);
            prop_assert!(base.contains("://"));
            prop_assert!(base.ends_with("/v1"));
            prop_assert_eq!(oauth_base(&base), base.clone(), "deriving twice changes nothing");
        }
    }
}
