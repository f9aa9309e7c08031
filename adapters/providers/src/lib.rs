//! The provider adapters of llxprt: the four OAuth flows ([`oauth`]: Anthropic's pasted code,
//! Gemini's and Codex's loopback redirect, Qwen's device code), the loopback callback server,
//! the browser launcher, and the HTTP chat clients of every provider ([`chat`]).
//!
//! Only this crate speaks the providers' protocols.

pub mod chat;
pub mod oauth;

/// What every request says about who sends it: `llxprt/<version> (<os>; <arch>)`.
///
/// llxprt never borrows another product's name: providers that limit a credential to their own
/// client then refuse it openly, and the user is told why, instead of the account being used
/// under a false name.
pub fn user_agent() -> String {
    format!(
        "llxprt/{} ({}; {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_user_agent_names_llxprt_its_version_and_platform() {
        let ua = super::user_agent();
        assert!(ua.starts_with("llxprt/"), "{ua}");
        assert!(
            ua.contains(std::env::consts::OS) && ua.ends_with(')'),
            "{ua}"
        );
    }
}
