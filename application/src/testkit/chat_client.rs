//! A provider's chat API, played in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use llxprt_domain::ChatProvider;

use crate::ports::{ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest};

/// Who a request to a [`FakeChatClient`] was sent as: a bucket (`anthropic/work`) or an API
/// key (`key`).
pub type Sender = String;

/// A provider that answers `[{sender}] you said: {last message}`, streamed in one piece, and
/// keeps every request it was sent. It can be told to refuse a sender's next requests with any
/// [`ChatError`] (a `429`, a `401`), as a provider does when an account runs out of quota.
#[derive(Debug)]
pub struct FakeChatClient {
    provider: ChatProvider,
    refusals: Mutex<HashMap<Sender, VecDeque<ChatError>>>,
    sent: Mutex<Vec<(Sender, ChatRequest)>>,
}

impl FakeChatClient {
    /// A client for `provider` that answers everything.
    pub fn new(provider: ChatProvider) -> Self {
        Self {
            provider,
            refusals: Mutex::new(HashMap::new()),
            sent: Mutex::new(Vec::new()),
        }
    }

    /// The next `count` requests from `sender` (a bucket as `provider/bucket`, or `key`) are
    /// refused with `error`.
    pub fn refuse_next(&self, sender: &str, count: usize, error: ChatError) {
        self.refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(sender.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(error, count));
    }

    /// Who each request was sent as, in order.
    pub fn senders(&self) -> Vec<Sender> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(sender, _)| sender.clone())
            .collect()
    }

    /// Every request, with who sent it, in order.
    pub fn requests(&self) -> Vec<(Sender, ChatRequest)> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl ChatClient for FakeChatClient {
    fn provider(&self) -> ChatProvider {
        self.provider
    }

    async fn send(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        let sender = match auth {
            ChatAuth::ApiKey(_) => "key".to_owned(),
            ChatAuth::OAuth { bucket, .. } => bucket.to_string(),
        };
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((sender.clone(), request.clone()));
        let refusal = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&sender)
            .and_then(VecDeque::pop_front);
        if let Some(error) = refusal {
            return Err(error);
        }
        let said = request.messages.last().map_or("", |m| m.text.as_str());
        let text = format!("[{sender}] you said: {said}");
        on_text(&text);
        Ok(ChatReply::new(text))
    }
}
