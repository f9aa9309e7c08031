//! Time as the domain sees it: a value passed in, never read from a clock.

use std::fmt;
use std::ops::{Add, Sub};

/// A moment as whole seconds since the Unix epoch (the unit of token files and reset headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixSeconds(pub i64);

impl UnixSeconds {
    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: UnixSeconds) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<i64> for UnixSeconds {
    type Output = UnixSeconds;
    fn add(self, seconds: i64) -> UnixSeconds {
        UnixSeconds(self.0.saturating_add(seconds))
    }
}

impl Sub<i64> for UnixSeconds {
    type Output = UnixSeconds;
    fn sub(self, seconds: i64) -> UnixSeconds {
        UnixSeconds(self.0.saturating_sub(seconds))
    }
}

impl fmt::Display for UnixSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A duration said the way people say it: `59 minutes`, `90 minutes`, `2 hours`, `30 seconds`.
///
/// Minutes go up to two hours, so a fresh one-hour token reads `60 minutes` like the
/// `59 minutes` it becomes a moment later, rather than jumping between units.
pub fn humanize_seconds(seconds: i64) -> String {
    let s = seconds.max(0);
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=7199 => (s / 60, "minute"),
        7200..=86_399 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// How long ago `then` was, in the short form of `/stats buckets`: `just now`, `2 min ago`,
/// `1 hour ago`, `3 days ago`.
pub fn humanize_ago(now: UnixSeconds, then: UnixSeconds) -> String {
    let s = now.seconds_since(then).max(0);
    match s {
        0..=59 => "just now".to_owned(),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=7199 => "1 hour ago".to_owned(),
        7200..=86_399 => format!("{} hours ago", s / 3600),
        86_400..=172_799 => "1 day ago".to_owned(),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(humanize_seconds(3599), "59 minutes");
        assert_eq!(humanize_seconds(60), "1 minute");
        assert_eq!(humanize_seconds(3600), "60 minutes");
        assert_eq!(humanize_seconds(7199), "119 minutes");
        assert_eq!(humanize_seconds(7200), "2 hours");
        assert_eq!(humanize_seconds(-5), "0 seconds");
        assert_eq!(
            humanize_ago(UnixSeconds(1000), UnixSeconds(880)),
            "2 min ago"
        );
        assert_eq!(
            humanize_ago(UnixSeconds(10_000), UnixSeconds(6_000)),
            "1 hour ago"
        );
        assert_eq!(humanize_ago(UnixSeconds(10), UnixSeconds(9)), "just now");
    }
}
