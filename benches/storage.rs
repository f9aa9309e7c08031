//! Issue 14: a message through the auth layer with each token store, as a ratio to the file
//! store, measured in one run.
//!
//! Each `message_{backend}` sends one message the whole way (precedence, failover, a valid
//! token from `TokenService` over that store, the chat client, statistics) through services
//! composed with `storage.backend={backend}`. The keyring rig needs a Secret Service on the
//! session bus (`scripts/setup.d/30-keyring.sh` starts one): without it this bench fails.

// A bench whose setup fails is a failed bench.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::SystemTime;

use common::{Discard, Ratio, Rig};
use criterion::Criterion;

const GROUP: &str = "storage";
const BACKENDS: [&str; 4] = ["file", "encrypted", "keyring", "auto"];

fn main() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "the keyring rig needs a Secret Service: source scripts/setup.d/30-keyring.sh first"
    );
    let started = SystemTime::now();
    let rigs: Vec<(&str, Rig)> = BACKENDS
        .iter()
        .map(|backend| {
            let rig = Rig::with_settings(&[("storage.backend", backend)]);
            rig.login("default");
            (*backend, rig)
        })
        .collect();
    let mut c: Criterion = common::criterion();
    let mut group = c.benchmark_group(GROUP);
    let prompt = Discard::default();
    for (backend, rig) in &rigs {
        group.bench_function(format!("message_{backend}"), |b| {
            b.iter(|| {
                rig.rt.block_on(async {
                    let reply = rig
                        .chat
                        .send(&rig.target(&[]), &common::hello(), &prompt)
                        .await;
                    assert!(reply.is_ok(), "{reply:?}");
                })
            });
        });
    }
    group.finish();
    c.final_summary();
    common::report_ratios(
        GROUP,
        started,
        &["message_encrypted", "message_keyring", "message_auto"].map(|subject| Ratio {
            subject,
            baseline: "message_file",
            goal: None,
        }),
    );
}
