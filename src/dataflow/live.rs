//! The live window, shared with the query API.
//!
//! Each worker's `HourlyTables` operator (with the model: its title stage)
//! publishes its shard of the current window counts, as of the last pane its
//! input frontier has passed, at most about once a second. Readers get an immutable snapshot per shard; nothing
//! here blocks a worker for more than a pointer swap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Counts;
use crate::core::time::Pane;

/// One shard's counts, as of a pane.
#[derive(Clone, Debug, Default)]
pub struct LiveShard {
    /// The last pane whose updates are all applied.
    pub as_of: Pane,
    /// Views in the window ending at `as_of`, per title (nonzero only).
    pub counts: Arc<Counts>,
}

/// The shards of the workers in this process.
#[derive(Debug, Default)]
pub struct LiveBoard {
    shards: Mutex<BTreeMap<usize, LiveShard>>,
    version: AtomicU64,
}

impl LiveBoard {
    /// Replaces worker `worker`'s shard.
    pub fn publish(&self, worker: usize, as_of: Pane, counts: Arc<Counts>) {
        if let Ok(mut s) = self.shards.lock() {
            s.insert(worker, LiveShard { as_of, counts });
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Bumped by every publish: answers computed at one version hold
    /// until it moves.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every shard published so far, by worker.
    pub fn shards(&self) -> BTreeMap<usize, LiveShard> {
        self.shards.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
