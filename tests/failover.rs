//! Failover through the built binary, against the provider simulator: buckets of a profile
//! taking over from each other on 429, 401 and 403, the exhausted error, and loadbalancer
//! profiles over two providers.

use std::time::Duration;

use llxprt_domain::OAuthProvider;
use llxprt_simulator::ForcedFailure;

use crate::support::{reply, Child, Lab};

const ANTHROPIC: OAuthProvider = OAuthProvider::Anthropic;

/// A `retry-after` short enough to wait for, long enough that a loaded machine gets through
/// the steps that must happen while it lasts.
const SHORT_LIMIT_SECS: u64 = 4;

fn limited(retry_after_secs: u64) -> ForcedFailure {
    ForcedFailure::RateLimited { retry_after_secs }
}

/// Waits until a rate limit of `secs` seconds set now has surely reset: the reset time is whole
/// seconds, and the simulator's clock and the child's are read at different moments.
async fn sleep_past(secs: u64) {
    tokio::time::sleep(Duration::from_millis(secs * 1000 + 1500)).await;
}

/// Types a line and waits for what it prints.
async fn command(child: &mut Child, line: &str, expect: &str) {
    child.send(line).await;
    child.wait_for(expect).await;
}

/// A line-mode session with the Anthropic profile `team` over `buckets` saved and loaded.
async fn session_with_team(lab: &Lab, buckets: &[&str]) -> Child {
    let mut child = lab.spawn(&[], &[]);
    command(
        &mut child,
        &format!("/profile save model team {}", buckets.join(" ")),
        "Profile team saved",
    )
    .await;
    command(&mut child, "/profile load team", "Profile team loaded").await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_bucket_hands_over_cools_down_and_is_first_again_after_its_reset() {
    let lab = Lab::start().await;
    for bucket in ["w1", "w2", "w3"] {
        lab.seed(ANTHROPIC, bucket).await;
    }
    let mut child = session_with_team(&lab, &["w1", "w2", "w3"]).await;
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w1", 1, limited(SHORT_LIMIT_SECS));
    let chats = |bucket| lab.counters(ANTHROPIC, bucket).chat_requests;

    child.ask("first", "anthropic", "w2").await;
    assert_eq!((chats("w1"), chats("w2"), chats("w3")), (1, 1, 0));

    // While w1 cools down, it receives nothing.
    child.ask("second", "anthropic", "w2").await;
    assert_eq!((chats("w1"), chats("w2"), chats("w3")), (1, 2, 0));
    command(&mut child, "/auth anthropic status", "[cooldown] w1").await;

    sleep_past(SHORT_LIMIT_SECS).await;
    child.ask("third", "anthropic", "w1").await;
    assert_eq!((chats("w1"), chats("w2"), chats("w3")), (2, 2, 0));

    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_once_and_a_revoked_bucket_hands_over_and_needs_a_login() {
    let lab = Lab::start().await;
    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    let mut child = session_with_team(&lab, &["w1", "w2"]).await;

    // The file still says the token is good; the provider says 401.
    lab.sim.expire_access_tokens(ANTHROPIC, "w1");
    child.ask("after expiry", "anthropic", "w1").await;
    let w1 = lab.counters(ANTHROPIC, "w1");
    assert_eq!((w1.refreshes, w1.rejected_chat_requests), (1, 1), "{w1:?}");
    assert_eq!(lab.counters(ANTHROPIC, "w2").chat_requests, 0);

    // Revoked: 403, no refresh, and w2 answers.
    lab.sim.revoke(ANTHROPIC, "w1");
    child.ask("after revoke", "anthropic", "w2").await;
    let w1 = lab.counters(ANTHROPIC, "w1");
    assert_eq!((w1.refreshes, w1.rejected_refreshes), (1, 0), "{w1:?}");
    assert_eq!(lab.counters(ANTHROPIC, "w2").chat_requests, 1);

    command(&mut child, "/auth anthropic status", "[needs login] w1").await;
    child.wait_for("[ok] w2").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_bucket_limited_the_error_names_each_and_the_earliest_reset() {
    let lab = Lab::start().await;
    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    let saved = lab.run(&[], &[], &["/profile save model team w1 w2"]).await;
    assert_eq!(saved.code(), Some(0), "{}", saved.stderr);
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w1", 1, limited(600));
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w2", 1, limited(300));

    let run = lab
        .run(&["--profile", "team", "-p", "hello"], &[], &[])
        .await;
    assert_ne!(run.code(), Some(0), "{}", run.stdout);
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output
            .contains("Error: All OAuth buckets exhausted. Please wait for rate limits to reset."),
        "{output}"
    );
    let until = |bucket: &str| {
        let marker = format!("anthropic/{bucket}: rate limited until ");
        let line = output
            .lines()
            .find(|l| l.contains(&marker))
            .unwrap_or_else(|| panic!("no reason for {bucket}:\n{output}"));
        line.split(&marker).nth(1).unwrap().trim().to_owned()
    };
    let (w1, w2) = (until("w1"), until("w2"));
    assert_ne!(w1, w2, "{output}");
    let earliest = output
        .lines()
        .find(|l| l.contains("earliest usable again:"))
        .unwrap_or_else(|| panic!("no earliest reset:\n{output}"));
    // w2's reset, 300 s away (less the moments the run took).
    assert!(earliest.contains(&w2), "{earliest} is not {w2}");
    assert!(
        earliest.contains("in 4 minutes") || earliest.contains("in 5 minutes"),
        "{earliest}"
    );
    for bucket in ["w1", "w2"] {
        assert_eq!(lab.counters(ANTHROPIC, bucket).chat_requests, 1);
    }
    lab.assert_no_secret_leaked();
}

/// A session with the profiles `claude` (Anthropic bucket a1) and `gpt` (OpenAI over Codex
/// bucket c1), and a loadbalancer `both` over them with `policy`, loaded.
async fn session_with_balancer(lab: &Lab, policy: &str) -> Child {
    lab.seed(ANTHROPIC, "a1").await;
    lab.seed(OAuthProvider::Codex, "c1").await;
    let mut child = lab.spawn(&[], &[]);
    command(&mut child, "/provider anthropic", "Provider set").await;
    command(
        &mut child,
        "/profile save model claude a1",
        "Profile claude saved",
    )
    .await;
    command(&mut child, "/provider openai", "Provider set").await;
    command(
        &mut child,
        "/profile save model gpt c1",
        "Profile gpt saved",
    )
    .await;
    command(
        &mut child,
        &format!("/profile save loadbalancer both {policy} claude gpt"),
        "Profile both saved",
    )
    .await;
    command(&mut child, "/profile load both", "Profile both loaded").await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_balancer_moves_from_anthropic_to_openai_when_anthropic_fails() {
    let lab = Lab::start().await;
    let mut child = session_with_balancer(&lab, "failover").await;
    let chats = |p, bucket| lab.counters(p, bucket).chat_requests;
    let codex = OAuthProvider::Codex;

    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "a1", 1, limited(SHORT_LIMIT_SECS));
    child.ask("first", "codex", "c1").await;
    child.wait_for("Profile claude failed").await;
    assert_eq!((chats(ANTHROPIC, "a1"), chats(codex, "c1")), (1, 1));

    // The limit over, Anthropic is first again.
    sleep_past(SHORT_LIMIT_SECS).await;
    child.ask("second", "anthropic", "a1").await;
    assert_eq!((chats(ANTHROPIC, "a1"), chats(codex, "c1")), (2, 1));

    // A server error moves on too.
    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "a1", 1, ForcedFailure::ServerError);
    child.ask("third", "codex", "c1").await;
    assert_eq!((chats(ANTHROPIC, "a1"), chats(codex, "c1")), (3, 2));

    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roundrobin_balancer_alternates_between_its_profiles() {
    let lab = Lab::start().await;
    let mut child = session_with_balancer(&lab, "roundrobin").await;
    let mut answered = Vec::new();
    for n in 0..4 {
        let text = format!("message {n}");
        child.send(&text).await;
        let line = child.wait_for(&format!("you said: {text}")).await;
        answered.push(if line.contains("[simulated anthropic/a1]") {
            "claude"
        } else if line.contains("[simulated codex/c1]") {
            "gpt"
        } else {
            panic!("answered by neither profile: {line}")
        });
    }
    assert_ne!(answered[0], answered[1], "{answered:?}");
    assert_eq!(answered[0], answered[2], "{answered:?}");
    assert_eq!(answered[1], answered[3], "{answered:?}");
    assert_eq!(lab.counters(ANTHROPIC, "a1").chat_requests, 2);
    assert_eq!(lab.counters(OAuthProvider::Codex, "c1").chat_requests, 2);

    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_process_honours_a_cooldown_and_a_needed_login_until_they_pass() {
    let lab = Lab::start().await;
    for bucket in ["w1", "w2", "w3"] {
        lab.seed(ANTHROPIC, bucket).await;
    }
    let saved = lab
        .run(&[], &[], &["/profile save model team w1 w2 w3"])
        .await;
    assert_eq!(saved.code(), Some(0), "{}", saved.stderr);
    let chats = |bucket| lab.counters(ANTHROPIC, bucket).chat_requests;
    let ask = |text: &'static str, bucket: &'static str| {
        let lab = &lab;
        async move {
            let run = lab.run(&["--profile", "team", "-p", text], &[], &[]).await;
            assert_eq!(run.code(), Some(0), "{text}: {}", run.stderr);
            assert!(
                run.stdout.contains(&reply("anthropic", bucket, text)),
                "{text} not answered by {bucket}:\n{}",
                run.stdout
            );
        }
    };
    let status = || async {
        let run = lab.run(&["auth", "anthropic", "status"], &[], &[]).await;
        assert_eq!(run.code(), Some(0), "{}", run.stderr);
        run.stdout
    };

    lab.sim
        .fail_next_chat_requests(ANTHROPIC, "w1", 1, limited(600));
    ask("one", "w2").await;
    ask("two", "w2").await;
    assert_eq!(
        (chats("w1"), chats("w2")),
        (1, 2),
        "w1 was used while cooling"
    );

    lab.sim.revoke(ANTHROPIC, "w2");
    ask("three", "w3").await;
    ask("four", "w3").await;
    // The revoked grant was refused once (403); the second process did not try it again.
    let w2 = lab.counters(ANTHROPIC, "w2");
    assert_eq!(
        (
            chats("w1"),
            w2.chat_requests,
            w2.rejected_chat_requests,
            chats("w3")
        ),
        (1, 2, 1, 2),
        "a bucket that needs a login was used again: {w2:?}"
    );
    let shown = status().await;
    for expected in ["[cooldown] w1", "[needs login] w2", "[ok] w3"] {
        assert!(shown.contains(expected), "no {expected}:\n{shown}");
    }

    // Signing in again makes the bucket usable for every process.
    let mut child = lab.spawn(&[], &[]);
    lab.sim.set_login_account(ANTHROPIC, "w2");
    child.login(&lab, ANTHROPIC, "w2").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(status().await.contains("[ok] w2"));
    ask("five", "w2").await;
    lab.assert_no_secret_leaked();
}
