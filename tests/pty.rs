//! The interactive REPL, driven through a real pseudo-terminal.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use rexpect::process::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

use crate::support::{llxprt, LIMIT};

const PROVIDERS: [&str; 4] = ["anthropic", "gemini", "qwen", "codex"];

/// The REPL on a pseudo-terminal that understands the usual escape sequences.
fn start(home: &Path) -> PtySession {
    let mut command = llxprt(home);
    command.env("TERM", "xterm");
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
