//! Gemini: `generateContent` with an API key, Google's Code Assist API with an OAuth token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use llxprt_application::ports::{ChatAuth, ChatClient, ChatError, ChatReply, ChatRequest, Role};
use llxprt_domain::{BucketId, ChatProvider, Token};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;
use url::Url;

use super::http;
use super::sse::{self, SseEvent, Step};

/// Where the two Gemini APIs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiConfig {
    /// The Generative Language API base, for API keys
    /// (`https://generativelanguage.googleapis.com` in production).
    pub base_url: Url,
    /// The Code Assist API base, for OAuth tokens (`https://cloudcode-pa.googleapis.com` in
    /// production).
    pub code_assist_base_url: Url,
}

/// Sends messages to Gemini; with OAuth, asks Code Assist for the account's project once per
/// bucket and remembers it.
#[derive(Debug)]
pub struct GeminiChat {
    config: GeminiConfig,
    http: reqwest::Client,
    /// Each bucket's Code Assist project. A cell per bucket so that concurrent first messages of
    /// one bucket make a single `loadCodeAssist` call, while other buckets do not wait.
    projects: Mutex<HashMap<BucketId, Arc<OnceCell<String>>>>,
}

impl GeminiChat {
    /// A client for `config`'s endpoints over a shared HTTP client.
    pub fn new(config: GeminiConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            projects: Mutex::new(HashMap::new()),
        }
    }

    async fn post(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        match auth {
            ChatAuth::ApiKey(key) => {
                let model = request.model.trim_start_matches("models/");
                let mut url = http::endpoint(
                    &self.config.base_url,
                    &[
                        "v1beta",
                        "models",
                        &format!("{model}:streamGenerateContent"),
                    ],
                )?;
                url.set_query(Some("alt=sse"));
                let builder = self
                    .http
                    .post(url)
                    .header("x-goog-api-key", key.expose())
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .json(&json!({ "contents": contents(request) }));
                read_reply(http::send(builder).await?, Wrapping::Bare, on_text).await
            }
            ChatAuth::OAuth { bucket, token } => {
                let project = self.project(bucket, token).await?;
                let result = self.code_assist(request, token, &project, on_text).await;
                if let Err(ChatError::Forbidden(_)) = result {
                    // The bucket may have been signed in again with another account, whose
                    // project differs: ask again next time.
                    self.forget(bucket);
                }
                result
            }
        }
        .map(|text| ChatReply { text })
    }

    async fn code_assist(
        &self,
        request: &ChatRequest,
        token: &Token,
        project: &str,
        on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<String, ChatError> {
        let mut url = http::endpoint(
            &self.config.code_assist_base_url,
            &["v1internal:streamGenerateContent"],
        )?;
        url.set_query(Some("alt=sse"));
        let body = json!({
            "model": request.model,
            "project": project,
            "request": { "contents": contents(request) },
        });
        let builder = self
            .http
            .post(url)
            .bearer_auth(token.access_token.expose())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        read_reply(http::send(builder).await?, Wrapping::CodeAssist, on_text).await
    }

    /// The bucket's Code Assist project, from the cache or from `loadCodeAssist`.
    async fn project(&self, bucket: &BucketId, token: &Token) -> Result<String, ChatError> {
        let cell = self.cell(bucket);
        cell.get_or_try_init(|| self.load_code_assist(token))
            .await
            .cloned()
    }

    fn cell(&self, bucket: &BucketId) -> Arc<OnceCell<String>> {
        let mut projects = self.projects.lock().unwrap_or_else(PoisonError::into_inner);
        projects.entry(bucket.clone()).or_default().clone()
    }

    fn forget(&self, bucket: &BucketId) {
        let mut projects = self.projects.lock().unwrap_or_else(PoisonError::into_inner);
        projects.remove(bucket);
    }

    async fn load_code_assist(&self, token: &Token) -> Result<String, ChatError> {
        let url = http::endpoint(
            &self.config.code_assist_base_url,
            &["v1internal:loadCodeAssist"],
        )?;
        // The metadata Gemini CLI sends; the values say "no particular IDE".
        let body = json!({
            "metadata": {
                "ideType": "IDE_UNSPECIFIED",
                "platform": "PLATFORM_UNSPECIFIED",
                "pluginType": "GEMINI",
            }
        });
        let builder = self
            .http
            .post(url)
            .bearer_auth(token.access_token.expose())
            .json(&body);
        let reply: LoadCodeAssistReply = http::read_json(http::send(builder).await?).await?;
        project_of(reply)
    }
}

#[async_trait]
impl ChatClient for GeminiChat {
    fn provider(&self) -> ChatProvider {
        ChatProvider::Gemini
    }

    async fn send(
        &self,
        request: &ChatRequest,
        auth: ChatAuth<'_>,
        on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    ) -> Result<ChatReply, ChatError> {
        self.post(request, auth, on_text)
            .await
            .map_err(|e| http::redact(e, super::credential(auth)))
    }
}

fn contents(request: &ChatRequest) -> Vec<serde_json::Value> {
    request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            json!({ "role": role, "parts": [{ "text": m.text }] })
        })
        .collect()
}

#[derive(Deserialize)]
struct LoadCodeAssistReply {
    #[serde(rename = "cloudaicompanionProject", default)]
    project: serde_json::Value,
}

/// The project id, which Code Assist gives as text or as an object with an `id`.
fn project_of(reply: LoadCodeAssistReply) -> Result<String, ChatError> {
    let id = match &reply.project {
        serde_json::Value::String(id) => Some(id.as_str()),
        serde_json::Value::Object(project) => project.get("id").and_then(|id| id.as_str()),
        _ => None,
    };
    id.filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            ChatError::Forbidden(
                "Code Assist gave this account no project (it needs Gemini Code Assist onboarding)"
                    .to_owned(),
            )
        })
}

/// How each event of a stream carries its `GenerateContentResponse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrapping {
    /// The Generative Language API: the response itself.
    Bare,
    /// Code Assist: `{"response": …}`.
    CodeAssist,
}

/// Reads a `streamGenerateContent?alt=sse` answer, each event's text going to `on_text`. The
/// stream has no end marker: its end is the end of the answer.
async fn read_reply(
    response: reqwest::Response,
    wrapping: Wrapping,
    on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
) -> Result<String, ChatError> {
    let mut candidates = false;
    let streamed = sse::read_stream(response, on_text, |event| {
        let reply = interpret(event, wrapping)?;
        candidates |= !reply.candidates.is_empty();
        Ok(Step::Text(reply_text(reply)))
    })
    .await?;
    if !candidates {
        // A prompt blocked for safety gets `promptFeedback` and no candidate at all.
        return Err(http::unreadable("the reply has no candidates"));
    }
    Ok(streamed.text)
}

/// One event: a response (unwrapped), or an error sent mid-stream.
fn interpret(event: &SseEvent, wrapping: Wrapping) -> Result<GenerateReply, ChatError> {
    let data: serde_json::Value = serde_json::from_str(&event.data)
        .map_err(|_| http::unreadable("an event's data is not JSON"))?;
    if let Some(error) = data.get("error").filter(|e| e.is_object()) {
        let status = error
            .get("code")
            .and_then(serde_json::Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..=599).contains(c))
            .unwrap_or(500);
        return Err(http::classify(status, None, None, &event.data));
    }
    let response = match wrapping {
        Wrapping::Bare => data,
        Wrapping::CodeAssist => data.get("response").cloned().unwrap_or_default(),
    };
    serde_json::from_value(response).map_err(|e| http::unreadable(&e.to_string()))
}

#[derive(Deserialize)]
struct GenerateReply {
    #[serde(default)]
    candidates: Vec<Candidate>,
}

#[derive(Deserialize)]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
    /// Thinking models mark their reasoning parts; they are not the answer.
    #[serde(default)]
    thought: bool,
}

/// The text parts of the first candidate (empty when there is none).
fn reply_text(reply: GenerateReply) -> String {
    reply
        .candidates
        .into_iter()
        .next()
        .and_then(|c| c.content)
        .map(|c| c.parts)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !p.thought)
        .filter_map(|p| p.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_application::ports::ChatMessage;

    #[test]
    fn the_model_speaks_as_model() {
        let request = ChatRequest {
            model: "gemini-2.5-pro".into(),
            messages: vec![
                ChatMessage {
                    role: Role::User,
                    text: "hi".into(),
                },
                ChatMessage {
                    role: Role::Assistant,
                    text: "hello".into(),
                },
            ],
        };
        assert_eq!(
            contents(&request),
            vec![
                json!({"role": "user", "parts": [{"text": "hi"}]}),
                json!({"role": "model", "parts": [{"text": "hello"}]}),
            ]
        );
    }

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_are_read_bare_and_wrapped_by_code_assist() {
        let bare = interpret(
            &event(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"think","thought":true},{"text":"Hel"},{"text":"lo"}]},"finishReason":"STOP"}]}"#),
            Wrapping::Bare,
        )
        .unwrap();
        assert_eq!(reply_text(bare), "Hello");
        let wrapped = interpret(
            &event(r#"{"response":{"candidates":[{"content":{"parts":[{"text":"Hi"}]}}]},"traceId":"x"}"#),
            Wrapping::CodeAssist,
        )
        .unwrap();
        assert_eq!(reply_text(wrapped), "Hi");
        let blocked = interpret(
            &event(r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#),
            Wrapping::Bare,
        )
        .unwrap();
        assert!(blocked.candidates.is_empty());
        assert!(matches!(
            interpret(
                &event(r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#),
                Wrapping::CodeAssist
            ),
            Err(ChatError::Server { status: 503, .. })
        ));
    }

    #[test]
    fn the_project_comes_as_text_or_object() {
        let read = |body: &str| project_of(serde_json::from_str(body).unwrap());
        assert_eq!(
            read(r#"{"cloudaicompanionProject":"proj-1","currentTier":{"id":"free-tier"}}"#)
                .unwrap(),
            "proj-1"
        );
        assert_eq!(
            read(r#"{"cloudaicompanionProject":{"id":"proj-2","name":"n"}}"#).unwrap(),
            "proj-2"
        );
        assert!(matches!(
            read(r#"{"currentTier":{}}"#),
            Err(ChatError::Forbidden(_))
        ));
    }
}
