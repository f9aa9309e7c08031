//! The user interaction port: everything that tells the user something or asks them.

use async_trait::async_trait;

/// The user could not or would not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// The user cancelled (Ctrl-C) while asked.
    #[error("cancelled")]
    Cancelled,
    /// There is no more input (end of file, or no terminal).
    #[error("no input available to answer: {0}")]
    NoInput(String),
}

/// How services talk to the person at the keyboard. The REPL, the non-terminal line mode and
/// tests each implement it; only its adapters print.
#[async_trait]
pub trait UserPrompt: Send + Sync {
    /// Shows one line of information (a URL to open, a device code, a command's output).
    fn show(&self, line: &str);

    /// Shows one line that reports a failure (`Error: ...`).
    fn show_error(&self, line: &str) {
        self.show(line);
    }

    /// Shows a piece of a reply as it streams in, without a line break.
    fn stream(&self, text: &str) {
        self.show(text);
    }

    /// Shows that something is being waited for (a spinner on a terminal). Called repeatedly
    /// while waiting; `done` clears it.
    fn waiting(&self, what: &str, done: bool);

    /// Shows, where it can be erased again (a spinner on a terminal), that work is under way
    /// that needs nothing from the user, such as a reply on its way; `done` clears it. Elsewhere
    /// it shows nothing, so piped output stays clean.
    fn busy(&self, what: &str, done: bool) {
        let _ = (what, done);
    }

    /// Asks a question and returns the answer with surrounding white space removed.
    ///
    /// # Errors
    /// [`PromptError::Cancelled`] or [`PromptError::NoInput`].
    async fn ask(&self, question: &str) -> Result<String, PromptError>;

    /// Asks for a secret (an API key): as [`UserPrompt::ask`], but a terminal does not echo
    /// the answer, and no front end keeps it in its history.
    ///
    /// # Errors
    /// [`PromptError::Cancelled`] or [`PromptError::NoInput`].
    async fn ask_secret(&self, question: &str) -> Result<String, PromptError> {
        self.ask(question).await
    }
}
