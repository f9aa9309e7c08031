//! The README's first commands are the ones CI runs.

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first two commands of the README's first `sh` block, without their comments.
fn readme_commands() -> (String, String) {
    let readme = read("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a ```sh block");
    let mut commands = block
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let run = commands.next().expect("a run command").to_owned();
    let test = commands.next().expect("a test command").to_owned();
    (run, test)
}

#[test]
fn readme_runs_the_sandbox_and_tests_with_what_ci_runs() {
    let (run, test) = readme_commands();
    assert_eq!(run, "cargo run --release -- --sandbox");
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|line| line.trim() == test),
        ".ci/run does not run the README's test command `{test}`"
    );
}

/// The tour's transcripts: the typed lines (after `> `) and the printed ones, of every
/// ```text block in order.
fn tour() -> (Vec<String>, Vec<String>) {
    let readme = read("README.md");
    let mut typed = Vec::new();
    let mut printed = Vec::new();
    for block in readme.split("```text\n").skip(1) {
        let block = block.split("```").next().unwrap_or("");
        for line in block.lines() {
            match line.strip_prefix("> ") {
                Some(command) => typed.push(command.to_owned()),
                None => printed.push(line.to_owned()),
            }
        }
    }
    (typed, printed)
}

/// What of a printed line does not change from run to run: times (of expiry, of a cooldown's
/// end, of a window's reset), minutes left, ports and device codes do.
fn stable_part(line: &str) -> Option<&str> {
    if line.contains("PORT") || line.starts_with("Device code:") || line.starts_with("Enter code:")
    {
        return None;
    }
    if line.contains("(expires in") || line.contains("(until") || line.contains("(resets") {
        return line.split(" (").next();
    }
    // "anthropic/work1 rate limited until 14:05; using work2".
    if let Some((before, _)) = line.split_once(" until ") {
        return Some(before);
    }
    Some(line)
}

#[test]
fn the_readme_tour_runs_in_the_sandbox_and_prints_what_it_shows() {
    let _codex = crate::support::CODEX_PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (typed, printed) = tour();
    assert!(typed.len() > 20, "the tour has too few commands: {typed:?}");
    for login in ["anthropic", "gemini", "qwen", "codex"] {
        assert!(typed.contains(&format!("/auth {login} login")), "{login}");
    }
    let home = tempfile::tempdir().unwrap();
    let done = crate::support::sandbox(home.path(), &[], &(typed.join("\n") + "\n"));
    assert_eq!(
        done.code(),
        Some(0),
        "a line of the tour failed:\n{}\n{}",
        done.stdout,
        done.stderr
    );
    let output = done.lines();
    for line in &printed {
        if let Some(stable) = stable_part(line) {
            assert!(
                output.iter().any(|out| out.starts_with(stable)),
                "the README shows {line:?}, the program did not print it:\n{}\n{}",
                done.stdout,
                done.stderr
            );
        }
    }
}
