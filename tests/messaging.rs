//! Messages to every provider through the built binary, against the provider simulator: OAuth
//! and keys, which one wins, and the sign-in a first message starts by itself.

use llxprt_application::ports::TokenStore;
use llxprt_domain::OAuthProvider;
use llxprt_simulator::Counters;

use crate::support::{reply, Lab, Run};

/// Each OAuth provider, the `/provider` name that uses it, and how the simulator names it in
/// replies to OAuth requests and to key requests.
const PROVIDERS: [(OAuthProvider, &str, &str, &str); 4] = [
    (
        OAuthProvider::Anthropic,
        "anthropic",
        "anthropic",
        "anthropic",
    ),
    (OAuthProvider::Gemini, "gemini", "gemini", "gemini"),
    (OAuthProvider::Qwen, "qwen", "qwen", "qwen"),
    (OAuthProvider::Codex, "openai", "codex", "openai"),
];

/// Every provider's default simulated key, in the variable a user would set.
const KEYS: [(&str, &str); 4] = [
    ("ANTHROPIC_API_KEY", "sim-anthropic-key"),
    ("GEMINI_API_KEY", "sim-gemini-key"),
    ("DASHSCOPE_API_KEY", "sim-qwen-key"),
    ("OPENAI_API_KEY", "sim-openai-key"),
];

/// The line `/auth` printed for `oauth`.
fn overview_line(run: &Run, oauth: OAuthProvider) -> &str {
    run.stdout
        .lines()
        .find(|l| l.starts_with(['✓', '✗']) && l.contains(&format!(" {oauth}: ")))
        .unwrap_or_else(|| panic!("/auth shows no {oauth} line:\n{}", run.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_answers_with_oauth_and_with_a_key() {
    let lab = Lab::start().await;

    let mut child = lab.spawn(&[], &KEYS);
    for (_, chat, _, key_name) in PROVIDERS {
        child.send(&format!("/provider {chat}")).await;
        child
            .ask(&format!("hi {chat} by key"), key_name, "api-key")
            .await;
    }
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);

    // Each provider's own sign-in, through the binary, as the user would type it.
    let mut child = lab.spawn(&[], &[]);
    for (oauth, chat, oauth_name, _) in PROVIDERS {
        lab.sim.set_login_account(oauth, "default");
        child.login(&lab, oauth, "default").await;
        child.send(&format!("/auth {oauth} enable")).await;
        child.send(&format!("/provider {chat}")).await;
        child
            .ask(&format!("hi {chat} by OAuth"), oauth_name, "default")
            .await;
    }
    child.send("/auth").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    for (oauth, ..) in PROVIDERS {
        let overview = overview_line(&run, oauth);
        assert!(
            overview.starts_with('✓') && overview.contains("oauth"),
            "{overview}"
        );
        assert!(
            lab.store()
                .token_path(&crate::support::bucket_id(oauth, "default"))
                .exists(),
            "{oauth}: no token file"
        );
    }

    // The simulator rejects a request whose headers or body are wrong for its provider, so one
    // accepted request per account, and none refused, is the proof.
    for (oauth, ..) in PROVIDERS {
        let signed_in = lab.counters(oauth, "default");
        assert_eq!(
            (
                signed_in.token_exchanges,
                signed_in.chat_requests,
                signed_in.rejected_chat_requests
            ),
            (1, 1, 0),
            "{oauth}: {signed_in:?}"
        );
        let keyed = lab.counters(oauth, "api-key");
        assert_eq!(
            (keyed.chat_requests, keyed.rejected_chat_requests),
            (1, 0),
            "{oauth} key: {keyed:?}"
        );
    }
    assert_eq!(
        lab.counters(OAuthProvider::Gemini, "default")
            .load_code_assist,
        1
    );
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_the_environment_wins_over_enabled_oauth_and_no_flow_starts() {
    let lab = Lab::start().await;
    let mut child = lab.spawn(&[], &KEYS);
    for (oauth, ..) in PROVIDERS {
        child.send(&format!("/auth {oauth} enable")).await;
    }
    for (_, chat, _, key_name) in PROVIDERS {
        child.send(&format!("/provider {chat}")).await;
        child.ask(&format!("hi {chat}"), key_name, "api-key").await;
    }
    child.send("/auth").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);

    for (oauth, ..) in PROVIDERS {
        let overview = overview_line(&run, oauth);
        assert!(
            overview.contains("api-key") && overview.contains("enabled"),
            "{overview}"
        );
        let all = lab.sim.provider_counters(oauth);
        assert_eq!(
            Counters {
                chat_requests: 0,
                streamed_replies: 0,
                ..all
            },
            Counters::default(),
            "{oauth}: an OAuth endpoint was touched: {all:?}"
        );
        assert_eq!(all.chat_requests, 1, "{oauth}: {all:?}");
        assert_eq!(lab.counters(oauth, "api-key").chat_requests, 1);
        let saved = lab.store().list(oauth).await.unwrap();
        assert!(saved.is_empty(), "{oauth}: a token was saved: {saved:?}");
    }
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_message_signs_in_lazily_and_with_a_key_no_flow_runs() {
    let lab = Lab::start().await;
    lab.sim.set_login_account(OAuthProvider::Qwen, "default");
    let mut child = lab.spawn(&[], &[]);
    child.send("/auth qwen enable").await;
    child.send("/provider qwen").await;
    child.send("hello qwen").await;
    child.wait_for("is not logged in yet").await;
    // The device flow runs; the test approves it on the simulated verification page.
    child.sign_in(&lab, OAuthProvider::Qwen).await;
    child
        .wait_for(&reply("qwen", "default", "hello qwen"))
        .await;
    // Signed in now: the next message runs no flow.
    child.ask("hello again", "qwen", "default").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let qwen = lab.counters(OAuthProvider::Qwen, "default");
    assert_eq!(
        (
            qwen.device_code_requests,
            qwen.token_exchanges,
            qwen.chat_requests
        ),
        (1, 1, 2),
        "{qwen:?}"
    );
    lab.assert_no_secret_leaked();

    let keyed = Lab::start().await;
    let mut child = keyed.spawn(&[], &[("DASHSCOPE_API_KEY", "sim-qwen-key")]);
    child.send("/auth qwen enable").await;
    child.send("/provider qwen").await;
    child.ask("hello qwen", "qwen", "api-key").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(!run.stdout.contains("Device code"), "{}", run.stdout);
    let all = keyed.sim.provider_counters(OAuthProvider::Qwen);
    assert_eq!(
        (
            all.device_code_requests,
            all.token_exchanges,
            all.chat_requests
        ),
        (0, 0, 1),
        "{all:?}"
    );
    keyed.assert_no_secret_leaked();
}
