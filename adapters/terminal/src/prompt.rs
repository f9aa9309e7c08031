//! [`TerminalPrompt`]: the `UserPrompt` port on stdout, stderr and the typed input.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use async_trait::async_trait;
use llxprt_application::ports::{PromptError, UserPrompt};
use rustyline::error::ReadlineError;

use super::input::{LineSource, SharedEditor};
use super::sanitize::for_terminal;

/// Where answers to questions come from.
pub(crate) enum Input {
    /// The REPL's editor: the question is the prompt, Ctrl-C cancels.
    Editor(SharedEditor),
    /// The next line of a reader (line mode, or a one-shot command without a terminal).
    Lines(LineSource),
}

/// A writer shared between the prompt and its spinner thread.
type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Talks to the person at the keyboard: output on stdout, errors and the waiting spinner on
/// stderr, questions answered from the REPL's editor or the next input line.
///
/// Everything shown has its control characters made visible first: what it prints comes from
/// providers and models as often as from llxprt, and no such text may drive the terminal.
///
/// Write errors (a closed pipe) are ignored: there is nobody left to tell.
pub struct TerminalPrompt {
    input: Input,
    out: Mutex<Box<dyn Write + Send>>,
    err: SharedWriter,
    err_is_terminal: bool,
    /// A streamed reply left the cursor in the middle of a line.
    mid_line: AtomicBool,
    waiting: Mutex<Waiting>,
}

enum Waiting {
    Idle,
    /// Not a terminal: the line saying what is awaited was printed once.
    Announced,
    Spinning(Spinner),
}

impl TerminalPrompt {
    /// A prompt on the process's stdout and stderr.
    pub(crate) fn new(input: Input) -> Self {
        let err_is_terminal = io::stderr().is_terminal();
        Self::with_writers(
            input,
            Box::new(io::stdout()),
            Box::new(io::stderr()),
            err_is_terminal,
        )
    }

    /// A prompt for messages outside any line (at start-up, say) that never reads input: its
    /// questions fail with [`PromptError::NoInput`]. Reading stays with the front end, so no
    /// typed line can go to the wrong reader.
    pub fn output_only() -> Self {
        Self::new(Input::Lines(LineSource::new(io::empty())))
    }

    pub(crate) fn with_writers(
        input: Input,
        out: Box<dyn Write + Send>,
        err: Box<dyn Write + Send>,
        err_is_terminal: bool,
    ) -> Self {
        Self {
            input,
            out: Mutex::new(out),
            err: Arc::new(Mutex::new(err)),
            err_is_terminal,
            mid_line: AtomicBool::new(false),
            waiting: Mutex::new(Waiting::Idle),
        }
    }

    /// Ends what a line left unfinished: stops a spinner and finishes a streamed reply's last
    /// line, so the next prompt starts on a clean line. The front ends call it after each line,
    /// also after a cancelled one.
    pub(crate) fn finish_line(&self) {
        self.waiting("", true);
        self.end_stream();
    }

    fn end_stream(&self) {
        if self.mid_line.swap(false, Ordering::SeqCst) {
            let mut out = lock(&self.out);
            let _ = writeln!(out);
            let _ = out.flush();
        }
    }

    /// Clears the spinner's line so a line written to the terminal does not land inside it;
    /// the spinner draws itself again on its next tick.
    fn clear_spinner(&self) {
        if matches!(*lock(&self.waiting), Waiting::Spinning(_)) {
            let mut err = lock(&self.err);
            let _ = write!(err, "{CLEAR_LINE}");
            let _ = err.flush();
        }
    }
}

#[async_trait]
impl UserPrompt for TerminalPrompt {
    fn show(&self, line: &str) {
        self.clear_spinner();
        self.end_stream();
        let mut out = lock(&self.out);
        let _ = writeln!(out, "{}", for_terminal(line));
        let _ = out.flush();
    }

    fn show_error(&self, line: &str) {
        self.clear_spinner();
        self.end_stream();
        let mut err = lock(&self.err);
        let _ = writeln!(err, "{}", for_terminal(line));
        let _ = err.flush();
    }

    fn stream(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.clear_spinner();
        let mut out = lock(&self.out);
        let _ = write!(out, "{}", for_terminal(text));
        let _ = out.flush();
        self.mid_line.store(!text.ends_with('\n'), Ordering::SeqCst);
    }

    fn waiting(&self, what: &str, done: bool) {
        let what = &for_terminal(what);
        let mut waiting = lock(&self.waiting);
        if done {
            if let Waiting::Spinning(spinner) = std::mem::replace(&mut *waiting, Waiting::Idle) {
                spinner.stop();
            }
            return;
        }
        match &*waiting {
            Waiting::Spinning(spinner) => spinner.set_text(what),
            Waiting::Announced => {}
            Waiting::Idle if self.err_is_terminal => {
                *waiting = Waiting::Spinning(Spinner::start(what, Arc::clone(&self.err)));
            }
            Waiting::Idle => {
                let mut err = lock(&self.err);
                let _ = writeln!(err, "{what}");
                let _ = err.flush();
                *waiting = Waiting::Announced;
            }
        }
    }

    fn busy(&self, what: &str, done: bool) {
        if self.err_is_terminal {
            self.waiting(what, done);
        }
    }

    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        self.finish_line();
        let answer = match &self.input {
            Input::Editor(editor) => {
                let question = for_terminal(question);
                let prompt = if question.ends_with(char::is_whitespace) {
                    question.into_owned()
                } else {
                    format!("{question} ")
                };
                editor.read_line(prompt).await.map_err(|e| match e {
                    ReadlineError::Interrupted => PromptError::Cancelled,
                    ReadlineError::Eof => PromptError::NoInput("end of input".to_owned()),
                    other => PromptError::NoInput(other.to_string()),
                })?
            }
            Input::Lines(source) => {
                // The answer is not echoed, so the question gets a line of its own; it is
                // flushed before reading so whoever feeds the input can see it is asked.
                self.show(question);
                source
                    .next_line()
                    .await
                    .map_err(|e| PromptError::NoInput(e.to_string()))?
                    .ok_or_else(|| PromptError::NoInput("end of input".to_owned()))?
            }
        };
        Ok(answer.trim().to_owned())
    }

    async fn ask_secret(&self, question: &str) -> Result<String, PromptError> {
        match &self.input {
            Input::Editor(editor) => {
                self.finish_line();
                let prompt = format!("{} ", for_terminal(question).trim_end());
                let answer = editor.read_secret(prompt).await.map_err(|e| match e {
                    ReadlineError::Interrupted => PromptError::Cancelled,
                    ReadlineError::Eof => PromptError::NoInput("end of input".to_owned()),
                    other => PromptError::NoInput(other.to_string()),
                })?;
                Ok(answer.trim().to_owned())
            }
            // Piped input is not echoed anyway: the next line is the answer.
            Input::Lines(_) => self.ask(question).await,
        }
    }
}

impl Drop for TerminalPrompt {
    fn drop(&mut self) {
        self.finish_line();
    }
}

/// Erases the current terminal line and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// An animated `⠋ what` on stderr, drawn by a thread until stopped.
struct Spinner {
    text: Arc<Mutex<String>>,
    stopped: Arc<AtomicBool>,
    ticker: JoinHandle<()>,
    err: SharedWriter,
}

impl Spinner {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    const TICK: Duration = Duration::from_millis(100);

    /// Draws the first frame at once, so even a short wait is seen, then animates.
    fn start(what: &str, err: SharedWriter) -> Self {
        let text = Arc::new(Mutex::new(what.to_owned()));
        let stopped = Arc::new(AtomicBool::new(false));
        Self::draw(Self::FRAMES[0], &text, &err);
        let ticker = {
            let (text, stopped, err) = (Arc::clone(&text), Arc::clone(&stopped), Arc::clone(&err));
            thread::spawn(move || {
                for frame in Self::FRAMES.iter().cycle().skip(1) {
                    thread::park_timeout(Self::TICK);
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    Self::draw(*frame, &text, &err);
                }
            })
        };
        Self {
            text,
            stopped,
            ticker,
            err,
        }
    }

    fn draw(frame: char, text: &Mutex<String>, err: &SharedWriter) {
        let text = lock(text).clone();
        let mut err = lock(err);
        let _ = write!(err, "{CLEAR_LINE}{frame} {text}");
        let _ = err.flush();
    }

    fn set_text(&self, what: &str) {
        what.clone_into(&mut lock(&self.text));
    }

    fn stop(self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.ticker.thread().unpark();
        let _ = self.ticker.join();
        let mut err = lock(&self.err);
        let _ = write!(err, "{CLEAR_LINE}");
        let _ = err.flush();
    }
}

/// Output and state stay usable after a panic elsewhere: a half-written line is better than
/// no output at all.
fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A writer whose bytes a test can read back.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A prompt answering from the lines of `input`, with its stdout and stderr captured.
    fn captured(input: &str, err_is_terminal: bool) -> (TerminalPrompt, Captured, Captured) {
        let source = LineSource::new(io::Cursor::new(input.as_bytes().to_vec()));
        captured_with(source, err_is_terminal)
    }

    /// A prompt answering from `source`, with its stdout and stderr captured.
    pub(crate) fn captured_with(
        source: LineSource,
        err_is_terminal: bool,
    ) -> (TerminalPrompt, Captured, Captured) {
        let (out, err) = (Captured::default(), Captured::default());
        let prompt = TerminalPrompt::with_writers(
            Input::Lines(source),
            Box::new(out.clone()),
            Box::new(err.clone()),
            err_is_terminal,
        );
        (prompt, out, err)
    }

    #[test]
    fn lines_go_to_stdout_and_errors_to_stderr() {
        let (prompt, out, err) = captured("", false);
        prompt.show("Visit: http://127.0.0.1/x");
        prompt.show_error("Error: nope");
        assert_eq!(out.text(), "Visit: http://127.0.0.1/x\n");
        assert_eq!(err.text(), "Error: nope\n");
    }

    #[test]
    fn a_streamed_reply_is_finished_with_one_line_break() {
        let (prompt, out, _) = captured("", false);
        prompt.stream("Hel");
        prompt.stream("lo");
        prompt.finish_line();
        prompt.finish_line();
        prompt.stream("done\n");
        prompt.finish_line();
        assert_eq!(out.text(), "Hello\ndone\n");
    }

    #[test]
    fn waiting_without_a_terminal_is_one_plain_line_per_wait() {
        let (prompt, out, err) = captured("", false);
        for _ in 0..5 {
            prompt.waiting("Waiting for approval...", false);
        }
        prompt.waiting("", true);
        prompt.waiting("Waiting again", false);
        prompt.waiting("", true);
        assert_eq!(err.text(), "Waiting for approval...\nWaiting again\n");
        assert_eq!(out.text(), "");
    }

    #[test]
    fn a_spinner_on_a_terminal_is_cleared_when_done() {
        let (prompt, _, err) = captured("", true);
        prompt.waiting("Waiting for approval", false);
        prompt.waiting("Waiting for approval", false);
        prompt.waiting("", true);
        let text = err.text();
        assert!(text.contains("Waiting for approval"), "{text:?}");
        assert!(text.ends_with(CLEAR_LINE), "{text:?}");
        // Done means done: nothing is drawn afterwards.
        let len = err.text().len();
        thread::sleep(Spinner::TICK * 3);
        assert_eq!(err.text().len(), len);
    }

    #[test]
    fn busy_spins_on_a_terminal_and_shows_nothing_in_a_pipe() {
        let (piped, out, err) = captured("", false);
        piped.busy("Waiting for anthropic", false);
        piped.busy("", true);
        assert_eq!((out.text(), err.text()), (String::new(), String::new()));

        let (terminal, _, err) = captured("", true);
        terminal.busy("Waiting for anthropic", false);
        terminal.busy("", true);
        let text = err.text();
        assert!(text.contains("Waiting for anthropic"), "{text:?}");
        assert!(text.ends_with(CLEAR_LINE), "{text:?}");
    }

    #[tokio::test]
    async fn a_question_is_shown_then_answered_by_the_next_line_trimmed() {
        let (prompt, out, _) = captured("  abc#def  \nnext\n", false);
        let answer = prompt.ask("Paste the authorization code:").await;
        assert_eq!(answer, Ok("abc#def".to_owned()));
        assert_eq!(out.text(), "Paste the authorization code:\n");
    }

    #[tokio::test]
    async fn a_question_at_end_of_input_has_no_answer() {
        let (prompt, _, _) = captured("", false);
        let answer = prompt.ask("Paste the authorization code:").await;
        assert!(matches!(answer, Err(PromptError::NoInput(_))), "{answer:?}");
    }
}
