//! `proptest` strategies for the domain's types, for embedders' property tests (feature
//! `proptest`).
//!
//! Every value a strategy yields is one the domain itself could make: bucket and profile names
//! pass their `parse`, profiles pass [`Profile::check`] under the name they come with, and the
//! raw text of a token's unknown fields is JSON, as a storage adapter would have read it.
//!
//! ```
//! use llxprt_domain::strategies::{any_bucket_name, any_health};
//! use llxprt_domain::{BucketName, UnixSeconds};
//! use proptest::prelude::*;
//!
//! proptest!(|(h in any_health(), name in any_bucket_name())| {
//!     // A bucket that needs a login is never usable, at any time.
//!     if let llxprt_domain::BucketHealth::NeedsLogin { .. } = h {
//!         prop_assert!(!h.is_usable_at(UnixSeconds(i64::MAX)));
//!     }
//!     prop_assert_eq!(BucketName::parse(name.as_str()), Ok(name));
//! });
//! ```

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::subsequence;

use crate::bucket::{BucketId, BucketName};
use crate::failover::{BucketHealth, CooldownCause, LoginCause, Outcome, RefusalCause};
use crate::loadbalance::LoadBalancePolicy;
use crate::profile::{Profile, ProfileName};
use crate::provider::{ChatProvider, OAuthProvider};
use crate::quota::{Limits, QuotaWindow, ReportedLimits, WindowName};
use crate::secret::Secret;
use crate::stats::StatsDelta;
use crate::time::UnixSeconds;
use crate::token::{Token, UnknownFields};

/// The moment [`any_health`] and [`any_outcome`] centre their times on (2026-01-01, UTC); pass
/// your own to [`health_around`] and [`outcome_around`].
pub const AROUND: UnixSeconds = UnixSeconds(1_767_225_600);

/// One of the four OAuth providers.
pub fn any_oauth_provider() -> impl Strategy<Value = OAuthProvider> {
    proptest::sample::select(OAuthProvider::ALL.to_vec())
}

/// One of the four chat providers.
pub fn any_chat_provider() -> impl Strategy<Value = ChatProvider> {
    proptest::sample::select(ChatProvider::ALL.to_vec())
}

/// A valid bucket name: often `default` or an e-mail address, sometimes the awkward ones the
/// rules allow (`...`, `-`, 64 characters).
pub fn any_bucket_name() -> impl Strategy<Value = BucketName> {
    prop_oneof![
        2 => Just(BucketName::DEFAULT.to_owned()),
        3 => "[a-z][a-z0-9]{0,8}(@[a-z]{1,6}\\.[a-z]{2,3})?",
        2 => "[A-Za-z0-9._@-]{1,64}",
        1 => proptest::sample::select(vec!["...", "..a", "a..", "-", "@", ".hidden", "x.json", "x.lock"])
            .prop_map(str::to_owned),
    ]
    .prop_filter_map("not a bucket name", |text| BucketName::parse(&text).ok())
}

/// A bucket of any provider.
pub fn any_bucket_id() -> impl Strategy<Value = BucketId> {
    (any_oauth_provider(), any_bucket_name())
        .prop_map(|(provider, name)| BucketId::new(provider, name))
}

/// A secret of printable ASCII, never empty.
pub fn any_secret() -> impl Strategy<Value = Secret> {
    "[!-~]{1,80}".prop_map(Secret::new)
}

/// A moment within about thirty years of 1970, either side.
pub fn any_unix_seconds() -> impl Strategy<Value = UnixSeconds> {
    (-1_000_000_000i64..3_000_000_000).prop_map(UnixSeconds)
}

/// Fields of a token file llxprt does not know: names starting `x_`, each value the raw JSON
/// text of a number, a string, a boolean, `null`, an array or an object.
pub fn any_unknown_fields() -> impl Strategy<Value = UnknownFields> {
    let value = prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|n| n.to_string()),
        "[a-zA-Z0-9 äé€]{0,12}".prop_map(|s| format!("\"{s}\"")),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just(r#"[1,"two",{"three":null}]"#.to_owned()),
        Just(r#"{"nested":{"deep":[true,false]}}"#.to_owned()),
    ];
    btree_map("x_[a-z_]{1,10}", value, 0..4)
}

/// A token with any mix of the optional fields and unknown fields.
pub fn any_token() -> impl Strategy<Value = Token> {
    let text = || proptest::option::of("[!-~]{1,40}");
    (
        any_secret(),
        proptest::option::of(any_secret()),
        any_unix_seconds(),
        prop_oneof![Just("Bearer".to_owned()), Just("bearer".to_owned())],
        (text(), text(), text()),
        proptest::option::of(any_secret()),
        any_unknown_fields(),
    )
        .prop_map(
            |(
                access_token,
                refresh_token,
                expiry,
                token_type,
                (scope, resource_url, account_id),
                id_token,
                unknown,
            )| Token {
                access_token,
                refresh_token,
                expiry,
                token_type,
                scope,
                resource_url,
                account_id,
                id_token,
                unknown,
            },
        )
}

/// A bucket's health with cooldowns ending within a few minutes of `now` (some already over).
pub fn health_around(now: UnixSeconds) -> impl Strategy<Value = BucketHealth> {
    let cause = prop_oneof![
        Just(CooldownCause::RateLimited),
        Just(CooldownCause::PaymentRequired)
    ];
    let login = prop_oneof![
        Just(LoginCause::Forbidden),
        Just(LoginCause::RefreshRejected),
        Just(LoginCause::NoToken)
    ];
    prop_oneof![
        3 => Just(BucketHealth::Usable),
        2 => (-100i64..200, cause).prop_map(move |(offset, cause)| BucketHealth::CoolingUntil {
            until: now + offset,
            cause,
        }),
        1 => login.prop_map(|cause| BucketHealth::NeedsLogin { cause }),
        1 => any_refusal().prop_map(|cause| BucketHealth::Refused { cause }),
    ]
}

/// Why a provider refuses an account to llxprt.
pub fn any_refusal() -> impl Strategy<Value = RefusalCause> {
    prop_oneof![
        Just(RefusalCause::ClaudeCodeOnly),
        Just(RefusalCause::UnsupportedClient),
        Just(RefusalCause::TierEnded),
    ]
}

/// A bucket's health around [`AROUND`].
pub fn any_health() -> impl Strategy<Value = BucketHealth> {
    health_around(AROUND)
}

/// What using a bucket can come to, with reset times within minutes of `now` (some passed).
pub fn outcome_around(now: UnixSeconds) -> impl Strategy<Value = Outcome> {
    let reset = proptest::option::of((-50i64..400).prop_map(move |offset| now + offset));
    prop_oneof![
        1 => Just(Outcome::Success),
        3 => reset.clone().prop_map(|reset_at| Outcome::RateLimited { reset_at }),
        2 => reset.prop_map(|reset_at| Outcome::PaymentRequired { reset_at }),
        3 => Just(Outcome::Unauthorized),
        2 => Just(Outcome::Forbidden),
        2 => any::<bool>().prop_map(|needs_login| Outcome::RefreshFailed { needs_login }),
        1 => Just(Outcome::NoToken),
        1 => Just(Outcome::Transient),
        1 => any_refusal().prop_map(|cause| Outcome::Refused { cause }),
    ]
}

/// An outcome around [`AROUND`].
pub fn any_outcome() -> impl Strategy<Value = Outcome> {
    outcome_around(AROUND)
}

/// Up to 20 outcomes, each with the seconds (0 to 39) that pass before it is reported: a script
/// for driving a [`FailoverRequest`](crate::FailoverRequest) from `now` on.
pub fn outcome_sequence_from(now: UnixSeconds) -> impl Strategy<Value = Vec<(Outcome, i64)>> {
    vec((outcome_around(now), 0i64..40), 0..20)
}

/// Up to 20 outcomes from [`AROUND`], each with the seconds that pass before it.
pub fn any_outcome_sequence() -> impl Strategy<Value = Vec<(Outcome, i64)>> {
    outcome_sequence_from(AROUND)
}

/// Up to 7 buckets of one provider in priority order, distinct names, each with its health
/// around `now`: what a request starts from.
pub fn buckets_around(now: UnixSeconds) -> impl Strategy<Value = Vec<(BucketName, BucketHealth)>> {
    vec((any_bucket_name(), health_around(now)), 0..7).prop_map(|buckets| {
        let mut seen = std::collections::BTreeSet::new();
        buckets
            .into_iter()
            .filter(|(name, _)| seen.insert(name.clone()))
            .collect()
    })
}

/// A valid profile name.
pub fn any_profile_name() -> impl Strategy<Value = ProfileName> {
    "[A-Za-z0-9._@-]{1,64}"
        .prop_filter_map("not a profile name", |text| ProfileName::parse(&text).ok())
}

/// A profile and a name it can be saved under ([`Profile::check`] passes): a model profile with
/// distinct buckets, or a loadbalancer over other profiles.
pub fn any_named_profile() -> impl Strategy<Value = (ProfileName, Profile)> {
    let model = (
        any_chat_provider(),
        proptest::option::of("[a-z0-9.-]{1,24}"),
        proptest::option::of(any_secret()),
        vec(any_bucket_name(), 0..5),
    )
        .prop_map(|(provider, model, key, buckets)| {
            let mut seen = std::collections::BTreeSet::new();
            let buckets = buckets
                .into_iter()
                .filter(|b| seen.insert(b.clone()))
                .collect();
            Profile::Model {
                provider,
                model,
                key,
                buckets,
            }
        });
    let members = ["a", "b", "claude", "qwen-backup", "work@x.io", "..."];
    let balancer = (
        proptest::sample::select(LoadBalancePolicy::ALL.to_vec()),
        subsequence(members.to_vec(), 1..=members.len()).prop_shuffle(),
    )
        .prop_map(|(policy, members)| Profile::LoadBalancer {
            policy,
            members: members
                .into_iter()
                .filter_map(|m| ProfileName::parse(m).ok())
                .collect(),
        });
    let profile = prop_oneof![3 => model, 1 => balancer];
    // The name carries a prefix no member has, so a loadbalancer never lists itself.
    ("p-[a-z0-9]{1,12}", profile).prop_filter_map("not a profile name", |(name, profile)| {
        Some((ProfileName::parse(&name).ok()?, profile))
    })
}

/// A valid profile (see [`any_named_profile`] for one with its name).
pub fn any_profile() -> impl Strategy<Value = Profile> {
    any_named_profile().prop_map(|(_, profile)| profile)
}

/// One process's statistics: requests, rate limits and failovers on a few buckets.
pub fn any_stats_delta() -> impl Strategy<Value = StatsDelta> {
    let event = (any_bucket_id(), 0u8..3, any_unix_seconds());
    vec(event, 0..20).prop_map(|events| {
        let mut delta = StatsDelta::new();
        for (bucket, kind, at) in events {
            match kind {
                0 => delta.record_request(&bucket, at),
                1 => delta.record_rate_limit(&bucket),
                _ => delta.record_failover(&bucket),
            }
        }
        delta
    })
}

/// The limits a provider reports for a bucket around `now`: up to three windows, each used
/// 0–100 %, most resetting within a day (some already reset, some without a reset time).
pub fn limits_around(now: UnixSeconds) -> impl Strategy<Value = ReportedLimits> {
    let name = proptest::sample::select(vec![
        WindowName::FiveHour,
        WindowName::SevenDay,
        WindowName::Weekly,
    ]);
    let resets = proptest::option::of((-600i64..86_400).prop_map(move |offset| now + offset));
    let window = (name, 0u8..=100, resets)
        .prop_map(|(name, used, resets_at)| QuotaWindow::new(name, f64::from(used), resets_at));
    (vec(window, 0..3), -300i64..=0).prop_map(move |(windows, ago)| {
        Limits {
            windows,
            credits: None,
        }
        .seen_at(now + ago)
    })
}

/// Reported limits around [`AROUND`].
pub fn any_limits() -> impl Strategy<Value = ReportedLimits> {
    limits_around(AROUND)
}
