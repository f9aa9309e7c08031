//! What a subscription's answers report of the account's usage windows, as the real services
//! send it (providers.md, "Limits a subscription reports on every answer"), and the refusal of a
//! request once a window is used up.
//!
//! Each (provider, account) has its windows: Anthropic `5h` and `7d`, Codex `5h` (primary) and
//! `weekly` (secondary). Unless a test sets them, each is 0 % used and resets at a fixed moment
//! (the simulator's start plus the window's length), so the figures do not change between
//! answers. Once a window's reset has passed, it starts again at 0 %, resetting one length later.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;
use llxprt_domain::{OAuthProvider, WindowName};

/// The usage windows `provider`'s subscription reports, in the order its headers give them:
/// Anthropic `5h`, `7d`; Codex `5h` (primary), `weekly` (secondary); Gemini and Qwen none.
pub fn usage_windows(provider: OAuthProvider) -> &'static [WindowName] {
    match provider {
        OAuthProvider::Anthropic => &[WindowName::FiveHour, WindowName::SevenDay],
        OAuthProvider::Codex => &[WindowName::FiveHour, WindowName::Weekly],
        OAuthProvider::Gemini | OAuthProvider::Qwen => &[],
    }
}

/// A window's share at or above which Anthropic's `anthropic-ratelimit-unified-status` says
/// `allowed_warning` (at 100 % it says `rejected`, and the request is refused).
pub const WARNING_PERCENT: f64 = 80.0;

/// One window's figures for [`SimulatorHandle::set_usage`](crate::SimulatorHandle::set_usage):
/// the window, the share used in percent (0 or more; 100 or more refuses requests), and when it
/// resets from now (`None`: its reset stays where it is).
pub type UsageSetting = (WindowName, f64, Option<Duration>);

/// Why [`SimulatorHandle::set_usage`](crate::SimulatorHandle::set_usage) set nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UsageError {
    /// The provider reports no such window.
    #[error("{provider} reports no {window} window ({})", known_windows(*provider))]
    UnknownWindow {
        /// The provider asked about.
        provider: OAuthProvider,
        /// The window it does not report.
        window: WindowName,
    },
    /// The share is negative, NaN or infinite.
    #[error("{percent} is not a share in percent (a number from 0)")]
    InvalidPercent {
        /// The share given.
        percent: f64,
    },
}

/// `its windows: 5h, 7d`, or that it reports none.
pub(crate) fn known_windows(provider: OAuthProvider) -> String {
    let names: Vec<&str> = usage_windows(provider).iter().map(|w| w.as_str()).collect();
    if names.is_empty() {
        format!("{provider} reports no usage windows")
    } else {
        format!("its windows: {}", names.join(", "))
    }
}

/// The window of `provider` named as users read it (`5h`, `7d`, `weekly`).
pub(crate) fn window_named(provider: OAuthProvider, name: &str) -> Option<WindowName> {
    usage_windows(provider)
        .iter()
        .copied()
        .find(|w| w.as_str() == name)
}

/// How long a window lasts.
fn length(window: WindowName) -> u64 {
    match window {
        WindowName::FiveHour => 5 * 3600,
        WindowName::SevenDay | WindowName::Weekly => 7 * 24 * 3600,
    }
}

/// One window as an answer reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowReport {
    pub(crate) name: WindowName,
    pub(crate) percent: f64,
    /// Unix seconds.
    pub(crate) resets_at: u64,
}

impl WindowReport {
    fn used_up(&self) -> bool {
        self.percent >= 100.0
    }
}

/// An account's windows that differ from the defaults.
#[derive(Debug, Default)]
pub(crate) struct AccountUsage {
    windows: BTreeMap<WindowName, (f64, u64)>,
}

impl AccountUsage {
    /// Checks every setting, then applies them all (or none).
    pub(crate) fn set(
        &mut self,
        provider: OAuthProvider,
        settings: &[UsageSetting],
        started: u64,
        now: u64,
    ) -> Result<(), UsageError> {
        for (window, percent, _) in settings {
            if !usage_windows(provider).contains(window) {
                return Err(UsageError::UnknownWindow {
                    provider,
                    window: *window,
                });
            }
            if !percent.is_finite() || *percent < 0.0 {
                return Err(UsageError::InvalidPercent { percent: *percent });
            }
        }
        for (window, percent, resets_in) in settings {
            let resets_at = match resets_in {
                Some(resets_in) => now.saturating_add(resets_in.as_secs()),
                None => self.current(*window, started, now).resets_at,
            };
            self.windows.insert(*window, (*percent, resets_at));
        }
        Ok(())
    }

    /// The provider's windows as they stand at `now`, a window past its reset starting again.
    pub(crate) fn report(
        &mut self,
        provider: OAuthProvider,
        started: u64,
        now: u64,
    ) -> Vec<WindowReport> {
        usage_windows(provider)
            .iter()
            .map(|window| {
                let report = self.current(*window, started, now);
                self.windows
                    .insert(*window, (report.percent, report.resets_at));
                report
            })
            .collect()
    }

    fn current(&self, name: WindowName, started: u64, now: u64) -> WindowReport {
        let (percent, resets_at) = self
            .windows
            .get(&name)
            .copied()
            .unwrap_or((0.0, started.saturating_add(length(name))));
        if now < resets_at {
            return WindowReport {
                name,
                percent,
                resets_at,
            };
        }
        let periods = (now - resets_at) / length(name) + 1;
        WindowReport {
            name,
            percent: 0.0,
            resets_at: resets_at.saturating_add(periods.saturating_mul(length(name))),
        }
    }
}

/// The used-up window that refuses a request, when one is: of those at 100 %, the one that
/// resets last.
pub(crate) fn refusing(windows: &[WindowReport]) -> Option<WindowReport> {
    windows
        .iter()
        .filter(|w| w.used_up())
        .max_by_key(|w| w.resets_at)
        .copied()
}

/// Anthropic's binding window: the refusing one, else the most used (the later reset on a tie).
fn binding(windows: &[WindowReport]) -> Option<WindowReport> {
    refusing(windows).or_else(|| {
        windows.iter().copied().max_by(|a, b| {
            a.percent
                .total_cmp(&b.percent)
                .then(a.resets_at.cmp(&b.resets_at))
        })
    })
}

/// `rejected` at 100 %, `allowed_warning` at [`WARNING_PERCENT`], `allowed` below.
fn anthropic_status(windows: &[WindowReport]) -> &'static str {
    if windows.iter().any(WindowReport::used_up) {
        "rejected"
    } else if windows.iter().any(|w| w.percent >= WARNING_PERCENT) {
        "allowed_warning"
    } else {
        "allowed"
    }
}

/// Adds the usage headers of `provider` to an answer. A status or reset the answer already
/// carries (a forced rate limit's) stays.
pub(crate) fn add_headers(
    provider: OAuthProvider,
    windows: &[WindowReport],
    answer: &mut Response,
) {
    let headers = answer.headers_mut();
    let mut set = |name: String, value: String, keep: bool| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            if !(keep && headers.contains_key(&name)) {
                headers.insert(name, value);
            }
        }
    };
    match provider {
        OAuthProvider::Anthropic => {
            let prefix = "anthropic-ratelimit-unified";
            set(
                format!("{prefix}-status"),
                anthropic_status(windows).to_owned(),
                true,
            );
            for w in windows {
                let key = match w.name {
                    WindowName::FiveHour => "5h",
                    WindowName::SevenDay | WindowName::Weekly => "7d",
                };
                set(
                    format!("{prefix}-{key}-utilization"),
                    (w.percent / 100.0).to_string(),
                    false,
                );
                set(
                    format!("{prefix}-{key}-reset"),
                    w.resets_at.to_string(),
                    false,
                );
            }
            if let Some(binding) = binding(windows) {
                set(
                    format!("{prefix}-reset"),
                    binding.resets_at.to_string(),
                    true,
                );
            }
        }
        OAuthProvider::Codex => {
            for w in windows {
                let slot = match w.name {
                    WindowName::FiveHour => "primary",
                    WindowName::SevenDay | WindowName::Weekly => "secondary",
                };
                set(
                    format!("x-codex-{slot}-used-percent"),
                    w.percent.to_string(),
                    false,
                );
                set(
                    format!("x-codex-{slot}-window-minutes"),
                    (length(w.name) / 60).to_string(),
                    false,
                );
                set(
                    format!("x-codex-{slot}-reset-at"),
                    w.resets_at.to_string(),
                    false,
                );
            }
            set("x-codex-credits-has-credits".into(), "false".into(), false);
            set("x-codex-credits-unlimited".into(), "false".into(), false);
            set("x-codex-credits-balance".into(), "0".into(), false);
        }
        OAuthProvider::Gemini | OAuthProvider::Qwen => {}
    }
}

/// Adds Anthropic's `retry-after` for a refusal by `window`: the seconds until it resets.
pub(crate) fn add_retry_after(window: WindowReport, now: u64, answer: &mut Response) {
    let wait = window.resets_at.saturating_sub(now).max(1);
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_800_000_000;

    #[test]
    fn windows_default_to_0_percent_resetting_at_fixed_moments_then_start_again() {
        let mut usage = AccountUsage::default();
        let first = usage.report(OAuthProvider::Anthropic, START, START + 10);
        assert_eq!(
            first,
            usage.report(OAuthProvider::Anthropic, START, START + 20)
        );
        assert_eq!(first[0].resets_at, START + 5 * 3600);
        usage
            .set(
                OAuthProvider::Anthropic,
                &[(WindowName::FiveHour, 96.0, Some(Duration::from_secs(60)))],
                START,
                START + 30,
            )
            .unwrap();
        let set = usage.report(OAuthProvider::Anthropic, START, START + 40);
        assert_eq!((set[0].percent, set[0].resets_at), (96.0, START + 90));
        assert_eq!(set[1], first[1], "a window not given keeps its figures");
        let later = usage.report(OAuthProvider::Anthropic, START, START + 90);
        assert_eq!(
            (later[0].percent, later[0].resets_at),
            (0.0, START + 90 + 5 * 3600)
        );
    }

    #[test]
    fn unknown_windows_and_bad_shares_set_nothing() {
        let mut usage = AccountUsage::default();
        let error = usage
            .set(
                OAuthProvider::Codex,
                &[
                    (WindowName::FiveHour, 50.0, None),
                    (WindowName::SevenDay, 50.0, None),
                ],
                START,
                START,
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "codex reports no 7d window (its windows: 5h, weekly)"
        );
        assert_eq!(
            usage.report(OAuthProvider::Codex, START, START)[0].percent,
            0.0
        );
        assert!(usage
            .set(
                OAuthProvider::Codex,
                &[(WindowName::FiveHour, f64::NAN, None)],
                START,
                START
            )
            .is_err());
    }
}
