//! The OpenAI chat-completions protocol, spoken by OpenAI with a key and by Qwen (its OAuth
//! portal and DashScope's compatible mode).

use llxprt_application::ports::{ChatError, ChatReply, ChatRequest, Role};
use llxprt_domain::{Limits, Secret};
use serde_json::{json, Value};
use url::Url;

use super::http;
use super::sse::{self, SseEvent, Step};

/// `POST {base}/chat/completions` with `Authorization: Bearer` and `stream: true`, passing each
/// piece to `on_text` as it arrives and ending at `data: [DONE]`.
pub(crate) async fn send(
    client: &reqwest::Client,
    base: &Url,
    bearer: &Secret,
    request: &ChatRequest,
    on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
) -> Result<ChatReply, ChatError> {
    let url = http::endpoint(base, &["chat", "completions"])?;
    let response = http::send(
        client
            .post(url)
            .bearer_auth(bearer.expose())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body(request)),
    )
    .await?;
    let mut finished = false;
    let streamed = sse::read_stream(response, on_text, |event| {
        let step = interpret(event)?;
        finished |= step.finished;
        Ok(step.step)
    })
    .await?;
    // `[DONE]` is the protocol's end; a server that closes after a `finish_reason` has still
    // sent the whole answer.
    if !streamed.done && !finished {
        return Err(ChatError::Network(
            "the event stream ended before [DONE]".to_owned(),
        ));
    }
    Ok(ChatReply {
        text: streamed.text,
        limits: Limits::default(),
    })
}

fn body(request: &ChatRequest) -> Value {
    let messages: Vec<_> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({ "role": role, "content": m.text })
        })
        .collect();
    json!({ "model": request.model, "messages": messages, "stream": true })
}

/// One event of the stream: its step, and whether a choice said why it finished.
#[derive(Debug, PartialEq, Eq)]
struct Chunk {
    step: Step,
    finished: bool,
}

/// Reads one `data:` event: `[DONE]`, a chunk whose first choice's `delta.content` is a piece of
/// the answer, or an error object sent mid-stream.
fn interpret(event: &SseEvent) -> Result<Chunk, ChatError> {
    if event.data.trim() == "[DONE]" {
        return Ok(Chunk {
            step: Step::Done(String::new()),
            finished: true,
        });
    }
    let data: Value = serde_json::from_str(&event.data)
        .map_err(|_| http::unreadable("an event's data is not JSON"))?;
    if let Some(error) = data.get("error").filter(|e| e.is_object()) {
        return Err(http::classify(error_status(error), None, None, &event.data));
    }
    let choice = data.pointer("/choices/0");
    let piece = match choice.and_then(|c| c.pointer("/delta/content")) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    Ok(Chunk {
        step: Step::Text(piece),
        finished: choice
            .and_then(|c| c.get("finish_reason"))
            .is_some_and(|f| !f.is_null()),
    })
}

/// The status the same error would have come with before the stream began.
fn error_status(error: &Value) -> u16 {
    if let Some(code) = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..=599).contains(c))
    {
        return code;
    }
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        k if k.contains("rate_limit") => 429,
        "insufficient_quota" => 402,
        "invalid_request_error" => 400,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_application::ports::ChatMessage;

    fn data(text: &str) -> Result<Chunk, ChatError> {
        interpret(&SseEvent {
            event: String::new(),
            data: text.to_owned(),
        })
    }

    #[test]
    fn the_body_carries_the_model_and_the_conversation() {
        let request = ChatRequest {
            model: "qwen3-coder-plus".into(),
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
            body(&request),
            json!({"model": "qwen3-coder-plus", "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ], "stream": true})
        );
    }

    #[test]
    fn pieces_the_end_and_mid_stream_errors_are_recognised() {
        assert_eq!(
            data(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#),
            Ok(Chunk {
                step: Step::Text("Hi".into()),
                finished: false
            })
        );
        assert_eq!(
            data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
            Ok(Chunk {
                step: Step::Text(String::new()),
                finished: true
            })
        );
        assert_eq!(
            data("[DONE]").map(|c| c.step),
            Ok(Step::Done(String::new()))
        );
        assert_eq!(
            data(r#"{"error":{"message":"boom","type":"server_error"}}"#),
            Err(ChatError::Server {
                status: 500,
                message: "boom".into()
            })
        );
        assert!(matches!(
            data(r#"{"error":{"message":"slow","type":"rate_limit_exceeded"}}"#),
            Err(ChatError::RateLimited { .. })
        ));
        assert!(matches!(data("<html>"), Err(ChatError::Network(_))));
    }
}
