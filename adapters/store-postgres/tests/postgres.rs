//! The team store against a real PostgreSQL: the cluster `scripts/setup.d/50-postgres.sh`
//! starts (`LLXPRT_TEST_PG`). Each test makes a database of its own, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llxprt_application::ports::{HealthStore, StatsStore, StoreError, TokenStore};
use llxprt_application::testkit::token_store::numbered_token;
use llxprt_domain::failover::{BucketHealth, CooldownCause};
use llxprt_domain::stats::StatsDelta;
use llxprt_domain::{BucketId, BucketName, OAuthProvider, UnixSeconds};
use llxprt_seal::StorageKey;
use llxprt_store_postgres::{OpenError, PostgresOptions, PostgresStore, StoreAddress};

/// The cluster's superuser URL, or a loud failure saying how to get one.
fn cluster() -> String {
    std::env::var("LLXPRT_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "LLXPRT_TEST_PG is not set: these tests need the PostgreSQL cluster that \
             scripts/test starts (run `scripts/test -p llxprt-store-postgres`)"
        )
    })
}

/// A new, empty database on the cluster; its URL.
fn fresh_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "llxprt_store_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let admin = cluster();
    let created = name.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot reach the test cluster at {admin}: {e}"));
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {created}"))
                .await
                .unwrap();
        });
    })
    .join()
    .unwrap();
    let base = cluster();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(&cluster(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
}

fn options(url: &str, key: u8) -> PostgresOptions {
    let mut options = PostgresOptions::new(
        StoreAddress::parse(url, None, None).unwrap(),
        Arc::new(StorageKey::from_bytes([key; 32])),
    );
    options.statement_timeout = Duration::from_secs(5);
    options
}

fn open(url: &str) -> PostgresStore {
    PostgresStore::open(options(url, 7)).unwrap_or_else(|e| panic!("{e}"))
}

fn bucket(name: &str) -> BucketId {
    BucketId::new(OAuthProvider::Anthropic, BucketName::parse(name).unwrap())
}

mod contract {
    use super::*;

    llxprt_application::token_store_contract_tests!(
        || open(&fresh_database()),
        break_saves = break_saves
    );

    mod health {
        use super::*;
        llxprt_application::health_store_contract_tests!(|| open(&fresh_database()));
    }

    /// Makes the store's saves fail: a trigger in its database refuses every write of a token
    /// row, as a database that stopped accepting writes would.
    fn break_saves(store: &PostgresStore, broken: bool) {
        let admin = cluster();
        let (server, _) = admin.rsplit_once('/').unwrap();
        let url = format!("{server}/{}", store.address().database());
        let sql = if broken {
            "CREATE OR REPLACE FUNCTION llxprt_test_refuse() RETURNS trigger AS \
             $$ BEGIN RAISE EXCEPTION 'writes are refused'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER llxprt_test_refuse BEFORE INSERT OR UPDATE ON llxprt_tokens \
             FOR EACH ROW EXECUTE FUNCTION llxprt_test_refuse();"
        } else {
            "DROP TRIGGER llxprt_test_refuse ON llxprt_tokens;"
        };
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                        .await
                        .unwrap();
                    tokio::spawn(connection);
                    client.batch_execute(sql).await.unwrap();
                });
        })
        .join()
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_before_any_token_is_read_or_written() {
    let url = fresh_database();
    let team = open(&url);
    team.save(&bucket("w1"), &numbered_token(1)).await.unwrap();
    let err = PostgresStore::open(options(&url, 8)).unwrap_err();
    assert!(matches!(err, OpenError::WrongKey { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("this key does not match the team store's"),
        "{err}"
    );
    assert_eq!(
        TokenStore::load(&team, &bucket("w1")).await.unwrap(),
        Some(numbered_token(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_one_line_with_host_and_port_and_no_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://team@127.0.0.1:{port}/llxprt");
    let mut options = options(&url, 1);
    options.address = StoreAddress::parse(&url, Some("pw-never-shown"), None).unwrap();
    let err = PostgresStore::open(options).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot reach the team store at 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        !err.contains("pw-never-shown") && !err.contains('\n'),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_starting_at_once_migrate_once_and_a_restart_migrates_nothing() {
    let url = fresh_database();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(options(&url, 7)).map(|_| ()))
        })
        .collect();
    for start in starts {
        start.join().unwrap().unwrap();
    }
    open(&url);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let versions: Vec<i32> = client
        .query("SELECT version FROM llxprt_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Every migration this llxprt knows, each recorded once.
    let every: Vec<i32> = (1..=llxprt_store_postgres::SCHEMA_VERSION).collect();
    assert_eq!(versions, every);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_connection_is_killed_frees_the_bucket() {
    let url = fresh_database();
    let (one, other) = (open(&url), open(&url));
    let held = one
        .lock(&bucket("w1"), Duration::from_secs(5))
        .await
        .unwrap();
    let busy = other
        .lock(&bucket("w1"), Duration::from_millis(200))
        .await
        .err()
        .expect("a second machine waits");
    assert!(
        matches!(busy, StoreError::LockTimeout { ref holder, .. } if holder.contains("llxprt")),
        "{busy}"
    );
    // The server ends the holder's session, as when its machine dies.
    let database = url.rsplit('/').next().unwrap();
    admin(&format!(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a \
         ON a.pid = l.pid WHERE l.locktype = 'advisory' AND a.datname = '{database}'"
    ))
    .await;
    other
        .lock(&bucket("w1"), Duration::from_secs(5))
        .await
        .unwrap();
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_under_a_lost_lock_never_overwrites_a_newer_token() {
    let url = fresh_database();
    let (one, other) = (open(&url), open(&url));
    let b = bucket("w1");
    one.save(&b, &numbered_token(1)).await.unwrap();
    let _held = one.lock(&b, Duration::from_secs(5)).await.unwrap();
    // Another machine wrote meanwhile (its own login, or a refresh after this lock was lost).
    other.save(&b, &numbered_token(2)).await.unwrap();
    let err = one.save(&b, &numbered_token(3)).await.unwrap_err();
    assert!(err.to_string().contains("newer token"), "{err}");
    assert_eq!(
        TokenStore::load(&one, &b).await.unwrap(),
        Some(numbered_token(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_statistics_are_shared_and_no_count_is_lost() {
    let url = fresh_database();
    let (one, other) = (Arc::new(open(&url)), Arc::new(open(&url)));
    let cooling = BucketHealth::CoolingUntil {
        until: UnixSeconds(1_900_000_000),
        cause: CooldownCause::RateLimited,
    };
    HealthStore::record(&*one, &[(bucket("w1"), cooling)])
        .await
        .unwrap();
    let seen = HealthStore::load(&*other).await.unwrap();
    assert_eq!(seen.get(&bucket("w1")), Some(&cooling));
    HealthStore::record(&*other, &[(bucket("w1"), BucketHealth::Usable)])
        .await
        .unwrap();
    assert!(HealthStore::load(&*one).await.unwrap().is_empty());

    let adders: Vec<_> = (0..8)
        .map(|n| {
            let store = if n % 2 == 0 {
                one.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                for _ in 0..5 {
                    let mut delta = StatsDelta::new();
                    delta.record_request(&bucket("w1"), UnixSeconds(100 + n));
                    delta.record_request(&bucket("w2"), UnixSeconds(1));
                    StatsStore::add(&*store, &delta).await.unwrap();
                }
            })
        })
        .collect();
    for adder in adders {
        adder.await.unwrap();
    }
    let totals = StatsStore::load(&*one).await.unwrap();
    let w1 = totals.get(&bucket("w1")).unwrap();
    assert_eq!((w1.requests, w1.last_used), (40, Some(UnixSeconds(107))));
    assert_eq!(totals.get(&bucket("w2")).unwrap().requests, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_the_request_clearly_keeps_the_token_and_recovery_just_works() {
    let url = fresh_database();
    let store = open(&url);
    let b = bucket("w1");
    store.save(&b, &numbered_token(1)).await.unwrap();
    let database = url.rsplit('/').next().unwrap().to_owned();
    admin(&format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .await;
    let err = store.save(&b, &numbered_token(2)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("the team store postgres://"), "{text}");
    assert!(text.contains("the next request tries again"), "{text}");
    assert!(TokenStore::load(&store, &b).await.is_err());

    admin(&format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true"
    ))
    .await;
    assert_eq!(
        TokenStore::load(&store, &b).await.unwrap(),
        Some(numbered_token(1))
    );
    store.save(&b, &numbered_token(3)).await.unwrap();
    assert_eq!(
        TokenStore::load(&store, &b).await.unwrap(),
        Some(numbered_token(3))
    );
}
