//! The encrypted store over real files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use llxprt_application::ports::{StoreError, TokenStore};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};
use llxprt_seal::StorageKey;
use llxprt_store_encrypted::EncryptedTokenStore;

mod contract {
    use super::*;
    llxprt_application::token_store_contract_tests!(
        {
            let dir = tempfile::tempdir().unwrap();
            move || {
                let oauth = dir.path().join(format!("oauth-{}", rand_suffix()));
                EncryptedTokenStore::new(oauth, StorageKey::generate().unwrap())
            }
        },
        break_saves = break_saves
    );

    /// Makes the store's saves fail, as root too (modes do not stop root): the token directory
    /// moves aside and a plain file takes its place, so no temporary file can be made in it.
    fn break_saves(store: &EncryptedTokenStore, broken: bool) {
        let aside = store.dir().with_extension("aside");
        if broken {
            fs::rename(store.dir(), &aside).unwrap();
            fs::write(store.dir(), "not a directory").unwrap();
        } else {
            fs::remove_file(store.dir()).unwrap();
            fs::rename(&aside, store.dir()).unwrap();
        }
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::SeqCst)
    }
}

fn bucket(name: &str) -> BucketId {
    BucketId::new(OAuthProvider::Gemini, BucketName::parse(name).unwrap())
}

fn token() -> Token {
    let mut token = Token::new(
        Secret::new("ya29.plain-access-secret"),
        UnixSeconds(1_900_000_000),
    );
    token.refresh_token = Some(Secret::new("1//plain-refresh-secret"));
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_text_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = EncryptedTokenStore::new(dir.path().join("oauth"), StorageKey::generate().unwrap());
    store.save(&bucket("work"), &token()).await.unwrap();
    let path = dir.path().join("oauth/gemini-work.json.enc");
    let bytes = fs::read(&path).unwrap();
    for secret in [
        "plain-access-secret",
        "plain-refresh-secret",
        "access_token",
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} on disk"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(store.load(&bucket("work")).await.unwrap(), Some(token()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_copied_over_another_bucket_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = EncryptedTokenStore::new(dir.path().join("oauth"), StorageKey::generate().unwrap());
    store.save(&bucket("work"), &token()).await.unwrap();
    store.save(&bucket("home"), &token()).await.unwrap();
    let oauth = dir.path().join("oauth");
    fs::copy(
        oauth.join("gemini-work.json.enc"),
        oauth.join("gemini-home.json.enc"),
    )
    .unwrap();
    let err = store.load(&bucket("home")).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("gemini-home.json.enc") && text.contains("another provider or bucket"),
        "{text}"
    );
    assert!(text.contains("/auth gemini login home"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_and_a_truncated_file_are_different_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let oauth = dir.path().join("oauth");
    let store = EncryptedTokenStore::new(oauth.clone(), StorageKey::generate().unwrap());
    store.save(&bucket("work"), &token()).await.unwrap();

    let other = EncryptedTokenStore::new(oauth.clone(), StorageKey::generate().unwrap());
    let err = other.load(&bucket("work")).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("gemini-work.json.enc"), "{err}");

    let path = oauth.join("gemini-work.json.enc");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = store.load(&bucket("work")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("truncated")),
        "{err}"
    );
    assert!(err.to_string().contains("gemini-work.json.enc"), "{err}");
    assert_eq!(
        fs::read(&path).unwrap().len(),
        bytes.len() / 2,
        "the bad file is left alone"
    );
}
