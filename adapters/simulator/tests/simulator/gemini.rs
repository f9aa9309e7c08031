//! Gemini: the loopback redirect, Google's token endpoint with its client secret, refresh
//! tokens that do not rotate, Code Assist and the key API.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use llxprt_domain::{ChatProvider, OAuthProvider};
use llxprt_simulator::{Consent, Simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const P: OAuthProvider = OAuthProvider::Gemini;

fn gemini_refresh_form(refresh_token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.to_owned()),
        ("client_id", client_id(P).to_owned()),
        (
            "client_secret",
            SimulatorConfig::REAL_GEMINI_CLIENT_SECRET.to_owned(),
        ),
    ]
}

#[tokio::test]
async fn a_correct_client_signs_in_and_chats_through_code_assist() {
    let sim = Simulator::start().await.unwrap();
    let request = gemini_authorize_with(&sim, "http://localhost:39871/oauth2callback", &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    assert!(redirect.starts_with("http://localhost:39871/oauth2callback?"));
    assert_eq!(query_param(&redirect, "state").unwrap(), request.state);
    let code = query_param(&redirect, "code").unwrap();

    let (status, tokens) = send(
        http()
            .post(&sim.endpoints().gemini.token_url)
            .form(&gemini_exchange_form(&request, &code)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&tokens));
    assert!(tokens["refresh_token"].is_string());
    let token = str_of(&tokens, "access_token");

    let base = &sim.endpoints().gemini.code_assist_base_url;
    let (status, loaded) = send(
        http()
            .post(format!("{base}/v1internal:loadCodeAssist"))
            .bearer_auth(token)
            .json(&json!({"metadata": {"pluginType": "GEMINI"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{loaded}");
    let project = str_of(&loaded, "cloudaicompanionProject");

    let generate = |project: &str| {
        http()
            .post(format!("{base}/v1internal:generateContent"))
            .bearer_auth(token)
            .json(&json!({"model": "gemini-2.5-pro", "project": project,
                          "request": {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}}))
    };
    let (status, reply) = send(generate(project)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["response"]["candidates"][0]["content"]["parts"][0]["text"],
        "[simulated gemini/user1] you said: hello"
    );

    let (status, body) = send(generate("someone-elses-project")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");

    let counted = sim.counters(P, "user1");
    assert_eq!(counted.load_code_assist, 1);
    assert_eq!(counted.chat_requests, 1);
}

#[tokio::test]
async fn the_client_may_authenticate_with_http_basic() {
    let sim = Simulator::start().await.unwrap();
    let request = gemini_authorize_with(&sim, GEMINI_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let form: Vec<_> = gemini_exchange_form(&request, &code)
        .into_iter()
        .filter(|(k, _)| *k != "client_id" && *k != "client_secret")
        .collect();
    let basic = STANDARD.encode(format!(
        "{}:{}",
        client_id(P),
        SimulatorConfig::REAL_GEMINI_CLIENT_SECRET
    ));
    let (status, body) = send(
        http()
            .post(&sim.endpoints().gemini.token_url)
            .header("authorization", format!("Basic {basic}"))
            .form(&form),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
}

#[tokio::test]
async fn the_exchange_needs_the_client_secret() {
    let sim = Simulator::start().await.unwrap();
    let request = gemini_authorize_with(&sim, GEMINI_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let form: Vec<_> = gemini_exchange_form(&request, &code)
        .into_iter()
        .filter(|(k, _)| *k != "client_secret")
        .collect();
    let (status, body) = send(http().post(&sim.endpoints().gemini.token_url).form(&form)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(oauth_error(&body), "invalid_client");
}

#[tokio::test]
async fn the_token_endpoint_refuses_json() {
    let sim = Simulator::start().await.unwrap();
    let request = gemini_authorize_with(&sim, GEMINI_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let body: serde_json::Map<String, serde_json::Value> = gemini_exchange_form(&request, &code)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let (status, answer) = send(http().post(&sim.endpoints().gemini.token_url).json(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&answer), "invalid_request");
}

#[tokio::test]
async fn the_exchange_refuses_another_loopback_port() {
    let sim = Simulator::start().await.unwrap();
    let request = gemini_authorize_with(&sim, GEMINI_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    let code = query_param(&redirect, "code").unwrap();
    let mut form = gemini_exchange_form(&request, &code);
    form[2].1 = "http://127.0.0.1:45124/oauth2callback".to_owned();
    let (status, body) = send(http().post(&sim.endpoints().gemini.token_url).form(&form)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(&body), "invalid_grant");
}

#[tokio::test]
async fn authorize_accepts_only_loopback_callbacks_and_needs_offline_access() {
    let sim = Simulator::start().await.unwrap();
    for bad in [
        "https://127.0.0.1:45123/oauth2callback",
        "http://127.0.0.1:45123/callback",
        "http://example.com:45123/oauth2callback",
        "http://127.0.0.1/oauth2callback",
    ] {
        let request = gemini_authorize_with(&sim, bad, &[]);
        match sim.consent(&request.url).await.unwrap() {
            Consent::Page(page) => assert_eq!(page.status, 400, "{bad}"),
            other => panic!("{bad}: expected an error page, got {other:?}"),
        }
    }
    let request = gemini_authorize_with(&sim, GEMINI_REDIRECT, &[("access_type", "")]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    assert_eq!(query_param(&redirect, "error").unwrap(), "invalid_request");
    assert_eq!(query_param(&redirect, "state").unwrap(), request.state);
    assert!(query_param(&redirect, "code").is_none());
}

#[tokio::test]
async fn a_denied_consent_redirects_with_access_denied() {
    let sim = Simulator::start().await.unwrap();
    sim.deny_next_consent(P);
    let request = gemini_authorize_with(&sim, GEMINI_REDIRECT, &[]);
    let redirect = expect_redirect(sim.consent(&request.url).await.unwrap());
    assert_eq!(query_param(&redirect, "error").unwrap(), "access_denied");
    assert_eq!(query_param(&redirect, "state").unwrap(), request.state);
}

#[tokio::test]
async fn the_manual_page_shows_the_code_to_paste() {
    let sim = Simulator::start().await.unwrap();
    let manual = sim.endpoints().gemini.manual_redirect_uri.clone();
    let request = gemini_authorize_with(&sim, &manual, &[]);
    let Consent::CodeShown(code) = sim.consent(&request.url).await.unwrap() else {
        panic!("expected a code to paste");
    };
    let (status, body) = send(
        http()
            .post(&sim.endpoints().gemini.token_url)
            .form(&gemini_exchange_form(&request, code.expose())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
}

#[tokio::test]
async fn refresh_tokens_do_not_rotate() {
    let sim = Simulator::start().await.unwrap();
    let tokens = gemini_login(&sim).await;
    let refresh_token = str_of(&tokens, "refresh_token");
    for _ in 0..2 {
        let (status, body) = send(
            http()
                .post(&sim.endpoints().gemini.token_url)
                .form(&gemini_refresh_form(refresh_token)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}", oauth_error(&body));
        assert!(body.get("refresh_token").is_none());
        assert!(body["access_token"].is_string());
    }
    let counted = sim.counters(P, "user1");
    assert_eq!(counted.refreshes, 2);
    assert_eq!(counted.reused_refresh_tokens, 0);
}

#[tokio::test]
async fn the_key_api_takes_x_goog_api_key() {
    let sim = Simulator::start().await.unwrap();
    let key = SimulatorConfig::default_api_key(ChatProvider::Gemini);
    let base = &sim.endpoints().gemini.base_url;
    let generate = |path: &str, key: &str| {
        http()
            .post(format!("{base}/v1beta/models/{path}"))
            .header("x-goog-api-key", key)
            .json(&json!({"contents": [{"parts": [{"text": "hello"}]}]}))
    };
    let (status, reply) = send(generate("gemini-2.5-flash:generateContent", key.expose())).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["candidates"][0]["content"]["parts"][0]["text"],
        "[simulated gemini/api-key] you said: hello"
    );
    let (status, body) = send(generate("gemini-2.5-flash:generateContent", "AIza-wrong")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    let (status, _) = send(generate("gemini-2.5-flash:countTokens", key.expose())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let tokens = gemini_login(&sim).await;
    let with_token = http()
        .post(format!(
            "{base}/v1beta/models/gemini-2.5-flash:generateContent"
        ))
        .bearer_auth(str_of(&tokens, "access_token"))
        .json(&json!({"contents": [{"parts": [{"text": "hello"}]}]}));
    assert_eq!(send(with_token).await.0, StatusCode::FORBIDDEN);
}
