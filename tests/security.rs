//! Issue 12: the binary against hostile servers, hostile neighbours and careless input. Each test
//! plays the attack (a server on loopback made here, or a home file set up here) and checks
//! what a user would notice: the output, the exit status, the files, what the server got.

use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;

use crate::support::{llxprt, run_command, run_with, sandbox, Run};

/// What a stub provider got: every request's path, `authorization`/`x-api-key` header and
/// body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String, String)>>>);

impl Seen {
    fn requests(&self) -> Vec<(String, String, String)> {
        self.0.lock().unwrap().clone()
    }
}

/// A provider on loopback, served by its own runtime for as long as the value lives.
struct Stub {
    url: String,
    seen: Seen,
    _runtime: tokio::runtime::Runtime,
}

/// Serves `answer(path)` to every request, recording it.
fn stub(answer: impl Fn(&str) -> axum::response::Response + Clone + Send + Sync + 'static) -> Stub {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seen = Seen::default();
    let kept = seen.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
        let (kept, answer) = (kept.clone(), answer.clone());
        async move {
            let credential = ["authorization", "x-api-key", "x-goog-api-key"]
                .iter()
                .find_map(|name| headers.get(*name))
                .map(|v| v.to_str().unwrap_or("").to_owned())
                .unwrap_or_default();
            kept.0
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), credential, body));
            answer(uri.path())
        }
    });
    let url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    Stub {
        url,
        seen,
        _runtime: runtime,
    }
}

/// An OpenAI chat-completions answer saying `text`.
fn completion(text: &str) -> axum::response::Response {
    let body =
        serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}]});
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// `llxprt --provider openai` pointed at `base`, with `args` and `stdin`.
fn openai(home: &Path, base: &str, args: &[&str], stdin: &str) -> Run {
    let mut command = llxprt(home);
    command
        .env("NO_PROXY", "127.0.0.1")
        .args(["--provider", "openai", "--set"])
        .arg(format!("providers.openai.base_url={base}"))
        .args(args);
    run_command(command, stdin)
}

/// No byte of `text` could drive a terminal: no C0 control but newline and tab, no C1.
fn assert_inert(text: &str, what: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(bad.is_empty(), "{what} holds controls {bad:?}: {text:?}");
}

/// A model reply shaped by a prompt injection: it sets the window title, writes the clipboard
/// (OSC 52), clears the screen, and shows a link whose text hides its target (OSC 8).
const HOSTILE_REPLY: &str = "\u{1b}]0;pwned\u{7}\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{1b}[2J\u{9b}31mhello \u{1b}]8;;http://evil.example/\u{1b}\\docs\u{1b}]8;;\u{1b}\\ done\r\n";

#[test]
fn item_1_a_reply_or_an_error_cannot_drive_the_terminal() {
    let server = stub(|path| {
        if path.starts_with("/bad") {
            let body = serde_json::json!({"error": {"message": HOSTILE_REPLY}});
            (StatusCode::BAD_REQUEST, body.to_string()).into_response()
        } else {
            completion(HOSTILE_REPLY)
        }
    });
    let home = tempfile::tempdir().unwrap();
    for args in [&["--key", "sk-test", "-p", "hi"][..], &["--key", "sk-test"]] {
        let run = openai(home.path(), &server.url, args, "hi\n");
        assert_eq!(run.code(), Some(0), "{args:?}: {}", run.stderr);
        // The words still arrive; what would have driven the terminal is shown, inert.
        assert!(run.stdout.contains("hello"), "{}", run.stdout);
        assert!(run.stdout.contains("docs"), "{}", run.stdout);
        assert_inert(&run.stdout, "the reply");
        assert_inert(&run.stderr, "stderr");
    }
    let bad = format!("{}/bad", server.url);
    let run = openai(home.path(), &bad, &["--key", "sk-test", "-p", "hi"], "");
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("hello"), "{}", run.stderr);
    assert_inert(&run.stderr, "the provider's error");
}

#[test]
fn item_2_a_redirect_never_takes_the_key_or_the_conversation_elsewhere() {
    let elsewhere = stub(|_| completion("stolen"));
    let target = elsewhere.url.clone();
    let provider = stub(move |path| {
        let location = format!("{target}{path}");
        (StatusCode::TEMPORARY_REDIRECT, [("location", location)]).into_response()
    });
    let home = tempfile::tempdir().unwrap();
    let mut command = llxprt(home.path());
    command
        .env("NO_PROXY", "127.0.0.1")
        .args([
            "--provider",
            "anthropic",
            "--key",
            "sk-ant-hostile-redirect",
        ])
        .arg("--set")
        .arg(format!("providers.anthropic.base_url={}", provider.url))
        .args(["-p", "my private conversation"]);
    let run = run_command(command, "");
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    assert!(run.stderr.contains("redirect"), "{}", run.stderr);
    assert!(!run.stdout.contains("stolen"), "{}", run.stdout);
    assert_eq!(provider.seen.requests().len(), 1);
    assert!(
        elsewhere.seen.requests().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.seen.requests()
    );
}

/// The run failed with one `Error:` line that names `file` and says `fix`.
fn assert_refused(run: &Run, file: &Path, fix: &str) {
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains(&file.display().to_string()),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains(fix), "{}", errors[0]);
}

/// A token file an attacker would plant: their token and their refresh endpoint.
const PLANTED_TOKEN: &str = r#"{"access_token":"attacker-token","refresh_token":"attacker-rt","expiry":1,"token_type":"Bearer"}"#;

#[test]
fn item_3_home_files_another_user_owns_or_can_change_are_refused() {
    assert_eq!(
        fs::metadata("/proc/self").unwrap().uid(),
        0,
        "this test gives files to another user, which takes root (CI and scripts/test run as root)"
    );
    // settings.json that anyone can write: its token_url would be the attacker's.
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("settings.json");
    fs::write(
        &settings,
        r#"{"providers":{"anthropic":{"oauth":{"token_url":"http://127.0.0.1:9/steal"}}}}"#,
    )
    .unwrap();
    fs::set_permissions(&settings, fs::Permissions::from_mode(0o666)).unwrap();
    for args in [&["auth"][..], &["-p", "hello"]] {
        let run = run_with(home.path(), args, &[], "");
        assert_refused(&run, &settings, "chmod go-w");
    }

    // A token file another user owns (nobody, uid 65534).
    let home = tempfile::tempdir().unwrap();
    let oauth = home.path().join("oauth");
    fs::create_dir(&oauth).unwrap();
    fs::set_permissions(&oauth, fs::Permissions::from_mode(0o700)).unwrap();
    let token = oauth.join("anthropic.json");
    fs::write(&token, PLANTED_TOKEN).unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    chown(&token, Some(65_534), None).unwrap();
    let run = run_with(home.path(), &["auth", "anthropic", "status"], &[], "");
    assert_refused(&run, &token, "another user");

    // A profile directory others can write.
    let home = tempfile::tempdir().unwrap();
    let profiles = home.path().join("profiles");
    fs::create_dir(&profiles).unwrap();
    fs::set_permissions(&profiles, fs::Permissions::from_mode(0o777)).unwrap();
    let run = run_with(home.path(), &["profile", "list"], &[], "");
    assert_refused(&run, &profiles, "chmod go-w");

    // A token file others can read is made private, and the user is told (not only a log).
    let home = tempfile::tempdir().unwrap();
    let oauth = home.path().join("oauth");
    fs::create_dir(&oauth).unwrap();
    fs::set_permissions(&oauth, fs::Permissions::from_mode(0o755)).unwrap();
    let token = oauth.join("qwen.json");
    fs::write(&token, PLANTED_TOKEN).unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let run = run_with(home.path(), &["auth", "qwen", "status"], &[], "");
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("Warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", run.stderr);
    assert!(warnings
        .iter()
        .any(|w| w.contains(&token.display().to_string())));
    assert_eq!(fs::metadata(&token).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&oauth).unwrap().mode() & 0o777, 0o700);

    // A home llxprt creates is private.
    let parent = tempfile::tempdir().unwrap();
    let new_home = parent.path().join("fresh");
    let run = run_with(&new_home, &["auth", "anthropic", "enable"], &[], "");
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(fs::metadata(&new_home).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn item_4_the_sandbox_refuses_a_home_holding_real_sign_ins() {
    let home = tempfile::tempdir().unwrap();
    let oauth = home.path().join("oauth");
    fs::create_dir(&oauth).unwrap();
    fs::set_permissions(&oauth, fs::Permissions::from_mode(0o700)).unwrap();
    let token = oauth.join("qwen.json");
    let real = r#"{"access_token":"real-token","refresh_token":"real-rt","expiry":4102444800,"token_type":"Bearer","resource_url":"portal.qwen.ai"}"#;
    fs::write(&token, real).unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let settings = home.path().join("settings.json");
    fs::write(&settings, r#"{"oauth_enabled":{"qwen":true}}"#).unwrap();

    let run = sandbox(
        home.path(),
        &["--provider", "qwen"],
        "/auth qwen login\nhello\n",
    );
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("Error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("--sandbox will not use"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("oauth"), "{}", errors[0]);
    assert!(!run.stdout.contains("you said"), "{}", run.stdout);
    assert_eq!(fs::read_to_string(&token).unwrap(), real);
    assert_eq!(
        fs::read_to_string(&settings).unwrap(),
        r#"{"oauth_enabled":{"qwen":true}}"#
    );

    // An empty directory becomes a sandbox home, which later sandbox runs use again.
    let fresh = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let run = sandbox(fresh.path(), &[], "/auth anthropic login\n");
        assert_eq!(run.code(), Some(0), "{}", run.stderr);
    }
    assert!(fresh.path().join("oauth").join("anthropic.json").is_file());
}

#[test]
fn item_7_fifos_links_and_oversized_files_give_a_clear_error_instead_of_a_hang() {
    // A FIFO at settings.json: opening it for reading would wait for a writer for ever.
    let home = tempfile::tempdir().unwrap();
    let fifo = home.path().join("settings.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) runs");
    assert!(made.success());
    // `run_with` fails the test if the run does not end.
    let run = run_with(home.path(), &["auth"], &[], "");
    assert_refused(&run, &fifo, "FIFO");

    // stats.json planted as a link to a file of the user's: never read or written through.
    let home = tempfile::tempdir().unwrap();
    let precious = home.path().join("precious");
    fs::write(&precious, "not statistics").unwrap();
    let stats = home.path().join("stats.json");
    symlink(&precious, &stats).unwrap();
    let run = run_with(home.path(), &["stats", "buckets"], &[], "");
    assert_refused(&run, &stats, "symbolic link");
    assert_eq!(fs::read_to_string(&precious).unwrap(), "not statistics");

    // A settings file of several megabytes is refused before it is parsed.
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("settings.json");
    let huge = format!(r#"{{"padding":"{}"}}"#, "x".repeat(4 << 20));
    fs::write(&settings, huge).unwrap();
    let run = run_with(home.path(), &["auth"], &[], "");
    assert_refused(&run, &settings, "larger than");
}

#[test]
fn item_9_an_endpoint_that_would_carry_tokens_in_clear_text_is_refused() {
    let home = tempfile::tempdir().unwrap();
    for (name, url) in [
        (
            "providers.anthropic.oauth.token_url",
            "http://example.com/token",
        ),
        ("providers.qwen.base_url", "http://10.0.0.8/v1"),
        ("providers.codex.oauth.issuer", "ftp://auth.example"),
    ] {
        let run = run_with(
            home.path(),
            &["--set", &format!("{name}={url}"), "auth"],
            &[],
            "",
        );
        assert_eq!(run.code(), Some(1), "{name}: {}", run.stdout);
        assert!(run.stderr.contains(name), "{}", run.stderr);
        assert!(run.stderr.contains("clear text"), "{}", run.stderr);
    }
    // Loopback stays usable: the simulator, a local proxy.
    let run = run_with(
        home.path(),
        &[
            "--set",
            "providers.anthropic.base_url=http://localhost:9",
            "auth",
        ],
        &[],
        "",
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
}

#[test]
fn item_10_key_alone_reads_the_key_which_is_never_sent_as_a_message_and_help_warns() {
    let server = stub(|_| completion("fine"));
    let home = tempfile::tempdir().unwrap();
    let run = openai(
        home.path(),
        &server.url,
        &[],
        "/key\nsk-typed-not-sent\nhello\n",
    );
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    let requests = server.seen.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (_, credential, body) = &requests[0];
    assert_eq!(credential, "Bearer sk-typed-not-sent");
    assert!(!body.contains("sk-typed-not-sent"), "{body}");
    assert!(body.contains("hello"), "{body}");
    assert!(!run.stdout.contains("sk-typed-not-sent"), "{}", run.stdout);

    let help = run_with(home.path(), &["--help"], &[], "");
    assert_eq!(help.code(), Some(0));
    assert!(help.stdout.contains("process list"), "{}", help.stdout);
    assert!(help.stdout.contains("--keyfile"), "{}", help.stdout);
}
