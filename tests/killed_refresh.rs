//! A process killed in the middle of a refresh: after the provider rotated the refresh token,
//! before the new one reached the file.

use std::time::Duration;

use llxprt_domain::OAuthProvider;
use llxprt_store_file::json::token_from_json;

use crate::support::{Lab, LIMIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_provider_rotated_leaves_the_old_file_and_the_next_run_asks_for_a_login() {
    let lab = Lab::start().await;
    let sim = &lab.sim;
    let home = lab.home();
    let message = ["--nobrowser", "--profile", "crash", "-p", "hello"];

    // Signed in to the bucket work1 with a token that is already expired, so the next message
    // has to refresh it first.
    sim.set_token_lifetime(OAuthProvider::Anthropic, 0);
    let mut setup = lab.spawn(&["--nobrowser"], &[]).within(LIMIT);
    setup.login(&lab, OAuthProvider::Anthropic, "work1").await;
    setup.send("/provider anthropic").await;
    setup.send("/profile save model crash work1").await;
    let done = setup.finish().await;
    assert_eq!(done.code(), Some(0), "{}\n{}", done.stdout, done.stderr);
    sim.set_token_lifetime(OAuthProvider::Anthropic, 3600);
    let file = home.join("oauth").join("anthropic-work1.json");
    let before = std::fs::read_to_string(&file).unwrap();

    // The provider rotates the refresh token and its answer never arrives: the process is
    // killed while it waits.
    sim.hold_next_refresh(OAuthProvider::Anthropic);
    let refreshing = lab.spawn(&message, &[]).within(LIMIT);
    let mut rotated = false;
    for _ in 0..500 {
        if sim.counters(OAuthProvider::Anthropic, "user1").refreshes == 1 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated, "the child never refreshed");
    refreshing.kill().await;

    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(after, before, "the file was written or torn");
    let kept = token_from_json(&after).unwrap();
    assert!(kept.refresh_token.is_some());
    for entry in std::fs::read_dir(home.join("oauth")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                token_from_json(&text).is_ok(),
                "{} is not a token file",
                path.display()
            );
        }
    }

    // The next run presents the old refresh token, which the provider already spent. (It also
    // takes the bucket's lock, which the killed process held: the kernel released it.)
    let next = lab.spawn(&message, &[]).within(LIMIT);
    let told = next.finish().await;
    assert_eq!(told.code(), Some(1), "{}", told.stdout);
    assert_eq!(
        sim.counters(OAuthProvider::Anthropic, "user1")
            .reused_refresh_tokens,
        1
    );
    let needs_login = told
        .lines()
        .into_iter()
        .find(|l| l.contains("needs a new login"))
        .unwrap_or_else(|| panic!("nothing says a login is needed:\n{}", told.stderr))
        .to_owned();
    assert!(needs_login.contains("anthropic/work1"), "{needs_login}");
    assert!(
        needs_login.contains("/auth anthropic login work1"),
        "{needs_login}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "the token file is kept as it was"
    );
}
