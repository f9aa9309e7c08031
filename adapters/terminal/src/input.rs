//! Where typed lines come from: the rustyline editor on a terminal, or the lines of a reader.
//!
//! Both are shared: the loop reads the next command through the same source that a question
//! (the Anthropic code) reads its answer from, so an answer is always the very next line.

use std::io::{self, BufRead};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustyline::config::{Config, Configurer};
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{ColorMode, CompletionType, Editor};

use super::completion::ReplHelper;

/// The rustyline editor, shared by the REPL loop and the prompt's questions.
///
/// Reading blocks, so it happens on tokio's blocking pool; the mutex makes a question and the
/// next prompt take turns.
#[derive(Clone)]
pub(crate) struct SharedEditor(Arc<Mutex<Editor<ReplHelper, FileHistory>>>);

impl SharedEditor {
    /// An editor that completes with `helper` and records no history by itself.
    pub(crate) fn new(helper: ReplHelper) -> Result<Self, ReadlineError> {
        let config = Config::builder()
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            .max_history_size(1000)?
            .build();
        let mut editor = Editor::with_config(config)?;
        editor.set_helper(Some(helper));
        Ok(Self(Arc::new(Mutex::new(editor))))
    }

    /// Shows `prompt` and reads one line.
    pub(crate) async fn read_line(&self, prompt: String) -> Result<String, ReadlineError> {
        let editor = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || lock(&editor).readline(&prompt))
            .await
            .unwrap_or_else(|join| Err(ReadlineError::Io(io::Error::other(join))))
    }

    /// Shows `prompt` and reads one line drawn as blanks: a secret, which never shows on the
    /// screen and, like every line, is kept in the history only by [`SharedEditor::record`].
    pub(crate) async fn read_secret(&self, prompt: String) -> Result<String, ReadlineError> {
        let editor = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut editor = lock(&editor);
            let colours = editor.config_mut().color_mode();
            // The blanks are drawn as "highlighting", which needs colours on.
            editor.set_color_mode(ColorMode::Forced);
            set_masking(&mut editor, true);
            let line = editor.readline(&prompt);
            set_masking(&mut editor, false);
            editor.set_color_mode(colours);
            line
        })
        .await
        .unwrap_or_else(|join| Err(ReadlineError::Io(io::Error::other(join))))
    }

    /// Loads the history file, if there is one yet.
    pub(crate) fn load_history(&self, path: &Path) -> Result<(), ReadlineError> {
        if !path.exists() {
            return Ok(());
        }
        lock(&self.0).load_history(path)
    }

    /// Adds `line` to the history and appends it to the file at once, so a crash or a second
    /// REPL loses nothing.
    pub(crate) fn record(&self, line: &str, path: &Path) -> Result<(), ReadlineError> {
        let mut editor = lock(&self.0);
        editor.add_history_entry(line)?;
        editor.append_history(path)
    }
}

fn set_masking(editor: &mut Editor<ReplHelper, FileHistory>, masking: bool) {
    if let Some(helper) = editor.helper_mut() {
        helper.masking = masking;
    }
}

/// Lines of a reader (stdin when it is not a terminal), shared by the line-mode loop and the
/// prompt's questions.
#[derive(Clone)]
pub(crate) struct LineSource(Arc<Mutex<Box<dyn BufRead + Send>>>);

impl LineSource {
    pub(crate) fn new(reader: impl BufRead + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(reader))))
    }

    /// The next line without its line ending, or `None` at end of input. Bytes that are not
    /// UTF-8 are replaced rather than refused, so no input stops the program.
    pub(crate) async fn next_line(&self) -> io::Result<Option<String>> {
        let reader = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            if lock(&reader).read_until(b'\n', &mut bytes)? == 0 {
                return Ok(None);
            }
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
    }
}

/// A reader or editor whose previous user panicked is still usable: the panic left at worst a
/// half-read line behind, and refusing all further input would be worse.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_come_in_order_without_endings_and_survive_bad_bytes() {
        let source = LineSource::new(io::Cursor::new(b"one\r\ntwo\n\xff\xfe\nlast".to_vec()));
        assert_eq!(source.next_line().await.unwrap().as_deref(), Some("one"));
        assert_eq!(source.next_line().await.unwrap().as_deref(), Some("two"));
        assert_eq!(
            source.next_line().await.unwrap().as_deref(),
            Some("\u{fffd}\u{fffd}")
        );
        assert_eq!(source.next_line().await.unwrap().as_deref(), Some("last"));
        assert_eq!(source.next_line().await.unwrap(), None);
        assert_eq!(source.next_line().await.unwrap(), None);
    }
}
