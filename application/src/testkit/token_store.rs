//! The contract every [`TokenStore`] keeps.
//!
//! Run all of it as one `#[tokio::test]` per case with
//! [`token_store_contract_tests!`](crate::token_store_contract_tests), with
//! [`token_store_contract`], or call the cases one by one. Each case takes a fresh,
//! empty store and needs a multi-threaded tokio runtime.
//!
//! ```ignore
//! mod file_store {
//!     llxprt_application::token_store_contract_tests!({
//!         let dir = tempfile::tempdir().unwrap();
//!         move || FileTokenStore::new(dir.path().join("oauth"))
//!     });
//! }
//! ```

// A contract suite reports a broken promise by panicking, as a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};

use crate::ports::{StoreError, TokenStore};

/// Long enough that a lock which should be granted always is, however loaded the machine.
const GENEROUS: Duration = Duration::from_secs(10);

/// Short, for attempts that must time out.
const SHORT: Duration = Duration::from_millis(50);

/// Expands to one `#[tokio::test]` per contract case, each with a store made by `$make`.
///
/// `$make` is an expression evaluated once per test, giving a `Fn() -> S` that makes an empty
/// store; whatever the closure captures (a temporary directory) lives as long as the test. The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! token_store_contract_tests {
    ($make:expr) => {
        $crate::token_store_contract_tests!(@cases $make;
            round_trips_every_field,
            keeps_unknown_fields,
            lists_and_deletes,
            accepts_bucket_names_with_at_and_dots,
            never_mixes_buckets_or_providers,
            lock_excludes_a_second_holder,
            concurrent_writers_never_show_a_torn_token
        );
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let make = $make;
                $crate::testkit::token_store::$case(make()).await;
            }
        )*
    };
}

/// Runs every case, each on a store from `make`, which must return an empty store each time.
pub async fn token_store_contract<S: TokenStore + 'static>(make: impl Fn() -> S) {
    round_trips_every_field(make()).await;
    keeps_unknown_fields(make()).await;
    lists_and_deletes(make()).await;
    accepts_bucket_names_with_at_and_dots(make()).await;
    never_mixes_buckets_or_providers(make()).await;
    lock_excludes_a_second_holder(make()).await;
    concurrent_writers_never_show_a_torn_token(make()).await;
}

/// A token whose every field is derived from `n`, so that a token mixed from two saves, or cut
/// short, is recognisable: see [`number_of`].
pub fn numbered_token(n: i64) -> Token {
    Token {
        // Long enough that a write which is not atomic is likely to be seen half done.
        access_token: Secret::new(format!("at-{n}-{}", "a".repeat(2048))),
        refresh_token: Some(Secret::new(format!("rt-{n}"))),
        expiry: UnixSeconds(1_700_000_000 + n),
        token_type: "Bearer".to_owned(),
        scope: Some(format!("scope-{n} openid")),
        resource_url: Some(format!("https://{n}.resource.test")),
        account_id: Some(format!("acct-{n}")),
        id_token: Some(Secret::new(format!("idt-{n}"))),
        unknown: [
            ("x_number".to_owned(), n.to_string()),
            ("x_text".to_owned(), format!("\"t-{n}\"")),
        ]
        .into_iter()
        .collect(),
    }
}

/// The `n` a token was made from by [`numbered_token`], or `None` when its fields do not all
/// come from the same `n`.
pub fn number_of(token: &Token) -> Option<i64> {
    let n = token.expiry.0.checked_sub(1_700_000_000)?;
    (*token == numbered_token(n)).then_some(n)
}

fn bucket(provider: OAuthProvider, name: &str) -> BucketId {
    BucketId::new(provider, BucketName::parse(name).unwrap())
}

fn full_token(tag: &str) -> Token {
    Token {
        access_token: Secret::new(format!("at-{tag}")),
        refresh_token: Some(Secret::new(format!("rt-{tag}"))),
        expiry: UnixSeconds(1_767_225_600),
        token_type: "Bearer".to_owned(),
        scope: Some("openid profile email model.completion".to_owned()),
        resource_url: Some("portal.qwen.ai".to_owned()),
        account_id: Some(format!("acct-{tag}")),
        id_token: Some(Secret::new(format!("idt-{tag}"))),
        unknown: Default::default(),
    }
}

/// Every field comes back as saved, absent fields stay absent, and a save replaces the whole
/// token rather than merging into the old one.
pub async fn round_trips_every_field<S: TokenStore + 'static>(store: S) {
    let work = bucket(OAuthProvider::Codex, "work");
    assert_eq!(
        store.load(&work).await.unwrap(),
        None,
        "a new store is empty"
    );

    let full = full_token("full");
    store.save(&work, &full).await.unwrap();
    assert_eq!(store.load(&work).await.unwrap(), Some(full));

    let mut minimal = Token::new(Secret::new("at-minimal"), UnixSeconds(-5));
    minimal.token_type = "bearer".to_owned();
    store.save(&work, &minimal).await.unwrap();
    assert_eq!(
        store.load(&work).await.unwrap(),
        Some(minimal),
        "a save replaces every field, including those the new token lacks"
    );
}

/// Fields the store does not know come back exactly as they were saved.
pub async fn keeps_unknown_fields<S: TokenStore + 'static>(store: S) {
    let id = BucketId::default_for(OAuthProvider::Qwen);
    let mut token = full_token("unknown");
    for (name, raw) in [
        ("x_other_client", r#"{"a":[1,2,{"b":null}]}"#),
        ("x_flag", "true"),
        ("x_note", r#""some text""#),
        ("x_count", "42"),
        ("x_nothing", "null"),
    ] {
        token.unknown.insert(name.to_owned(), raw.to_owned());
    }
    store.save(&id, &token).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap(), Some(token));
}

/// `list` names exactly the buckets holding a token, sorted; `delete` says whether there was one.
pub async fn lists_and_deletes<S: TokenStore + 'static>(store: S) {
    let gemini = OAuthProvider::Gemini;
    assert!(store.list(gemini).await.unwrap().is_empty());
    for name in ["work", "default", "a@b.c"] {
        store
            .save(&bucket(gemini, name), &full_token(name))
            .await
            .unwrap();
    }
    let names = |list: Vec<BucketName>| list.iter().map(|b| b.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(store.list(gemini).await.unwrap()),
        ["a@b.c", "default", "work"]
    );
    assert!(store
        .list(OAuthProvider::Anthropic)
        .await
        .unwrap()
        .is_empty());

    assert!(store.delete(&bucket(gemini, "work")).await.unwrap());
    assert!(!store.delete(&bucket(gemini, "work")).await.unwrap());
    assert_eq!(store.load(&bucket(gemini, "work")).await.unwrap(), None);
    assert!(!store.delete(&bucket(gemini, "never")).await.unwrap());
    assert_eq!(
        names(store.list(gemini).await.unwrap()),
        ["a@b.c", "default"]
    );
    assert_eq!(
        store.load(&bucket(gemini, "a@b.c")).await.unwrap(),
        Some(full_token("a@b.c"))
    );
}

/// Bucket names may be e-mail addresses and contain dots anywhere the rules allow.
pub async fn accepts_bucket_names_with_at_and_dots<S: TokenStore + 'static>(store: S) {
    let longest = format!("{}@x.y", "l".repeat(60));
    let names = [
        "work1@company.com",
        "first.last@mail.example.org",
        "a.b.c",
        "...",
        "..a",
        "a..",
        "-",
        "_x-y.z@w",
        longest.as_str(),
    ];
    let anthropic = OAuthProvider::Anthropic;
    for name in names {
        store
            .save(&bucket(anthropic, name), &full_token(name))
            .await
            .unwrap();
    }
    for name in names {
        assert_eq!(
            store.load(&bucket(anthropic, name)).await.unwrap(),
            Some(full_token(name)),
            "bucket {name:?}"
        );
    }
    let listed: Vec<String> = store
        .list(anthropic)
        .await
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect();
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// The default bucket and named buckets of one provider, and the same bucket name under
/// different providers, are all separate, including names that look like providers or files.
pub async fn never_mixes_buckets_or_providers<S: TokenStore + 'static>(store: S) {
    let names = ["default", "work", "gemini", "qwen-default", "default.json"];
    let tag = |p: OAuthProvider, name: &str| format!("{p}/{name}");
    for provider in OAuthProvider::ALL {
        for name in names {
            let token = full_token(&tag(provider, name));
            store.save(&bucket(provider, name), &token).await.unwrap();
        }
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_unstable();
    for provider in OAuthProvider::ALL {
        for name in names {
            assert_eq!(
                store.load(&bucket(provider, name)).await.unwrap(),
                Some(full_token(&tag(provider, name))),
                "{provider}/{name} holds another bucket's token"
            );
        }
        let listed: Vec<String> = store
            .list(provider)
            .await
            .unwrap()
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(listed, sorted, "buckets of {provider}");
    }

    assert!(store
        .delete(&BucketId::default_for(OAuthProvider::Gemini))
        .await
        .unwrap());
    assert_eq!(
        store
            .load(&BucketId::default_for(OAuthProvider::Gemini))
            .await
            .unwrap(),
        None
    );
    for (provider, name) in [
        (OAuthProvider::Gemini, "work"),
        (OAuthProvider::Gemini, "gemini"),
        (OAuthProvider::Qwen, "default"),
        (OAuthProvider::Qwen, "gemini"),
    ] {
        assert_eq!(
            store.load(&bucket(provider, name)).await.unwrap(),
            Some(full_token(&tag(provider, name))),
            "deleting gemini/default touched {provider}/{name}"
        );
    }
}

/// While one guard is held, nobody else gets the same bucket's lock; other buckets stay free; a
/// waiter gets the lock once the guard is dropped.
pub async fn lock_excludes_a_second_holder<S: TokenStore + 'static>(store: S) {
    let store = Arc::new(store);
    let work = bucket(OAuthProvider::Gemini, "work");
    let first = store.lock(&work, GENEROUS).await.unwrap();

    match store.lock(&work, SHORT).await {
        Err(StoreError::LockTimeout { bucket, .. }) => assert_eq!(bucket, work),
        Err(other) => panic!("expected a lock timeout, got {other}"),
        Ok(_) => panic!("a second holder got the lock of {work}"),
    }
    // Other buckets, and the same name under another provider, are not blocked.
    let other_bucket = store
        .lock(&bucket(OAuthProvider::Gemini, "home"), SHORT)
        .await
        .unwrap();
    let other_provider = store
        .lock(&bucket(OAuthProvider::Qwen, "work"), SHORT)
        .await
        .unwrap();
    drop((other_bucket, other_provider));

    let got_it = Arc::new(AtomicBool::new(false));
    let waiter = tokio::spawn({
        let (store, work, got_it) = (Arc::clone(&store), work.clone(), Arc::clone(&got_it));
        async move {
            let guard = store.lock(&work, GENEROUS).await;
            got_it.store(true, Ordering::SeqCst);
            guard.map(drop)
        }
    });
    // Give the waiter a chance to start waiting; it must not get in while the lock is held.
    tokio::time::sleep(SHORT).await;
    assert!(!got_it.load(Ordering::SeqCst), "the waiter got a held lock");
    drop(first);
    waiter
        .await
        .unwrap()
        .expect("the waiter gets the lock once it is released");

    let again = store.lock(&work, Duration::ZERO).await;
    assert!(
        again.is_ok(),
        "a free lock is granted even with no time to wait"
    );
}

/// Many tasks save whole tokens to one bucket while others read it: every read is one of the
/// saved tokens, never a mix or a part of one.
pub async fn concurrent_writers_never_show_a_torn_token<S: TokenStore + 'static>(store: S) {
    const WRITERS: i64 = 4;
    const SAVES_PER_WRITER: i64 = 25;
    let store = Arc::new(store);
    let id = bucket(OAuthProvider::Codex, "shared@team.example");
    store.save(&id, &numbered_token(0)).await.unwrap();

    let writing = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, id, writing, reads) = (
                Arc::clone(&store),
                id.clone(),
                Arc::clone(&writing),
                Arc::clone(&reads),
            );
            tokio::spawn(async move {
                loop {
                    let still_writing = writing.load(Ordering::SeqCst);
                    let token = match store.load(&id).await {
                        Ok(Some(token)) => token,
                        Ok(None) => panic!("a reader found no token while it was being replaced"),
                        Err(e) => panic!("a reader saw a torn token: {e}"),
                    };
                    assert!(
                        number_of(&token).is_some(),
                        "a reader saw a torn or mixed token"
                    );
                    reads.fetch_add(1, Ordering::SeqCst);
                    if !still_writing {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (1..=WRITERS)
        .map(|w| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                for i in 0..SAVES_PER_WRITER {
                    store
                        .save(&id, &numbered_token(w * 1000 + i))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(reads.load(Ordering::SeqCst) >= 2);

    let last = store.load(&id).await.unwrap().unwrap();
    let finals: BTreeSet<i64> = (1..=WRITERS)
        .map(|w| w * 1000 + SAVES_PER_WRITER - 1)
        .collect();
    let n = number_of(&last).expect("the final token is whole");
    assert!(
        finals.contains(&n),
        "the final token ({n}) is not any writer's last save"
    );
}
