//! The pure decision core of llxprt.
//!
//! Everything here decides and nothing here does: no I/O, no clock reads (the current time is
//! always a parameter), no async runtime, no serialisation. Which credential a request uses,
//! which bucket it goes to next, whether a token is fresh and what a 429 means are all answered
//! by plain functions over plain values, so they can be property-tested exhaustively.

#![warn(missing_docs)]

pub mod bucket;
pub mod failover;
pub mod loadbalance;
pub mod precedence;
pub mod profile;
pub mod provider;
pub mod quota;
pub mod secret;
pub mod stats;
#[cfg(any(test, feature = "proptest"))]
pub mod strategies;
pub mod time;
pub mod token;

pub use bucket::{BucketId, BucketName, InvalidBucketName};
pub use failover::{
    bucket_status, BucketHealth, BucketStatus, CooldownCause, Decision, ExhaustedReport,
    FailoverRequest, LoginCause, Outcome, RefusalCause, SkipReason,
};
pub use loadbalance::{moves_on, LoadBalancePolicy, LoadBalancer, MemberFailure, UnknownPolicy};
pub use precedence::{resolve_credential, Credential, CredentialSources, KeySource, OAuthPlan};
pub use profile::{InvalidProfile, InvalidProfileName, Profile, ProfileName};
pub use provider::{ChatProvider, OAuthProvider, UnknownProvider};
pub use quota::{
    cooldown_until, health_with_limits, Credits, Limits, QuotaWindow, ReportedLimits, WindowName,
};
pub use secret::Secret;
pub use stats::{BucketStats, StatsDelta, StatsTotals};
pub use time::UnixSeconds;
pub use token::{Freshness, Token};
