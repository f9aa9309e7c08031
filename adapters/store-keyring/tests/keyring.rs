//! The keyring store against a real Secret Service: the one `scripts/setup.d/30-keyring.sh`
//! starts (gnome-keyring on a private session bus named by `DBUS_SESSION_BUS_ADDRESS`). Without
//! it these tests fail and say so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use llxprt_application::ports::TokenStore;
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};
use llxprt_store_keyring::{Keyring, KeyringTokenStore};

/// Panics with what to do when no Secret Service answers.
fn require_keyring() {
    let address = std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap_or_default();
    assert!(
        !address.is_empty(),
        "DBUS_SESSION_BUS_ADDRESS is not set: the keyring tests need the Secret Service that \
         scripts/setup.d/30-keyring.sh starts; run them with `scripts/test`"
    );
}

fn store(home: &Path) -> KeyringTokenStore {
    require_keyring();
    KeyringTokenStore::new(home)
}

mod contract {
    use super::*;
    llxprt_application::token_store_contract_tests!(
        {
            let dir = tempfile::tempdir().unwrap();
            move || store(&dir.path().join(format!("home-{}", next())))
        },
        break_saves = break_saves
    );

    /// Makes the store's saves fail, as root too: every save takes the index's lock first, and
    /// a directory stands where the lock file must be opened.
    fn break_saves(store: &KeyringTokenStore, broken: bool) {
        let lock = llxprt_store_keyring::index_path(store.home()).with_extension("json.lock");
        if broken {
            let _ = std::fs::remove_file(&lock);
            std::fs::create_dir_all(&lock).unwrap();
        } else {
            std::fs::remove_dir(&lock).unwrap();
        }
    }

    fn next() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::SeqCst)
    }
}

fn token() -> Token {
    let mut token = Token::new(Secret::new("at-keyring-secret"), UnixSeconds(1_900_000_000));
    token.refresh_token = Some(Secret::new("rt-keyring-secret"));
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_token_is_in_the_keyring_and_no_file_of_the_home_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let work = BucketId::new(OAuthProvider::Anthropic, BucketName::parse("work").unwrap());
    store.save(&work, &token()).await.unwrap();
    // Another store of the same home (another process) reads it from the keyring.
    assert_eq!(
        KeyringTokenStore::new(dir.path())
            .load(&work)
            .await
            .unwrap(),
        Some(token())
    );
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(17)
                .any(|w| w == b"at-keyring-secret" || w == b"rt-keyring-secret"),
            "{} holds the token",
            entry.display()
        );
    }
    // A home of its own never sees another home's tokens.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        KeyringTokenStore::new(other.path())
            .load(&work)
            .await
            .unwrap(),
        None
    );
    assert!(store.delete(&work).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_key_is_made_once_and_kept_in_the_keyring() {
    require_keyring();
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::for_home(dir.path());
    keyring.probe().await.unwrap();
    let (first, made) = keyring.storage_key().await.unwrap();
    assert!(made);
    let (again, made_again) = Keyring::for_home(dir.path()).storage_key().await.unwrap();
    assert!(!made_again);
    assert_eq!(first.check_value(), again.check_value());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
