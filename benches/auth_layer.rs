//! Issue 7, benchmark 1: the cost of the auth layer on a request.
//!
//! `through_auth_layer` sends one message the whole way: precedence (`resolve_credential`), the
//! lazy-login check and the failover machine of `ChatService::send`, a valid token from
//! `TokenService` over the `FileTokenStore`, Anthropic's chat client, and the statistics saved
//! through `FileStatsStore`. `bare_post` is a bare `reqwest` POST of the same body with the same
//! headers to the same simulator endpoint. Goal: at most 1.05× the bare request.

// A bench whose setup fails is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::SystemTime;

use common::{Discard, Ratio, Rig};
use criterion::Criterion;
use llxprt_application::ports::StatsStore;
use llxprt_domain::StatsDelta;
use llxprt_store_file::FileStatsStore;

const GROUP: &str = "auth_layer";

fn bench(c: &mut Criterion, rig: &Rig) {
    let token = rig.login("default");
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("bare_post", |b| {
        b.iter(|| rig.rt.block_on(rig.bare_post(&token)));
    });
    let prompt = Discard::default();
    group.bench_function("through_auth_layer", |b| {
        b.iter(|| {
            rig.rt.block_on(async {
                let target = rig.target(&[]);
                let reply = rig.chat.send(&target, &common::hello(), &prompt).await;
                assert!(reply.is_ok(), "{reply:?}");
            })
        });
    });
    // Where the time goes: the parts of the path that touch files.
    group.bench_function("token_load", |b| {
        b.iter(|| {
            rig.rt
                .block_on(rig.store.load(&common::bucket("default")))
                .unwrap()
        });
    });
    group.bench_function("valid_token", |b| {
        b.iter(|| {
            rig.rt
                .block_on(rig.tokens.valid_token(&common::bucket("default")))
                .unwrap()
        });
    });
    let stats = FileStatsStore::new(rig.home.path());
    group.bench_function("stats_save", |b| {
        b.iter(|| {
            let mut delta = StatsDelta::new();
            delta.record_request(&common::bucket("default"), rig.clock.now());
            rig.rt.block_on(stats.add(&delta)).unwrap();
        });
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
            subject: "through_auth_layer",
            baseline: "bare_post",
            goal: Some(1.05),
        }]
        .into_iter()
        .chain(
            ["token_load", "valid_token", "stats_save"].map(|part| Ratio {
                subject: part,
                baseline: "bare_post",
                goal: None,
            }),
        )
        .collect::<Vec<_>>(),
    );
}
