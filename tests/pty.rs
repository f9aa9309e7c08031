//! The interactive REPL, driven through a real pseudo-terminal.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rexpect::process::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

use crate::support::{llxprt, CODEX_PORTS, LIMIT};

const PROVIDERS: [&str; 4] = ["anthropic", "gemini", "qwen", "codex"];

/// The REPL on a pseudo-terminal that understands the usual escape sequences.
fn start(home: &Path) -> PtySession {
    start_with(home, &[])
}

/// The REPL started with `args`.
fn start_with(home: &Path, args: &[&str]) -> PtySession {
    let mut command = llxprt(home);
    command.env("TERM", "xterm").args(args);
    let options = Options::new()
        .timeout_ms(Some(LIMIT.as_millis() as u64))
        .strip_ansi_escape_codes(true);
    let mut repl = spawn_with_options(command, options).expect("the REPL starts");
    repl.exp_string("> ").expect("the first prompt");
    repl
}

/// rexpect hands over each byte as one `char`; turn that back into the text printed.
fn decoded(bytes_as_chars: &str) -> String {
    let bytes: Vec<u8> = bytes_as_chars.chars().map(|c| c as u32 as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Types `text` (a `\r` ends a line, as the Enter key does).
fn type_in(repl: &mut PtySession, text: &str) {
    repl.send(text).unwrap();
    repl.flush().unwrap();
}

/// Reads printed lines until each provider has had a `✓`/`✗` status line, in any order, and
/// returns the lines read.
fn expect_status_of_every_provider(repl: &mut PtySession) -> String {
    let mut missing: Vec<&str> = PROVIDERS.to_vec();
    let mut seen = String::new();
    for _ in 0..100 {
        if missing.is_empty() {
            return seen;
        }
        let line = decoded(&repl.exp_string("\n").unwrap_or_else(|e| {
            panic!("waiting for status lines of {missing:?}: {e}\nseen:\n{seen}")
        }));
        if line.contains('✓') || line.contains('✗') {
            missing.retain(|p| !line.contains(p));
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    panic!("no status line for {missing:?} in:\n{seen}");
}

/// Waits for the REPL to end and returns its exit code.
fn exit_code(repl: &mut PtySession) -> i32 {
    repl.exp_eof().expect("the REPL ends");
    let deadline = Instant::now() + LIMIT;
    loop {
        match repl.process().status() {
            Some(WaitStatus::Exited(_, code)) => return code,
            Some(WaitStatus::StillAlive) | None if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            other => panic!("the REPL did not exit normally: {other:?}"),
        }
    }
}

#[test]
fn help_shows_the_commands_and_quit_exits_zero() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    type_in(&mut repl, "/help\r");
    // The typed line is "/help", so these come from its output.
    repl.exp_string("/profile").unwrap();
    repl.exp_string("/quit").unwrap();
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn tab_completes_auth_which_shows_every_provider() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    type_in(&mut repl, "/au\t");
    // Only "/au" was typed: the rest is the completion redrawing the line.
    repl.exp_string("/auth").unwrap();
    type_in(&mut repl, "\r");
    expect_status_of_every_provider(&mut repl);
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn ctrl_c_at_the_prompt_drops_the_line_and_the_repl_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    type_in(&mut repl, "/frobnicate");
    repl.send_control('c').unwrap();
    // Like a shell, Ctrl-C drops what was typed ahead: wait for the fresh prompt on a new line.
    repl.exp_regex(r"\n\r*> ").unwrap();
    type_in(&mut repl, "/auth\r");
    let printed = expect_status_of_every_provider(&mut repl);
    // The dropped line never ran, so nothing complained about it.
    assert!(!printed.contains("frobnicate"), "{printed}");
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn ctrl_d_leaves_with_status_zero() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    repl.send_control('d').unwrap();
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn history_is_kept_without_the_lines_holding_keys() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    type_in(&mut repl, "/help\r");
    repl.exp_string("/quit").unwrap();
    type_in(&mut repl, "/key sk-test-secret-1\r");
    type_in(&mut repl, "/set auth-key sk-test-secret-2\r");
    type_in(&mut repl, "/set auth_key sk-test-secret-3\r");
    type_in(&mut repl, "/set AUTH-KEY=sk-test-secret-4\r");
    type_in(&mut repl, "/auth\r");
    // Lines run one after another: once /auth answered, the key lines were handled.
    expect_status_of_every_provider(&mut repl);
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);

    let history = std::fs::read_to_string(home.path().join("history")).unwrap();
    assert!(history.lines().any(|l| l == "/help"), "{history}");
    assert!(history.lines().any(|l| l == "/auth"), "{history}");
    assert!(!history.contains("sk-test-secret"), "{history}");
    assert!(!history.contains("/key"), "{history}");
}

#[test]
fn history_of_an_earlier_session_is_offered_again() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("history"), "#V2\n/auth\n").unwrap();
    let mut repl = start(home.path());
    // The up arrow recalls the earlier session's last line.
    type_in(&mut repl, "\x1b[A");
    repl.exp_string("/auth").unwrap();
    type_in(&mut repl, "\r");
    expect_status_of_every_provider(&mut repl);
    repl.send_control('d').unwrap();
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn tab_lists_the_providers_after_auth_and_completes_one() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    // Two tabs on an empty word list every provider.
    type_in(&mut repl, "/auth \t\t");
    // The list is sorted, so it ends with qwen.
    let listed = decoded(&repl.exp_string("qwen").unwrap());
    for provider in ["anthropic", "codex", "gemini"] {
        assert!(
            listed.contains(provider),
            "{provider} not offered: {listed}"
        );
    }
    // The line is still "/auth ": a unique prefix completes.
    type_in(&mut repl, "q\t");
    repl.exp_string("wen").unwrap();
    type_in(&mut repl, "status\r");
    repl.exp_string("OAuth Buckets for qwen:").unwrap();
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn tab_completes_bucket_names_once_the_bucket_exists() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start_with(home.path(), &["--sandbox"]);
    type_in(&mut repl, "/auth anthropic login work1@company.com\r");
    repl.exp_string("Logged in to anthropic/work1@company.com")
        .unwrap();
    repl.exp_string("> ").unwrap();
    type_in(&mut repl, "/auth anthropic logout wo\t");
    // Only "wo" was typed: the rest of the name is the completion.
    repl.exp_string("rk1@company.com").unwrap();
    type_in(&mut repl, "\r");
    repl.exp_string("Logged out of anthropic/work1@company.com")
        .unwrap();
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
    assert!(!home
        .path()
        .join("oauth/anthropic-work1@company.com.json")
        .exists());
}

#[test]
fn tab_completes_profile_names_after_profile_load() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    type_in(&mut repl, "/profile save model nightly-claude\r");
    repl.exp_string("Profile nightly-claude saved").unwrap();
    repl.exp_string("> ").unwrap();
    type_in(&mut repl, "/profile load nig\t");
    repl.exp_string("htly-claude").unwrap();
    type_in(&mut repl, "\r");
    repl.exp_string("Profile nightly-claude loaded").unwrap();
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn ctrl_c_cancels_a_device_sign_in_in_flight_and_the_repl_goes_on() {
    let home = tempfile::tempdir().unwrap();
    // With --nobrowser nobody approves the device code, so the sign-in waits until cancelled.
    let mut repl = start_with(home.path(), &["--sandbox", "--nobrowser"]);
    type_in(&mut repl, "/auth qwen login\r");
    repl.exp_string("Enter code:").unwrap();
    repl.exp_string("Waiting").unwrap();
    repl.send_control('c').unwrap();
    repl.exp_string("Cancelled").unwrap();
    repl.exp_regex(r"\n\r*> ").unwrap();
    type_in(&mut repl, "/auth\r");
    let printed = expect_status_of_every_provider(&mut repl);
    assert!(printed.contains("qwen: none"), "{printed}");
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
    assert!(!home.path().join("oauth/qwen.json").exists());
}

#[test]
fn ctrl_c_at_the_code_question_cancels_the_login_and_the_repl_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start_with(home.path(), &["--sandbox", "--nobrowser"]);
    type_in(&mut repl, "/auth anthropic login\r");
    repl.exp_string("Paste the authorization code:").unwrap();
    repl.send_control('c').unwrap();
    repl.exp_regex(r"\n\r*> ").unwrap();
    type_in(&mut repl, "/auth anthropic status\r");
    repl.exp_string("OAuth Buckets for anthropic:").unwrap();
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
    assert!(!home.path().join("oauth/anthropic.json").exists());
}

/// The REPL in the sandbox, and the root URL of its simulator (from the banner), whose
/// `/_sim` controls and counters the test can reach.
fn start_sandbox(home: &Path) -> (PtySession, String) {
    let mut command = llxprt(home);
    command.env("TERM", "xterm").arg("--sandbox");
    let options = Options::new()
        .timeout_ms(Some(LIMIT.as_millis() as u64))
        .strip_ansi_escape_codes(true);
    let mut repl = spawn_with_options(command, options).expect("the REPL starts");
    let (_, banner) = repl
        .exp_regex(r"simulated at http://127\.0\.0\.1:\d+")
        .expect("the sandbox banner");
    let root = banner.trim_start_matches("simulated at ").to_owned();
    repl.exp_string("> ").expect("the first prompt");
    (repl, root)
}

/// How many chat requests of `provider/account` the sandbox's simulator at `root` has counted.
fn chat_requests(root: &str, provider: &str, account: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(LIMIT)
        .build()
        .unwrap();
    let url = format!("{root}/_sim/{provider}/accounts/{account}/counters");
    let counters: serde_json::Value =
        runtime.block_on(async { client.get(&url).send().await.unwrap().json().await.unwrap() });
    counters["chat_requests"].as_u64().unwrap()
}

/// Waits until the sandbox's simulator has counted `n` chat requests of `provider/account`:
/// then the last one is in flight, held back by `/sandbox slow`.
fn until_chat_requests(root: &str, provider: &str, account: &str, n: u64) {
    let deadline = Instant::now() + LIMIT;
    while chat_requests(root, provider, account) < n {
        assert!(
            Instant::now() < deadline,
            "chat request {n} of {provider}/{account} never reached the simulator"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Types a line and waits for the next prompt, returning what was printed in between.
fn run_line(repl: &mut PtySession, line: &str) -> String {
    type_in(repl, &format!("{line}\r"));
    decoded(&repl.exp_regex(r"\n\r*> ").unwrap().0)
}

/// The `P/BUCKET: N requests` line of `/stats buckets` output, without the time of last use.
fn requests_line<'a>(printed: &'a str, bucket: &str) -> &'a str {
    let line = printed
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{bucket}:")))
        .unwrap_or_else(|| panic!("no statistics of {bucket} in:\n{printed}"));
    line.split(" (").next().unwrap().trim()
}

#[test]
fn ctrl_c_cancels_a_slow_reply_and_the_session_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let (mut repl, root) = start_sandbox(home.path());
    let printed = run_line(&mut repl, "/auth anthropic login");
    assert!(printed.contains("Logged in to anthropic"), "{printed}");
    run_line(&mut repl, "/auth anthropic enable");
    let printed = run_line(&mut repl, "/sandbox slow anthropic default 30");
    assert!(printed.contains("30 s"), "{printed}");

    type_in(&mut repl, "hello\r");
    until_chat_requests(&root, "anthropic", "default", 1);
    repl.send_control('c').unwrap();
    // The reply would take 30 s, longer than the REPL is given here to show the prompt again.
    repl.exp_string("Cancelled.").unwrap();
    repl.exp_regex(r"\n\r*> ").unwrap();

    // The slow reply was the only one slowed: the next message is answered at once.
    let printed = run_line(&mut repl, "hello again");
    assert!(
        printed.contains("[simulated anthropic/default] you said: hello again"),
        "{printed}"
    );
    // The statistics count what the provider counted, the cancelled request included.
    let sent = chat_requests(&root, "anthropic", "default");
    assert_eq!(sent, 2);
    let counted = format!("anthropic/default: {sent} requests");
    let stats = run_line(&mut repl, "/stats buckets");
    assert!(stats.contains("OAuth Bucket Statistics:"), "{stats}");
    assert_eq!(requests_line(&stats, "anthropic/default"), counted);
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);

    // Another process reads the same statistics from stats.json.
    let other = crate::support::run(home.path(), &["stats", "buckets"], "");
    assert_eq!(other.code(), Some(0), "{}", other.stderr);
    assert_eq!(requests_line(&other.stdout, "anthropic/default"), counted);
}

#[test]
fn ctrl_c_cancels_a_codex_stream_that_stalls_mid_reply() {
    // The sign-in listens on Codex's fixed loopback ports.
    let _ports = CODEX_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let home = tempfile::tempdir().unwrap();
    let (mut repl, _) = start_sandbox(home.path());
    let printed = run_line(&mut repl, "/auth codex login");
    assert!(printed.contains("Logged in to codex"), "{printed}");
    run_line(&mut repl, "/auth codex enable");
    // Codex is OpenAI's chat with a ChatGPT subscription.
    let printed = run_line(&mut repl, "/provider openai");
    assert!(!printed.contains("Error"), "{printed}");
    run_line(&mut repl, "/sandbox slow codex default 30");

    type_in(&mut repl, "hello\r");
    // The first words of the reply are shown, then the stream stalls.
    repl.exp_string("[simulated").unwrap();
    repl.send_control('c').unwrap();
    let before = repl.exp_string("Cancelled.").unwrap();
    let before = decoded(&before).replace('\r', "");
    // The partial reply stays on screen, finished by a line break, and was never completed.
    assert!(before.ends_with('\n'), "{before:?}");
    assert!(!before.contains("you said"), "{before:?}");
    repl.exp_regex(r"\n\r*> ").unwrap();

    let printed = run_line(&mut repl, "hello again");
    assert!(
        printed.contains("[simulated codex/default] you said: hello again"),
        "{printed}"
    );
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
}

#[test]
fn key_alone_asks_for_the_key_without_showing_it_and_keeps_it_out_of_the_history() {
    let home = tempfile::tempdir().unwrap();
    let mut repl = start(home.path());
    type_in(&mut repl, "/key\r");
    repl.exp_string("(not shown):").unwrap();
    type_in(&mut repl, "sk-typed-in-the-dark\r");
    let shown = decoded(&repl.exp_string("API key set").unwrap());
    assert!(!shown.contains("sk-typed"), "the key was echoed: {shown:?}");
    type_in(&mut repl, "/auth\r");
    let printed = expect_status_of_every_provider(&mut repl);
    assert!(!printed.contains("sk-typed"), "{printed}");
    type_in(&mut repl, "/quit\r");
    assert_eq!(exit_code(&mut repl), 0);
    let history = std::fs::read_to_string(home.path().join("history")).unwrap_or_default();
    assert!(!history.contains("sk-typed"), "{history}");
}
