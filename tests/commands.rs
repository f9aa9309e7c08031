//! Every slash command of cli.md through the non-terminal line mode of the built binary, in the
//! sandbox (each bucket signs in as the simulated account of the same name).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{run, sandbox, Run};

/// The lines printed anywhere (stdout or stderr) that contain `needle`.
fn lines_with<'a>(run: &'a Run, needle: &str) -> Vec<&'a str> {
    run.lines()
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

/// The one line that contains `needle`; fails if there is none or more than one.
fn one_line<'a>(run: &'a Run, needle: &str) -> &'a str {
    match lines_with(run, needle).as_slice() {
        [line] => line,
        other => panic!(
            "expected one line with {needle:?}, got {other:?}\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        ),
    }
}

/// The `/auth` overview line of `provider`.
fn overview_line<'a>(run: &'a Run, provider: &str) -> &'a str {
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with(['✓', '✗']) && l.contains(&format!(" {provider}")))
        .collect();
    lines
        .last()
        .unwrap_or_else(|| panic!("no /auth line for {provider}:\n{}", run.stdout))
}

/// Every `OAuth Buckets for P:` block printed, each as its bucket lines.
fn status_blocks<'a>(stdout: &'a str, provider: &str) -> Vec<Vec<&'a str>> {
    let header = format!("OAuth Buckets for {provider}:");
    let mut blocks = Vec::new();
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if line == header {
            let mut block = Vec::new();
            while let Some(next) = lines.peek().filter(|l| l.starts_with("  ")) {
                block.push(*next);
                lines.next();
            }
            blocks.push(block);
        }
    }
    blocks
}

/// The last status block of `provider`.
fn last_status<'a>(run: &'a Run, provider: &str) -> Vec<&'a str> {
    status_blocks(&run.stdout, provider)
        .pop()
        .unwrap_or_else(|| panic!("no status of {provider}:\n{}", run.stdout))
}

/// Whether `line` is `  [ok] NAME (expires in N minutes)` with N within a one-hour token.
fn is_ok_line(line: &str, name: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("  [ok] {name} (expires in ")) else {
        return false;
    };
    let rest = without_figures(rest);
    let Some(minutes) = rest.strip_suffix(" minutes)") else {
        return false;
    };
    minutes.parse::<u32>().is_ok_and(|m| (50..=60).contains(&m))
}

/// `rest` without the figures a line may end with once the provider reported the account's
/// limits (`…; 5h 0%, 7d 0%)`), the closing parenthesis kept.
fn without_figures(rest: &str) -> String {
    let Some((detail, figures)) = rest
        .strip_suffix(')')
        .and_then(|inner| inner.split_once("; "))
    else {
        return rest.to_owned();
    };
    let is_figure = |f: &str| {
        f.split_once(' ').is_some_and(|(window, percent)| {
            ["5h", "7d", "weekly"].contains(&window)
                && percent
                    .strip_suffix('%')
                    .is_some_and(|p| p.parse::<u8>().is_ok_and(|p| p <= 100))
        })
    };
    if figures.split(", ").all(is_figure) {
        format!("{detail})")
    } else {
        rest.to_owned()
    }
}

/// Whether `line` is `  [cooldown] NAME (until HH:MM)`, figures allowed at its end.
fn is_cooldown_line(line: &str, name: &str) -> bool {
    let Some(time) = line
        .strip_prefix(&format!("  [cooldown] {name} (until "))
        .map(without_figures)
    else {
        return false;
    };
    let Some(time) = time.strip_suffix(')') else {
        return false;
    };
    let digits: Vec<bool> = time.chars().map(|c| c.is_ascii_digit()).collect();
    digits == [true, true, false, true, true] && time.as_bytes()[2] == b':'
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn settings(home: &Path) -> serde_json::Value {
    let text = fs::read_to_string(home.join("settings.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn succeeded(run: &Run) {
    assert_eq!(
        run.code(),
        Some(0),
        "a line failed:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn auth_overview_shows_each_provider_with_its_method_switch_and_expiry() {
    let home = tempfile::tempdir().unwrap();
    let mut command = crate::support::llxprt(home.path());
    command.env("GEMINI_API_KEY", "sim-gemini-key");
    command.arg("--sandbox");
    let done = crate::support::run_command(
        command,
        "/auth anthropic login\n/auth\n/auth anthropic enable\n/auth\n",
    );
    succeeded(&done);
    // Signed in but not enabled: the line says what would use the token.
    let before = done
        .stdout
        .lines()
        .find(|l| l.starts_with('✗') && l.contains(" anthropic"))
        .unwrap_or_else(|| panic!("{}", done.stdout));
    assert!(before.contains("/auth anthropic enable"), "{before}");
    let anthropic = overview_line(&done, "anthropic");
    assert!(anthropic.starts_with('✓'), "{anthropic}");
    for word in ["oauth", "enabled", "expires in"] {
        assert!(anthropic.contains(word), "{word} missing: {anthropic}");
    }
    let gemini = overview_line(&done, "gemini");
    assert!(gemini.starts_with('✓'), "{gemini}");
    assert!(
        gemini.contains("api-key") && gemini.contains("disabled"),
        "{gemini}"
    );
    assert!(gemini.contains("GEMINI_API_KEY"), "says why: {gemini}");
    for provider in ["qwen", "codex"] {
        let line = overview_line(&done, provider);
        assert!(line.starts_with('✗'), "{line}");
        assert!(line.contains("none") && line.contains("disabled"), "{line}");
    }
}

#[test]
fn auth_status_shows_ok_expired_cooldown_and_needs_login_buckets() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login\n\
         /auth anthropic login ok1\n\
         /auth anthropic login cool\n\
         /auth anthropic login gone\n\
         /sandbox lifetime anthropic 0\n\
         /auth anthropic login stale\n\
         /sandbox lifetime anthropic 3600\n\
         /profile save model chain gone cool ok1\n\
         /profile load chain\n\
         /sandbox revoke anthropic gone\n\
         /sandbox limit anthropic cool 600\n\
         hello\n\
         /auth anthropic status\n\
         /auth anthropic\n",
    );
    succeeded(&done);
    // The message went past the revoked and the rate-limited bucket to the third.
    assert!(
        done.stdout
            .contains("[simulated anthropic/ok1] you said: hello"),
        "{}",
        done.stdout
    );
    let blocks = status_blocks(&done.stdout, "anthropic");
    assert_eq!(blocks.len(), 2, "{}", done.stdout);
    assert_eq!(blocks[0], blocks[1], "/auth P differs from /auth P status");
    let status = &blocks[0];
    let find = |name: &str| {
        status
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(name) || l.ends_with(&format!(" {name}")))
            .copied()
            .unwrap_or_else(|| panic!("no line for {name}: {status:?}"))
    };
    assert!(is_ok_line(find("default"), "default"), "{status:?}");
    assert!(is_ok_line(find("ok1"), "ok1"), "{status:?}");
    assert!(is_cooldown_line(find("cool"), "cool"), "{status:?}");
    assert_eq!(find("stale"), "  [expired] stale");
    assert_eq!(find("gone"), "  [needs login] gone");
    assert_eq!(status.len(), 5, "{status:?}");
}

#[test]
fn auth_status_of_a_provider_without_buckets_still_has_its_header() {
    let home = tempfile::tempdir().unwrap();
    let done = run(home.path(), &["auth", "qwen", "status"], "");
    succeeded(&done);
    assert!(
        done.stdout.starts_with("OAuth Buckets for qwen:"),
        "{}",
        done.stdout
    );
    assert!(
        last_status(&done, "qwen")
            .iter()
            .all(|l| !l.contains("[ok]")),
        "{}",
        done.stdout
    );
}

#[test]
fn enable_and_disable_are_kept_in_settings_and_start_no_flow() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(home.path(), &[], "/auth gemini enable\n/auth qwen enable\n");
    succeeded(&done);
    assert_eq!(settings(home.path())["oauth_enabled"]["gemini"], true);
    assert_eq!(settings(home.path())["oauth_enabled"]["qwen"], true);
    // Enabling signed in to nothing: no URL, no device code, no token.
    assert!(
        !done
            .stdout
            .lines()
            .any(|l| l.contains("http") && !l.starts_with("Sandbox:")),
        "{}",
        done.stdout
    );
    assert!(!done.stdout.contains("Device code"), "{}", done.stdout);
    let tokens = home.path().join("oauth");
    let token_files = fs::read_dir(&tokens)
        .map(|dir| {
            dir.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(token_files, 0);

    // A later process sees the choice, and can take it back.
    let later = run(home.path(), &[], "/auth\n/auth gemini disable\n");
    succeeded(&later);
    let gemini = overview_line(&later, "gemini");
    assert!(
        gemini.contains("enabled") && !gemini.contains("disabled"),
        "{gemini}"
    );
    assert_eq!(settings(home.path())["oauth_enabled"]["gemini"], false);
    assert_eq!(settings(home.path())["oauth_enabled"]["qwen"], true);
}

#[test]
fn an_enabled_provider_signs_in_lazily_at_the_first_message() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/provider qwen\n/auth qwen enable\nhello\nagain\n",
    );
    succeeded(&done);
    assert_eq!(
        lines_with(&done, "Device code:").len(),
        1,
        "{}",
        done.stdout
    );
    assert!(done
        .stdout
        .contains("[simulated qwen/default] you said: hello"));
    assert!(done
        .stdout
        .contains("[simulated qwen/default] you said: again"));
    assert!(home.path().join("oauth/qwen.json").exists());
}

#[test]
fn login_writes_private_token_files_named_by_provider_and_bucket() {
    let _codex = crate::support::CODEX_PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login\n\
         /auth anthropic login work1@company.com\n\
         /auth gemini login g-1\n\
         /auth qwen login\n\
         /auth codex login\n",
    );
    succeeded(&done);
    let oauth = home.path().join("oauth");
    assert_eq!(mode(&oauth), 0o700);
    for file in [
        "anthropic.json",
        "anthropic-work1@company.com.json",
        "gemini-g-1.json",
        "qwen.json",
        "codex.json",
    ] {
        let path = oauth.join(file);
        assert!(path.exists(), "{file} missing");
        assert_eq!(mode(&path), 0o600, "{file}");
        let token: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert!(token["access_token"].is_string(), "{file}: {token}");
    }
    for provider in ["anthropic", "gemini", "qwen", "codex"] {
        assert_eq!(
            lines_with(&done, &format!("Logged in to {provider}/")).len(),
            if provider == "anthropic" { 2 } else { 1 },
            "{}",
            done.stdout
        );
    }
    // Tokens are never printed.
    for file in fs::read_dir(&oauth).unwrap() {
        let path = file.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let token: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            let access = token["access_token"].as_str().unwrap();
            assert!(!done.stdout.contains(access) && !done.stderr.contains(access));
        }
    }
}

#[test]
fn logout_removes_a_named_bucket_the_default_bucket_or_all() {
    let home = tempfile::tempdir().unwrap();
    let oauth = home.path().join("oauth");
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login\n/auth anthropic login a\n/auth anthropic login b\n\
         /auth anthropic logout a\n",
    );
    succeeded(&done);
    assert!(!oauth.join("anthropic-a.json").exists());
    assert!(oauth.join("anthropic-b.json").exists() && oauth.join("anthropic.json").exists());

    let done = run(home.path(), &["auth", "anthropic", "logout"], "");
    succeeded(&done);
    assert!(!oauth.join("anthropic.json").exists());
    assert!(oauth.join("anthropic-b.json").exists());

    let unknown = run(home.path(), &["auth", "anthropic", "logout", "nope"], "");
    assert_eq!(unknown.code(), Some(1));
    let line = one_line(&unknown, "nope");
    assert!(
        line.contains('b'),
        "does not name the buckets there are: {line}"
    );

    let done = run(home.path(), &["auth", "anthropic", "logout", "--all"], "");
    succeeded(&done);
    assert!(!oauth.join("anthropic-b.json").exists());
    let status = run(home.path(), &["auth", "anthropic", "status"], "");
    assert!(
        last_status(&status, "anthropic")
            .iter()
            .all(|l| !l.starts_with("  [")),
        "{}",
        status.stdout
    );
}

#[test]
fn provider_and_model_are_shown_and_set_and_messages_go_there() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/provider\n/model\n/provider gemini\n/model gemini-test\n/provider\n/model\n\
         /key sim-gemini-key\nhello\n/provider openai\n/model\n",
    );
    succeeded(&done);
    let out: Vec<&str> = done.stdout.lines().collect();
    let shown = |prefix: &str| -> Vec<&str> {
        out.iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect::<Vec<_>>()
    };
    assert_eq!(shown("Provider: "), ["anthropic", "gemini"]);
    let models = shown("Model: ");
    assert_eq!(models.len(), 3, "{}", done.stdout);
    assert!(models[0].starts_with("claude"), "{models:?}");
    assert_eq!(models[1], "gemini-test");
    assert!(
        models[2].starts_with("gpt"),
        "a new provider keeps the old model: {models:?}"
    );
    assert!(
        done.stdout
            .contains("[simulated gemini/api-key] you said: hello"),
        "{}",
        done.stdout
    );
}

#[test]
fn unknown_providers_are_one_line_naming_them_and_the_valid_ones() {
    let home = tempfile::tempdir().unwrap();
    let done = run(
        home.path(),
        &[],
        "/provider claude\n/auth claude\n/auth openai login\n",
    );
    assert_eq!(done.code(), Some(1));
    assert_eq!(lines_with(&done, "claude").len(), 2, "{:?}", done.lines());
    for line in lines_with(&done, "claude") {
        assert!(
            line.contains("anthropic") && line.contains("qwen"),
            "{line}"
        );
    }
    // `openai` is a chat provider; its OAuth name is codex.
    let line = one_line(&done, "'openai'");
    assert!(line.contains("codex"), "{line}");
}

#[test]
fn key_and_keyfile_give_the_session_a_key_without_its_surrounding_white_space() {
    let home = tempfile::tempdir().unwrap();
    let key_file = home.path().join("anthropic.key");
    fs::write(&key_file, "  sim-anthropic-key \n\n").unwrap();
    let good = sandbox(
        home.path(),
        &[],
        &format!(
            "/keyfile {}\nhello\n/key sim-anthropic-key\nagain\n",
            key_file.display()
        ),
    );
    succeeded(&good);
    assert!(good
        .stdout
        .contains("[simulated anthropic/api-key] you said: hello"));
    assert!(good
        .stdout
        .contains("[simulated anthropic/api-key] you said: again"));
    let overview = run(home.path(), &["auth"], "");
    assert!(overview_line(&overview, "anthropic").contains("none"));

    let bad = sandbox(home.path(), &[], "/key not-the-key\nhello\n");
    assert_eq!(bad.code(), Some(1));
    assert!(!bad.stdout.contains("you said"), "{}", bad.stdout);
    for run in [&good, &bad] {
        for secret in ["sim-anthropic-key", "not-the-key"] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{secret} was printed"
            );
        }
    }

    let missing = sandbox(home.path(), &[], "/keyfile /nonexistent/llxprt.key\n/key\n");
    assert_eq!(missing.code(), Some(1));
    one_line(&missing, "/nonexistent/llxprt.key");
    // `/key` alone asks for the key; at the end of the input there is none.
    one_line(&missing, "no key set");
}

#[test]
fn a_key_belongs_to_the_provider_it_was_given_for() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/key sim-anthropic-key\n/provider gemini\nhello\n/provider anthropic\nagain\n",
    );
    assert_eq!(done.code(), Some(1), "gemini had no credentials");
    assert!(
        !done.stdout.contains("[simulated gemini"),
        "{}",
        done.stdout
    );
    one_line(&done, "no credentials for gemini");
    assert!(done
        .stdout
        .contains("[simulated anthropic/api-key] you said: again"));
}

#[test]
fn set_takes_known_names_for_the_session_and_refuses_others_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/set auth-key sim-anthropic-key\nhello\n/set oauth_enabled.qwen on\n/auth\n",
    );
    succeeded(&done);
    assert!(done
        .stdout
        .contains("[simulated anthropic/api-key] you said: hello"));
    assert!(overview_line(&done, "qwen").contains("enabled"));
    assert!(overview_line(&done, "anthropic").contains("api-key"));
    // Session only: nothing was written.
    assert!(!home.path().join("settings.json").exists());

    for (line, named) in [
        ("/set frobnicate 1", "frobnicate"),
        ("/set oauth_enabled.qwen maybe", "oauth_enabled.qwen"),
        (
            "/set providers.anthropic.base_url http://127.0.0.1:9",
            "--set",
        ),
        ("/set", "/set NAME VALUE"),
    ] {
        let refused = sandbox(home.path(), &[], &format!("{line}\n"));
        assert_eq!(refused.code(), Some(1), "{line}");
        one_line(&refused, named);
        assert_eq!(
            refused.stderr.lines().count(),
            1,
            "{line}: {}",
            refused.stderr
        );
    }
}

#[test]
fn profile_save_model_refuses_a_bucket_that_does_not_exist() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login work1\n/profile save model ha work1 work2\n",
    );
    assert_eq!(done.code(), Some(1));
    let line = one_line(&done, "work2");
    assert!(line.contains("/auth anthropic login work2"), "{line}");
    assert!(!home.path().join("profiles/ha.json").exists());
}

#[test]
fn profiles_are_saved_loaded_listed_deleted_and_the_default_loads_at_start() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth gemini login g1\n/auth gemini login g2\n\
         /provider gemini\n/model gemini-test\n/profile save model team g1 g2\n\
         /provider anthropic\n/profile save model plain\n\
         /profile load team\n/provider\n/model\n\
         /profile list\n/profile set-default team\n",
    );
    succeeded(&done);
    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(home.path().join("profiles/team.json")).unwrap())
            .unwrap();
    assert_eq!(saved["provider"], "gemini");
    assert_eq!(saved["model"], "gemini-test");
    assert_eq!(saved["buckets"], serde_json::json!(["g1", "g2"]));
    assert!(done.stdout.lines().any(|l| l == "Provider: gemini"));
    assert!(done.stdout.lines().any(|l| l == "Model: gemini-test"));
    assert!(lines_with(&done, "team").iter().any(|l| l.contains("g1")));
    assert!(done.stdout.lines().any(|l| l.contains("plain")));
    assert_eq!(settings(home.path())["default_profile"], "team");

    // A second process starts with the default profile loaded.
    let later = run(home.path(), &[], "/provider\n/model\n/profile list\n");
    succeeded(&later);
    assert!(
        later.stdout.lines().any(|l| l == "Provider: gemini"),
        "{}",
        later.stdout
    );
    assert!(
        later.stdout.lines().any(|l| l == "Model: gemini-test"),
        "{}",
        later.stdout
    );
    assert!(one_line(&later, "team").contains("default"));

    // --profile loads another one instead.
    let other = run(home.path(), &["--profile", "plain"], "/provider\n");
    assert!(
        other.stdout.lines().any(|l| l == "Provider: anthropic"),
        "{}",
        other.stdout
    );

    let deleted = run(home.path(), &[], "/profile delete plain\n/profile list\n");
    succeeded(&deleted);
    assert!(!home.path().join("profiles/plain.json").exists());
    assert!(!deleted
        .stdout
        .lines()
        .any(|l| l.trim_start().starts_with("plain")));
}

#[test]
fn unknown_profiles_are_one_line_naming_them_and_what_works() {
    let home = tempfile::tempdir().unwrap();
    for line in [
        "/profile load nope",
        "/profile delete nope",
        "/profile set-default nope",
    ] {
        let done = run(home.path(), &[], &format!("{line}\n"));
        assert_eq!(done.code(), Some(1), "{line}");
        let error = one_line(&done, "nope");
        assert!(error.contains("/profile list"), "{line}: {error}");
    }
    let done = run(home.path(), &[], "/profile frob x\n/profile\n");
    assert_eq!(done.code(), Some(1));
    assert!(one_line(&done, "frob").contains("load"));
    assert!(!home.path().join("settings.json").exists());
}

#[test]
fn loadbalancer_profiles_check_their_policy_and_members() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login a1\n/auth qwen login q1\n\
         /provider anthropic\n/profile save model pa a1\n\
         /provider qwen\n/profile save model pq q1\n\
         /profile save loadbalancer rr roundrobin pa pq\n\
         /profile save loadbalancer fo failover pa pq\n\
         /profile list\n",
    );
    succeeded(&done);
    assert!(home.path().join("profiles/rr.json").exists());
    let listed: Vec<&str> = done
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("rr"))
        .collect();
    assert_eq!(listed.len(), 1, "{}", done.stdout);
    assert!(listed[0].contains("roundrobin"), "{}", listed[0]);

    let policy = run(
        home.path(),
        &[],
        "/profile save loadbalancer lb sometimes pa pq\n",
    );
    assert_eq!(policy.code(), Some(1));
    let line = one_line(&policy, "sometimes");
    assert!(
        line.contains("failover") && line.contains("roundrobin"),
        "{line}"
    );

    let member = run(
        home.path(),
        &[],
        "/profile save loadbalancer lb failover pa ghost\n",
    );
    assert_eq!(member.code(), Some(1));
    assert!(one_line(&member, "ghost").contains("/profile list"));
    assert!(!home.path().join("profiles/lb.json").exists());
}

#[test]
fn a_roundrobin_profile_takes_its_profiles_in_turn_and_failover_moves_on() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login a1\n/auth qwen login q1\n\
         /provider anthropic\n/profile save model pa a1\n\
         /provider qwen\n/profile save model pq q1\n\
         /profile save loadbalancer rr roundrobin pa pq\n\
         /profile save loadbalancer fo failover pa pq\n\
         /profile load rr\none\ntwo\nthree\n\
         /profile load fo\n/sandbox quota anthropic a1\nfour\n",
    );
    succeeded(&done);
    let replies: Vec<&str> = done
        .stdout
        .lines()
        .filter(|l| l.starts_with("[simulated"))
        .collect();
    assert_eq!(replies.len(), 4, "{}", done.stdout);
    let first_is_anthropic = replies[0].starts_with("[simulated anthropic/a1]");
    let alternate = |i: usize| {
        if i.is_multiple_of(2) == first_is_anthropic {
            "[simulated anthropic/a1]"
        } else {
            "[simulated qwen/q1]"
        }
    };
    for (i, reply) in replies[..3].iter().enumerate() {
        assert!(reply.starts_with(alternate(i)), "{replies:?}");
    }
    assert_eq!(replies[3], "[simulated qwen/q1] you said: four");
    // One line about the member that failed, however long its own error is.
    let failed = one_line(&done, "Profile pa failed");
    assert!(failed.ends_with("trying the next profile"), "{failed}");
}

#[test]
fn a_rate_limited_bucket_fails_over_and_stats_count_every_bucket() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login work1\n/auth anthropic login work2\n\
         /profile save model ha work1 work2\n/profile load ha\n\
         hello\n/sandbox limit anthropic work1 60\nagain\n\
         /auth anthropic status\n/stats buckets\n",
    );
    succeeded(&done);
    assert!(done
        .stdout
        .contains("[simulated anthropic/work1] you said: hello"));
    assert!(done
        .stdout
        .contains("[simulated anthropic/work2] you said: again"));
    let status = last_status(&done, "anthropic");
    assert!(
        status.iter().any(|l| is_cooldown_line(l, "work1")),
        "{status:?}"
    );
    assert!(status.iter().any(|l| is_ok_line(l, "work2")), "{status:?}");

    let stats: Vec<&str> = done
        .stdout
        .lines()
        .skip_while(|l| *l != "OAuth Bucket Statistics:")
        .skip(1)
        .collect();
    assert_eq!(
        stats,
        [
            "  anthropic/work1: 2 requests (last used: just now)",
            "  anthropic/work2: 1 requests (last used: just now)",
        ]
    );
    // Kept across runs, and shown by the one-shot form too.
    let later = run(home.path(), &["stats", "buckets"], "");
    succeeded(&later);
    assert!(
        later.stdout.starts_with("OAuth Bucket Statistics:\n"),
        "{}",
        later.stdout
    );
    assert!(later
        .stdout
        .contains("  anthropic/work1: 2 requests (last used: "));
}

#[test]
fn when_every_bucket_is_exhausted_the_line_fails_naming_each_bucket() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login work1\n/auth anthropic login work2\n\
         /profile save model ha work1 work2\n/profile load ha\n\
         /sandbox limit anthropic work1 60\n/sandbox quota anthropic work2\nhello\n",
    );
    assert_eq!(done.code(), Some(1));
    one_line(
        &done,
        "Error: All OAuth buckets exhausted. Please wait for rate limits to reset.",
    );
    let reason = |bucket: &str| {
        done.lines()
            .into_iter()
            .find(|l| l.starts_with(&format!("  anthropic/{bucket}:")))
            .unwrap_or_else(|| panic!("{bucket} not named:\n{}", done.stderr))
    };
    assert!(
        reason("work1").contains("rate limit"),
        "{}",
        reason("work1")
    );
    assert!(reason("work2").contains("payment"), "{}", reason("work2"));
}

#[test]
fn one_shot_words_run_auth_status_profile_list_and_stats() {
    let home = tempfile::tempdir().unwrap();
    succeeded(&sandbox(
        home.path(),
        &[],
        "/auth anthropic login work1\n/profile save model solo work1\n",
    ));
    let status = run(home.path(), &["auth", "anthropic", "status"], "");
    succeeded(&status);
    assert_eq!(
        status.stdout.lines().next(),
        Some("OAuth Buckets for anthropic:")
    );
    assert!(is_ok_line(last_status(&status, "anthropic")[0], "work1"));

    let list = run(home.path(), &["profile", "list"], "");
    succeeded(&list);
    assert!(one_line(&list, "solo").contains("work1"));

    let stats = run(home.path(), &["stats", "buckets"], "");
    succeeded(&stats);
    assert_eq!(
        stats.stdout.lines().next(),
        Some("OAuth Bucket Statistics:")
    );

    let bad = run(home.path(), &["profile", "load", "ghost"], "");
    assert_eq!(bad.code(), Some(1));
    one_line(&bad, "ghost");
}

#[test]
fn help_lists_every_command_and_quit_ends_with_the_status_so_far() {
    let home = tempfile::tempdir().unwrap();
    let done = run(home.path(), &[], "/help\n/quit\n/frobnicate\n");
    succeeded(&done);
    for command in [
        "/auth",
        "/provider",
        "/model",
        "/key",
        "/keyfile",
        "/set",
        "/profile",
        "/stats",
        "/help",
        "/quit",
    ] {
        assert!(
            done.stdout
                .split_whitespace()
                .any(|w| w.trim_matches(',') == command
                    || w.starts_with(&format!("{command}|"))
                    || w.starts_with(&format!("{command},"))),
            "{command} missing from /help:\n{}",
            done.stdout
        );
    }
    for sub in [
        "login",
        "logout",
        "enable",
        "disable",
        "save",
        "loadbalancer",
        "set-default",
    ] {
        assert!(done.stdout.contains(sub), "{sub} missing from /help");
    }
    let failed_first = run(home.path(), &[], "/frobnicate\n/quit\n");
    assert_eq!(failed_first.code(), Some(1));
}

#[test]
fn a_model_profile_keeps_the_session_key_for_its_provider() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/provider qwen\n/key sim-qwen-key\n/profile save model keyed\n",
    );
    succeeded(&done);
    assert!(!done.stdout.contains("sim-qwen-key"), "{}", done.stdout);
    let later = sandbox(home.path(), &["--profile", "keyed", "-p", "hello"], "");
    succeeded(&later);
    assert_eq!(later.stdout, "[simulated qwen/api-key] you said: hello\n");
    assert_eq!(mode(&home.path().join("profiles/keyed.json")), 0o600);
}

#[test]
fn an_access_token_the_provider_expired_is_refreshed_and_the_message_answered() {
    let home = tempfile::tempdir().unwrap();
    let done = sandbox(
        home.path(),
        &[],
        "/auth anthropic login\n/auth anthropic enable\n\
         /sandbox expire anthropic default\nhello\n",
    );
    succeeded(&done);
    assert!(done
        .stdout
        .contains("[simulated anthropic/default] you said: hello"));
    // One sign-in only: the 401 was answered by a refresh, not a new login.
    assert_eq!(
        lines_with(&done, "Logged in to").len(),
        1,
        "{}",
        done.stdout
    );
    assert!(
        !done.stdout.contains("not logged in yet"),
        "{}",
        done.stdout
    );
}

#[test]
fn sandbox_slow_is_listed_checks_its_words_and_delays_the_next_reply() {
    let home = tempfile::tempdir().unwrap();
    let listed = sandbox(home.path(), &[], "/sandbox\n");
    succeeded(&listed);
    one_line(&listed, "/sandbox slow P BUCKET SECONDS");

    let bad = sandbox(
        home.path(),
        &[],
        "/sandbox slow anthropic default soon\n/sandbox slow claude default 1\n",
    );
    assert_eq!(bad.code(), Some(1));
    one_line(&bad, "'soon' is not a number of seconds");
    one_line(&bad, "claude");

    // A reply slowed by a second still comes, whole.
    let slowed = sandbox(
        home.path(),
        &[],
        "/auth anthropic login\n/auth anthropic enable\n/sandbox slow anthropic default 1\nhello\n",
    );
    succeeded(&slowed);
    one_line(&slowed, "anthropic/default: the next reply will take 1 s");
    one_line(&slowed, "[simulated anthropic/default] you said: hello");
}
