//! A clock that moves only when told.

use std::sync::atomic::{AtomicI64, Ordering};

use llxprt_domain::UnixSeconds;

use crate::ports::Clock;

/// The time as a test sets it: it stands still until [`advance`](Self::advance) or
/// [`set`](Self::set). Times of day are UTC (the port's default).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `now`.
    pub fn at(now: UnixSeconds) -> Self {
        Self(AtomicI64::new(now.0))
    }

    /// Moves the time on by `seconds` (back, when negative).
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Sets the time.
    pub fn set(&self, now: UnixSeconds) {
        self.0.store(now.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixSeconds {
        UnixSeconds(self.0.load(Ordering::SeqCst))
    }
}
