//! Streamed replies through the built binary, against the provider simulator: every provider,
//! by OAuth and by key, shows the first piece of a reply before the rest has come; a failure
//! after it ends the reply with a line saying it was cut short and sends nothing again; a
//! stalled stream is given up after the idle limit, a slow one that keeps coming is not.

use std::time::Duration;

use llxprt_domain::OAuthProvider;
use llxprt_simulator::Pause;

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

/// The first piece of every simulated reply (its first word).
const FIRST_PIECE: &str = "[simulated";

/// `llxprt -p TEXT` on `chat`, by OAuth (its buckets enabled) or by key (in the environment).
async fn one_shot(lab: &Lab, chat: &str, oauth: Option<OAuthProvider>, extra: &[&str]) -> Run {
    let enabled = oauth.map(|p| format!("oauth_enabled.{p}=true"));
    let mut args = vec!["--provider", chat];
    if let Some(enabled) = &enabled {
        args.extend(["--set", enabled]);
    }
    args.extend(extra);
    let env: &[(&str, &str)] = if oauth.is_some() { &[] } else { &KEYS };
    lab.run(&args, env, &[]).await
}

fn assert_cut_short(run: &Run, shown: &str, what: &str) {
    assert_ne!(run.code(), Some(0), "{what}: {}", run.stdout);
    // The piece shown stays on its own line; the reply never completed.
    assert_eq!(run.stdout.trim_end(), shown, "{what}: {}", run.stderr);
    assert!(!run.stdout.contains("you said"), "{what}: {}", run.stdout);
    let cut = run
        .stderr
        .lines()
        .find(|l| l.contains("cut short"))
        .unwrap_or_else(|| panic!("{what}: no cut-short line in {:?}", run.stderr));
    assert!(cut.contains("not sent again"), "{what}: {cut}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_shows_its_first_piece_and_is_cut_short_at_the_idle_limit() {
    let lab = Lab::start().await;
    for (oauth, ..) in PROVIDERS {
        lab.seed(oauth, "default").await;
    }
    for (oauth, chat, ..) in PROVIDERS {
        for (by_oauth, account) in [(Some(oauth), "default"), (None, "api-key")] {
            let what = format!("{chat} as {account}");
            // Far longer than the idle limit: only the limit ends this reply.
            lab.sim.slow_next_chat_replies(
                oauth,
                account,
                1,
                Duration::from_secs(600),
                Pause::AfterFirstDelta,
            );
            let before = lab.counters(oauth, account);
            let run = one_shot(
                &lab,
                chat,
                by_oauth,
                &["--set", "idle_timeout_secs=1", "-p", "hello there"],
            )
            .await;
            // The first piece was printed although the rest never came: it was shown as it
            // arrived.
            assert_cut_short(&run, FIRST_PIECE, &what);
            assert!(run.stderr.contains("idle"), "{what}: {}", run.stderr);
            let after = lab.counters(oauth, account);
            assert_eq!(
                (
                    after.chat_requests - before.chat_requests,
                    after.streamed_replies - before.streamed_replies
                ),
                (1, 1),
                "{what}: one streamed request, not retried"
            );
        }
    }
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_the_first_piece_is_cut_short_and_no_other_bucket_is_asked() {
    let lab = Lab::start().await;
    for (oauth, ..) in PROVIDERS {
        lab.seed(oauth, "w1").await;
        lab.seed(oauth, "w2").await;
    }
    let mut child = lab.spawn(&[], &[]);
    for (oauth, chat, ..) in PROVIDERS {
        child.send(&format!("/auth {oauth} enable")).await;
        child.send(&format!("/provider {chat}")).await;
        child
            .send(&format!("/profile save model team-{chat} w1 w2"))
            .await;
        child.send(&format!("/profile load team-{chat}")).await;
        child.wait_for(&format!("Profile team-{chat} loaded")).await;
        lab.sim
            .slow_next_chat_replies(oauth, "w1", 1, Duration::ZERO, Pause::FailAfterFirstDelta);

        child.send(&format!("first to {chat}")).await;
        let cut = child.wait_for("cut short").await;
        assert!(cut.contains("not sent again"), "{chat}: {cut}");
        assert_eq!(
            (
                lab.counters(oauth, "w1").chat_requests,
                lab.counters(oauth, "w2").chat_requests
            ),
            (1, 0),
            "{chat}: the message went once, to w1, and was not failed over"
        );
        // The next message is answered whole.
        child.send(&format!("again to {chat}")).await;
        child.wait_for(&format!("you said: again to {chat}")).await;
    }
    let run = child.finish().await;
    let partial = run
        .stdout
        .lines()
        .filter(|l| l.trim_end() == FIRST_PIECE)
        .count();
    assert_eq!(partial, 4, "each cut reply's first piece: {}", run.stdout);
    for (oauth, chat, ..) in PROVIDERS {
        assert!(
            !run.stdout.contains(&format!("you said: first to {chat}")),
            "{chat}: the cut reply never completed"
        );
        let streamed =
            lab.counters(oauth, "w1").streamed_replies + lab.counters(oauth, "w2").streamed_replies;
        assert_eq!(streamed, 2, "{chat}: both messages asked to stream");
    }
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_keeps_coming_is_not_cut_off_by_the_idle_limit() {
    let lab = Lab::start().await;
    for (oauth, chat, _, key_name) in PROVIDERS {
        // Every piece comes well within the limit, the whole reply takes longer than it.
        lab.sim.slow_next_chat_replies(
            oauth,
            "api-key",
            1,
            Duration::from_millis(600),
            Pause::BetweenPieces,
        );
        let text = "one two three four five";
        let run = one_shot(
            &lab,
            chat,
            None,
            &["--set", "idle_timeout_secs=2", "-p", text],
        )
        .await;
        assert_eq!(run.code(), Some(0), "{chat}: {}", run.stderr);
        assert_eq!(
            run.stdout.trim_end(),
            reply(key_name, "api-key", text),
            "{chat}"
        );
        assert_eq!(lab.counters(oauth, "api-key").chat_requests, 1, "{chat}");
    }
}

#[test]
fn the_sandbox_can_cut_a_reply_short_and_the_next_message_is_answered_whole() {
    let home = tempfile::tempdir().unwrap();
    let run = crate::support::sandbox(
        home.path(),
        &[],
        "/auth anthropic login\n/auth anthropic enable\n/sandbox cut anthropic default\nhello\nhello again\n/stats buckets\n",
    );
    assert!(
        run.stdout
            .contains("anthropic/default: the next reply will fail after its first words"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.lines().any(|l| l.trim_end() == FIRST_PIECE),
        "the first piece stays on screen: {}",
        run.stdout
    );
    let cut = run
        .stderr
        .lines()
        .filter(|l| l.contains("cut short"))
        .count();
    assert_eq!(cut, 1, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&reply("anthropic", "default", "hello again")),
        "{}",
        run.stdout
    );
    // Two messages, two requests: the cut one was not sent again.
    assert!(
        run.stdout.contains("anthropic/default: 2 requests"),
        "{}",
        run.stdout
    );
}
