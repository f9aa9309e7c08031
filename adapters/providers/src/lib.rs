//! The provider adapters of llxprt: the four OAuth flows ([`oauth`]: Anthropic's pasted code,
//! Gemini's and Codex's loopback redirect, Qwen's device code), the loopback callback server,
//! the browser launcher, and the HTTP chat clients of every provider ([`chat`]).
//!
//! Only this crate speaks the providers' protocols.

pub mod chat;
pub mod oauth;
