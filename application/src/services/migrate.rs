//! `/storage migrate`: moving every token from one store to another without ever losing one.
//!
//! For each bucket of the source, under that bucket's lock: read it, write it to the target
//! (unless the target already holds the very same token, from an earlier run), read the copy
//! back and compare it, and only then delete the original. A migration stopped at any moment
//! leaves every bucket readable in the source, the target, or both; running it again finishes
//! the job. It knows only the [`TokenStore`] port, so it serves every pair of stores.

use std::time::Duration;

use llxprt_domain::{BucketId, OAuthProvider};

use crate::ports::{StoreError, TokenStore};

/// How long a bucket's lock is waited for (another process may be refreshing it).
pub const MIGRATE_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    /// The buckets now in the target alone, in the order they moved.
    pub moved: Vec<BucketId>,
}

/// Why a migration stopped. Every bucket not yet moved is still in the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// The source could not be listed or read.
    #[error("could not read {bucket} from the current store: {source}")]
    Read {
        /// The bucket (or the provider's default bucket, when listing failed).
        bucket: BucketId,
        /// Why.
        source: StoreError,
    },
    /// The target refused the copy; the original is untouched.
    #[error("could not write {bucket} to the new store (the original is kept): {source}")]
    Write {
        /// The bucket.
        bucket: BucketId,
        /// Why.
        source: StoreError,
    },
    /// The copy read back differs from the original, which is kept.
    #[error("the copy of {bucket} in the new store reads back differently; the original is kept")]
    Mismatch {
        /// The bucket.
        bucket: BucketId,
    },
    /// The verified copy is in place but the original could not be removed; both hold it.
    #[error("{bucket} is copied, but the original could not be removed: {source}; run the migration again")]
    Remove {
        /// The bucket.
        bucket: BucketId,
        /// Why.
        source: StoreError,
    },
}

/// Moves every token of every provider from `from` to `to` (see the module documentation).
///
/// # Errors
/// The first [`MigrateError`]; the buckets moved before it stay moved, the rest stay put.
pub async fn migrate(
    from: &dyn TokenStore,
    to: &dyn TokenStore,
) -> Result<Migration, MigrateError> {
    let mut migration = Migration::default();
    for provider in OAuthProvider::ALL {
        let names = from
            .list(provider)
            .await
            .map_err(|source| MigrateError::Read {
                bucket: BucketId::default_for(provider),
                source,
            })?;
        for name in names {
            let bucket = BucketId::new(provider, name);
            if move_one(from, to, &bucket).await? {
                migration.moved.push(bucket);
            }
        }
    }
    Ok(migration)
}

/// Moves one bucket; whether there was a token to move.
async fn move_one(
    from: &dyn TokenStore,
    to: &dyn TokenStore,
    bucket: &BucketId,
) -> Result<bool, MigrateError> {
    let read = |source| MigrateError::Read {
        bucket: bucket.clone(),
        source,
    };
    // Refreshes of this bucket wait until it has moved; the lock is the source's, which every
    // process still on the old store takes.
    let _lock = from
        .lock(bucket, MIGRATE_LOCK_TIMEOUT)
        .await
        .map_err(read)?;
    let Some(token) = from.load(bucket).await.map_err(read)? else {
        return Ok(false);
    };
    let write = |source| MigrateError::Write {
        bucket: bucket.clone(),
        source,
    };
    // An earlier run may have copied it already; a copy that differs is replaced.
    let present = to.load(bucket).await.ok().flatten();
    if present.as_ref() != Some(&token) {
        to.save(bucket, &token).await.map_err(write)?;
    }
    let copy = to.load(bucket).await.map_err(write)?;
    if copy.as_ref() != Some(&token) {
        return Err(MigrateError::Mismatch {
            bucket: bucket.clone(),
        });
    }
    from.delete(bucket)
        .await
        .map_err(|source| MigrateError::Remove {
            bucket: bucket.clone(),
            source,
        })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::token_store::numbered_token;
    use crate::testkit::MemoryTokenStore;
    use llxprt_domain::BucketName;

    fn bucket(provider: OAuthProvider, name: &str) -> BucketId {
        BucketId::new(provider, BucketName::parse(name).unwrap())
    }

    #[tokio::test]
    async fn every_token_moves_and_a_second_run_finds_nothing_to_do() {
        let (from, to) = (MemoryTokenStore::default(), MemoryTokenStore::default());
        let buckets = [
            bucket(OAuthProvider::Anthropic, "default"),
            bucket(OAuthProvider::Gemini, "work@example.com"),
            bucket(OAuthProvider::Codex, "a.b"),
        ];
        for (n, b) in buckets.iter().enumerate() {
            from.save(b, &numbered_token(n as i64)).await.unwrap();
        }
        // A half-done earlier run: one copy already there, one stale.
        to.save(&buckets[0], &numbered_token(0)).await.unwrap();
        to.save(&buckets[1], &numbered_token(99)).await.unwrap();
        let done = migrate(&from, &to).await.unwrap();
        assert_eq!(done.moved.len(), 3);
        for (n, b) in buckets.iter().enumerate() {
            assert_eq!(to.load(b).await.unwrap(), Some(numbered_token(n as i64)));
            assert_eq!(from.load(b).await.unwrap(), None);
        }
        assert_eq!(migrate(&from, &to).await.unwrap(), Migration::default());
    }
}
