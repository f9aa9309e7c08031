//! The clock adapter: the system time ([`SystemClock`], times of day in UTC) and the clock users
//! read ([`LocalClock`], times of day in the machine's time zone).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use llxprt_application::ports::Clock;
use llxprt_domain::UnixSeconds;

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

/// The system clock, showing times of day (`[cooldown] NAME (until HH:MM)`) in a time zone:
/// the machine's (`TZ`, then `/etc/localtime`) unless another is given.
#[derive(Debug, Clone)]
pub struct LocalClock {
    /// Found when first needed: finding the machine's zone walks the whole time zone database
    /// (about 3 ms, a third of a start-up), and most commands show no time of day.
    zone: OnceLock<TimeZone>,
}

impl LocalClock {
    /// The machine's time zone; UTC when it cannot be found.
    pub fn system() -> Self {
        Self {
            zone: OnceLock::new(),
        }
    }

    /// A given time zone.
    pub fn in_zone(zone: TimeZone) -> Self {
        Self {
            zone: OnceLock::from(zone),
        }
    }

    fn zone(&self) -> &TimeZone {
        self.zone
            .get_or_init(|| TimeZone::try_system().unwrap_or(TimeZone::UTC))
    }
}

impl Clock for LocalClock {
    fn now(&self) -> UnixSeconds {
        SystemClock.now()
    }

    fn time_of_day(&self, at: UnixSeconds) -> String {
        match Timestamp::from_second(at.0) {
            Ok(moment) => moment
                .to_zoned_datetime(self.zone().clone())
                .strftime("%H:%M")
                .to_string(),
            // Out of jiff's range (beyond year ±9999): no time zone can say better than UTC.
            Err(_) => SystemClock.time_of_day(at),
        }
    }

    fn day_and_time(&self, at: UnixSeconds) -> String {
        match Timestamp::from_second(at.0) {
            Ok(moment) => moment
                .to_zoned_datetime(self.zone().clone())
                .strftime("%a %H:%M")
                .to_string(),
            Err(_) => SystemClock.day_and_time(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::{offset, TimeZone};

    #[test]
    fn times_of_day_are_shown_in_the_zone() {
        // 2026-01-01T13:05:00Z.
        let at = UnixSeconds(1_767_272_700);
        assert_eq!(LocalClock::in_zone(TimeZone::UTC).time_of_day(at), "13:05");
        assert_eq!(
            LocalClock::in_zone(TimeZone::fixed(offset(2))).time_of_day(at),
            "15:05"
        );
        assert_eq!(
            LocalClock::in_zone(TimeZone::fixed(offset(-5))).time_of_day(at),
            "08:05"
        );
        assert_eq!(
            LocalClock::in_zone(TimeZone::UTC).time_of_day(UnixSeconds(i64::MAX)),
            SystemClock.time_of_day(UnixSeconds(i64::MAX))
        );
        // A Thursday in UTC is already Friday fourteen hours east.
        let thursday_evening = UnixSeconds(1_767_304_800); // 2026-01-01T22:00:00Z
        assert_eq!(SystemClock.day_and_time(thursday_evening), "Thu 22:00");
        assert_eq!(
            LocalClock::in_zone(TimeZone::fixed(offset(14))).day_and_time(thursday_evening),
            "Fri 12:00"
        );
    }
}
