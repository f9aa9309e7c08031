//! A browser that only remembers what it was asked to open.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::ports::{Browser, BrowserError};

/// Keeps every URL it is asked to open and opens nothing; it can be told to fail its next
/// launches (no display, a broken `$BROWSER`), when the flows fall back to asking the user.
#[derive(Debug, Default)]
pub struct RecordingBrowser {
    opened: Mutex<Vec<String>>,
    failures: Mutex<VecDeque<BrowserError>>,
}

impl RecordingBrowser {
    /// A browser that opens everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next launch fails with `error` (call again for more).
    pub fn fail_next(&self, error: BrowserError) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(error);
    }

    /// Every URL asked for, in order, failed launches included.
    pub fn opened(&self) -> Vec<String> {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Browser for RecordingBrowser {
    async fn open(&self, url: &str) -> Result<(), BrowserError> {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(url.to_owned());
        match self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
