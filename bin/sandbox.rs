//! `--sandbox`: the simulated providers, started in this process, and what they change in the
//! wiring (the settings that point at them, the browser that consents, the `/sandbox`
//! commands, the throwaway home). Without the `sandbox` feature, `--sandbox` says so and stops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use llxprt_application::ports::Browser;
use llxprt_application::shell::Shell;

#[cfg(feature = "sandbox")]
pub(crate) use enabled::Sandbox;

#[cfg(not(feature = "sandbox"))]
pub(crate) use disabled::Sandbox;

#[cfg(feature = "sandbox")]
mod enabled {
    use super::*;
    use anyhow::Context as _;
    use llxprt_simulator::sandbox::{settings_overrides, SandboxBrowser};
    use llxprt_simulator::{Simulator, SimulatorHandle};

    /// The running simulator and what the sandbox holds for the session's lifetime.
    pub(crate) struct Sandbox {
        sim: SimulatorHandle,
        browser: Arc<SandboxBrowser>,
        /// The throwaway home, removed at exit; `None` when `LLXPRT_HOME` is set.
        home: Option<tempfile::TempDir>,
    }

    impl Sandbox {
        /// Starts the simulated providers, and a throwaway home unless `LLXPRT_HOME` is set, in
        /// which case that home must be a sandbox's own (see [`claim_home`]).
        pub(crate) async fn start(env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
            if let Some(home) = env.get("LLXPRT_HOME") {
                claim_home(Path::new(home))?;
            }
            let sim = Simulator::start()
                .await
                .context("could not start the simulated providers")?;
            let home = match env.get("LLXPRT_HOME") {
                Some(_) => None,
                None => Some(
                    tempfile::Builder::new()
                        .prefix("llxprt-sandbox-")
                        .tempdir()?,
                ),
            };
            Ok(Self {
                browser: Arc::new(SandboxBrowser::new(sim.clone())),
                sim,
                home,
            })
        }

        /// The throwaway home, when there is one.
        pub(crate) fn home(&self) -> Option<PathBuf> {
            self.home.as_ref().map(|dir| dir.path().to_owned())
        }

        /// The settings that point every provider at the simulator.
        pub(crate) fn settings_overrides(&self) -> Vec<(String, String)> {
            settings_overrides(&self.sim)
        }

        /// The browser that consents on the simulated pages.
        pub(crate) fn browser(&self) -> Arc<dyn Browser> {
            self.browser.clone()
        }

        /// The shell with `/sandbox` commands in front of `shell`, and the line that says where
        /// the simulated providers are.
        pub(crate) fn shell(
            &self,
            shell: Arc<dyn Shell>,
            browser_consents: bool,
            home: &Path,
        ) -> (Arc<dyn Shell>, String) {
            let banner = format!(
                "Sandbox: every provider is simulated at {} (home {}). Type /sandbox for its controls, /help for commands.",
                self.sim.endpoints().root,
                home.display()
            );
            (
                Arc::new(self.browser.shell(shell, browser_consents)),
                banner,
            )
        }
    }
}

/// The file that marks a home as a sandbox's: only such a home, or an empty one, is used by
/// `--sandbox`.
#[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
const SANDBOX_MARK: &str = ".llxprt-sandbox";

/// Makes sure `home` (`LLXPRT_HOME` under `--sandbox`) holds no real sign-ins: no token file,
/// settings or profile, unless an earlier sandbox run marked it as a sandbox's; it is then
/// marked. A real home is refused, because sandbox sign-ins would overwrite its tokens and
/// settings, and a real token in it could be sent to the endpoint it names.
#[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
fn claim_home(home: &Path) -> anyhow::Result<()> {
    if home.join(SANDBOX_MARK).exists() {
        return Ok(());
    }
    let holds_json = |dir: &str| {
        std::fs::read_dir(home.join(dir)).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
    };
    let mut real = Vec::new();
    if holds_json("oauth") {
        real.push("tokens in oauth/");
    }
    if home.join("settings.json").exists() {
        real.push("settings.json");
    }
    if holds_json("profiles") {
        real.push("profiles");
    }
    if !real.is_empty() {
        anyhow::bail!(
            "--sandbox will not use LLXPRT_HOME={}: it holds {} of a real home, which sandbox sign-ins would overwrite; leave LLXPRT_HOME unset for a throwaway home, or point it at an empty directory",
            home.display(),
            real.join(", ")
        );
    }
    llxprt_fs::create_private_dir(home)
        .map_err(|(p, e)| anyhow::anyhow!("cannot use {}: {e}", p.display()))?;
    mark(home)
}

#[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
fn mark(home: &Path) -> anyhow::Result<()> {
    llxprt_fs::write_atomically(
        &home.join(SANDBOX_MARK),
        ".llxprt-sandbox-",
        b"This home belongs to llxprt --sandbox: every token in it was issued by simulated providers.\n",
    )
    .map_err(|(p, e)| anyhow::anyhow!("cannot mark {} as a sandbox home: {e}", p.display()))
}

#[cfg(not(feature = "sandbox"))]
mod disabled {
    use super::*;

    /// Never made: this build has no simulator.
    pub(crate) enum Sandbox {}

    impl Sandbox {
        pub(crate) async fn start(_env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
            anyhow::bail!("this llxprt was built without the sandbox (cargo feature `sandbox`)")
        }

        pub(crate) fn home(&self) -> Option<PathBuf> {
            match *self {}
        }

        pub(crate) fn settings_overrides(&self) -> Vec<(String, String)> {
            match *self {}
        }

        pub(crate) fn browser(&self) -> Arc<dyn Browser> {
            match *self {}
        }

        pub(crate) fn shell(
            &self,
            _shell: Arc<dyn Shell>,
            _browser_consents: bool,
            _home: &Path,
        ) -> (Arc<dyn Shell>, String) {
            match *self {}
        }
    }
}
