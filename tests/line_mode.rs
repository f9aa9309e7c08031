//! Line mode: stdin is not a terminal, so every line runs as if typed.

use crate::support::run;

fn provider_line(output: &str, provider: &str) -> Option<usize> {
    output
        .lines()
        .position(|l| l.contains(provider) && (l.contains('✓') || l.contains('✗')))
}

#[test]
fn lines_run_in_order_and_all_good_input_exits_zero() {
    let home = tempfile::tempdir().unwrap();
    let done = run(home.path(), &[], "/help\n\n/auth\n");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    let help = done.stdout.lines().position(|l| l.contains("/profile"));
    let auth = provider_line(&done.stdout, "anthropic");
    assert!(help.is_some() && auth.is_some(), "{}", done.stdout);
    assert!(help < auth, "/help ran after /auth:\n{}", done.stdout);
    for provider in ["gemini", "qwen", "codex"] {
        assert!(
            provider_line(&done.stdout, provider).is_some(),
            "{}",
            done.stdout
        );
    }
}

#[test]
fn an_unknown_command_is_one_line_naming_it_and_fails_the_run() {
    let home = tempfile::tempdir().unwrap();
    let done = run(home.path(), &[], "/help\n/frobnicate\n/auth\n");
    assert_eq!(done.code(), Some(1));
    let naming: Vec<_> = done
        .lines()
        .into_iter()
        .filter(|l| l.contains("frobnicate"))
        .collect();
    assert_eq!(naming.len(), 1, "{naming:?}");
    assert!(
        naming[0].contains("/help"),
        "says nothing of what works: {}",
        naming[0]
    );
    // The lines after the failed one still ran.
    assert!(
        provider_line(&done.stdout, "codex").is_some(),
        "{}",
        done.stdout
    );
}

#[test]
fn empty_input_exits_zero() {
    let home = tempfile::tempdir().unwrap();
    let done = run(home.path(), &[], "");
    assert_eq!(done.code(), Some(0));
}

#[test]
fn quit_stops_reading() {
    let home = tempfile::tempdir().unwrap();
    let done = run(home.path(), &[], "/quit\n/frobnicate\n");
    assert_eq!(done.code(), Some(0), "{}", done.stderr);
    assert!(!done.stderr.contains("frobnicate"));
}

#[test]
fn unusual_input_never_panics() {
    let home = tempfile::tempdir().unwrap();
    let long = "x".repeat(200_000);
    let input = format!(
        "/{long}\n/auth {long}\n/auth ✓✗ é\u{202e}\n/profile load \u{0}\u{feff}\n\
         /auth qwen login ../../etc\n/stats 𝔘𝔫𝔦\n/\n//\n/auth anthropic logout --all --all\n\
         /provider\u{3000}openai\n\u{1b}[A\n"
    );
    // `run` fails the test if the program panicked.
    let done = run(home.path(), &[], &input);
    assert_eq!(done.code(), Some(1));
}

/// Odd lines of every shape a command can take, made by a fixed pseudo-random generator so a
/// failure can be replayed.
fn odd_lines(count: usize) -> Vec<String> {
    const HEADS: [&str; 24] = [
        "/",
        "//",
        "/auth",
        "/auth anthropic",
        "/auth gemini login",
        "/auth qwen logout",
        "/auth anthropic status",
        "/auth qwen enable",
        "/provider",
        "/model",
        "/key",
        "/keyfile",
        "/set",
        "/set auth-key",
        "/profile save model",
        "/profile save loadbalancer x failover",
        "/profile load",
        "/profile delete",
        "/stats",
        "/sandbox limit anthropic",
        "/sandbox lifetime qwen",
        "/help",
        "",
        "/ auth",
    ];
    const PIECES: [&str; 20] = [
        " ",
        "\t",
        "é",
        "✓",
        "𝔘",
        "\u{202e}",
        "\u{feff}",
        "\u{0}",
        "\u{7}",
        "\u{1b}[2J",
        "\r",
        "..",
        "../../etc/passwd",
        "--all",
        "-1",
        "99999999999999999999999",
        "=",
        "#",
        "%s%n",
        "default",
    ];
    let mut seed: u64 = 0x5eed_1e55;
    let mut next = move |bound: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % bound
    };
    (0..count)
        .map(|_| {
            let mut line = HEADS[next(HEADS.len())].to_owned();
            for _ in 0..next(6) {
                line.push_str(PIECES[next(PIECES.len())]);
            }
            if next(10) == 0 {
                line.push_str(&"ẍ".repeat(next(50_000)));
            }
            line
        })
        .collect()
}

#[test]
fn odd_lines_in_the_sandbox_never_panic_and_every_line_gets_an_answer() {
    let home = tempfile::tempdir().unwrap();
    let mut input = odd_lines(300).join("\n");
    input.push_str("\n/auth\n");
    // `sandbox` fails the test if the program panicked or hung.
    let done = crate::support::sandbox(home.path(), &[], &input);
    assert!(
        matches!(done.code(), Some(0 | 1)),
        "ended by a signal or a crash: {:?}",
        done.status
    );
    // It kept going to the last line.
    assert!(
        provider_line(&done.stdout, "codex").is_some(),
        "{}",
        done.stdout
    );
}
