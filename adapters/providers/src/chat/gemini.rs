//! Gemini: `generateContent` with an API key, Google's Code Assist API with an OAuth token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
    /// The user's Google Cloud project (`providers.gemini.project`, `GOOGLE_CLOUD_PROJECT`,
    /// `GOOGLE_CLOUD_PROJECT_ID`), which Workspace and Standard/Enterprise accounts need.
    pub project: Option<String>,
    /// How often an onboarding operation is polled (5 s against Google).
    pub onboarding_poll: Duration,
}

/// The most polls of one onboarding operation before giving up (five minutes at 5 s).
const MAX_ONBOARDING_POLLS: u32 = 60;

/// The tier that takes no user project (and refuses one with `412`).
const FREE_TIER: &str = "free-tier";

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
        .map(ChatReply::new)
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

    /// The account's project: from `loadCodeAssist` for an account already set up, else by
    /// onboarding it into its default tier (a long-running operation, polled until done).
    async fn load_code_assist(&self, token: &Token) -> Result<String, ChatError> {
        let project = self.config.project.as_deref();
        let body = json!({
            "cloudaicompanionProject": project,
            "metadata": metadata(project),
        });
        let reply: LoadCodeAssistReply = self
            .code_assist_call("v1internal:loadCodeAssist", token, &body)
            .await?;
        let known = project_of(&reply.project);
        if reply.current_tier.is_some() || known.is_some() {
            return known
                .or_else(|| project.map(str::to_owned))
                .ok_or_else(needs_project);
        }
        let Some(tier) = reply.allowed_tiers.iter().find(|t| t.is_default) else {
            return Err(ineligible(&reply.ineligible_tiers));
        };
        let free = tier.id == FREE_TIER;
        if !free && tier.user_defined_project && project.is_none() {
            return Err(needs_project());
        }
        tracing::info!(tier = %tier.id, "onboarding the account to Gemini Code Assist");
        let project = if free { None } else { project };
        let body = json!({
            "tierId": tier.id,
            "cloudaicompanionProject": project,
            "metadata": metadata(project),
        });
        let mut operation: Operation = self
            .code_assist_call("v1internal:onboardUser", token, &body)
            .await?;
        let mut polls = 0;
        while !operation.done {
            polls += 1;
            if polls > MAX_ONBOARDING_POLLS {
                return Err(ChatError::Network(
                    "Gemini Code Assist onboarding did not finish in five minutes; try again"
                        .to_owned(),
                ));
            }
            tokio::time::sleep(self.config.onboarding_poll).await;
            let name = operation.name.clone().unwrap_or_default();
            let url = http::endpoint(
                &self.config.code_assist_base_url,
                &std::iter::once("v1internal")
                    .chain(name.split('/'))
                    .collect::<Vec<_>>(),
            )?;
            let builder = self.http.get(url).bearer_auth(token.access_token.expose());
            operation = http::read_json(http::send(builder).await?).await?;
        }
        operation
            .response
            .and_then(|r| project_of(&r.project))
            .or_else(|| project.map(str::to_owned))
            .ok_or_else(needs_project)
    }

    async fn code_assist_call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        token: &Token,
        body: &serde_json::Value,
    ) -> Result<T, ChatError> {
        let url = http::endpoint(&self.config.code_assist_base_url, &[method])?;
        let builder = self
            .http
            .post(url)
            .bearer_auth(token.access_token.expose())
            .json(body);
        http::read_json(http::send(builder).await?).await
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

/// The metadata Gemini CLI sends (the values say "no particular IDE"), with the user's project
/// as `duetProject` when there is one.
fn metadata(project: Option<&str>) -> serde_json::Value {
    json!({
        "ideType": "IDE_UNSPECIFIED",
        "platform": "PLATFORM_UNSPECIFIED",
        "pluginType": "GEMINI",
        "duetProject": project,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadCodeAssistReply {
    #[serde(rename = "cloudaicompanionProject", default)]
    project: serde_json::Value,
    #[serde(default)]
    current_tier: Option<serde_json::Value>,
    #[serde(default)]
    allowed_tiers: Vec<Tier>,
    #[serde(default)]
    ineligible_tiers: Vec<IneligibleTier>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tier {
    #[serde(default)]
    id: String,
    #[serde(default)]
    is_default: bool,
    #[serde(default, rename = "userDefinedCloudaicompanionProject")]
    user_defined_project: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IneligibleTier {
    #[serde(default)]
    reason_message: Option<String>,
}

/// A long-running operation of Code Assist (`onboardUser`).
#[derive(Deserialize)]
struct Operation {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    response: Option<OnboardResponse>,
}

#[derive(Deserialize)]
struct OnboardResponse {
    #[serde(rename = "cloudaicompanionProject", default)]
    project: serde_json::Value,
}

/// The project id, which Code Assist gives as text or as an object with an `id`.
fn project_of(project: &serde_json::Value) -> Option<String> {
    let id = match project {
        serde_json::Value::String(id) => Some(id.as_str()),
        serde_json::Value::Object(project) => project.get("id").and_then(|id| id.as_str()),
        _ => None,
    };
    id.filter(|id| !id.is_empty()).map(str::to_owned)
}

/// The account needs the user's own Google Cloud project, and none is set. Not a bucket
/// problem: the user's to fix.
fn needs_project() -> ChatError {
    ChatError::BadRequest {
        status: 400,
        message: "this Google account needs a Google Cloud project for Gemini Code Assist: set providers.gemini.project (or GOOGLE_CLOUD_PROJECT), or use a Gemini API key".to_owned(),
    }
}

/// No tier is open to the account: Google's reasons, for the user.
fn ineligible(tiers: &[IneligibleTier]) -> ChatError {
    let reasons: Vec<&str> = tiers
        .iter()
        .filter_map(|t| t.reason_message.as_deref())
        .collect();
    let reasons = if reasons.is_empty() {
        "Google gave no reason".to_owned()
    } else {
        reasons.join("; ")
    };
    ChatError::BadRequest {
        status: 403,
        message: http::truncate(&format!(
            "Gemini Code Assist is not available to this account: {reasons}. A Gemini API key (GEMINI_API_KEY) works"
        )),
    }
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
        let read = |body: &str| {
            let reply: LoadCodeAssistReply = serde_json::from_str(body).unwrap();
            project_of(&reply.project)
        };
        assert_eq!(
            read(r#"{"cloudaicompanionProject":"proj-1","currentTier":{"id":"free-tier"}}"#)
                .as_deref(),
            Some("proj-1")
        );
        assert_eq!(
            read(r#"{"cloudaicompanionProject":{"id":"proj-2","name":"n"}}"#).as_deref(),
            Some("proj-2")
        );
        assert_eq!(read(r#"{"currentTier":{}}"#), None);
    }

    #[test]
    fn ineligible_tiers_give_their_reasons() {
        let reply: LoadCodeAssistReply = serde_json::from_str(
            r#"{"allowedTiers":[],"ineligibleTiers":[{"reasonCode":"X","reasonMessage":"not for you"}]}"#,
        )
        .unwrap();
        let error = ineligible(&reply.ineligible_tiers).to_string();
        assert!(error.contains("not for you"), "{error}");
    }
}
