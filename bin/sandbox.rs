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
        /// Starts the simulated providers, and a throwaway home unless `LLXPRT_HOME` is set.
        pub(crate) async fn start(env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
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
