//! Every flow of the whole program at TRACE log level, against a simulator in this process: no
//! secret the simulator issued or was shown (tokens, codes, PKCE verifiers) appears in anything
//! the program printed or wrote, except the token files, whose job it is to hold them.

use std::path::Path;

use llxprt_domain::OAuthProvider;

use crate::support::{Lab, LIMIT};

/// The `/auth` name and the `/provider` name of each OAuth provider.
const PROVIDERS: [(&str, &str, OAuthProvider); 4] = [
    ("anthropic", "anthropic", OAuthProvider::Anthropic),
    ("gemini", "gemini", OAuthProvider::Gemini),
    ("qwen", "qwen", OAuthProvider::Qwen),
    ("codex", "openai", OAuthProvider::Codex),
];

/// Every file under `dir` but the token files, as text.
fn written_files(dir: &Path, into: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            written_files(&path, into);
            continue;
        }
        let is_token_file = path.parent().is_some_and(|p| p.ends_with("oauth"))
            && path.extension().is_some_and(|e| e == "json");
        if !is_token_file {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            into.push((path.display().to_string(), text));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_issued_secret_appears_in_output_or_files_at_trace_level() {
    let lab = Lab::start().await;
    let sim = &lab.sim;
    let home = lab.home();
    let mut child = lab
        .spawn(
            &["--nobrowser"],
            &[("RUST_LOG", "trace"), ("NO_COLOR", "1")],
        )
        .within(LIMIT * 3);

    for (auth, _, oauth) in PROVIDERS {
        child.login(&lab, oauth, "default").await;
        child.send(&format!("/auth {auth} enable")).await;
    }
    for (_, provider, _) in PROVIDERS {
        child.send(&format!("/provider {provider}")).await;
        child.send(&format!("hello {provider}")).await;
        child.wait_for(&format!("you said: hello {provider}")).await;
    }
    // The API refuses every access token now, so the next messages refresh first.
    for (_, _, oauth) in PROVIDERS {
        sim.expire_access_tokens(oauth, "user1");
    }
    for (_, provider, _) in PROVIDERS {
        child.send(&format!("/provider {provider}")).await;
        child.send(&format!("again {provider}")).await;
        child.wait_for(&format!("you said: again {provider}")).await;
    }
    // The control: the same search finds the secrets where they belong.
    let token_files: Vec<String> = std::fs::read_dir(home.join("oauth"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    assert_eq!(token_files.len(), 4);
    let secrets = sim.issued_secrets();
    for file in &token_files {
        assert!(
            secrets.iter().any(|s| file.contains(s.expose())),
            "{}",
            file.len()
        );
    }
    child.send("/auth").await;
    child.send("/stats buckets").await;
    for (auth, _, _) in PROVIDERS {
        child.send(&format!("/auth {auth} logout")).await;
    }
    let run = child.finish().await;
    assert_eq!(run.code(), Some(0), "{}", run.stderr);

    for (_, _, oauth) in PROVIDERS {
        let counted = sim.counters(oauth, "user1");
        assert_eq!(counted.token_exchanges, 1, "{oauth}");
        assert_eq!(counted.refreshes, 1, "{oauth}");
        assert_eq!(counted.chat_requests, 2, "{oauth}");
    }
    assert!(
        run.stderr.contains("TRACE") && run.stderr.contains("llxprt_providers"),
        "the run did not log at TRACE"
    );
    let mut searched = vec![
        ("stdout".to_owned(), run.stdout.clone()),
        ("stderr".to_owned(), run.stderr.clone()),
    ];
    written_files(home, &mut searched);
    assert!(
        searched
            .iter()
            .any(|(name, _)| name.ends_with("stats.json")),
        "{:?}",
        searched.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    let secrets = sim.issued_secrets();
    // The issued tokens, codes and keys carry the simulator's prefixes; what has none is a PKCE
    // verifier a flow sent, one per login.
    let prefixes = ["sim-", "sk-ant-", "ya29.", "1//", "eyJ"];
    let verifiers = secrets
        .iter()
        .filter(|s| !prefixes.iter().any(|p| s.expose().starts_with(p)))
        .count();
    assert_eq!(verifiers, 4, "the simulator saw each login's PKCE verifier");
    for (name, text) in &searched {
        for secret in &secrets {
            let at = text.find(secret.expose());
            assert!(
                at.is_none(),
                "an issued secret appears in {name}: …{}…",
                &text[at.unwrap().saturating_sub(120)..at.unwrap()]
            );
        }
    }
}

#[test]
fn a_code_pasted_into_the_repl_stays_out_of_its_history_and_screen_at_trace_level() {
    use rexpect::reader::Options;
    use rexpect::session::spawn_with_options;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::start());
    let sim = &lab.sim;
    let command = lab.command(
        &["--nobrowser"],
        &[("TERM", "xterm"), ("RUST_LOG", "trace"), ("NO_COLOR", "1")],
    );
    let options = Options::new()
        .timeout_ms(Some(LIMIT.as_millis() as u64))
        .strip_ansi_escape_codes(true);
    let mut repl = spawn_with_options(command, options).expect("the REPL starts");
    let mut screen = repl.exp_string("> ").unwrap();

    repl.send("/auth anthropic login\r").unwrap();
    repl.flush().unwrap();
    let authorize = regex_escape(&sim.endpoints().anthropic.authorize_url);
    let (before, url) = repl.exp_regex(&format!(r"{authorize}\?[^\s]+")).unwrap();
    screen.push_str(&before);
    screen.push_str(&url);
    screen.push_str(&repl.exp_string("Paste the authorization code:").unwrap());
    let code = match runtime.block_on(sim.consent(&url)).unwrap() {
        llxprt_simulator::Consent::CodeShown(code) => code,
        other => panic!("expected a code page, got {other:?}"),
    };
    repl.send(&format!("{}\r", code.expose())).unwrap();
    repl.flush().unwrap();
    screen.push_str(&repl.exp_string("Logged in to anthropic").unwrap());
    repl.send("/quit\r").unwrap();
    repl.flush().unwrap();
    screen.push_str(&repl.exp_eof().unwrap());

    assert!(screen.contains("TRACE"), "the REPL did not log at TRACE");
    let history = std::fs::read_to_string(lab.home().join("history")).unwrap();
    assert!(history.contains("/auth anthropic login"), "{history}");
    let secrets = sim.issued_secrets();
    assert!(secrets
        .iter()
        .any(|s| s.expose() == code.expose().split('#').next().unwrap()));
    for secret in &secrets {
        assert!(
            !history.contains(secret.expose()),
            "a secret is in the history"
        );
        // The pasted code is typed, and a terminal echoes what is typed: that echo is the only
        // place it may show.
        let shown = screen.matches(secret.expose()).count();
        let typed = usize::from(code.expose().contains(secret.expose()));
        assert!(shown <= typed, "a secret was printed: {shown} times");
    }
}

/// `text` with the characters a regular expression gives a meaning to escaped.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
