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
