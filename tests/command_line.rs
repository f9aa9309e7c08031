//! The invocation forms of cli.md: flags, `--help` and one-shot `llxprt WORDS...`.

use crate::support::run;

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
