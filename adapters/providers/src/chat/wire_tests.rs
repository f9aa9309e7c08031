//! The adapters over real HTTP against tiny stubs on loopback: what the wire can do that the
//! simulator does not (chunks split anywhere, streams cut short, silent servers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use llxprt_application::ports::{
    ChatAuth, ChatClient, ChatError, ChatMessage, ChatReply, ChatRequest, Role,
};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};
use tokio::sync::mpsc;
use url::Url;

use super::*;

const WAIT: Duration = Duration::from_secs(20);

async fn serve(router: Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Url::parse(&format!("http://{addr}")).unwrap()
}

fn client() -> reqwest::Client {
    http_client(HttpOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        system_proxy: false,
    })
    .unwrap()
}

fn hello(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![ChatMessage {
            role: Role::User,
            text: "hello".into(),
        }],
    }
}

fn codex_token() -> Token {
    let mut token = Token::new(
        Secret::new("codex-access-secret"),
        UnixSeconds(i64::MAX / 2),
    );
    token.account_id = Some("acct-1".into());
    token
}

fn bucket(name: &str) -> BucketId {
    BucketId::new(OAuthProvider::Gemini, BucketName::parse(name).unwrap())
}

fn openai(codex_base: Url) -> OpenAiChat {
    OpenAiChat::new(
        OpenAiConfig {
            base_url: codex_base.clone(),
            codex_base_url: codex_base,
        },
        client(),
    )
}

fn sse_response(chunks: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

#[tokio::test]
async fn codex_deltas_reach_on_text_while_the_stream_is_still_open() {
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(8);
    let chunk_rx = Arc::new(Mutex::new(Some(chunk_rx)));
    let router = Router::new().route(
        "/responses",
        post(move || {
            let rx = chunk_rx.lock().unwrap().take().unwrap();
            async move { sse_response(rx) }
        }),
    );
    let chat = openai(serve(router).await);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<String>();
    let on_text = move |t: &str| {
        seen_tx.send(t.to_owned()).unwrap();
    };
    let token = codex_token();
    let request = hello("gpt-5-codex");
    let auth = ChatAuth::OAuth {
        bucket: &bucket("default"),
        token: &token,
    };
    let send = chat.send(&request, auth, &on_text);

    let drive = async {
        // The first delta is split mid-line, the second mid-character; the rest waits until the
        // client has shown the first delta, which proves it is passed on as it arrives.
        chunk_tx
            .send(Bytes::from_static(
                b"event: response.created\ndata: {\"type\":\"response.created\"}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.d",
            ))
            .await
            .unwrap();
        chunk_tx
            .send(Bytes::from_static(b"elta\",\"delta\":\"Hel\"}\n\n"))
            .await
            .unwrap();
        assert_eq!(seen_rx.recv().await.unwrap(), "Hel");
        let rest = "data: {\"type\":\"response.output_text.delta\",\"delta\":\"lo wörld\"}\n\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n";
        let split = rest.find('ö').unwrap() + 1;
        chunk_tx
            .send(Bytes::copy_from_slice(&rest.as_bytes()[..split]))
            .await
            .unwrap();
        chunk_tx
            .send(Bytes::copy_from_slice(&rest.as_bytes()[split..]))
            .await
            .unwrap();
    };
    let (reply, ()) = tokio::time::timeout(WAIT, async { tokio::join!(send, drive) })
        .await
        .expect("the first delta never reached on_text");
    assert_eq!(reply.unwrap().text, "Hello wörld");
    assert_eq!(seen_rx.recv().await.unwrap(), "lo wörld");
}

async fn codex_answering(body: &'static str) -> Result<String, ChatError> {
    let router = Router::new().route(
        "/responses",
        post(
            move || async move { ([("content-type", "text/event-stream")], body).into_response() },
        ),
    );
    let chat = openai(serve(router).await);
    let token = codex_token();
    let auth = ChatAuth::OAuth {
        bucket: &bucket("default"),
        token: &token,
    };
    tokio::time::timeout(WAIT, chat.send(&hello("m"), auth, &|_: &str| {}))
        .await
        .unwrap()
        .map(|r| r.text)
}

#[tokio::test]
async fn a_codex_stream_that_ends_before_completion_is_a_network_error() {
    let result =
        codex_answering("data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hel\"}\n\n")
            .await;
    assert!(matches!(result, Err(ChatError::Network(_))), "{result:?}");
}

#[tokio::test]
async fn a_codex_error_event_is_classified() {
    let result = codex_answering(
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hel\"}\n\nevent: error\ndata: {\"type\":\"error\",\"code\":\"usage_limit_reached\",\"resets_in_seconds\":120}\n\n",
    )
    .await;
    assert_eq!(
        result,
        Err(ChatError::RateLimited {
            retry_after_secs: Some(120),
            reset_at: None,
            limits: Default::default(),
        })
    );
    let result = codex_answering(
        "data: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"server_error\",\"message\":\"the model crashed\"}}}\n\n",
    )
    .await;
    assert!(
        matches!(&result, Err(ChatError::Server { message, .. }) if message == "the model crashed"),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_codex_usage_limit_is_a_rate_limit_even_as_a_404() {
    let router = Router::new().route(
        "/responses",
        post(|| async {
            (
                StatusCode::NOT_FOUND,
                r#"{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","resets_in_seconds":3600}}"#,
            )
        }),
    );
    let chat = openai(serve(router).await);
    let token = codex_token();
    let auth = ChatAuth::OAuth {
        bucket: &bucket("default"),
        token: &token,
    };
    let result = chat.send(&hello("m"), auth, &|_: &str| {}).await;
    assert_eq!(
        result,
        Err(ChatError::RateLimited {
            retry_after_secs: Some(3600),
            reset_at: None,
            limits: Default::default(),
        })
    );
}

#[tokio::test]
async fn anthropic_rate_limit_headers_are_read_and_an_echoed_key_never_leaves() {
    let router = Router::new().route(
        "/v1/messages",
        post(|headers: HeaderMap| async move {
            let key = headers["x-api-key"].to_str().unwrap().to_owned();
            if key.ends_with("-limited") {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        ("retry-after", "42"),
                        ("anthropic-ratelimit-unified-reset", "1767225600"),
                    ],
                    r#"{"type":"error","error":{"type":"rate_limit_error","message":"limited"}}"#.to_owned(),
                )
                    .into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    format!(r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key: {key}"}}}}"#),
                )
                    .into_response()
            }
        }),
    );
    let chat = AnthropicChat::new(
        AnthropicConfig {
            base_url: serve(router).await,
        },
        client(),
    );
    let limited = Secret::new("sk-ant-simulated-limited");
    let result = chat
        .send(&hello("m"), ChatAuth::ApiKey(&limited), &|_: &str| {})
        .await;
    assert_eq!(
        result,
        Err(ChatError::RateLimited {
            retry_after_secs: Some(42),
            reset_at: Some(1_767_225_600),
            limits: Default::default(),
        })
    );
    let wrong = Secret::new("sk-ant-simulated-wrong");
    let error = chat
        .send(&hello("m"), ChatAuth::ApiKey(&wrong), &|_: &str| {})
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ChatError::Unauthorized("invalid x-api-key: [redacted]".into())
    );
}

#[tokio::test]
async fn unreachable_silent_and_garbled_servers_are_network_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let key = Secret::new("key");
    let qwen =
        |base: Url, http: reqwest::Client| QwenChat::new(QwenConfig { base_url: base }, http);

    let result = qwen(closed, client())
        .send(&hello("m"), ChatAuth::ApiKey(&key), &|_: &str| {})
        .await;
    assert!(matches!(result, Err(ChatError::Network(_))), "{result:?}");

    let router = Router::new()
        .route(
            "/silent/chat/completions",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "{}"
            }),
        )
        .route(
            "/garbled/chat/completions",
            post(|| async { "<html>ok</html>" }),
        );
    let base = serve(router).await;
    let impatient = http_client(HttpOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_millis(300),
        system_proxy: false,
    })
    .unwrap();
    let result = qwen(base.join("silent").unwrap(), impatient)
        .send(&hello("m"), ChatAuth::ApiKey(&key), &|_: &str| {})
        .await;
    assert!(matches!(result, Err(ChatError::Network(_))), "{result:?}");
    let result = qwen(base.join("garbled").unwrap(), client())
        .send(&hello("m"), ChatAuth::ApiKey(&key), &|_: &str| {})
        .await;
    assert!(matches!(result, Err(ChatError::Network(_))), "{result:?}");
}

#[tokio::test]
async fn concurrent_first_messages_of_a_bucket_load_code_assist_once() {
    let loads = Arc::new(AtomicUsize::new(0));
    let counted = loads.clone();
    let router = Router::new()
        .route(
            "/v1internal:loadCodeAssist",
            post(move || {
                let loads = counted.clone();
                async move {
                    let n = loads.fetch_add(1, Ordering::SeqCst);
                    // Slow enough that the concurrent requests all wait on this one.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    format!(r#"{{"cloudaicompanionProject":"proj-{n}"}}"#)
                }
            }),
        )
        .route(
            "/v1internal:streamGenerateContent",
            post(|body: String| async move {
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                let project = body["project"].as_str().unwrap().to_owned();
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    format!(
                        "data: {{\"response\":{{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{project}\"}}]}}}}]}}}}\n\n"
                    ),
                )
            }),
        );
    let base = serve(router).await;
    let chat = GeminiChat::new(
        GeminiConfig {
            base_url: base.clone(),
            code_assist_base_url: base,
            project: None,
            onboarding_poll: std::time::Duration::from_millis(10),
        },
        client(),
    );
    let token = Token::new(Secret::new("google-access"), UnixSeconds(i64::MAX / 2));
    let (work, home) = (bucket("work"), bucket("home"));
    let replies = tokio::time::timeout(
        WAIT,
        futures_util::future::join_all([
            ask(&chat, &work, &token),
            ask(&chat, &work, &token),
            ask(&chat, &work, &token),
            ask(&chat, &home, &token),
        ]),
    )
    .await
    .unwrap();
    let projects: Vec<String> = replies.into_iter().map(|r| r.unwrap().text).collect();
    assert_eq!(projects[0], projects[1]);
    assert_eq!(projects[1], projects[2]);
    assert_ne!(projects[0], projects[3], "each bucket has its own project");
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    let again = ask(&chat, &work, &token).await.unwrap().text;
    assert_eq!(again, projects[0]);
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

async fn ask(chat: &GeminiChat, bucket: &BucketId, token: &Token) -> Result<ChatReply, ChatError> {
    let auth = ChatAuth::OAuth { bucket, token };
    chat.send(&hello("gemini-2.5-pro"), auth, &|_: &str| {})
        .await
}

// ---- the limits a subscription's answers report (issue 16) ----

const ANTHROPIC_STREAM: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

const CODEX_STREAM: &str = "data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n";

/// A stub answering every request with `status`, `headers` and `body`.
async fn answering(
    path: &'static str,
    status: StatusCode,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
) -> Url {
    let router = Router::new().route(
        path,
        post(move || {
            let headers = headers.clone();
            async move {
                let mut response = (status, body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
                    .headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                response
            }
        }),
    );
    serve(router).await
}

const UNIFIED: [(&str, &str); 5] = [
    ("anthropic-ratelimit-unified-status", "allowed_warning"),
    ("anthropic-ratelimit-unified-5h-utilization", "0.96"),
    ("anthropic-ratelimit-unified-5h-reset", "1767225600"),
    ("anthropic-ratelimit-unified-7d-utilization", "0.31"),
    ("anthropic-ratelimit-unified-7d-reset", "1767744000"),
];

async fn anthropic_oauth_send(base: Url) -> Result<ChatReply, ChatError> {
    let chat = AnthropicChat::new(AnthropicConfig { base_url: base }, client());
    let token = Token::new(Secret::new("sk-ant-oat-secret"), UnixSeconds(i64::MAX / 2));
    let bucket = BucketId::new(OAuthProvider::Anthropic, BucketName::parse("work").unwrap());
    let auth = ChatAuth::OAuth {
        bucket: &bucket,
        token: &token,
    };
    tokio::time::timeout(WAIT, chat.send(&hello("m"), auth, &|_: &str| {}))
        .await
        .unwrap()
}

async fn codex_send(base: Url) -> Result<ChatReply, ChatError> {
    let chat = openai(base);
    let token = codex_token();
    let auth = ChatAuth::OAuth {
        bucket: &bucket("default"),
        token: &token,
    };
    tokio::time::timeout(WAIT, chat.send(&hello("m"), auth, &|_: &str| {}))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_anthropic_subscription_reply_carries_its_5h_and_7d_windows() {
    let base = answering(
        "/v1/messages",
        StatusCode::OK,
        UNIFIED.to_vec(),
        ANTHROPIC_STREAM,
    )
    .await;
    let reply = anthropic_oauth_send(base).await.unwrap();
    assert_eq!(reply.text, "hi");
    assert_eq!(reply.limits.percentages(), "5h 96%, 7d 31%");
    let resets: Vec<_> = reply.limits.windows.iter().map(|w| w.resets_at).collect();
    assert_eq!(
        resets,
        [
            Some(UnixSeconds(1_767_225_600)),
            Some(UnixSeconds(1_767_744_000))
        ]
    );
}

#[tokio::test]
async fn an_anthropic_429_carries_the_windows_and_the_binding_reset() {
    let mut headers = UNIFIED.to_vec();
    headers[0] = ("anthropic-ratelimit-unified-status", "rejected");
    headers[1] = ("anthropic-ratelimit-unified-5h-utilization", "1.0");
    headers.push(("anthropic-ratelimit-unified-reset", "1767225600"));
    headers.push(("retry-after", "124633"));
    let base = answering(
        "/v1/messages",
        StatusCode::TOO_MANY_REQUESTS,
        headers,
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"limited"}}"#,
    )
    .await;
    match anthropic_oauth_send(base).await {
        Err(ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            limits,
        }) => {
            assert_eq!(retry_after_secs, Some(124_633));
            assert_eq!(reset_at, Some(1_767_225_600));
            assert_eq!(limits.percentages(), "5h 100%, 7d 31%");
        }
        other => panic!("not a rate limit: {other:?}"),
    }
}

#[tokio::test]
async fn an_anthropic_api_key_reply_reports_no_windows() {
    let base = answering(
        "/v1/messages",
        StatusCode::OK,
        UNIFIED.to_vec(),
        ANTHROPIC_STREAM,
    )
    .await;
    let chat = AnthropicChat::new(AnthropicConfig { base_url: base }, client());
    let key = Secret::new("sk-ant-api-secret");
    let reply = chat
        .send(&hello("m"), ChatAuth::ApiKey(&key), &|_: &str| {})
        .await
        .unwrap();
    assert!(reply.limits.is_empty(), "{:?}", reply.limits);
}

const CODEX_LIMITS: [(&str, &str); 9] = [
    ("x-codex-primary-used-percent", "72"),
    ("x-codex-primary-window-minutes", "300"),
    ("x-codex-primary-reset-at", "1767225600"),
    ("x-codex-secondary-used-percent", "12.5"),
    ("x-codex-secondary-window-minutes", "10080"),
    ("x-codex-secondary-reset-at", "1767744000"),
    ("x-codex-credits-has-credits", "true"),
    ("x-codex-credits-unlimited", "false"),
    ("x-codex-credits-balance", "4.20"),
];

#[tokio::test]
async fn a_codex_reply_carries_its_windows_and_credits() {
    let base = answering(
        "/responses",
        StatusCode::OK,
        CODEX_LIMITS.to_vec(),
        CODEX_STREAM,
    )
    .await;
    let reply = codex_send(base).await.unwrap();
    assert_eq!(reply.text, "hi");
    assert_eq!(reply.limits.percentages(), "5h 72%, weekly 13%");
    let credits = reply.limits.credits.expect("credits");
    assert_eq!(credits.to_string(), "credits 4.20");
}

#[tokio::test]
async fn a_codex_429_carries_the_windows_and_the_usage_limits_reset() {
    let mut headers = CODEX_LIMITS.to_vec();
    headers[0] = ("x-codex-primary-used-percent", "100");
    let base = answering(
        "/responses",
        StatusCode::TOO_MANY_REQUESTS,
        headers,
        r#"{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","resets_at":1767225600,"resets_in_seconds":1800}}"#,
    )
    .await;
    match codex_send(base).await {
        Err(ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            limits,
        }) => {
            assert_eq!(retry_after_secs, Some(1800));
            assert_eq!(reset_at, Some(1_767_225_600));
            assert_eq!(limits.percentages(), "5h 100%, weekly 13%");
        }
        other => panic!("not a rate limit: {other:?}"),
    }
}

#[tokio::test]
async fn garbage_limit_headers_give_no_limits_and_do_not_spoil_the_reply() {
    let garbage = vec![
        ("anthropic-ratelimit-unified-5h-utilization", "NaN"),
        ("anthropic-ratelimit-unified-7d-utilization", "a lot"),
        ("x-codex-primary-used-percent", "inf"),
        ("x-codex-secondary-used-percent", "-4"),
        ("x-codex-credits-has-credits", "maybe"),
        ("x-codex-credits-unlimited", "yes"),
    ];
    let base = answering(
        "/v1/messages",
        StatusCode::OK,
        garbage.clone(),
        ANTHROPIC_STREAM,
    )
    .await;
    let reply = anthropic_oauth_send(base).await.unwrap();
    assert_eq!(reply.text, "hi");
    assert!(reply.limits.is_empty(), "{:?}", reply.limits);
    let base = answering("/responses", StatusCode::OK, garbage, CODEX_STREAM).await;
    let reply = codex_send(base).await.unwrap();
    assert_eq!(reply.text, "hi");
    assert!(reply.limits.is_empty(), "{:?}", reply.limits);
}

#[tokio::test]
async fn a_codex_usage_limit_mid_stream_carries_the_windows_of_the_answers_headers() {
    let base = answering(
        "/responses",
        StatusCode::OK,
        CODEX_LIMITS.to_vec(),
        "data: {\"type\":\"error\",\"code\":\"usage_limit_reached\",\"resets_at\":1767225600,\"resets_in_seconds\":60}\n\n",
    )
    .await;
    match codex_send(base).await {
        Err(ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            limits,
        }) => {
            assert_eq!(retry_after_secs, Some(60));
            assert_eq!(reset_at, Some(1_767_225_600));
            assert_eq!(limits.percentages(), "5h 72%, weekly 13%");
        }
        other => panic!("not a rate limit: {other:?}"),
    }
}
