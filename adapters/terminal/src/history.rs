//! The REPL's history file, which never records a line holding a key.

use std::path::{Path, PathBuf};

use llxprt_application::ports::UserPrompt;

use super::input::SharedEditor;

/// Whether `line` carries a secret (`/key KEY`, `/set auth-key KEY`), so it must not be kept
/// in the history file.
pub(crate) fn holds_secret(line: &str) -> bool {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("/key") => true,
        Some("/set") => words
            .next()
            .is_some_and(|name| name.starts_with("auth-key")),
        _ => false,
    }
}

/// The history file of one REPL session. A history that cannot be read or written is reported
/// once and then given up: the REPL works without it.
pub(crate) struct History {
    path: Option<PathBuf>,
}

impl History {
    /// Creates the file's directory if missing and loads earlier sessions' lines.
    pub(crate) fn open(path: &Path, editor: &SharedEditor, prompt: &dyn UserPrompt) -> Self {
        let opened = match path.parent() {
            Some(dir) => std::fs::create_dir_all(dir).map_err(|e| e.to_string()),
            None => Ok(()),
        }
        .and_then(|()| editor.load_history(path).map_err(|e| e.to_string()));
        let mut history = Self {
            path: Some(path.to_owned()),
        };
        if let Err(e) = opened {
            history.give_up(&e, prompt);
        }
        history
    }

    /// Keeps `line` unless it holds a secret.
    pub(crate) fn record(&mut self, line: &str, editor: &SharedEditor, prompt: &dyn UserPrompt) {
        if holds_secret(line) {
            return;
        }
        let Some(path) = &self.path else { return };
        if let Err(e) = editor.record(line, path) {
            self.give_up(&e.to_string(), prompt);
        }
    }

    fn give_up(&mut self, reason: &str, prompt: &dyn UserPrompt) {
        if let Some(path) = self.path.take() {
            prompt.show_error(&format!(
                "Warning: history is not kept in {}: {reason}",
                path.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_keys_are_secret() {
        assert!(holds_secret("/key sk-ant-123"));
        assert!(holds_secret("  /key   sk-ant-123"));
        assert!(holds_secret("/key"));
        assert!(holds_secret("/set auth-key sk-123"));
        assert!(holds_secret("/set auth-key=sk-123"));
        assert!(!holds_secret("/keyfile ~/.keys/anthropic"));
        assert!(!holds_secret("/set model gpt-4.1"));
        assert!(!holds_secret("/auth anthropic login"));
        assert!(!holds_secret("what is a /key?"));
        assert!(!holds_secret(""));
    }
}
