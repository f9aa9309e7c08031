//! The system browser: `$BROWSER` first, then the platform's opener (`webbrowser` crate).

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{Browser, BrowserError};

/// How long a `$BROWSER` command may take to fail before it is taken to have started: a browser
/// that stays open for the whole session must not hold up the sign-in.
const LAUNCH_GRACE: Duration = Duration::from_secs(3);

/// The environment that decides whether and how a browser can be opened, read once at start-up
/// so nothing reads the process environment later (and tests can pass their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserEnv {
    /// `BROWSER`: a command that receives the URL as its last argument.
    pub browser: Option<String>,
    /// `DISPLAY` (X11).
    pub display: Option<String>,
    /// `WAYLAND_DISPLAY`.
    pub wayland_display: Option<String>,
    /// `SSH_CONNECTION`.
    pub ssh_connection: Option<String>,
    /// `SSH_TTY`.
    pub ssh_tty: Option<String>,
}

impl BrowserEnv {
    /// Reads the variables from this process's environment; empty values count as unset.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            browser: var("BROWSER"),
            display: var("DISPLAY"),
            wayland_display: var("WAYLAND_DISPLAY"),
            ssh_connection: var("SSH_CONNECTION"),
            ssh_tty: var("SSH_TTY"),
        }
    }

    fn has_display(&self) -> bool {
        self.display.is_some() || self.wayland_display.is_some()
    }

    fn over_ssh(&self) -> bool {
        self.ssh_connection.is_some() || self.ssh_tty.is_some()
    }
}

/// Opens URLs in the user's browser, or says why it cannot so the flow asks for a paste.
#[derive(Debug, Clone)]
pub struct SystemBrowser {
    env: BrowserEnv,
    nobrowser: bool,
    linux_rules: bool,
}

impl SystemBrowser {
    /// A browser for this platform. `nobrowser` is the `--nobrowser` flag.
    pub fn new(env: BrowserEnv, nobrowser: bool) -> Self {
        Self {
            env,
            nobrowser,
            linux_rules: cfg!(target_os = "linux"),
        }
    }

    /// Why no browser can be opened here, if that is so.
    fn unavailable_because(&self) -> Option<&'static str> {
        if self.nobrowser {
            Some("--nobrowser was given")
        } else if self.linux_rules && !self.env.has_display() {
            Some("there is no display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
        } else if self.env.over_ssh() && !self.env.has_display() {
            Some("this is an SSH session without a display")
        } else {
            None
        }
    }
}

#[async_trait]
impl Browser for SystemBrowser {
    async fn open(&self, url: &str) -> Result<(), BrowserError> {
        if let Some(reason) = self.unavailable_because() {
            return Err(BrowserError::Unavailable(reason.to_owned()));
        }
        match &self.env.browser {
            Some(command) => run_browser_command(command, url).await,
            None => {
                let url = url.to_owned();
                tokio::task::spawn_blocking(move || webbrowser::open(&url))
                    .await
                    .map_err(|_| BrowserError::LaunchFailed("the opener did not run".to_owned()))?
                    .map_err(|e| BrowserError::LaunchFailed(e.to_string()))
            }
        }
    }

    fn unavailable(&self) -> Option<String> {
        self.unavailable_because().map(str::to_owned)
    }
}

/// Runs `$BROWSER` with the URL as its last argument. The command is split on white space (no
/// shell, so no quoting rules and nothing in the URL is interpreted). A command that exits with
/// failure within [`LAUNCH_GRACE`] failed; one still running by then has started a browser.
async fn run_browser_command(command: &str, url: &str) -> Result<(), BrowserError> {
    let mut words = command.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| BrowserError::LaunchFailed("BROWSER is empty".to_owned()))?;
    let mut child = tokio::process::Command::new(program)
        .args(words)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BrowserError::LaunchFailed(format!("could not run `{program}`: {e}")))?;
    match tokio::time::timeout(LAUNCH_GRACE, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(BrowserError::LaunchFailed(format!(
            "`{program}` exited with {status}"
        ))),
        Ok(Err(e)) => Err(BrowserError::LaunchFailed(format!(
            "`{program}` could not be waited for: {e}"
        ))),
        // Still running: a browser that blocks until closed. Tokio reaps it when it exits.
        Err(_) => Ok(()),
    }
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
        }
    }

    fn browser(env: BrowserEnv, nobrowser: bool, linux: bool) -> SystemBrowser {
        SystemBrowser {
            env,
            nobrowser,
            linux_rules: linux,
        }
    }

    #[tokio::test]
    async fn nobrowser_no_display_and_ssh_make_it_unavailable() {
        let cases = [
            (browser(env(true, false, None), true, true), "--nobrowser"),
            (browser(env(false, false, None), false, true), "no display"),
            (browser(env(false, true, None), false, false), "SSH"),
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
        assert_eq!(browser(wayland, false, true).unavailable_because(), None);
        assert_eq!(
            browser(env(false, false, None), false, false).unavailable_because(),
            None
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn browser_command_gets_the_url_as_its_last_argument() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("opened");
        let script = dir.path().join("fake-browser");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s|' \"$@\" > '{}'\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let command = format!("{} --new-window", script.display());
        let url = "http://127.0.0.1:9/x?a=1&b=$(touch pwned)";
        browser(env(true, false, Some(command)), false, true)
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
    async fn a_failing_or_missing_browser_command_is_a_launch_failure() {
        for command in ["false", "/nonexistent/llxprt-browser"] {
            let result = browser(env(true, false, Some(command.into())), false, true)
                .open("http://127.0.0.1:9/")
                .await;
            assert!(
                matches!(result, Err(BrowserError::LaunchFailed(_))),
                "{command}: {result:?}"
            );
        }
    }
}
