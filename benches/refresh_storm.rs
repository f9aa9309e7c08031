//! Issue 7, benchmark 3: a refresh storm.
//!
//! Before every iteration the stored token of the bucket `storm` is made expired (its current,
//! valid refresh token kept). `thousand_callers` is the time for 1000 concurrent
//! `TokenService::valid_token` calls to all get a token; after each iteration the simulator must
//! have seen exactly one refresh (checked, outside the timing). `refresh_then_request` is the
//! baseline: one bare refresh POST to the token endpoint, then one bare chat request with the new
//! token. Goal: at most 1.5×.

// A bench whose setup fails is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use common::{Ratio, Rig};
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
    let one_storm = || {
        let mut token = rig.rt.block_on(rig.store.load(&storm)).unwrap().unwrap();
        token.expiry = UnixSeconds(rig.clock.now().0 - 5);
        rig.rt.block_on(rig.store.save(&storm, &token)).unwrap();
        let before = refreshes();
        let start = Instant::now();
        rig.rt.block_on(async {
            let mut callers = tokio::task::JoinSet::new();
            for _ in 0..CALLERS {
                let tokens = rig.tokens.clone();
                let storm = storm.clone();
                callers.spawn(async move { tokens.valid_token(&storm).await });
            }
            while let Some(joined) = callers.join_next().await {
                assert!(joined.unwrap().is_ok());
            }
        });
        let elapsed = start.elapsed();
        assert_eq!(refreshes() - before, 1, "exactly one refresh per storm");
        elapsed
    };

    // The baseline refreshes its own account, keeping the rotating refresh token by hand.
    let bare = rig.login("bare");
    let refresh_token = Mutex::new(bare.refresh_token.clone().unwrap());
    let token_url = rig.settings.providers.anthropic.oauth.token_url.clone();
    let client_id = rig.settings.providers.anthropic.oauth.client_id.clone();
    let refresh_then_request = || async {
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
        let token = Token::new(Secret::new(access), UnixSeconds(0));
        rig.bare_post(&token).await
    };

    let mut group = c.benchmark_group(GROUP);
    group.sample_size(10);
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
    common::report_ratios(
        GROUP,
        started,
        &[Ratio {
            subject: "thousand_callers",
            baseline: "refresh_then_request",
            goal: Some(1.5),
        }],
    );
}
