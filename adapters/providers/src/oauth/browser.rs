//! The system browser, by each platform's conventions: `$BROWSER` first (a `:`-separated list of
//! commands, each possibly holding `%s`), then WSL's `wslview` or `cmd.exe /c start`, macOS's
//! `open`, the freedesktop `xdg-open` (then `x-www-browser`) elsewhere on Unix, or the
//! `webbrowser` crate's opener (hardened) on Windows. Every command is run and watched: one that
//! exits with failure at once has failed and the next is tried. No display, an SSH session or a
//! launch that fails make the flow fall back to pasting.
//!
//! Only an absolute `https` address, or `http` on loopback, is ever handed to a browser: the
//! address may come from a provider (a device endpoint's verification URL), and a file path or
//! an argument-looking string must not reach a command line.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{Browser, BrowserError};
use url::{Host, Url};

/// How long a browser command may take to fail before it is taken to have started: a browser
/// that stays open for the whole session must not hold up the sign-in, and one that exits
/// non-zero at once has failed.
const LAUNCH_GRACE: Duration = Duration::from_secs(3);

/// The environment that decides whether and how a browser can be opened, read once at start-up
/// so nothing reads the process environment later (and tests can pass their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserEnv {
    /// `BROWSER`: commands separated by `:`, tried in order; `%s` in a command is replaced by
    /// the URL, otherwise the URL is its last argument.
    pub browser: Option<String>,
    /// `DISPLAY` (X11).
    pub display: Option<String>,
    /// `WAYLAND_DISPLAY`.
    pub wayland_display: Option<String>,
    /// `SSH_CONNECTION`.
    pub ssh_connection: Option<String>,
    /// `SSH_TTY`.
    pub ssh_tty: Option<String>,
    /// Running under the Windows Subsystem for Linux (`WSL_DISTRO_NAME`, `WSL_INTEROP`, or a
    /// Microsoft kernel), where the Windows browser opens without an X display.
    pub wsl: bool,
}

impl BrowserEnv {
    /// Reads the variables from this process's environment; empty values count as unset.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let wsl = cfg!(target_os = "linux")
            && (var("WSL_DISTRO_NAME").is_some()
                || var("WSL_INTEROP").is_some()
                || std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .is_ok_and(|release| release.to_ascii_lowercase().contains("microsoft")));
        Self {
            browser: var("BROWSER"),
            display: var("DISPLAY"),
            wayland_display: var("WAYLAND_DISPLAY"),
            ssh_connection: var("SSH_CONNECTION"),
            ssh_tty: var("SSH_TTY"),
            wsl,
        }
    }

    fn has_display(&self) -> bool {
        self.display.is_some() || self.wayland_display.is_some()
    }

    fn over_ssh(&self) -> bool {
        self.ssh_connection.is_some() || self.ssh_tty.is_some()
    }
}

/// Which conventions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    /// Linux and the BSDs: a browser needs a display; `xdg-open`, then `x-www-browser` (run
    /// and watched here: `webbrowser` starts them in the background and cannot tell that one
    /// failed at once).
    Unix,
    /// Linux under WSL: the Windows browser.
    Wsl,
    /// macOS: `open`.
    MacOs,
    /// Windows and anything else: the `webbrowser` crate's opener.
    Other,
}

impl Platform {
    fn of(env: &BrowserEnv) -> Self {
        if cfg!(target_os = "macos") {
            Self::MacOs
        } else if env.wsl {
            Self::Wsl
        } else if cfg!(unix) {
            Self::Unix
        } else {
            Self::Other
        }
    }
}

/// Opens URLs in the user's browser, or says why it cannot so the flow asks for a paste.
#[derive(Debug, Clone)]
pub struct SystemBrowser {
    env: BrowserEnv,
    nobrowser: bool,
    platform: Platform,
}

impl SystemBrowser {
    /// A browser for this platform. `nobrowser` is the `--nobrowser` flag.
    pub fn new(env: BrowserEnv, nobrowser: bool) -> Self {
        let platform = Platform::of(&env);
        Self {
            env,
            nobrowser,
            platform,
        }
    }

    /// Why no browser can be opened here, if that is so.
    fn unavailable_because(&self) -> Option<&'static str> {
        let display = self.env.has_display();
        if self.nobrowser {
            Some("--nobrowser was given")
        } else if self.env.over_ssh() && !display {
            Some("this is an SSH session without a display")
        } else if self.platform == Platform::Unix && !display {
            Some("there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
        } else {
            None
        }
    }

    /// The commands to try in order, each as its argument vector; `None` means the
    /// `webbrowser` crate's opener.
    fn commands(&self, url: &Url) -> Vec<Option<Vec<String>>> {
        let mut commands: Vec<Option<Vec<String>>> = self
            .env
            .browser
            .as_deref()
            .map(|list| browser_commands(list, url.as_str()))
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect();
        match self.platform {
            Platform::MacOs => commands.push(Some(vec!["open".into(), url.to_string()])),
            Platform::Wsl => {
                commands.push(Some(vec!["wslview".into(), url.to_string()]));
                commands.push(Some(cmd_start(url)));
            }
            Platform::Unix => {
                commands.push(Some(vec!["xdg-open".into(), url.to_string()]));
                commands.push(Some(vec!["x-www-browser".into(), url.to_string()]));
            }
            Platform::Other => commands.push(None),
        }
        commands
    }
}

#[async_trait]
impl Browser for SystemBrowser {
    async fn open(&self, url: &str) -> Result<(), BrowserError> {
        let url = openable(url)?;
        if let Some(reason) = self.unavailable_because() {
            return Err(BrowserError::Unavailable(reason.to_owned()));
        }
        let mut failures = Vec::new();
        for command in self.commands(&url) {
            let launched = match command {
                Some(argv) => run(&argv).await,
                None => platform_opener(&url).await,
            };
            match launched {
                Ok(()) => return Ok(()),
                Err(why) => {
                    tracing::debug!(%why, "a browser command failed; trying the next");
                    failures.push(why);
                }
            }
        }
        Err(BrowserError::LaunchFailed(failures.join("; ")))
    }

    fn unavailable(&self) -> Option<String> {
        self.unavailable_because().map(str::to_owned)
    }
}

/// The URL, when it is one a sign-in may hand to a browser: absolute `https`, or `http` on a
/// loopback host (the simulator, a local gateway), with no user name or password in it.
fn openable(text: &str) -> Result<Url, BrowserError> {
    let refuse = |why: &str| Err(BrowserError::UnsafeUrl(why.to_owned()));
    let Ok(url) = Url::parse(text) else {
        return refuse("it is not an absolute URL");
    };
    if text.trim() != text || text.chars().any(char::is_control) {
        return refuse("it holds white space or control characters");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("it carries a user name or password");
    }
    let loopback = match url.host() {
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        "http" => refuse("it is plain http to a host that is not this machine"),
        _ => refuse("only https (or http on this machine) is opened"),
    }
}

/// `BROWSER`'s commands: split on `:`, each split on white space (no shell, so nothing in the
/// URL is interpreted); `%s` replaced by the URL, `%%` by `%`, and the URL appended to a
/// command that holds no `%s`.
fn browser_commands(list: &str, url: &str) -> Vec<Vec<String>> {
    list.split(':')
        .filter_map(|command| {
            let mut has_url = false;
            let mut argv: Vec<String> = command
                .split_whitespace()
                .map(|word| {
                    let (expanded, had) = expand(word, url);
                    has_url |= had;
                    expanded
                })
                .collect();
            if argv.is_empty() {
                return None;
            }
            if !has_url {
                argv.push(url.to_owned());
            }
            Some(argv)
        })
        .collect()
}

/// One word of a `BROWSER` command with `%s` and `%%` expanded; whether it held `%s`.
fn expand(word: &str, url: &str) -> (String, bool) {
    let mut out = String::with_capacity(word.len());
    let mut had = false;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => {
                out.push_str(url);
                had = true;
            }
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    (out, had)
}

/// `cmd.exe /c start "" URL` for WSL without `wslview`. `start` takes a first quoted argument as
/// the window title, hence the empty one; cmd.exe reads `&`, `|`, `<`, `>`, `^`, `(` and `)` in
/// the rest of the line as its own syntax, so each is escaped with `^` (a URL's query has `&`s).
fn cmd_start(url: &Url) -> Vec<String> {
    let mut escaped = String::with_capacity(url.as_str().len() + 8);
    for c in url.as_str().chars() {
        if matches!(c, '&' | '|' | '<' | '>' | '^' | '(' | ')') {
            escaped.push('^');
        }
        escaped.push(c);
    }
    vec![
        "cmd.exe".into(),
        "/c".into(),
        "start".into(),
        "\"\"".into(),
        escaped,
    ]
}

/// Runs one browser command. One that exits with failure within [`LAUNCH_GRACE`] failed; one
/// still running by then has started a browser (tokio reaps it when it exits).
async fn run(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("an empty browser command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not run `{program}`: {e}"))?;
    match tokio::time::timeout(LAUNCH_GRACE, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("`{program}` exited with {status}")),
        Ok(Err(e)) => Err(format!("`{program}` could not be waited for: {e}")),
        Err(_) => Ok(()),
    }
}

/// The platform's own opener where no command is known (Windows' shell), refusing anything but
/// http(s) itself too (`webbrowser`'s `hardened` feature). It looks at `BROWSER` again on its
/// own, which can only repeat a command that already failed.
async fn platform_opener(url: &Url) -> Result<(), String> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let options = webbrowser::BrowserOptions::new()
            .with_suppress_output(true)
            .clone();
        webbrowser::open_browser_with_options(webbrowser::Browser::Default, &url, &options)
    })
    .await
    .map_err(|_| "the opener did not run".to_owned())?
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(display: bool, ssh: bool, browser: Option<String>) -> BrowserEnv {
        BrowserEnv {
            browser,
            display: display.then(|| ":0".to_owned()),
            wayland_display: None,
            ssh_connection: ssh.then(|| "10.0.0.1 5000 10.0.0.2 22".to_owned()),
            ssh_tty: None,
            wsl: false,
        }
    }

    fn browser(env: BrowserEnv, nobrowser: bool, platform: Platform) -> SystemBrowser {
        SystemBrowser {
            env,
            nobrowser,
            platform,
        }
    }

    #[tokio::test]
    async fn nobrowser_no_display_and_ssh_make_it_unavailable() {
        let cases = [
            (
                browser(env(true, false, None), true, Platform::Unix),
                "--nobrowser",
            ),
            (
                browser(env(false, false, None), false, Platform::Unix),
                "no display",
            ),
            (
                browser(env(false, true, None), false, Platform::MacOs),
                "SSH",
            ),
            (browser(env(false, true, None), false, Platform::Wsl), "SSH"),
        ];
        for (b, why) in cases {
            match b.open("http://127.0.0.1:1/").await {
                Err(BrowserError::Unavailable(reason)) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
        let wayland = BrowserEnv {
            wayland_display: Some("wayland-0".into()),
            ..env(false, true, None)
        };
        assert_eq!(
            browser(wayland, false, Platform::Unix).unavailable_because(),
            None
        );
        for desktop in [Platform::MacOs, Platform::Wsl, Platform::Other] {
            assert_eq!(
                browser(env(false, false, None), false, desktop).unavailable_because(),
                None,
                "{desktop:?} opens a browser without an X display"
            );
        }
    }

    #[test]
    fn browser_is_a_list_of_commands_with_the_url_at_percent_s_or_last() {
        let url = "https://example.com/a?b=1&c=%20";
        assert_eq!(
            browser_commands("firefox --new-tab:chromium --app=%s --x:  :w3m", url),
            vec![
                vec!["firefox".to_owned(), "--new-tab".into(), url.into()],
                vec!["chromium".to_owned(), format!("--app={url}"), "--x".into()],
                vec!["w3m".to_owned(), url.into()],
            ]
        );
        assert_eq!(
            browser_commands("open -a Safari %s --note=100%%", url),
            vec![vec![
                "open".to_owned(),
                "-a".into(),
                "Safari".into(),
                url.into(),
                "--note=100%".into()
            ]]
        );
        assert!(browser_commands(" : ", url).is_empty());
    }

    #[test]
    fn each_platform_has_its_opener_after_browser() {
        let url = Url::parse("https://auth.example/authorize?a=1&b=(2)").unwrap();
        let mac = browser(
            env(false, false, Some("lynx".into())),
            false,
            Platform::MacOs,
        );
        assert_eq!(
            mac.commands(&url),
            vec![
                Some(vec!["lynx".to_owned(), url.to_string()]),
                Some(vec!["open".to_owned(), url.to_string()]),
            ]
        );
        let wsl = browser(env(false, false, None), false, Platform::Wsl).commands(&url);
        assert_eq!(wsl[0], Some(vec!["wslview".to_owned(), url.to_string()]));
        assert_eq!(
            wsl[1],
            Some(vec![
                "cmd.exe".to_owned(),
                "/c".into(),
                "start".into(),
                "\"\"".into(),
                "https://auth.example/authorize?a=1^&b=^(2^)".into(),
            ])
        );
        let linux = browser(env(true, false, None), false, Platform::Unix).commands(&url);
        assert_eq!(linux[0], Some(vec!["xdg-open".to_owned(), url.to_string()]));
        let windows = browser(env(false, false, None), false, Platform::Other);
        assert_eq!(windows.commands(&url), vec![None]);
    }

    #[test]
    fn only_https_or_loopback_http_is_opened() {
        for fine in [
            "https://auth.openai.com/oauth/authorize?x=1",
            "http://127.0.0.1:8080/cb",
            "http://localhost:1455/auth/callback",
            "http://[::1]:9/x",
        ] {
            assert!(openable(fine).is_ok(), "{fine}");
        }
        for refused in [
            "--help",
            "-a Calculator",
            "/etc/passwd",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "http://evil.example/phish",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            " https://example.com/",
            "https://example.com/\n--x",
            "",
        ] {
            assert!(
                matches!(openable(refused), Err(BrowserError::UnsafeUrl(_))),
                "{refused:?}"
            );
        }
    }

    #[cfg(unix)]
    fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn browser_command_gets_the_url_and_nothing_in_it_is_interpreted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("opened");
        let fake = script(
            dir.path(),
            "fake-browser",
            &format!("printf '%s|' \"$@\" > '{}'", out.display()),
        );
        let url = "http://127.0.0.1:9/x?a=1&b=$(touch%20pwned)";
        let command = format!("{} --new-window", fake.display());
        browser(env(true, false, Some(command)), false, Platform::Unix)
            .open(url)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("--new-window|{url}|")
        );
        assert!(!dir.path().join("pwned").exists());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_browser_that_fails_at_once_gives_way_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("opened");
        let failing = script(dir.path(), "broken", "exit 3");
        let working = script(
            dir.path(),
            "works",
            &format!("printf '%s' \"$1\" > '{}'", out.display()),
        );
        let list = format!(
            "/nonexistent/llxprt-browser:{}:{} --url=%s",
            failing.display(),
            working.display()
        );
        let url = "https://example.com/ok";
        browser(env(true, false, Some(list)), false, Platform::MacOs)
            .open(url)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("--url={url}")
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn when_every_command_fails_the_launch_failed() {
        let mut env = env(
            true,
            false,
            Some("false:/nonexistent/llxprt-browser".into()),
        );
        env.wsl = true;
        // Under "WSL" here the openers are wslview and cmd.exe, which this machine lacks.
        let result = browser(env, false, Platform::Wsl)
            .open("http://127.0.0.1:9/")
            .await;
        let Err(BrowserError::LaunchFailed(why)) = result else {
            panic!("{result:?}")
        };
        assert!(why.contains("`false` exited"), "{why}");
        assert!(why.contains("llxprt-browser"), "{why}");
    }

    #[tokio::test]
    async fn an_unsafe_address_launches_nothing_even_with_a_browser() {
        let result = browser(env(true, false, Some("true".into())), false, Platform::Unix)
            .open("file:///etc/passwd")
            .await;
        assert!(
            matches!(result, Err(BrowserError::UnsafeUrl(_))),
            "{result:?}"
        );
    }
}
