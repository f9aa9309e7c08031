//! Issue 15: the team store (PostgreSQL) against the file store, in one run.
//!
//! - `message_file_store` / `message_postgres_store`: one message the whole way through the
//!   auth layer (as `auth_layer`'s `through_auth_layer`), with the token, statistics and bucket
//!   health in the file stores or in PostgreSQL. Ratio: PostgreSQL over files.
//! - `processes_valid_token` / `processes_refresh_storm`: 8 `llxprt -p` processes, 4 in each of
//!   two homes on one database, on a valid token, and on an expired one that all 8 need at once
//!   (exactly one refresh per storm, checked outside the timing). Ratio: the storm over the calm.
//!
//! Needs a PostgreSQL cluster (`LLXPRT_TEST_PG`): `bash benches/team_store.sh` starts a throwaway
//! one as the tests do (`scripts/setup.d/50-postgres.sh`) and runs this benchmark.

// A bench whose setup fails is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use common::{Discard, Ratio, Rig};
use criterion::Criterion;
use llxprt_domain::{OAuthProvider, UnixSeconds};

const GROUP: &str = "team_store";
const PROCESSES: usize = 8;

/// A new database on the cluster; its URL.
fn database(rt: &tokio::runtime::Runtime) -> String {
    let admin = std::env::var("LLXPRT_TEST_PG").unwrap_or_else(|_| {
        panic!("LLXPRT_TEST_PG is not set: start a cluster with scripts/setup.d/50-postgres.sh")
    });
    let name = format!("llxprt_bench_{}", std::process::id());
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the cluster: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    });
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// `llxprt ARGS` in `home` with `settings`, as a user would run it, quietly.
fn llxprt(home: &Path, settings: &[(String, String)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llxprt"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("LLXPRT_") || name.ends_with("_API_KEY") || name == "BROWSER" {
            command.env_remove(&name);
        }
    }
    command
        .env("LLXPRT_HOME", home)
        .env("HOME", home)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in settings {
        command.arg("--set").arg(format!("{name}={value}"));
    }
    command.args(args);
    command
}

/// 8 processes, half in each home, each sending one message; all must succeed.
fn processes(homes: [&Path; 2], settings: &[(String, String)]) {
    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            llxprt(homes[n % 2], settings, &["-p", "hello"])
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn bench(c: &mut Criterion, files: &Rig, team: &Rig, team_settings: &[(String, String)]) {
    let mut group = c.benchmark_group(GROUP);
    for (id, rig) in [
        ("message_file_store", files),
        ("message_postgres_store", team),
    ] {
        rig.login("default");
        let prompt = Discard::default();
        group.bench_function(id, |b| {
            b.iter(|| {
                rig.rt.block_on(async {
                    let target = rig.target(&[]);
                    let reply = rig.chat.send(&target, &common::hello(), &prompt).await;
                    assert!(reply.is_ok(), "{reply:?}");
                })
            });
        });
    }

    // Two homes on the team database; the processes find the simulator and the store through
    // `--set`, like the lab of the integration tests.
    let other = tempfile::tempdir().unwrap();
    let homes = [team.home.path(), other.path()];
    for home in homes {
        let enabled = llxprt(home, team_settings, &["auth", "anthropic", "enable"])
            .output()
            .unwrap();
        assert!(enabled.status.success());
    }
    let bucket = common::bucket("default");
    let refreshes = || {
        team.sim
            .counters(OAuthProvider::Anthropic, "default")
            .refreshes
    };
    group.sample_size(10);
    group.bench_function("processes_valid_token", |b| {
        b.iter(|| processes(homes, team_settings));
    });
    group.bench_function("processes_refresh_storm", |b| {
        b.iter_custom(|iterations| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iterations {
                let mut token = team.rt.block_on(team.store.load(&bucket)).unwrap().unwrap();
                token.expiry = UnixSeconds(team.clock.now().0 - 5);
                team.rt.block_on(team.store.save(&bucket, &token)).unwrap();
                let before = refreshes();
                let start = Instant::now();
                processes(homes, team_settings);
                total += start.elapsed();
                assert_eq!(refreshes() - before, 1, "exactly one refresh per storm");
            }
            total
        });
    });
    group.finish();
}

fn main() {
    let started = SystemTime::now();
    let files = Rig::new();
    let url = database(&files.rt);
    let key = tempfile::tempdir().unwrap();
    let key_file = key.path().join("team.key");
    let key_file = key_file.to_str().unwrap();
    let storage = [
        ("storage.backend", "postgres"),
        ("storage.url", url.as_str()),
        ("storage.key_file", key_file),
    ];
    let team = Rig::with_settings(&storage);
    let mut team_settings = llxprt_simulator::sandbox::settings_overrides(&team.sim);
    team_settings.extend(
        storage
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    let mut c = common::criterion();
    bench(&mut c, &files, &team, &team_settings);
    c.final_summary();
    common::report_ratios(
        GROUP,
        started,
        &[
            Ratio {
                subject: "message_postgres_store",
                baseline: "message_file_store",
                goal: None,
            },
            Ratio {
                subject: "processes_refresh_storm",
                baseline: "processes_valid_token",
                goal: None,
            },
        ],
    );
}
