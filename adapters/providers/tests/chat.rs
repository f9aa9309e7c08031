//! The chat adapters against the provider simulator over real HTTP on loopback: every provider
//! answers with OAuth and with a key, and every failure the providers signal is classified.

// Like the tests, the helpers panic on whatever a correct simulator never does (clippy's test
// exemption covers only `#[test]`s), and the shared simulator helpers are not all used here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../simulator/tests/simulator/support.rs"]
mod support;

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llxprt_application::ports::{
    ChatAuth, ChatClient, ChatError, ChatMessage, ChatReply, ChatRequest, Role,
};
use llxprt_domain::{
    BucketId, BucketName, ChatProvider, OAuthProvider, Secret, Token, UnixSeconds,
};
use llxprt_providers::chat::{
    chat_clients, http_client, AnthropicConfig, ChatEndpoints, GeminiConfig, HttpOptions,
    OpenAiConfig, QwenConfig,
};
use llxprt_simulator::{ForcedFailure, Simulator, SimulatorConfig, SimulatorHandle};
use url::Url;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn clients(sim: &SimulatorHandle) -> llxprt_application::services::ChatClients {
    let url = |s: &str| Url::parse(s).unwrap();
    let e = sim.endpoints();
    let http = http_client(HttpOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(20),
        system_proxy: false,
    })
    .unwrap();
    chat_clients(
        ChatEndpoints {
            anthropic: AnthropicConfig {
                base_url: url(&e.anthropic.base_url),
            },
            gemini: GeminiConfig {
                base_url: url(&e.gemini.base_url),
                code_assist_base_url: url(&e.gemini.code_assist_base_url),
                project: None,
                onboarding_poll: std::time::Duration::from_millis(10),
            },
            qwen: QwenConfig {
                base_url: url(&e.qwen.base_url),
            },
            openai: OpenAiConfig {
                base_url: url(&e.openai.base_url),
                codex_base_url: url(&e.codex.base_url),
            },
        },
        &http,
    )
}

/// A whole login of the simulator's current login account, as the token store would keep it.
async fn login(sim: &SimulatorHandle, provider: OAuthProvider) -> Token {
    let response = match provider {
        OAuthProvider::Anthropic => support::anthropic_login(sim).await,
        OAuthProvider::Gemini => support::gemini_login(sim).await,
        OAuthProvider::Qwen => support::qwen_login(sim).await,
        OAuthProvider::Codex => support::codex_login(sim).await,
    };
    let lifetime = response["expires_in"].as_i64().unwrap_or(3600);
    let mut token = Token::new(
        Secret::new(support::str_of(&response, "access_token")),
        UnixSeconds(now() + lifetime),
    );
    token.resource_url = response["resource_url"].as_str().map(str::to_owned);
    if response.get("id_token").is_some() {
        token.account_id = Some(support::codex_account_id(&response));
    }
    token
}

fn bucket(provider: OAuthProvider, name: &str) -> BucketId {
    BucketId::new(provider, BucketName::parse(name).unwrap())
}

/// A model every provider of the simulator takes (Codex offers a ChatGPT account only its own).
const MODEL: &str = "gpt-5.5";

fn hello() -> ChatRequest {
    ChatRequest {
        model: MODEL.into(),
        messages: vec![
            ChatMessage {
                role: Role::User,
                text: "earlier".into(),
            },
            ChatMessage {
                role: Role::Assistant,
                text: "noted".into(),
            },
            ChatMessage {
                role: Role::User,
                text: "hello there".into(),
            },
        ],
    }
}

/// Sends `hello()` and returns the outcome and the pieces `on_text` saw, in order.
async fn send(
    client: &dyn ChatClient,
    auth: ChatAuth<'_>,
) -> (Result<ChatReply, ChatError>, Vec<String>) {
    let pieces = Mutex::new(Vec::new());
    let on_text = |t: &str| pieces.lock().unwrap().push(t.to_owned());
    let result = client.send(&hello(), auth, &on_text).await;
    (result, pieces.into_inner().unwrap())
}

async fn send_oauth(
    client: &dyn ChatClient,
    provider: OAuthProvider,
    token: &Token,
) -> Result<ChatReply, ChatError> {
    let bucket = bucket(provider, "default");
    send(
        client,
        ChatAuth::OAuth {
            bucket: &bucket,
            token,
        },
    )
    .await
    .0
}

/// No secret the simulator issued or accepts appears in the error, however it is shown.
fn assert_no_secret(sim: &SimulatorHandle, error: &ChatError) {
    let shown = format!("{error} {error:?}");
    for secret in sim.issued_secrets() {
        assert!(
            !shown.contains(secret.expose()),
            "an error shows a secret: {error:?}"
        );
    }
}

/// The simulator names itself `codex` for the subscription API, `openai` for the key API.
fn reply_name(provider: ChatProvider, oauth: bool) -> &'static str {
    match (provider, oauth) {
        (ChatProvider::OpenAi, true) => "codex",
        _ => provider.as_str(),
    }
}

#[tokio::test]
async fn each_provider_answers_with_oauth_and_with_a_key() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    for provider in ChatProvider::ALL {
        let client = clients.get(provider).unwrap();
        assert_eq!(client.provider(), provider);
        let oauth = provider.oauth_provider();

        let token = login(&sim, oauth).await;
        let bucket = bucket(oauth, "default");
        let (reply, pieces) = send(
            client.as_ref(),
            ChatAuth::OAuth {
                bucket: &bucket,
                token: &token,
            },
        )
        .await;
        let reply = reply.unwrap_or_else(|e| panic!("{provider} with OAuth: {e:?}"));
        assert_eq!(
            reply.text,
            format!(
                "[simulated {}/user1] you said: hello there",
                reply_name(provider, true)
            )
        );
        assert_eq!(
            pieces.concat(),
            reply.text,
            "{provider} streams the whole reply"
        );
        assert!(pieces.len() > 1, "{provider} streams in pieces: {pieces:?}");
        assert_eq!(sim.counters(oauth, "user1").chat_requests, 1, "{provider}");

        let key = SimulatorConfig::default_api_key(provider);
        let (reply, pieces) = send(client.as_ref(), ChatAuth::ApiKey(&key)).await;
        let reply = reply.unwrap_or_else(|e| panic!("{provider} with a key: {e:?}"));
        assert_eq!(pieces.concat(), reply.text, "{provider} streams with a key");
        assert!(pieces.len() > 1, "{provider} with a key: {pieces:?}");
        assert_eq!(
            reply.text,
            format!(
                "[simulated {}/api-key] you said: hello there",
                reply_name(provider, false)
            )
        );
        assert_eq!(
            sim.counters(oauth, "api-key").chat_requests,
            1,
            "{provider}"
        );
    }
}

#[tokio::test]
async fn a_credential_sent_the_other_way_is_refused() {
    // The simulator tells the two ways in apart by their headers (bearer + oauth beta, or
    // x-api-key without it; Code Assist or generateContent): a token presented as a key, or a
    // key as a token, must fail.
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    for provider in ChatProvider::ALL {
        let client = clients.get(provider).unwrap();
        let token = login(&sim, provider.oauth_provider()).await;
        let (result, _) = send(client.as_ref(), ChatAuth::ApiKey(&token.access_token)).await;
        let error = result.unwrap_err();
        assert!(
            matches!(
                error,
                ChatError::Unauthorized(_) | ChatError::BadRequest { status: 400, .. }
            ),
            "{provider}: a token as a key gave {error:?}"
        );
        assert_no_secret(&sim, &error);

        let mut key_as_token = token.clone();
        key_as_token.access_token = SimulatorConfig::default_api_key(provider);
        let error = send_oauth(client.as_ref(), provider.oauth_provider(), &key_as_token)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ChatError::Unauthorized(_)),
            "{provider}: a key as a token gave {error:?}"
        );
        assert_no_secret(&sim, &error);
    }
}

#[tokio::test]
async fn rate_limits_are_classified_with_their_waits() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    for provider in ChatProvider::ALL {
        let client = clients.get(provider).unwrap();
        let oauth = provider.oauth_provider();
        let token = login(&sim, oauth).await;
        sim.fail_next_chat_requests(
            oauth,
            "user1",
            1,
            ForcedFailure::RateLimited {
                retry_after_secs: 30,
            },
        );
        let before = now();
        let error = send_oauth(client.as_ref(), oauth, &token)
            .await
            .unwrap_err();
        let after = now();
        let ChatError::RateLimited {
            retry_after_secs,
            reset_at,
            ..
        } = error
        else {
            panic!("{provider}: {error:?}");
        };
        assert_eq!(retry_after_secs, Some(30), "{provider}");
        if provider == ChatProvider::Anthropic {
            // The unified reset is the provider's clock plus the wait.
            let reset_at = reset_at.expect("anthropic-ratelimit-unified-reset");
            assert!((before + 30..=after + 30).contains(&reset_at), "{reset_at}");
        } else {
            assert_eq!(reset_at, None, "{provider}");
        }
        assert!(
            send_oauth(client.as_ref(), oauth, &token).await.is_ok(),
            "{provider}: only the next request was limited"
        );
    }
}

#[tokio::test]
async fn codex_usage_limit_reached_gives_resets_in_seconds() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    let client = clients.get(ChatProvider::OpenAi).unwrap();
    let token = login(&sim, OAuthProvider::Codex).await;
    sim.fail_next_chat_requests(
        OAuthProvider::Codex,
        "user1",
        1,
        ForcedFailure::RateLimited {
            retry_after_secs: 4242,
        },
    );
    let bucket = bucket(OAuthProvider::Codex, "default");
    let (result, pieces) = send(
        client.as_ref(),
        ChatAuth::OAuth {
            bucket: &bucket,
            token: &token,
        },
    )
    .await;
    let Err(ChatError::RateLimited {
        retry_after_secs,
        reset_at,
        limits,
    }) = result
    else {
        panic!("not a rate limit: {result:?}");
    };
    assert_eq!((retry_after_secs, reset_at), (Some(4242), None));
    // Like every answer of the subscription, the refusal reports the account's windows.
    assert_eq!(limits.percentages(), "5h 0%, weekly 0%");
    assert!(pieces.is_empty(), "no text of a refused request is shown");
}

#[tokio::test]
async fn payment_required_and_server_errors_are_classified_for_every_credential() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    for provider in ChatProvider::ALL {
        let client = clients.get(provider).unwrap();
        let oauth = provider.oauth_provider();
        let token = login(&sim, oauth).await;
        let key = SimulatorConfig::default_api_key(provider);
        for account in ["user1", "api-key"] {
            sim.fail_next_chat_requests(oauth, account, 1, ForcedFailure::PaymentRequired);
            sim.fail_next_chat_requests(oauth, account, 1, ForcedFailure::ServerError);
        }
        for use_key in [false, true] {
            let send_once = || async {
                if use_key {
                    send(client.as_ref(), ChatAuth::ApiKey(&key)).await.0
                } else {
                    send_oauth(client.as_ref(), oauth, &token).await
                }
            };
            let error = send_once().await.unwrap_err();
            assert!(
                matches!(&error, ChatError::PaymentRequired { message, .. } if message.contains("credit balance")),
                "{provider} (key: {use_key}): {error:?}"
            );
            assert_no_secret(&sim, &error);
            let error = send_once().await.unwrap_err();
            assert!(
                matches!(&error, ChatError::Server { status: 500, message } if message.contains("simulated internal error")),
                "{provider} (key: {use_key}): {error:?}"
            );
            assert!(send_once().await.is_ok(), "{provider} (key: {use_key})");
        }
    }
}

#[tokio::test]
async fn an_expired_token_is_unauthorized_and_a_revoked_anthropic_token_forbidden() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    for provider in ChatProvider::ALL {
        let client = clients.get(provider).unwrap();
        let oauth = provider.oauth_provider();
        let token = login(&sim, oauth).await;
        sim.expire_access_tokens(oauth, "user1");
        let error = send_oauth(client.as_ref(), oauth, &token)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ChatError::Unauthorized(m) if m.contains("expired")),
            "{provider}: {error:?}"
        );
        assert_no_secret(&sim, &error);
    }
    let token = login(&sim, OAuthProvider::Anthropic).await;
    sim.revoke(OAuthProvider::Anthropic, "user1");
    let client = clients.get(ChatProvider::Anthropic).unwrap();
    let error = send_oauth(client.as_ref(), OAuthProvider::Anthropic, &token)
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::Forbidden(_)), "{error:?}");
}

#[tokio::test]
async fn codex_deltas_arrive_in_order_through_on_text() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    let client = clients.get(ChatProvider::OpenAi).unwrap();
    let token = login(&sim, OAuthProvider::Codex).await;
    let bucket = bucket(OAuthProvider::Codex, "default");
    let (reply, pieces) = send(
        client.as_ref(),
        ChatAuth::OAuth {
            bucket: &bucket,
            token: &token,
        },
    )
    .await;
    let expected = "[simulated codex/user1] you said: hello there";
    assert_eq!(reply.unwrap().text, expected);
    // The simulator sends one delta per word.
    let words: Vec<&str> = expected.split_inclusive(' ').collect();
    assert_eq!(pieces, words);
}

#[tokio::test]
async fn a_codex_token_for_another_account_is_refused() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    let client = clients.get(ChatProvider::OpenAi).unwrap();
    let mut token = login(&sim, OAuthProvider::Codex).await;
    token.account_id = Some("acct-someone-else".into());
    let error = send_oauth(client.as_ref(), OAuthProvider::Codex, &token)
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::Forbidden(_)), "{error:?}");
    token.account_id = None;
    let error = send_oauth(client.as_ref(), OAuthProvider::Codex, &token)
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::Forbidden(_)), "{error:?}");
}

#[tokio::test]
async fn code_assist_is_loaded_once_per_bucket_over_many_messages() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    let client = clients.get(ChatProvider::Gemini).unwrap();
    let first = login(&sim, OAuthProvider::Gemini).await;
    sim.set_login_account(OAuthProvider::Gemini, "user2");
    let second = login(&sim, OAuthProvider::Gemini).await;
    let (work, home) = (
        bucket(OAuthProvider::Gemini, "work"),
        bucket(OAuthProvider::Gemini, "home"),
    );
    let ask = |bucket: &BucketId, token: &Token| {
        let (bucket, token) = (bucket.clone(), token.clone());
        let client = client.clone();
        async move {
            send(
                client.as_ref(),
                ChatAuth::OAuth {
                    bucket: &bucket,
                    token: &token,
                },
            )
            .await
            .0
            .unwrap()
            .text
        }
    };
    // Concurrent first messages, then more one by one.
    let replies = futures_util::future::join_all([
        ask(&work, &first),
        ask(&work, &first),
        ask(&home, &second),
        ask(&home, &second),
    ])
    .await;
    for _ in 0..3 {
        assert!(ask(&work, &first).await.contains("gemini/user1"));
        assert!(ask(&home, &second).await.contains("gemini/user2"));
    }
    assert!(replies[0].contains("gemini/user1") && replies[2].contains("gemini/user2"));
    assert_eq!(
        sim.counters(OAuthProvider::Gemini, "user1")
            .load_code_assist,
        1
    );
    assert_eq!(
        sim.counters(OAuthProvider::Gemini, "user2")
            .load_code_assist,
        1
    );
    assert_eq!(
        sim.counters(OAuthProvider::Gemini, "user1").chat_requests,
        5
    );
}

#[tokio::test]
async fn a_bucket_signed_in_again_as_another_account_asks_for_its_project_again() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    let client = clients.get(ChatProvider::Gemini).unwrap();
    let first = login(&sim, OAuthProvider::Gemini).await;
    assert!(send_oauth(client.as_ref(), OAuthProvider::Gemini, &first)
        .await
        .is_ok());
    sim.set_login_account(OAuthProvider::Gemini, "user2");
    let second = login(&sim, OAuthProvider::Gemini).await;
    // The cached project is user1's: Code Assist refuses it once, then the client asks again.
    let error = send_oauth(client.as_ref(), OAuthProvider::Gemini, &second)
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::Forbidden(_)), "{error:?}");
    let reply = send_oauth(client.as_ref(), OAuthProvider::Gemini, &second)
        .await
        .unwrap();
    assert!(reply.text.contains("gemini/user2"), "{}", reply.text);
}

#[tokio::test]
async fn qwen_tokens_go_to_their_resource_url() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    let client = clients.get(ChatProvider::Qwen).unwrap();
    let token = login(&sim, OAuthProvider::Qwen).await;
    assert_eq!(
        token.resource_url.as_deref(),
        Some(sim.endpoints().qwen.resource_url.as_str())
    );
    assert!(send_oauth(client.as_ref(), OAuthProvider::Qwen, &token)
        .await
        .is_ok());
    // A token whose resource_url points elsewhere is sent elsewhere: here, nowhere.
    let mut elsewhere = token.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.resource_url = Some(format!("http://{}/qwen", closed.local_addr().unwrap()));
    drop(closed);
    let error = send_oauth(client.as_ref(), OAuthProvider::Qwen, &elsewhere)
        .await
        .unwrap_err();
    assert!(matches!(error, ChatError::Network(_)), "{error:?}");
    assert_no_secret(&sim, &error);
}

#[tokio::test]
async fn an_unknown_key_is_refused_without_showing_it() {
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    let wrong = Secret::new("sk-simulated-not-a-key-0123456789");
    for provider in ChatProvider::ALL {
        let client = clients.get(provider).unwrap();
        let (result, _) = send(client.as_ref(), ChatAuth::ApiKey(&wrong)).await;
        let error = result.unwrap_err();
        // Google answers a wrong key with 400 API_KEY_INVALID, the others with 401.
        assert!(
            matches!(
                error,
                ChatError::Unauthorized(_) | ChatError::BadRequest { status: 400, .. }
            ),
            "{provider}: {error:?}"
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(wrong.expose()), "{shown}");
    }
}

/// The figures the simulator reports reach the reply and the `429` as the user will read them.
#[tokio::test]
async fn the_windows_the_simulator_reports_reach_the_reply_and_the_429() {
    use llxprt_domain::WindowName;
    let sim = Simulator::start().await.unwrap();
    let clients = clients(&sim);
    for (chat, oauth, windows) in [
        (
            ChatProvider::Anthropic,
            OAuthProvider::Anthropic,
            [WindowName::FiveHour, WindowName::SevenDay],
        ),
        (
            ChatProvider::OpenAi,
            OAuthProvider::Codex,
            [WindowName::FiveHour, WindowName::Weekly],
        ),
    ] {
        let client = clients.get(chat).unwrap();
        let token = login(&sim, oauth).await;
        let reply = send_oauth(client.as_ref(), oauth, &token).await.unwrap();
        assert_eq!(
            reply.limits.percentages(),
            format!("{} 0%, {} 0%", windows[0], windows[1]),
            "{oauth}"
        );
        assert!(reply.limits.windows.iter().all(|w| w.resets_at.is_some()));

        sim.set_usage(
            oauth,
            "user1",
            &[
                (windows[0], 72.0, None),
                (windows[1], 31.0, Some(Duration::from_secs(3600))),
            ],
        )
        .unwrap();
        let reply = send_oauth(client.as_ref(), oauth, &token).await.unwrap();
        let expected = format!("{} 72%, {} 31%", windows[0], windows[1]);
        assert_eq!(reply.limits.percentages(), expected, "{oauth}");

        sim.set_usage(oauth, "user1", &[(windows[1], 100.0, None)])
            .unwrap();
        let error = send_oauth(client.as_ref(), oauth, &token)
            .await
            .unwrap_err();
        let ChatError::RateLimited {
            reset_at, limits, ..
        } = error
        else {
            panic!("{oauth}: not a rate limit: {error:?}");
        };
        assert_eq!(
            limits.percentages(),
            format!("{} 72%, {} 100%", windows[0], windows[1]),
            "{oauth}"
        );
        // The refusal names the used-up window's reset, about an hour away.
        let reset = reset_at.unwrap();
        assert_eq!(Some(UnixSeconds(reset)), limits.windows[1].resets_at);
        assert!((now() + 3000..=now() + 3600).contains(&reset), "{oauth}");
        assert_eq!(sim.counters(oauth, "user1").usage_limit_refusals, 1);
    }
    // An API key reports no windows.
    let key = SimulatorConfig::default_api_key(ChatProvider::Anthropic);
    let client = clients.get(ChatProvider::Anthropic).unwrap();
    let (reply, _) = send(client.as_ref(), ChatAuth::ApiKey(&key)).await;
    assert!(reply.unwrap().limits.is_empty());
}
