//! The REPL's history file, which never records a line holding a key.

use std::path::{Path, PathBuf};

use llxprt_application::ports::UserPrompt;

use super::input::SharedEditor;

/// Whether `line` may carry a secret, so it must not be kept in the history file: `/key KEY`
/// in any case, and `/set` of a setting whose name speaks of a key, secret or token in any
/// spelling (`auth-key`, `auth_key`, `AUTH-KEY=…`, `providers.gemini.oauth.client_secret`).
/// Keeping out a line that held none costs a re-typed line; keeping one that did leaks a key.
pub(crate) fn holds_secret(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let Some(command) = words.next().map(str::to_ascii_lowercase) else {
        return false;
    };
    if command == "/key" || command.starts_with("/key=") {
        return true;
    }
    if command != "/set" {
        return false;
    }
    let Some(name) = words.next() else {
        return false;
    };
    let name = name.to_ascii_lowercase().replace('_', "-");
    ["key", "secret", "token", "password"]
        .iter()
        .any(|word| name.contains(word))
}

/// A history of a thousand lines is far below this.
const MAX_HISTORY_BYTES: u64 = 64 << 20;

/// The history file of one REPL session. A history that cannot be read or written is reported
/// once and then given up: the REPL works without it.
pub(crate) struct History {
    path: Option<PathBuf>,
}

impl History {
    /// Creates the file's directory (`0700`) if missing and loads earlier sessions' lines. A
    /// history that is a symbolic link, a FIFO, or a file others own or can change is not
    /// used: lines would be written wherever it points, or read from whoever planted it.
    pub(crate) fn open(path: &Path, editor: &SharedEditor, prompt: &dyn UserPrompt) -> Self {
        let shown = |(p, e): llxprt_fs::PathError| format!("{}: {e}", p.display());
        let opened = match path.parent() {
            Some(dir) => llxprt_fs::create_private_dir(dir).map_err(shown),
            None => Ok(()),
        }
        .and_then(|()| {
            llxprt_fs::read_regular(path, llxprt_fs::Links::Refuse, MAX_HISTORY_BYTES)
                .map(drop)
                .map_err(shown)
        })
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
        for spelling in [
            "/set auth_key sk-123",
            "/set AUTH-KEY sk-123",
            "/SET Auth_Key=sk-123",
            "/KEY sk-123",
            "/key=sk-123",
            "/set providers.gemini.oauth.client_secret s",
        ] {
            assert!(holds_secret(spelling), "{spelling}");
        }
        assert!(!holds_secret("/keyfile ~/.keys/anthropic"));
        assert!(!holds_secret("/set model gpt-4.1"));
        assert!(!holds_secret("/auth anthropic login"));
        assert!(!holds_secret("what is a /key?"));
        assert!(!holds_secret(""));
    }
}
