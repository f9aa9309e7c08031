//! The chat port: sending a message to a provider's API.

use async_trait::async_trait;
use llxprt_domain::{BucketId, ChatProvider, Limits, RefusalCause, Secret, Token};

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The person at the keyboard.
    User,
    /// The model.
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub text: String,
}

/// A request to a provider: the model and the conversation so far, last message the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// The model to ask.
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
}

/// The credential a request is sent with.
#[derive(Debug, Clone, Copy)]
pub enum ChatAuth<'a> {
    /// An API key (`x-api-key`, `x-goog-api-key` or `Authorization: Bearer`, per provider).
    ApiKey(&'a Secret),
    /// An OAuth token of a bucket (the bucket keys per-account caches such as Code Assist's
    /// project).
    OAuth {
        /// The bucket the token belongs to.
        bucket: &'a BucketId,
        /// The valid token.
        token: &'a Token,
    },
}

/// The provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    /// The whole text of the reply.
    pub text: String,
    /// What the answer reported of the account's limits (Anthropic's unified windows, Codex's
    /// primary and secondary windows and credits); empty when it reported none.
    pub limits: Limits,
}

impl ChatReply {
    /// A reply that reported no limits.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            limits: Limits::default(),
        }
    }
}

/// Why a message got no answer, classified for the failover decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// `429` or a usage limit: the account is out of quota for now.
    #[error("rate limited by the provider")]
    RateLimited {
        /// Seconds to wait (`retry-after`, Codex's `resets_in_seconds`), when given.
        retry_after_secs: Option<u64>,
        /// The Unix second the limit resets (`anthropic-ratelimit-unified-reset`), when given.
        reset_at: Option<i64>,
        /// What the refusal reported of the account's windows (empty when nothing).
        limits: Limits,
    },
    /// `402`: payment or quota problem on the account.
    #[error("the provider reports a payment or quota problem: {message}")]
    PaymentRequired {
        /// What the provider said.
        message: String,
        /// Seconds to wait, when given.
        retry_after_secs: Option<u64>,
    },
    /// `401`: the access token (or key) was not accepted.
    #[error("the provider did not accept the credentials: {0}")]
    Unauthorized(String),
    /// `403`: revoked or forbidden.
    #[error("the provider refused access: {0}")]
    Forbidden(String),
    /// Another `4xx`: the request itself is wrong.
    #[error("the provider rejected the request ({status}): {message}")]
    BadRequest {
        /// The HTTP status.
        status: u16,
        /// What the provider said.
        message: String,
    },
    /// A policy refusal of the account: the provider does not serve it to llxprt (providers.md,
    /// "How the real services answer today"). Another bucket may still work; this one is
    /// skipped until it logs in again.
    #[error("the provider refuses this account to llxprt ({cause}): {message}; instead, {works}", works = .cause.what_works())]
    Refused {
        /// The provider's reason.
        cause: RefusalCause,
        /// What the provider said.
        message: String,
    },
    /// The provider does not offer the requested model to this account: the user's to fix, not
    /// a bucket problem.
    #[error("the provider does not offer this model to this account: {message}; choose another with /model")]
    ModelRefused {
        /// What the provider said.
        message: String,
    },
    /// A `403` HTML page from a proxy or CDN in front of the provider (a challenge): a refusal
    /// of this request, not of the credentials.
    #[error("the request was stopped before it reached the provider (HTTP {status} page from a proxy or CDN, not a sign-in problem); try again later")]
    Blocked {
        /// The HTTP status.
        status: u16,
    },
    /// A `5xx`.
    #[error("the provider failed ({status}): {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// What the provider said.
        message: String,
    },
    /// The provider could not be reached, or answered something unreadable.
    #[error("could not reach the provider: {0}")]
    Network(String),
}

/// Sends messages with one provider's protocol.
#[async_trait]
pub trait ChatClient: Send + Sync {
    /// The provider this client speaks to.
    fn provider(&self) -> ChatProvider;

    /// Sends the conversation and returns the reply. Where the protocol streams, each piece of
    /// text is passed to `on_text` as it arrives (the reply still holds the whole text).
    ///
    /// `on_text` names its lifetime because `async_trait` would otherwise tie the `&str` to one
    /// caller-chosen lifetime, and no piece of a streamed reply lives that long.
    ///
    /// # Errors
    /// A [`ChatError`] classified by status and headers.
    async fn send(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<ChatReply, ChatError>;
}
