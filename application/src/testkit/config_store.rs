//! The contract every configuration store keeps: settings ([`SettingsStore`]), saved profiles
//! ([`ProfileStore`]) and key files ([`KeyFiles`]), served by one adapter.
//!
//! Run it with [`config_store_contract_tests!`](crate::config_store_contract_tests), one
//! `#[test]` per case, or call the cases one by one. Besides a constructor, the suite needs
//! `put_key_file(&store, contents) -> path`, which makes a key file holding `contents` where
//! the store reads key files, and returns the path to give [`KeyFiles::read_key_file`].

// A contract suite reports a broken promise by panicking, as a test does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use llxprt_domain::strategies::any_named_profile;
use llxprt_domain::{
    BucketName, ChatProvider, InvalidProfile, LoadBalancePolicy, OAuthProvider, Profile,
    ProfileName, Secret,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::ports::{ConfigError, KeyFiles, ProfileStore, SettingsStore};

/// What the configuration contract runs against: one store serving all three ports.
pub trait ConfigStores: SettingsStore + ProfileStore + KeyFiles {}

impl<T: SettingsStore + ProfileStore + KeyFiles> ConfigStores for T {}

/// Expands to one `#[test]` per case of the configuration contract, each with a store made by
/// `$make` (an expression giving a `Fn() -> C` that makes an empty store), and key files made
/// by `put_key_file = $put` (a `Fn(&C, &str) -> String`).
#[macro_export]
macro_rules! config_store_contract_tests {
    ($make:expr, put_key_file = $put:expr $(,)?) => {
        $crate::config_store_contract_tests!(@cases $make;
            settings_start_with_oauth_off_and_no_default_profile,
            oauth_enabled_is_kept_per_provider,
            a_default_profile_must_be_saved_and_can_be_cleared,
            profiles_come_back_as_saved_and_list_sorted,
            random_profiles_come_back_as_saved,
            an_invalid_profile_is_refused_and_nothing_is_written,
            a_deleted_profile_is_gone_and_others_stay
        );
        #[test]
        fn key_files_are_trimmed_and_an_empty_or_missing_one_is_refused() {
            let make = $make;
            $crate::testkit::config_store::key_files_are_trimmed_and_an_empty_or_missing_one_is_refused(&make(), $put);
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[test]
            fn $case() {
                let make = $make;
                $crate::testkit::config_store::$case(&make());
            }
        )*
    };
}

fn name(text: &str) -> ProfileName {
    ProfileName::parse(text).unwrap()
}

fn bucket(text: &str) -> BucketName {
    BucketName::parse(text).unwrap()
}

/// A new store: OAuth off for every provider, no default profile, no profiles.
pub fn settings_start_with_oauth_off_and_no_default_profile<C: ConfigStores>(store: &C) {
    let settings = store.load_settings().unwrap();
    for provider in OAuthProvider::ALL {
        assert!(
            !settings.is_oauth_enabled(provider),
            "{provider} starts enabled"
        );
    }
    assert_eq!(settings.default_profile, None);
    assert!(store.list_profiles().unwrap().is_empty());
}

/// `/auth P enable` and `disable` are seen by the next load, for that provider only.
pub fn oauth_enabled_is_kept_per_provider<C: ConfigStores>(store: &C) {
    let enabled = |store: &C| -> Vec<OAuthProvider> {
        let settings = store.load_settings().unwrap();
        OAuthProvider::ALL
            .into_iter()
            .filter(|p| settings.is_oauth_enabled(*p))
            .collect()
    };
    store
        .set_oauth_enabled(OAuthProvider::Gemini, true)
        .unwrap();
    assert_eq!(enabled(store), [OAuthProvider::Gemini]);
    store.set_oauth_enabled(OAuthProvider::Codex, true).unwrap();
    store
        .set_oauth_enabled(OAuthProvider::Gemini, false)
        .unwrap();
    assert_eq!(enabled(store), [OAuthProvider::Codex]);
    store.set_oauth_enabled(OAuthProvider::Codex, true).unwrap();
    assert_eq!(
        enabled(store),
        [OAuthProvider::Codex],
        "enabling twice is enabling once"
    );
}

/// Only a saved profile can become the default; `None` clears it; other settings stay.
pub fn a_default_profile_must_be_saved_and_can_be_cleared<C: ConfigStores>(store: &C) {
    let never = name("never-saved");
    assert_eq!(
        store.set_default_profile(Some(&never)),
        Err(ConfigError::NotFound(never))
    );
    assert_eq!(store.load_settings().unwrap().default_profile, None);

    let team = name("team-claude");
    store
        .save_profile(&team, &model_profile(&["work1", "work2"]))
        .unwrap();
    store
        .set_oauth_enabled(OAuthProvider::Anthropic, true)
        .unwrap();
    store.set_default_profile(Some(&team)).unwrap();
    let settings = store.load_settings().unwrap();
    assert_eq!(settings.default_profile, Some(team));
    assert!(
        settings.is_oauth_enabled(OAuthProvider::Anthropic),
        "setting the default lost another setting"
    );

    store.set_default_profile(None).unwrap();
    let settings = store.load_settings().unwrap();
    assert_eq!(settings.default_profile, None);
    assert!(settings.is_oauth_enabled(OAuthProvider::Anthropic));
}

fn model_profile(buckets: &[&str]) -> Profile {
    Profile::Model {
        provider: ChatProvider::Anthropic,
        model: Some("claude-sonnet-4-5".to_owned()),
        key: None,
        buckets: buckets.iter().map(|b| bucket(b)).collect(),
    }
}

/// Every kind of profile comes back as saved, a save replaces, and the list is sorted.
pub fn profiles_come_back_as_saved_and_list_sorted<C: ConfigStores>(store: &C) {
    let profiles = [
        (
            name("ha-claude"),
            model_profile(&["work1", "work2@x.io", "..."]),
        ),
        (
            name("qwen-key"),
            Profile::Model {
                provider: ChatProvider::Qwen,
                model: None,
                key: Some(Secret::new("sk-profile-key")),
                buckets: Vec::new(),
            },
        ),
        (
            name("balanced"),
            Profile::LoadBalancer {
                policy: LoadBalancePolicy::RoundRobin,
                members: vec![name("qwen-key"), name("ha-claude")],
            },
        ),
        (
            name("x.json"),
            Profile::LoadBalancer {
                policy: LoadBalancePolicy::Failover,
                members: vec![name("balanced")],
            },
        ),
        (name("A"), model_profile(&[])),
    ];
    for (n, p) in &profiles {
        store.save_profile(n, p).unwrap();
    }
    for (n, p) in &profiles {
        assert_eq!(&store.load_profile(n).unwrap(), p, "profile {n}");
    }
    let mut expected: Vec<ProfileName> = profiles.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    assert_eq!(store.list_profiles().unwrap(), expected);

    let replaced = model_profile(&["work3"]);
    store.save_profile(&name("ha-claude"), &replaced).unwrap();
    assert_eq!(store.load_profile(&name("ha-claude")).unwrap(), replaced);
    assert_eq!(store.list_profiles().unwrap().len(), profiles.len());
}

/// Random valid profiles (the domain's `any_named_profile`) come back as saved.
pub fn random_profiles_come_back_as_saved<C: ConfigStores>(store: &C) {
    let mut runner = TestRunner::deterministic();
    let strategy = any_named_profile();
    for _ in 0..32 {
        let (n, profile) = strategy.new_tree(&mut runner).unwrap().current();
        store.save_profile(&n, &profile).unwrap();
        assert_eq!(store.load_profile(&n).unwrap(), profile, "profile {n}");
    }
}

/// A profile that breaks a rule is refused with the rule, and nothing is saved.
pub fn an_invalid_profile_is_refused_and_nothing_is_written<C: ConfigStores>(store: &C) {
    let dup = name("dup");
    assert_eq!(
        store.save_profile(&dup, &model_profile(&["a", "b", "a"])),
        Err(ConfigError::InvalidProfile(
            InvalidProfile::DuplicateBucket(bucket("a"))
        ))
    );
    let me = name("me");
    let itself = Profile::LoadBalancer {
        policy: LoadBalancePolicy::Failover,
        members: vec![me.clone()],
    };
    assert_eq!(
        store.save_profile(&me, &itself),
        Err(ConfigError::InvalidProfile(InvalidProfile::ListsItself(
            me.clone()
        )))
    );
    assert!(
        store.list_profiles().unwrap().is_empty(),
        "a refused profile was written"
    );
    assert_eq!(store.load_profile(&dup), Err(ConfigError::NotFound(dup)));
}

/// A deleted profile no longer loads or lists; deleting it again says there is none; other
/// profiles stay.
pub fn a_deleted_profile_is_gone_and_others_stay<C: ConfigStores>(store: &C) {
    let (a, b) = (name("a"), name("b"));
    store.save_profile(&a, &model_profile(&["x"])).unwrap();
    store.save_profile(&b, &model_profile(&["y"])).unwrap();
    store.delete_profile(&a).unwrap();
    assert_eq!(
        store.load_profile(&a),
        Err(ConfigError::NotFound(a.clone()))
    );
    assert_eq!(store.delete_profile(&a), Err(ConfigError::NotFound(a)));
    assert_eq!(store.list_profiles().unwrap(), std::slice::from_ref(&b));
    assert_eq!(store.load_profile(&b).unwrap(), model_profile(&["y"]));
}

/// A key file's key comes back without surrounding white space; an empty key file is invalid;
/// a missing one is an I/O error naming the path. No error repeats the key.
pub fn key_files_are_trimmed_and_an_empty_or_missing_one_is_refused<C: ConfigStores>(
    store: &C,
    put_key_file: impl Fn(&C, &str) -> String,
) {
    let path = put_key_file(store, "  sk-key-file-secret \n");
    assert_eq!(
        store.read_key_file(&path).unwrap(),
        Secret::new("sk-key-file-secret")
    );

    let empty = put_key_file(store, " \n\t\n");
    match store.read_key_file(&empty) {
        Err(ConfigError::InvalidFile { path, .. }) => assert_eq!(path, empty),
        other => panic!("an empty key file should be invalid, got {other:?}"),
    }

    let missing = format!("{path}.missing");
    match store.read_key_file(&missing) {
        Err(error @ ConfigError::Io { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains(&missing),
                "the error does not name the file: {text}"
            );
            assert!(
                !text.contains("sk-key-file-secret"),
                "the error repeats a key: {text}"
            );
        }
        other => panic!("a missing key file should be an I/O error, got {other:?}"),
    }
}
