//! What every chat adapter shares: endpoint URLs, sending, and reading a failure into a
//! [`ChatError`].
//!
//! The readers of headers and bodies are pure functions over text so that they can be
//! property-tested: whatever a provider (or a proxy in front of it) answers, they never panic.

use llxprt_application::ports::ChatError;
use llxprt_domain::{Limits, RefusalCause, Secret};
use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;
use url::Url;

use super::limits::{self, LimitsReader};

/// The longest provider error text carried in a [`ChatError`]; HTML error pages of proxies
/// would otherwise flood the terminal.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// The most a successful JSON answer may hold: far above any real reply (a model's longest
/// answer is well under a megabyte), low enough that a hostile server cannot fill the memory.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The most of an error body that is read: only its first [`MAX_MESSAGE_CHARS`] are shown, and
/// real error bodies are a few kilobytes.
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 1 << 20;

/// A wait longer than this is clamped: no provider means it, and the failover arithmetic on
/// Unix seconds must not overflow.
const MAX_WAIT_SECS: u64 = 366 * 24 * 3600;

/// `base` with `segments` appended as path segments (each one percent-encoded on its own, so a
/// model name cannot add path levels).
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, ChatError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ChatError::Network(format!("the base URL {base} cannot take a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Sends a request; a successful answer is returned for the caller to read, anything else is
/// classified.
///
/// Redirects are not followed (the client is built without them): a redirect would carry the
/// key or token, and the whole conversation, to wherever it points. One is reported instead.
pub(crate) async fn send(request: RequestBuilder) -> Result<Response, ChatError> {
    send_reading(request, limits::none).await
}

/// [`send`] for a provider that reports the account's limits in its headers: a `429` carries
/// what `read_limits` reads of them. (A successful answer's are read by the caller, from the
/// response, before its body.)
pub(crate) async fn send_reading(
    request: RequestBuilder,
    read_limits: LimitsReader,
) -> Result<Response, ChatError> {
    let response = request.send().await.map_err(|e| network(&e))?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    if response.status().is_redirection() {
        return Err(redirected(status, &response));
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = header("retry-after");
    let unified_reset = header("anthropic-ratelimit-unified-reset");
    let limits = read_limits(response.headers());
    // A body that cannot be read, or is too large, still leaves the status to classify by.
    let body = read_capped(response, MAX_ERROR_BODY_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    Err(with_limits(
        classify(
            status,
            retry_after.as_deref(),
            unified_reset.as_deref(),
            &body,
        ),
        limits,
    ))
}

/// A rate limit that carries no limits of its own takes `limits` (those its answer's headers
/// reported); any other error stands as it is.
pub(crate) fn with_limits(error: ChatError, limits: Limits) -> ChatError {
    match error {
        ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            limits: own,
        } => ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            limits: if own.is_empty() { limits } else { own },
        },
        other => other,
    }
}

/// Reads a successful answer's JSON body.
pub(crate) async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, ChatError> {
    let body = read_capped(response, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| unreadable(&e.to_string()))
}

/// The answer's body, refused as soon as it is known to exceed `limit` bytes.
pub(crate) async fn read_capped(
    mut response: Response,
    limit: usize,
) -> Result<Vec<u8>, ChatError> {
    let too_large = || {
        ChatError::Network(format!(
            "the provider's answer is too large (over {} KiB); nothing of it was used",
            limit / 1024
        ))
    };
    if response.content_length().unwrap_or(0) > limit as u64 {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error for a redirect, naming where it pointed (its host only: the rest of a URL may
/// carry anything).
fn redirected(status: u16, response: &Response) -> ChatError {
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| response.url().join(location).ok())
        .and_then(|url| url.host_str().map(str::to_owned))
        .map_or_else(|| "elsewhere".to_owned(), |host| truncate(&host));
    ChatError::Network(format!(
        "the provider answered with a redirect (HTTP {status}) to {target}, which llxprt does not \
         follow so that no key, token or message leaves for another host; check the provider's \
         base_url setting"
    ))
}

/// The error for an answer that is not what the protocol promises.
pub(crate) fn unreadable(why: &str) -> ChatError {
    ChatError::Network(format!("unreadable reply: {}", truncate(why)))
}

/// A transport failure (connection refused, timeout, broken body) with its causes.
pub(crate) fn network(error: &reqwest::Error) -> ChatError {
    let mut message = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    ChatError::Network(truncate(&message))
}

/// What Anthropic answers (as a `400`) when a subscription's token is used by a third-party
/// app and the account has no extra usage left.
const EXTRA_USAGE: &str = "Third-party apps now draw from your extra usage";

/// What Anthropic answers for a credential reserved to its own client.
const CLAUDE_CODE_ONLY: &str = "only authorized for use with Claude Code";

/// Google's `reasonCode` for personal accounts that Code Assist no longer serves to this client.
const UNSUPPORTED_CLIENT: &str = "UNSUPPORTED_CLIENT";

/// Classifies a failed answer by its status, its `retry-after` and
/// `anthropic-ratelimit-unified-reset` headers and its body, as providers.md's "How the real
/// services answer today" and cli.md's Failover table say.
///
/// Codex's `usage_limit_reached` means rate limited whatever status carries it; so does
/// Anthropic's exhausted extra usage (a `400`) mean out of quota. A policy refusal of the account
/// is [`ChatError::Refused`]; a `403` HTML page is a CDN's, not the provider's.
pub(crate) fn classify(
    status: u16,
    retry_after: Option<&str>,
    unified_reset: Option<&str>,
    body: &str,
) -> ChatError {
    let retry_after_secs = retry_after
        .and_then(parse_retry_after)
        .or_else(|| retry_info_delay(body));
    let reset_at = unified_reset
        .and_then(parse_unix_seconds)
        .or_else(|| retry_after.and_then(parse_http_date));
    if let Some(usage) = usage_limit_reached(body) {
        return ChatError::RateLimited {
            retry_after_secs: retry_after_secs.or(usage.resets_in_secs),
            reset_at: reset_at.or(usage.resets_at),
            limits: Limits::default(),
        };
    }
    if status == 403 && is_html(body) {
        return ChatError::Blocked { status };
    }
    if (400..500).contains(&status) {
        let text = provider_message(body);
        if text.contains(EXTRA_USAGE) {
            return ChatError::PaymentRequired {
                message: format!(
                    "{text} (Anthropic bills third-party use of a subscription as extra usage, and this account has none left: enable extra usage at claude.ai/settings/usage, or use an API key)"
                ),
                retry_after_secs,
            };
        }
        let refusal = if text.contains(CLAUDE_CODE_ONLY) {
            Some(RefusalCause::ClaudeCodeOnly)
        } else if body.contains(UNSUPPORTED_CLIENT) {
            Some(RefusalCause::UnsupportedClient)
        } else {
            None
        };
        if let Some(cause) = refusal {
            return ChatError::Refused {
                cause,
                message: text,
            };
        }
        if status == 400 && is_model_refusal(&text) {
            return ChatError::ModelRefused { message: text };
        }
    }
    let message = || {
        let text = provider_message(body);
        if text.is_empty() {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no details given")
                .to_owned()
        } else {
            text
        }
    };
    match status {
        429 => ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            limits: Limits::default(),
        },
        402 => ChatError::PaymentRequired {
            message: message(),
            retry_after_secs,
        },
        401 => ChatError::Unauthorized(message()),
        403 => ChatError::Forbidden(message()),
        400..=499 => ChatError::BadRequest {
            status,
            message: message(),
        },
        500..=599 => ChatError::Server {
            status,
            message: message(),
        },
        _ => ChatError::Network(format!("unexpected status {status}: {}", message())),
    }
}

/// Whether a body is an HTML page (a proxy's or CDN's) rather than a provider's error.
fn is_html(body: &str) -> bool {
    let start: String = body.trim_start().chars().take(15).collect();
    let start = start.to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

/// Whether a `400`'s text says that the model is not offered (Codex with a ChatGPT account:
/// "The 'gpt-5' model is not supported when using Codex with a ChatGPT account.").
fn is_model_refusal(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("model") && text.contains("not supported")
}

/// Google's `RetryInfo` in an error body: `error.details[]` holding
/// `{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}`.
pub(crate) fn retry_info_delay(body: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let value = value.as_array().and_then(|a| a.first()).unwrap_or(&value);
    let details = value.get("error")?.get("details")?.as_array()?;
    details.iter().find_map(|detail| {
        let kind = detail.get("@type")?.as_str()?;
        if !kind.ends_with("google.rpc.RetryInfo") {
            return None;
        }
        let delay = detail.get("retryDelay")?.as_str()?;
        parse_retry_after(delay.trim().strip_suffix('s')?)
    })
}

/// `retry-after` as an HTTP date (RFC 9110), as the Unix second it names.
pub(crate) fn parse_http_date(value: &str) -> Option<i64> {
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()?
        .as_second();
    (at >= 0).then_some(at)
}

/// `retry-after` in seconds; a fraction rounds up. The HTTP-date form gives `None` here:
/// [`parse_http_date`] reads it as a reset time instead.
pub(crate) fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.min(MAX_WAIT_SECS));
    }
    seconds_from_float(value.parse::<f64>().ok()?)
}

/// A Unix time in seconds (`anthropic-ratelimit-unified-reset`); a fraction is dropped.
pub(crate) fn parse_unix_seconds(value: &str) -> Option<i64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<i64>() {
        return (secs >= 0).then_some(secs);
    }
    let secs = value.parse::<f64>().ok()?;
    // The bound keeps the cast exact and leaves room for arithmetic on the result.
    (secs.is_finite() && (0.0..4.0e12).contains(&secs)).then(|| secs.floor() as i64)
}

/// When Codex's usage limit ends, as its error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UsageLimit {
    /// `resets_in_seconds`.
    pub(crate) resets_in_secs: Option<u64>,
    /// `resets_at` (Unix seconds).
    pub(crate) resets_at: Option<i64>,
}

/// Codex's usage limit in a JSON error body, when the body says `usage_limit_reached` (in
/// `error.type`, `error.code` or at the top level).
pub(crate) fn usage_limit_reached(body: &str) -> Option<UsageLimit> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = match value.get("error") {
        Some(e) if e.is_object() => e,
        _ => &value,
    };
    let says = |field: &str| error.get(field).and_then(|v| v.as_str()) == Some(USAGE_LIMIT);
    if !(says("type") || says("code")) {
        return None;
    }
    Some(usage_limit_of(error))
}

/// The reset fields of a usage-limit error object (a `429` body's `error`, or an error event of
/// the stream).
pub(crate) fn usage_limit_of(error: &serde_json::Value) -> UsageLimit {
    UsageLimit {
        resets_in_secs: error.get("resets_in_seconds").and_then(json_seconds),
        resets_at: error.get("resets_at").and_then(json_unix_seconds),
    }
}

/// A Unix time in seconds in JSON (a number or numeric text), from 1970 on.
pub(crate) fn json_unix_seconds(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => parse_unix_seconds(&n.to_string()),
        serde_json::Value::String(s) => parse_unix_seconds(s),
        _ => None,
    }
}

const USAGE_LIMIT: &str = "usage_limit_reached";

/// A non-negative number of seconds in JSON (integer, fraction rounded up, or numeric text).
pub(crate) fn json_seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(secs) => Some(secs.min(MAX_WAIT_SECS)),
            None => seconds_from_float(n.as_f64()?),
        },
        serde_json::Value::String(s) => parse_retry_after(s),
        _ => None,
    }
}

fn seconds_from_float(secs: f64) -> Option<u64> {
    // The clamp keeps the cast exact.
    (secs.is_finite() && secs >= 0.0).then(|| secs.ceil().min(MAX_WAIT_SECS as f64) as u64)
}

/// What the provider said about a failure, from the usual JSON error shapes (Anthropic, OpenAI,
/// Google, DashScope, OAuth) or the body's text, on one line and truncated.
pub(crate) fn provider_message(body: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(value) => json_message(&value).unwrap_or_else(|| body.to_owned()),
        Err(_) => body.to_owned(),
    };
    truncate(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn json_message(value: &serde_json::Value) -> Option<String> {
    if let Some(first) = value.as_array().and_then(|items| items.first()) {
        // Google sometimes wraps its error in a one-element array.
        return json_message(first);
    }
    let text = |v: &serde_json::Value, field: &str| {
        v.get(field)
            .and_then(|f| f.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match value.get("error") {
        Some(error) if error.is_object() => {
            return text(error, "message")
                .or_else(|| text(error, "type"))
                .or_else(|| text(error, "code"))
                .or_else(|| text(error, "status"));
        }
        Some(serde_json::Value::String(code)) => {
            return Some(match text(value, "error_description") {
                Some(description) => format!("{code}: {description}"),
                None => code.clone(),
            });
        }
        _ => {}
    }
    text(value, "message").or_else(|| text(value, "detail"))
}

/// At most [`MAX_MESSAGE_CHARS`] characters, an ellipsis marking a cut.
pub(crate) fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The error with every occurrence of the credential replaced, in case a provider or a proxy
/// echoes it back: a token or key never travels in an error.
pub(crate) fn redact(error: ChatError, secret: &Secret) -> ChatError {
    let clean = |message: String| {
        if secret.is_empty() {
            message
        } else {
            message.replace(secret.expose(), "[redacted]")
        }
    };
    match error {
        ChatError::PaymentRequired {
            message,
            retry_after_secs,
        } => ChatError::PaymentRequired {
            message: clean(message),
            retry_after_secs,
        },
        ChatError::Unauthorized(message) => ChatError::Unauthorized(clean(message)),
        ChatError::Forbidden(message) => ChatError::Forbidden(clean(message)),
        ChatError::BadRequest { status, message } => ChatError::BadRequest {
            status,
            message: clean(message),
        },
        ChatError::Server { status, message } => ChatError::Server {
            status,
            message: clean(message),
        },
        ChatError::Refused { cause, message } => ChatError::Refused {
            cause,
            message: clean(message),
        },
        ChatError::ModelRefused { message } => ChatError::ModelRefused {
            message: clean(message),
        },
        ChatError::Network(message) => ChatError::Network(clean(message)),
        other @ (ChatError::RateLimited { .. } | ChatError::Blocked { .. }) => other,
        // A kind of error added after this was written: kept as it is unless its text holds
        // the credential, which is never shown.
        other if secret.is_empty() || !other.to_string().contains(secret.expose()) => other,
        other => ChatError::Network(clean(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message_of(error: &ChatError) -> Option<&str> {
        match error {
            ChatError::PaymentRequired { message, .. }
            | ChatError::Unauthorized(message)
            | ChatError::Forbidden(message)
            | ChatError::BadRequest { message, .. }
            | ChatError::Server { message, .. }
            | ChatError::Refused { message, .. }
            | ChatError::ModelRefused { message }
            | ChatError::Network(message) => Some(message),
            _ => None,
        }
    }

    #[test]
    fn a_429_carries_retry_after_and_the_unified_reset() {
        let error = classify(
            429,
            Some("17"),
            Some("1767225600"),
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert_eq!(
            error,
            ChatError::RateLimited {
                retry_after_secs: Some(17),
                reset_at: Some(1_767_225_600),
                limits: Default::default(),
            }
        );
        assert_eq!(
            classify(429, None, None, ""),
            ChatError::RateLimited {
                retry_after_secs: None,
                reset_at: None,
                limits: Default::default(),
            }
        );
    }

    #[test]
    fn usage_limit_reached_is_a_rate_limit_whatever_the_status() {
        let body = r#"{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_in_seconds":1234}}"#;
        for status in [400, 403, 429, 500] {
            assert_eq!(
                classify(status, None, None, body),
                ChatError::RateLimited {
                    retry_after_secs: Some(1234),
                    reset_at: None,
                    limits: Default::default(),
                },
                "status {status}"
            );
        }
        assert_eq!(
            classify(429, Some("5"), None, body),
            ChatError::RateLimited {
                retry_after_secs: Some(5),
                reset_at: None,
                limits: Default::default(),
            },
            "the header wins over the body"
        );
        assert_eq!(
            usage_limit_reached(r#"{"code":"usage_limit_reached"}"#),
            Some(UsageLimit {
                resets_in_secs: None,
                resets_at: None
            })
        );
        assert_eq!(
            classify(
                429,
                None,
                None,
                r#"{"error":{"type":"usage_limit_reached","resets_at":1767225600,"resets_in_seconds":60}}"#
            ),
            ChatError::RateLimited {
                retry_after_secs: Some(60),
                reset_at: Some(1_767_225_600),
                limits: Default::default(),
            },
            "resets_at is the reset time"
        );
        assert_eq!(
            usage_limit_reached(r#"{"error":{"code":"rate_limit_exceeded"}}"#),
            None
        );
    }

    #[test]
    fn statuses_map_to_their_kinds_with_the_provider_text() {
        let body = r#"{"error":{"message":"credit balance too low","type":"billing_error"}}"#;
        assert_eq!(
            classify(402, Some("60"), None, body),
            ChatError::PaymentRequired {
                message: "credit balance too low".into(),
                retry_after_secs: Some(60),
            }
        );
        assert_eq!(
            classify(
                401,
                None,
                None,
                r#"{"error":"invalid_token","error_description":"expired"}"#
            ),
            ChatError::Unauthorized("invalid_token: expired".into())
        );
        assert_eq!(
            classify(
                403,
                None,
                None,
                r#"[{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}]"#
            ),
            ChatError::Forbidden("Permission denied".into())
        );
        assert_eq!(
            classify(
                404,
                None,
                None,
                r#"{"code":"ModelNotFound","message":"no such model"}"#
            ),
            ChatError::BadRequest {
                status: 404,
                message: "no such model".into()
            }
        );
        assert_eq!(
            classify(503, None, None, "<html>\n  upstream   down\n</html>"),
            ChatError::Server {
                status: 503,
                message: "<html> upstream down </html>".into()
            }
        );
        assert_eq!(
            classify(500, None, None, ""),
            ChatError::Server {
                status: 500,
                message: "Internal Server Error".into()
            }
        );
        assert!(matches!(
            classify(302, None, None, ""),
            ChatError::Network(_)
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_rounds_fractions_up() {
        assert_eq!(parse_retry_after(" 30 "), Some(30));
        assert_eq!(parse_retry_after("1.2"), Some(2));
        assert_eq!(parse_retry_after("0"), Some(0));
        assert_eq!(parse_retry_after("-3"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("30"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(
            parse_retry_after("99999999999999999999"),
            Some(MAX_WAIT_SECS)
        );
        assert_eq!(parse_retry_after("1e300"), Some(MAX_WAIT_SECS));
        assert_eq!(parse_unix_seconds("1767225600"), Some(1_767_225_600));
        assert_eq!(parse_unix_seconds("1767225600.9"), Some(1_767_225_600));
        assert_eq!(parse_unix_seconds("-1"), None);
        assert_eq!(parse_unix_seconds("soon"), None);
    }

    #[test]
    fn the_refusals_of_today_are_classified_as_providers_md_says() {
        let extra = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Third-party apps now draw from your extra usage, not your plan limits. Add more at claude.ai/settings/usage and keep going."}}"#;
        assert!(matches!(
            classify(400, None, None, extra),
            ChatError::PaymentRequired { message, .. } if message.contains("claude.ai/settings/usage")
        ));
        let claude_code = r#"{"type":"error","error":{"type":"invalid_request_error","message":"This credential is only authorized for use with Claude Code and cannot be used for other API requests."}}"#;
        assert!(matches!(
            classify(400, None, None, claude_code),
            ChatError::Refused {
                cause: RefusalCause::ClaudeCodeOnly,
                ..
            }
        ));
        let unsupported = r#"{"error":{"code":403,"message":"This client is no longer supported for Gemini Code Assist for individuals.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"UNSUPPORTED_CLIENT"}]}}"#;
        assert!(matches!(
            classify(403, None, None, unsupported),
            ChatError::Refused {
                cause: RefusalCause::UnsupportedClient,
                ..
            }
        ));
        for model in [
            r#"{"detail":"The 'gpt-5' model is not supported when using Codex with a ChatGPT account."}"#,
            r#"{"error":{"type":"invalid_request_error","message":"The 'gpt-5' model is not supported when using Codex with a ChatGPT account."}}"#,
        ] {
            assert!(matches!(
                classify(400, None, None, model),
                ChatError::ModelRefused { .. }
            ));
        }
        let page = "<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>";
        assert_eq!(
            classify(403, None, None, page),
            ChatError::Blocked { status: 403 }
        );
        let retry = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"42s"}]}}"#;
        assert_eq!(
            classify(429, None, None, retry),
            ChatError::RateLimited {
                retry_after_secs: Some(42),
                reset_at: None,
                limits: Default::default(),
            }
        );
        assert_eq!(
            classify(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), None, ""),
            ChatError::RateLimited {
                retry_after_secs: None,
                reset_at: Some(1_445_412_480),
                limits: Default::default(),
            }
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(1000);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn a_credential_echoed_by_the_provider_is_redacted() {
        let secret = Secret::new("sk-simulated-very-secret");
        let error = classify(
            401,
            None,
            None,
            r#"{"error":{"message":"invalid x-api-key sk-simulated-very-secret"}}"#,
        );
        let error = redact(error, &secret);
        assert_eq!(
            error,
            ChatError::Unauthorized("invalid x-api-key [redacted]".into())
        );
        assert!(!error.to_string().contains("sk-simulated"));
        assert_eq!(
            redact(ChatError::Network("x".into()), &Secret::new("")),
            ChatError::Network("x".into())
        );
    }

    #[test]
    fn endpoints_append_segments_to_the_base_path() {
        let base = Url::parse("https://dashscope.aliyuncs.com/compatible-mode/v1/").unwrap();
        assert_eq!(
            endpoint(&base, &["chat", "completions"]).unwrap().as_str(),
            "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions"
        );
        let base = Url::parse("https://generativelanguage.googleapis.com").unwrap();
        assert_eq!(
            endpoint(&base, &["v1beta", "models", "a/b:generateContent"])
                .unwrap()
                .as_str(),
            "https://generativelanguage.googleapis.com/v1beta/models/a%2Fb:generateContent"
        );
        assert!(endpoint(&Url::parse("mailto:x@y").unwrap(), &["a"]).is_err());
    }

    proptest! {
        #[test]
        fn header_parsers_never_panic(value in any::<String>()) {
            if let Some(secs) = parse_retry_after(&value) {
                prop_assert!(secs <= MAX_WAIT_SECS);
            }
            if let Some(at) = parse_unix_seconds(&value) {
                prop_assert!(at >= 0);
            }
        }

        #[test]
        fn numeric_retry_after_round_trips(secs in 0u64..MAX_WAIT_SECS) {
            prop_assert_eq!(parse_retry_after(&secs.to_string()), Some(secs));
        }

        #[test]
        fn classification_never_panics_and_bounds_the_message(
            status in 0u16..1000,
            retry_after in proptest::option::of(any::<String>()),
            reset in proptest::option::of(any::<String>()),
            body in any::<String>(),
        ) {
            let error = classify(status, retry_after.as_deref(), reset.as_deref(), &body);
            if let Some(message) = message_of(&error) {
                // The Network form adds a short prefix to the provider text.
                prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 40);
            }
            if status == 429 {
                let is_rate_limited = matches!(error, ChatError::RateLimited { .. });
                prop_assert!(is_rate_limited);
            }
        }

        #[test]
        fn json_bodies_never_panic(body in r#"[\[\]{}":,a-z_ 0-9.\-]{0,80}"#) {
            let _ = usage_limit_reached(&body);
            let message = provider_message(&body);
            prop_assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        }

        #[test]
        fn usage_limit_reached_with_any_reset_is_rate_limited(
            status in 100u16..600,
            resets in 0u64..MAX_WAIT_SECS,
        ) {
            let body = format!(r#"{{"error":{{"type":"usage_limit_reached","resets_in_seconds":{resets}}}}}"#);
            prop_assert_eq!(
                classify(status, None, None, &body),
                ChatError::RateLimited { retry_after_secs: Some(resets), reset_at: None, limits: Default::default() }
            );
        }
    }
}
