//! What the providers report of an account's limits, and the two rules that use it: move on
//! before the provider refuses (`failover.switch_at_percent`), and end a cooldown when the
//! provider says, never later than the window's own reset.
//!
//! Anthropic subscriptions report a 5-hour and a 7-day window on every answer; Codex a primary
//! (5-hour) and a secondary (weekly) window. The adapters read their headers into
//! [`ReportedLimits`]; the service keeps the latest figures per bucket with the time they were
//! seen and asks [`health_with_limits`] what they mean for the next request.

use std::fmt;

use crate::failover::{BucketHealth, CooldownCause};
use crate::time::UnixSeconds;

/// Which of an account's usage windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowName {
    /// The 5-hour window (Anthropic's `5h`, Codex's primary).
    FiveHour,
    /// Anthropic's 7-day window.
    SevenDay,
    /// Codex's secondary, weekly window.
    Weekly,
}

impl WindowName {
    /// The window's name as users read it: `5h`, `7d`, `weekly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FiveHour => "5h",
            Self::SevenDay => "7d",
            Self::Weekly => "weekly",
        }
    }

    /// The name of a window that lasts `minutes` (Codex says how long its windows are): up to a
    /// day is the 5-hour window, longer is the weekly one.
    pub fn from_minutes(minutes: u64) -> Self {
        if minutes <= 24 * 60 {
            Self::FiveHour
        } else {
            Self::Weekly
        }
    }
}

impl fmt::Display for WindowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of one window is used, as the provider reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaWindow {
    /// Which window.
    pub name: WindowName,
    /// The share used, in percent (0–100; a provider reporting more is held at 100).
    pub used_percent: u8,
    /// When the window resets, when the provider said.
    pub resets_at: Option<UnixSeconds>,
}

impl QuotaWindow {
    /// A window; a share over 100 % is held at 100.
    pub fn new(name: WindowName, used_percent: f64, resets_at: Option<UnixSeconds>) -> Self {
        // NaN and negative shares are "nothing used"; the cast saturates at the bounds.
        let clamped = if used_percent.is_nan() {
            0.0
        } else {
            used_percent.clamp(0.0, 100.0)
        };
        Self {
            name,
            used_percent: clamped.round() as u8,
            resets_at,
        }
    }
}

/// What a Codex answer says of the account's credits (`x-codex-credits-*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credits {
    /// Whether the account has credits to draw on once its windows are used up.
    pub has_credits: bool,
    /// Whether its credits are unlimited.
    pub unlimited: bool,
    /// The balance as the provider wrote it (a decimal), when given.
    pub balance: Option<String>,
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.unlimited, self.has_credits, &self.balance) {
            (true, _, _) => f.write_str("credits unlimited"),
            (false, true, Some(balance)) => write!(f, "credits {balance}"),
            (false, true, None) => f.write_str("credits left"),
            (false, false, _) => f.write_str("no credits"),
        }
    }
}

/// What one answer of a provider reported of the account's limits: empty when it reported
/// none (an API key, a provider that reports nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Every window the provider reported, in the order it reported them.
    pub windows: Vec<QuotaWindow>,
    /// The account's credits, where the provider reports them (Codex).
    pub credits: Option<Credits>,
}

impl Limits {
    /// Whether the answer reported nothing.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.credits.is_none()
    }

    /// These limits as seen at `at`.
    pub fn seen_at(self, at: UnixSeconds) -> ReportedLimits {
        ReportedLimits {
            limits: self,
            seen_at: at,
        }
    }

    /// The latest reset among the windows used up (at 100 %) whose reset is still to come:
    /// when a refused bucket can be served again, as far as its windows say.
    pub fn used_up_until(&self, now: UnixSeconds) -> Option<UnixSeconds> {
        self.windows
            .iter()
            .filter(|w| w.used_percent >= 100)
            .filter_map(|w| w.resets_at)
            .filter(|at| *at > now)
            .max()
    }

    /// The figures as the end of a status line shows them: `5h 72%, 7d 31%`.
    pub fn percentages(&self) -> String {
        let shown: Vec<String> = self
            .windows
            .iter()
            .map(|w| format!("{} {}%", w.name, w.used_percent))
            .collect();
        shown.join(", ")
    }
}

/// The latest limits a provider reported for a bucket, and when they were seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportedLimits {
    /// What the provider reported.
    pub limits: Limits,
    /// When the answer that carried them arrived.
    pub seen_at: UnixSeconds,
}

impl ReportedLimits {
    /// Whether these figures take the place of the ones `kept` for the same bucket: figures
    /// seen earlier (an answer that arrived late, another machine's older record) do not.
    pub fn replaces(&self, kept: Option<&ReportedLimits>) -> bool {
        kept.is_none_or(|kept| kept.seen_at <= self.seen_at)
    }

    /// The window that holds the bucket back at `now` under a threshold of `switch_at_percent`:
    /// of the windows used at or above it whose reset is still to come, the one that resets
    /// last. A window without a reset time cannot say when the bucket rejoins, so it holds
    /// nothing back (the provider's own refusal will).
    pub fn binding_window(&self, switch_at_percent: u8, now: UnixSeconds) -> Option<QuotaWindow> {
        self.limits
            .windows
            .iter()
            .filter(|w| w.used_percent >= switch_at_percent)
            .filter(|w| w.resets_at.is_some_and(|at| at > now))
            .max_by_key(|w| w.resets_at)
            .copied()
    }
}

/// A bucket's health for the next request once its latest reported limits are taken into
/// account: a bucket that is otherwise usable but has a window at or above
/// `switch_at_percent` cools down until that window resets, then rejoins by itself. Any other
/// health (a cooldown, a needed login) stands as it is.
pub fn health_with_limits(
    health: BucketHealth,
    limits: Option<&ReportedLimits>,
    switch_at_percent: u8,
    now: UnixSeconds,
) -> BucketHealth {
    if !health.is_usable_at(now) {
        return health;
    }
    match limits.and_then(|l| l.binding_window(switch_at_percent, now)) {
        Some(QuotaWindow {
            resets_at: Some(until),
            ..
        }) => BucketHealth::CoolingUntil {
            until,
            cause: CooldownCause::NearLimit,
        },
        _ => health,
    }
}

/// When a cooldown after a refusal ends: the latest of the moments the provider's signals give
/// (`retry-after`, a reset header, a `RetryInfo` delay), but never after the reset of the
/// window that binds, when one is known, since a signal past it (a `retry-after` of days has
/// been seen) outlives the limit itself. Signals already past are ignored; `None` when no
/// signal is left.
pub fn cooldown_until(
    signals: impl IntoIterator<Item = UnixSeconds>,
    window_reset: Option<UnixSeconds>,
    now: UnixSeconds,
) -> Option<UnixSeconds> {
    let latest = signals.into_iter().filter(|at| *at > now).max()?;
    Some(match window_reset {
        Some(reset) if reset > now && reset < latest => reset,
        _ => latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BucketName;
    use crate::failover::{Decision, FailoverRequest};
    use proptest::prelude::*;

    const NOW: UnixSeconds = UnixSeconds(1_800_000_000);

    fn window(name: WindowName, percent: f64, reset_in: i64) -> QuotaWindow {
        QuotaWindow::new(name, percent, Some(UnixSeconds(NOW.0 + reset_in)))
    }

    #[test]
    fn a_bucket_at_96_percent_of_its_5h_window_waits_for_that_window_under_a_90_threshold() {
        let limits = Limits {
            windows: vec![
                window(WindowName::FiveHour, 96.0, 3600),
                window(WindowName::SevenDay, 31.0, 86_400),
            ],
            credits: None,
        }
        .seen_at(NOW);
        assert_eq!(limits.limits.percentages(), "5h 96%, 7d 31%");
        let health = health_with_limits(BucketHealth::Usable, Some(&limits), 90, NOW);
        assert_eq!(
            health,
            BucketHealth::CoolingUntil {
                until: UnixSeconds(NOW.0 + 3600),
                cause: CooldownCause::NearLimit
            }
        );
        // Under the default threshold (100) it is still used.
        assert_eq!(
            health_with_limits(BucketHealth::Usable, Some(&limits), 100, NOW),
            BucketHealth::Usable
        );
    }

    #[test]
    fn shares_outside_0_to_100_are_held_at_the_bounds() {
        assert_eq!(
            QuotaWindow::new(WindowName::Weekly, 250.0, None).used_percent,
            100
        );
        assert_eq!(
            QuotaWindow::new(WindowName::Weekly, -3.0, None).used_percent,
            0
        );
        assert_eq!(
            QuotaWindow::new(WindowName::Weekly, f64::NAN, None).used_percent,
            0
        );
    }

    #[test]
    fn a_retry_after_of_days_ends_at_the_windows_reset() {
        let a_day_and_a_half = UnixSeconds(NOW.0 + 124_633);
        let reset = UnixSeconds(NOW.0 + 1800);
        assert_eq!(
            cooldown_until([a_day_and_a_half], Some(reset), NOW),
            Some(reset)
        );
        // Without a known window, the provider's word stands.
        assert_eq!(
            cooldown_until([a_day_and_a_half], None, NOW),
            Some(a_day_and_a_half)
        );
        // The largest sane signal wins over a shorter one.
        let (short, long) = (UnixSeconds(NOW.0 + 30), UnixSeconds(NOW.0 + 600));
        assert_eq!(cooldown_until([short, long], None, NOW), Some(long));
        assert_eq!(cooldown_until([UnixSeconds(NOW.0 - 5)], None, NOW), None);
    }

    fn any_window() -> impl Strategy<Value = QuotaWindow> {
        (
            prop_oneof![
                Just(WindowName::FiveHour),
                Just(WindowName::SevenDay),
                Just(WindowName::Weekly)
            ],
            0.0f64..=100.0,
            proptest::option::of(-600i64..20_000),
        )
            .prop_map(|(name, percent, reset_in)| {
                QuotaWindow::new(name, percent, reset_in.map(|s| UnixSeconds(NOW.0 + s)))
            })
    }

    fn any_limits() -> impl Strategy<Value = Option<ReportedLimits>> {
        proptest::option::of(
            proptest::collection::vec(any_window(), 0..3).prop_map(|windows| {
                Limits {
                    windows,
                    credits: None,
                }
                .seen_at(NOW)
            }),
        )
    }

    /// Over the threshold: some window with a reset still to come is used at or above it.
    fn over(limits: &Option<ReportedLimits>, threshold: u8) -> bool {
        limits.as_ref().is_some_and(|l| {
            l.limits
                .windows
                .iter()
                .any(|w| w.used_percent >= threshold && w.resets_at.is_some_and(|at| at > NOW))
        })
    }

    proptest! {
        #[test]
        fn never_selects_a_bucket_over_the_threshold_while_a_bucket_under_it_is_usable(
            limits in proptest::collection::vec(any_limits(), 1..6),
            threshold in 1u8..=100,
        ) {
            let buckets: Vec<(BucketName, BucketHealth)> = limits
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let name = BucketName::parse(&format!("b{i}")).unwrap();
                    (name, health_with_limits(BucketHealth::Usable, l.as_ref(), threshold, NOW))
                })
                .collect();
            let (_, decision) = FailoverRequest::start(buckets, NOW);
            let any_under = limits.iter().any(|l| !over(l, threshold));
            match decision {
                Decision::Use(name) => {
                    let index: usize = name.as_str()[1..].parse().unwrap();
                    prop_assert!(!over(&limits[index], threshold), "chose {name}, over the threshold");
                }
                other => prop_assert!(!any_under, "no bucket chosen ({other:?}) though one is under"),
            }
        }

        #[test]
        fn a_bucket_held_back_by_its_figures_rejoins_at_the_windows_reset(
            windows in proptest::collection::vec(any_window(), 1..3),
            threshold in 1u8..=100,
        ) {
            let limits = Limits { windows, credits: None }.seen_at(NOW);
            let held = health_with_limits(BucketHealth::Usable, Some(&limits), threshold, NOW);
            if let BucketHealth::CoolingUntil { until, .. } = held {
                prop_assert!(until > NOW);
                // Every window over the threshold has reset by then: the bucket is usable.
                prop_assert_eq!(
                    health_with_limits(BucketHealth::Usable, Some(&limits), threshold, until),
                    BucketHealth::Usable
                );
                prop_assert!(held.is_usable_at(until));
                prop_assert!(!held.is_usable_at(UnixSeconds(until.0 - 1)));
            } else {
                prop_assert_eq!(held, BucketHealth::Usable);
            }
        }

        #[test]
        fn a_cooldown_never_outlives_a_known_window_reset(
            signals in proptest::collection::vec(1i64..200_000, 1..4),
            reset_in in 1i64..200_000,
        ) {
            let reset = UnixSeconds(NOW.0 + reset_in);
            let signals: Vec<UnixSeconds> = signals.into_iter().map(|s| UnixSeconds(NOW.0 + s)).collect();
            let until = cooldown_until(signals.iter().copied(), Some(reset), NOW).unwrap();
            prop_assert!(until <= reset);
            prop_assert!(until > NOW);
            prop_assert!(signals.contains(&until) || until == reset);
        }
    }
}
