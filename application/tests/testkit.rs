//! The testkit's doubles are honest: they keep state as the adapters do, and fail only when
//! told, then recover.

use std::sync::Arc;

use llxprt_application::ports::{
    ChatAuth, ChatClient, ChatError, ChatMessage, ChatRequest, Clock, ConfigError, FlowError,
    OAuthFlow, ProfileStore, PromptError, RefreshError, StatsStore, StoreError, TokenStore,
    UserPrompt,
};
use llxprt_application::testkit::{
    unavailable, ConfigOperation, FakeChatClient, FakeOAuthFlow, ManualClock, MemoryConfigStore,
    MemoryStatsStore, MemoryTokenStore, PersistenceOperation, ScriptedPrompt, Shown,
    StoreOperation,
};
use llxprt_domain::stats::StatsDelta;
use llxprt_domain::{
    BucketId, ChatProvider, OAuthProvider, Profile, ProfileName, Secret, UnixSeconds,
};

const NOW: UnixSeconds = UnixSeconds(1_767_225_600);

#[tokio::test]
async fn the_fake_flow_spends_each_refresh_token_once() {
    let clock = Arc::new(ManualClock::at(NOW));
    let flow = FakeOAuthFlow::new(OAuthProvider::Codex, clock.clone());
    let first = flow.login(&ScriptedPrompt::new()).await.unwrap();
    assert_eq!(first.seconds_left(clock.now()), 3600);
    let spent = first.refresh_token.clone().unwrap();

    let second = flow.refresh(&spent).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(
        second.refresh_token, first.refresh_token,
        "refresh tokens rotate"
    );
    assert!(matches!(
        flow.refresh(&spent).await,
        Err(RefreshError::NeedsLogin(_))
    ));
    assert!(matches!(
        flow.refresh(&Secret::new("never issued")).await,
        Err(RefreshError::NeedsLogin(_))
    ));

    let live = second.refresh_token.unwrap();
    flow.fail_next_refreshes(1, RefreshError::Transient("provider down".into()));
    assert!(matches!(
        flow.refresh(&live).await,
        Err(RefreshError::Transient(_))
    ));
    let third = flow
        .refresh(&live)
        .await
        .expect("a transient failure spends nothing");

    flow.revoke_all();
    assert!(matches!(
        flow.refresh(&third.refresh_token.unwrap()).await,
        Err(RefreshError::NeedsLogin(_))
    ));
    flow.fail_next_logins(1, FlowError::Denied("access_denied".into()));
    assert!(flow.login(&ScriptedPrompt::new()).await.is_err());
    assert!(flow.login(&ScriptedPrompt::new()).await.is_ok());
    assert_eq!((flow.logins(), flow.refreshes()), (3, 6));
}

#[tokio::test]
async fn the_memory_store_fails_as_often_as_told_and_keeps_its_tokens() {
    let store = MemoryTokenStore::new();
    let id = BucketId::default_for(OAuthProvider::Gemini);
    let token = llxprt_domain::Token::new(Secret::new("at"), NOW);
    store.save(&id, &token).await.unwrap();
    store.fail_next(StoreOperation::Load, 2, MemoryTokenStore::io_error());
    assert!(matches!(store.load(&id).await, Err(StoreError::Io { .. })));
    assert!(store.load(&id).await.is_err());
    assert_eq!(store.load(&id).await.unwrap(), Some(token.clone()));
    assert_eq!(store.calls(StoreOperation::Load), 3);

    store.fail(StoreOperation::Delete, MemoryTokenStore::io_error());
    assert!(store.delete(&id).await.is_err());
    store.heal();
    assert_eq!(
        store.load(&id).await.unwrap(),
        Some(token),
        "a failed delete deleted"
    );
}

#[tokio::test]
async fn a_failed_stats_add_changes_nothing() {
    let stats = MemoryStatsStore::new();
    let id = BucketId::default_for(OAuthProvider::Qwen);
    let mut delta = StatsDelta::new();
    delta.record_request(&id, NOW);
    stats.add(&delta).await.unwrap();
    stats.fail_next(PersistenceOperation::Write, 1, unavailable());
    assert!(stats.add(&delta).await.unwrap_err().is_retryable());
    assert_eq!(
        stats.load().await.unwrap().get(&id).map(|s| s.requests),
        Some(1)
    );
    assert_eq!(
        stats
            .add(&delta)
            .await
            .unwrap()
            .get(&id)
            .map(|s| s.requests),
        Some(2)
    );
}

#[tokio::test]
async fn the_scripted_prompt_answers_in_order_then_runs_out() {
    let prompt = ScriptedPrompt::new();
    prompt.answer("  CODE#STATE \n");
    prompt.cancel_next();
    prompt.show("Visit the page");
    assert_eq!(prompt.ask("Paste the code:").await.unwrap(), "CODE#STATE");
    assert_eq!(prompt.ask("Again:").await, Err(PromptError::Cancelled));
    assert!(matches!(
        prompt.ask("More:").await,
        Err(PromptError::NoInput(_))
    ));
    prompt.show_error("Error: no");
    prompt.stream("partial ");
    prompt.stream("reply");
    assert_eq!(prompt.lines(), ["Visit the page", "Error: no"]);
    assert_eq!(prompt.streamed(), "partial reply");
    assert_eq!(prompt.shown()[1], Shown::Question("Paste the code:".into()));
}

#[tokio::test]
async fn the_fake_chat_client_refuses_a_sender_as_often_as_told() {
    let client = FakeChatClient::new(ChatProvider::Qwen);
    let key = Secret::new("sk");
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage {
            role: llxprt_application::ports::Role::User,
            text: "hi".into(),
        }],
    };
    client.refuse_next("key", 1, ChatError::Unauthorized("bad key".into()));
    let streamed = std::sync::Mutex::new(String::new());
    let on_text = |t: &str| streamed.lock().unwrap().push_str(t);
    assert!(client
        .send(&request, ChatAuth::ApiKey(&key), &on_text)
        .await
        .is_err());
    let reply = client
        .send(&request, ChatAuth::ApiKey(&key), &on_text)
        .await
        .unwrap();
    assert_eq!(reply.text, "[key] you said: hi");
    assert_eq!(*streamed.lock().unwrap(), reply.text);
    assert_eq!(client.senders(), ["key", "key"]);
}

#[tokio::test]
async fn the_recording_browser_keeps_every_url_and_fails_when_told() {
    use llxprt_application::ports::{Browser, BrowserError};
    let browser = llxprt_application::testkit::RecordingBrowser::new();
    browser.fail_next(BrowserError::Unavailable("no display".into()));
    assert!(browser.open("http://127.0.0.1:1/a").await.is_err());
    assert!(browser.open("http://127.0.0.1:1/b").await.is_ok());
    assert_eq!(
        browser.opened(),
        ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]
    );
}

#[test]
fn the_manual_clock_moves_only_when_told() {
    let clock = ManualClock::at(NOW);
    assert_eq!(clock.now(), NOW);
    clock.advance(90);
    assert_eq!(clock.now(), NOW + 90);
    clock.set(UnixSeconds(0));
    assert_eq!(clock.time_of_day(clock.now()), "00:00");
}

#[test]
fn a_failed_profile_save_writes_nothing() {
    let config = MemoryConfigStore::new();
    let name = ProfileName::parse("p").unwrap();
    let profile = Profile::Model {
        provider: ChatProvider::Gemini,
        model: None,
        key: None,
        buckets: vec![],
    };
    let disk_full = ConfigError::Io {
        path: "profiles/p.json".into(),
        message: "No space left".into(),
    };
    config.fail(ConfigOperation::WriteProfile, disk_full.clone());
    assert_eq!(config.save_profile(&name, &profile), Err(disk_full));
    config.heal();
    assert!(config.list_profiles().unwrap().is_empty());
    config.save_profile(&name, &profile).unwrap();
    assert_eq!(config.load_profile(&name).unwrap(), profile);
}
