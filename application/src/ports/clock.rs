//! The clock port: the one place the current time comes from.

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
