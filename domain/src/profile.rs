//! Profiles: saved choices of provider, model, key and buckets, or of other profiles to balance
//! requests over.

use crate::loadbalance::LoadBalancePolicy;
use std::fmt;

use crate::bucket::{BucketId, BucketName, InvalidBucketName};
use crate::provider::ChatProvider;
use crate::secret::Secret;

/// A profile name was refused; the message says why and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidProfileName {
    /// The name was empty.
    #[error("a profile name cannot be empty")]
    Empty,
    /// The name was longer than 64 characters.
    #[error("profile name is {0} characters long; at most 64 are allowed")]
    TooLong(usize),
    /// `.` and `..` would name directories.
    #[error("'{0}' is not a valid profile name")]
    Reserved(&'static str),
    /// A character outside `A-Z a-z 0-9 . _ @ -`.
    #[error("profile names may only contain letters, digits, '.', '_', '@' and '-' (found {0:?})")]
    BadCharacter(char),
}

/// A validated profile name: the same rules as a bucket name, `^[A-Za-z0-9._@-]{1,64}$`, neither
/// `.` nor `..`, so it is safe to use in a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

impl ProfileName {
    /// Validates a profile name typed by a user or read from a file name.
    ///
    /// # Errors
    /// [`InvalidProfileName`] saying what rule the text broke.
    pub fn parse(text: &str) -> Result<Self, InvalidProfileName> {
        // One rule for every name that becomes part of a file name: the bucket name's.
        match BucketName::parse(text) {
            Ok(_) => Ok(Self(text.to_owned())),
            Err(InvalidBucketName::Empty) => Err(InvalidProfileName::Empty),
            Err(InvalidBucketName::TooLong(len)) => Err(InvalidProfileName::TooLong(len)),
            Err(InvalidBucketName::Reserved(name)) => Err(InvalidProfileName::Reserved(name)),
            Err(InvalidBucketName::BadCharacter(c)) => Err(InvalidProfileName::BadCharacter(c)),
        }
    }

    /// The name as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A saved profile, as `/profile save` records it and `/profile load` restores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// One provider and model, with an optional key and the accounts to use.
    Model {
        /// The provider messages go to.
        provider: ChatProvider,
        /// The model, or `None` for the provider's default.
        model: Option<String>,
        /// An API key saved with the profile; it outranks the environment and OAuth.
        key: Option<Secret>,
        /// The provider's OAuth buckets in priority order: the first is the primary, the rest
        /// take over when it is rate limited.
        buckets: Vec<BucketName>,
    },
    /// Requests spread over other profiles.
    LoadBalancer {
        /// How the members are chosen.
        policy: LoadBalancePolicy,
        /// The member profiles, in order.
        members: Vec<ProfileName>,
    },
}

/// A profile that cannot be saved or used as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidProfile {
    /// A loadbalancer profile with nothing to balance over.
    #[error("a loadbalancer profile needs at least one member profile")]
    NoMembers,
    /// A loadbalancer profile that names itself would send requests round in a circle.
    #[error("loadbalancer profile '{0}' cannot list itself as a member")]
    ListsItself(ProfileName),
    /// The same member twice would skew the balance without the user meaning to.
    #[error("profile '{0}' is listed twice")]
    DuplicateMember(ProfileName),
    /// The same bucket twice would retry a rate-limited account.
    #[error("bucket '{0}' is listed twice")]
    DuplicateBucket(BucketName),
}

impl Profile {
    /// The kind of profile as `/profile save` names it: `model` or `loadbalancer`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Model { .. } => "model",
            Self::LoadBalancer { .. } => "loadbalancer",
        }
    }

    /// The buckets of a model profile in priority order, each named with its provider; empty
    /// for a loadbalancer profile.
    pub fn bucket_ids(&self) -> Vec<BucketId> {
        match self {
            Self::Model {
                provider, buckets, ..
            } => buckets
                .iter()
                .map(|b| BucketId::new(provider.oauth_provider(), b.clone()))
                .collect(),
            Self::LoadBalancer { .. } => Vec::new(),
        }
    }

    /// Checks the rules a profile saved under `name` must follow: a loadbalancer has at least
    /// one member, never itself, and no member twice; a model profile names no bucket twice.
    ///
    /// Cycles through other profiles are not visible from one profile; they are caught when
    /// the members are loaded.
    ///
    /// # Errors
    /// [`InvalidProfile`] naming the first rule broken.
    pub fn check(&self, name: &ProfileName) -> Result<(), InvalidProfile> {
        match self {
            Self::Model { buckets, .. } => match first_duplicate(buckets) {
                Some(bucket) => Err(InvalidProfile::DuplicateBucket(bucket.clone())),
                None => Ok(()),
            },
            Self::LoadBalancer { members, .. } => {
                if members.is_empty() {
                    return Err(InvalidProfile::NoMembers);
                }
                if members.contains(name) {
                    return Err(InvalidProfile::ListsItself(name.clone()));
                }
                match first_duplicate(members) {
                    Some(member) => Err(InvalidProfile::DuplicateMember(member.clone())),
                    None => Ok(()),
                }
            }
        }
    }
}

fn first_duplicate<T: PartialEq>(items: &[T]) -> Option<&T> {
    items
        .iter()
        .enumerate()
        .find(|(i, item)| items[..*i].contains(item))
        .map(|(_, item)| item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::OAuthProvider;
    use proptest::prelude::*;

    fn name(text: &str) -> ProfileName {
        ProfileName::parse(text).unwrap()
    }

    fn bucket(text: &str) -> BucketName {
        BucketName::parse(text).unwrap()
    }

    #[test]
    fn accepts_the_names_users_give_profiles() {
        for ok in ["team-claude", "work1@company.com", "a", "A-b_c.d", "..."] {
            assert_eq!(name(ok).as_str(), ok);
        }
    }

    #[test]
    fn refuses_names_that_would_escape_the_profiles_folder() {
        let long = "p".repeat(65);
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "a\0b", "a b", "ü", &long,
        ] {
            assert!(ProfileName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            ProfileName::parse("a/b").unwrap_err().to_string(),
            "profile names may only contain letters, digits, '.', '_', '@' and '-' (found '/')"
        );
        assert_eq!(
            ProfileName::parse(&long),
            Err(InvalidProfileName::TooLong(65))
        );
    }

    #[test]
    fn a_model_profiles_buckets_keep_their_order_and_provider() {
        let profile = Profile::Model {
            provider: ChatProvider::OpenAi,
            model: None,
            key: None,
            buckets: vec![bucket("b2"), bucket("a1")],
        };
        let ids = profile.bucket_ids();
        assert_eq!(
            ids,
            vec![
                BucketId::new(OAuthProvider::Codex, bucket("b2")),
                BucketId::new(OAuthProvider::Codex, bucket("a1")),
            ]
        );
        assert_eq!(profile.kind(), "model");
    }

    #[test]
    fn a_loadbalancer_must_balance_over_other_distinct_profiles() {
        let lb = |members: &[&str]| Profile::LoadBalancer {
            policy: LoadBalancePolicy::RoundRobin,
            members: members.iter().map(|m| name(m)).collect(),
        };
        let me = name("lb");
        assert_eq!(lb(&[]).check(&me), Err(InvalidProfile::NoMembers));
        assert_eq!(
            lb(&["a", "lb"]).check(&me),
            Err(InvalidProfile::ListsItself(me.clone()))
        );
        assert_eq!(
            lb(&["a", "b", "a"]).check(&me),
            Err(InvalidProfile::DuplicateMember(name("a")))
        );
        assert_eq!(lb(&["a", "b"]).check(&me), Ok(()));
        assert_eq!(lb(&["a"]).kind(), "loadbalancer");
    }

    #[test]
    fn a_model_profile_names_each_bucket_once() {
        let model = |buckets: &[&str]| Profile::Model {
            provider: ChatProvider::Anthropic,
            model: Some("claude-sonnet-4-5".into()),
            key: None,
            buckets: buckets.iter().map(|b| bucket(b)).collect(),
        };
        assert_eq!(
            model(&["x", "y", "x"]).check(&name("p")),
            Err(InvalidProfile::DuplicateBucket(bucket("x")))
        );
        assert_eq!(model(&["x", "y"]).check(&name("p")), Ok(()));
        assert_eq!(model(&[]).check(&name("p")), Ok(()));
    }

    proptest! {
        #[test]
        fn accepts_exactly_what_a_bucket_name_accepts(text in "\\PC{0,70}|[A-Za-z0-9./\\\\@_-]{0,70}") {
            prop_assert_eq!(ProfileName::parse(&text).is_ok(), BucketName::parse(&text).is_ok());
        }
    }
}
