//! `settings.json` and profile files that are not what llxprt can use: one error line that
//! names the file, a failed run, never a panic or a backtrace.

use std::fs;
use std::path::Path;

use crate::support::{run_with, Run};

/// A developer's usual setting, under which returning an error from `main` prints a backtrace.
const ENV: &[(&str, &str)] = &[("RUST_BACKTRACE", "1")];

/// The run failed with exactly one line on stderr, an error naming `file`, and printed nothing
/// else. (`run_with` already failed the test if it panicked.)
fn assert_one_error_naming(run: &Run, file: &Path, case: &str) {
    assert_eq!(run.code(), Some(1), "{case}: {}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{case}: not one line:\n{}", run.stderr);
    assert!(lines[0].starts_with("Error: "), "{case}: {}", lines[0]);
    assert!(
        lines[0].contains(&file.display().to_string()),
        "{case}: the file is not named: {}",
        lines[0]
    );
    assert!(run.stdout.is_empty(), "{case}: {}", run.stdout);
}

#[test]
fn a_settings_file_that_is_not_valid_json_or_names_an_unknown_provider_stops_the_run() {
    let cases = [
        ("a syntax error", r#"{"oauth_enabled": {"#),
        ("an empty file", ""),
        ("not an object", "[1, 2]"),
        ("a wrong type", r#"{"oauth_enabled": ["gemini"]}"#),
        (
            "an unknown provider to enable",
            r#"{"oauth_enabled": {"claude": true}}"#,
        ),
        (
            "an unknown provider section",
            r#"{"providers": {"mistral": {"base_url": "http://127.0.0.1:9"}}}"#,
        ),
    ];
    for (case, text) in cases {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("settings.json");
        fs::write(&file, text).unwrap();
        for args in [&["auth"][..], &["-p", "hello"], &[]] {
            let run = run_with(home.path(), args, ENV, "/auth\n");
            assert_one_error_naming(&run, &file, &format!("{case}, {args:?}"));
        }
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            text,
            "{case}: the file was changed"
        );
    }
}

#[test]
fn a_profile_that_is_not_valid_json_or_names_an_unknown_provider_is_refused() {
    let cases = [
        ("a syntax error", "{nope"),
        (
            "an unknown kind",
            r#"{"type": "team", "provider": "anthropic"}"#,
        ),
        (
            "an unknown provider",
            r#"{"type": "model", "provider": "claude"}"#,
        ),
    ];
    for (case, text) in cases {
        let home = tempfile::tempdir().unwrap();
        fs::create_dir(home.path().join("profiles")).unwrap();
        let file = home.path().join("profiles").join("team.json");
        fs::write(&file, text).unwrap();

        let asked_for = run_with(home.path(), &["--profile", "team", "auth"], ENV, "");
        assert_one_error_naming(&asked_for, &file, &format!("{case}, --profile"));
        let loaded = run_with(home.path(), &["profile", "load", "team"], ENV, "");
        assert_one_error_naming(&loaded, &file, &format!("{case}, /profile load"));
        let in_line_mode = run_with(home.path(), &[], ENV, "/profile load team\n");
        assert_one_error_naming(&in_line_mode, &file, &format!("{case}, line mode"));
    }
}

#[test]
fn a_broken_default_profile_is_named_once_and_can_still_be_repaired() {
    let home = tempfile::tempdir().unwrap();
    fs::create_dir(home.path().join("profiles")).unwrap();
    let file = home.path().join("profiles").join("team.json");
    fs::write(&file, r#"{"type": "model", "provider": "claude"}"#).unwrap();
    fs::write(
        home.path().join("settings.json"),
        r#"{"default_profile": "team"}"#,
    )
    .unwrap();

    let deleted = run_with(home.path(), &["profile", "delete", "team"], ENV, "");
    let errors: Vec<&str> = deleted.stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(errors.len(), 1, "{}", deleted.stderr);
    assert!(
        errors[0].contains(&file.display().to_string()),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("claude"), "{}", errors[0]);
    assert_eq!(deleted.code(), Some(0), "{}", deleted.stderr);
    assert!(!file.exists());

    let after = run_with(home.path(), &["auth"], ENV, "");
    assert_eq!(after.code(), Some(0), "{}", after.stderr);
}
