//! The clock port: the one place the current time comes from.

use std::time::{SystemTime, UNIX_EPOCH};

use llxprt_domain::UnixSeconds;

/// Tells the time. Services take it as a port so tests can move time on.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> UnixSeconds;

    /// A moment as the user reads a time of day, `HH:MM`. The default is UTC; an adapter that
    /// knows the local time zone overrides it.
    fn time_of_day(&self, at: UnixSeconds) -> String {
        let seconds_of_day = at.0.rem_euclid(86_400);
        format!(
            "{:02}:{:02}",
            seconds_of_day / 3600,
            seconds_of_day % 3600 / 60
        )
    }
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixSeconds {
        // A clock before 1970 is a broken machine; treat it as the epoch rather than fail.
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        UnixSeconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}
