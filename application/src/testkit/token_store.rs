//! The contract every [`TokenStore`] keeps.
//!
//! Run all of it as one `#[tokio::test]` per case with
//! [`token_store_contract_tests!`](crate::token_store_contract_tests), with
//! [`token_store_contract`], or call the cases one by one. Each case takes a fresh, empty store
//! and needs a multi-threaded tokio runtime. The model-based suite in
//! [`token_store_model`](super::token_store_model) checks random sequences of operations too.
//!
//! Besides a constructor, the suite needs a way to make the store's saves fail, for the case
//! [`a_failed_save_keeps_the_old_token`]: `break_saves(&store, true)` makes every later save
//! fail (a full disk, a locked keyring, a database gone away), `break_saves(&store, false)`
//! repairs it.
//!
//! ```text
//! mod file_store {
//!     llxprt_application::token_store_contract_tests!(
//!         {
//!             let dir = tempfile::tempdir().unwrap();
//!             move || FileTokenStore::new(dir.path().join("oauth"))
//!         },
//!         break_saves = |store: &FileTokenStore, broken: bool| { /* ... */ }
//!     );
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
/// store; whatever the closure captures (a temporary directory) lives as long as the test.
/// `break_saves = $break` gives a `Fn(&S, bool)` that makes the store's saves fail (`true`) or
/// work again (`false`). Without it the case [`a_failed_save_keeps_the_old_token`] fails,
/// saying so. The calling crate needs `tokio` with the `macros` and `rt-multi-thread`
/// features.
#[macro_export]
macro_rules! token_store_contract_tests {
    ($make:expr, break_saves = $break:expr $(,)?) => {
        $crate::token_store_contract_tests!(@cases $make;
            round_trips_every_field,
            keeps_unknown_fields,
            keeps_unknown_fields_through_a_refresh,
            lists_and_deletes,
            accepts_bucket_names_with_at_and_dots,
            keeps_hostile_bucket_names_apart,
            never_mixes_buckets_or_providers,
            lock_excludes_a_second_holder,
            lock_holder_can_read_save_and_delete,
            lock_is_released_when_its_holder_is_cancelled,
            locked_updates_are_never_lost,
            concurrent_saves_to_different_buckets_all_land,
            concurrent_writers_never_show_a_torn_token
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_failed_save_keeps_the_old_token() {
            let make = $make;
            $crate::testkit::token_store::a_failed_save_keeps_the_old_token(make(), $break).await;
        }
    };
    ($make:expr $(,)?) => {
        $crate::token_store_contract_tests!($make, break_saves = |_: &_, _: bool| {
            panic!(
                "token_store_contract_tests! needs `break_saves = |store, broken| ...` to check \
                 that a failed save keeps the old token"
            )
        });
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

/// Runs every case, each on a store from `make`, which must return an empty store each time;
/// `break_saves` as for [`a_failed_save_keeps_the_old_token`].
pub async fn token_store_contract<S: TokenStore + 'static>(
    make: impl Fn() -> S,
    break_saves: impl Fn(&S, bool),
) {
    round_trips_every_field(make()).await;
    keeps_unknown_fields(make()).await;
    keeps_unknown_fields_through_a_refresh(make()).await;
    lists_and_deletes(make()).await;
    accepts_bucket_names_with_at_and_dots(make()).await;
    keeps_hostile_bucket_names_apart(make()).await;
    never_mixes_buckets_or_providers(make()).await;
    lock_excludes_a_second_holder(make()).await;
    lock_holder_can_read_save_and_delete(make()).await;
    lock_is_released_when_its_holder_is_cancelled(make()).await;
    locked_updates_are_never_lost(make()).await;
    concurrent_saves_to_different_buckets_all_land(make()).await;
    concurrent_writers_never_show_a_torn_token(make()).await;
    a_failed_save_keeps_the_old_token(make(), break_saves).await;
}

/// A token whose every field is derived from `n`, so that a token mixed from two saves, or cut
/// short, is recognisable: see [`number_of`].
pub fn numbered_token(n: i64) -> Token {
    // Long enough that a write which is not atomic is likely to be seen half done.
    let access = Secret::new(format!("at-{n}-{}", "a".repeat(2048)));
    let mut token = Token::new(access, UnixSeconds(1_700_000_000 + n));
    token.refresh_token = Some(Secret::new(format!("rt-{n}")));
    token.scope = Some(format!("scope-{n} openid"));
    token.resource_url = Some(format!("https://{n}.resource.test"));
    token.account_id = Some(format!("acct-{n}"));
    token.id_token = Some(Secret::new(format!("idt-{n}")));
    token.unknown = [
        ("x_number".to_owned(), n.to_string()),
        ("x_text".to_owned(), format!("\"t-{n}\"")),
    ]
    .into_iter()
    .collect();
    token
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
    let mut token = Token::new(Secret::new(format!("at-{tag}")), UnixSeconds(1_767_225_600));
    token.refresh_token = Some(Secret::new(format!("rt-{tag}")));
    token.scope = Some("openid profile email model.completion".to_owned());
    token.resource_url = Some("portal.qwen.ai".to_owned());
    token.account_id = Some(format!("acct-{tag}"));
    token.id_token = Some(Secret::new(format!("idt-{tag}")));
    token
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

    let mut awkward = full_token("awkward");
    for (name, raw) in [
        ("x_unicode", r#""äé€ 漢字 🚀""#),
        (
            "x_escapes",
            r#""quote \" backslash \\ newline \n tab \t \u0000""#,
        ),
        ("x_big", "123456789012345678901234567890"),
        ("x_float", "-1.5e-300"),
        ("x_empty_object", "{}"),
        ("x_empty_array", "[]"),
        ("x_deep", r#"[[[[[[[[[[{"k":[1,2,3]}]]]]]]]]]]"#),
        ("access_token_2", r#""not the access token""#),
    ] {
        awkward.unknown.insert(name.to_owned(), raw.to_owned());
    }
    let other = BucketId::new(OAuthProvider::Codex, BucketName::parse("awkward").unwrap());
    store.save(&other, &awkward).await.unwrap();
    let loaded = store.load(&other).await.unwrap().unwrap();
    for (name, raw) in &awkward.unknown {
        let kept = loaded.unknown.get(name).map(String::as_str);
        assert!(
            kept.is_some_and(|kept| same_json(kept, raw)),
            "unknown field {name} came back as {kept:?}, saved as {raw}"
        );
    }
    assert_eq!(
        loaded.unknown.len(),
        awkward.unknown.len(),
        "fields appeared or vanished"
    );
    let known_fields = |mut token: Token| {
        token.unknown.clear();
        token
    };
    assert_eq!(known_fields(loaded), known_fields(awkward));
}

/// Whether two JSON texts are the same value, ignoring white space outside strings (a store may
/// re-serialise what it kept).
fn same_json(a: &str, b: &str) -> bool {
    fn squeeze(text: &str) -> String {
        let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
        for c in text.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            } else if c.is_whitespace() {
                continue;
            }
            out.push(c);
        }
        out
    }
    squeeze(a) == squeeze(b)
}

/// A refresh loads the token, merges the provider's answer into it and saves it back: fields
/// the store does not know survive that round, as they do for another client sharing the file.
pub async fn keeps_unknown_fields_through_a_refresh<S: TokenStore + 'static>(store: S) {
    let id = BucketId::default_for(OAuthProvider::Gemini);
    let mut token = full_token("before");
    token
        .unknown
        .insert("x_other_client".to_owned(), r#"{"keep":"me"}"#.to_owned());
    store.save(&id, &token).await.unwrap();

    let stored = store.load(&id).await.unwrap().unwrap();
    let refreshed = stored.merge_refresh(Token::new(
        Secret::new("at-after"),
        UnixSeconds(1_800_000_000),
    ));
    store.save(&id, &refreshed).await.unwrap();

    let after = store.load(&id).await.unwrap().unwrap();
    assert_eq!(after.access_token, Secret::new("at-after"));
    assert_eq!(
        after.refresh_token, token.refresh_token,
        "the old refresh token is kept"
    );
    assert!(
        after
            .unknown
            .get("x_other_client")
            .is_some_and(|raw| same_json(raw, r#"{"keep":"me"}"#)),
        "another client's field was lost in a refresh: {:?}",
        after.unknown
    );
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

/// Valid bucket names that look like paths, hidden files, other files of a store, other
/// providers or each other (differing only in case) each keep their own token, lock and
/// deletion.
pub async fn keeps_hostile_bucket_names_apart<S: TokenStore + 'static>(store: S) {
    let longest = "z".repeat(64);
    let names = [
        "..a",
        "...",
        "-",
        "--",
        "@",
        ".hidden",
        "x.json",
        "default.json",
        "gemini.json",
        "gemini-default",
        "x.lock",
        "x.tmp",
        "Work",
        "work",
        "WORK",
        "con",
        "NUL",
        "lpt1",
        "..-..",
        "_",
        longest.as_str(),
    ];
    let gemini = OAuthProvider::Gemini;
    for (n, name) in (0i64..).zip(names) {
        store
            .save(&bucket(gemini, name), &numbered_token(n))
            .await
            .unwrap();
    }
    for (n, name) in (0i64..).zip(names) {
        let loaded = store.load(&bucket(gemini, name)).await.unwrap();
        assert_eq!(
            loaded.as_ref().and_then(number_of),
            Some(n),
            "bucket {name:?}"
        );
        drop(
            store
                .lock(&bucket(gemini, name), Duration::ZERO)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        store.load(&BucketId::default_for(gemini)).await.unwrap(),
        None,
        "a hostile name reached the default bucket"
    );
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    let listed: Vec<String> = store
        .list(gemini)
        .await
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(listed, expected);

    // Holding one name's lock leaves its look-alikes free.
    let held = store.lock(&bucket(gemini, "work"), GENEROUS).await.unwrap();
    for other in ["Work", "WORK", "x.lock"] {
        drop(store.lock(&bucket(gemini, other), SHORT).await.unwrap());
    }
    drop(held);

    for name in ["work", "x.json", "..a"] {
        assert!(store.delete(&bucket(gemini, name)).await.unwrap());
    }
    for (n, name) in (0i64..).zip(names) {
        let loaded = store.load(&bucket(gemini, name)).await.unwrap();
        if ["work", "x.json", "..a"].contains(&name) {
            assert_eq!(loaded, None, "{name:?} survived its deletion");
        } else {
            assert_eq!(
                loaded.as_ref().and_then(number_of),
                Some(n),
                "deleting a look-alike touched {name:?}"
            );
        }
    }
    assert!(store.list(OAuthProvider::Qwen).await.unwrap().is_empty());
}

/// Whoever holds a bucket's lock can still load, save and delete it: the lock guards a refresh
/// or a login, it does not block the store.
pub async fn lock_holder_can_read_save_and_delete<S: TokenStore + 'static>(store: S) {
    let id = bucket(OAuthProvider::Anthropic, "work");
    let _held = store.lock(&id, GENEROUS).await.unwrap();
    let outcome = tokio::time::timeout(GENEROUS, async {
        store.save(&id, &numbered_token(1)).await.unwrap();
        assert_eq!(
            store.load(&id).await.unwrap().as_ref().and_then(number_of),
            Some(1)
        );
        assert_eq!(store.list(OAuthProvider::Anthropic).await.unwrap().len(), 1);
        assert!(store.delete(&id).await.unwrap());
    })
    .await;
    assert!(
        outcome.is_ok(),
        "an operation under the bucket's own lock never finished"
    );
}

/// A task cancelled while it holds a lock (Ctrl-C on a refresh in flight) releases it.
pub async fn lock_is_released_when_its_holder_is_cancelled<S: TokenStore + 'static>(store: S) {
    let store = Arc::new(store);
    let id = bucket(OAuthProvider::Qwen, "work");
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn({
        let (store, id) = (Arc::clone(&store), id.clone());
        async move {
            let _guard = store.lock(&id, GENEROUS).await.unwrap();
            let _ = locked.send(());
            std::future::pending::<()>().await;
        }
    });
    is_locked.await.expect("the holder took the lock");
    assert!(
        store.lock(&id, SHORT).await.is_err(),
        "the lock was granted while held"
    );
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    let again = store.lock(&id, GENEROUS).await;
    assert!(
        again.is_ok(),
        "the lock of a cancelled holder was never released"
    );
}

/// Tasks that each take the lock, read the token, and save it with its number raised by one
/// (a refresh's read → change → write) lose no update.
pub async fn locked_updates_are_never_lost<S: TokenStore + 'static>(store: S) {
    const TASKS: i64 = 6;
    const ROUNDS: i64 = 3;
    let store = Arc::new(store);
    let id = bucket(OAuthProvider::Codex, "counted");
    store.save(&id, &numbered_token(0)).await.unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let _guard = store.lock(&id, GENEROUS).await.unwrap();
                    let token = store.load(&id).await.unwrap().unwrap();
                    let n = number_of(&token).expect("a whole token");
                    tokio::task::yield_now().await;
                    store.save(&id, &numbered_token(n + 1)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let last = store.load(&id).await.unwrap().unwrap();
    assert_eq!(
        number_of(&last),
        Some(TASKS * ROUNDS),
        "an update made under the lock was lost"
    );
}

/// Saves to many buckets at once all land, and `list` names every one of them.
pub async fn concurrent_saves_to_different_buckets_all_land<S: TokenStore + 'static>(store: S) {
    const BUCKETS: i64 = 16;
    let store = Arc::new(store);
    let name = |n: i64| format!("team{n:02}@example.com");
    let saves: Vec<_> = (0..BUCKETS)
        .map(|n| {
            let store = Arc::clone(&store);
            let id = bucket(OAuthProvider::Anthropic, &name(n));
            tokio::spawn(async move { store.save(&id, &numbered_token(n)).await.unwrap() })
        })
        .collect();
    for save in saves {
        save.await.unwrap();
    }
    for n in 0..BUCKETS {
        let loaded = store
            .load(&bucket(OAuthProvider::Anthropic, &name(n)))
            .await
            .unwrap();
        assert_eq!(
            loaded.as_ref().and_then(number_of),
            Some(n),
            "bucket {}",
            name(n)
        );
    }
    let listed: Vec<String> = store
        .list(OAuthProvider::Anthropic)
        .await
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect();
    let expected: Vec<String> = (0..BUCKETS).map(name).collect();
    assert_eq!(listed, expected);
}

/// A save that fails (the store was broken by `break_saves(&store, true)`: a full disk, a
/// locked keyring) reports an error and keeps the old token: once repaired, the bucket loads
/// the token it had, is listed, and the next save works.
pub async fn a_failed_save_keeps_the_old_token<S: TokenStore + 'static>(
    store: S,
    break_saves: impl Fn(&S, bool),
) {
    let id = bucket(OAuthProvider::Gemini, "work@example.com");
    let neighbour = bucket(OAuthProvider::Gemini, "home");
    store.save(&id, &numbered_token(1)).await.unwrap();
    store.save(&neighbour, &numbered_token(7)).await.unwrap();

    break_saves(&store, true);
    let failed = store.save(&id, &numbered_token(2)).await;
    let second = store.save(&id, &numbered_token(3)).await;
    break_saves(&store, false);
    match failed {
        // The store names what refused; a corrupt token or a busy lock would send the user
        // the wrong way.
        Err(wrong @ (StoreError::Corrupt { .. } | StoreError::LockTimeout { .. })) => {
            panic!("a failed save should say what refused it, got {wrong:?}")
        }
        Err(_) => {}
        Ok(()) => panic!("the save succeeded although the store was broken"),
    }
    assert!(
        second.is_err(),
        "a second save on the broken store succeeded"
    );

    let kept = store
        .load(&id)
        .await
        .expect("the repaired store reads the bucket");
    assert_eq!(
        kept.as_ref().and_then(number_of),
        Some(1),
        "the failed save lost or changed the old token"
    );
    assert_eq!(
        store
            .load(&neighbour)
            .await
            .unwrap()
            .as_ref()
            .and_then(number_of),
        Some(7),
        "the failed save touched another bucket"
    );
    let listed: Vec<String> = store
        .list(OAuthProvider::Gemini)
        .await
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(listed, ["home", "work@example.com"]);
    store.save(&id, &numbered_token(4)).await.unwrap();
    assert_eq!(
        store.load(&id).await.unwrap().as_ref().and_then(number_of),
        Some(4)
    );
}
