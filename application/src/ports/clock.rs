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

    /// A moment as the user reads a day and time, `Fri 09:00`. The default is UTC; an adapter
    /// that knows the local time zone overrides it.
    fn day_and_time(&self, at: UnixSeconds) -> String {
        // 1970-01-01 was a Thursday.
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        let day = usize::try_from(at.0.div_euclid(86_400).rem_euclid(7)).unwrap_or(0);
        format!("{} {}", DAYS[day], self.time_of_day(at))
    }

    /// A moment to come as the user reads it: the time of day when it is within 20 hours
    /// (`18:00`, which cannot be taken for the same time a day later), else the day too
    /// (`Fri 09:00`).
    fn when(&self, at: UnixSeconds) -> String {
        if at.seconds_since(self.now()) < 20 * 3600 {
            self.time_of_day(at)
        } else {
            self.day_and_time(at)
        }
    }
}
