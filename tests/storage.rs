//! Where tokens are kept (cli.md "Storage", `/storage`, `/storage migrate`), through the built
//! binary: the keyring tests use the Secret Service `scripts/setup.d/30-keyring.sh` starts and
//! pass its bus address to each child explicitly; they fail, saying why, without it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use llxprt_application::ports::TokenStore;
use llxprt_domain::{BucketId, BucketName, OAuthProvider, Secret, Token, UnixSeconds};
use llxprt_seal::KeyFile;
use llxprt_store_encrypted::EncryptedTokenStore;
use llxprt_store_file::FileTokenStore;
use llxprt_store_keyring::{Keyring, KeyringTokenStore};

use crate::support::{llxprt, run_command, Run};

/// The Secret Service's address, or a failed test that says how to get one.
fn bus() -> String {
    match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        Ok(address) if !address.is_empty() => address,
        _ => panic!(
            "DBUS_SESSION_BUS_ADDRESS is not set: these tests need the Secret Service that \
             scripts/setup.d/30-keyring.sh starts; run them with `scripts/test`"
        ),
    }
}

/// `llxprt --sandbox --set storage.backend=BACKEND` with `stdin`, on the bus `bus`.
fn storage_run(home: &Path, backend: &str, bus: &str, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut command = llxprt(home);
    command
        .args(["--sandbox", "--set", &format!("storage.backend={backend}")])
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .envs(env.iter().copied());
    run_command(command, stdin)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn bucket(provider: OAuthProvider, name: &str) -> BucketId {
    BucketId::new(provider, BucketName::parse(name).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_and_encrypted_keep_no_token_in_plain_text_in_the_home() {
    let bus = bus();
    for backend in ["keyring", "encrypted"] {
        let home = tempfile::tempdir().unwrap();
        let done = storage_run(
            home.path(),
            backend,
            &bus,
            &[],
            "/auth anthropic login\n/auth anthropic login work@example.com\n/storage\n",
        );
        assert_eq!(
            done.code(),
            Some(0),
            "{backend}: {}\n{}",
            done.stdout,
            done.stderr
        );
        let shown = done
            .stdout
            .lines()
            .find(|l| l.starts_with("Tokens are kept in"));
        assert!(
            shown.is_some_and(|l| l.starts_with(&format!("Tokens are kept in {backend}"))),
            "{backend}: {}",
            done.stdout
        );
        assert!(
            done.stdout.lines().any(|l| l == "2 buckets"),
            "{}",
            done.stdout
        );
        let store: Box<dyn TokenStore> = if backend == "keyring" {
            Box::new(KeyringTokenStore::new(home.path()))
        } else {
            let (key, _) = Keyring::for_home(home.path()).storage_key().await.unwrap();
            Box::new(EncryptedTokenStore::new(home.path().join("oauth"), key))
        };
        let mut secrets = Vec::new();
        for name in ["default", "work@example.com"] {
            let token = store
                .load(&bucket(OAuthProvider::Anthropic, name))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{backend} holds no token for {name}"));
            secrets.push(token.access_token.expose().to_owned());
            secrets.extend(token.refresh_token.map(|t| t.expose().to_owned()));
        }
        for file in files_under(home.path()) {
            let bytes = std::fs::read(&file).unwrap();
            for secret in &secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{backend}: {} holds a token in plain text",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn a_missing_keyring_is_an_error_that_says_so_and_nothing_falls_back_to_files() {
    let home = tempfile::tempdir().unwrap();
    let nowhere = format!("unix:path={}", home.path().join("no-bus").display());
    let done = storage_run(
        home.path(),
        "keyring",
        &nowhere,
        &[],
        "/auth anthropic login\n",
    );
    let errors: Vec<&str> = done
        .lines()
        .into_iter()
        .filter(|l| l.contains("Error"))
        .collect();
    assert!(
        errors
            .iter()
            .any(|l| l.contains("keyring") && l.contains("none answers")),
        "{}\n{}",
        done.stdout,
        done.stderr
    );
    assert!(
        !errors.iter().any(|l| l.contains("not logged in")),
        "{errors:?}"
    );
    assert!(
        !done.stdout.contains("Paste the authorization code"),
        "the sign-in started although its tokens had nowhere to go"
    );
    let oauth = home.path().join("oauth");
    let tokens: Vec<PathBuf> = if oauth.exists() {
        files_under(&oauth)
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json" || e == "enc"))
            .collect()
    } else {
        Vec::new()
    };
    assert!(tokens.is_empty(), "fell back to files: {tokens:?}");

    // `auto` without a keyring says so and uses a key file.
    let done = storage_run(home.path(), "auto", &nowhere, &[], "/storage\n");
    let line = done
        .stdout
        .lines()
        .find(|l| l.starts_with("Tokens are kept in"))
        .unwrap_or("");
    assert!(
        line.starts_with("Tokens are kept in encrypted (auto: no keyring answered")
            && line.contains("storage.key"),
        "{}",
        done.stdout
    );
}

fn numbered(n: usize) -> Token {
    let mut token = Token::new(
        Secret::new(format!("at-migrate-{n}")),
        UnixSeconds(1_900_000_000 + n as i64),
    );
    token.refresh_token = Some(Secret::new(format!("rt-migrate-{n}")));
    token
}

fn many_buckets(count: usize) -> Vec<BucketId> {
    (0..count)
        .map(|n| bucket(OAuthProvider::ALL[n % 4], &format!("b{n}@example.com")))
        .collect()
}

/// Saves `buckets` in the home of `store`, a home that the sandbox runs of these tests may use:
/// it is marked as a sandbox's, as an earlier sandbox run would have marked it (the sandbox
/// refuses a real home that holds tokens).
async fn seed(store: &FileTokenStore, buckets: &[BucketId]) {
    let home = store.dir().parent().unwrap();
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join(".llxprt-sandbox"), "").unwrap();
    for (n, b) in buckets.iter().enumerate() {
        store.save(b, &numbered(n)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_every_bucket_there_and_back_and_sets_the_backend() {
    let bus = bus();
    let home = tempfile::tempdir().unwrap();
    let buckets = many_buckets(6);
    let file = FileTokenStore::new(home.path().join("oauth"));
    seed(&file, &buckets).await;
    for (from, to) in [
        ("file", "encrypted"),
        ("encrypted", "keyring"),
        ("keyring", "file"),
    ] {
        let done = storage_run(
            home.path(),
            from,
            &bus,
            &[],
            &format!("/storage migrate {to}\n"),
        );
        assert!(
            done.stdout.contains(&format!("✓ Moved 6 buckets to {to}")),
            "{from} → {to}: {}\n{}",
            done.stdout,
            done.stderr
        );
        let settings = std::fs::read_to_string(home.path().join("settings.json")).unwrap();
        assert!(
            settings.contains(&format!("\"backend\": \"{to}\"")),
            "{settings}"
        );
        // Without --set, the next run uses what the migration chose.
        let mut command = llxprt(home.path());
        command
            .arg("--sandbox")
            .env("DBUS_SESSION_BUS_ADDRESS", &bus);
        let next = run_command(command, "/storage\n");
        assert!(
            next.stdout.contains(&format!("Tokens are kept in {to}")),
            "{}",
            next.stdout
        );
        assert!(
            next.stdout.lines().any(|l| l == "6 buckets"),
            "{}",
            next.stdout
        );
    }
    for (n, b) in buckets.iter().enumerate() {
        assert_eq!(file.load(b).await.unwrap(), Some(numbered(n)), "{b}");
    }
    assert!(KeyringTokenStore::new(home.path())
        .list(OAuthProvider::Gemini)
        .await
        .unwrap()
        .is_empty());
}

/// A migration killed at random moments never loses a token, and a second run finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_at_any_moment_loses_no_token_and_a_second_run_finishes() {
    const RUNS: usize = 50;
    const BUCKETS: usize = 24;
    let buckets = many_buckets(BUCKETS);
    let key_env = |home: &Path| home.join("team.key").display().to_string();
    let start = |home: &Path| {
        let mut command = llxprt(home);
        command
            .args(["--sandbox", "--set", "storage.backend=file"])
            .env("LLXPRT_STORAGE_KEY_FILE", key_env(home))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"/storage migrate encrypted\n").unwrap();
        drop(stdin);
        child
    };
    // How long a whole migration takes here, to spread the kills over it.
    let calibration = tempfile::tempdir().unwrap();
    seed(
        &FileTokenStore::new(calibration.path().join("oauth")),
        &buckets,
    )
    .await;
    let began = Instant::now();
    assert!(start(calibration.path()).wait().unwrap().success());
    let whole = began.elapsed();

    let mut killed_midway = 0;
    for run in 0..RUNS {
        let home = tempfile::tempdir().unwrap();
        let file = FileTokenStore::new(home.path().join("oauth"));
        seed(&file, &buckets).await;
        let mut child = start(home.path());
        let delay = whole.mul_f64(rand::random::<f64>() * 1.2);
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();

        let sealed = || {
            KeyFile::new(key_env(home.path()))
                .load()
                .unwrap()
                .map(|key| EncryptedTokenStore::new(home.path().join("oauth"), key))
        };
        let mut in_target = 0;
        for (n, b) in buckets.iter().enumerate() {
            let plain = file.load(b).await.unwrap();
            let copy = match sealed() {
                Some(store) => store.load(b).await.unwrap(),
                None => None,
            };
            in_target += usize::from(plain.is_none());
            assert!(
                plain == Some(numbered(n)) || copy == Some(numbered(n)),
                "run {run} (killed after {delay:?}): {b} is in neither store"
            );
        }
        if status.signal().is_some() && in_target > 0 && in_target < BUCKETS {
            killed_midway += 1;
        }

        assert!(
            start(home.path()).wait().unwrap().success(),
            "run {run}: the second migration failed"
        );
        let store = sealed().expect("the key file exists after a migration");
        for (n, b) in buckets.iter().enumerate() {
            assert_eq!(
                file.load(b).await.unwrap(),
                None,
                "run {run}: {b} left behind"
            );
            assert_eq!(
                store.load(b).await.unwrap(),
                Some(numbered(n)),
                "run {run}: {b}"
            );
        }
    }
    // Not a timing limit: the kills must have hit migrations under way, or nothing was tested.
    assert!(
        killed_midway > 0,
        "no kill landed in the middle of a migration"
    );
}
