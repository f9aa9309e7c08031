//! Buckets: named accounts of one provider.

use std::fmt;

use crate::provider::OAuthProvider;

/// The longest bucket name accepted.
pub const MAX_BUCKET_NAME_LEN: usize = 64;

/// A bucket name was refused; the message says why and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBucketName {
    /// The name was empty.
    #[error("a bucket name cannot be empty")]
    Empty,
    /// The name was longer than 64 characters.
    #[error("bucket name is {0} characters long; at most 64 are allowed")]
    TooLong(usize),
    /// `.` and `..` would name directories.
    #[error("'{0}' is not a valid bucket name")]
    Reserved(&'static str),
    /// A character outside `A-Z a-z 0-9 . _ @ -`.
    #[error("bucket names may only contain letters, digits, '.', '_', '@' and '-' (found {0:?})")]
    BadCharacter(char),
}

/// A validated bucket name: `^[A-Za-z0-9._@-]{1,64}$`, neither `.` nor `..`.
///
/// Because of those rules a bucket name can never contain a path separator or a NUL, so it is
/// safe to use in a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketName(String);

impl BucketName {
    /// The name of the bucket used when none is named.
    pub const DEFAULT: &'static str = "default";

    /// Validates a bucket name typed by a user or read from a file.
    ///
    /// # Errors
    /// [`InvalidBucketName`] saying what rule the text broke.
    pub fn parse(text: &str) -> Result<Self, InvalidBucketName> {
        if text.is_empty() {
            return Err(InvalidBucketName::Empty);
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')))
        {
            return Err(InvalidBucketName::BadCharacter(bad));
        }
        // Only ASCII is left, so the byte length is the character count.
        if text.len() > MAX_BUCKET_NAME_LEN {
            return Err(InvalidBucketName::TooLong(text.len()));
        }
        match text {
            "." => Err(InvalidBucketName::Reserved(".")),
            ".." => Err(InvalidBucketName::Reserved("..")),
            _ => Ok(Self(text.to_owned())),
        }
    }

    /// The default bucket.
    pub fn default_bucket() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// Whether this is the default bucket.
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    /// The name as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bucket is always named together with its provider, so that one provider's tokens can never
/// be saved under another's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketId {
    /// The provider that issued the bucket's tokens.
    pub provider: OAuthProvider,
    /// The bucket's name within that provider.
    pub bucket: BucketName,
}

impl BucketId {
    /// Names a bucket of a provider.
    pub fn new(provider: OAuthProvider, bucket: BucketName) -> Self {
        Self { provider, bucket }
    }

    /// The default bucket of a provider.
    pub fn default_for(provider: OAuthProvider) -> Self {
        Self::new(provider, BucketName::default_bucket())
    }
}

/// Shown as `provider/bucket`, the form `/stats buckets` uses.
impl fmt::Display for BucketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_emails_and_dotted_names() {
        for ok in [
            "default",
            "work1@company.com",
            "a",
            "A-b_c.d",
            "..a",
            "a..",
            "...",
        ] {
            assert_eq!(
                BucketName::parse(ok).map(|b| b.to_string()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn refuses_hostile_names() {
        let long = "a".repeat(65);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(BucketName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            BucketName::parse(&long),
            Err(InvalidBucketName::TooLong(65))
        );
    }

    proptest! {
        #[test]
        fn every_valid_bucket_name_round_trips(name in "[A-Za-z0-9._@-]{1,64}") {
            prop_assume!(name != "." && name != "..");
            let parsed = BucketName::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert_eq!(BucketName::parse(parsed.as_str()).unwrap(), parsed);
        }

        #[test]
        fn no_accepted_name_contains_a_separator_or_nul(name in "\\PC{0,70}|[A-Za-z0-9./\\\\@\u{0}-]{0,70}") {
            if let Ok(parsed) = BucketName::parse(&name) {
                prop_assert!(!parsed.as_str().contains(['/', '\\', '\0']));
                prop_assert!(parsed.as_str() != "." && parsed.as_str() != "..");
                prop_assert!(parsed.as_str().len() <= 64);
            }
        }
    }
}
