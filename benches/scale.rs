//! Issue 7, benchmark 4: scale, with 1000 buckets across the four providers (250 token files
//! each, written through the `FileTokenStore`).
//!
//! - `status_anthropic`: `/auth anthropic status` through `Session::run_line` (250 buckets
//!   listed out of a directory of 1000 token files), output discarded.
//! - `status_all`: `/auth P status` for each provider, 1000 buckets listed. Goal: under 50 ms.
//! - `selection_1000`: a request's bucket selection over a profile naming 1000 buckets: each
//!   bucket's health from `ChatService::health`, then `FailoverRequest::start` and its first
//!   decision (the first bucket is usable).
//! - `selection_1000_last_usable`: the same, when all but the last bucket are cooling down.
//! - `send_1_bucket` and `send_1000_buckets`: a whole message through `ChatService::send` with a
//!   profile of one bucket and with one of 1000 (the first, really signed in, answers).

// A bench whose setup fails is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{Discard, Ratio, Rig};
use criterion::{BatchSize, Criterion};
use llxprt_application::session::{Session, SessionOptions};
use llxprt_application::shell::{LineOutcome, Shell};
use llxprt_domain::failover::{BucketHealth, CooldownCause, Decision};
use llxprt_domain::{BucketId, FailoverRequest, OAuthProvider, Secret, Token, UnixSeconds};

const GROUP: &str = "scale";
const BUCKETS: usize = 1000;
const PER_PROVIDER: usize = BUCKETS / 4;

fn bucket_name(i: usize) -> String {
    format!("user{i:04}@example.com")
}

/// Writes 250 token files per provider, fresh for an hour.
fn seed(rig: &Rig) {
    let expiry = UnixSeconds(rig.clock.now().0 + 3600);
    rig.rt.block_on(async {
        for provider in OAuthProvider::ALL {
            for i in 0..PER_PROVIDER {
                let mut token = Token::new(Secret::new(format!("at-{provider}-{i}")), expiry);
                token.refresh_token = Some(Secret::new(format!("rt-{provider}-{i}")));
                let id = BucketId::new(provider, common::name(&bucket_name(i)));
                rig.store.save(&id, &token).await.unwrap();
            }
        }
    });
}

fn bench(c: &mut Criterion, rig: &Rig) {
    seed(rig);
    // The first Anthropic bucket really signed in, so that a request can use it.
    let first = bucket_name(0);
    rig.login(&first);
    let session = Session::new(rig.services.session_services(), SessionOptions::default());
    let status = |provider: OAuthProvider| {
        let prompt = Discard::default();
        let line = format!("/auth {provider} status");
        let outcome = rig.rt.block_on(session.run_line(&line, &prompt));
        assert!(matches!(outcome, LineOutcome::Succeeded));
        // The heading, then one line per bucket.
        assert_eq!(prompt.lines.into_inner(), PER_PROVIDER + 1);
    };
    let names: Vec<_> = (0..BUCKETS)
        .map(|i| common::name(&bucket_name(i)))
        .collect();
    let now = rig.clock.now();
    let cooling = BucketHealth::CoolingUntil {
        until: UnixSeconds(now.0 + 3600),
        cause: CooldownCause::RateLimited,
    };
    let mostly_cooling: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let health = if i + 1 == BUCKETS {
                BucketHealth::Usable
            } else {
                cooling
            };
            (name.clone(), health)
        })
        .collect();
    let plan_1000: Vec<String> = (0..BUCKETS).map(bucket_name).collect();
    let plan_1000: Vec<&str> = plan_1000.iter().map(String::as_str).collect();
    let prompt = Discard::default();
    let send = |target: &llxprt_application::services::SendTarget| {
        let reply = rig
            .rt
            .block_on(rig.chat.send(target, &common::hello(), &prompt));
        assert!(reply.is_ok(), "{reply:?}");
    };

    let mut group = c.benchmark_group(GROUP);
    group.bench_function("status_anthropic", |b| {
        b.iter(|| status(OAuthProvider::Anthropic));
    });
    group.bench_function("status_all", |b| {
        b.iter(|| OAuthProvider::ALL.into_iter().for_each(status));
    });
    group.bench_function("selection_1000", |b| {
        b.iter(|| {
            let buckets = names
                .iter()
                .map(|name| {
                    let id = BucketId::new(OAuthProvider::Anthropic, name.clone());
                    (name.clone(), rig.chat.health(&id))
                })
                .collect();
            let (_machine, decision) = FailoverRequest::start(buckets, now);
            assert!(matches!(decision, Decision::Use(_)));
        });
    });
    group.bench_function("selection_1000_last_usable", |b| {
        b.iter_batched(
            || mostly_cooling.clone(),
            |buckets| {
                let (_machine, decision) = FailoverRequest::start(buckets, now);
                assert!(matches!(decision, Decision::Use(_)));
            },
            BatchSize::SmallInput,
        );
    });
    let one = rig.target(&[&first]);
    let thousand = rig.target(&plan_1000);
    group.bench_function("send_1_bucket", |b| b.iter(|| send(&one)));
    group.bench_function("send_1000_buckets", |b| b.iter(|| send(&thousand)));
    group.finish();
}

fn main() {
    let started = SystemTime::now();
    let rig = Rig::new();
    let mut c = common::criterion();
    bench(&mut c, &rig);
    c.final_summary();
    let limit = Some(Duration::from_millis(50));
    common::report_per(
        GROUP,
        "status_anthropic",
        started,
        PER_PROVIDER,
        "bucket",
        None,
    );
    common::report_per(GROUP, "status_all", started, BUCKETS, "bucket", limit);
    common::report_per(GROUP, "selection_1000", started, BUCKETS, "bucket", None);
    common::report_per(
        GROUP,
        "selection_1000_last_usable",
        started,
        BUCKETS,
        "bucket",
        None,
    );
    common::report_ratios(
        GROUP,
        started,
        &[Ratio {
            subject: "send_1000_buckets",
            baseline: "send_1_bucket",
            goal: None,
        }],
    );
}
