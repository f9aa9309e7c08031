//! Wiring: builds the shell the front end drives from the command line.
//!
//! PLACEHOLDER: until the services are wired, `build_shell` returns a stand-in shell that
//! knows `/help`, `/quit` and `/auth` and refuses everything else. The integrator replaces
//! this file; the front end in `llxprt_adapters::repl` stays as it is.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use llxprt_application::commands::{self, Command, COMMANDS};
use llxprt_application::ports::UserPrompt;
use llxprt_application::shell::{CompletionData, LineOutcome, Shell};
use llxprt_domain::OAuthProvider;

use crate::cli::Cli;

/// The shell every front end (REPL, line mode, one-shot) runs lines through.
pub(crate) fn build_shell(_cli: &Cli) -> anyhow::Result<Arc<dyn Shell>> {
    Ok(Arc::new(PlaceholderShell))
}

/// `$LLXPRT_HOME/history` (`~/.llxprt/history` by default).
pub(crate) fn history_file(_cli: &Cli) -> anyhow::Result<PathBuf> {
    let home = match std::env::var_os("LLXPRT_HOME") {
        Some(home) => PathBuf::from(home),
        None => std::env::var_os("HOME")
            .or_else(|| std::env::var_os("USERPROFILE"))
            .map(|dir| PathBuf::from(dir).join(".llxprt"))
            .context("cannot find the home directory; set LLXPRT_HOME")?,
    };
    Ok(home.join("history"))
}

/// PLACEHOLDER shell: answers `/help`, `/quit` and `/auth` (no provider signed in) and fails
/// every other line with one `Error: ...` line.
struct PlaceholderShell;

#[async_trait]
impl Shell for PlaceholderShell {
    async fn run_line(&self, line: &str, prompt: &dyn UserPrompt) -> LineOutcome {
        match commands::parse(line) {
            Ok(Command::Nothing) => LineOutcome::Succeeded,
            Ok(Command::Quit) => LineOutcome::Quit,
            Ok(Command::Help) => {
                prompt.show(&format!("Commands: {}", COMMANDS.join(", ")));
                LineOutcome::Succeeded
            }
            Ok(Command::AuthOverview) => {
                for provider in OAuthProvider::ALL {
                    prompt.show(&format!("✗ {}: none (disabled)", provider.as_str()));
                }
                LineOutcome::Succeeded
            }
            Ok(_) => {
                prompt.show_error("Error: this build cannot run that yet; try /help or /auth");
                LineOutcome::Failed
            }
            Err(e) => {
                prompt.show_error(&format!("Error: {e}"));
                LineOutcome::Failed
            }
        }
    }

    async fn completion_data(&self) -> CompletionData {
        CompletionData {
            buckets: OAuthProvider::ALL
                .iter()
                .map(|p| (p.as_str().to_owned(), vec!["default".to_owned()]))
                .collect(),
            profiles: Vec::new(),
        }
    }
}
