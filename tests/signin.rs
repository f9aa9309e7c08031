//! Signing in from anywhere, through the binary against the simulator: Codex's device login, a
//! machine with no display or a browser that fails, and a token directory that cannot be
//! written.

use llxprt_domain::OAuthProvider;

use crate::support::{Lab, LIMIT};

const CODEX: OAuthProvider = OAuthProvider::Codex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_device_login_shows_a_code_and_signs_in_once_it_is_entered_elsewhere() {
    let lab = Lab::start().await;
    lab.sim.set_login_account(CODEX, "laptop");
    // No display and no browser: nothing could be opened here anyway.
    let mut child = lab
        .spawn(&[], &[("DISPLAY", ""), ("BROWSER", "")])
        .within(LIMIT);
    child.send("/auth codex login work1 --device").await;
    let visit = child.wait_for("Visit: ").await;
    let code = child.wait_for("Enter code: ").await;
    let visit = visit.trim_start_matches("Visit: ");
    assert_eq!(
        visit,
        format!("{}/codex/device", lab.sim.endpoints().codex.issuer)
    );
    // The user types the code on another device.
    let code = code.trim_start_matches("Enter code: ");
    let page = lab
        .sim
        .browse(&format!("{visit}?user_code={code}"))
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    child.wait_for("Logged in to codex/work1").await;
    child.send("/auth codex status").await;
    child.wait_for("[ok] work1").await;
    let done = child.finish().await;
    assert_eq!(done.code(), Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(lab.home().join("oauth/codex-work1.json").exists());
    let counted = lab.sim.counters(CODEX, "laptop");
    assert_eq!(counted.device_code_requests, 1);
    assert_eq!(counted.token_exchanges, 1);
    assert_eq!(counted.authorize_hits, 0, "no browser sign-in was started");
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_code_nobody_enters_fails_clearly_when_the_issuer_lets_it_expire() {
    let lab = Lab::start().await;
    lab.sim.expire_next_device_authorization(CODEX);
    let done = lab
        .run(&["auth", "codex", "login", "--device"], &[], &[])
        .await;
    assert_eq!(done.code(), Some(1), "{}", done.stdout);
    let all = format!("{}\n{}", done.stdout, done.stderr);
    assert!(
        all.lines()
            .any(|l| l.contains("expired") && l.contains("/auth codex login --device")),
        "{all}"
    );
    assert!(!lab.home().join("oauth/codex.json").exists());
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_display_codex_asks_for_the_paste_and_says_device_login_exists() {
    let lab = Lab::start().await;
    let mut child = lab
        .spawn(&[], &[("DISPLAY", ""), ("BROWSER", "")])
        .within(LIMIT);
    child.send("/auth codex login work2").await;
    let authorize = format!("{}/oauth/authorize", lab.sim.endpoints().codex.issuer);
    let url = child
        .line_where("the authorize URL", |l| l.starts_with(&authorize))
        .await;
    child.wait_for("no display").await;
    child
        .wait_for("`/auth codex login work2 --device` signs in with a code")
        .await;
    child.wait_for("Paste the redirect URL").await;
    // The user opens it on another machine and pastes where the browser ended.
    let consent = lab.sim.consent(&url).await.unwrap();
    let llxprt_simulator::Consent::Redirect(callback) = consent else {
        panic!("{consent:?}")
    };
    child.send(callback.expose()).await;
    child.wait_for("Logged in to codex/work2").await;
    let done = child.finish().await;
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_exits_with_failure_at_once_gives_the_paste_flow() {
    let lab = Lab::start().await;
    // Nothing on PATH: no desktop opener to fall back on, whatever this machine has.
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_str().unwrap();
    let mut child = lab
        .spawn(
            &[],
            &[("DISPLAY", ":0"), ("BROWSER", "/bin/false"), ("PATH", path)],
        )
        .within(LIMIT);
    child.send("/auth gemini login").await;
    let authorize = lab.sim.endpoints().gemini.authorize_url.clone();
    let url = child
        .line_where("the authorize URL", |l| l.starts_with(&authorize))
        .await;
    child.wait_for("`/bin/false` exited").await;
    child.wait_for("Paste the redirect URL").await;
    let consent = lab.sim.consent(&url).await.unwrap();
    let llxprt_simulator::Consent::Redirect(callback) = consent else {
        panic!("{consent:?}")
    };
    child.send(callback.expose()).await;
    child.wait_for("Logged in to gemini/default").await;
    let done = child.finish().await;
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_directory_that_cannot_be_written_stops_the_sign_in_before_it_starts() {
    let lab = Lab::start().await;
    // A file where the token directory belongs: unwritable for root too.
    std::fs::write(lab.home().join("oauth"), "in the way").unwrap();
    let done = lab.run(&["auth", "gemini", "login"], &[], &[]).await;
    assert_eq!(done.code(), Some(1), "{}", done.stdout);
    let all = format!("{}\n{}", done.stdout, done.stderr);
    assert!(
        all.lines()
            .any(|l| l.contains("oauth") && l.contains("not a directory")),
        "{all}"
    );
    let authorize = lab.sim.endpoints().gemini.authorize_url.clone();
    assert!(
        !all.contains(&authorize),
        "the sign-in started anyway:\n{all}"
    );
    assert_eq!(
        lab.sim
            .provider_counters(OAuthProvider::Gemini)
            .authorize_hits,
        0
    );
}
