//! The team store (`storage.backend = postgres`) through the built binary: two homes (two
//! machines) on one database of the PostgreSQL cluster that `scripts/setup.d/50-postgres.sh`
//! starts, against the provider simulator. Each test has a database of its own.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use llxprt_domain::OAuthProvider;
use llxprt_simulator::ForcedFailure;

use crate::support::{bucket_id, reply, Lab, LIMIT};

const ANTHROPIC: OAuthProvider = OAuthProvider::Anthropic;

/// The cluster's superuser URL, or a loud failure saying how to get one.
fn cluster() -> String {
    std::env::var("LLXPRT_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "LLXPRT_TEST_PG is not set: the team store tests need the PostgreSQL cluster that \
             scripts/test starts (run `scripts/test --test all team_store::`)"
        )
    })
}

async fn admin(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test cluster: {e}"));
    tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
}

/// Two machines of one team: the lab's home and `other`, one database, one key file.
struct Team {
    lab: Lab,
    other: tempfile::TempDir,
    url: String,
    database: String,
    _key: tempfile::TempDir,
}

impl Team {
    async fn start() -> Team {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let database = format!(
            "llxprt_team_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let admin_url = cluster();
        admin(&admin_url, &format!("CREATE DATABASE {database}")).await;
        let url = format!("{}/{database}", admin_url.rsplit_once('/').unwrap().0);
        let key = tempfile::tempdir().unwrap();
        let key_file = key.path().join("team.key");
        let lab = Lab::start()
            .await
            .with_setting("storage.backend", "postgres")
            .with_setting("storage.url", &url)
            .with_setting("storage.key_file", key_file.to_str().unwrap());
        Team {
            lab,
            other: tempfile::tempdir().unwrap(),
            url,
            database,
            _key: key,
        }
    }

    fn other(&self) -> &Path {
        self.other.path()
    }

    /// `/auth P enable` and the Anthropic profile `team` over `buckets`, in both homes.
    async fn enable_in_both(&self, buckets: &[&str]) {
        for home in [self.lab.home(), self.other()] {
            let mut input = vec!["/auth anthropic enable".to_owned()];
            if !buckets.is_empty() {
                input.push(format!("/profile save model team {}", buckets.join(" ")));
            }
            let input: Vec<&str> = input.iter().map(String::as_str).collect();
            let run = self.lab.run_in(home, &[], &[], &input).await;
            assert_eq!(run.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
        }
    }

    /// Cuts the database off: every connection ended, new ones refused.
    async fn outage(&self) {
        let db = &self.database;
        admin(
            &cluster(),
            &format!(
                "ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            ),
        )
        .await;
    }

    async fn recovery(&self) {
        let db = &self.database;
        admin(
            &cluster(),
            &format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_one_home_serves_the_other_and_statistics_add_up_across_homes() {
    let team = Team::start().await;
    let lab = &team.lab;
    team.enable_in_both(&[]).await;
    let mut setup = lab.spawn(&["--nobrowser"], &[]).within(LIMIT);
    lab.sim.set_login_account(ANTHROPIC, "shared");
    setup.login(lab, ANTHROPIC, "default").await;
    setup
        .ask("from the first home", "anthropic", "shared")
        .await;
    let done = setup.finish().await;
    assert_eq!(done.code(), Some(0), "{}", done.stderr);

    for n in 0..2 {
        let text = format!("from the second home {n}");
        let run = lab.run_in(team.other(), &["-p", &text], &[], &[]).await;
        assert_eq!(run.code(), Some(0), "{}", run.stderr);
        assert!(
            run.stdout.contains(&reply("anthropic", "shared", &text)),
            "{}",
            run.stdout
        );
    }
    let counted = lab.counters(ANTHROPIC, "shared");
    assert_eq!((counted.token_exchanges, counted.chat_requests), (1, 3));

    // Both homes show the team's totals: one request from the first, two from the second.
    for home in [lab.home(), team.other()] {
        let run = lab.run_in(home, &["stats", "buckets"], &[], &[]).await;
        assert_eq!(run.code(), Some(0), "{}", run.stderr);
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with("  anthropic/default: "))
            .unwrap_or_else(|| panic!("no line for anthropic/default:\n{}", run.stdout))
            .to_owned();
        assert!(
            line.starts_with("  anthropic/default: 3 requests"),
            "{line}"
        );
    }
    assert!(
        !lab.home().join("oauth").exists() && !team.other().join("oauth").exists(),
        "a token file was written"
    );
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_in_two_homes_on_an_expired_bucket_make_one_refresh() {
    const PROCESSES: usize = 8;
    let team = Team::start().await;
    let lab = &team.lab;
    let expired = lab.seed_expired(ANTHROPIC, "default").await;
    team.enable_in_both(&[]).await;

    let texts: Vec<String> = (0..PROCESSES).map(|n| format!("hello from {n}")).collect();
    let children: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(n, text)| {
            let home = if n % 2 == 0 { lab.home() } else { team.other() };
            lab.spawn_in(home, &["-p", text], &[])
        })
        .collect();
    for (child, text) in children.into_iter().zip(&texts) {
        let run = child.finish().await;
        assert_eq!(run.code(), Some(0), "{text}: {}", run.stderr);
        assert!(
            run.stdout.contains(&reply("anthropic", "default", text)),
            "{text}: {}",
            run.stdout
        );
    }
    let counted = lab.counters(ANTHROPIC, "default");
    assert_eq!(
        (
            counted.refreshes,
            counted.reused_refresh_tokens,
            counted.rejected_refreshes,
            counted.rejected_chat_requests
        ),
        (1, 0, 0, 0),
        "{counted:?}"
    );
    assert_eq!(counted.chat_requests, PROCESSES as u64);
    let services = lab.services(std::sync::Arc::new(NoBrowser));
    let stored = services
        .store
        .load(&bucket_id(ANTHROPIC, "default"))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.refresh_token != expired.refresh_token, "not rotated");
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_learnt_in_one_home_makes_the_other_skip_the_bucket() {
    let team = Team::start().await;
    let lab = &team.lab;
    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    team.enable_in_both(&["w1", "w2"]).await;
    lab.sim.fail_next_chat_requests(
        ANTHROPIC,
        "w1",
        1,
        ForcedFailure::RateLimited {
            retry_after_secs: 3600,
        },
    );
    let chats = |bucket| lab.counters(ANTHROPIC, bucket).chat_requests;

    let first = lab
        .run_in(lab.home(), &["--profile", "team", "-p", "first"], &[], &[])
        .await;
    assert!(
        first.stdout.contains(&reply("anthropic", "w2", "first")),
        "{}",
        first.stdout
    );
    assert_eq!((chats("w1"), chats("w2")), (1, 1));

    let second = lab
        .run_in(
            team.other(),
            &["--profile", "team", "-p", "second"],
            &[],
            &[],
        )
        .await;
    assert_eq!(second.code(), Some(0), "{}", second.stderr);
    assert!(
        second.stdout.contains(&reply("anthropic", "w2", "second")),
        "{}",
        second.stdout
    );
    assert_eq!(
        (chats("w1"), chats("w2")),
        (1, 2),
        "the other home asked w1 again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_refresher_frees_the_bucket_for_the_other_home() {
    let team = Team::start().await;
    let lab = &team.lab;
    lab.seed_expired(ANTHROPIC, "default").await;
    team.enable_in_both(&[]).await;

    lab.sim.hold_next_refresh(ANTHROPIC);
    let refreshing = lab.spawn(&["-p", "hello"], &[]).within(LIMIT);
    let mut rotated = false;
    for _ in 0..500 {
        if lab.counters(ANTHROPIC, "default").refreshes == 1 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated, "the first home never refreshed");
    refreshing.kill().await;

    // The other home gets the lock the killed machine held (its connection died with it),
    // long before the 30 s a lock waits; it presents the refresh token the provider already
    // spent, and says a login is needed.
    let next = lab
        .spawn_in(team.other(), &["-p", "hello"], &[])
        .within(LIMIT);
    let told = next.finish().await;
    assert_eq!(told.code(), Some(1), "{}", told.stdout);
    assert_eq!(lab.counters(ANTHROPIC, "default").reused_refresh_tokens, 1);
    assert!(
        told.lines().iter().any(|l| l.contains("needs a new login")),
        "{}",
        told.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_of_the_database_holds_no_token() {
    let team = Team::start().await;
    let lab = &team.lab;
    lab.seed(ANTHROPIC, "w1").await;
    lab.seed(ANTHROPIC, "w2").await;
    let bin = std::env::var("LLXPRT_TEST_PG_BIN")
        .unwrap_or_else(|_| panic!("LLXPRT_TEST_PG_BIN is not set: run scripts/test"));
    let dump = std::process::Command::new(Path::new(&bin).join("pg_dump"))
        .arg("--dbname")
        .arg(&team.url)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains("llxprt_tokens"),
        "the dump has no token table"
    );
    let secrets = lab.sim.issued_secrets();
    assert!(!secrets.is_empty());
    for secret in secrets {
        assert!(!text.contains(secret.expose()), "a token is in the dump");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_or_a_wrong_key_is_one_line_at_start() {
    let team = Team::start().await;
    let lab = &team.lab;
    lab.seed(ANTHROPIC, "default").await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let away = format!("storage.url=postgres://team@127.0.0.1:{port}/llxprt");
    let run = lab
        .run(
            &["--set", &away, "-p", "hello"],
            &[("PGPASSWORD", "pg-password-never-shown")],
            &[],
        )
        .await;
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("cannot reach the team store at 127.0.0.1:{port}")),
        "{lines:?}"
    );
    assert!(!lines[0].contains("pg-password-never-shown"), "{lines:?}");

    let other_key = tempfile::tempdir().unwrap();
    let key_file = format!("storage.key_file={}", other_key.path().join("k").display());
    let run = lab
        .run(&["--set", &key_file, "-p", "hello"], &[], &[])
        .await;
    assert_eq!(run.code(), Some(1), "{}", run.stdout);
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("this key does not match the team store's"),
        "{lines:?}"
    );
    assert_eq!(lab.counters(ANTHROPIC, "default").chat_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_session_fails_the_request_and_the_next_one_after_recovery_works() {
    let team = Team::start().await;
    let lab = &team.lab;
    let seeded = lab.seed(ANTHROPIC, "default").await;
    team.enable_in_both(&[]).await;
    let mut child = lab.spawn(&[], &[]).within(Duration::from_secs(120));
    child.ask("before", "anthropic", "default").await;

    team.outage().await;
    child.send("during").await;
    let told = child
        .line_where("an error naming the team store", |l| {
            l.contains("team store")
        })
        .await;
    assert!(told.contains("127.0.0.1"), "{told}");
    assert_eq!(lab.counters(ANTHROPIC, "default").chat_requests, 1);

    team.recovery().await;
    child.ask("after", "anthropic", "default").await;
    let run = child.finish().await;
    assert!(!run
        .stdout
        .contains(&reply("anthropic", "default", "during")));
    let services = lab.services(std::sync::Arc::new(NoBrowser));
    let stored = services
        .store
        .load(&bucket_id(ANTHROPIC, "default"))
        .await
        .unwrap();
    assert_eq!(stored, Some(seeded), "the token changed");
    lab.assert_no_secret_leaked();
}

/// A browser that is never needed.
struct NoBrowser;

#[async_trait::async_trait]
impl llxprt_application::ports::Browser for NoBrowser {
    async fn open(&self, _url: &str) -> Result<(), llxprt_application::ports::BrowserError> {
        Err(llxprt_application::ports::BrowserError::Unavailable(
            "no browser here".to_owned(),
        ))
    }
}
