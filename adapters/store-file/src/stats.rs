//! Bucket statistics in `$LLXPRT_HOME/stats.json`, merged safely across processes.
//!
//! Each process adds its counts under an exclusive lock on `stats.json.lock`: read the totals,
//! add, write atomically. So two processes saving at once both land, and a crash mid-write
//! leaves the previous totals.
//!
//! ```json
//! { "buckets": { "anthropic/work1@company.com": { "requests": 47, "last_used": 1767225600,
//!   "rate_limits": 1, "failovers": 1 } } }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use llxprt_application::ports::{PersistenceError, StatsStore};
use llxprt_domain::stats::{BucketStats, StatsDelta, StatsTotals};
use llxprt_domain::{BucketId, BucketName, OAuthProvider, UnixSeconds};
use serde::{Deserialize, Serialize};

use crate::update_json_locked;

/// The largest statistics file read; anything bigger is not ours.
const MAX_STATS_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct StatsFile {
    #[serde(default)]
    buckets: BTreeMap<String, BucketEntry>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct BucketEntry {
    #[serde(default)]
    requests: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_used: Option<i64>,
    #[serde(default)]
    rate_limits: u64,
    #[serde(default)]
    failovers: u64,
}

/// Statistics kept in a JSON file.
#[derive(Debug, Clone)]
pub struct FileStatsStore {
    path: PathBuf,
}

impl FileStatsStore {
    /// The store at `home/stats.json`.
    pub fn new(home: &Path) -> Self {
        Self {
            path: home.join("stats.json"),
        }
    }

    fn io(&self, path: &Path, error: impl std::fmt::Display) -> PersistenceError {
        PersistenceError::Refused {
            place: path.display().to_string(),
            message: error.to_string(),
        }
    }

    fn read(&self) -> Result<StatsTotals, PersistenceError> {
        // Never through a planted link, never a FIFO, never a file others own or can change.
        let read =
            llxprt_fs::read_regular(&self.path, llxprt_fs::Links::Refuse, MAX_STATS_FILE_BYTES);
        let bytes = match read.map_err(|(p, e)| self.io(&p, e))? {
            Some(bytes) => bytes,
            None => return Ok(StatsTotals::new()),
        };
        let file: StatsFile =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&e.to_string()))?;
        let mut totals = StatsTotals::new();
        for (key, entry) in file.buckets {
            // An entry whose name is not provider/bucket is skipped, not fatal: statistics are
            // advisory and must never stop a request.
            let Some(bucket) = parse_bucket_key(&key) else {
                tracing::warn!(key, "skipping an unreadable statistics entry");
                continue;
            };
            totals.insert(
                bucket,
                BucketStats {
                    requests: entry.requests,
                    last_used: entry.last_used.map(UnixSeconds),
                    rate_limits: entry.rate_limits,
                    failovers: entry.failovers,
                },
            );
        }
        Ok(totals)
    }

    fn corrupt(&self, reason: &str) -> PersistenceError {
        PersistenceError::Corrupt {
            place: format!("the statistics file {}", self.path.display()),
            reason: reason.to_owned(),
        }
    }

    fn add_blocking(&self, delta: &StatsDelta) -> Result<StatsTotals, PersistenceError> {
        let mut totals = StatsTotals::new();
        update_json_locked(
            &self.path,
            ".stats-",
            || {
                totals = self.read()?;
                totals.apply(delta);
                Ok(StatsFile {
                    buckets: totals
                        .iter()
                        .map(|(bucket, stats)| {
                            let entry = BucketEntry {
                                requests: stats.requests,
                                last_used: stats.last_used.map(|t| t.0),
                                rate_limits: stats.rate_limits,
                                failovers: stats.failovers,
                            };
                            (bucket.to_string(), entry)
                        })
                        .collect(),
                })
            },
            |(p, e)| self.io(&p, e),
        )?;
        Ok(totals)
    }
}

/// The bucket of a `provider/bucket` key (the keys of `stats.json` and `health.json`).
pub(crate) fn parse_bucket_key(key: &str) -> Option<BucketId> {
    let (provider, bucket) = key.split_once('/')?;
    let provider: OAuthProvider = provider.parse().ok()?;
    Some(BucketId::new(provider, BucketName::parse(bucket).ok()?))
}

#[async_trait]
impl StatsStore for FileStatsStore {
    async fn load(&self) -> Result<StatsTotals, PersistenceError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read())
            .await
            .map_err(|e| self.io(&self.path, e))?
    }

    async fn add(&self, delta: &StatsDelta) -> Result<StatsTotals, PersistenceError> {
        let store = self.clone();
        let delta = delta.clone();
        tokio::task::spawn_blocking(move || store.add_blocking(&delta))
            .await
            .map_err(|e| self.io(&self.path, e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(name: &str) -> BucketId {
        BucketId::new(OAuthProvider::Anthropic, BucketName::parse(name).unwrap())
    }

    #[tokio::test]
    async fn totals_survive_a_new_store_and_add_up() {
        let home = tempfile::tempdir().unwrap();
        let mut delta = StatsDelta::new();
        delta.record_request(&bucket("w1@x.com"), UnixSeconds(100));
        delta.record_request(&bucket("w1@x.com"), UnixSeconds(200));
        delta.record_rate_limit(&bucket("w1@x.com"));
        FileStatsStore::new(home.path()).add(&delta).await.unwrap();
        let again = FileStatsStore::new(home.path());
        again.add(&delta).await.unwrap();
        let totals = again.load().await.unwrap();
        let w1 = totals.get(&bucket("w1@x.com")).unwrap();
        assert_eq!((w1.requests, w1.rate_limits), (4, 2));
        assert_eq!(w1.last_used, Some(UnixSeconds(200)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_savers_lose_no_count() {
        let home = tempfile::tempdir().unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = FileStatsStore::new(home.path());
                tokio::spawn(async move {
                    for _ in 0..10 {
                        let mut delta = StatsDelta::new();
                        delta.record_request(&bucket("w"), UnixSeconds(1));
                        store.add(&delta).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let totals = FileStatsStore::new(home.path()).load().await.unwrap();
        assert_eq!(totals.get(&bucket("w")).unwrap().requests, 160);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_named_and_kept() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("stats.json"), "{not json").unwrap();
        let store = FileStatsStore::new(home.path());
        let err = store.load().await.unwrap_err();
        assert!(err.to_string().contains("stats.json"), "{err}");
        let mut delta = StatsDelta::new();
        delta.record_request(&bucket("w"), UnixSeconds(1));
        assert!(store.add(&delta).await.is_err());
        assert_eq!(
            std::fs::read_to_string(home.path().join("stats.json")).unwrap(),
            "{not json"
        );
    }
}
