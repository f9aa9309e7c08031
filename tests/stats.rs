//! `stats.json` through the built binary, against the provider simulator: counts add up over
//! restarts and over processes running at once.

use llxprt_domain::OAuthProvider;

use crate::support::{reply, Child, Lab};

const ANTHROPIC: OAuthProvider = OAuthProvider::Anthropic;

/// A lab whose Anthropic bucket `s1` is signed in and in the saved profile `team`.
async fn lab_with_team() -> Lab {
    let lab = Lab::start().await;
    lab.seed(ANTHROPIC, "s1").await;
    let saved = lab.run(&[], &[], &["/profile save model team s1"]).await;
    assert_eq!(saved.code(), Some(0), "{}", saved.stderr);
    lab
}

/// The lines one process sends.
fn messages(who: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{who} says {n}")).collect()
}

/// Waits for the end of a process that was sent `lines` and checks every reply.
async fn check_replies(child: Child, lines: &[String]) {
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    for line in lines {
        assert!(
            run.stdout.contains(&reply("anthropic", "s1", line)),
            "no reply to {line:?}:\n{}",
            run.stdout
        );
    }
}

/// Sends `count` messages from one process and checks every reply.
async fn send_messages(lab: &Lab, who: &str, count: usize) {
    let lines = messages(who, count);
    let mut child = lab.spawn(&["--profile", "team"], &[]);
    for line in &lines {
        child.send(line).await;
    }
    check_replies(child, &lines).await;
}

/// The `N` of `  anthropic/s1: N requests (last used: …)` in `llxprt stats buckets`.
async fn requests_shown(lab: &Lab) -> u64 {
    let run = lab.run(&["stats", "buckets"], &[], &[]).await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("OAuth Bucket Statistics:"),
        "{}",
        run.stdout
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("  anthropic/s1: "))
        .unwrap_or_else(|| panic!("no line for anthropic/s1:\n{}", run.stdout));
    assert!(line.contains("(last used: just now)"), "{line}");
    line.trim_start_matches("  anthropic/s1: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no count in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_survive_restarts() {
    let lab = lab_with_team().await;
    send_messages(&lab, "first run", 2).await;
    assert_eq!(requests_shown(&lab).await, 2);
    send_messages(&lab, "second run", 3).await;
    assert_eq!(requests_shown(&lab).await, 5);
    assert!(lab.home().join("stats.json").is_file());
    assert_eq!(lab.counters(ANTHROPIC, "s1").chat_requests, 5);
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_lose_no_counts() {
    const PROCESSES: usize = 6;
    const MESSAGES: usize = 3;
    let lab = lab_with_team().await;
    let mut running: Vec<_> = (0..PROCESSES)
        .map(|n| {
            let child = lab.spawn(&["--profile", "team"], &[]);
            (child, messages(&format!("process {n}"), MESSAGES))
        })
        .collect();
    // Every process is up before any gets its lines, so their saves overlap.
    for (child, lines) in &mut running {
        for line in lines.iter() {
            child.send(line).await;
        }
    }
    for (child, lines) in running {
        check_replies(child, &lines).await;
    }
    let total = u64::try_from(PROCESSES * MESSAGES).unwrap();
    assert_eq!(lab.counters(ANTHROPIC, "s1").chat_requests, total);
    assert_eq!(requests_shown(&lab).await, total);
    lab.assert_no_secret_leaked();
}
