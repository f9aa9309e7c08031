//! Bucket health in `$LLXPRT_HOME/health.json`, shared by every process.
//!
//! A process that meets a rate limit or a revoked grant records it here, so the next process
//! leaves the bucket alone until its reset (or a new login) instead of spending a request to
//! learn it again. Changes are merged under an exclusive lock on `health.json.lock`: read,
//! change only the buckets given, write atomically.
//!
//! ```json
//! { "buckets": {
//!     "anthropic/work1": { "state": "cooling", "until": 1767225600, "cause": "rate_limited" },
//!     "anthropic/work2": { "state": "needs_login", "cause": "forbidden" } },
//!   "limits": {
//!     "anthropic/work3": { "seen_at": 1767220000, "windows": [
//!       { "name": "5h", "used_percent": 72, "resets_at": 1767225600 },
//!       { "name": "7d", "used_percent": 31, "resets_at": 1767600000 } ] } } }
//! ```
//!
//! `limits` holds the latest figures each bucket's provider reported, with when they were seen
//! (`/stats quota`, `failover.switch_at_percent`).
//!
//! The file is a cache of hints: one that cannot be parsed is replaced at the next change.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use llxprt_application::ports::{HealthStore, PersistenceError};
use llxprt_domain::failover::{BucketHealth, CooldownCause, LoginCause, RefusalCause};
use llxprt_domain::{
    BucketId, Credits, Limits, QuotaWindow, ReportedLimits, UnixSeconds, WindowName,
};
use serde::{Deserialize, Serialize};

use crate::stats::parse_bucket_key;
use crate::update_json_locked;

/// The largest health file read; anything bigger is not ours.
const MAX_HEALTH_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct HealthFile {
    #[serde(default)]
    buckets: BTreeMap<String, Entry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    limits: BTreeMap<String, LimitsEntry>,
}

/// A bucket's latest reported limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LimitsEntry {
    seen_at: i64,
    #[serde(default)]
    windows: Vec<WindowEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credits: Option<CreditsEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WindowEntry {
    name: Window,
    used_percent: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resets_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Window {
    #[serde(rename = "5h")]
    FiveHour,
    #[serde(rename = "7d")]
    SevenDay,
    #[serde(rename = "weekly")]
    Weekly,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CreditsEntry {
    has_credits: bool,
    unlimited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    balance: Option<String>,
}

impl LimitsEntry {
    fn from_limits(reported: &ReportedLimits) -> Self {
        Self {
            seen_at: reported.seen_at.0,
            windows: reported
                .limits
                .windows
                .iter()
                .map(|w| WindowEntry {
                    name: match w.name {
                        WindowName::FiveHour => Window::FiveHour,
                        WindowName::SevenDay => Window::SevenDay,
                        WindowName::Weekly => Window::Weekly,
                    },
                    used_percent: w.used_percent,
                    resets_at: w.resets_at.map(|at| at.0),
                })
                .collect(),
            credits: reported.limits.credits.as_ref().map(|c| CreditsEntry {
                has_credits: c.has_credits,
                unlimited: c.unlimited,
                balance: c.balance.clone(),
            }),
        }
    }

    fn limits(self) -> ReportedLimits {
        Limits {
            windows: self
                .windows
                .into_iter()
                .map(|w| {
                    let name = match w.name {
                        Window::FiveHour => WindowName::FiveHour,
                        Window::SevenDay => WindowName::SevenDay,
                        Window::Weekly => WindowName::Weekly,
                    };
                    QuotaWindow::new(
                        name,
                        f64::from(w.used_percent),
                        w.resets_at.map(UnixSeconds),
                    )
                })
                .collect(),
            credits: self.credits.map(|c| Credits {
                has_credits: c.has_credits,
                unlimited: c.unlimited,
                balance: c.balance,
            }),
        }
        .seen_at(UnixSeconds(self.seen_at))
    }
}

/// A bucket's latest limits as JSON text (`{"seen_at":…,"windows":[…]}`), the document the team
/// store keeps per bucket too.
pub fn limits_entry_to_json(limits: &ReportedLimits) -> Option<String> {
    serde_json::to_string(&LimitsEntry::from_limits(limits)).ok()
}

/// A bucket's latest limits read from their JSON document.
///
/// # Errors
/// What is wrong with the document, when it is not one.
pub fn limits_entry_from_json(text: &str) -> Result<ReportedLimits, String> {
    serde_json::from_str::<LimitsEntry>(text)
        .map(LimitsEntry::limits)
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    Cooling {
        until: i64,
        cause: Cooldown,
    },
    NeedsLogin {
        cause: Login,
    },
    /// The provider refuses the account to llxprt (kept until a login or `/auth P clear`).
    Refused {
        cause: Refusal,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Refusal {
    ClaudeCodeOnly,
    UnsupportedClient,
    TierEnded,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Cooldown {
    RateLimited,
    PaymentRequired,
    NearLimit,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Login {
    Forbidden,
    RefreshRejected,
    NoToken,
}

impl Entry {
    fn from_health(health: BucketHealth) -> Option<Self> {
        match health {
            BucketHealth::Usable => None,
            BucketHealth::CoolingUntil { until, cause } => Some(Self::Cooling {
                until: until.0,
                cause: match cause {
                    CooldownCause::RateLimited => Cooldown::RateLimited,
                    CooldownCause::PaymentRequired => Cooldown::PaymentRequired,
                    CooldownCause::NearLimit => Cooldown::NearLimit,
                },
            }),
            BucketHealth::NeedsLogin { cause } => Some(Self::NeedsLogin {
                cause: match cause {
                    LoginCause::Forbidden => Login::Forbidden,
                    LoginCause::RefreshRejected => Login::RefreshRejected,
                    LoginCause::NoToken => Login::NoToken,
                },
            }),
            BucketHealth::Refused { cause } => Some(Self::Refused {
                cause: match cause {
                    RefusalCause::ClaudeCodeOnly => Refusal::ClaudeCodeOnly,
                    RefusalCause::UnsupportedClient => Refusal::UnsupportedClient,
                    RefusalCause::TierEnded => Refusal::TierEnded,
                },
            }),
        }
    }

    fn health(self) -> BucketHealth {
        match self {
            Self::Cooling { until, cause } => BucketHealth::CoolingUntil {
                until: UnixSeconds(until),
                cause: match cause {
                    Cooldown::RateLimited => CooldownCause::RateLimited,
                    Cooldown::PaymentRequired => CooldownCause::PaymentRequired,
                    Cooldown::NearLimit => CooldownCause::NearLimit,
                },
            },
            Self::NeedsLogin { cause } => BucketHealth::NeedsLogin {
                cause: match cause {
                    Login::Forbidden => LoginCause::Forbidden,
                    Login::RefreshRejected => LoginCause::RefreshRejected,
                    Login::NoToken => LoginCause::NoToken,
                },
            },
            Self::Refused { cause } => BucketHealth::Refused {
                cause: match cause {
                    Refusal::ClaudeCodeOnly => RefusalCause::ClaudeCodeOnly,
                    Refusal::UnsupportedClient => RefusalCause::UnsupportedClient,
                    Refusal::TierEnded => RefusalCause::TierEnded,
                },
            },
        }
    }
}

/// One bucket's entry of `health.json` as JSON text (`{"state":"cooling","until":…,"cause":…}`),
/// or `None` for a usable bucket, which has no entry. The team store keeps the same document
/// per bucket.
pub fn health_entry_to_json(health: BucketHealth) -> Option<String> {
    Entry::from_health(health).and_then(|entry| serde_json::to_string(&entry).ok())
}

/// A bucket's health read from its `health.json` entry.
///
/// # Errors
/// What is wrong with the entry, when it is not one.
pub fn health_entry_from_json(text: &str) -> Result<BucketHealth, String> {
    serde_json::from_str::<Entry>(text)
        .map(Entry::health)
        .map_err(|e| e.to_string())
}

type HealthMap = HashMap<BucketId, BucketHealth>;
type LimitsMap = HashMap<BucketId, ReportedLimits>;

/// What the file holds, parsed.
#[derive(Debug, Default)]
struct Parsed {
    health: HealthMap,
    limits: LimitsMap,
}

#[derive(Debug, Default)]
struct LastRead {
    /// Counts the records begun and ended, so that a read that overlapped one is not kept.
    records: u64,
    read: Option<(Instant, Arc<Parsed>)>,
}

/// Bucket health kept in a JSON file.
#[derive(Debug, Clone)]
pub struct FileHealthStore {
    path: PathBuf,
    revalidate_after: Duration,
    /// The health last read, and when; shared by clones.
    last_read: Arc<Mutex<LastRead>>,
}

impl FileHealthStore {
    /// The store at `home/health.json`.
    pub fn new(home: &Path) -> Self {
        Self {
            path: home.join("health.json"),
            revalidate_after: Duration::ZERO,
            last_read: Arc::default(),
        }
    }

    /// Answers a load from the health last read, without touching the file, for up to
    /// `interval` after that read (zero, the default: every load reads the file). Health is a
    /// hint: what another process records meanwhile is seen up to `interval` late (a request
    /// may then spend one attempt learning a cooldown again). This store's own records are
    /// seen at once.
    pub fn with_revalidate_after(mut self, interval: Duration) -> Self {
        self.revalidate_after = interval;
        self
    }

    fn last_read(&self) -> std::sync::MutexGuard<'_, LastRead> {
        self.last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the health last read: this store is changing the file.
    fn forget(&self) {
        let mut last = self.last_read();
        last.records += 1;
        last.read = None;
    }

    fn io(&self, path: &Path, error: impl std::fmt::Display) -> PersistenceError {
        PersistenceError::Refused {
            place: path.display().to_string(),
            message: error.to_string(),
        }
    }

    fn corrupt(&self, reason: &str) -> PersistenceError {
        PersistenceError::Corrupt {
            place: format!("the bucket health file {}", self.path.display()),
            reason: reason.to_owned(),
        }
    }

    fn read(&self) -> Result<HealthFile, PersistenceError> {
        // Never through a planted link, never a FIFO, never a file others own or can change.
        let read =
            llxprt_fs::read_regular(&self.path, llxprt_fs::Links::Refuse, MAX_HEALTH_FILE_BYTES);
        let bytes = match read.map_err(|(p, e)| self.io(&p, e))? {
            Some(bytes) => bytes,
            None => return Ok(HealthFile::default()),
        };
        serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&e.to_string()))
    }

    fn update_blocking(&self, change: impl Fn(&mut HealthFile)) -> Result<(), PersistenceError> {
        update_json_locked(
            &self.path,
            ".health-",
            || {
                let mut file = self.read().unwrap_or_else(|error| {
                    tracing::warn!(%error, "replacing an unreadable bucket health file");
                    HealthFile::default()
                });
                change(&mut file);
                Ok(file)
            },
            |(p, e)| self.io(&p, e),
        )
    }
}

impl FileHealthStore {
    /// What the file holds: from the last read while it is fresh enough, else read now.
    async fn parsed(&self) -> Result<Arc<Parsed>, PersistenceError> {
        let records = {
            let last = self.last_read();
            if let Some((read, parsed)) = &last.read {
                if read.elapsed() < self.revalidate_after {
                    return Ok(parsed.clone());
                }
            }
            last.records
        };
        let store = self.clone();
        let began = Instant::now();
        let file = tokio::task::spawn_blocking(move || store.read())
            .await
            .map_err(|e| self.io(&self.path, e))??;
        let parsed = Arc::new(Parsed {
            health: file
                .buckets
                .into_iter()
                .filter_map(|(key, entry)| Some((parse_bucket_key(&key)?, entry.health())))
                .collect(),
            limits: file
                .limits
                .into_iter()
                .filter_map(|(key, entry)| Some((parse_bucket_key(&key)?, entry.limits())))
                .collect(),
        });
        let mut last = self.last_read();
        if !self.revalidate_after.is_zero() && last.records == records {
            last.read = Some((began, parsed.clone()));
        }
        Ok(parsed)
    }

    /// Changes the file under its lock, off the async threads.
    async fn update(
        &self,
        change: impl Fn(&mut HealthFile) + Send + 'static,
    ) -> Result<(), PersistenceError> {
        // A read running now may predate this record; the next load reads the file.
        self.forget();
        let store = self.clone();
        let updated = tokio::task::spawn_blocking(move || store.update_blocking(change))
            .await
            .map_err(|e| self.io(&self.path, e));
        self.forget();
        updated?
    }
}

#[async_trait]
impl HealthStore for FileHealthStore {
    async fn load(&self) -> Result<HashMap<BucketId, BucketHealth>, PersistenceError> {
        Ok(self.parsed().await?.health.clone())
    }

    async fn record(&self, changes: &[(BucketId, BucketHealth)]) -> Result<(), PersistenceError> {
        let changes = changes.to_vec();
        self.update(move |file| apply_health(file, &changes)).await
    }

    async fn record_with_limits(
        &self,
        changes: &[(BucketId, BucketHealth)],
        latest: &[(BucketId, Option<ReportedLimits>)],
    ) -> Result<(), PersistenceError> {
        if changes.is_empty() && latest.is_empty() {
            return Ok(());
        }
        // One locked, fsynced write for both.
        let (changes, latest) = (changes.to_vec(), latest.to_vec());
        self.update(move |file| {
            apply_health(file, &changes);
            apply_limits(file, &latest);
        })
        .await
    }

    async fn load_limits(&self) -> Result<LimitsMap, PersistenceError> {
        Ok(self.parsed().await?.limits.clone())
    }

    async fn record_limits(
        &self,
        latest: &[(BucketId, Option<ReportedLimits>)],
    ) -> Result<(), PersistenceError> {
        let latest = latest.to_vec();
        self.update(move |file| apply_limits(file, &latest)).await
    }
}

/// Records each bucket's new health in the file (a usable bucket has no entry).
fn apply_health(file: &mut HealthFile, changes: &[(BucketId, BucketHealth)]) {
    for (bucket, health) in changes {
        match Entry::from_health(*health) {
            Some(entry) => file.buckets.insert(bucket.to_string(), entry),
            None => file.buckets.remove(&bucket.to_string()),
        };
    }
}

/// Keeps each bucket's latest limits in the file, unless the kept ones were seen later.
fn apply_limits(file: &mut HealthFile, latest: &[(BucketId, Option<ReportedLimits>)]) {
    for (bucket, limits) in latest {
        let key = bucket.to_string();
        match limits {
            None => {
                file.limits.remove(&key);
            }
            Some(limits) => {
                let kept = file.limits.get(&key).cloned().map(LimitsEntry::limits);
                if limits.replaces(kept.as_ref()) {
                    file.limits.insert(key, LimitsEntry::from_limits(limits));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llxprt_domain::{BucketName, OAuthProvider};

    fn bucket(name: &str) -> BucketId {
        BucketId::new(OAuthProvider::Anthropic, BucketName::parse(name).unwrap())
    }

    const COOLING: BucketHealth = BucketHealth::CoolingUntil {
        until: UnixSeconds(1_800_000_000),
        cause: CooldownCause::PaymentRequired,
    };
    const REVOKED: BucketHealth = BucketHealth::NeedsLogin {
        cause: LoginCause::Forbidden,
    };

    #[tokio::test]
    async fn a_refusal_is_kept_with_its_reason_for_the_next_process() {
        let home = tempfile::tempdir().unwrap();
        let refused = BucketHealth::Refused {
            cause: RefusalCause::UnsupportedClient,
        };
        FileHealthStore::new(home.path())
            .record(&[(bucket("w1"), refused)])
            .await
            .unwrap();
        let seen = FileHealthStore::new(home.path()).load().await.unwrap();
        assert_eq!(seen.get(&bucket("w1")), Some(&refused));
        let text = std::fs::read_to_string(home.path().join("health.json")).unwrap();
        assert!(text.contains("unsupported_client"), "{text}");
    }

    #[tokio::test]
    async fn recorded_health_is_seen_by_another_store_and_usable_removes_it() {
        let home = tempfile::tempdir().unwrap();
        let one = FileHealthStore::new(home.path());
        assert!(one.load().await.unwrap().is_empty());
        one.record(&[(bucket("w1"), COOLING), (bucket("w2"), REVOKED)])
            .await
            .unwrap();
        let other = FileHealthStore::new(home.path());
        let seen = other.load().await.unwrap();
        assert_eq!(seen.get(&bucket("w1")), Some(&COOLING));
        assert_eq!(seen.get(&bucket("w2")), Some(&REVOKED));

        other
            .record(&[(bucket("w2"), BucketHealth::Usable)])
            .await
            .unwrap();
        let seen = one.load().await.unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen.get(&bucket("w1")), Some(&COOLING));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_recorders_of_different_buckets_keep_each_others_changes() {
        let home = tempfile::tempdir().unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|n| {
                let store = FileHealthStore::new(home.path());
                tokio::spawn(async move {
                    store
                        .record(&[(bucket(&format!("w{n}")), REVOKED)])
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let seen = FileHealthStore::new(home.path()).load().await.unwrap();
        assert_eq!(seen.len(), 16);
    }

    #[tokio::test]
    async fn an_unreadable_file_is_reported_then_replaced_at_the_next_change() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("health.json"), "{not json").unwrap();
        let store = FileHealthStore::new(home.path());
        let err = store.load().await.unwrap_err();
        assert!(err.to_string().contains("health.json"), "{err}");
        store.record(&[(bucket("w1"), REVOKED)]).await.unwrap();
        assert_eq!(store.load().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn with_a_revalidation_interval_its_own_records_show_at_once_and_others_later() {
        let home = tempfile::tempdir().unwrap();
        let mine =
            FileHealthStore::new(home.path()).with_revalidate_after(Duration::from_secs(3600));
        assert!(mine.load().await.unwrap().is_empty());
        mine.record(&[(bucket("w1"), COOLING)]).await.unwrap();
        assert_eq!(
            mine.load().await.unwrap().get(&bucket("w1")),
            Some(&COOLING)
        );
        // The trade: another process's record is not seen within the interval.
        FileHealthStore::new(home.path())
            .record(&[(bucket("w2"), REVOKED)])
            .await
            .unwrap();
        assert_eq!(mine.load().await.unwrap().get(&bucket("w2")), None);
        let fresh = FileHealthStore::new(home.path()).with_revalidate_after(Duration::ZERO);
        assert_eq!(fresh.load().await.unwrap().len(), 2);
    }
}
