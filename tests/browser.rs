//! A real browser end to end: headless Chromium, launched by llxprt through `BROWSER`, opens the
//! authorize URL, the simulator's consent page redirects it to llxprt's loopback listener,
//! llxprt finishes the sign-in, and Chromium shows (and screenshots) the page it got.
//!
//! Chromium comes from `LLXPRT_TEST_CHROMIUM` (exported by `scripts/setup.d/30-chromium.sh`,
//! which installs Debian's `chromium` when missing), else `chromium` on `PATH`. These tests fail,
//! never skip, when it is absent or cannot start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use llxprt_domain::OAuthProvider;

use crate::support::Lab;

/// Chromium starts, loads three pages and writes a screenshot within this on a loaded machine.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// One headless Chromium, as llxprt will launch it: a wrapper script given as `BROWSER`, which
/// keeps the page's DOM and a screenshot of it in a fresh directory.
struct Chromium {
    dir: tempfile::TempDir,
}

impl Chromium {
    /// The Chromium of this machine, with `extra` flags; fails loudly when there is none.
    fn new(extra: &[&str]) -> Self {
        let binary = chromium_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!(
            "#!/bin/sh\n\
             # Root needs --no-sandbox; without the background-networking flags Chromium calls\n\
             # out to the (closed) network. The URL llxprt opens is the last argument.\n\
             exec '{binary}' --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
             --disable-background-networking --disable-component-update --disable-sync \
             --no-default-browser-check --no-proxy-server --user-data-dir='{d}/profile' \
             --window-size=960,600 --hide-scrollbars --screenshot='{d}/page.png' --dump-dom \
             {extra} \"$1\" > '{d}/page.html' 2> '{d}/chromium.log'\n",
            binary = binary.display(),
            extra = extra.join(" "),
        );
        let path = dir.path().join("chromium-browser");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Chromium { dir }
    }

    /// The `BROWSER` value that launches it.
    fn browser(&self) -> String {
        self.dir
            .path()
            .join("chromium-browser")
            .display()
            .to_string()
    }

    /// What Chromium wrote to its standard error.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default()
    }

    /// The page Chromium ended on and the path of its screenshot, once it has written both.
    async fn shown_page(&self) -> (String, PathBuf) {
        let (html, png) = (
            self.dir.path().join("page.html"),
            self.dir.path().join("page.png"),
        );
        let deadline = Instant::now() + BROWSER_LIMIT;
        loop {
            let dom = std::fs::read_to_string(&html).unwrap_or_default();
            if dom.contains("</html>") && png.exists() {
                return (dom, png);
            }
            assert!(
                Instant::now() < deadline,
                "Chromium wrote no page and screenshot; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn chromium_binary() -> PathBuf {
    let binary = std::env::var_os("LLXPRT_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"));
    let version = Command::new(&binary).arg("--version").output();
    match version {
        Ok(out) if out.status.success() => binary,
        Ok(out) => panic!(
            "Chromium ({}) does not start: {}{}\nRun the tests with scripts/test, which installs it.",
            binary.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "the browser tests need Chromium: {} cannot run ({e}). Run them with scripts/test \
             (scripts/setup.d/30-chromium.sh installs Debian's chromium), or set LLXPRT_TEST_CHROMIUM.",
            binary.display()
        ),
    }
}

/// A PNG image's width and height, from its header.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        path.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Keeps a screenshot where a person can look at it after the run.
fn keep(png: &Path, name: &str) -> PathBuf {
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::copy(png, &kept).unwrap();
    kept
}

/// `/auth P login BUCKET` with Chromium as the browser; returns what Chromium showed.
async fn sign_in_with_chromium(
    lab: &Lab,
    chromium: &Chromium,
    provider: OAuthProvider,
    bucket: &str,
) -> (String, PathBuf, crate::support::Run) {
    let browser = chromium.browser();
    let mut child = lab
        .spawn(&[], &[("BROWSER", browser.as_str()), ("DISPLAY", ":0")])
        .within(BROWSER_LIMIT);
    child
        .send(&format!("/auth {provider} login {bucket}"))
        .await;
    let done = format!("Logged in to {provider}/{bucket}");
    let line = child
        .line_where("the end of the sign-in", |l| {
            l.contains(&done) || l.starts_with("Paste the redirect URL")
        })
        .await;
    assert!(
        line.contains(&done),
        "llxprt found Chromium failed and asked for a paste:\n{}\nChromium's log:\n{}",
        child.printed(),
        chromium.log()
    );
    let (dom, png) = chromium.shown_page().await;
    child.send(&format!("/auth {provider} status")).await;
    child.wait_for(&format!("[ok] {bucket}")).await;
    (dom, png, child.finish().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_to_gemini_and_shows_the_success_page() {
    let lab = Lab::start().await;
    lab.sim.set_login_account(OAuthProvider::Gemini, "work1");
    let chromium = Chromium::new(&[]);
    let (dom, png, done) =
        sign_in_with_chromium(&lab, &chromium, OAuthProvider::Gemini, "work1").await;
    assert_eq!(done.code(), Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(dom.contains("Signed in"), "{dom}");
    assert!(
        dom.contains("gemini/work1"),
        "the page names the bucket: {dom}"
    );
    assert!(dom.contains("close this tab"), "{dom}");
    assert_eq!(png_size(&png), (960, 600));
    let kept = keep(&png, "success-page-gemini.png");
    eprintln!(
        "Chromium's screenshot of the success page: {}",
        kept.display()
    );
    let counted = lab.sim.counters(OAuthProvider::Gemini, "work1");
    assert_eq!(counted.authorize_hits, 1);
    assert_eq!(counted.token_exchanges, 1);
    assert!(lab.home().join("oauth/gemini-work1.json").exists());
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_to_codex_and_shows_the_success_page() {
    let lab = Lab::start().await;
    lab.sim.set_login_account(OAuthProvider::Codex, "team");
    let chromium = Chromium::new(&[]);
    let (dom, png, done) =
        sign_in_with_chromium(&lab, &chromium, OAuthProvider::Codex, "team").await;
    assert_eq!(done.code(), Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        dom.contains("Signed in") && dom.contains("codex/team"),
        "{dom}"
    );
    assert_eq!(png_size(&png), (960, 600));
    keep(&png, "success-page-codex.png");
    let counted = lab.sim.counters(OAuthProvider::Codex, "team");
    assert_eq!(counted.token_exchanges, 1);
    assert!(lab.home().join("oauth/codex-team.json").exists());
    lab.assert_no_secret_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_that_resolves_localhost_to_ipv6_first_still_reaches_the_listener() {
    let lab = Lab::start().await;
    // Every `localhost` this Chromium looks up is ::1, as a browser preferring IPv6 gets it.
    let chromium = Chromium::new(&["--host-resolver-rules='MAP localhost [::1]'"]);
    let (dom, _png, done) =
        sign_in_with_chromium(&lab, &chromium, OAuthProvider::Gemini, "six").await;
    assert_eq!(done.code(), Some(0), "{}\n{}", done.stdout, done.stderr);
    assert!(
        dom.contains("Signed in") && dom.contains("gemini/six"),
        "{dom}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_a_denied_consent_and_what_to_do_next() {
    let lab = Lab::start().await;
    lab.sim.deny_next_consent(OAuthProvider::Gemini);
    let chromium = Chromium::new(&[]);
    let browser = chromium.browser();
    let mut child = lab
        .spawn(&[], &[("BROWSER", browser.as_str()), ("DISPLAY", ":0")])
        .within(BROWSER_LIMIT);
    child.send("/auth gemini login work2").await;
    child.wait_for("The provider refused the sign-in").await;
    let (dom, png) = chromium.shown_page().await;
    let done = child.finish().await;
    assert_eq!(done.code(), Some(1), "{}", done.stdout);
    assert!(
        dom.contains("Sign-in denied") && dom.contains("gemini/work2"),
        "{dom}"
    );
    assert!(dom.contains("/auth gemini login work2"), "{dom}");
    keep(&png, "denied-page-gemini.png");
    assert!(!lab.home().join("oauth/gemini-work2.json").exists());
}
