//! The settings store against real files in temporary directories. Expected values are the
//! literal strings of `cli.md` and `providers.md`, the user's contract.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use llxprt_application::ports::{ConfigError, ProfileStore, SettingsStore};
use llxprt_application::settings::SettingError;
use llxprt_domain::{
    BucketName, ChatProvider, InvalidProfile, LoadBalancePolicy, OAuthProvider, Profile,
    ProfileName, Secret,
};
use serde_json::{json, Value};
use tempfile::TempDir;

use super::FileConfigStore;

fn store(home: &Path) -> FileConfigStore {
    FileConfigStore::new(home.to_path_buf(), BTreeMap::new(), Vec::new())
}

fn store_with(home: &Path, env: &[(&str, &str)], sets: &[(&str, &str)]) -> FileConfigStore {
    FileConfigStore::new(
        home.to_path_buf(),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        sets.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn write_settings(home: &Path, value: &Value) {
    fs::create_dir_all(home).unwrap();
    fs::write(home.join("settings.json"), value.to_string()).unwrap();
}

fn read_settings(home: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(home.join("settings.json")).unwrap()).unwrap()
}

fn name(text: &str) -> ProfileName {
    ProfileName::parse(text).unwrap()
}

fn bucket(text: &str) -> BucketName {
    BucketName::parse(text).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn with_no_file_every_value_is_the_real_providers() {
    let home = TempDir::new().unwrap();
    let s = store(&home.path().join("absent")).load_settings().unwrap();
    let p = &s.providers;
    assert_eq!(p.anthropic.base_url, "https://api.anthropic.com");
    assert_eq!(
        p.anthropic.oauth.authorize_url,
        "https://claude.ai/oauth/authorize"
    );
    assert_eq!(
        p.anthropic.oauth.token_url,
        "https://platform.claude.com/v1/oauth/token"
    );
    assert_eq!(
        p.anthropic.oauth.client_id,
        "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
    );
    assert_eq!(
        p.anthropic.oauth.redirect_uri,
        "https://platform.claude.com/oauth/code/callback"
    );
    assert_eq!(
        p.anthropic.oauth.scopes.join(" "),
        "org:create_api_key user:profile user:inference"
    );
    assert_eq!(
        p.qwen.oauth.device_authorization_url,
        "https://chat.qwen.ai/api/v1/oauth2/device/code"
    );
    assert_eq!(
        p.qwen.oauth.token_url,
        "https://chat.qwen.ai/api/v1/oauth2/token"
    );
    assert_eq!(p.qwen.oauth.client_id, "f0304373b74a44d2b584a3fb70ca9e56");
    assert_eq!(
        p.qwen.oauth.scopes.join(" "),
        "openid profile email model.completion"
    );
    assert_eq!(
        p.qwen.base_url,
        "https://dashscope.aliyuncs.com/compatible-mode/v1"
    );
    assert_eq!(
        p.gemini.oauth.authorize_url,
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert_eq!(
        p.gemini.oauth.token_url,
        "https://oauth2.googleapis.com/token"
    );
    assert_eq!(
        p.gemini.oauth.client_id,
        "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
    );
    assert_eq!(
        p.gemini.oauth.client_secret.expose(),
        "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"
    );
    assert_eq!(
        p.gemini.oauth.scopes.join(" "),
        "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"
    );
    assert_eq!(
        p.gemini.base_url,
        "https://generativelanguage.googleapis.com"
    );
    assert_eq!(
        p.gemini.code_assist_base_url,
        "https://cloudcode-pa.googleapis.com"
    );
    assert_eq!(p.codex.oauth.issuer, "https://auth.openai.com");
    assert_eq!(p.codex.oauth.client_id, "app_EMoamEEZ73f0CkXaXp7hrann");
    assert_eq!(p.codex.oauth.callback_port, 1455);
    assert_eq!(
        p.codex.oauth.scopes.join(" "),
        "openid profile email offline_access"
    );
    assert_eq!(p.codex.base_url, "https://chatgpt.com/backend-api/codex");
    assert_eq!(p.openai.base_url, "https://api.openai.com/v1");
    assert!(OAuthProvider::ALL
        .iter()
        .all(|provider| !s.is_oauth_enabled(*provider)));
    assert_eq!(s.default_profile, None);
    assert_eq!(s.auth_key, None);
    assert!(
        !home.path().join("absent").exists(),
        "reading created the home"
    );
}

#[test]
fn the_file_overrides_what_it_names_and_nothing_else() {
    let home = TempDir::new().unwrap();
    write_settings(
        home.path(),
        &json!({
            "oauth_enabled": { "gemini": true, "anthropic": false },
            "default_profile": "team-claude",
            "auth-key": "sk-from-file",
            "theme": "dark",
            "providers": {
                "anthropic": {
                    "base_url": "http://127.0.0.1:4000",
                    "oauth": { "client_id": "sim-client", "scopes": ["a", "b"] }
                },
                "codex": { "oauth": { "callback_port": 1457 } },
                "qwen": { "oauth": { "scopes": "openid profile" } }
            }
        }),
    );
    let s = store(home.path()).load_settings().unwrap();
    assert!(s.is_oauth_enabled(OAuthProvider::Gemini));
    assert!(!s.is_oauth_enabled(OAuthProvider::Anthropic));
    assert!(!s.is_oauth_enabled(OAuthProvider::Qwen));
    assert_eq!(s.default_profile, Some(name("team-claude")));
    assert_eq!(
        s.auth_key.as_ref().map(Secret::expose),
        Some("sk-from-file")
    );
    let p = &s.providers;
    assert_eq!(p.anthropic.base_url, "http://127.0.0.1:4000");
    assert_eq!(p.anthropic.oauth.client_id, "sim-client");
    assert_eq!(p.anthropic.oauth.scopes, ["a", "b"]);
    assert_eq!(
        p.anthropic.oauth.token_url,
        "https://platform.claude.com/v1/oauth/token"
    );
    assert_eq!(p.codex.oauth.callback_port, 1457);
    assert_eq!(p.codex.oauth.issuer, "https://auth.openai.com");
    assert_eq!(p.qwen.oauth.scopes, ["openid", "profile"]);
    assert_eq!(p.openai.base_url, "https://api.openai.com/v1");
}

#[test]
fn the_environment_beats_the_file_and_set_beats_both() {
    let home = TempDir::new().unwrap();
    write_settings(
        home.path(),
        &json!({
            "auth-key": "sk-from-file",
            "oauth_enabled": { "qwen": false },
            "providers": { "anthropic": { "base_url": "http://file" },
                           "gemini": { "base_url": "http://file-gemini" } }
        }),
    );
    let env = [
        ("LLXPRT_PROVIDERS__ANTHROPIC__BASE_URL", "http://env"),
        (
            "LLXPRT_PROVIDERS__GEMINI__CODE_ASSIST_BASE_URL",
            "http://env-ca",
        ),
        ("LLXPRT_PROVIDERS__CODEX__OAUTH__CALLBACK_PORT", "1457"),
        ("LLXPRT_PROVIDERS__GEMINI__OAUTH__SCOPES", "openid email"),
        ("LLXPRT_OAUTH_ENABLED__QWEN", "true"),
        ("LLXPRT_AUTH_KEY", "sk-from-env"),
        ("LLXPRT_HOME", "/somewhere/else"),
        ("PATH", "/usr/bin"),
    ];
    let s = store_with(home.path(), &env, &[]).load_settings().unwrap();
    assert_eq!(s.providers.anthropic.base_url, "http://env");
    assert_eq!(s.providers.gemini.base_url, "http://file-gemini");
    assert_eq!(s.providers.gemini.code_assist_base_url, "http://env-ca");
    assert_eq!(s.providers.codex.oauth.callback_port, 1457);
    assert_eq!(s.providers.gemini.oauth.scopes, ["openid", "email"]);
    assert!(s.is_oauth_enabled(OAuthProvider::Qwen));
    assert_eq!(s.auth_key.as_ref().map(Secret::expose), Some("sk-from-env"));

    let sets = [
        ("providers.anthropic.base_url", "http://set"),
        ("auth-key", "sk-from-set"),
        ("oauth_enabled.qwen", "false"),
    ];
    let s = store_with(home.path(), &env, &sets)
        .load_settings()
        .unwrap();
    assert_eq!(s.providers.anthropic.base_url, "http://set");
    assert_eq!(s.auth_key.as_ref().map(Secret::expose), Some("sk-from-set"));
    assert!(!s.is_oauth_enabled(OAuthProvider::Qwen));
    assert_eq!(s.providers.gemini.code_assist_base_url, "http://env-ca");
}

#[test]
fn an_unknown_set_name_is_refused_with_the_valid_ones() {
    let home = TempDir::new().unwrap();
    let err = store_with(home.path(), &[], &[("providers.anthropic.baseurl", "x")])
        .load_settings()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ConfigError::InvalidOverride(SettingError::Unknown { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("base_url"), "{err}");
}

#[test]
fn enable_and_disable_persist_and_keep_unknown_keys() {
    let home = TempDir::new().unwrap();
    write_settings(
        home.path(),
        &json!({
            "theme": "dark",
            "oauth_enabled": { "qwen": true },
            "providers": { "anthropic": { "base_url": "http://x", "custom": [1, 2] } }
        }),
    );
    let s = store(home.path());
    s.set_oauth_enabled(OAuthProvider::Gemini, true).unwrap();
    assert!(s
        .load_settings()
        .unwrap()
        .is_oauth_enabled(OAuthProvider::Gemini));
    assert!(s
        .load_settings()
        .unwrap()
        .is_oauth_enabled(OAuthProvider::Qwen));
    s.set_oauth_enabled(OAuthProvider::Gemini, false).unwrap();
    let loaded = s.load_settings().unwrap();
    assert!(!loaded.is_oauth_enabled(OAuthProvider::Gemini));
    assert_eq!(loaded.providers.anthropic.base_url, "http://x");

    let file = read_settings(home.path());
    assert_eq!(file["theme"], "dark");
    assert_eq!(file["providers"]["anthropic"]["custom"], json!([1, 2]));
    assert_eq!(
        file["oauth_enabled"],
        json!({ "qwen": true, "gemini": false })
    );
    let leftovers: Vec<_> = fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f != "settings.json" && f != "settings.json.lock")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn enabling_creates_the_home_and_a_private_file() {
    let tmp = TempDir::new().unwrap();
    let home = tmp.path().join("new").join("home");
    store(&home)
        .set_oauth_enabled(OAuthProvider::Codex, true)
        .unwrap();
    assert_eq!(
        read_settings(&home),
        json!({ "oauth_enabled": { "codex": true } })
    );
    assert!(store(&home)
        .load_settings()
        .unwrap()
        .is_oauth_enabled(OAuthProvider::Codex));
    #[cfg(unix)]
    assert_eq!(mode(&home.join("settings.json")), 0o600);
}

#[test]
fn concurrent_changes_to_different_providers_all_survive() {
    let home = TempDir::new().unwrap();
    std::thread::scope(|scope| {
        for provider in OAuthProvider::ALL {
            let home = home.path();
            scope.spawn(move || {
                for _ in 0..20 {
                    store(home).set_oauth_enabled(provider, true).unwrap();
                }
            });
        }
    });
    let s = store(home.path()).load_settings().unwrap();
    for provider in OAuthProvider::ALL {
        assert!(s.is_oauth_enabled(provider), "{provider} was lost");
    }
}

#[test]
fn invalid_json_is_reported_against_the_file_and_left_alone() {
    let home = TempDir::new().unwrap();
    let path = home.path().join("settings.json");
    let broken = "{ \"oauth_enabled\": { \"gemini\": true, }";
    fs::write(&path, broken).unwrap();
    let s = store(home.path());
    let err = s.load_settings().unwrap_err();
    assert!(matches!(err, ConfigError::InvalidFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("line 1"), "{err}");
    let err = s
        .set_oauth_enabled(OAuthProvider::Gemini, false)
        .unwrap_err();
    assert!(matches!(err, ConfigError::InvalidFile { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&path).unwrap(), broken);

    fs::write(&path, "[1, 2]").unwrap();
    let err = s.load_settings().unwrap_err();
    assert!(err.to_string().contains("settings.json"), "{err}");
}

#[test]
fn a_value_of_the_wrong_type_names_the_file_but_not_the_value() {
    let home = TempDir::new().unwrap();
    write_settings(
        home.path(),
        &json!({ "oauth_enabled": { "gemini": "sk-ant-leaked-key" } }),
    );
    let err = store(home.path()).load_settings().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::InvalidFile { .. }), "{err:?}");
    assert!(text.contains("settings.json"), "{text}");
    assert!(text.contains("expected a boolean"), "{text}");
    assert!(!text.contains("sk-ant-leaked-key"), "{text}");

    let home = TempDir::new().unwrap();
    let env = [("LLXPRT_OAUTH_ENABLED__GEMINI", "sk-ant-leaked-key")];
    let err = store_with(home.path(), &env, &[])
        .load_settings()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ConfigError::InvalidEnvironment { .. }),
        "{err:?}"
    );
    assert!(text.contains("oauth_enabled.gemini"), "{text}");
    assert!(!text.contains("sk-ant-leaked-key"), "{text}");
}

#[test]
fn an_unknown_provider_is_an_error_naming_where_it_was_found() {
    let home = TempDir::new().unwrap();
    write_settings(home.path(), &json!({ "oauth_enabled": { "claude": true } }));
    let err = store(home.path()).load_settings().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: unknown provider 'claude' in oauth_enabled; valid providers are: anthropic, gemini, qwen, codex",
            home.path().join("settings.json").display()
        )
    );

    write_settings(
        home.path(),
        &json!({ "providers": { "openia": { "base_url": "x" } } }),
    );
    let err = store(home.path()).load_settings().unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownProvider { given, .. } if given == "openia"),
        "{err:?}"
    );
    assert!(err.to_string().contains("settings.json"), "{err}");
    assert!(err.to_string().contains("openai"), "{err}");

    let home = TempDir::new().unwrap();
    let env = [("LLXPRT_PROVIDERS__CLAUDE__BASE_URL", "http://x")];
    let err = store_with(home.path(), &env, &[])
        .load_settings()
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "environment variable LLXPRT_PROVIDERS__CLAUDE__BASE_URL: unknown provider 'claude'"
        ),
        "{err}"
    );
}

#[test]
fn a_default_profile_is_recorded_only_when_it_exists() {
    let home = TempDir::new().unwrap();
    write_settings(home.path(), &json!({ "theme": "dark" }));
    let s = store(home.path());
    assert_eq!(
        s.set_default_profile(Some(&name("team"))),
        Err(ConfigError::NotFound(name("team")))
    );
    let profile = Profile::Model {
        provider: ChatProvider::Gemini,
        model: None,
        key: None,
        buckets: vec![],
    };
    s.save_profile(&name("team"), &profile).unwrap();
    s.set_default_profile(Some(&name("team"))).unwrap();
    assert_eq!(
        s.load_settings().unwrap().default_profile,
        Some(name("team"))
    );
    s.set_default_profile(None).unwrap();
    assert_eq!(s.load_settings().unwrap().default_profile, None);
    assert_eq!(read_settings(home.path()), json!({ "theme": "dark" }));
}

#[test]
fn both_kinds_of_profile_round_trip_through_private_files() {
    let home = TempDir::new().unwrap();
    let s = store(home.path());
    let model = Profile::Model {
        provider: ChatProvider::Anthropic,
        model: Some("claude-sonnet-4-5".into()),
        key: Some(Secret::new("sk-ant-profile-key")),
        buckets: vec![bucket("work2@company.com"), bucket("work1@company.com")],
    };
    let balancer = Profile::LoadBalancer {
        policy: LoadBalancePolicy::RoundRobin,
        members: vec![name("claude-team"), name("gemini-team")],
    };
    s.save_profile(&name("claude-team"), &model).unwrap();
    s.save_profile(&name("both"), &balancer).unwrap();
    assert_eq!(s.load_profile(&name("claude-team")).unwrap(), model);
    assert_eq!(s.load_profile(&name("both")).unwrap(), balancer);

    let path = home.path().join("profiles").join("claude-team.json");
    let file: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        file,
        json!({
            "type": "model",
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "auth-key": "sk-ant-profile-key",
            "buckets": ["work2@company.com", "work1@company.com"]
        })
    );
    let file: Value = serde_json::from_str(
        &fs::read_to_string(home.path().join("profiles").join("both.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        file,
        json!({ "type": "loadbalancer", "policy": "roundrobin",
                "profiles": ["claude-team", "gemini-team"] })
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&home.path().join("profiles")), 0o700);
    }

    let replaced = Profile::Model {
        provider: ChatProvider::OpenAi,
        model: None,
        key: None,
        buckets: vec![],
    };
    s.save_profile(&name("claude-team"), &replaced).unwrap();
    assert_eq!(s.load_profile(&name("claude-team")).unwrap(), replaced);
    let file: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        file,
        json!({ "type": "model", "provider": "openai", "buckets": [] })
    );
}

#[test]
fn profiles_are_listed_sorted_and_deleted() {
    let home = TempDir::new().unwrap();
    let s = store(home.path());
    assert_eq!(s.list_profiles().unwrap(), vec![]);
    let profile = Profile::Model {
        provider: ChatProvider::Qwen,
        model: None,
        key: None,
        buckets: vec![],
    };
    for n in ["zeta", "Alpha", "mid.1"] {
        s.save_profile(&name(n), &profile).unwrap();
    }
    let dir = home.path().join("profiles");
    fs::write(dir.join("notes.txt"), "not a profile").unwrap();
    fs::write(dir.join("bad name.json"), "{}").unwrap();
    fs::write(dir.join(".tmpAbc123"), "{}").unwrap();
    assert_eq!(
        s.list_profiles().unwrap(),
        vec![name("Alpha"), name("mid.1"), name("zeta")]
    );
    s.delete_profile(&name("mid.1")).unwrap();
    assert_eq!(
        s.list_profiles().unwrap(),
        vec![name("Alpha"), name("zeta")]
    );
    assert_eq!(
        s.delete_profile(&name("mid.1")),
        Err(ConfigError::NotFound(name("mid.1")))
    );
    assert_eq!(
        s.load_profile(&name("mid.1")),
        Err(ConfigError::NotFound(name("mid.1")))
    );
    assert!(dir.join("notes.txt").exists());
}

#[test]
fn hostile_profile_names_never_reach_the_file_system() {
    for hostile in ["../settings", "a/b", "..", ".", "", "a\\b", "x\0y"] {
        assert!(ProfileName::parse(hostile).is_err(), "{hostile:?} accepted");
    }
}

#[test]
fn a_profile_that_breaks_a_rule_is_not_saved() {
    let home = TempDir::new().unwrap();
    let s = store(home.path());
    let circular = Profile::LoadBalancer {
        policy: LoadBalancePolicy::Failover,
        members: vec![name("a"), name("lb")],
    };
    assert_eq!(
        s.save_profile(&name("lb"), &circular),
        Err(ConfigError::InvalidProfile(InvalidProfile::ListsItself(
            name("lb")
        )))
    );
    assert_eq!(s.list_profiles().unwrap(), vec![]);
}

#[test]
fn a_broken_profile_file_is_reported_against_the_file() {
    let home = TempDir::new().unwrap();
    let dir = home.path().join("profiles");
    fs::create_dir_all(&dir).unwrap();
    let s = store(home.path());
    let cases = [
        ("syntax", "{\"type\": \"model\",", "EOF"),
        ("kind", r#"{"type": "team"}"#, "unknown variant"),
        (
            "policy",
            r#"{"type": "loadbalancer", "policy": "random", "profiles": ["a"]}"#,
            "valid policies are: failover, roundrobin",
        ),
        (
            "empty",
            r#"{"type": "loadbalancer", "policy": "failover", "profiles": []}"#,
            "at least one member",
        ),
        (
            "bucket",
            r#"{"type": "model", "provider": "gemini", "buckets": ["../x"]}"#,
            "buckets:",
        ),
        (
            "keytype",
            r#"{"type": "model", "provider": "gemini", "buckets": "sk-ant-in-a-string"}"#,
            "invalid type",
        ),
    ];
    for (profile, text, expected) in cases {
        let path = dir.join(format!("{profile}.json"));
        fs::write(&path, text).unwrap();
        let err = s.load_profile(&name(profile)).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ConfigError::InvalidFile { .. }), "{err:?}");
        assert!(
            message.starts_with(&format!("{} is invalid: ", path.display())),
            "{message}"
        );
        assert!(message.contains(expected), "{profile}: {message}");
        assert!(!message.contains("sk-ant"), "{message}");
    }

    fs::write(
        dir.join("claude.json"),
        r#"{"type": "model", "provider": "claude"}"#,
    )
    .unwrap();
    let err = s.load_profile(&name("claude")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: unknown provider 'claude' in provider; valid providers are: anthropic, gemini, qwen, openai",
            dir.join("claude.json").display()
        )
    );
}

#[test]
fn the_idle_limit_of_a_reply_comes_from_the_file_the_environment_or_set() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    assert_eq!(
        store(home).load_settings().unwrap().idle_timeout(),
        std::time::Duration::from_secs(120)
    );
    write_settings(home, &json!({ "idle_timeout_secs": 30 }));
    assert_eq!(
        store(home).load_settings().unwrap().idle_timeout_secs,
        Some(30)
    );
    let env = store_with(home, &[("LLXPRT_IDLE_TIMEOUT_SECS", "7")], &[]);
    assert_eq!(env.load_settings().unwrap().idle_timeout_secs, Some(7));
    let set = store_with(home, &[], &[("idle_timeout_secs", "2")]);
    assert_eq!(set.load_settings().unwrap().idle_timeout_secs, Some(2));
    for bad in ["0", "soon", ""] {
        let set = store_with(home, &[], &[("idle_timeout_secs", bad)]);
        assert!(
            matches!(
                set.load_settings(),
                Err(ConfigError::InvalidOverride(SettingError::BadValue { .. }))
            ),
            "{bad:?}"
        );
    }
    write_settings(home, &json!({ "idle_timeout_secs": 0 }));
    assert!(matches!(
        store(home).load_settings(),
        Err(ConfigError::InvalidFile { .. })
    ));
}

#[test]
fn the_switch_threshold_comes_from_the_file_the_environment_or_set_and_defaults_to_100() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    assert_eq!(
        store(home).load_settings().unwrap().switch_at_percent(),
        100
    );
    write_settings(home, &json!({ "failover": { "switch_at_percent": 90 } }));
    assert_eq!(store(home).load_settings().unwrap().switch_at_percent(), 90);
    let env = store_with(home, &[("LLXPRT_FAILOVER__SWITCH_AT_PERCENT", "80")], &[]);
    assert_eq!(env.load_settings().unwrap().switch_at_percent(), 80);
    let set = store_with(home, &[], &[("failover.switch_at_percent", "75%")]);
    assert_eq!(set.load_settings().unwrap().switch_at_percent(), 75);
    for bad in ["0", "101", "most", ""] {
        let set = store_with(home, &[], &[("failover.switch_at_percent", bad)]);
        assert!(
            matches!(
                set.load_settings(),
                Err(ConfigError::InvalidOverride(SettingError::BadValue { .. }))
            ),
            "{bad:?}"
        );
    }
    write_settings(home, &json!({ "failover": { "switch_at_percent": 250 } }));
    let error = store(home).load_settings().unwrap_err();
    assert!(
        error.to_string().contains("failover.switch_at_percent"),
        "{error}"
    );
}

/// The configuration contract of `llxprt_application::testkit::config_store`, against the
/// files and against the memory double.
mod contract {
    use super::*;
    use llxprt_application::testkit::MemoryConfigStore;

    fn put_key_file(store: &FileConfigStore, contents: &str) -> String {
        let path = store.home().join(format!("key-{}", contents.len()));
        fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    mod files {
        use super::*;

        llxprt_application::config_store_contract_tests!(
            {
                let dir = TempDir::new().unwrap();
                move || {
                    fs::create_dir_all(dir.path().join("home")).unwrap();
                    store(&dir.path().join("home"))
                }
            },
            put_key_file = put_key_file
        );
    }

    mod memory {
        use super::*;

        llxprt_application::config_store_contract_tests!(
            MemoryConfigStore::new,
            put_key_file = |store: &MemoryConfigStore, contents: &str| {
                let path = format!("/keys/key-{}", contents.len());
                store.put_key_file(&path, contents);
                path
            }
        );
    }
}
