//! The providers llxprt signs in to and talks to.

use std::fmt;

use crate::failover::RefusalCause;
use std::str::FromStr;

/// The text a user typed did not name a known provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider '{given}'; valid providers are: {valid}")]
pub struct UnknownProvider {
    /// What the user typed.
    pub given: String,
    /// The valid names, comma separated.
    pub valid: &'static str,
}

/// A provider that issues OAuth tokens: the name used by `/auth` and in token file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OAuthProvider {
    /// Anthropic (Claude Pro/Max): authorization code pasted by the user.
    Anthropic,
    /// Google Gemini: browser flow with a loopback redirect.
    Gemini,
    /// Qwen: device authorization grant.
    Qwen,
    /// OpenAI Codex (ChatGPT subscription): browser flow on a fixed loopback port.
    Codex,
}

impl OAuthProvider {
    /// Every OAuth provider, in the order `/auth` lists them.
    pub const ALL: [OAuthProvider; 4] = [Self::Anthropic, Self::Gemini, Self::Qwen, Self::Codex];

    /// The name users type and files carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Qwen => "qwen",
            Self::Codex => "codex",
        }
    }

    /// The chat provider whose requests this provider's tokens authorise.
    pub fn chat_provider(self) -> ChatProvider {
        match self {
            Self::Anthropic => ChatProvider::Anthropic,
            Self::Gemini => ChatProvider::Gemini,
            Self::Qwen => ChatProvider::Qwen,
            Self::Codex => ChatProvider::OpenAi,
        }
    }

    /// What a `401` that persists after a refresh means for this provider when it is a policy
    /// refusal: Qwen's free OAuth tier ended on 2026-04-15, and its tokens are refused whatever
    /// the refresh.
    pub fn refusal_on_repeated_unauthorized(self) -> Option<RefusalCause> {
        match self {
            Self::Qwen => Some(RefusalCause::TierEnded),
            Self::Anthropic | Self::Gemini | Self::Codex => None,
        }
    }

    /// The one line `/auth P login` shows before the sign-in URL about the provider's terms for
    /// third-party use of a subscription (providers.md), if it has such terms.
    pub fn terms_notice(self) -> Option<&'static str> {
        match self {
            Self::Anthropic => Some(
                "Note: Anthropic reserves Claude subscriptions for Claude Code and claude.ai; llxprt's requests draw on the account's extra usage (claude.ai/settings/usage), and an API key (ANTHROPIC_API_KEY) works as intended.",
            ),
            Self::Gemini => Some(
                "Note: Google no longer serves personal Google accounts to this client; a Google Workspace or Code Assist Standard/Enterprise account with a project (providers.gemini.project) works, and so does a Gemini API key (GEMINI_API_KEY).",
            ),
            Self::Qwen => Some(
                "Note: Qwen's free OAuth tier ended on 2026-04-15 and its tokens are refused; a DashScope API key (DASHSCOPE_API_KEY) works.",
            ),
            Self::Codex => None,
        }
    }
}

impl fmt::Display for OAuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OAuthProvider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider {
                given: s.to_owned(),
                valid: "anthropic, gemini, qwen, codex",
            })
    }
}

/// A provider a message can be sent to: the name used by `/provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChatProvider {
    /// Anthropic Messages API.
    Anthropic,
    /// Gemini: generateContent with a key, Code Assist with OAuth.
    Gemini,
    /// Qwen: OpenAI-compatible chat completions.
    Qwen,
    /// OpenAI: chat completions with a key, Codex Responses with OAuth.
    OpenAi,
}

impl ChatProvider {
    /// Every chat provider, in the order they are listed to users.
    pub const ALL: [ChatProvider; 4] = [Self::Anthropic, Self::Gemini, Self::Qwen, Self::OpenAi];

    /// The name users type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Qwen => "qwen",
            Self::OpenAi => "openai",
        }
    }

    /// The OAuth provider that signs in for this chat provider (`openai` signs in through `codex`).
    pub fn oauth_provider(self) -> OAuthProvider {
        match self {
            Self::Anthropic => OAuthProvider::Anthropic,
            Self::Gemini => OAuthProvider::Gemini,
            Self::Qwen => OAuthProvider::Qwen,
            Self::OpenAi => OAuthProvider::Codex,
        }
    }

    /// The model a session starts with when none is chosen.
    pub fn default_model(self) -> &'static str {
        match self {
            Self::Anthropic => "claude-sonnet-4-5",
            Self::Gemini => "gemini-2.5-pro",
            Self::Qwen => "qwen3-coder-plus",
            Self::OpenAi => "gpt-5",
        }
    }

    /// The model a session starts with when none is chosen and the request goes out with an
    /// OAuth token: the subscription's API may offer other models than the key API (a ChatGPT
    /// account takes only the models Codex offers; `gpt-5.5` is offered to every plan).
    pub fn default_oauth_model(self) -> &'static str {
        match self {
            Self::OpenAi => "gpt-5.5",
            other => other.default_model(),
        }
    }

    /// The environment variables that may hold this provider's API key, highest precedence first.
    pub fn api_key_env_vars(self) -> &'static [&'static str] {
        match self {
            Self::Anthropic => &["ANTHROPIC_API_KEY"],
            Self::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            Self::Qwen => &["DASHSCOPE_API_KEY"],
            Self::OpenAi => &["OPENAI_API_KEY"],
        }
    }
}

impl fmt::Display for ChatProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChatProvider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider {
                given: s.to_owned(),
                valid: "anthropic, gemini, qwen, openai",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_round_trips_through_its_name() {
        for p in OAuthProvider::ALL {
            assert_eq!(p.as_str().parse::<OAuthProvider>(), Ok(p));
        }
        for p in ChatProvider::ALL {
            assert_eq!(p.as_str().parse::<ChatProvider>(), Ok(p));
        }
    }

    #[test]
    fn an_unknown_name_lists_the_valid_ones() {
        let err = "claude".parse::<OAuthProvider>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown provider 'claude'; valid providers are: anthropic, gemini, qwen, codex"
        );
        let err = "codex".parse::<ChatProvider>().unwrap_err();
        assert!(err.to_string().contains("openai"));
    }

    #[test]
    fn openai_signs_in_through_codex_and_back() {
        assert_eq!(ChatProvider::OpenAi.oauth_provider(), OAuthProvider::Codex);
        for p in OAuthProvider::ALL {
            assert_eq!(p.chat_provider().oauth_provider(), p);
        }
    }
}
