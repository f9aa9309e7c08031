//! The account's usage windows as a subscription's answers report them in their headers
//! (providers.md, "Limits a subscription reports on every answer"): Anthropic's
//! `anthropic-ratelimit-unified-*`, Codex's `x-codex-*`.
//!
//! Headers come from the network: a value that is too long, not a number, not finite, or a
//! reset before 1970 is ignored (its window is left out), and nothing here panics. An API key's
//! `anthropic-ratelimit-requests-*` headers describe no bucket and are not read.

use llxprt_domain::{Credits, Limits, QuotaWindow, UnixSeconds, WindowName};
use reqwest::header::HeaderMap;

/// A header value longer than this is not a figure: it is ignored.
const MAX_VALUE_CHARS: usize = 40;

/// The longest credit balance kept (Codex writes a short decimal).
const MAX_BALANCE_CHARS: usize = 24;

/// The latest reset believed (the last second of year 9999): anything later is garbage, and the
/// bound leaves room for arithmetic on the result.
const MAX_RESET: i64 = 253_402_300_799;

/// How a provider's headers are read into [`Limits`].
pub(crate) type LimitsReader = fn(&HeaderMap) -> Limits;

/// For the providers that report no limits: nothing.
pub(crate) fn none(_headers: &HeaderMap) -> Limits {
    Limits::default()
}

/// Anthropic's unified windows: `5h` and `7d`, each from its `-utilization` (a fraction, shown
/// as a percentage) and its `-reset` (Unix seconds). A window whose utilization is missing or
/// unreadable is left out; an unreadable reset leaves the window without one.
pub(crate) fn anthropic(headers: &HeaderMap) -> Limits {
    let window = |name: WindowName, key: &str| {
        let prefix = format!("anthropic-ratelimit-unified-{key}");
        let fraction = number(headers, &format!("{prefix}-utilization"))?;
        let resets_at = reset(headers, &format!("{prefix}-reset"));
        Some(QuotaWindow::new(name, fraction * 100.0, resets_at))
    };
    Limits {
        windows: [
            window(WindowName::FiveHour, "5h"),
            window(WindowName::SevenDay, "7d"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        credits: None,
    }
}

/// Codex's windows and credits: the primary window (named by its length, the 5-hour one when
/// the length is not given), the secondary one (the weekly one when not given), and the credits
/// when either flag is readable.
pub(crate) fn codex(headers: &HeaderMap) -> Limits {
    let window = |slot: &str, unnamed: WindowName| {
        let prefix = format!("x-codex-{slot}");
        let percent = number(headers, &format!("{prefix}-used-percent"))?;
        let name = text(headers, &format!("{prefix}-window-minutes"))
            .and_then(|minutes| minutes.parse::<u64>().ok())
            .map_or(unnamed, WindowName::from_minutes);
        Some(QuotaWindow::new(
            name,
            percent,
            reset(headers, &format!("{prefix}-reset-at")),
        ))
    };
    let has_credits = flag(headers, "x-codex-credits-has-credits");
    let unlimited = flag(headers, "x-codex-credits-unlimited");
    let credits = (has_credits.is_some() || unlimited.is_some()).then(|| Credits {
        has_credits: has_credits.unwrap_or(false),
        unlimited: unlimited.unwrap_or(false),
        balance: text(headers, "x-codex-credits-balance")
            .filter(|b| b.len() <= MAX_BALANCE_CHARS)
            .filter(|b| b.bytes().all(|c| c.is_ascii_digit() || c == b'.'))
            .filter(|b| b.bytes().any(|c| c.is_ascii_digit()))
            .map(str::to_owned),
    });
    Limits {
        windows: [
            window("primary", WindowName::FiveHour),
            window("secondary", WindowName::Weekly),
        ]
        .into_iter()
        .flatten()
        .collect(),
        credits,
    }
}

/// A header's value, trimmed, when it is text of a plausible length.
fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty() && value.len() <= MAX_VALUE_CHARS).then_some(value)
}

/// A finite, non-negative number.
fn number(headers: &HeaderMap, name: &str) -> Option<f64> {
    let value = text(headers, name)?.parse::<f64>().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// A Unix time in seconds, from 1970 to the year 9999.
fn reset(headers: &HeaderMap, name: &str) -> Option<UnixSeconds> {
    super::http::parse_unix_seconds(text(headers, name)?)
        .filter(|at| *at <= MAX_RESET)
        .map(UnixSeconds)
}

/// `true`/`false` (any case) or `1`/`0`.
fn flag(headers: &HeaderMap, name: &str) -> Option<bool> {
    match text(headers, name)? {
        "1" => Some(true),
        "0" => Some(false),
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn anthropic_reports_its_5h_and_7d_windows_as_percentages() {
        let limits = anthropic(&headers(&[
            ("anthropic-ratelimit-unified-status", "allowed_warning"),
            ("anthropic-ratelimit-unified-5h-utilization", "0.96"),
            ("anthropic-ratelimit-unified-5h-reset", "1767225600"),
            ("anthropic-ratelimit-unified-7d-utilization", "0.31"),
            ("anthropic-ratelimit-unified-7d-reset", "1767744000"),
        ]));
        assert_eq!(limits.percentages(), "5h 96%, 7d 31%");
        assert_eq!(
            limits.windows[0].resets_at,
            Some(UnixSeconds(1_767_225_600))
        );
        assert_eq!(
            limits.windows[1].resets_at,
            Some(UnixSeconds(1_767_744_000))
        );
        assert_eq!(limits.credits, None);
    }

    #[test]
    fn an_anthropic_window_without_a_readable_utilization_is_left_out() {
        let limits = anthropic(&headers(&[
            ("anthropic-ratelimit-unified-5h-utilization", "lots"),
            ("anthropic-ratelimit-unified-5h-reset", "1767225600"),
            ("anthropic-ratelimit-unified-7d-utilization", "0.5"),
            ("anthropic-ratelimit-unified-7d-reset", "-5"),
        ]));
        assert_eq!(limits.percentages(), "7d 50%");
        assert_eq!(limits.windows[0].resets_at, None);
        // An API key's headers name no window.
        let key = anthropic(&headers(&[
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2026-12-02T01:00:00Z"),
        ]));
        assert!(key.is_empty());
    }

    #[test]
    fn codex_names_its_windows_by_their_length_and_reads_the_credits() {
        let limits = codex(&headers(&[
            ("x-codex-primary-used-percent", "72.4"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "1767225600"),
            ("x-codex-secondary-used-percent", "12"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-secondary-reset-at", "1767744000"),
            ("x-codex-credits-has-credits", "True"),
            ("x-codex-credits-unlimited", "0"),
            ("x-codex-credits-balance", "12.50"),
        ]));
        assert_eq!(limits.percentages(), "5h 72%, weekly 12%");
        assert_eq!(
            limits.credits,
            Some(Credits {
                has_credits: true,
                unlimited: false,
                balance: Some("12.50".into()),
            })
        );
        // Without their lengths the windows are the 5-hour and the weekly one.
        let bare = codex(&headers(&[
            ("x-codex-primary-used-percent", "100"),
            ("x-codex-secondary-used-percent", "250"),
            ("x-codex-credits-unlimited", "true"),
            ("x-codex-credits-balance", "$5; rm -rf"),
        ]));
        assert_eq!(bare.percentages(), "5h 100%, weekly 100%");
        assert_eq!(
            bare.credits,
            Some(Credits {
                has_credits: false,
                unlimited: true,
                balance: None,
            })
        );
    }

    #[test]
    fn garbage_headers_give_nothing() {
        for value in [
            "NaN",
            "inf",
            "-inf",
            "-3",
            "",
            "0x10",
            "1e999",
            &"9".repeat(200),
        ] {
            let garbage = headers(&[
                ("anthropic-ratelimit-unified-5h-utilization", value),
                ("anthropic-ratelimit-unified-7d-utilization", value),
                ("x-codex-primary-used-percent", value),
                ("x-codex-secondary-used-percent", value),
                ("x-codex-credits-has-credits", value),
                ("x-codex-credits-unlimited", value),
            ]);
            assert!(anthropic(&garbage).is_empty(), "{value}");
            assert!(codex(&garbage).is_empty(), "{value}");
        }
        assert!(none(&headers(&[("x-codex-primary-used-percent", "50")])).is_empty());
    }

    const NAMES: [&str; 12] = [
        "anthropic-ratelimit-unified-5h-utilization",
        "anthropic-ratelimit-unified-5h-reset",
        "anthropic-ratelimit-unified-7d-utilization",
        "anthropic-ratelimit-unified-7d-reset",
        "x-codex-primary-used-percent",
        "x-codex-primary-window-minutes",
        "x-codex-primary-reset-at",
        "x-codex-secondary-used-percent",
        "x-codex-secondary-window-minutes",
        "x-codex-secondary-reset-at",
        "x-codex-credits-has-credits",
        "x-codex-credits-balance",
    ];

    proptest! {
        #[test]
        fn any_header_values_give_percentages_in_0_to_100_and_sane_resets(
            values in proptest::collection::vec(
                prop_oneof![
                    "[ -~]{0,60}",
                    any::<f64>().prop_map(|f| f.to_string()),
                    any::<i64>().prop_map(|i| i.to_string()),
                ],
                NAMES.len(),
            )
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in NAMES.iter().zip(&values) {
                if let Ok(value) = HeaderValue::from_str(value) {
                    map.insert(*name, value);
                }
            }
            for limits in [anthropic(&map), codex(&map)] {
                prop_assert!(limits.windows.len() <= 2);
                for window in &limits.windows {
                    prop_assert!(window.used_percent <= 100);
                    if let Some(at) = window.resets_at {
                        prop_assert!((0..=MAX_RESET).contains(&at.0));
                    }
                }
                if let Some(balance) = limits.credits.and_then(|c| c.balance) {
                    prop_assert!(balance.len() <= MAX_BALANCE_CHARS);
                }
            }
        }
    }
}
