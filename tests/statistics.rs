//! Statistics outlive the process: answers do not wait for their counts to be saved, so the
//! program must save them before it exits.

use crate::support::run;

#[test]
fn the_counts_of_a_run_are_in_stats_json_after_it_exits() {
    let home = tempfile::tempdir().unwrap();
    let input = "/auth anthropic login\n/auth anthropic enable\nhello\nagain\n";
    let done = run(home.path(), &["--sandbox"], input);
    assert_eq!(done.code(), Some(0), "{}", done.lines().join("\n"));
    let text = std::fs::read_to_string(home.path().join("stats.json")).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stats["buckets"]["anthropic/default"]["requests"], 2,
        "{text}"
    );
}
