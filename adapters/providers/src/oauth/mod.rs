//! The OAuth sign-in flows of the four providers, behind the application's `OAuthFlow` port, and
//! the browser that opens their pages.
//!
//! `oauth2` does PKCE, state, authorize URLs, the device grant and the standard exchanges; the
//! requests written by hand are only where a provider departs from the standard (Anthropic's
//! JSON exchange). Every endpoint, client id, scope and port comes from a config struct that the
//! composition root fills from settings. Flows talk to the user only through `UserPrompt`, and
//! never put a token, code or verifier into a line, an error or a log.

mod anthropic;
mod browser;
mod codex;
mod gemini;
mod http;
mod loopback;
mod qwen;

pub use anthropic::{AnthropicConfig, AnthropicFlow};
pub use browser::{BrowserEnv, SystemBrowser};
pub use codex::{CodexConfig, CodexFlow, DEFAULT_DEVICE_TIMEOUT};
pub use gemini::{GeminiConfig, GeminiFlow};
pub use http::{OAuthConfigError, OAuthHttp, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use loopback::DEFAULT_CALLBACK_TIMEOUT;
pub use qwen::{QwenConfig, QwenFlow};
