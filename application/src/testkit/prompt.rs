//! A user who answers from a script and remembers what they were shown.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::ports::{PromptError, UserPrompt};

/// What a [`ScriptedPrompt`] was shown, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shown {
    /// A line of information.
    Line(String),
    /// A line reporting a failure.
    Error(String),
    /// A piece of a streamed reply.
    Stream(String),
    /// A question asked.
    Question(String),
}

/// The person at the keyboard, played by a test: answers come from a queue (an empty queue is
/// end of input, [`PromptError::NoInput`]), and everything shown is kept.
#[derive(Debug, Default)]
pub struct ScriptedPrompt {
    answers: Mutex<VecDeque<Result<String, PromptError>>>,
    shown: Mutex<Vec<Shown>>,
}

impl ScriptedPrompt {
    /// A prompt with no answers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues the answer to a later question.
    pub fn answer(&self, text: impl Into<String>) {
        self.push(Ok(text.into()));
    }

    /// The user presses Ctrl-C at a later question.
    pub fn cancel_next(&self) {
        self.push(Err(PromptError::Cancelled));
    }

    fn push(&self, answer: Result<String, PromptError>) {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(answer);
    }

    /// Everything shown so far, in order.
    pub fn shown(&self) -> Vec<Shown> {
        self.shown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The lines shown (information and errors), in order, without streamed text or questions.
    pub fn lines(&self) -> Vec<String> {
        self.shown()
            .into_iter()
            .filter_map(|s| match s {
                Shown::Line(line) | Shown::Error(line) => Some(line),
                _ => None,
            })
            .collect()
    }

    /// The streamed text, joined.
    pub fn streamed(&self) -> String {
        self.shown()
            .into_iter()
            .filter_map(|s| match s {
                Shown::Stream(text) => Some(text),
                _ => None,
            })
            .collect()
    }

    fn record(&self, shown: Shown) {
        self.shown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(shown);
    }
}

#[async_trait]
impl UserPrompt for ScriptedPrompt {
    fn show(&self, line: &str) {
        self.record(Shown::Line(line.to_owned()));
    }

    fn show_error(&self, line: &str) {
        self.record(Shown::Error(line.to_owned()));
    }

    fn stream(&self, text: &str) {
        self.record(Shown::Stream(text.to_owned()));
    }

    fn waiting(&self, _what: &str, _done: bool) {}

    async fn ask(&self, question: &str) -> Result<String, PromptError> {
        self.record(Shown::Question(question.to_owned()));
        let next = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        next.unwrap_or_else(|| {
            Err(PromptError::NoInput(
                "the script has no more answers".to_owned(),
            ))
        })
        .map(|answer| answer.trim().to_owned())
    }
}
