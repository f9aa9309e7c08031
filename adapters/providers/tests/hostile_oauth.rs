//! The flows against a hostile token endpoint on loopback: one that echoes what it was sent
//! into its errors, and one that issues tokens llxprt must not keep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use llxprt_application::ports::{Clock, OAuthFlow, PromptError, UserPrompt};
use llxprt_domain::{Secret, UnixSeconds};
use llxprt_providers::oauth::{
    AnthropicConfig, AnthropicFlow, BrowserEnv, OAuthHttp, QwenConfig, QwenFlow, SystemBrowser,
};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> UnixSeconds {
        UnixSeconds(1_800_000_000)
    }
}

/// Pastes `answer` to every question and shows nothing.
struct Paster(&'static str);

#[async_trait]
impl UserPrompt for Paster {
    fn show(&self, _line: &str) {}
    fn waiting(&self, _what: &str, _done: bool) {}
    async fn ask(&self, _question: &str) -> Result<String, PromptError> {
        Ok(self.0.to_owned())
    }
}

/// What a stub endpoint answers, from the request body.
type Answer = fn(&str) -> String;

/// A token endpoint answering every request with `status` and `body(request body)`, keeping
/// the request bodies it got.
async fn token_endpoint(status: StatusCode, body: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = seen.clone();
    let app = Router::new().fallback(move |request: Bytes| {
        let kept = kept.clone();
        async move {
            let request = String::from_utf8_lossy(&request).into_owned();
            kept.lock().unwrap().push(request.clone());
            (
                status,
                [("content-type", "application/json")],
                body(&request),
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn anthropic(token_url: &str) -> AnthropicFlow {
    AnthropicFlow::new(
        AnthropicConfig {
            authorize_url: format!("{token_url}/authorize"),
            token_url: token_url.to_owned(),
            client_id: "client".into(),
            redirect_uri: format!("{token_url}/code"),
            scopes: vec!["user:inference".into()],
        },
        OAuthHttp::direct().unwrap(),
        Arc::new(SystemBrowser::new(BrowserEnv::default(), true)),
        Arc::new(FixedClock),
    )
    .unwrap()
}

fn qwen(token_url: &str) -> QwenFlow {
    QwenFlow::new(
        QwenConfig {
            device_authorization_url: format!("{token_url}/device"),
            token_url: token_url.to_owned(),
            client_id: "client".into(),
            scopes: vec!["openid".into()],
        },
        OAuthHttp::direct().unwrap(),
        Arc::new(SystemBrowser::new(BrowserEnv::default(), true)),
        Arc::new(FixedClock),
    )
    .unwrap()
}

/// The secrets a JSON or form request body carried: its code, verifier, state and refresh token.
fn values_sent(body: &str) -> Vec<String> {
    const SECRET_FIELDS: [&str; 4] = ["code", "code_verifier", "state", "refresh_token"];
    let fields: Vec<(String, String)> = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
            .collect(),
        _ => url::form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    };
    fields
        .into_iter()
        .filter(|(k, _)| SECRET_FIELDS.contains(&k.as_str()))
        .map(|(_, v)| v)
        .collect()
}

/// An OAuth error whose description repeats the whole request.
fn echo(request: &str) -> String {
    serde_json::json!({
        "error": "invalid_grant",
        "error_description": format!("we did not like {request}"),
    })
    .to_string()
}

#[tokio::test]
async fn secrets_a_token_endpoint_echoes_are_redacted_from_every_error_shown() {
    let (url, seen) = token_endpoint(StatusCode::BAD_REQUEST, echo).await;
    let refresh_token = Secret::new("rt-very-secret-0123456789");

    let refused = anthropic(&url).refresh(&refresh_token).await.unwrap_err();
    let shown = refused.to_string();
    assert!(shown.contains("invalid_grant"), "{shown}");
    assert!(!shown.contains("0123456789"), "{shown}");

    let refused = qwen(&url).refresh(&refresh_token).await.unwrap_err();
    assert!(!refused.to_string().contains("0123456789"), "{refused}");

    // The code exchange sends a code, a verifier and a state; none comes back on screen.
    let failed = anthropic(&url)
        .login(&Paster("code-very-secret-abcdefghij"))
        .await
        .unwrap_err()
        .to_string();
    let requests = seen.lock().unwrap().clone();
    let exchange = requests.last().unwrap();
    let sent = values_sent(exchange);
    assert!(sent.len() >= 3, "{exchange}");
    for secret in &sent {
        assert!(!failed.contains(secret.as_str()), "{secret} in: {failed}");
    }
    assert!(!failed.contains("abcdefghij"), "{failed}");
}

#[tokio::test]
async fn a_token_llxprt_must_not_keep_is_refused_with_a_clear_error() {
    let bodies: [(&str, Answer); 4] = [
        ("an empty access token", |_| {
            r#"{"access_token":"","token_type":"Bearer","expires_in":3600}"#.into()
        }),
        ("control characters", |_| {
            r#"{"access_token":"at\r\nX-Injected: 1","token_type":"Bearer"}"#.into()
        }),
        ("a lifetime of a century", |_| {
            r#"{"access_token":"at","token_type":"Bearer","expires_in":3155760000}"#.into()
        }),
        ("a negative lifetime", |_| {
            r#"{"access_token":"at","token_type":"Bearer","expires_in":-60}"#.into()
        }),
    ];
    for (case, body) in bodies {
        let (url, _) = token_endpoint(StatusCode::OK, body).await;
        let rt = Secret::new("rt");
        for refused in [
            anthropic(&url).refresh(&rt).await.map(drop),
            qwen(&url).refresh(&rt).await.map(drop),
        ] {
            let error = refused.expect_err(case).to_string();
            assert!(
                error.contains("access_token") || error.contains("expires_in"),
                "{case}: {error}"
            );
        }
    }

    // An empty answer is an error, never a silent success.
    let empties: [Answer; 2] = [|_| String::new(), |_| "{}".to_owned()];
    for body in empties {
        let (url, _) = token_endpoint(StatusCode::OK, body).await;
        let rt = Secret::new("rt");
        for refused in [
            anthropic(&url).refresh(&rt).await.map(drop),
            qwen(&url).refresh(&rt).await.map(drop),
        ] {
            let error = refused.expect_err("an empty answer").to_string();
            assert!(error.contains("could not be read"), "{error}");
        }
    }

    // Qwen's resource_url is where the token goes with every message: never in clear text.
    let (url, _) = token_endpoint(StatusCode::OK, |_| {
        r#"{"access_token":"at","token_type":"Bearer","resource_url":"http://evil.example"}"#.into()
    })
    .await;
    let error = qwen(&url)
        .refresh(&Secret::new("rt"))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("resource_url"), "{error}");
    // A loopback address (the simulator, a local proxy) stays usable.
    let (url, _) = token_endpoint(StatusCode::OK, |_| {
        r#"{"access_token":"at","token_type":"Bearer","resource_url":"http://127.0.0.1:9/qwen"}"#
            .into()
    })
    .await;
    let token = qwen(&url).refresh(&Secret::new("rt")).await.unwrap();
    assert_eq!(
        token.resource_url.as_deref(),
        Some("http://127.0.0.1:9/qwen")
    );
}
