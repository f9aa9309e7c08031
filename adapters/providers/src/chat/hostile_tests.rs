//! The chat adapters against hostile servers on loopback: redirects that would carry the key
//! away, answers too large to hold, streams that never end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use llxprt_application::ports::{ChatAuth, ChatClient, ChatError, ChatMessage, ChatRequest, Role};
use llxprt_domain::Secret;
use url::Url;

use super::sse::StreamBounds;
use super::*;

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

fn hello() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            text: "my private conversation".into(),
        }],
    }
}

/// A server that records every request it gets and the credential headers it carried.
#[derive(Clone, Default)]
struct Catcher {
    requests: Arc<AtomicUsize>,
    credentials: Arc<Mutex<Vec<String>>>,
}

impl Catcher {
    async fn start(&self) -> Url {
        let catcher = self.clone();
        serve(Router::new().fallback(move |headers: HeaderMap| {
            let catcher = catcher.clone();
            async move {
                catcher.requests.fetch_add(1, Ordering::SeqCst);
                for name in ["x-api-key", "x-goog-api-key", "authorization"] {
                    if let Some(value) = headers.get(name) {
                        let value = value.to_str().unwrap_or("").to_owned();
                        catcher.credentials.lock().unwrap().push(value);
                    }
                }
                r#"{"content":[{"type":"text","text":"stolen"}]}"#
            }
        }))
        .await
    }
}

/// A provider that answers every request with `status` and `Location: {target}{path}`.
async fn redirecting_to(target: &Url, status: StatusCode) -> Url {
    let target = target.clone();
    serve(Router::new().fallback(move |uri: axum::http::Uri| {
        let location = format!("{}{}", target.as_str().trim_end_matches('/'), uri.path());
        async move { (status, [("location", location)]).into_response() }
    }))
    .await
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused_and_the_key_never_leaves() {
    let catcher = Catcher::default();
    let elsewhere = catcher.start().await;
    let key = Secret::new("sk-hostile-redirect-key");
    for status in [
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
    ] {
        let provider = redirecting_to(&elsewhere, status).await;
        let anthropic = AnthropicChat::new(
            AnthropicConfig {
                base_url: provider.clone(),
            },
            client(),
        );
        let gemini = GeminiChat::new(
            GeminiConfig {
                base_url: provider.clone(),
                code_assist_base_url: provider,
            },
            client(),
        );
        let clients: [&dyn ChatClient; 2] = [&anthropic, &gemini];
        for chat in clients {
            let result = chat
                .send(&hello(), ChatAuth::ApiKey(&key), &|_: &str| {})
                .await;
            let Err(ChatError::Network(message)) = &result else {
                panic!("{status}: {result:?}");
            };
            assert!(message.contains("redirect"), "{message}");
            assert!(message.contains("base_url"), "{message}");
            assert!(!message.contains(key.expose()), "{message}");
        }
    }
    assert_eq!(catcher.requests.load(Ordering::SeqCst), 0);
    assert!(catcher.credentials.lock().unwrap().is_empty());
}

/// `size` bytes of JSON-ish filler, streamed in chunks (no `content-length`) when `chunked`.
fn filler(size: usize, chunked: bool) -> Body {
    if chunked {
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        let chunks = std::iter::repeat_n(chunk, size / (64 << 10));
        Body::from_stream(futures_util::stream::iter(
            chunks.map(Ok::<_, std::convert::Infallible>),
        ))
    } else {
        Body::from(vec![b' '; size])
    }
}

#[tokio::test]
async fn answers_and_error_bodies_too_large_to_hold_are_refused_before_they_are_read_whole() {
    let key = Secret::new("sk-test");
    for chunked in [true, false] {
        let huge_answer = serve(Router::new().fallback(move || async move {
            Response::builder()
                .header("content-type", "application/json")
                .body(filler(40 << 20, chunked))
                .unwrap()
        }))
        .await;
        let chat = AnthropicChat::new(
            AnthropicConfig {
                base_url: huge_answer,
            },
            client(),
        );
        let result = chat
            .send(&hello(), ChatAuth::ApiKey(&key), &|_: &str| {})
            .await;
        let Err(ChatError::Network(message)) = &result else {
            panic!("chunked {chunked}: {result:?}");
        };
        assert!(message.contains("too large"), "{message}");

        // An error page of forty megabytes is not read whole either; its status still counts.
        let huge_error = serve(Router::new().fallback(move || async move {
            Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(filler(40 << 20, chunked))
                .unwrap()
        }))
        .await;
        let chat = AnthropicChat::new(
            AnthropicConfig {
                base_url: huge_error,
            },
            client(),
        );
        let result = chat
            .send(&hello(), ChatAuth::ApiKey(&key), &|_: &str| {})
            .await;
        assert!(
            matches!(result, Err(ChatError::Server { status: 503, .. })),
            "chunked {chunked}: {result:?}"
        );
    }
}

/// A Responses stream that sends `frame` every `every`, without end.
async fn endless_stream(frame: &'static str, every: Duration) -> reqwest::Response {
    let base = serve(Router::new().route(
        "/responses",
        post(move || async move {
            let frames = futures_util::stream::unfold((), move |()| async move {
                tokio::time::sleep(every).await;
                Some((
                    Ok::<_, std::io::Error>(Bytes::from_static(frame.as_bytes())),
                    (),
                ))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(frames))
                .unwrap()
        }),
    ))
    .await;
    client()
        .post(base.join("responses").unwrap())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stream_that_never_ends_is_cut_at_its_size_bound() {
    const DELTA: &str = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n\n";
    let response = endless_stream(DELTA, Duration::ZERO).await;
    let shown = Arc::new(AtomicUsize::new(0));
    let counted = shown.clone();
    let result = codex::read_stream(
        response,
        &move |text: &str| {
            counted.fetch_add(text.len(), Ordering::SeqCst);
        },
        StreamBounds::new(1 << 20, Duration::from_secs(600)),
    )
    .await;
    let Err(ChatError::Network(message)) = &result else {
        panic!("{result:?}");
    };
    assert!(message.contains("cut short"), "{message}");
    assert!(shown.load(Ordering::SeqCst) <= 1 << 20);
}

#[tokio::test]
async fn keep_alive_comments_alone_do_not_keep_a_stream_open_forever() {
    let response = endless_stream(": keep-alive\n\n", Duration::from_millis(20)).await;
    let result = codex::read_stream(
        response,
        &|_: &str| {},
        StreamBounds::new(1 << 30, Duration::from_millis(300)),
    )
    .await;
    let Err(ChatError::Network(message)) = &result else {
        panic!("{result:?}");
    };
    assert!(message.contains("keep-alive"), "{message}");
}

#[tokio::test]
async fn an_empty_reply_is_an_error_not_a_silent_success() {
    let empty = serve(Router::new().fallback(|| async {
        (
            [("content-type", "application/json")],
            r#"{"choices":[{"message":{"role":"assistant","content":""}}]}"#,
        )
    }))
    .await;
    let clients = chat_clients(
        ChatEndpoints {
            anthropic: AnthropicConfig {
                base_url: empty.clone(),
            },
            gemini: GeminiConfig {
                base_url: empty.clone(),
                code_assist_base_url: empty.clone(),
            },
            qwen: QwenConfig {
                base_url: empty.clone(),
            },
            openai: OpenAiConfig {
                base_url: empty.clone(),
                codex_base_url: empty,
            },
        },
        &client(),
    );
    let chat = clients.get(llxprt_domain::ChatProvider::OpenAi).unwrap();
    let result = chat
        .send(
            &hello(),
            ChatAuth::ApiKey(&Secret::new("sk")),
            &|_: &str| {},
        )
        .await;
    let Err(ChatError::Network(message)) = &result else {
        panic!("{result:?}");
    };
    assert!(message.contains("empty reply"), "{message}");
}

#[tokio::test]
async fn the_sandboxs_qwen_client_sends_nothing_to_a_real_host_a_token_names() {
    let catcher = Catcher::default();
    let local = catcher.start().await;
    let chat = QwenChat::new(QwenConfig { base_url: local }, client()).confined_to_loopback();
    let mut token = llxprt_domain::Token::new(
        Secret::new("real-qwen-token"),
        llxprt_domain::UnixSeconds(i64::MAX / 2),
    );
    // A host off this machine: TEST-NET-1 (RFC 5737), which routes nowhere even if tried.
    token.resource_url = Some("192.0.2.1".into());
    let bucket = llxprt_domain::BucketId::new(
        llxprt_domain::OAuthProvider::Qwen,
        llxprt_domain::BucketName::parse("default").unwrap(),
    );
    let result = chat
        .send(
            &hello(),
            ChatAuth::OAuth {
                token: &token,
                bucket: &bucket,
            },
            &|_: &str| {},
        )
        .await;
    let Err(ChatError::Forbidden(message)) = &result else {
        panic!("{result:?}");
    };
    assert!(message.contains("sandbox"), "{message}");
    assert!(!message.contains("real-qwen-token"), "{message}");
}
