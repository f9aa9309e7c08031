//! Statistics and bucket health kept in memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use llxprt_domain::failover::BucketHealth;
use llxprt_domain::stats::{StatsDelta, StatsTotals};
use llxprt_domain::{BucketId, ReportedLimits};

use super::faults::Faults;
use crate::ports::{HealthStore, PersistenceError, StatsStore};

/// An operation of [`StatsStore`] or [`HealthStore`], to make a memory store fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PersistenceOperation {
    /// [`StatsStore::load`], [`HealthStore::load`] or [`HealthStore::load_limits`].
    Load,
    /// [`StatsStore::add`], [`HealthStore::record`] or [`HealthStore::record_limits`].
    Write,
}

/// The error an unreachable store would give, for the memory stores' `fail`.
pub fn unavailable() -> PersistenceError {
    PersistenceError::Unavailable {
        place: "memory".to_owned(),
        message: "the store was told to fail".to_owned(),
    }
}

/// Statistics kept in memory, shared by every service given the same store (as processes share
/// `stats.json`). A failed `add` changes nothing.
#[derive(Debug, Default)]
pub struct MemoryStatsStore {
    totals: Mutex<StatsTotals>,
    faults: Faults<PersistenceOperation, PersistenceError>,
}

impl MemoryStatsStore {
    /// No statistics yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every later call of `operation` fails with `error` until [`heal`](Self::heal).
    pub fn fail(&self, operation: PersistenceOperation, error: PersistenceError) {
        self.faults.always(operation, error);
    }

    /// The next `count` calls of `operation` fail with `error`.
    pub fn fail_next(&self, operation: PersistenceOperation, count: u32, error: PersistenceError) {
        self.faults.next(operation, count, error);
    }

    /// Nothing fails any more.
    pub fn heal(&self) {
        self.faults.heal();
    }

    /// How many times `operation` was called, failed calls included.
    pub fn calls(&self, operation: PersistenceOperation) -> usize {
        self.faults.calls(operation)
    }
}

#[async_trait]
impl StatsStore for MemoryStatsStore {
    async fn load(&self) -> Result<StatsTotals, PersistenceError> {
        self.faults.check(PersistenceOperation::Load)?;
        Ok(self
            .totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn add(&self, delta: &StatsDelta) -> Result<StatsTotals, PersistenceError> {
        self.faults.check(PersistenceOperation::Write)?;
        let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        totals.apply(delta);
        Ok(totals.clone())
    }
}

/// Bucket health kept in memory, shared by every service given the same store (as processes
/// share `health.json`). A failed `record` changes nothing.
#[derive(Debug, Default)]
pub struct MemoryHealthStore {
    health: Mutex<HashMap<BucketId, BucketHealth>>,
    limits: Mutex<HashMap<BucketId, ReportedLimits>>,
    faults: Faults<PersistenceOperation, PersistenceError>,
}

impl MemoryHealthStore {
    /// Every bucket usable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every later call of `operation` fails with `error` until [`heal`](Self::heal).
    pub fn fail(&self, operation: PersistenceOperation, error: PersistenceError) {
        self.faults.always(operation, error);
    }

    /// The next `count` calls of `operation` fail with `error`.
    pub fn fail_next(&self, operation: PersistenceOperation, count: u32, error: PersistenceError) {
        self.faults.next(operation, count, error);
    }

    /// Nothing fails any more.
    pub fn heal(&self) {
        self.faults.heal();
    }

    /// How many times `operation` was called, failed calls included.
    pub fn calls(&self, operation: PersistenceOperation) -> usize {
        self.faults.calls(operation)
    }
}

#[async_trait]
impl HealthStore for MemoryHealthStore {
    async fn load(&self) -> Result<HashMap<BucketId, BucketHealth>, PersistenceError> {
        self.faults.check(PersistenceOperation::Load)?;
        Ok(self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn record(&self, changes: &[(BucketId, BucketHealth)]) -> Result<(), PersistenceError> {
        self.faults.check(PersistenceOperation::Write)?;
        let mut stored = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        for (bucket, health) in changes {
            if *health == BucketHealth::Usable {
                stored.remove(bucket);
            } else {
                stored.insert(bucket.clone(), *health);
            }
        }
        Ok(())
    }

    async fn load_limits(&self) -> Result<HashMap<BucketId, ReportedLimits>, PersistenceError> {
        self.faults.check(PersistenceOperation::Load)?;
        Ok(self
            .limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn record_limits(
        &self,
        latest: &[(BucketId, Option<ReportedLimits>)],
    ) -> Result<(), PersistenceError> {
        self.faults.check(PersistenceOperation::Write)?;
        let mut stored = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        for (bucket, limits) in latest {
            match limits {
                None => {
                    stored.remove(bucket);
                }
                Some(limits) if limits.replaces(stored.get(bucket)) => {
                    stored.insert(bucket.clone(), limits.clone());
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
