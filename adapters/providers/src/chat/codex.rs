//! The Codex Responses API of a ChatGPT subscription: one streamed request, read as server-sent
//! events.

use llxprt_application::ports::{ChatError, ChatReply, ChatRequest, Role};
use llxprt_domain::{Limits, Token};
use serde_json::{json, Value};
use url::Url;

use super::http;
use super::limits;
use super::sse::{self, SseEvent, Step, StreamBounds};

/// Who the request says it comes from; the backend expects Codex's own client.
const ORIGINATOR: &str = "codex_cli_rs";

/// `POST {base}/responses` with `stream: true`, passing each text delta to `on_text` as it
/// arrives and ending at `response.completed`.
pub(crate) async fn send(
    client: &reqwest::Client,
    base: &Url,
    token: &Token,
    request: &ChatRequest,
    on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
) -> Result<ChatReply, ChatError> {
    let account_id = token.account_id.as_deref().ok_or_else(|| {
        // Without the account the backend refuses every request; only a new login brings it.
        ChatError::Forbidden("the Codex token carries no ChatGPT account id".to_owned())
    })?;
    let url = http::endpoint(base, &["responses"])?;
    let response = http::send_reading(
        client
            .post(url)
            .bearer_auth(token.access_token.expose())
            .header("chatgpt-account-id", account_id)
            .header("originator", ORIGINATOR)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body(request)),
        limits::codex,
    )
    .await?;
    read_stream(response, on_text, StreamBounds::default()).await
}

/// Reads the events of an answer within `bounds`, passing each text delta to `on_text`; the
/// reply carries the limits its headers reported.
pub(crate) async fn read_stream(
    response: reqwest::Response,
    on_text: &(dyn for<'t> Fn(&'t str) + Send + Sync),
    bounds: StreamBounds,
) -> Result<ChatReply, ChatError> {
    let status = response.status().as_u16();
    let limits = limits::codex(response.headers());
    let streamed = sse::read_stream_within(response, on_text, bounds, |event| {
        match interpret(event, status) {
            StreamStep::Delta(delta) => Ok(Step::Text(delta)),
            StreamStep::Completed(full) => Ok(Step::Done(full)),
            StreamStep::Failed(error) => Err(error),
            StreamStep::Other => Ok(Step::Other),
        }
    })
    .await
    // A limit reached mid-stream is reported with the windows the answer's headers gave.
    .map_err(|e| http::with_limits(e, limits.clone()))?;
    if !streamed.done {
        return Err(ChatError::Network(
            "the event stream ended before response.completed".to_owned(),
        ));
    }
    Ok(ChatReply {
        text: streamed.text,
        limits,
    })
}

fn body(request: &ChatRequest) -> Value {
    let input: Vec<_> = request
        .messages
        .iter()
        .map(|m| {
            let (role, part) = match m.role {
                Role::User => ("user", "input_text"),
                Role::Assistant => ("assistant", "output_text"),
            };
            json!({
                "type": "message",
                "role": role,
                "content": [{ "type": part, "text": m.text }],
            })
        })
        .collect();
    json!({
        "model": request.model,
        "instructions": "",
        "input": input,
        "stream": true,
        // The ChatGPT backend keeps no conversation state for subscription clients.
        "store": false,
    })
}

/// What one event means for the request.
#[derive(Debug, PartialEq, Eq)]
enum StreamStep {
    /// A piece of the answer.
    Delta(String),
    /// The answer is complete; the text the final event carries (empty if none).
    Completed(String),
    /// The provider reported an error in the stream.
    Failed(ChatError),
    /// Bookkeeping events (`response.created`, `response.output_item.added`, ...).
    Other,
}

/// Reads one event; `status` is the HTTP status the stream came with.
fn interpret(event: &SseEvent, status: u16) -> StreamStep {
    let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
        return StreamStep::Failed(http::unreadable("an event's data is not JSON"));
    };
    let kind = data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(&event.event);
    match kind {
        "response.output_text.delta" => StreamStep::Delta(
            data.get("delta")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        "response.completed" => StreamStep::Completed(completed_text(&data)),
        "response.failed" => StreamStep::Failed(stream_error(
            data.get("response")
                .and_then(|r| r.get("error"))
                .unwrap_or(&Value::Null),
            status,
        )),
        "error" => StreamStep::Failed(stream_error(data.get("error").unwrap_or(&data), status)),
        "response.incomplete" => {
            let reason = data
                .pointer("/response/incomplete_details/reason")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            StreamStep::Failed(ChatError::Server {
                status,
                message: http::truncate(&format!("the response is incomplete: {reason}")),
            })
        }
        _ => StreamStep::Other,
    }
}

/// The output text of a `response.completed` event.
fn completed_text(data: &Value) -> String {
    let Some(output) = data.pointer("/response/output").and_then(Value::as_array) else {
        return String::new();
    };
    output
        .iter()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
        .filter_map(|item| item.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect()
}

/// An error reported inside the stream: a usage or rate limit, or a failure of the provider.
fn stream_error(error: &Value, status: u16) -> ChatError {
    let field = |name: &str| error.get(name).and_then(Value::as_str);
    let code = field("code").or_else(|| field("type")).unwrap_or_default();
    if matches!(code, "usage_limit_reached" | "rate_limit_exceeded") {
        let usage = http::usage_limit_of(error);
        return ChatError::RateLimited {
            retry_after_secs: usage.resets_in_secs,
            reset_at: usage.resets_at,
            limits: Limits::default(),
        };
    }
    let message = field("message").filter(|m| !m.is_empty()).unwrap_or(code);
    ChatError::Server {
        status,
        message: http::truncate(if message.is_empty() {
            "the stream reported an error"
        } else {
            message
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_application::ports::ChatMessage;
    use proptest::prelude::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn the_body_streams_and_stores_nothing() {
        let request = ChatRequest {
            model: "gpt-5-codex".into(),
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
        let body = body(&request);
        assert_eq!(body["stream"], true);
        assert_eq!(body["store"], false);
        assert_eq!(
            body["input"][0],
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
        );
        assert_eq!(body["input"][1]["content"][0]["type"], "output_text");
    }

    #[test]
    fn deltas_completion_and_errors_are_recognised() {
        assert_eq!(
            interpret(
                &event(r#"{"type":"response.output_text.delta","delta":"Hel","item_id":"m"}"#),
                200
            ),
            StreamStep::Delta("Hel".into())
        );
        assert_eq!(
            interpret(&event(r#"{"type":"response.created","response":{}}"#), 200),
            StreamStep::Other
        );
        assert_eq!(
            interpret(
                &event(
                    r#"{"type":"response.completed","response":{"output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"Hello"}]}]}}"#
                ),
                200
            ),
            StreamStep::Completed("Hello".into())
        );
        assert_eq!(
            interpret(
                &SseEvent {
                    event: "response.completed".into(),
                    data: "{}".into()
                },
                200
            ),
            StreamStep::Completed(String::new()),
            "the event name stands in for a missing type"
        );
        assert_eq!(
            interpret(
                &event(r#"{"type":"error","code":"usage_limit_reached","resets_in_seconds":90}"#),
                200
            ),
            StreamStep::Failed(ChatError::RateLimited {
                retry_after_secs: Some(90),
                reset_at: None,
                limits: Default::default(),
            })
        );
        assert_eq!(
            interpret(
                &event(
                    r#"{"type":"error","code":"usage_limit_reached","resets_at":1767225600,"resets_in_seconds":90}"#
                ),
                200
            ),
            StreamStep::Failed(ChatError::RateLimited {
                retry_after_secs: Some(90),
                reset_at: Some(1_767_225_600),
                limits: Default::default(),
            }),
            "resets_at is the reset time"
        );
        assert_eq!(
            interpret(
                &event(
                    r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#
                ),
                200
            ),
            StreamStep::Failed(ChatError::Server {
                status: 200,
                message: "boom".into()
            })
        );
        assert!(matches!(
            interpret(&event("not json"), 200),
            StreamStep::Failed(ChatError::Network(_))
        ));
    }

    proptest! {
        #[test]
        fn interpreting_never_panics(name in any::<String>(), data in any::<String>()) {
            let _ = interpret(&SseEvent { event: name, data }, 200);
        }

        #[test]
        fn interpreting_json_like_events_never_panics(
            data in r#"\{("type":"(error|response\.(failed|completed|incomplete|output_text\.delta))",)?[\[\]{}":,a-z_ 0-9.]{0,60}\}"#
        ) {
            let _ = interpret(&event(&data), 200);
        }
    }
}
