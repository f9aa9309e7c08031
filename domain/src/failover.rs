//! Failover for one request over an ordered list of buckets (cli.md "Failover").
//!
//! A [`FailoverRequest`] is a small state machine driven by the service that sends the request:
//! it says which bucket to use ([`Decision::Use`]), the service sends and reports the
//! [`Outcome`], and the machine answers with the next decision until the request is
//! [`Decision::Done`], [`Decision::Exhausted`] or [`Decision::GiveUp`]. Each request starts at the
//! first usable bucket in priority order, tries each bucket at most once and refreshes each at
//! most once. The machine also updates every bucket's [`BucketHealth`], which the service keeps
//! between requests: a rate-limited bucket cools down until its reset time and rejoins by itself
//! once that passes.

use std::collections::HashSet;
use std::fmt;

use crate::bucket::BucketName;
use crate::time::UnixSeconds;
use crate::token::{Freshness, Token};

/// How long a bucket cools down after a `429` or `402` that carries no reset time.
pub const DEFAULT_COOLDOWN_SECONDS: i64 = 60;

/// Why a bucket is cooling down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CooldownCause {
    /// `429`: a rate limit.
    RateLimited,
    /// `402`: payment or quota.
    PaymentRequired,
    /// The provider's own figures put one of the account's windows at or above
    /// `failover.switch_at_percent`: requests move on before the provider refuses.
    NearLimit,
}

impl fmt::Display for CooldownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RateLimited => "rate limited",
            Self::PaymentRequired => "payment or quota required",
            Self::NearLimit => "near its usage limit",
        })
    }
}

/// Why a bucket needs a new login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginCause {
    /// `403`: the grant was revoked or the account is forbidden.
    Forbidden,
    /// The provider rejected the refresh token.
    RefreshRejected,
    /// The bucket holds no token at all.
    NoToken,
}

impl fmt::Display for LoginCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Forbidden => "access forbidden or revoked",
            Self::RefreshRejected => "refresh token rejected",
            Self::NoToken => "not logged in",
        })
    }
}

/// Why a provider refuses an account to llxprt as a matter of policy (providers.md, "How the real
/// services answer today"): no retry, refresh or wait changes it, only another login (another
/// account, or the same one after the provider changed its mind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCause {
    /// Anthropic: the credential `is only authorized for use with Claude Code`.
    ClaudeCodeOnly,
    /// Gemini: `UNSUPPORTED_CLIENT`, Code Assist no longer serves personal accounts to this
    /// client.
    UnsupportedClient,
    /// Qwen: the free OAuth tier ended; its tokens are refused even after a refresh.
    TierEnded,
}

impl RefusalCause {
    /// What still works instead, for the line that tells the user about the refusal.
    pub fn what_works(self) -> &'static str {
        match self {
            Self::ClaudeCodeOnly => "use an Anthropic API key (ANTHROPIC_API_KEY or /key), or another provider",
            Self::UnsupportedClient => "use a Gemini API key (GEMINI_API_KEY or /key), or a Google Workspace or Code Assist Standard/Enterprise account with providers.gemini.project set",
            Self::TierEnded => "use a DashScope API key (DASHSCOPE_API_KEY or /key)",
        }
    }
}

impl fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClaudeCodeOnly => "credential only authorized for Claude Code",
            Self::UnsupportedClient => "client no longer supported for this account",
            Self::TierEnded => "Qwen's free OAuth tier has ended",
        })
    }
}

/// What the service knows about a bucket between requests.
///
/// `NeedsLogin` and `Refused` stay until a login gives the bucket a new token (or the user clears
/// the mark); the service then sets the bucket back to `Usable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketHealth {
    /// Nothing known against it.
    Usable,
    /// Rate limited or out of quota until `until`; usable again from that moment on.
    CoolingUntil {
        /// When the provider's limit resets.
        until: UnixSeconds,
        /// Which response started the cooldown.
        cause: CooldownCause,
    },
    /// Unusable until the user logs in again.
    NeedsLogin {
        /// What showed that the bucket needs a login.
        cause: LoginCause,
    },
    /// The provider refuses this account to llxprt: skipped until it logs in again.
    Refused {
        /// The provider's reason.
        cause: RefusalCause,
    },
}

impl BucketHealth {
    /// Whether a request may use the bucket at `now`: a cooldown whose end has come no longer
    /// counts.
    pub fn is_usable_at(&self, now: UnixSeconds) -> bool {
        match self {
            Self::Usable => true,
            Self::CoolingUntil { until, .. } => *until <= now,
            Self::NeedsLogin { .. } | Self::Refused { .. } => false,
        }
    }
}

/// What happened when the service used the bucket it was told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The provider answered.
    Success,
    /// `429`, with the reset time from `retry-after` or the provider's reset header, if any.
    RateLimited {
        /// When the limit resets, if the provider said.
        reset_at: Option<UnixSeconds>,
    },
    /// `402` (or a quota error), with the reset time if the provider gave one.
    PaymentRequired {
        /// When the quota resets, if the provider said.
        reset_at: Option<UnixSeconds>,
    },
    /// `401`.
    Unauthorized,
    /// `403`: revoked or forbidden.
    Forbidden,
    /// A policy refusal of the account (see [`RefusalCause`]).
    Refused {
        /// The provider's reason.
        cause: RefusalCause,
    },
    /// Refreshing the bucket's token failed, either before sending (it had expired) or after
    /// [`Decision::RefreshThenRetry`].
    RefreshFailed {
        /// The provider rejected the refresh token (rather than a network or server failure).
        needs_login: bool,
    },
    /// The bucket holds no token and none could be obtained without the user.
    NoToken,
    /// A network error or a `5xx`: not the bucket's fault. Load balancing, not bucket failover,
    /// handles it.
    Transient,
}

/// Why a bucket is not used (any more) by the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Cooling down until `until`.
    Cooling {
        /// When the bucket becomes usable again.
        until: UnixSeconds,
        /// Which response started the cooldown.
        cause: CooldownCause,
    },
    /// Needs a new login.
    NeedsLogin {
        /// What showed it.
        cause: LoginCause,
    },
    /// Its token could not be refreshed for a reason that may pass (network, server); skipped
    /// for this request only.
    RefreshFailed,
    /// Still `401` after a successful refresh; skipped for this request only.
    StillUnauthorized,
    /// The provider refuses the account to llxprt.
    Refused {
        /// The provider's reason.
        cause: RefusalCause,
    },
}

/// Shown after the bucket's name; a cooldown's end is left to the caller, which knows the
/// user's time zone.
impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cooling { cause, .. } => cause.fmt(f),
            Self::NeedsLogin { cause } => write!(f, "needs login ({cause})"),
            Self::RefreshFailed => f.write_str("token refresh failed"),
            Self::StillUnauthorized => f.write_str("unauthorized even after a refresh"),
            Self::Refused { cause } => write!(f, "refused by the provider ({cause})"),
        }
    }
}

/// One bucket of an exhausted request and why it could not serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketReport {
    /// The bucket.
    pub bucket: BucketName,
    /// Why it was not (or no longer) used.
    pub reason: SkipReason,
}

/// Every bucket of a request that found none left, and when one becomes usable again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExhaustedReport {
    /// Every bucket, in priority order, with its reason.
    pub buckets: Vec<BucketReport>,
    /// The earliest end of a cooldown among them; `None` when no bucket is cooling down (every
    /// one needs a login or was skipped for a reason that does not pass with time).
    pub earliest_usable: Option<UnixSeconds>,
}

impl ExhaustedReport {
    /// The line that opens the error shown to the user (after `Error: `).
    pub const HEADLINE: &'static str =
        "All OAuth buckets exhausted. Please wait for rate limits to reset.";
}

/// What the service does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the request with this bucket's token, then [`FailoverRequest::record`] the outcome.
    Use(BucketName),
    /// Refresh this bucket's token even if it looks fresh (the provider refused it), then send
    /// the request again with it and record the outcome; when the refresh fails, record
    /// [`Outcome::RefreshFailed`] instead.
    RefreshThenRetry(BucketName),
    /// The request succeeded.
    Done,
    /// No bucket is left for this request.
    Exhausted(ExhaustedReport),
    /// The request failed for a reason no other bucket would fix (network, `5xx`) while using
    /// this bucket, whose health is unchanged.
    GiveUp(BucketName),
}

/// A request left one bucket for another: one failover, for the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The bucket left.
    pub from: BucketName,
    /// The bucket used next.
    pub to: BucketName,
    /// Why `from` was left.
    pub because: SkipReason,
}

/// One outcome recorded for a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The bucket used.
    pub bucket: BucketName,
    /// What happened.
    pub outcome: Outcome,
}

/// What this request did with one bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    refreshed: bool,
    left_because: Option<SkipReason>,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for the outcome of using this bucket.
    Sending(usize),
    /// Waiting for the outcome of refreshing this bucket and sending again.
    Retrying(usize),
    /// Nothing more to do; any further record gets this decision again.
    Finished(Decision),
}

/// The failover state of one request. See the [module documentation](self).
///
/// ```
/// use llxprt_domain::{BucketHealth, BucketName, Decision, FailoverRequest, Outcome, UnixSeconds};
///
/// let now = UnixSeconds(1_767_225_600);
/// let name = |n: &str| BucketName::parse(n).unwrap();
/// let buckets = vec![(name("work1"), BucketHealth::Usable), (name("work2"), BucketHealth::Usable)];
///
/// let (mut request, first) = FailoverRequest::start(buckets, now);
/// assert_eq!(first, Decision::Use(name("work1")));
/// // work1 answers 429 with a reset a minute away: the request moves on to work2 at once.
/// let reset_at = Some(now + 60);
/// assert_eq!(request.record(Outcome::RateLimited { reset_at }, now), Decision::Use(name("work2")));
/// assert_eq!(request.record(Outcome::Success, now), Decision::Done);
///
/// // The next request leaves work1 alone until its reset, then takes it again.
/// let health = request.into_health();
/// assert_eq!(FailoverRequest::start(health.clone(), now + 30).1, Decision::Use(name("work2")));
/// assert_eq!(FailoverRequest::start(health, now + 60).1, Decision::Use(name("work1")));
/// ```
#[derive(Debug, Clone)]
pub struct FailoverRequest {
    health: Vec<(BucketName, BucketHealth)>,
    /// What a `401` that a refresh did not cure means for this provider, if it is a refusal.
    repeated_unauthorized: Option<RefusalCause>,
    progress: Vec<Progress>,
    phase: Phase,
    attempts: Vec<Attempt>,
    switches: Vec<Switch>,
}

impl FailoverRequest {
    /// Starts a request over `buckets` (priority order, with their health) at `now`, and says
    /// which bucket to use first.
    ///
    /// A bucket named twice is kept once, at its first place. Cooldowns that have ended are
    /// cleared.
    pub fn start(buckets: Vec<(BucketName, BucketHealth)>, now: UnixSeconds) -> (Self, Decision) {
        let mut health: Vec<(BucketName, BucketHealth)> = Vec::with_capacity(buckets.len());
        // A set, not a scan of `health`: a profile may name a thousand buckets.
        let mut named = HashSet::with_capacity(buckets.len());
        for (name, state) in buckets {
            if !named.insert(name.clone()) {
                continue;
            }
            let state = if state.is_usable_at(now) {
                BucketHealth::Usable
            } else {
                state
            };
            health.push((name, state));
        }
        let mut request = Self {
            progress: vec![Progress::default(); health.len()],
            health,
            repeated_unauthorized: None,
            // Replaced at once: `move_on` always sets the phase.
            phase: Phase::Finished(Decision::Done),
            attempts: Vec::new(),
            switches: Vec::new(),
        };
        let decision = request.move_on(None, now);
        (request, decision)
    }

    /// Says that a `401` that persists after the bucket's refresh is the provider refusing the
    /// account (Qwen's ended free tier) rather than a passing fault: the bucket is then marked
    /// refused instead of being skipped for this request only.
    pub fn treat_repeated_unauthorized_as(&mut self, cause: Option<RefusalCause>) {
        self.repeated_unauthorized = cause;
    }

    /// Records what happened with the bucket of the last [`Decision::Use`] or
    /// [`Decision::RefreshThenRetry`] at `now`, and says what to do next.
    ///
    /// Once the request is finished, the outcome is ignored and the final decision repeated.
    pub fn record(&mut self, outcome: Outcome, now: UnixSeconds) -> Decision {
        let (index, retrying) = match &self.phase {
            Phase::Sending(index) => (*index, false),
            Phase::Retrying(index) => (*index, true),
            Phase::Finished(decision) => return decision.clone(),
        };
        let name = self.health[index].0.clone();
        self.attempts.push(Attempt {
            bucket: name.clone(),
            outcome,
        });
        let reason = match outcome {
            Outcome::Success => return self.finish(Decision::Done),
            Outcome::Transient => return self.finish(Decision::GiveUp(name)),
            Outcome::Unauthorized if !retrying => {
                self.progress[index].refreshed = true;
                self.phase = Phase::Retrying(index);
                return Decision::RefreshThenRetry(name);
            }
            Outcome::Unauthorized => match self.repeated_unauthorized {
                Some(cause) => self.refuse(index, cause),
                None => SkipReason::StillUnauthorized,
            },
            Outcome::Refused { cause } => self.refuse(index, cause),
            Outcome::RateLimited { reset_at } => {
                self.cool(index, reset_at, CooldownCause::RateLimited, now)
            }
            Outcome::PaymentRequired { reset_at } => {
                self.cool(index, reset_at, CooldownCause::PaymentRequired, now)
            }
            Outcome::Forbidden => self.needs_login(index, LoginCause::Forbidden),
            Outcome::NoToken => self.needs_login(index, LoginCause::NoToken),
            Outcome::RefreshFailed { needs_login } => {
                // A refresh made before the first send (the token had expired) counts as this
                // bucket's one refresh too.
                self.progress[index].refreshed = true;
                if needs_login {
                    self.needs_login(index, LoginCause::RefreshRejected)
                } else {
                    SkipReason::RefreshFailed
                }
            }
        };
        self.progress[index].left_because = Some(reason);
        self.move_on(Some(index), now)
    }

    /// Every bucket's health as this request leaves it, in priority order, for the service to
    /// keep for the next request.
    pub fn health(&self) -> &[(BucketName, BucketHealth)] {
        &self.health
    }

    /// The buckets' health, consuming the request.
    pub fn into_health(self) -> Vec<(BucketName, BucketHealth)> {
        self.health
    }

    /// Every outcome recorded, in order.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// Every time the request left a bucket for another, in order.
    pub fn switches(&self) -> &[Switch] {
        &self.switches
    }

    /// Whether the request has reached `Done`, `Exhausted` or `GiveUp`.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// Why a bucket cannot serve this request at `now`, or `None` when it can.
    fn unavailable_because(&self, index: usize, now: UnixSeconds) -> Option<SkipReason> {
        if let Some(reason) = self.progress[index].left_because {
            return Some(reason);
        }
        match self.health[index].1 {
            BucketHealth::Usable => None,
            BucketHealth::CoolingUntil { until, .. } if until <= now => None,
            BucketHealth::CoolingUntil { until, cause } => {
                Some(SkipReason::Cooling { until, cause })
            }
            BucketHealth::NeedsLogin { cause } => Some(SkipReason::NeedsLogin { cause }),
            BucketHealth::Refused { cause } => Some(SkipReason::Refused { cause }),
        }
    }

    /// Takes the first bucket that can still serve the request, or reports exhaustion. `from` is
    /// the bucket just left, if any.
    fn move_on(&mut self, from: Option<usize>, now: UnixSeconds) -> Decision {
        let next = (0..self.health.len()).find(|&i| self.unavailable_because(i, now).is_none());
        let Some(next) = next else {
            let buckets: Vec<BucketReport> = (0..self.health.len())
                .filter_map(|i| {
                    self.unavailable_because(i, now).map(|reason| BucketReport {
                        bucket: self.health[i].0.clone(),
                        reason,
                    })
                })
                .collect();
            let earliest_usable = buckets
                .iter()
                .filter_map(|report| match report.reason {
                    SkipReason::Cooling { until, .. } => Some(until),
                    _ => None,
                })
                .min();
            return self.finish(Decision::Exhausted(ExhaustedReport {
                buckets,
                earliest_usable,
            }));
        };
        self.health[next].1 = BucketHealth::Usable;
        let to = self.health[next].0.clone();
        if let Some(from) = from {
            if let Some(because) = self.progress[from].left_because {
                self.switches.push(Switch {
                    from: self.health[from].0.clone(),
                    to: to.clone(),
                    because,
                });
            }
        }
        self.phase = Phase::Sending(next);
        Decision::Use(to)
    }

    /// Cools a bucket down until the reset time, or for the default period when none was given.
    /// A reset already past ends the cooldown at once rather than in the past.
    fn cool(
        &mut self,
        index: usize,
        reset_at: Option<UnixSeconds>,
        cause: CooldownCause,
        now: UnixSeconds,
    ) -> SkipReason {
        let until = reset_at.unwrap_or(now + DEFAULT_COOLDOWN_SECONDS).max(now);
        self.health[index].1 = BucketHealth::CoolingUntil { until, cause };
        SkipReason::Cooling { until, cause }
    }

    fn refuse(&mut self, index: usize, cause: RefusalCause) -> SkipReason {
        self.health[index].1 = BucketHealth::Refused { cause };
        SkipReason::Refused { cause }
    }

    fn needs_login(&mut self, index: usize, cause: LoginCause) -> SkipReason {
        self.health[index].1 = BucketHealth::NeedsLogin { cause };
        SkipReason::NeedsLogin { cause }
    }

    fn finish(&mut self, decision: Decision) -> Decision {
        self.phase = Phase::Finished(decision.clone());
        decision
    }
}

/// A bucket's state as `/auth P status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketStatus {
    /// `[ok] NAME (expires in 59 minutes)`.
    Ok {
        /// Seconds until the access token expires.
        seconds_left: i64,
    },
    /// `[expired] NAME`: the access token has expired but a refresh token will renew it.
    Expired,
    /// `[cooldown] NAME (until HH:MM)`.
    Cooldown {
        /// When the cooldown ends.
        until: UnixSeconds,
    },
    /// `[needs login] NAME`: no token, no way to refresh it, or marked by a `403` or a rejected
    /// refresh.
    NeedsLogin,
    /// `[refused] NAME (REASON)`: the provider refuses this account to llxprt.
    Refused {
        /// The provider's reason.
        cause: RefusalCause,
    },
}

/// The status of one bucket at `now`, from its stored token (if any) and its health.
///
/// A missing token outranks a refusal, which outranks a login problem, a cooldown and expiry: each says what the user must do
/// or wait for first.
pub fn bucket_status(
    token: Option<&Token>,
    health: &BucketHealth,
    now: UnixSeconds,
) -> BucketStatus {
    let Some(token) = token else {
        return BucketStatus::NeedsLogin;
    };
    match *health {
        BucketHealth::Refused { cause } => BucketStatus::Refused { cause },
        BucketHealth::NeedsLogin { .. } => BucketStatus::NeedsLogin,
        BucketHealth::CoolingUntil { until, .. } if until > now => BucketStatus::Cooldown { until },
        _ if token.freshness(now) == Freshness::Expired => {
            let refreshable = token.refresh_token.as_ref().is_some_and(|r| !r.is_empty());
            if refreshable {
                BucketStatus::Expired
            } else {
                BucketStatus::NeedsLogin
            }
        }
        _ => BucketStatus::Ok {
            seconds_left: token.seconds_left(now),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    const NOW: UnixSeconds = UnixSeconds(1_000_000);

    fn name(text: &str) -> BucketName {
        BucketName::parse(text).unwrap()
    }

    fn usable(names: &[&str]) -> Vec<(BucketName, BucketHealth)> {
        names
            .iter()
            .map(|n| (name(n), BucketHealth::Usable))
            .collect()
    }

    fn health_of(request: &FailoverRequest, bucket: &str) -> BucketHealth {
        request
            .health()
            .iter()
            .find(|(n, _)| n.as_str() == bucket)
            .map(|(_, h)| *h)
            .unwrap()
    }

    fn use_(bucket: &str) -> Decision {
        Decision::Use(name(bucket))
    }

    #[test]
    fn starts_at_the_first_usable_bucket() {
        let mut buckets = usable(&["a", "b", "c"]);
        buckets[0].1 = BucketHealth::NeedsLogin {
            cause: LoginCause::Forbidden,
        };
        buckets[1].1 = BucketHealth::CoolingUntil {
            until: NOW + 10,
            cause: CooldownCause::RateLimited,
        };
        let (_, decision) = FailoverRequest::start(buckets, NOW);
        assert_eq!(decision, use_("c"));
    }

    #[test]
    fn a_success_finishes_the_request_on_the_primary() {
        let (mut request, first) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        assert_eq!(first, use_("a"));
        assert_eq!(request.record(Outcome::Success, NOW), Decision::Done);
        assert!(request.is_finished());
        assert!(request.switches().is_empty());
        assert_eq!(request.record(Outcome::Forbidden, NOW), Decision::Done);
        assert_eq!(health_of(&request, "a"), BucketHealth::Usable);
    }

    #[test]
    fn a_rate_limit_switches_at_once_and_cools_until_the_reset() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        let reset = NOW + 300;
        let next = request.record(
            Outcome::RateLimited {
                reset_at: Some(reset),
            },
            NOW,
        );
        assert_eq!(next, use_("b"));
        assert_eq!(
            health_of(&request, "a"),
            BucketHealth::CoolingUntil {
                until: reset,
                cause: CooldownCause::RateLimited
            }
        );
        assert_eq!(
            request.switches(),
            [Switch {
                from: name("a"),
                to: name("b"),
                because: SkipReason::Cooling {
                    until: reset,
                    cause: CooldownCause::RateLimited
                }
            }]
        );
    }

    #[test]
    fn a_refusal_switches_marks_the_bucket_and_reports_the_reason() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        let cause = RefusalCause::ClaudeCodeOnly;
        assert_eq!(request.record(Outcome::Refused { cause }, NOW), use_("b"));
        assert_eq!(health_of(&request, "a"), BucketHealth::Refused { cause });
        let (mut again, first) = FailoverRequest::start(request.into_health(), NOW + 100_000);
        assert_eq!(first, use_("b"), "a refusal does not pass with time");
        let Decision::Exhausted(report) = again.record(Outcome::Forbidden, NOW) else {
            panic!("expected exhaustion");
        };
        assert_eq!(report.buckets[0].reason, SkipReason::Refused { cause });
        assert_eq!(report.earliest_usable, None);
        assert_eq!(
            report.buckets[0].reason.to_string(),
            "refused by the provider (credential only authorized for Claude Code)"
        );
    }

    #[test]
    fn a_401_that_a_refresh_does_not_cure_is_a_refusal_where_the_provider_says_so() {
        for (treat, expected) in [
            (None, BucketHealth::Usable),
            (
                Some(RefusalCause::TierEnded),
                BucketHealth::Refused {
                    cause: RefusalCause::TierEnded,
                },
            ),
        ] {
            let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
            request.treat_repeated_unauthorized_as(treat);
            assert_eq!(
                request.record(Outcome::Unauthorized, NOW),
                Decision::RefreshThenRetry(name("a"))
            );
            assert_eq!(request.record(Outcome::Unauthorized, NOW), use_("b"));
            assert_eq!(health_of(&request, "a"), expected);
        }
    }

    #[test]
    fn a_rate_limit_without_a_reset_time_cools_for_sixty_seconds() {
        let (mut request, _) = FailoverRequest::start(usable(&["a"]), NOW);
        let Decision::Exhausted(report) =
            request.record(Outcome::RateLimited { reset_at: None }, NOW + 5)
        else {
            panic!("expected exhaustion");
        };
        assert_eq!(report.earliest_usable, Some(NOW + 65));
    }

    #[test]
    fn a_reset_time_already_past_ends_the_cooldown_at_once() {
        let (mut request, _) = FailoverRequest::start(usable(&["a"]), NOW);
        request.record(
            Outcome::RateLimited {
                reset_at: Some(NOW - 100),
            },
            NOW,
        );
        let (_, again) = FailoverRequest::start(request.into_health(), NOW);
        assert_eq!(again, use_("a"));
    }

    #[test]
    fn payment_required_switches_and_cools_the_same_way() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        let next = request.record(Outcome::PaymentRequired { reset_at: None }, NOW);
        assert_eq!(next, use_("b"));
        // Without a reset time the bucket sits out a while (not the next request), and is
        // back within the hour.
        let BucketHealth::CoolingUntil { until, cause } = health_of(&request, "a") else {
            panic!("a does not cool down");
        };
        assert_eq!(cause, CooldownCause::PaymentRequired);
        assert!(until > NOW, "a 402 without a reset is retried at once");
        let health = request.into_health();
        assert_eq!(FailoverRequest::start(health.clone(), NOW).1, use_("b"));
        assert_eq!(FailoverRequest::start(health, NOW + 3600).1, use_("a"));
    }

    #[test]
    fn unauthorized_refreshes_once_and_retries_the_same_bucket() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        assert_eq!(
            request.record(Outcome::Unauthorized, NOW),
            Decision::RefreshThenRetry(name("a"))
        );
        assert_eq!(request.record(Outcome::Success, NOW), Decision::Done);
        assert!(request.switches().is_empty());
    }

    #[test]
    fn unauthorized_again_after_the_refresh_switches_without_marking_the_bucket() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        request.record(Outcome::Unauthorized, NOW);
        assert_eq!(request.record(Outcome::Unauthorized, NOW), use_("b"));
        assert_eq!(health_of(&request, "a"), BucketHealth::Usable);
        assert_eq!(request.switches()[0].because, SkipReason::StillUnauthorized);
    }

    #[test]
    fn a_rejected_refresh_after_a_401_marks_needs_login_and_switches() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        request.record(Outcome::Unauthorized, NOW);
        assert_eq!(
            request.record(Outcome::RefreshFailed { needs_login: true }, NOW),
            use_("b")
        );
        assert_eq!(
            health_of(&request, "a"),
            BucketHealth::NeedsLogin {
                cause: LoginCause::RefreshRejected
            }
        );
    }

    #[test]
    fn a_refresh_that_failed_transiently_skips_the_bucket_for_this_request_only() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        request.record(Outcome::Unauthorized, NOW);
        assert_eq!(
            request.record(Outcome::RefreshFailed { needs_login: false }, NOW),
            use_("b")
        );
        assert_eq!(health_of(&request, "a"), BucketHealth::Usable);
        let (_, next_request) = FailoverRequest::start(request.into_health(), NOW);
        assert_eq!(next_request, use_("a"));
    }

    #[test]
    fn an_expired_token_that_cannot_be_refreshed_is_skipped() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        // The service refreshes an expired token before sending; that refresh failed.
        assert_eq!(
            request.record(Outcome::RefreshFailed { needs_login: true }, NOW),
            use_("b")
        );
        assert_eq!(
            request.record(Outcome::Unauthorized, NOW),
            Decision::RefreshThenRetry(name("b"))
        );
    }

    #[test]
    fn forbidden_marks_needs_login_and_switches() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        assert_eq!(request.record(Outcome::Forbidden, NOW), use_("b"));
        assert_eq!(
            health_of(&request, "a"),
            BucketHealth::NeedsLogin {
                cause: LoginCause::Forbidden
            }
        );
        let (_, next_request) = FailoverRequest::start(request.into_health(), NOW + 10_000);
        assert_eq!(next_request, use_("b"));
    }

    #[test]
    fn a_bucket_without_a_token_needs_login() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        assert_eq!(request.record(Outcome::NoToken, NOW), use_("b"));
        assert_eq!(
            health_of(&request, "a"),
            BucketHealth::NeedsLogin {
                cause: LoginCause::NoToken
            }
        );
    }

    #[test]
    fn a_transient_error_gives_up_and_leaves_health_alone() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b"]), NOW);
        assert_eq!(
            request.record(Outcome::Transient, NOW),
            Decision::GiveUp(name("a"))
        );
        assert_eq!(request.health(), usable(&["a", "b"]).as_slice());
        assert!(request.is_finished());
    }

    #[test]
    fn exhaustion_lists_every_bucket_with_its_reason_and_the_earliest_reset() {
        let mut buckets = usable(&["a", "b", "c", "d"]);
        buckets[3].1 = BucketHealth::CoolingUntil {
            until: NOW + 900,
            cause: CooldownCause::PaymentRequired,
        };
        let (mut request, _) = FailoverRequest::start(buckets, NOW);
        request.record(
            Outcome::RateLimited {
                reset_at: Some(NOW + 120),
            },
            NOW,
        );
        request.record(Outcome::Forbidden, NOW + 1);
        request.record(Outcome::Unauthorized, NOW + 2);
        let Decision::Exhausted(report) =
            request.record(Outcome::RefreshFailed { needs_login: false }, NOW + 3)
        else {
            panic!("expected exhaustion");
        };
        let reasons: Vec<(&str, SkipReason)> = report
            .buckets
            .iter()
            .map(|r| (r.bucket.as_str(), r.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "a",
                    SkipReason::Cooling {
                        until: NOW + 120,
                        cause: CooldownCause::RateLimited
                    }
                ),
                (
                    "b",
                    SkipReason::NeedsLogin {
                        cause: LoginCause::Forbidden
                    }
                ),
                ("c", SkipReason::RefreshFailed),
                (
                    "d",
                    SkipReason::Cooling {
                        until: NOW + 900,
                        cause: CooldownCause::PaymentRequired
                    }
                ),
            ]
        );
        assert_eq!(report.earliest_usable, Some(NOW + 120));
    }

    #[test]
    fn when_every_bucket_needs_login_no_time_is_promised() {
        let buckets = vec![(
            name("a"),
            BucketHealth::NeedsLogin {
                cause: LoginCause::NoToken,
            },
        )];
        let (_, decision) = FailoverRequest::start(buckets, NOW);
        let Decision::Exhausted(report) = decision else {
            panic!("expected exhaustion");
        };
        assert_eq!(report.earliest_usable, None);
        assert_eq!(report.buckets.len(), 1);
    }

    #[test]
    fn a_bucket_named_twice_is_tried_once() {
        let (mut request, _) = FailoverRequest::start(usable(&["a", "b", "a"]), NOW);
        request.record(Outcome::Forbidden, NOW);
        assert!(matches!(
            request.record(Outcome::Forbidden, NOW),
            Decision::Exhausted(_)
        ));
        assert_eq!(request.health().len(), 2);
    }

    #[test]
    fn a_bucket_named_twice_keeps_its_first_place() {
        let (request, decision) = FailoverRequest::start(usable(&["b", "a", "b", "c", "a"]), NOW);
        assert_eq!(decision, Decision::Use(name("b")));
        let order: Vec<&str> = request.health().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn a_cooldown_that_ends_during_the_request_lets_the_bucket_in() {
        let mut buckets = usable(&["a", "b"]);
        buckets[1].1 = BucketHealth::CoolingUntil {
            until: NOW + 5,
            cause: CooldownCause::RateLimited,
        };
        let (mut request, _) = FailoverRequest::start(buckets, NOW);
        assert_eq!(request.record(Outcome::Forbidden, NOW + 5), use_("b"));
        assert_eq!(health_of(&request, "b"), BucketHealth::Usable);
    }

    fn token(expiry: UnixSeconds, refresh: Option<&str>) -> Token {
        let mut token = Token::new(Secret::new("at"), expiry);
        token.refresh_token = refresh.map(Secret::new);
        token
    }

    #[test]
    fn status_of_a_fresh_token_is_ok_with_its_time_left() {
        let t = token(NOW + 3540, None);
        assert_eq!(
            bucket_status(Some(&t), &BucketHealth::Usable, NOW),
            BucketStatus::Ok { seconds_left: 3540 }
        );
    }

    #[test]
    fn status_of_an_expired_token_depends_on_its_refresh_token() {
        let refreshable = token(NOW - 1, Some("rt"));
        let stuck = token(NOW - 1, None);
        assert_eq!(
            bucket_status(Some(&refreshable), &BucketHealth::Usable, NOW),
            BucketStatus::Expired
        );
        assert_eq!(
            bucket_status(Some(&stuck), &BucketHealth::Usable, NOW),
            BucketStatus::NeedsLogin
        );
    }

    #[test]
    fn status_without_a_token_or_marked_is_needs_login() {
        let fresh = token(NOW + 3600, Some("rt"));
        assert_eq!(
            bucket_status(None, &BucketHealth::Usable, NOW),
            BucketStatus::NeedsLogin
        );
        let marked = BucketHealth::NeedsLogin {
            cause: LoginCause::Forbidden,
        };
        assert_eq!(
            bucket_status(Some(&fresh), &marked, NOW),
            BucketStatus::NeedsLogin
        );
    }

    #[test]
    fn status_of_a_refused_bucket_with_a_token_is_refused() {
        let fresh = token(NOW + 600, Some("r"));
        let refused = BucketHealth::Refused {
            cause: RefusalCause::TierEnded,
        };
        assert_eq!(
            bucket_status(Some(&fresh), &refused, NOW),
            BucketStatus::Refused {
                cause: RefusalCause::TierEnded
            }
        );
        assert_eq!(bucket_status(None, &refused, NOW), BucketStatus::NeedsLogin);
    }

    #[test]
    fn status_shows_a_cooldown_until_it_ends() {
        let fresh = token(NOW + 3600, Some("rt"));
        let cooling = BucketHealth::CoolingUntil {
            until: NOW + 60,
            cause: CooldownCause::RateLimited,
        };
        assert_eq!(
            bucket_status(Some(&fresh), &cooling, NOW),
            BucketStatus::Cooldown { until: NOW + 60 }
        );
        assert_eq!(
            bucket_status(Some(&fresh), &cooling, NOW + 60),
            BucketStatus::Ok { seconds_left: 3540 }
        );
    }

    // ---- properties: the service loop driven by random buckets, health and outcomes ----

    fn any_health() -> impl Strategy<Value = BucketHealth> {
        crate::strategies::health_around(NOW)
    }

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        crate::strategies::outcome_around(NOW)
    }

    /// Buckets in priority order with their health.
    type Buckets = Vec<(BucketName, BucketHealth)>;
    /// Outcomes to report, each with the seconds that pass before it is reported.
    type Script = Vec<(Outcome, i64)>;

    /// Random buckets (distinct names) and a random script.
    fn any_scenario() -> impl Strategy<Value = (Buckets, Script)> {
        (
            prop::collection::vec(any_health(), 0..7),
            prop::collection::vec((any_outcome(), 0i64..40), 0..20),
        )
            .prop_map(|(health, script)| {
                let buckets = health
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| (name(&format!("b{i}")), h))
                    .collect();
                (buckets, script)
            })
    }

    /// One step of the simulated service loop: the decision and the time it was made at.
    #[derive(Debug)]
    struct Step {
        at: UnixSeconds,
        decision: Decision,
        /// The outcome the service reported in answer, if it reported one.
        answered: Option<Outcome>,
    }

    /// Runs the service loop: `Use` → send and report the outcome; `RefreshThenRetry` → report
    /// the refresh's failure or the retry's outcome. Once the script runs out every send
    /// succeeds. Bounded by two steps per bucket plus one.
    fn simulate(
        buckets: &[(BucketName, BucketHealth)],
        script: &[(Outcome, i64)],
    ) -> (FailoverRequest, Vec<Step>) {
        let (mut request, mut decision) = FailoverRequest::start(buckets.to_vec(), NOW);
        let mut now = NOW;
        let mut steps = Vec::new();
        let mut script = script.iter();
        for _ in 0..=2 * buckets.len() + 1 {
            let waiting = matches!(decision, Decision::Use(_) | Decision::RefreshThenRetry(_));
            if !waiting {
                steps.push(Step {
                    at: now,
                    decision,
                    answered: None,
                });
                return (request, steps);
            }
            let (outcome, elapsed) = script.next().copied().unwrap_or((Outcome::Success, 0));
            let decided_at = now;
            now = now + elapsed;
            let next = request.record(outcome, now);
            steps.push(Step {
                at: decided_at,
                decision,
                answered: Some(outcome),
            });
            decision = next;
        }
        panic!("the request did not finish within its bound: {steps:?}");
    }

    fn input_health(buckets: &[(BucketName, BucketHealth)], bucket: &BucketName) -> BucketHealth {
        buckets.iter().find(|(n, _)| n == bucket).unwrap().1
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_request_finishes_within_two_steps_per_bucket((buckets, script) in any_scenario()) {
            let (request, steps) = simulate(&buckets, &script);
            prop_assert!(request.is_finished());
            prop_assert!(steps.len() <= 2 * buckets.len() + 1);
        }

        #[test]
        fn never_selects_a_cooling_bucket((buckets, script) in any_scenario()) {
            let (_, steps) = simulate(&buckets, &script);
            for step in &steps {
                if let Decision::Use(bucket) = &step.decision {
                    if let BucketHealth::CoolingUntil { until, .. } = input_health(&buckets, bucket) {
                        prop_assert!(until <= step.at, "used {} cooling until {} at {}", bucket, until, step.at);
                    }
                }
            }
        }

        #[test]
        fn never_selects_a_needs_login_bucket((buckets, script) in any_scenario()) {
            let (_, steps) = simulate(&buckets, &script);
            for step in &steps {
                if let Decision::Use(bucket) = &step.decision {
                    let marked = matches!(input_health(&buckets, bucket), BucketHealth::NeedsLogin { .. });
                    prop_assert!(!marked, "used {} which needs login", bucket);
                }
            }
        }

        #[test]
        fn never_selects_a_refused_bucket((buckets, script) in any_scenario()) {
            let (request, steps) = simulate(&buckets, &script);
            for step in &steps {
                if let Decision::Use(bucket) = &step.decision {
                    let refused = matches!(input_health(&buckets, bucket), BucketHealth::Refused { .. });
                    prop_assert!(!refused, "used {} which the provider refuses", bucket);
                }
            }
            // And the next request does not either: a refusal is kept until a login.
            let (_, next) = simulate(request.health(), &[]);
            for step in &next {
                if let Decision::Use(bucket) = &step.decision {
                    let refused = matches!(input_health(request.health(), bucket), BucketHealth::Refused { .. });
                    prop_assert!(!refused, "the next request used {} which the provider refuses", bucket);
                }
            }
        }

        #[test]
        fn a_refusal_marks_the_bucket_and_moves_on((buckets, script) in any_scenario()) {
            let (request, steps) = simulate(&buckets, &script);
            for (i, step) in steps.iter().enumerate() {
                let (Decision::Use(bucket) | Decision::RefreshThenRetry(bucket)) = &step.decision else { continue };
                if let Some(Outcome::Refused { cause }) = step.answered {
                    let kept = request.health().iter().find(|(n, _)| n == bucket).map(|(_, h)| *h);
                    prop_assert_eq!(kept, Some(BucketHealth::Refused { cause }));
                    let next = &steps[i + 1].decision;
                    let moved = !matches!(next, Decision::Use(b) | Decision::RefreshThenRetry(b) if b == bucket);
                    prop_assert!(moved, "stayed on refused {}: {:?}", bucket, next);
                }
            }
        }

        #[test]
        fn never_tries_a_bucket_twice_in_one_request((buckets, script) in any_scenario()) {
            let (_, steps) = simulate(&buckets, &script);
            let mut used = BTreeSet::new();
            for step in &steps {
                if let Decision::Use(bucket) = &step.decision {
                    prop_assert!(used.insert(bucket.clone()), "{} used twice", bucket);
                }
            }
        }

        #[test]
        fn refreshes_a_bucket_at_most_once_per_request((buckets, script) in any_scenario()) {
            let (_, steps) = simulate(&buckets, &script);
            let mut refreshes: BTreeMap<BucketName, usize> = BTreeMap::new();
            let mut previous: Option<&Decision> = None;
            for step in &steps {
                match &step.decision {
                    Decision::RefreshThenRetry(bucket) => {
                        prop_assert_eq!(previous, Some(&Decision::Use(bucket.clone())));
                        *refreshes.entry(bucket.clone()).or_default() += 1;
                    }
                    // A failed refresh reported in answer to `Use` was a refresh before sending.
                    Decision::Use(bucket) if matches!(step.answered, Some(Outcome::RefreshFailed { .. })) => {
                        *refreshes.entry(bucket.clone()).or_default() += 1;
                    }
                    _ => {}
                }
                previous = Some(&step.decision);
            }
            for (bucket, count) in refreshes {
                prop_assert!(count <= 1, "{} refreshed {} times", bucket, count);
            }
        }

        #[test]
        fn takes_the_first_usable_bucket_in_priority_order((buckets, script) in any_scenario()) {
            let (_, steps) = simulate(&buckets, &script);
            let mut used = BTreeSet::new();
            for step in &steps {
                if let Decision::Use(bucket) = &step.decision {
                    let first = buckets.iter().find(|(n, h)| !used.contains(n) && h.is_usable_at(step.at));
                    prop_assert_eq!(first.map(|(n, _)| n), Some(bucket));
                    used.insert(bucket.clone());
                }
            }
        }

        #[test]
        fn exhausted_exactly_when_no_usable_bucket_is_left((buckets, script) in any_scenario()) {
            let (_, steps) = simulate(&buckets, &script);
            let mut used = BTreeSet::new();
            for step in &steps {
                let left = buckets.iter().any(|(n, h)| !used.contains(n) && h.is_usable_at(step.at));
                match &step.decision {
                    Decision::Use(bucket) => {
                        prop_assert!(left);
                        used.insert(bucket.clone());
                    }
                    Decision::Exhausted(_) => prop_assert!(!left, "exhausted with a bucket left"),
                    _ => {}
                }
            }
            // And a request only ends short of exhaustion on a success or a transient error.
            let last = steps.last().unwrap();
            let previous_answer = steps.iter().rev().nth(1).and_then(|s| s.answered);
            match &last.decision {
                Decision::Done => prop_assert_eq!(previous_answer, Some(Outcome::Success)),
                Decision::GiveUp(_) => prop_assert_eq!(previous_answer, Some(Outcome::Transient)),
                Decision::Exhausted(_) => {}
                other => prop_assert!(false, "ended on {:?}", other),
            }
        }

        #[test]
        fn exhausted_names_the_time_the_status_shows_for_the_first_bucket_to_rejoin((buckets, script) in any_scenario()) {
            let (request, steps) = simulate(&buckets, &script);
            let Some(Decision::Exhausted(report)) = steps.last().map(|s| s.decision.clone()) else {
                return Ok(());
            };
            let names: Vec<&BucketName> = report.buckets.iter().map(|r| &r.bucket).collect();
            let expected: Vec<&BucketName> = buckets.iter().map(|(n, _)| n).collect();
            prop_assert_eq!(names, expected);
            // What `/auth P status` shows afterwards: each cooling bucket's end.
            let ends: Vec<UnixSeconds> = request
                .into_health()
                .into_iter()
                .filter_map(|(_, h)| match h {
                    BucketHealth::CoolingUntil { until, .. } => Some(until),
                    _ => None,
                })
                .collect();
            match report.earliest_usable {
                // "Wait until X" is the end of a cooldown the status shows, and no cooling
                // bucket rejoins earlier.
                Some(at) => {
                    prop_assert!(ends.contains(&at), "told to wait until {} but the cooldowns end at {:?}", at, ends);
                    prop_assert!(ends.iter().all(|end| *end >= at));
                }
                None => prop_assert!(ends.is_empty(), "no time given though buckets cool until {:?}", ends),
            }
        }

        #[test]
        fn a_refused_bucket_cools_until_the_providers_reset_or_a_while_without_one((buckets, script) in any_scenario()) {
            let (request, steps) = simulate(&buckets, &script);
            let health: BTreeMap<BucketName, BucketHealth> = request.into_health().into_iter().collect();
            for (step, next) in steps.iter().zip(steps.iter().skip(1)) {
                let (Decision::Use(b) | Decision::RefreshThenRetry(b)) = &step.decision else { continue };
                let Some(Outcome::RateLimited { reset_at } | Outcome::PaymentRequired { reset_at }) = step.answered else {
                    continue;
                };
                let Some(BucketHealth::CoolingUntil { until, .. }) = health.get(b).copied() else {
                    return Err(TestCaseError::fail(format!("{b} was refused but does not cool down")));
                };
                let refused_at = next.at;
                match reset_at {
                    Some(reset) if reset > refused_at => prop_assert_eq!(until, reset, "{} ignores the provider's reset", b),
                    // A reset already past: the next request may use the bucket at once.
                    Some(_) => prop_assert_eq!(until, refused_at),
                    None => prop_assert!(until > refused_at, "{} may be retried at once", b),
                }
            }
        }

        #[test]
        fn every_switch_is_a_move_from_one_used_bucket_to_the_next((buckets, script) in any_scenario()) {
            let (request, steps) = simulate(&buckets, &script);
            let used: Vec<&BucketName> = steps
                .iter()
                .filter_map(|s| match &s.decision { Decision::Use(b) => Some(b), _ => None })
                .collect();
            let moves: Vec<(&BucketName, &BucketName)> =
                request.switches().iter().map(|s| (&s.from, &s.to)).collect();
            let expected: Vec<(&BucketName, &BucketName)> =
                used.iter().copied().zip(used.iter().copied().skip(1)).collect();
            prop_assert_eq!(moves, expected);
        }

        #[test]
        fn cooling_bucket_rejoins_when_its_reset_passes(
            reset_in in 0i64..1000,
            given in any::<bool>(),
            later in 0i64..2000,
            payment in any::<bool>(),
        ) {
            let (mut request, _) = FailoverRequest::start(usable(&["primary", "spare"]), NOW);
            let reset_at = given.then_some(NOW + reset_in);
            let outcome = if payment {
                Outcome::PaymentRequired { reset_at }
            } else {
                Outcome::RateLimited { reset_at }
            };
            prop_assert_eq!(request.record(outcome, NOW), use_("spare"));
            // The provider's reset when it gave one; without one the bucket sits out a while,
            // and an hour later it is back.
            let rejoins = match reset_at {
                Some(reset) => NOW + later >= reset,
                None if later == 0 => false,
                None => later >= 3600,
            };
            let (next_request, first) = FailoverRequest::start(request.clone().into_health(), NOW + later);
            if rejoins {
                prop_assert_eq!(first, use_("primary"));
                prop_assert_eq!(health_of(&next_request, "primary"), BucketHealth::Usable);
            } else if reset_at.is_some() || later == 0 {
                prop_assert_eq!(first, use_("spare"));
            }
        }
    }
}
