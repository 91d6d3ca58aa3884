//! Every store call timed and counted, whatever the store.
//!
//! Wraps the job's [`ObjectStore`] so the metrics show how long the store
//! takes, how often it fails and how often it times out, for snapshots and
//! checkpoints alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::store::ObjectStore;
use crate::core::error::Result;
use crate::core::stats::Stats;

/// A store whose calls are counted in [`Stats`].
pub struct Measured {
    inner: Arc<dyn ObjectStore>,
    stats: Arc<Stats>,
}

impl Measured {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, stats: Arc<Stats>) -> Measured {
        Measured { inner, stats }
    }

    fn time<T>(&self, call: impl FnOnce() -> Result<T>) -> Result<T> {
        let began = Instant::now();
        let result = call();
        let s = &self.stats;
        Stats::add(&s.store_calls, 1);
        s.store_call_micros
            .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            Stats::add(&s.store_errors, 1);
            if e.is_timeout() {
                Stats::add(&s.store_timeouts, 1);
            }
        }
        result
    }
}

impl ObjectStore for Measured {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.time(|| self.inner.put(key, bytes))
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.time(|| self.inner.get(key))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.time(|| self.inner.list(prefix))
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.time(|| self.inner.delete(key))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_failures_are_counted() {
        let dir = std::env::temp_dir().join(format!("measured-{}", std::process::id()));
        let stats = Arc::new(Stats::default());
        let local = crate::sink::store::LocalStore::new(&dir).expect("store");
        let store = Measured::new(Arc::new(local), stats.clone());
        store.put("a/b", b"x").expect("put");
        assert_eq!(store.get("a/b").expect("get"), Some(b"x".to_vec()));
        assert!(store.put("../escape", b"x").is_err());
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!((n(&stats.store_calls), n(&stats.store_errors)), (3, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
