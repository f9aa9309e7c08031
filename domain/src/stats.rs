//! Per-bucket statistics for `/stats buckets`, kept across runs and across processes.
//!
//! Several llxprt processes may share one `stats.json`. So that none of them loses another's
//! counts, a process never writes what it believes the totals are: it records a [`StatsDelta`]
//! of what it did since its last save, and at save time adds that delta to whatever
//! [`StatsTotals`] are on disk then (counts add, the last use is the later one). Adding deltas
//! commutes, so the order in which processes save does not matter.

use std::collections::BTreeMap;

use crate::bucket::BucketId;
use crate::failover::{FailoverRequest, Outcome};
use crate::provider::OAuthProvider;
use crate::time::UnixSeconds;

/// The statistics of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct BucketStats {
    /// Requests sent with the bucket's token.
    pub requests: u64,
    /// When the bucket was last used, if ever.
    pub last_used: Option<UnixSeconds>,
    /// Times the bucket answered `429` or `402`: a rate limit or quota met.
    pub rate_limits: u64,
    /// Times a request left this bucket for another.
    pub failovers: u64,
}

impl BucketStats {
    /// Adds `other` into `self`: counts add (saturating), the last use is the later one.
    pub fn add(&mut self, other: &BucketStats) {
        self.requests = self.requests.saturating_add(other.requests);
        self.rate_limits = self.rate_limits.saturating_add(other.rate_limits);
        self.failovers = self.failovers.saturating_add(other.failovers);
        self.last_used = self.last_used.max(other.last_used);
    }
}

/// The statistics as persisted: totals over every process and run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTotals {
    buckets: BTreeMap<BucketId, BucketStats>,
}

impl StatsTotals {
    /// No statistics yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a bucket's totals, as read from storage.
    pub fn insert(&mut self, bucket: BucketId, stats: BucketStats) {
        self.buckets.insert(bucket, stats);
    }

    /// A bucket's totals, if it has any.
    pub fn get(&self, bucket: &BucketId) -> Option<&BucketStats> {
        self.buckets.get(bucket)
    }

    /// Every bucket with its totals, sorted by provider then bucket name.
    pub fn iter(&self) -> impl Iterator<Item = (&BucketId, &BucketStats)> {
        self.buckets.iter()
    }

    /// Whether there are no statistics at all.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Adds what a process recorded to these totals.
    pub fn apply(&mut self, delta: &StatsDelta) {
        for (bucket, stats) in &delta.buckets {
            self.buckets.entry(bucket.clone()).or_default().add(stats);
        }
    }
}

/// What one process recorded since it last saved, to be added to the totals on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsDelta {
    buckets: BTreeMap<BucketId, BucketStats>,
}

impl StatsDelta {
    /// Nothing recorded yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A request was sent with the bucket's token at `now`.
    pub fn record_request(&mut self, bucket: &BucketId, now: UnixSeconds) {
        let stats = self.entry(bucket);
        stats.requests = stats.requests.saturating_add(1);
        stats.last_used = stats.last_used.max(Some(now));
    }

    /// The bucket answered `429` or `402`.
    pub fn record_rate_limit(&mut self, bucket: &BucketId) {
        let stats = self.entry(bucket);
        stats.rate_limits = stats.rate_limits.saturating_add(1);
    }

    /// A request left the bucket for another.
    pub fn record_failover(&mut self, bucket: &BucketId) {
        let stats = self.entry(bucket);
        stats.failovers = stats.failovers.saturating_add(1);
    }

    /// Records everything one failover request did with `provider`'s buckets at `now`: a request
    /// for each outcome that came from sending (a failed refresh sent nothing, and a bucket
    /// without a token was never sent to), a rate limit for each `429` or `402`, and a failover
    /// for each switch.
    pub fn record_failover_request(
        &mut self,
        provider: OAuthProvider,
        request: &FailoverRequest,
        now: UnixSeconds,
    ) {
        for attempt in request.attempts() {
            let bucket = BucketId::new(provider, attempt.bucket.clone());
            match attempt.outcome {
                Outcome::RefreshFailed { .. } | Outcome::NoToken => {}
                Outcome::RateLimited { .. } | Outcome::PaymentRequired { .. } => {
                    self.record_request(&bucket, now);
                    self.record_rate_limit(&bucket);
                }
                Outcome::Success
                | Outcome::Unauthorized
                | Outcome::Forbidden
                | Outcome::Refused { .. }
                | Outcome::Transient => self.record_request(&bucket, now),
            }
        }
        for switch in request.switches() {
            self.record_failover(&BucketId::new(provider, switch.from.clone()));
        }
    }

    /// What was recorded for a bucket, if anything.
    pub fn get(&self, bucket: &BucketId) -> Option<&BucketStats> {
        self.buckets.get(bucket)
    }

    /// Whether nothing was recorded (so there is nothing to save).
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Adds another delta's counts to this one (a failed save folded into later counts).
    pub fn merge(&mut self, other: &StatsDelta) {
        for (bucket, stats) in &other.buckets {
            self.entry(bucket).add(stats);
        }
    }

    /// Empties the delta after a successful save, returning what it held.
    pub fn take(&mut self) -> StatsDelta {
        std::mem::take(self)
    }

    fn entry(&mut self, bucket: &BucketId) -> &mut BucketStats {
        self.buckets.entry(bucket.clone()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BucketName;
    use crate::failover::BucketHealth;
    use proptest::prelude::*;

    fn id(provider: OAuthProvider, name: &str) -> BucketId {
        BucketId::new(provider, BucketName::parse(name).unwrap())
    }

    #[test]
    fn recording_counts_requests_limits_failovers_and_the_last_use() {
        let bucket = id(OAuthProvider::Anthropic, "work1");
        let mut delta = StatsDelta::new();
        delta.record_request(&bucket, UnixSeconds(200));
        delta.record_request(&bucket, UnixSeconds(100));
        delta.record_rate_limit(&bucket);
        delta.record_failover(&bucket);
        assert_eq!(
            delta.get(&bucket),
            Some(&BucketStats {
                requests: 2,
                last_used: Some(UnixSeconds(200)),
                rate_limits: 1,
                failovers: 1,
            })
        );
    }

    #[test]
    fn a_delta_adds_to_the_totals_found_on_disk() {
        let bucket = id(OAuthProvider::Qwen, "default");
        let mut on_disk = StatsTotals::new();
        on_disk.insert(
            bucket.clone(),
            BucketStats {
                requests: 10,
                last_used: Some(UnixSeconds(500)),
                rate_limits: 2,
                failovers: 0,
            },
        );
        let mut delta = StatsDelta::new();
        delta.record_request(&bucket, UnixSeconds(400));
        on_disk.apply(&delta.take());
        assert!(delta.is_empty());
        let stats = on_disk.get(&bucket).unwrap();
        assert_eq!(stats.requests, 11);
        assert_eq!(stats.last_used, Some(UnixSeconds(500)));
        assert_eq!(stats.rate_limits, 2);
    }

    #[test]
    fn a_failover_request_is_counted_per_bucket() {
        let now = UnixSeconds(1000);
        let buckets = ["a", "b", "c"]
            .map(|n| (BucketName::parse(n).unwrap(), BucketHealth::Usable))
            .to_vec();
        let (mut request, _) = FailoverRequest::start(buckets, now);
        request.record(Outcome::RateLimited { reset_at: None }, now);
        request.record(Outcome::RefreshFailed { needs_login: true }, now);
        request.record(Outcome::Unauthorized, now);
        request.record(Outcome::Success, now);
        let mut delta = StatsDelta::new();
        delta.record_failover_request(OAuthProvider::Gemini, &request, now);
        let get = |n: &str| delta.get(&id(OAuthProvider::Gemini, n)).copied();
        let a = get("a").unwrap();
        assert_eq!((a.requests, a.rate_limits, a.failovers), (1, 1, 1));
        let b = get("b").unwrap();
        assert_eq!((b.requests, b.rate_limits, b.failovers), (0, 0, 1));
        assert_eq!(b.last_used, None);
        let c = get("c").unwrap();
        assert_eq!((c.requests, c.failovers), (2, 0));
        assert_eq!(c.last_used, Some(now));
    }

    fn any_delta() -> impl Strategy<Value = StatsDelta> {
        let event = (0usize..3, 0u8..3, 0i64..1000);
        prop::collection::vec(event, 0..20).prop_map(|events| {
            let mut delta = StatsDelta::new();
            for (bucket, kind, at) in events {
                let bucket = id(OAuthProvider::ALL[bucket], "default");
                match kind {
                    0 => delta.record_request(&bucket, UnixSeconds(at)),
                    1 => delta.record_rate_limit(&bucket),
                    _ => delta.record_failover(&bucket),
                }
            }
            delta
        })
    }

    fn sum(deltas: &[StatsDelta], pick: impl Fn(&BucketStats) -> u64) -> u64 {
        deltas
            .iter()
            .flat_map(|d| d.buckets.values())
            .map(pick)
            .sum()
    }

    proptest! {
        #[test]
        fn merging_deltas_is_order_independent_and_loses_no_counts(
            (deltas, reordered) in prop::collection::vec(any_delta(), 0..5)
                .prop_flat_map(|d| (Just(d.clone()), Just(d).prop_shuffle())),
        ) {
            let mut forward = StatsTotals::new();
            for delta in &deltas {
                forward.apply(delta);
            }
            let mut backward = StatsTotals::new();
            for delta in &reordered {
                backward.apply(delta);
            }
            prop_assert_eq!(&forward, &backward);

            let total = |pick: fn(&BucketStats) -> u64| forward.iter().map(|(_, s)| pick(s)).sum::<u64>();
            prop_assert_eq!(total(|s| s.requests), sum(&deltas, |s| s.requests));
            prop_assert_eq!(total(|s| s.rate_limits), sum(&deltas, |s| s.rate_limits));
            prop_assert_eq!(total(|s| s.failovers), sum(&deltas, |s| s.failovers));
            let latest = deltas.iter().flat_map(|d| d.buckets.values()).filter_map(|s| s.last_used).max();
            prop_assert_eq!(forward.iter().filter_map(|(_, s)| s.last_used).max(), latest);
        }

    }
}
