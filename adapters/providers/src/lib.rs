//! The provider adapters of llxprt: the four OAuth flows ([`oauth`]: Anthropic's pasted code,
//! Gemini's and Codex's loopback redirect, Qwen's device code), the loopback callback server,
//! the browser launcher, and the HTTP chat clients of every provider ([`chat`]).
//!
//! Only this crate speaks the providers' protocols.

pub mod chat;
pub mod oauth;

/// Whether `url` may carry a token: `https`, or `http` to this machine only (the simulator, a
/// local proxy). Anything else would send tokens in clear text over the network.
pub fn is_safe_transport(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}
