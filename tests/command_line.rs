//! The invocation forms of cli.md: flags, `--help` and one-shot `llxprt WORDS...`.

use std::path::Path;

use llxprt_domain::OAuthProvider;

use crate::support::{llxprt, run, run_command, sandbox, Lab, Run, LIMIT};

#[test]
fn help_lists_every_flag_with_a_description_on_its_line() {
    let home = tempfile::tempdir().unwrap();
    let help = run(home.path(), &["--help"], "");
    assert_eq!(help.code(), Some(0));
    for flag in [
        "-p, --prompt",
        "--provider",
        "--model",
        "--profile",
        "--key ",
        "--keyfile",
        "--set",
        "--nobrowser",
        "--sandbox",
    ] {
        let line = help
            .stdout
            .lines()
            .find(|line| line.contains(flag))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{}", help.stdout));
        let description = line.split_once('>').map_or(line, |(_, rest)| rest);
        assert!(
            description.split_whitespace().count() >= 3,
            "{flag} has no description on its line: {line}"
        );
    }
}

#[test]
fn one_shot_words_run_that_slash_command() {
    let home = tempfile::tempdir().unwrap();
    let help = run(home.path(), &["help"], "");
    assert_eq!(help.code(), Some(0), "{}", help.stderr);
    assert!(help.stdout.contains("/auth") && help.stdout.contains("/profile"));

    let auth = run(home.path(), &["auth"], "");
    assert_eq!(auth.code(), Some(0), "{}", auth.stderr);
    for provider in ["anthropic", "gemini", "qwen", "codex"] {
        assert!(
            auth.stdout.lines().any(|l| l.contains(provider)),
            "{provider} missing:\n{}",
            auth.stdout
        );
    }
}

#[test]
fn a_failing_one_shot_command_exits_non_zero_with_one_line() {
    let home = tempfile::tempdir().unwrap();
    let failed = run(home.path(), &["frobnicate", "now"], "");
    assert_eq!(failed.code(), Some(1));
    let naming: Vec<_> = failed
        .lines()
        .into_iter()
        .filter(|l| l.contains("frobnicate"))
        .collect();
    assert_eq!(naming.len(), 1, "{naming:?}");
}

#[test]
fn set_without_equals_is_a_clear_error_that_does_not_echo_the_value() {
    let home = tempfile::tempdir().unwrap();
    let refused = run(home.path(), &["--set", "sk-looks-like-a-key", "help"], "");
    assert_eq!(refused.code(), Some(2));
    assert!(refused.stderr.contains("NAME=VALUE"), "{}", refused.stderr);
    assert!(
        !refused.stderr.contains("sk-looks-like-a-key"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty());
}

#[test]
fn an_unknown_flag_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let refused = run(home.path(), &["--frobnicate"], "");
    assert_ne!(refused.code(), Some(0));
}

fn reply_from(run: &Run, who: &str, text: &str) -> bool {
    run.stdout
        .lines()
        .any(|l| l == format!("[simulated {who}] you said: {text}"))
}

#[test]
fn provider_and_model_flags_choose_what_the_session_starts_with() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &["--provider", "qwen", "--model", "qwen-test"],
        "/provider\n/model\n",
    );
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert!(
        done.stdout.lines().any(|l| l == "Provider: qwen"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.lines().any(|l| l == "Model: qwen-test"),
        "{}",
        done.stdout
    );
}

#[test]
fn key_keyfile_and_set_auth_key_send_that_key() {
    let home = tempfile::tempdir().unwrap();
    let key_file = home.path().join("key");
    std::fs::write(&key_file, "\tsim-gemini-key  \r\n").unwrap();
    let key_file = key_file.to_string_lossy().into_owned();
    for flags in [
        vec!["--provider", "gemini", "--key", "sim-gemini-key"],
        vec!["--provider", "gemini", "--keyfile", &key_file],
        vec!["--provider", "gemini", "--set", "auth-key=sim-gemini-key"],
    ] {
        let mut args = flags.clone();
        args.extend(["-p", "hello"]);
        let done = sandbox(home.path(), &args, "");
        assert_eq!(done.code(), Some(0), "{flags:?}: {}", done.stderr);
        assert_eq!(
            done.stdout, "[simulated gemini/api-key] you said: hello\n",
            "{flags:?}: a one-shot prints only its answer"
        );
        assert!(!done.stdout.contains("sim-gemini-key") && !done.stderr.contains("sim-gemini-key"));
    }
}

#[test]
fn a_command_line_key_outranks_the_environment_which_outranks_oauth() {
    let home = tempfile::tempdir().unwrap();
    // Signed in and enabled: OAuth would answer if nothing outranked it.
    let oauth = sandbox(
        home.path(),
        &[],
        "/auth anthropic login\n/auth anthropic enable\nhi\n",
    );
    assert!(
        reply_from(&oauth, "anthropic/default", "hi"),
        "{}",
        oauth.stdout
    );

    let mut env_key = llxprt(home.path());
    env_key
        .env("ANTHROPIC_API_KEY", "sim-anthropic-key")
        .args(["--sandbox", "-p", "hi"]);
    let done = run_command(env_key, "");
    assert!(
        reply_from(&done, "anthropic/api-key", "hi"),
        "{}",
        done.stdout
    );
    assert!(
        !done.stdout.contains("Sign in"),
        "no flow may start: {}",
        done.stdout
    );

    let mut both = llxprt(home.path());
    both.env("ANTHROPIC_API_KEY", "wrong-key").args([
        "--sandbox",
        "--key",
        "sim-anthropic-key",
        "-p",
        "hi",
    ]);
    let done = run_command(both, "");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert!(
        reply_from(&done, "anthropic/api-key", "hi"),
        "{}",
        done.stdout
    );

    let mut wrong = llxprt(home.path());
    wrong
        .env("ANTHROPIC_API_KEY", "wrong-key")
        .args(["--sandbox", "-p", "hi"]);
    let done = run_command(wrong, "");
    assert_eq!(
        done.code(),
        Some(1),
        "a bad key is not silently replaced by OAuth"
    );
    assert!(!done.stderr.contains("wrong-key"), "{}", done.stderr);
}

#[test]
fn set_overrides_settings_for_one_run_only() {
    let home = tempfile::tempdir().unwrap();
    let done = run(
        home.path(),
        &["--set", "oauth_enabled.gemini=true", "auth"],
        "",
    );
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let gemini = done.stdout.lines().find(|l| l.contains("gemini")).unwrap();
    assert!(
        gemini.contains("enabled") && !gemini.contains("disabled"),
        "{gemini}"
    );
    assert!(!home.path().join("settings.json").exists());

    let refused = run(home.path(), &["--set", "frobnicate=1", "auth"], "");
    assert_eq!(refused.code(), Some(1));
    let naming: Vec<_> = refused
        .lines()
        .into_iter()
        .filter(|l| l.contains("frobnicate"))
        .collect();
    assert_eq!(naming.len(), 1, "{naming:?}");
}

#[test]
fn settings_come_from_the_file_then_the_environment_then_set() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::start());
    let home = lab.home();
    let closed = "http://127.0.0.1:9";
    std::fs::write(
        home.join("settings.json"),
        format!(r#"{{"providers": {{"anthropic": {{"base_url": "{closed}"}}}}}}"#),
    )
    .unwrap();
    let ask = |env: Option<&str>, set: Option<&str>| {
        let mut command = llxprt(home);
        if let Some(url) = env {
            command.env("LLXPRT_PROVIDERS__ANTHROPIC__BASE_URL", url);
        }
        if let Some(url) = set {
            command
                .arg("--set")
                .arg(format!("providers.anthropic.base_url={url}"));
        }
        command.args(["--key", "sim-anthropic-key", "-p", "hi"]);
        run_command(command, "")
    };
    let base = lab.sim.endpoints().anthropic.base_url.clone();
    assert_eq!(
        ask(None, None).code(),
        Some(1),
        "the file's closed port was not used"
    );
    assert!(reply_from(
        &ask(Some(&base), None),
        "anthropic/api-key",
        "hi"
    ));
    assert_eq!(
        ask(Some(&base), Some(closed)).code(),
        Some(1),
        "--set did not win"
    );
    assert!(reply_from(
        &ask(Some(closed), Some(&base)),
        "anthropic/api-key",
        "hi"
    ));
}

#[test]
fn start_up_errors_are_one_line_and_exit_one() {
    let home = tempfile::tempdir().unwrap();
    for (args, named) in [
        (vec!["--profile", "ghost", "auth"], "ghost"),
        (
            vec!["--keyfile", "/nonexistent/key", "auth"],
            "/nonexistent/key",
        ),
    ] {
        let done = run(home.path(), &args, "");
        assert_eq!(done.code(), Some(1), "{args:?}");
        assert_eq!(done.stderr.lines().count(), 1, "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains(named), "{}", done.stderr);
        assert!(done.stdout.is_empty(), "{}", done.stdout);
    }
}

#[test]
fn a_failing_prompt_exits_non_zero() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(home.path(), &["-p", "hello"], "");
    assert_eq!(done.code(), Some(1));
    assert!(
        done.stderr.contains("/auth anthropic enable"),
        "{}",
        done.stderr
    );
}

/// A `$BROWSER` that records the URL it was given (its last argument) in `opened`.
fn recording_browser(home: &Path) -> (String, std::path::PathBuf) {
    let script = home.join("browser.sh");
    let opened = home.join("opened");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor last; do :; done\nprintf '%s' \"$last\" > '{}'\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script.to_string_lossy().into_owned(), opened)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobrowser_prints_the_url_opens_nothing_and_takes_the_pasted_code() {
    let lab = Lab::start().await;
    lab.sim
        .set_login_account(OAuthProvider::Anthropic, "pasted");
    lab.sim.set_login_account(OAuthProvider::Gemini, "pasted");
    let home = lab.home();
    let (browser, opened) = recording_browser(home);
    let mut child = lab
        .spawn(
            &["--nobrowser"],
            &[("BROWSER", &browser), ("DISPLAY", ":0")],
        )
        .within(LIMIT);
    // Anthropic shows a code to paste; Gemini, without a browser, redirects to its code page.
    child.login(&lab, OAuthProvider::Anthropic, "default").await;
    child.login(&lab, OAuthProvider::Gemini, "default").await;
    child.send("/auth anthropic enable").await;
    child.send("hello").await;
    let done = child.finish().await;
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert!(
        reply_from(&done, "anthropic/pasted", "hello"),
        "{}",
        done.stdout
    );
    assert!(!opened.exists(), "--nobrowser launched $BROWSER");
    assert!(home.join("oauth/anthropic.json").exists());
    assert!(home.join("oauth/gemini.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_command_gets_exactly_the_printed_url() {
    let lab = Lab::start().await;
    let (browser, opened) = recording_browser(lab.home());
    let mut child = lab
        .spawn(&[], &[("BROWSER", &browser), ("DISPLAY", ":0")])
        .within(LIMIT);
    let printed = child.login(&lab, OAuthProvider::Anthropic, "default").await;
    let done = child.finish().await;
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert_eq!(std::fs::read_to_string(&opened).unwrap(), printed);
}
