//! Issue 7, benchmark 3: a refresh storm.
//!
//! Before every iteration the stored token of the bucket `storm` is made expired (its current,
//! valid refresh token kept). `thousand_callers` is the time for 1000 concurrent
//! `TokenService::valid_token` calls to all get a token; after each iteration the simulator must
//! have seen exactly one refresh (checked, outside the timing). The baseline (issue 17) is the sum
//! of two medians of the same run: `refresh_round_trip`, one bare refresh POST to the token
//! endpoint, and `thousand_callers_fresh`, the same 1000 concurrent callers on a bucket whose
//! token is fresh. Goal: at most 1.5×. `refresh_then_request` (a bare refresh, then a bare chat
//! request with the new token) is the baseline of issue 7, kept for comparison.

// A bench whose setup fails is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use common::{Ratio, Rig, SumRatio};
use criterion::Criterion;
use llxprt_domain::{OAuthProvider, Secret, Token, UnixSeconds};

const GROUP: &str = "refresh_storm";
const CALLERS: usize = 1000;

fn bench(c: &mut Criterion, rig: &Rig) {
    let storm = common::bucket("storm");
    rig.login("storm");
    let refreshes = || {
        rig.sim
            .counters(OAuthProvider::Anthropic, "storm")
            .refreshes
    };
    let fresh = common::bucket("fresh");
    rig.login("fresh");
    let thousand_callers = |bucket: &llxprt_domain::BucketId| {
        rig.rt.block_on(async {
            let mut callers = tokio::task::JoinSet::new();
            for _ in 0..CALLERS {
                let tokens = rig.tokens.clone();
                let bucket = bucket.clone();
                callers.spawn(async move { tokens.valid_token(&bucket).await });
            }
            while let Some(joined) = callers.join_next().await {
                assert!(joined.unwrap().is_ok());
            }
        });
    };
    let one_storm = || {
        // As every writer of a token does, under the bucket's lock: the last storm's save may
        // still be running (its callers do not wait for it), and it holds the lock until done.
        rig.rt.block_on(async {
            let _lock = rig
                .store
                .lock(&storm, Duration::from_secs(30))
                .await
                .unwrap();
            let mut token = rig.store.load(&storm).await.unwrap().unwrap();
            token.expiry = UnixSeconds(rig.clock.now().0 - 5);
            rig.store.save(&storm, &token).await.unwrap();
        });
        let before = refreshes();
        let start = Instant::now();
        thousand_callers(&storm);
        let elapsed = start.elapsed();
        assert_eq!(refreshes() - before, 1, "exactly one refresh per storm");
        elapsed
    };

    // The baseline refreshes its own account, keeping the rotating refresh token by hand.
    let bare = rig.login("bare");
    let refresh_token = Mutex::new(bare.refresh_token.clone().unwrap());
    let token_url = rig.settings.providers.anthropic.oauth.token_url.clone();
    let client_id = rig.settings.providers.anthropic.oauth.client_id.clone();
    let refresh = || async {
        let current = refresh_token.lock().unwrap().clone();
        let body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": current.expose(),
            "client_id": client_id,
        });
        let response = rig.bare.post(&token_url).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let answer: serde_json::Value = response.json().await.unwrap();
        let access = answer["access_token"].as_str().unwrap();
        *refresh_token.lock().unwrap() = Secret::new(answer["refresh_token"].as_str().unwrap());
        Token::new(Secret::new(access), UnixSeconds(0))
    };
    let refresh_then_request = || async {
        let token = refresh().await;
        rig.bare_post(&token).await
    };

    let mut group = c.benchmark_group(GROUP);
    group.sample_size(10);
    group.bench_function("refresh_round_trip", |b| {
        b.iter(|| rig.rt.block_on(refresh()));
    });
    group.bench_function("thousand_callers_fresh", |b| {
        b.iter(|| thousand_callers(&fresh));
    });
    // Where the storm's time goes: the steps of the refresh that are not the round trip.
    let part = common::bucket("part");
    let part_token = rig.login("part");
    group.bench_function("lock_and_reread", |b| {
        b.iter(|| {
            rig.rt.block_on(async {
                let _lock = rig.store.lock(&part, Duration::from_secs(5)).await.unwrap();
                rig.store.load(&part).await.unwrap()
            })
        });
    });
    group.bench_function("token_save", |b| {
        b.iter(|| rig.rt.block_on(rig.store.save(&part, &part_token)).unwrap());
    });
    group.bench_function("refresh_then_request", |b| {
        b.iter(|| rig.rt.block_on(refresh_then_request()));
    });
    group.bench_function("thousand_callers", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| one_storm()).sum::<Duration>());
    });
    group.finish();
}

fn main() {
    let started = SystemTime::now();
    let rig = Rig::new();
    let mut c = common::criterion();
    bench(&mut c, &rig);
    c.final_summary();
    common::report_sum_ratio(
        GROUP,
        started,
        &SumRatio {
            subject: "thousand_callers",
            baselines: &["refresh_round_trip", "thousand_callers_fresh"],
            goal: Some(1.5),
        },
    );
    common::report_ratios(
        GROUP,
        started,
        &["refresh_then_request", "lock_and_reread", "token_save"].map(|part| Ratio {
            subject: part,
            baseline: "refresh_round_trip",
            goal: None,
        }),
    );
}
