//! Quota per bucket through the built binary (issue 16): the simulator reports chosen shares of
//! each account's windows, and the user sees them in `/auth P status` and `/stats quota`; with
//! `failover.switch_at_percent`, requests move to another bucket before the provider refuses,
//! say so in one line (stderr under `-p`), and come back when the window resets or the user
//! clears the bucket.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llxprt_domain::{OAuthProvider, WindowName};

use crate::support::{reply, Child, Lab};

const ANTHROPIC: OAuthProvider = OAuthProvider::Anthropic;
const CODEX: OAuthProvider = OAuthProvider::Codex;

/// A line-mode session (times of day in UTC) with the profile `team` over `buckets` of
/// `provider` saved and loaded.
async fn team(lab: &Lab, provider: &str, buckets: &[&str]) -> Child {
    lab.team(provider, buckets, &[("TZ", "UTC")]).await
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `HH:MM` in UTC of a moment `secs` from now, and of the minute after (the simulator and the
/// child read their clocks at different moments, which may straddle a minute).
fn times_of_day_in(secs: u64) -> [String; 2] {
    let at = now() + secs;
    [at, at + 1].map(|t| format!("{:02}:{:02}", t % 86_400 / 3600, t % 3600 / 60))
}

fn usage(lab: &Lab, provider: OAuthProvider, account: &str, windows: &[(WindowName, f64, u64)]) {
    let settings: Vec<_> = windows
        .iter()
        .map(|(w, p, secs)| (*w, *p, Some(Duration::from_secs(*secs))))
        .collect();
    lab.sim.set_usage(provider, account, &settings).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_quota_show_the_shares_each_account_reported_with_their_resets() {
    let lab = Lab::start().await;
    for bucket in ["w1", "w2"] {
        lab.seed(ANTHROPIC, bucket).await;
    }
    lab.seed(CODEX, "c1").await;
    usage(
        &lab,
        ANTHROPIC,
        "w1",
        &[
            (WindowName::FiveHour, 72.0, 2 * 3600),
            (WindowName::SevenDay, 31.0, 3 * 86_400),
        ],
    );
    usage(&lab, CODEX, "c1", &[(WindowName::Weekly, 12.0, 86_400 * 2)]);
    let mut child = team(&lab, "anthropic", &["w1", "w2"]).await;
    child.ask("hello", "anthropic", "w1").await;
    child.command("/provider openai", "Provider set").await;
    child.command("/auth codex enable", "enabled").await;
    child
        .command("/profile save model cx c1", "Profile cx saved")
        .await;
    child.command("/profile load cx", "Profile cx loaded").await;
    child.ask("hello codex", "codex", "c1").await;

    child
        .command("/auth anthropic status", "OAuth Buckets for anthropic:")
        .await;
    let w1 = child
        .line_where("w1's status", |l| l.contains("] w1"))
        .await;
    assert!(w1.starts_with("  [ok] w1 (expires in "), "{w1}");
    assert!(w1.ends_with("; 5h 72%, 7d 31%)"), "{w1}");
    // w2 answered nothing yet: no figures to show.
    let w2 = child
        .line_where("w2's status", |l| l.contains("] w2"))
        .await;
    assert!(!w2.contains('%'), "{w2}");

    child.command("/stats quota", "OAuth Bucket Quota:").await;
    let line = child
        .line_where("anthropic's quota", |l| l.starts_with("  anthropic/w1: "))
        .await;
    let five_hour = times_of_day_in(2 * 3600);
    assert!(
        five_hour.iter().any(|t| line.starts_with(&format!(
            "  anthropic/w1: 5h 72% (resets {t}), 7d 31% (resets "
        ))),
        "{line} (expected a reset at {five_hour:?})"
    );
    // Three days away: the day is named too.
    let seven_day = line.split("7d 31% (resets ").nth(1).unwrap();
    assert_eq!(seven_day.len(), "Fri 09:00)".len(), "{line}");
    let codex = child
        .line_where("codex's quota", |l| l.starts_with("  codex/c1: "))
        .await;
    assert!(codex.contains("weekly 12% (resets "), "{codex}");
    assert!(codex.contains("5h 0%"), "{codex}");
    assert!(!line.contains("seen"), "fresh figures say no age: {line}");
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_threshold_requests_move_on_before_the_refusal_and_come_back_at_the_reset() {
    let lab = Lab::start()
        .await
        .with_setting("failover.switch_at_percent", "90");
    for bucket in ["w1", "w2"] {
        lab.seed(ANTHROPIC, bucket).await;
    }
    let reset_in = 6;
    usage(
        &lab,
        ANTHROPIC,
        "w1",
        &[(WindowName::FiveHour, 96.0, reset_in)],
    );
    let chats = |bucket| lab.counters(ANTHROPIC, bucket).chat_requests;
    let mut child = team(&lab, "anthropic", &["w1", "w2"]).await;

    // The first answer tells llxprt how much of w1 is used.
    child.ask("first", "anthropic", "w1").await;
    // The next message goes to w2 without a request to w1, and says why in one line.
    child.ask("second", "anthropic", "w2").await;
    assert_eq!((chats("w1"), chats("w2")), (1, 1));
    let printed = child.printed();
    let line = printed
        .lines()
        .find(|l| l.starts_with("anthropic/w1 at 96% of its 5h window until "))
        .unwrap_or_else(|| panic!("no line says w1 was skipped:\n{printed}"));
    assert!(line.ends_with("; using w2"), "{line}");
    child
        .command("/auth anthropic status", "OAuth Buckets for anthropic:")
        .await;
    let w1 = child
        .line_where("w1's status", |l| l.contains("] w1"))
        .await;
    assert!(w1.starts_with("  [cooldown] w1 (until "), "{w1}");
    assert!(w1.ends_with("; 5h 96%, 7d 0%)"), "{w1}");

    // At the window's reset, w1 is first again.
    tokio::time::sleep(Duration::from_millis(reset_in * 1000 + 1500)).await;
    child.ask("third", "anthropic", "w1").await;
    assert_eq!((chats("w1"), chats("w2")), (2, 1));
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_bucket_is_tried_again_and_the_skip_line_goes_to_stderr_under_p() {
    let lab = Lab::start()
        .await
        .with_setting("failover.switch_at_percent", "80");
    for bucket in ["w1", "w2"] {
        lab.seed(ANTHROPIC, bucket).await;
    }
    usage(
        &lab,
        ANTHROPIC,
        "w1",
        &[(WindowName::SevenDay, 85.0, 4 * 86_400)],
    );
    let chats = |bucket| lab.counters(ANTHROPIC, bucket).chat_requests;
    let mut child = team(&lab, "anthropic", &["w1", "w2"]).await;
    child.ask("first", "anthropic", "w1").await;
    child.command("/profile set-default team", "team").await;
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);

    // Another process reads the figures the first one kept, and moves on at once.
    let run = lab.run(&["-p", "second"], &[("TZ", "UTC")], &[]).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.trim(), reply("anthropic", "w2", "second"));
    assert!(
        run.stderr.lines().any(
            |l| l.starts_with("anthropic/w1 at 85% of its 7d window until ")
                && l.ends_with("; using w2")
        ),
        "{}",
        run.stderr
    );
    assert_eq!((chats("w1"), chats("w2")), (1, 1));

    // Lifted by hand, w1 gets the next request (and reports its figures again).
    let run = lab
        .run(&["auth", "anthropic", "clear", "w1"], &[], &[])
        .await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let run = lab.run(&["-p", "third"], &[], &[]).await;
    assert_eq!(run.stdout.trim(), reply("anthropic", "w1", "third"));
    assert!(!run.stderr.contains("using w2"), "{}", run.stderr);
    assert_eq!((chats("w1"), chats("w2")), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_window_refused_by_the_provider_cools_the_bucket_until_that_window_resets() {
    let lab = Lab::start().await;
    for bucket in ["w1", "w2"] {
        lab.seed(ANTHROPIC, bucket).await;
    }
    // Used up while this process did not know: the provider refuses with a 429 whose
    // retry-after may be far longer than the window (the simulator sends the window's reset).
    usage(
        &lab,
        ANTHROPIC,
        "w1",
        &[(WindowName::FiveHour, 100.0, 1800)],
    );
    let before = now() as i64;
    let mut child = team(&lab, "anthropic", &["w1", "w2"]).await;
    child.ask("hello", "anthropic", "w2").await;
    let printed = child.printed();
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("anthropic/w1 rate limited until ") && l.ends_with("; using w2")),
        "{printed}"
    );
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let health: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.home().join("health.json")).unwrap())
            .unwrap();
    let until = health["buckets"]["anthropic/w1"]["until"].as_i64().unwrap();
    assert!(
        (before + 1800 - 5..=now() as i64 + 1800 + 5).contains(&until),
        "cooled until {until}, not the window's reset"
    );
    let windows = &health["limits"]["anthropic/w1"]["windows"];
    assert_eq!(windows[0]["used_percent"], 100, "{health}");
}
