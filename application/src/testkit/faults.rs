//! Failures a double has been told to produce, per operation.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// How many more calls of an operation fail, and with what.
#[derive(Debug)]
struct Planned<E> {
    /// `None`: every call until [`Faults::heal`].
    remaining: Option<u32>,
    error: E,
}

/// The failures planned for a double's operations, and how often each operation was called.
#[derive(Debug)]
pub(crate) struct Faults<Op, E> {
    planned: Mutex<HashMap<Op, Planned<E>>>,
    calls: Mutex<HashMap<Op, usize>>,
}

impl<Op, E> Default for Faults<Op, E> {
    fn default() -> Self {
        Self {
            planned: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }
}

impl<Op: Eq + Hash + Copy, E: Clone> Faults<Op, E> {
    /// Every later call of `op` fails with `error`, until healed.
    pub(crate) fn always(&self, op: Op, error: E) {
        self.plan(op, None, error);
    }

    /// The next `count` calls of `op` fail with `error`.
    pub(crate) fn next(&self, op: Op, count: u32, error: E) {
        self.plan(op, Some(count), error);
    }

    fn plan(&self, op: Op, remaining: Option<u32>, error: E) {
        self.planned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(op, Planned { remaining, error });
    }

    /// No operation fails any more.
    pub(crate) fn heal(&self) {
        self.planned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Counts a call of `op` and returns the failure planned for it, if any.
    pub(crate) fn check(&self, op: Op) -> Result<(), E> {
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(op)
            .or_default() += 1;
        let mut planned = self.planned.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(plan) = planned.get_mut(&op) else {
            return Ok(());
        };
        let error = plan.error.clone();
        match &mut plan.remaining {
            None => {}
            Some(1) => {
                planned.remove(&op);
            }
            Some(n) => *n -= 1,
        }
        Err(error)
    }

    /// How many times `op` was called, failed calls included.
    pub(crate) fn calls(&self, op: Op) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&op)
            .copied()
            .unwrap_or(0)
    }
}
