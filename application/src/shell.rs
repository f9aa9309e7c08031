//! The driving side: what a front end (REPL, line mode, one-shot command) asks of the core.

use async_trait::async_trait;

use crate::ports::UserPrompt;

/// How running one line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOutcome {
    /// The line did what it asked.
    Succeeded,
    /// The line failed; its error was shown. In line mode and with `-p` this makes the exit
    /// status non-zero.
    Failed,
    /// The user asked to leave (`/quit`).
    Quit,
}

/// Names a front end offers for tab completion, as they are now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletionData {
    /// Bucket names per OAuth provider name (`anthropic` → `[default, work1@company.com]`).
    pub buckets: Vec<(String, Vec<String>)>,
    /// Saved profile names.
    pub profiles: Vec<String>,
}

/// Runs lines as typed in the REPL. Output goes to the prompt given with each line.
#[async_trait]
pub trait Shell: Send + Sync {
    /// Runs one line (a slash command or a message), showing its output through `prompt`.
    async fn run_line(&self, line: &str, prompt: &dyn UserPrompt) -> LineOutcome;

    /// The names to complete right now.
    async fn completion_data(&self) -> CompletionData;
}
