//! Exactly one refresh of an expired token, however many ask at once: 1000 tasks in one
//! process, and real `llxprt` processes sharing one bucket whose refresh tokens rotate.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use llxprt_application::ports::{Browser, BrowserError, Clock, TokenStore};
use llxprt_clock::SystemClock;
use llxprt_domain::OAuthProvider;

use crate::support::{bucket_id, reply, Lab, STEP};

const ANTHROPIC: OAuthProvider = OAuthProvider::Anthropic;

/// A refresh needs no browser; a flow that opened one would be a bug.
struct NoBrowser;

#[async_trait]
impl Browser for NoBrowser {
    async fn open(&self, _url: &str) -> Result<(), BrowserError> {
        Err(BrowserError::Unavailable(
            "a refresh opens no browser".to_owned(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_on_an_expired_token_make_one_refresh() {
    const CALLERS: usize = 1000;
    let lab = Lab::start().await;
    let expired = lab.seed_expired(ANTHROPIC, "shared").await;
    let bucket = bucket_id(ANTHROPIC, "shared");
    let service = lab.services(Arc::new(NoBrowser)).tokens;

    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (service, bucket) = (service.clone(), bucket.clone());
            tokio::spawn(async move { service.valid_token(&bucket).await })
        })
        .collect();
    let mut handed_out = HashSet::new();
    for task in tasks {
        let token = tokio::time::timeout(STEP, task)
            .await
            .expect("every caller got an answer in time")
            .unwrap()
            .unwrap_or_else(|e| panic!("a caller got no token: {e}"));
        handed_out.insert(token.access_token.expose().to_owned());
    }

    let counted = lab.counters(ANTHROPIC, "shared");
    assert_eq!(
        (
            counted.refreshes,
            counted.reused_refresh_tokens,
            counted.rejected_refreshes
        ),
        (1, 0, 0),
        "{counted:?}"
    );
    // Secrets stay out of the messages: only counts and yes/no are shown.
    assert_eq!(handed_out.len(), 1, "callers got different tokens");
    // Callers get the token as soon as the provider answers; its save ends under the lock, and
    // before the process exits.
    service.finish_refreshes().await;
    let stored = lab.store().load(&bucket).await.unwrap().unwrap();
    assert!(
        handed_out.contains(stored.access_token.expose()),
        "the callers' token is not the stored one"
    );
    assert!(
        stored.access_token != expired.access_token,
        "the expired token was handed out"
    );
    assert!(!stored.needs_refresh(SystemClock.now()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_an_expired_bucket_make_one_refresh_and_all_answer() {
    const PROCESSES: usize = 8;
    let lab = Lab::start().await;
    let expired = lab.seed_expired(ANTHROPIC, "default").await;
    let enabled = lab.run(&["auth", "anthropic", "enable"], &[], &[]).await;
    assert_eq!(enabled.code(), Some(0), "{}", enabled.stderr);

    let texts: Vec<String> = (0..PROCESSES).map(|n| format!("hello from {n}")).collect();
    let children: Vec<_> = texts
        .iter()
        .map(|text| lab.spawn(&["-p", text], &[]))
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
            counted.rejected_refreshes
        ),
        (1, 0, 0),
        "{counted:?}"
    );
    assert_eq!(
        (counted.chat_requests, counted.rejected_chat_requests),
        (u64::try_from(PROCESSES).unwrap(), 0),
        "{counted:?}"
    );
    let stored = lab
        .store()
        .load(&bucket_id(ANTHROPIC, "default"))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.access_token != expired.access_token);
    assert!(stored.refresh_token != expired.refresh_token, "not rotated");
    lab.assert_no_secret_leaked();
}
