//! Wiring: builds the shell the front end drives, from the command line, the environment and
//! the settings, through the one factory ([`llxprt::compose`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use llxprt::compose::{compose, BrowserChoice, Composition};
use llxprt_application::ports::UserPrompt;
use llxprt_application::services::{ChatService, TokenService};
use llxprt_application::session::{Session, SessionOptions};
use llxprt_application::shell::Shell;
use llxprt_domain::{ProfileName, Secret};
use llxprt_terminal::TerminalPrompt;

use crate::cli::Cli;
use crate::sandbox::Sandbox;

/// What the front end needs, and what must live as long as it runs.
pub(crate) struct Wired {
    /// The shell every front end runs lines through.
    pub(crate) shell: Arc<dyn Shell>,
    /// `$LLXPRT_HOME/history`.
    pub(crate) history: PathBuf,
    /// Sending; its statistics must be flushed before the process exits.
    pub(crate) chat: Arc<ChatService>,
    /// Tokens; a refresh's save must end before the process exits.
    pub(crate) tokens: Arc<TokenService>,
    /// The sandbox's simulated providers and throwaway home, stopped and removed at exit.
    _sandbox: Option<Sandbox>,
}

/// Builds everything from the command line.
pub(crate) async fn wire(cli: &Cli) -> anyhow::Result<Wired> {
    let env = process_environment();
    let sandbox = match cli.sandbox {
        true => Some(Sandbox::start(&env).await?),
        false => None,
    };
    let home = match (
        sandbox.as_ref().and_then(Sandbox::home),
        env.get("LLXPRT_HOME"),
    ) {
        (Some(temp), _) => temp,
        (None, Some(home)) => PathBuf::from(home),
        (None, None) => env
            .get("HOME")
            .map(|dir| PathBuf::from(dir).join(".llxprt"))
            .context("cannot find the home directory; set LLXPRT_HOME")?,
    };

    let mut overrides = sandbox
        .as_ref()
        .map(Sandbox::settings_overrides)
        .unwrap_or_default();
    let mut key_setting = None;
    for setting in &cli.settings {
        if setting.name.replace('_', "-") == "auth-key" {
            key_setting = Some(Secret::new(setting.value.clone()));
        } else {
            overrides.push((setting.name.clone(), setting.value.clone()));
        }
    }
    let browser = match &sandbox {
        Some(sandbox) if !cli.nobrowser => BrowserChoice::Given(sandbox.browser()),
        _ => BrowserChoice::System {
            nobrowser: cli.nobrowser,
        },
    };
    let services = compose(Composition {
        home: home.clone(),
        env,
        overrides,
        browser,
        loopback: cli.sandbox,
        callback_timeout: None,
    })?;
    for warning in &services.warnings {
        TerminalPrompt::output_only().show_error(&format!("Warning: {warning}"));
    }
    let key = match (&cli.key, &cli.keyfile) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(path)) => Some(
            services
                .key_files
                .read_key_file(&path.to_string_lossy())
                .context("--keyfile")?,
        ),
        (None, None) => key_setting,
    };
    let chat = services.chat.clone();
    let tokens = services.tokens.clone();
    let session = Session::new(
        services.session_services(),
        SessionOptions::new(cli.provider, cli.model.clone(), key),
    );
    let profile = cli
        .profile
        .as_deref()
        .map(ProfileName::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--profile: {e}"))?;
    let asked_for = profile.is_some();
    if let Err(error) = session.start(profile) {
        // A profile named on the command line is what the run is about: without it, stop. A
        // broken default profile only warns, so the commands that repair it still run.
        if asked_for {
            anyhow::bail!(error);
        }
        TerminalPrompt::output_only().show_error(&format!("Error: {error}"));
    }
    let mut shell: Arc<dyn Shell> = Arc::new(session);
    if let Some(sandbox) = &sandbox {
        let (sandboxed, banner) = sandbox.shell(shell, !cli.nobrowser, &home);
        // A one-shot run's output is only its answer, ready for a pipe.
        let one_shot = cli.prompt.is_some() || !cli.words.is_empty();
        if !one_shot {
            TerminalPrompt::output_only().show(&banner);
        }
        shell = sandboxed;
    }
    Ok(Wired {
        shell,
        history: home.join("history"),
        chat,
        tokens,
        _sandbox: sandbox,
    })
}

/// The environment as text; variables that are not valid Unicode are skipped (no provider
/// setting or key can be one).
fn process_environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
