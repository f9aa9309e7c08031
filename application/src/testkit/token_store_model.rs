//! The model-based contract of a [`TokenStore`]: random sequences of load, save, delete, list,
//! lock and unlock over a few buckets (hostile names included), each checked against a map and
//! a set of held locks. A failing sequence is shrunk to a short one before it is reported.
//!
//! ```text
//! llxprt_application::token_store_model_tests!({
//!     let dir = tempfile::tempdir().unwrap();
//!     let next = std::sync::atomic::AtomicUsize::new(0);
//!     move || FileTokenStore::new(dir.path().join(next.fetch_add(1, Ordering::SeqCst).to_string()))
//! });
//! ```

// A contract suite reports a broken promise by panicking, as a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use llxprt_domain::strategies::{any_bucket_id, any_oauth_provider, any_token};
use llxprt_domain::{BucketId, OAuthProvider, Token};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::ports::{BucketLock, StoreError, TokenStore};

/// How many random sequences [`token_store_model_tests!`](crate::token_store_model_tests)
/// checks; `PROPTEST_CASES` in the environment overrides it.
pub const DEFAULT_CASES: u32 = 48;

/// Expands to a `#[test]` that checks [`token_store_model`] with [`DEFAULT_CASES`] sequences.
///
/// `$make` is an expression evaluated once, giving a `Fn() -> S` that makes a new, empty store
/// each time it is called (one per sequence). The test builds its own tokio runtime.
#[macro_export]
macro_rules! token_store_model_tests {
    ($make:expr $(,)?) => {
        #[test]
        fn token_store_behaves_like_its_model() {
            let make = $make;
            $crate::testkit::token_store_model::token_store_model(
                make,
                $crate::testkit::token_store_model::cases(),
            );
        }
    };
}

/// One step of a sequence; buckets are indices into the sequence's buckets.
#[derive(Debug, Clone)]
pub enum Step {
    /// Load a bucket: the model's token, or `None`.
    Load(Index),
    /// Save a token to a bucket.
    Save(Index, Token),
    /// Delete a bucket: whether the model had a token.
    Delete(Index),
    /// List a provider's buckets: the model's, sorted.
    List(OAuthProvider),
    /// Take a bucket's lock without waiting: granted exactly when the model holds none.
    Lock(Index),
    /// Drop a held lock of a bucket (nothing when none is held).
    Unlock(Index),
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<Index>().prop_map(Step::Load),
        4 => (any::<Index>(), any_token()).prop_map(|(i, t)| Step::Save(i, t)),
        2 => any::<Index>().prop_map(Step::Delete),
        2 => any_oauth_provider().prop_map(Step::List),
        2 => any::<Index>().prop_map(Step::Lock),
        2 => any::<Index>().prop_map(Step::Unlock),
    ]
}

/// The number of sequences to check: `PROPTEST_CASES`, else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Checks `cases` random sequences, each on a new store from `make`, and panics with the
/// shortest failing sequence found. Builds its own tokio runtime, so call it outside one.
pub fn token_store_model<S: TokenStore + 'static>(make: impl Fn() -> S, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the model suite");
    let config = Config {
        cases,
        // Embedders' crates get no regression files written into them.
        failure_persistence: None,
        ..Config::default()
    };
    let sequences = (
        proptest::collection::vec(any_bucket_id(), 1..5),
        proptest::collection::vec(any_step(), 1..30),
    );
    let result = TestRunner::new(config).run(&sequences, |(buckets, steps)| {
        let store = make();
        runtime.block_on(check_sequence(&store, &buckets, &steps))
    });
    if let Err(failure) = result {
        panic!("the token store differs from its model: {failure}");
    }
}

/// Runs one sequence against `store` and the model.
async fn check_sequence<S: TokenStore>(
    store: &S,
    buckets: &[BucketId],
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<BucketId, Token> = BTreeMap::new();
    let mut held: HashMap<BucketId, Box<dyn BucketLock>> = HashMap::new();
    let pick = |i: &Index| buckets[i.index(buckets.len())].clone();
    for (n, step) in steps.iter().enumerate() {
        let at = format!("step {n} ({step:?})");
        match step {
            Step::Load(i) => {
                let id = pick(i);
                let loaded = store.load(&id).await.map_err(|e| fail(&at, e))?;
                prop_assert_eq!(loaded.as_ref(), model.get(&id), "{}: {}", at, id);
            }
            Step::Save(i, token) => {
                let id = pick(i);
                store.save(&id, token).await.map_err(|e| fail(&at, e))?;
                model.insert(id, token.clone());
            }
            Step::Delete(i) => {
                let id = pick(i);
                let had = store.delete(&id).await.map_err(|e| fail(&at, e))?;
                prop_assert_eq!(had, model.remove(&id).is_some(), "{}: {}", at, id);
            }
            Step::List(provider) => {
                let listed = store.list(*provider).await.map_err(|e| fail(&at, e))?;
                let expected: Vec<_> = model
                    .keys()
                    .filter(|id| id.provider == *provider)
                    .map(|id| id.bucket.clone())
                    .collect();
                prop_assert_eq!(listed, expected, "{}", at);
            }
            Step::Lock(i) => {
                let id = pick(i);
                match (
                    store.lock(&id, Duration::ZERO).await,
                    held.contains_key(&id),
                ) {
                    (Ok(guard), false) => {
                        held.insert(id, guard);
                    }
                    (Ok(_), true) => prop_assert!(false, "{}: {} was locked twice", at, id),
                    (Err(StoreError::LockTimeout { bucket, .. }), true) => {
                        prop_assert_eq!(bucket, id, "{}: the timeout names another bucket", at);
                    }
                    (Err(e), _) => return Err(fail(&at, e)),
                }
            }
            Step::Unlock(i) => {
                held.remove(&pick(i));
            }
        }
    }
    drop(held);
    let distinct: BTreeSet<&BucketId> = buckets.iter().collect();
    for id in distinct {
        let relocked = store.lock(id, Duration::ZERO).await;
        prop_assert!(
            relocked.is_ok(),
            "{} stayed locked after every guard was dropped",
            id
        );
    }
    Ok(())
}

fn fail(at: &str, error: StoreError) -> TestCaseError {
    TestCaseError::fail(format!("{at}: {error}"))
}
