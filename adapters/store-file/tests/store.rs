//! The token stores: the contract suite for both, the file store's files, and real child
//! processes that crash mid-save and die holding a lock.
//!
//! The child processes are this test binary run again with `LLXPRT_STORE_TEST_CHILD` set in
//! their environment: the test `processes::child_process` then plays the role named there (and
//! does nothing in a normal run).

// The helpers below are test code too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use llxprt_application::ports::{StoreError, TokenStore};
use llxprt_application::testkit::token_store::{number_of, numbered_token, token_store_contract};
use llxprt_application::testkit::{MemoryTokenStore, StoreOperation};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};
use llxprt_store_file::{FileTokenStore, MAX_TOKEN_FILE_BYTES};

fn bucket(provider: OAuthProvider, name: &str) -> BucketId {
    BucketId::new(provider, BucketName::parse(name).unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Makes a file store's saves fail, as root too (modes do not stop root): the token directory
/// moves aside and a plain file takes its place, so no temporary file can be made in it.
fn break_file_saves(store: &FileTokenStore, broken: bool) {
    let aside = store.dir().with_extension("aside");
    if broken {
        std::fs::rename(store.dir(), &aside).unwrap();
        std::fs::write(store.dir(), "not a directory").unwrap();
    } else {
        std::fs::remove_file(store.dir()).unwrap();
        std::fs::rename(&aside, store.dir()).unwrap();
    }
}

fn break_memory_saves(store: &MemoryTokenStore, broken: bool) {
    if broken {
        store.fail(StoreOperation::Save, MemoryTokenStore::io_error());
    } else {
        store.heal();
    }
}

mod file_store_contract {
    use super::*;

    llxprt_application::token_store_contract_tests!(
        {
            let dir = tempfile::tempdir().unwrap();
            move || FileTokenStore::new(dir.path().join("home").join("oauth"))
        },
        break_saves = break_file_saves
    );

    llxprt_application::token_store_model_tests!({
        let dir = tempfile::tempdir().unwrap();
        let next = std::sync::atomic::AtomicUsize::new(0);
        move || {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            FileTokenStore::new(dir.path().join(n.to_string()).join("oauth"))
        }
    });
}

mod persistence_contracts {
    use llxprt_application::testkit::{MemoryHealthStore, MemoryStatsStore};
    use llxprt_store_file::{FileHealthStore, FileStatsStore};

    mod file_stats {
        use super::*;
        llxprt_application::stats_store_contract_tests!({
            let dir = tempfile::tempdir().unwrap();
            move || FileStatsStore::new(&dir.path().join("home"))
        });
    }

    mod file_health {
        use super::*;
        llxprt_application::health_store_contract_tests!({
            let dir = tempfile::tempdir().unwrap();
            move || FileHealthStore::new(&dir.path().join("home"))
        });
    }

    mod memory_stats {
        use super::*;
        llxprt_application::stats_store_contract_tests!(MemoryStatsStore::new);
    }

    mod memory_health {
        use super::*;
        llxprt_application::health_store_contract_tests!(MemoryHealthStore::new);
    }
}

mod memory_store_contract {
    use super::*;

    llxprt_application::token_store_contract_tests!(
        MemoryTokenStore::new,
        break_saves = break_memory_saves
    );

    llxprt_application::token_store_model_tests!(MemoryTokenStore::new);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_whole_suite_runs_from_one_call() {
        token_store_contract(MemoryTokenStore::new, break_memory_saves).await;
    }
}

mod files {
    use super::*;

    fn store() -> (tempfile::TempDir, FileTokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path().join("home").join("oauth"));
        (dir, store)
    }

    #[tokio::test]
    async fn tokens_live_in_the_files_of_the_spec_readable_by_the_user_alone() {
        let (_dir, store) = store();
        let mut token = Token::new(Secret::new("at-default"), UnixSeconds(1_767_225_600));
        token.refresh_token = Some(Secret::new("rt-default"));
        store
            .save(&BucketId::default_for(OAuthProvider::Gemini), &token)
            .await
            .unwrap();
        store
            .save(&bucket(OAuthProvider::Gemini, "work@x.com"), &token)
            .await
            .unwrap();

        let oauth = store.dir();
        assert_eq!(mode(oauth), 0o700);
        let mut names: Vec<String> = std::fs::read_dir(oauth)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["gemini-work@x.com.json", "gemini.json"]);
        for name in names {
            let path = oauth.join(&name);
            assert_eq!(mode(&path), 0o600, "{name}");
            let value: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(
                value,
                serde_json::json!({
                    "access_token": "at-default",
                    "refresh_token": "rt-default",
                    "expiry": 1_767_225_600,
                    "token_type": "Bearer",
                })
            );
        }
    }

    #[tokio::test]
    async fn a_file_of_llxprt_code_loads_and_keeps_its_extra_fields_on_rewrite() {
        let (_dir, store) = store();
        std::fs::create_dir_all(store.dir()).unwrap();
        let path = store.dir().join("qwen-work.json");
        std::fs::write(
            &path,
            r#"{
  "access_token": "qwen-at",
  "refresh_token": "qwen-rt",
  "expiry": 1767225600.5,
  "scope": null,
  "token_type": "Bearer",
  "resource_url": "portal.qwen.ai",
  "x_written_by": {"client": "llxprt-code", "version": 0.70}
}"#,
        )
        .unwrap();
        let id = bucket(OAuthProvider::Qwen, "work");
        let token = store.load(&id).await.unwrap().unwrap();
        assert_eq!(token.access_token.expose(), "qwen-at");
        assert_eq!(token.expiry, UnixSeconds(1_767_225_600));
        assert_eq!(token.resource_url.as_deref(), Some("portal.qwen.ai"));

        let refreshed = token.merge_refresh(Token::new(Secret::new("qwen-at-2"), UnixSeconds(9)));
        store.save(&id, &refreshed).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"{"client": "llxprt-code", "version": 0.70}"#),
            "{text}"
        );
        assert!(text.contains("\"qwen-at-2\""));
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_written_says_so_before_any_token_is_at_stake() {
        let (_dir, fresh) = store();
        let id = bucket(OAuthProvider::Gemini, "work");
        fresh.check_writable(&id).await.unwrap();
        assert_eq!(
            mode(fresh.dir()),
            0o700,
            "the check makes the directory as a save would"
        );
        assert_eq!(
            std::fs::read_dir(fresh.dir()).unwrap().count(),
            0,
            "and leaves nothing"
        );

        // A file where the directory should be: unwritable even for root.
        let (_blocked_dir, blocked) = store();
        std::fs::create_dir_all(blocked.dir().parent().unwrap()).unwrap();
        std::fs::write(blocked.dir(), "not a directory").unwrap();
        let error = blocked.check_writable(&id).await.unwrap_err().to_string();
        assert!(
            error.contains("oauth") && error.contains("not a directory"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn wider_permissions_are_tightened() {
        let (_dir, store) = store();
        let oauth = store.dir();
        std::fs::create_dir_all(oauth).unwrap();
        std::fs::set_permissions(oauth, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = oauth.join("anthropic.json");
        std::fs::write(&path, r#"{"access_token":"a","expiry":1}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        let loaded = store
            .load(&BucketId::default_for(OAuthProvider::Anthropic))
            .await
            .unwrap();
        assert!(loaded.is_some());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(oauth), 0o700);
    }

    async fn assert_corrupt(store: &FileTokenStore, id: &BucketId, says: &str) -> String {
        let path = store.token_path(id);
        let before = std::fs::read(&path).unwrap();
        let err = store.load(id).await.unwrap_err();
        let message = err.to_string();
        match &err {
            StoreError::Corrupt { path: p, .. } => assert_eq!(p, &path.display().to_string()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(message.contains(says), "{message}");
        assert!(
            message.contains(&format!("/auth {} login {}", id.provider, id.bucket)),
            "{message}"
        );
        assert!(!message.contains("SECRET"), "{message}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "a corrupt file is left as it was"
        );
        message
    }

    #[tokio::test]
    async fn corrupt_files_are_reported_with_their_path_and_left_alone() {
        let (_dir, store) = store();
        std::fs::create_dir_all(store.dir()).unwrap();
        let id = bucket(OAuthProvider::Codex, "work");
        let path = store.token_path(&id);

        let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        std::fs::write(&path, &binary).unwrap();
        assert_corrupt(&store, &id, "binary").await;

        // Valid JSON of the right shape, so only the size check can refuse it.
        let huge = format!(
            r#"{{"access_token":"{}","expiry":1}}"#,
            "a".repeat(10 * 1024 * 1024)
        );
        std::fs::write(&path, huge).unwrap();
        assert_corrupt(&store, &id, "bytes long").await;

        for (text, says) in [
            ("", "not valid JSON"),
            (r#"{"access_token": "sk-SECRET""#, "not valid JSON"),
            (r#""sk-SECRET""#, "not an object"),
            (
                r#"{"refresh_token":"rt-SECRET","expiry":1}"#,
                "`access_token`",
            ),
            (
                r#"{"access_token":"sk-SECRET","expiry":"rt-SECRET"}"#,
                "`expiry`",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_corrupt(&store, &id, says).await;
        }

        // Logging in again is the user's explicit replacement.
        store.save(&id, &numbered_token(7)).await.unwrap();
        assert_eq!(store.load(&id).await.unwrap(), Some(numbered_token(7)));

        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = store.load(&id).await.unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[tokio::test]
    async fn a_large_but_plausible_token_still_loads() {
        let (_dir, store) = store();
        let id = bucket(OAuthProvider::Gemini, "big");
        let mut token = numbered_token(1);
        token.access_token = Secret::new("b".repeat(900 * 1024));
        store.save(&id, &token).await.unwrap();
        assert!(std::fs::metadata(store.token_path(&id)).unwrap().len() < MAX_TOKEN_FILE_BYTES);
        assert_eq!(store.load(&id).await.unwrap(), Some(token));
    }

    #[tokio::test]
    async fn list_ignores_everything_that_is_not_a_token_file_of_the_provider() {
        let (_dir, store) = store();
        let gemini = OAuthProvider::Gemini;
        store
            .save(&bucket(gemini, "work"), &numbered_token(1))
            .await
            .unwrap();
        drop(
            store
                .lock(&bucket(gemini, "work"), std::time::Duration::ZERO)
                .await
                .unwrap(),
        );
        let oauth = store.dir();
        for litter in [
            ".gemini-work.AbC123.tmp",
            "gemini-default.json",
            "gemini-bad name.json",
            "gemini-.json",
            "gemini-...json",
            "gemini-...json.tmp",
            "gemini-..json",
            "geminiwork.json",
            "gemini.json.bak",
            "notes.txt",
            "qwen-x.json",
            "anthropic.json",
        ] {
            std::fs::write(oauth.join(litter), "{}").unwrap();
        }
        std::fs::create_dir(oauth.join("gemini-dir.json")).unwrap();
        let listed: Vec<String> = store
            .list(gemini)
            .await
            .unwrap()
            .iter()
            .map(|b| b.to_string())
            .collect();
        // `gemini-...json` would be the bucket `..`, and `gemini-..json` the bucket `.`.
        assert_eq!(listed, ["work"]);
        assert!(store.list(OAuthProvider::Codex).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn hostile_bucket_names_never_reach_the_file_system() {
        let long = "a".repeat(65);
        for hostile in [
            "..",
            "../x",
            "a/b",
            long.as_str(),
            "",
            "a\0b",
            ".",
            "/etc/passwd",
            "..\\x",
        ] {
            // The store only takes a `BucketId`, and this is the only way to make one's name.
            assert!(
                BucketName::parse(hostile).is_err(),
                "{hostile:?} was accepted"
            );
        }

        let (dir, store) = store();
        for name in ["...", "..a", "a..", "..-..", "@", ".a"] {
            let id = bucket(OAuthProvider::Anthropic, name);
            store.save(&id, &numbered_token(3)).await.unwrap();
            assert!(store.load(&id).await.unwrap().is_some());
            drop(store.lock(&id, std::time::Duration::ZERO).await.unwrap());
            assert!(store.delete(&id).await.unwrap());
        }
        let mut outside = Vec::new();
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            }
            let inside = path.starts_with(store.dir()) || store.dir().starts_with(&path);
            if !inside {
                outside.push(path);
            }
        }
        assert!(
            outside.is_empty(),
            "created outside the oauth dir: {outside:?}"
        );
    }

    #[tokio::test]
    async fn a_busy_lock_names_its_holder_process() {
        let (_dir, store) = store();
        let id = bucket(OAuthProvider::Qwen, "work");
        let _held = store.lock(&id, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(store.lock_path(&id))
                .unwrap()
                .trim(),
            std::process::id().to_string()
        );
        assert_eq!(mode(&store.lock_path(&id)), 0o600);
        assert_eq!(mode(store.lock_path(&id).parent().unwrap()), 0o700);
        match store.lock(&id, std::time::Duration::from_millis(30)).await {
            Err(StoreError::LockTimeout { holder, bucket, .. }) => {
                assert_eq!(holder, format!("held by process {}", std::process::id()));
                assert_eq!(bucket, id);
            }
            Err(other) => panic!("expected a timeout, got {other}"),
            Ok(_) => panic!("the lock was granted twice"),
        }
    }

    #[tokio::test]
    async fn input_output_failures_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("oauth");
        std::fs::write(&not_a_dir, "").unwrap();
        let store = FileTokenStore::new(not_a_dir.clone());
        let err = store
            .save(&bucket(OAuthProvider::Gemini, "x"), &numbered_token(1))
            .await
            .unwrap_err();
        match err {
            StoreError::Io { path, .. } => assert_eq!(path, not_a_dir.display().to_string()),
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}

mod processes {
    use super::*;

    use std::io::{BufRead, BufReader, Read};
    use std::path::PathBuf;
    use std::process::{Child, ChildStdout, Command, Stdio};
    use std::time::{Duration, Instant};

    const ROLE: &str = "LLXPRT_STORE_TEST_CHILD";
    const DIR: &str = "LLXPRT_STORE_TEST_DIR";
    const ARG: &str = "LLXPRT_STORE_TEST_ARG";
    /// However a child is left behind, it exits on its own after this.
    const CHILD_LIFETIME: Duration = Duration::from_secs(60);

    fn crash_bucket() -> BucketId {
        bucket(OAuthProvider::Codex, "crash@test.example")
    }

    fn lock_bucket() -> BucketId {
        bucket(OAuthProvider::Gemini, "locked")
    }

    /// The entry point of the child processes; in a normal test run it does nothing.
    #[tokio::test]
    async fn child_process() {
        let Ok(role) = std::env::var(ROLE) else {
            return;
        };
        let store = FileTokenStore::new(PathBuf::from(std::env::var(DIR).unwrap()));
        let arg = std::env::var(ARG).unwrap_or_default();
        let deadline = Instant::now() + CHILD_LIFETIME;
        match role.as_str() {
            // Saves numbered tokens from `arg` on, saying after each which one is on disk.
            "save-loop" => {
                let mut n: i64 = arg.parse().unwrap();
                while Instant::now() < deadline {
                    store
                        .save(&crash_bucket(), &numbered_token(n))
                        .await
                        .unwrap();
                    println!("saved {n}");
                    n += 1;
                }
            }
            "hold-lock" => {
                let _guard = store
                    .lock(&lock_bucket(), Duration::from_secs(10))
                    .await
                    .unwrap();
                println!("locked");
                tokio::time::sleep_until(deadline.into()).await;
            }
            "try-lock" => match store.lock(&lock_bucket(), Duration::from_millis(200)).await {
                Ok(_) => println!("locked"),
                Err(StoreError::LockTimeout { holder, .. }) => println!("timeout: {holder}"),
                Err(other) => panic!("{other}"),
            },
            other => panic!("unknown child role {other}"),
        }
    }

    fn spawn_child(role: &str, oauth: &Path, arg: &str) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "processes::child_process",
                "--nocapture",
                "--test-threads=1",
                "--quiet",
            ])
            .env(ROLE, role)
            .env(DIR, oauth)
            .env(ARG, arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The next line the child said in its role, skipping the test harness's own lines; `None`
    /// once it has exited.
    fn next_line(out: &mut BufReader<ChildStdout>, prefix: &str) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return Some(rest.to_owned());
            }
        }
    }

    fn stderr_of(child: &mut Child) -> String {
        let mut text = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        text
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_save_killed_at_any_moment_leaves_the_old_or_the_new_token() {
        const KILLS: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let oauth = dir.path().join("oauth");
        let store = FileTokenStore::new(oauth.clone());
        let rt = runtime();
        let id = crash_bucket();
        rt.block_on(store.save(&id, &numbered_token(0))).unwrap();

        let mut on_disk = 0;
        for round in 0..KILLS {
            let mut child = spawn_child("save-loop", &oauth, &(on_disk + 1).to_string());
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let Some(first) = next_line(&mut out, "saved ") else {
                panic!("the child never saved: {}", stderr_of(&mut child));
            };
            std::thread::sleep(Duration::from_millis(rand::random_range(0..=20)));
            child.kill().unwrap();
            child.wait().unwrap();
            let mut last_saved: i64 = first.parse().unwrap();
            while let Some(n) = next_line(&mut out, "saved ") {
                last_saved = n.parse().unwrap();
            }

            let token = rt
                .block_on(store.load(&id))
                .unwrap_or_else(|e| panic!("round {round}: {e}"))
                .expect("the token is never missing");
            let n =
                number_of(&token).unwrap_or_else(|| panic!("round {round}: a torn or mixed token"));
            // The last reported save, or the one in flight whose rename landed before the kill.
            assert!(
                n == last_saved || n == last_saved + 1,
                "round {round}: found token {n} after the child reported {last_saved}"
            );
            let listed = rt.block_on(store.list(id.provider)).unwrap();
            assert_eq!(listed, std::slice::from_ref(&id.bucket), "round {round}");
            on_disk = n;
        }
    }

    #[test]
    fn a_token_kept_in_memory_gives_way_to_the_one_another_process_saves() {
        let dir = tempfile::tempdir().unwrap();
        let oauth = dir.path().join("oauth");
        // Longer than a clock tick, short enough to wait for.
        let settle = Duration::from_millis(50);
        let store = FileTokenStore::new(oauth.clone()).with_settle_time(settle);
        let rt = runtime();
        let id = crash_bucket();
        rt.block_on(store.save(&id, &numbered_token(0))).unwrap();
        std::thread::sleep(settle * 4);
        // Read once and kept: the file has settled.
        for _ in 0..2 {
            let token = rt.block_on(store.load(&id)).unwrap().unwrap();
            assert_eq!(number_of(&token), Some(0));
        }

        let mut child = spawn_child("save-loop", &oauth, "1");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..50 {
            let Some(saved) = next_line(&mut out, "saved ") else {
                panic!("the child stopped saving: {}", stderr_of(&mut child));
            };
            let saved: i64 = saved.parse().unwrap();
            let token = rt.block_on(store.load(&id)).unwrap().unwrap();
            let loaded = number_of(&token).expect("a whole token");
            assert!(
                loaded >= saved,
                "loaded token {loaded} after the child saved {saved}"
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_lock_held_by_a_killed_process_passes_to_the_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let oauth = dir.path().join("oauth");
        let store = std::sync::Arc::new(FileTokenStore::new(oauth.clone()));
        let rt = runtime();
        let id = lock_bucket();

        let mut holder = spawn_child("hold-lock", &oauth, "");
        let mut out = BufReader::new(holder.stdout.take().unwrap());
        if next_line(&mut out, "locked").is_none() {
            panic!("the holder never locked: {}", stderr_of(&mut holder));
        }
        match rt.block_on(store.lock(&id, Duration::from_millis(100))) {
            Err(StoreError::LockTimeout { holder: who, .. }) => {
                assert_eq!(who, format!("held by process {}", holder.id()));
            }
            Err(other) => panic!("expected a timeout, got {other}"),
            Ok(_) => panic!("got a lock another process holds"),
        }

        let waiter = rt.spawn({
            let (store, id) = (std::sync::Arc::clone(&store), id.clone());
            async move { store.lock(&id, Duration::from_secs(10)).await }
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "the waiter got a held lock");
        holder.kill().unwrap();
        holder.wait().unwrap();
        let guard = rt
            .block_on(waiter)
            .unwrap()
            .expect("the waiter gets the lock of a killed holder");

        let try_lock = |expected: &str| {
            let mut child = spawn_child("try-lock", &oauth, "");
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let said = next_line(&mut out, "")
                .into_iter()
                .chain(std::iter::from_fn(|| next_line(&mut out, "")))
                .find(|l| l.starts_with("locked") || l.starts_with("timeout"));
            child.wait().unwrap();
            assert_eq!(said.as_deref(), Some(expected), "{}", stderr_of(&mut child));
        };
        try_lock(&format!("timeout: held by process {}", std::process::id()));
        drop(guard);
        try_lock("locked");
    }
}
