//! Load balancing over the member profiles of a loadbalancer profile.
//!
//! Members are referred to by their index in the profile's list, so this module needs nothing
//! about profiles themselves.

use std::fmt;
use std::str::FromStr;

/// The text given as a policy was not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown load balancing policy '{given}'; valid policies are: failover, roundrobin")]
pub struct UnknownPolicy {
    /// What the user typed.
    pub given: String,
}

/// How a loadbalancer profile spreads requests over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadBalancePolicy {
    /// Every request tries the members in order, moving to the next on failure.
    Failover,
    /// Requests take the members in turn, skipping those that fail.
    RoundRobin,
}

impl LoadBalancePolicy {
    /// Every policy, in the order they are listed to users.
    pub const ALL: [LoadBalancePolicy; 2] = [Self::Failover, Self::RoundRobin];

    /// The name users type and profiles store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::RoundRobin => "roundrobin",
        }
    }
}

impl fmt::Display for LoadBalancePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LoadBalancePolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPolicy {
                given: s.to_owned(),
            })
    }
}

/// Why a member failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberFailure {
    /// Every OAuth bucket of the member was exhausted.
    BucketsExhausted,
    /// `429` on a key-authenticated member.
    RateLimited,
    /// `402`: payment or quota.
    PaymentRequired,
    /// `401`.
    Unauthorized,
    /// `403`.
    Forbidden,
    /// The member has no usable credential without a new login.
    NeedsLogin,
    /// A `5xx` answer.
    ServerError(u16),
    /// The provider could not be reached.
    Network,
    /// `400` or another client error: the request itself is at fault.
    ClientError(u16),
}

/// Whether a request that failed on one member goes on to the next.
///
/// Both policies move on for every failure of the member or its provider. A client error is the
/// request's own fault: every other member would refuse it the same way, so it is reported at
/// once.
pub fn moves_on(policy: LoadBalancePolicy, failure: MemberFailure) -> bool {
    match (policy, failure) {
        (_, MemberFailure::ClientError(_)) => false,
        (LoadBalancePolicy::Failover | LoadBalancePolicy::RoundRobin, _) => true,
    }
}

/// Chooses, for each request, the order in which to try the members of a loadbalancer profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    policy: LoadBalancePolicy,
    members: usize,
    cursor: usize,
}

impl LoadBalancer {
    /// A balancer over `members` members (indexes `0..members`), before its first request.
    pub fn new(policy: LoadBalancePolicy, members: usize) -> Self {
        Self {
            policy,
            members,
            cursor: 0,
        }
    }

    /// The policy it follows.
    pub fn policy(&self) -> LoadBalancePolicy {
        self.policy
    }

    /// The order to try the members in for the next request: every index once.
    ///
    /// `failover` always starts at the first member. `roundrobin` starts one member further on
    /// each request and continues in order from there, wrapping around, so skipping a failing
    /// member means trying the one after it, and over many requests every member leads equally
    /// often.
    pub fn next_order(&mut self) -> Vec<usize> {
        if self.members == 0 {
            return Vec::new();
        }
        let start = match self.policy {
            LoadBalancePolicy::Failover => 0,
            LoadBalancePolicy::RoundRobin => {
                let start = self.cursor;
                self.cursor = (self.cursor + 1) % self.members;
                start
            }
        };
        (0..self.members)
            .map(|offset| (start + offset) % self.members)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn policies_round_trip_and_an_unknown_one_lists_the_valid_ones() {
        for p in LoadBalancePolicy::ALL {
            assert_eq!(p.as_str().parse::<LoadBalancePolicy>(), Ok(p));
        }
        let err = "random".parse::<LoadBalancePolicy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown load balancing policy 'random'; valid policies are: failover, roundrobin"
        );
    }

    #[test]
    fn failover_always_tries_the_members_in_order() {
        let mut balancer = LoadBalancer::new(LoadBalancePolicy::Failover, 3);
        for _ in 0..4 {
            assert_eq!(balancer.next_order(), [0, 1, 2]);
        }
    }

    #[test]
    fn roundrobin_takes_the_members_in_turn_and_wraps() {
        let mut balancer = LoadBalancer::new(LoadBalancePolicy::RoundRobin, 3);
        assert_eq!(balancer.next_order(), [0, 1, 2]);
        assert_eq!(balancer.next_order(), [1, 2, 0]);
        assert_eq!(balancer.next_order(), [2, 0, 1]);
        assert_eq!(balancer.next_order(), [0, 1, 2]);
    }

    #[test]
    fn no_members_means_nothing_to_try() {
        let mut balancer = LoadBalancer::new(LoadBalancePolicy::RoundRobin, 0);
        assert!(balancer.next_order().is_empty());
    }

    #[test]
    fn only_a_client_error_stops_the_request() {
        let moving = [
            MemberFailure::BucketsExhausted,
            MemberFailure::RateLimited,
            MemberFailure::PaymentRequired,
            MemberFailure::Unauthorized,
            MemberFailure::Forbidden,
            MemberFailure::NeedsLogin,
            MemberFailure::ServerError(503),
            MemberFailure::Network,
        ];
        for policy in LoadBalancePolicy::ALL {
            for failure in moving {
                assert!(moves_on(policy, failure), "{policy} stopped on {failure:?}");
            }
            assert!(!moves_on(policy, MemberFailure::ClientError(400)));
        }
    }

    proptest! {
        #[test]
        fn every_order_tries_each_member_once(
            roundrobin in any::<bool>(), members in 0usize..8, requests in 1usize..30
        ) {
            let policy = if roundrobin { LoadBalancePolicy::RoundRobin } else { LoadBalancePolicy::Failover };
            let mut balancer = LoadBalancer::new(policy, members);
            for _ in 0..requests {
                let mut order = balancer.next_order();
                order.sort_unstable();
                prop_assert_eq!(order, (0..members).collect::<Vec<_>>());
            }
        }

        #[test]
        fn roundrobin_keeps_counts_within_one(members in 1usize..8, requests in 0usize..200) {
            let mut balancer = LoadBalancer::new(LoadBalancePolicy::RoundRobin, members);
            let mut counts = vec![0usize; members];
            for _ in 0..requests {
                // Every member is healthy, so each request is served by the first in its order.
                let order = balancer.next_order();
                counts[order[0]] += 1;
                let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                prop_assert!(max - min <= 1, "counts drifted apart: {:?}", counts);
            }
        }

        #[test]
        fn roundrobin_skips_a_failing_member_to_the_next_one(
            members in 2usize..8, failing in 0usize..8, requests in 1usize..40
        ) {
            let failing = failing % members;
            let mut balancer = LoadBalancer::new(LoadBalancePolicy::RoundRobin, members);
            let mut counts = vec![0usize; members];
            for _ in 0..requests {
                let order = balancer.next_order();
                let served = order.iter().copied().find(|&m| m != failing).unwrap();
                if order[0] == failing {
                    prop_assert_eq!(served, (failing + 1) % members);
                }
                counts[served] += 1;
            }
            prop_assert_eq!(counts[failing], 0);
            // The failing member's turns go to its successor; the others stay even.
            let (min, max) = counts
                .iter()
                .enumerate()
                .filter(|&(m, _)| m != failing && m != (failing + 1) % members)
                .fold((usize::MAX, 0), |(lo, hi), (_, &c)| (lo.min(c), hi.max(c)));
            if min != usize::MAX {
                prop_assert!(max - min <= 1);
            }
        }
    }
}
