//! The terminal front end: the interactive REPL, the non-terminal line mode and one-shot
//! commands, all driving a [`Shell`] and talking to the user through [`TerminalPrompt`].
//!
//! This is the only place in llxprt that prints.

mod completion;
mod history;
mod input;
mod prompt;
mod sanitize;

use std::io::{self, BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, PoisonError, RwLock};

use llxprt_application::ports::UserPrompt;
use llxprt_application::shell::{LineOutcome, Shell};
use rustyline::error::ReadlineError;

pub use completion::complete;
pub use prompt::TerminalPrompt;

use completion::ReplHelper;
use history::History;
use input::{LineSource, SharedEditor};
use prompt::Input;

/// How the program ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Status 0.
    Success,
    /// Status 1: a line failed (line mode, one-shot) or the terminal could not be used.
    Failure,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::FAILURE,
        }
    }
}

/// The line `llxprt WORDS...` runs: the words as one slash command (`auth anthropic status`
/// becomes `/auth anthropic status`; a slash already typed is kept, not doubled).
pub fn slash_command(words: &[String]) -> String {
    let line = words.join(" ");
    if line.starts_with('/') {
        line
    } else {
        format!("/{line}")
    }
}

/// Runs one line (`llxprt -p TEXT`, `llxprt WORDS...`) and exits: status 1 if it failed. A
/// question it asks is read from the terminal, or from the next line of stdin without one.
pub async fn run_one_shot(shell: Arc<dyn Shell>, line: &str) -> Exit {
    let editor = io::stdin()
        .is_terminal()
        .then(|| SharedEditor::new(ReplHelper::new(Arc::default())).ok())
        .flatten();
    let input = match editor {
        Some(editor) => Input::Editor(editor),
        None => Input::Lines(LineSource::new(io::BufReader::new(io::stdin()))),
    };
    let prompt = TerminalPrompt::new(input);
    let outcome = shell.run_line(line, &prompt).await;
    prompt.finish_line();
    match outcome {
        LineOutcome::Succeeded | LineOutcome::Quit => Exit::Success,
        LineOutcome::Failed => Exit::Failure,
    }
}

/// Line mode (stdin is not a terminal): runs every line of `input` as if typed, in order; a
/// question reads the next line. At end of input, or at `/quit`, the status is 0 only if every
/// line succeeded.
pub async fn run_line_mode(shell: Arc<dyn Shell>, input: impl BufRead + Send + 'static) -> Exit {
    let source = LineSource::new(input);
    let prompt = TerminalPrompt::new(Input::Lines(source.clone()));
    run_lines(shell.as_ref(), &source, &prompt).await
}

async fn run_lines(shell: &dyn Shell, source: &LineSource, prompt: &TerminalPrompt) -> Exit {
    let mut exit = Exit::Success;
    loop {
        let line = match source.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return exit,
            Err(e) => {
                prompt.show_error(&format!("Error: cannot read the input: {e}"));
                return Exit::Failure;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let outcome = shell.run_line(&line, prompt).await;
        prompt.finish_line();
        match outcome {
            LineOutcome::Succeeded => {}
            LineOutcome::Failed => exit = Exit::Failure,
            LineOutcome::Quit => return exit,
        }
    }
}

/// The interactive REPL (stdin is a terminal): rustyline with tab completion and the history
/// in `history_file`. Ctrl-C at the prompt drops the typed line; Ctrl-C while a line runs
/// cancels it; Ctrl-D or `/quit` leave with status 0.
pub async fn run_interactive(shell: Arc<dyn Shell>, history_file: &Path) -> Exit {
    let names = Arc::new(RwLock::new(shell.completion_data().await));
    let editor = match SharedEditor::new(ReplHelper::new(Arc::clone(&names))) {
        Ok(editor) => editor,
        Err(e) => {
            TerminalPrompt::output_only()
                .show_error(&format!("Error: cannot use the terminal: {e}"));
            return Exit::Failure;
        }
    };
    let prompt = TerminalPrompt::new(Input::Editor(editor.clone()));
    let mut history = History::open(history_file, &editor, &prompt);
    loop {
        let line = match editor.read_line("> ".to_owned()).await {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Exit::Success,
            Err(e) => {
                prompt.show_error(&format!("Error: cannot read the terminal: {e}"));
                return Exit::Failure;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        history.record(&line, &editor, &prompt);
        let outcome = tokio::select! {
            outcome = shell.run_line(&line, &prompt) => outcome,
            () = interrupted() => {
                prompt.finish_line();
                prompt.show_error("Cancelled.");
                LineOutcome::Failed
            }
        };
        prompt.finish_line();
        if outcome == LineOutcome::Quit {
            return Exit::Success;
        }
        let fresh = shell.completion_data().await;
        *names.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }
}

/// Resolves at Ctrl-C. Where the signal cannot be watched it never resolves, so lines still
/// run to their end instead of being cancelled at once.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use llxprt_application::shell::CompletionData;

    use super::prompt::tests::captured_with;
    use super::*;

    /// Records the lines it runs; `ask` asks a question, `fail` fails, `/quit` quits.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl Shell for Recorder {
        async fn run_line(&self, line: &str, prompt: &dyn UserPrompt) -> LineOutcome {
            self.0.lock().unwrap().push(line.to_owned());
            match line {
                "ask" => match prompt.ask("Paste the authorization code:").await {
                    Ok(answer) => {
                        prompt.show(&format!("got {} characters", answer.len()));
                        LineOutcome::Succeeded
                    }
                    Err(e) => {
                        prompt.show_error(&format!("Error: {e}"));
                        LineOutcome::Failed
                    }
                },
                "fail" => {
                    prompt.show_error("Error: failed");
                    LineOutcome::Failed
                }
                "/quit" => LineOutcome::Quit,
                other => {
                    prompt.show(&format!("ran {other}"));
                    LineOutcome::Succeeded
                }
            }
        }

        async fn completion_data(&self) -> CompletionData {
            CompletionData::default()
        }
    }

    impl Recorder {
        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    async fn line_mode(input: &str) -> (Exit, Vec<String>, String, String) {
        let shell = Recorder::default();
        let source = LineSource::new(io::Cursor::new(input.as_bytes().to_vec()));
        let (prompt, out, err) = captured_with(source.clone(), false);
        let exit = run_lines(&shell, &source, &prompt).await;
        drop(prompt);
        (exit, shell.lines(), out.text(), err.text())
    }

    #[tokio::test]
    async fn runs_every_line_in_order_and_succeeds_when_all_do() {
        let (exit, lines, out, _) = line_mode("one\n\n   \n/two\nthree").await;
        assert_eq!(exit, Exit::Success);
        assert_eq!(lines, vec!["one", "/two", "three"]);
        assert_eq!(out, "ran one\nran /two\nran three\n");
    }

    #[tokio::test]
    async fn a_question_reads_the_next_line_which_is_not_run() {
        let (exit, lines, out, _) = line_mode("ask\nCODE#STATE\nafter\n").await;
        assert_eq!(exit, Exit::Success);
        assert_eq!(lines, vec!["ask", "after"]);
        assert_eq!(
            out,
            "Paste the authorization code:\ngot 10 characters\nran after\n"
        );
    }

    #[tokio::test]
    async fn one_failed_line_fails_the_run_but_the_rest_still_runs() {
        let (exit, lines, _, err) = line_mode("fail\nafter\n").await;
        assert_eq!(exit, Exit::Failure);
        assert_eq!(lines, vec!["fail", "after"]);
        assert_eq!(err, "Error: failed\n");
    }

    #[tokio::test]
    async fn a_question_at_end_of_input_fails_the_line() {
        let (exit, _, _, err) = line_mode("ask\n").await;
        assert_eq!(exit, Exit::Failure);
        assert!(err.contains("no input"), "{err}");
    }

    #[tokio::test]
    async fn quit_stops_early_keeping_the_status_so_far() {
        let (exit, lines, _, _) = line_mode("one\n/quit\nnever\n").await;
        assert_eq!(
            (exit, lines),
            (Exit::Success, vec!["one".into(), "/quit".into()])
        );
        let (exit, lines, _, _) = line_mode("fail\n/quit\nnever\n").await;
        assert_eq!(
            (exit, lines),
            (Exit::Failure, vec!["fail".into(), "/quit".into()])
        );
    }

    #[test]
    fn words_become_one_slash_command() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            slash_command(&words(&["auth", "anthropic", "status"])),
            "/auth anthropic status"
        );
        assert_eq!(slash_command(&words(&["/help"])), "/help");
        assert_eq!(
            slash_command(&words(&["stats", "buckets"])),
            "/stats buckets"
        );
    }
}
