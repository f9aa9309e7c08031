//! The contracts every [`StatsStore`] and [`HealthStore`] keeps.
//!
//! Run them with [`stats_store_contract_tests!`](crate::stats_store_contract_tests) and
//! [`health_store_contract_tests!`](crate::health_store_contract_tests), one `#[tokio::test]`
//! per case, each with a fresh, empty store; or call the cases one by one. They need a
//! multi-threaded tokio runtime.

// A contract suite reports a broken promise by panicking, as a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use llxprt_domain::failover::{BucketHealth, CooldownCause, LoginCause};
use llxprt_domain::stats::StatsDelta;
use llxprt_domain::{
    BucketId, BucketName, Credits, Limits, OAuthProvider, QuotaWindow, ReportedLimits, UnixSeconds,
    WindowName,
};

use crate::ports::{HealthStore, StatsStore};

/// Expands to one `#[tokio::test]` per case of the statistics contract, each with a store made
/// by `$make` (an expression giving a `Fn() -> S` that makes an empty store).
#[macro_export]
macro_rules! stats_store_contract_tests {
    ($make:expr $(,)?) => {
        $crate::persistence_contract_cases!(stats; $make;
            stats_start_empty,
            stats_add_up_and_come_back,
            stats_keep_buckets_and_providers_apart,
            concurrent_stats_adds_lose_no_count
        );
    };
}

/// Expands to one `#[tokio::test]` per case of the bucket-health contract, each with a store
/// made by `$make` (an expression giving a `Fn() -> S` that makes an empty store).
#[macro_export]
macro_rules! health_store_contract_tests {
    ($make:expr $(,)?) => {
        $crate::persistence_contract_cases!(health; $make;
            health_starts_usable,
            every_health_comes_back_as_recorded,
            usable_clears_a_bucket_and_nothing_else,
            concurrent_health_records_all_land,
            limits_come_back_as_recorded_and_none_forgets_one_bucket,
            older_limits_never_replace_newer_ones,
            health_and_limits_recorded_together_both_land
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! persistence_contract_cases {
    ($kind:ident; $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let make = $make;
                $crate::testkit::persistence_stores::$case(make()).await;
            }
        )*
    };
}

fn bucket(provider: OAuthProvider, name: &str) -> BucketId {
    BucketId::new(provider, BucketName::parse(name).unwrap())
}

/// A new store has no statistics.
pub async fn stats_start_empty<S: StatsStore + 'static>(store: S) {
    assert!(store.load().await.unwrap().is_empty());
}

/// `add` returns the new totals, `load` shows the same, and counts add up across calls while
/// the last use is the latest.
pub async fn stats_add_up_and_come_back<S: StatsStore + 'static>(store: S) {
    let work = bucket(OAuthProvider::Anthropic, "work@example.com");
    let mut first = StatsDelta::new();
    first.record_request(&work, UnixSeconds(1_000));
    first.record_request(&work, UnixSeconds(2_000));
    first.record_rate_limit(&work);
    let after_first = store.add(&first).await.unwrap();
    assert_eq!(store.load().await.unwrap(), after_first);
    let stats = *after_first.get(&work).expect("the bucket is counted");
    assert_eq!(
        (stats.requests, stats.rate_limits, stats.failovers),
        (2, 1, 0)
    );
    assert_eq!(stats.last_used, Some(UnixSeconds(2_000)));

    let mut second = StatsDelta::new();
    second.record_request(&work, UnixSeconds(1_500));
    second.record_failover(&work);
    let after_second = store.add(&second).await.unwrap();
    assert_eq!(store.load().await.unwrap(), after_second);
    let stats = *after_second.get(&work).unwrap();
    assert_eq!(
        (stats.requests, stats.rate_limits, stats.failovers),
        (3, 1, 1)
    );
    assert_eq!(
        stats.last_used,
        Some(UnixSeconds(2_000)),
        "an older use moved the last use back"
    );

    let empty = store.add(&StatsDelta::new()).await.unwrap();
    assert_eq!(empty, after_second, "adding nothing changed the totals");
}

/// The same bucket name under two providers, and two buckets of one provider, are counted
/// apart, hostile-looking names included.
pub async fn stats_keep_buckets_and_providers_apart<S: StatsStore + 'static>(store: S) {
    let ids = [
        bucket(OAuthProvider::Gemini, "default"),
        bucket(OAuthProvider::Qwen, "default"),
        bucket(OAuthProvider::Gemini, "..a"),
        bucket(OAuthProvider::Gemini, "x.json"),
        bucket(OAuthProvider::Codex, "Work"),
        bucket(OAuthProvider::Codex, "work"),
    ];
    let mut delta = StatsDelta::new();
    for (n, id) in ids.iter().enumerate() {
        for _ in 0..=n {
            delta.record_request(id, UnixSeconds(100 + n as i64));
        }
    }
    store.add(&delta).await.unwrap();
    let totals = store.load().await.unwrap();
    for (n, id) in ids.iter().enumerate() {
        let stats = totals.get(id).copied().unwrap_or_default();
        assert_eq!(stats.requests, n as u64 + 1, "requests of {id}");
        assert_eq!(
            stats.last_used,
            Some(UnixSeconds(100 + n as i64)),
            "last use of {id}"
        );
    }
    assert_eq!(totals.iter().count(), ids.len());
}

/// Many tasks adding at once lose no count.
pub async fn concurrent_stats_adds_lose_no_count<S: StatsStore + 'static>(store: S) {
    const TASKS: u64 = 8;
    const ADDS: u64 = 5;
    let store = Arc::new(store);
    let shared = bucket(OAuthProvider::Anthropic, "shared");
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, shared) = (Arc::clone(&store), shared.clone());
            tokio::spawn(async move {
                let own = bucket(OAuthProvider::Qwen, &format!("task{t}"));
                for _ in 0..ADDS {
                    let mut delta = StatsDelta::new();
                    delta.record_request(&shared, UnixSeconds(10));
                    delta.record_request(&own, UnixSeconds(10));
                    store.add(&delta).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let totals = store.load().await.unwrap();
    assert_eq!(
        totals.get(&shared).map(|s| s.requests),
        Some(TASKS * ADDS),
        "a count was lost"
    );
    for t in 0..TASKS {
        let own = bucket(OAuthProvider::Qwen, &format!("task{t}"));
        assert_eq!(totals.get(&own).map(|s| s.requests), Some(ADDS), "{own}");
    }
}

/// A new store knows nothing against any bucket.
pub async fn health_starts_usable<S: HealthStore + 'static>(store: S) {
    assert!(store.load().await.unwrap().is_empty());
}

/// Every kind of health, each cause, comes back as recorded, per bucket.
pub async fn every_health_comes_back_as_recorded<S: HealthStore + 'static>(store: S) {
    let healths = [
        BucketHealth::CoolingUntil {
            until: UnixSeconds(1_767_225_600),
            cause: CooldownCause::RateLimited,
        },
        BucketHealth::CoolingUntil {
            until: UnixSeconds(-5),
            cause: CooldownCause::PaymentRequired,
        },
        BucketHealth::NeedsLogin {
            cause: LoginCause::Forbidden,
        },
        BucketHealth::NeedsLogin {
            cause: LoginCause::RefreshRejected,
        },
        BucketHealth::NeedsLogin {
            cause: LoginCause::NoToken,
        },
    ];
    let changes: Vec<(BucketId, BucketHealth)> = healths
        .iter()
        .enumerate()
        .map(|(n, h)| (bucket(OAuthProvider::ALL[n % 4], &format!("b{n}@x.io")), *h))
        .collect();
    store.record(&changes).await.unwrap();
    let stored = store.load().await.unwrap();
    assert_eq!(stored.len(), changes.len());
    for (id, health) in &changes {
        assert_eq!(stored.get(id), Some(health), "{id}");
    }
}

/// Recording `Usable` clears a bucket; a record leaves every bucket it does not name as it was.
pub async fn usable_clears_a_bucket_and_nothing_else<S: HealthStore + 'static>(store: S) {
    let (a, b) = (
        bucket(OAuthProvider::Gemini, "a"),
        bucket(OAuthProvider::Qwen, "a"),
    );
    let cooling = BucketHealth::CoolingUntil {
        until: UnixSeconds(5_000),
        cause: CooldownCause::RateLimited,
    };
    let login = BucketHealth::NeedsLogin {
        cause: LoginCause::Forbidden,
    };
    store
        .record(&[(a.clone(), cooling), (b.clone(), login)])
        .await
        .unwrap();
    store
        .record(&[(a.clone(), BucketHealth::Usable)])
        .await
        .unwrap();
    let stored = store.load().await.unwrap();
    assert_eq!(stored.get(&a), None, "a usable bucket is still listed");
    assert_eq!(
        stored.get(&b),
        Some(&login),
        "recording one bucket changed another"
    );

    let later = BucketHealth::CoolingUntil {
        until: UnixSeconds(9_000),
        cause: CooldownCause::PaymentRequired,
    };
    store.record(&[(b.clone(), later)]).await.unwrap();
    assert_eq!(
        store.load().await.unwrap().get(&b),
        Some(&later),
        "a new health did not replace the old"
    );
    store.record(&[]).await.unwrap();
    assert_eq!(store.load().await.unwrap().len(), 1);
}

/// Many tasks recording different buckets at once: every record lands.
pub async fn concurrent_health_records_all_land<S: HealthStore + 'static>(store: S) {
    const TASKS: i64 = 8;
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let id = bucket(OAuthProvider::Codex, &format!("t{t}"));
                let health = BucketHealth::CoolingUntil {
                    until: UnixSeconds(t),
                    cause: CooldownCause::RateLimited,
                };
                store.record(&[(id, health)]).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stored = store.load().await.unwrap();
    for t in 0..TASKS {
        let id = bucket(OAuthProvider::Codex, &format!("t{t}"));
        assert_eq!(
            stored.get(&id),
            Some(&BucketHealth::CoolingUntil {
                until: UnixSeconds(t),
                cause: CooldownCause::RateLimited
            }),
            "the record of {id} was lost"
        );
    }
}

fn reported(five_hour: f64, weekly: f64, seen_at: i64) -> ReportedLimits {
    Limits {
        windows: vec![
            QuotaWindow::new(
                WindowName::FiveHour,
                five_hour,
                Some(UnixSeconds(seen_at + 3600)),
            ),
            QuotaWindow::new(WindowName::Weekly, weekly, None),
        ],
        credits: Some(Credits {
            has_credits: true,
            unlimited: false,
            balance: Some("12.50".to_owned()),
        }),
    }
    .seen_at(UnixSeconds(seen_at))
}

/// Recorded limits come back whole (windows, shares, resets, credits, when seen); `None`
/// forgets one bucket's and leaves the others'; limits and health do not touch each other.
pub async fn limits_come_back_as_recorded_and_none_forgets_one_bucket<S: HealthStore + 'static>(
    store: S,
) {
    assert!(store.load_limits().await.unwrap().is_empty());
    let (a, b) = (
        bucket(OAuthProvider::Anthropic, "work1"),
        bucket(OAuthProvider::Codex, "work1"),
    );
    let (first, second) = (reported(72.0, 31.0, 1_000), reported(96.0, 5.0, 1_000));
    store
        .record_limits(&[
            (a.clone(), Some(first.clone())),
            (b.clone(), Some(second.clone())),
        ])
        .await
        .unwrap();
    let stored = store.load_limits().await.unwrap();
    assert_eq!(stored.get(&a), Some(&first));
    assert_eq!(stored.get(&b), Some(&second));
    assert!(
        store.load().await.unwrap().is_empty(),
        "limits showed up as health"
    );
    store.record_limits(&[(a.clone(), None)]).await.unwrap();
    let stored = store.load_limits().await.unwrap();
    assert_eq!(stored.get(&a), None, "forgotten limits are still listed");
    assert_eq!(
        stored.get(&b),
        Some(&second),
        "forgetting one bucket changed another"
    );
}

/// Limits seen before the ones kept (a late answer, another machine's older figures) do not
/// replace them; newer ones do.
pub async fn older_limits_never_replace_newer_ones<S: HealthStore + 'static>(store: S) {
    let a = bucket(OAuthProvider::Anthropic, "work1");
    let newer = reported(80.0, 40.0, 2_000);
    store
        .record_limits(&[(a.clone(), Some(newer.clone()))])
        .await
        .unwrap();
    store
        .record_limits(&[(a.clone(), Some(reported(10.0, 1.0, 1_500)))])
        .await
        .unwrap();
    assert_eq!(store.load_limits().await.unwrap().get(&a), Some(&newer));
    let newest = reported(90.0, 41.0, 2_100);
    store
        .record_limits(&[(a.clone(), Some(newest.clone()))])
        .await
        .unwrap();
    assert_eq!(store.load_limits().await.unwrap().get(&a), Some(&newest));
}

/// `record_with_limits` lands the health and the limits it is given, and forgets what `Usable`
/// and `None` say to forget.
pub async fn health_and_limits_recorded_together_both_land<S: HealthStore + 'static>(store: S) {
    let a = bucket(OAuthProvider::Anthropic, "work1");
    let cooling = BucketHealth::CoolingUntil {
        until: UnixSeconds(9_000),
        cause: CooldownCause::RateLimited,
    };
    let figures = reported(100.0, 50.0, 3_000);
    store
        .record_with_limits(
            &[(a.clone(), cooling)],
            &[(a.clone(), Some(figures.clone()))],
        )
        .await
        .unwrap();
    assert_eq!(store.load().await.unwrap().get(&a), Some(&cooling));
    assert_eq!(store.load_limits().await.unwrap().get(&a), Some(&figures));
    store
        .record_with_limits(&[(a.clone(), BucketHealth::Usable)], &[(a.clone(), None)])
        .await
        .unwrap();
    assert!(store.load().await.unwrap().is_empty());
    assert!(store.load_limits().await.unwrap().is_empty());
}
