//! Sending one message of a conversation where the loaded profile says: the session's provider
//! and model, a model profile's buckets, or a loadbalancer's member profiles in the order its
//! policy gives, moving on to the next member under the domain's rules.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use llxprt_domain::{
    moves_on, ChatProvider, Credential, LoadBalancer, Profile, ProfileName, Secret,
};

use crate::ports::{
    ChatMessage, ChatReply, ChatRequest, ConfigError, ProfileStore, PromptError, UserPrompt,
};
use crate::services::chat_service::{ChatService, SendError, SendTarget};
use crate::services::credentials::{CredentialContext, CredentialService};
use crate::settings::Settings;

/// Why a message got no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A loadbalancer's member profile could not be loaded.
    #[error(transparent)]
    Profile(#[from] ConfigError),
    /// The (last) provider refused or failed; for a loadbalancer, the last member's failure.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A loadbalancer with no member left to try.
    #[error("no profile could answer")]
    NoProfileAnswered,
}

/// Where and how a message goes.
#[derive(Debug, Clone, Copy)]
pub struct MessageTarget<'a> {
    /// The session's active provider (used unless a loadbalancer's member names its own).
    pub provider: ChatProvider,
    /// The session's model for it; `None` takes the default for the credential used.
    pub model: Option<&'a str>,
    /// The key given on the command line or in the session, with the provider it belongs to.
    pub session_key: Option<&'a (ChatProvider, Secret)>,
    /// The settings in effect.
    pub settings: &'a Settings,
    /// The loaded profile, by name.
    pub profile: Option<(&'a ProfileName, &'a Profile)>,
}

/// A reply and how it reached the user.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The whole reply.
    pub reply: ChatReply,
    /// Whether its text was already shown piece by piece through the prompt as it arrived.
    pub streamed: bool,
}

/// Sends messages over the loaded profile: one target, or a loadbalancer's members.
pub struct MessageService {
    chat: Arc<ChatService>,
    profiles: Arc<dyn ProfileStore>,
    credentials: CredentialService,
    /// Each loadbalancer profile's turn, kept across the session's messages.
    balancers: Mutex<HashMap<ProfileName, LoadBalancer>>,
}

impl MessageService {
    /// A service sending through `chat`, loading member profiles from `profiles`.
    pub fn new(
        chat: Arc<ChatService>,
        profiles: Arc<dyn ProfileStore>,
        credentials: CredentialService,
    ) -> Self {
        Self {
            chat,
            profiles,
            credentials,
            balancers: Mutex::default(),
        }
    }

    /// The credential service the messages use.
    pub fn credentials(&self) -> &CredentialService {
        &self.credentials
    }

    /// Sends `messages` (the conversation, ending with the user's new message) and returns the
    /// reply. While waiting, `prompt` shows that a reply is awaited; streamed text goes to it
    /// as it arrives; a loadbalancer member that fails and lets the request move on is shown
    /// as one error line.
    ///
    /// # Errors
    /// [`MessageError`]: the provider's failure (for a loadbalancer, the last member's), or a
    /// member profile that cannot be loaded.
    pub async fn send(
        &self,
        target: MessageTarget<'_>,
        messages: &[ChatMessage],
        prompt: &dyn UserPrompt,
    ) -> Result<Sent, MessageError> {
        let (members, policy) = match target.profile {
            Some((name, Profile::LoadBalancer { policy, members })) => {
                let order = self
                    .balancers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(name.clone())
                    .or_insert_with(|| LoadBalancer::new(*policy, members.len()))
                    .next_order();
                let mut loaded = Vec::new();
                for index in order {
                    let Some(member) = members.get(index) else {
                        continue;
                    };
                    loaded.push((Some(member.clone()), self.profiles.load_profile(member)?));
                }
                (loaded, Some(*policy))
            }
            Some((_, profile @ Profile::Model { .. })) => (vec![(None, profile.clone())], None),
            None => (Vec::new(), None),
        };
        if members.is_empty() && policy.is_none() {
            return Ok(self.send_one(target, None, messages, prompt).await?);
        }
        let mut last_failure = None;
        for (member, profile) in members {
            let sent = self
                .send_one(target, Some((&profile, policy.is_some())), messages, prompt)
                .await;
            let error = match sent {
                Ok(sent) => return Ok(sent),
                // Part of the reply was shown: another member would answer it a second time.
                Err(error @ SendError::CutShort(_)) => return Err(error.into()),
                Err(error) => error,
            };
            let moves = policy.is_some_and(|p| moves_on(p, error.member_failure()));
            match (moves, &member) {
                (true, Some(member)) => {
                    // The member's own error may run over several lines (the exhausted
                    // report); its first line says enough while the request goes on.
                    let text = error.to_string();
                    let first = text.lines().next().unwrap_or_default();
                    prompt.show_error(&format!(
                        "Profile {member} failed ({first}); trying the next profile"
                    ));
                    last_failure = Some(error);
                }
                _ => return Err(error.into()),
            }
        }
        Err(last_failure.map_or(MessageError::NoProfileAnswered, MessageError::Send))
    }

    /// One attempt: `profile` is the model profile in play and whether it is a loadbalancer's
    /// member (which then names its own provider and model).
    async fn send_one(
        &self,
        target: MessageTarget<'_>,
        profile: Option<(&Profile, bool)>,
        messages: &[ChatMessage],
        prompt: &dyn UserPrompt,
    ) -> Result<Sent, SendError> {
        let (provider, chosen_model) = match profile {
            Some((
                Profile::Model {
                    provider, model, ..
                },
                true,
            )) => (*provider, model.clone()),
            _ => (target.provider, target.model.map(str::to_owned)),
        };
        let credential = self.credentials.credential(CredentialContext {
            provider,
            active: target.provider,
            session_key: target.session_key,
            settings: target.settings,
            profile: profile.map(|(p, _)| p),
        });
        // A subscription may take other models than the key API: the default follows the
        // credential the request goes out with.
        let model = chosen_model.unwrap_or_else(|| match credential {
            Credential::OAuth(_) => provider.default_oauth_model().to_owned(),
            _ => provider.default_model().to_owned(),
        });
        let request = ChatRequest {
            model,
            messages: messages.to_vec(),
        };
        let streaming = StreamTracking::new(prompt, &format!("Waiting for {provider}"));
        let sent = self
            .chat
            .send(
                &SendTarget {
                    provider,
                    credential,
                    switch_at_percent: target.settings.switch_at_percent(),
                },
                &request,
                &streaming,
            )
            .await;
        streaming.not_busy();
        Ok(Sent {
            reply: sent?,
            streamed: streaming.streamed(),
        })
    }
}

/// Passes everything to the real prompt, shows that a reply is awaited until anything else is
/// shown (a sign-in's question, the first streamed words), and remembers whether any reply text
/// streamed.
struct StreamTracking<'a> {
    inner: &'a dyn UserPrompt,
    streamed: AtomicBool,
    busy: AtomicBool,
}

impl<'a> StreamTracking<'a> {
    fn new(inner: &'a dyn UserPrompt, what: &str) -> Self {
        inner.busy(what, false);
        Self {
            inner,
            streamed: AtomicBool::new(false),
            busy: AtomicBool::new(true),
        }
    }

    fn streamed(&self) -> bool {
        self.streamed.load(Ordering::SeqCst)
    }

    fn not_busy(&self) {
        if self.busy.swap(false, Ordering::SeqCst) {
            self.inner.busy("", true);
        }
    }
}

/// A cancelled request (Ctrl-C drops it) leaves no indicator behind.
impl Drop for StreamTracking<'_> {
    fn drop(&mut self) {
        self.not_busy();
    }
}

#[async_trait]
impl UserPrompt for StreamTracking<'_> {
    fn show(&self, line: &str) {
        self.not_busy();
        self.inner.show(line);
    }
    fn show_error(&self, line: &str) {
        self.not_busy();
        self.inner.show_error(line);
    }
    fn stream(&self, text: &str) {
        self.not_busy();
        self.streamed.store(true, Ordering::SeqCst);
        self.inner.stream(text);
    }
    fn waiting(&self, what: &str, done: bool) {
        self.not_busy();
        self.inner.waiting(what, done);
    }
    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        self.not_busy();
        self.inner.ask(question).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call, in order.
    #[derive(Default)]
    struct Calls(Mutex<Vec<String>>);

    #[async_trait]
    impl UserPrompt for Calls {
        fn show(&self, line: &str) {
            self.0.lock().unwrap().push(format!("show {line}"));
        }
        fn stream(&self, text: &str) {
            self.0.lock().unwrap().push(format!("stream {text}"));
        }
        fn waiting(&self, what: &str, done: bool) {
            self.0
                .lock()
                .unwrap()
                .push(format!("waiting {what} {done}"));
        }
        fn busy(&self, what: &str, done: bool) {
            self.0.lock().unwrap().push(format!("busy {what} {done}"));
        }
        async fn ask(&self, question: &str) -> Result<String, PromptError> {
            self.0.lock().unwrap().push(format!("ask {question}"));
            Ok("answer".to_owned())
        }
    }

    #[tokio::test]
    async fn the_reply_indicator_stops_before_anything_else_is_shown_and_when_dropped() {
        let calls = Calls::default();
        {
            let tracking = StreamTracking::new(&calls, "Waiting for anthropic");
            tracking.ask("Paste the authorization code:").await.unwrap();
            tracking.show("a line");
        }
        {
            let tracking = StreamTracking::new(&calls, "Waiting for openai");
            tracking.stream("Hel");
            tracking.stream("lo");
            assert!(tracking.streamed());
        }
        // Cancelled while waiting: dropping clears the indicator.
        drop(StreamTracking::new(&calls, "Waiting for qwen"));
        assert_eq!(
            *calls.0.lock().unwrap(),
            [
                "busy Waiting for anthropic false",
                "busy  true",
                "ask Paste the authorization code:",
                "show a line",
                "busy Waiting for openai false",
                "busy  true",
                "stream Hel",
                "stream lo",
                "busy Waiting for qwen false",
                "busy  true",
            ]
        );
    }
}
