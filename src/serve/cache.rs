//! Answers computed once per published version of the boards.
//!
//! The workers publish their shards about once a second; between two
//! publishes every request for the same thing has the same answer. Without
//! this, each request merged and sorted every title of the live model, so a
//! few hundred requests a second took CPU from the workers. The model is
//! built once per version (one thread builds, the others wait for it), and
//! each distinct local answer once per version, up to a bound so that
//! requests varying `k` or the region cannot grow it without limit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The live model of this process, merged over its shards, with episode
/// scores from the episode total.
pub struct LiveModel {
    /// The oldest pane over the shards.
    pub as_of: u64,
    /// Every node's row, by id.
    pub rows: Vec<crate::core::model::NodeRow>,
    /// Views of every episode in the 24-hour window.
    pub total_24h: i64,
}

/// Distinct local answers kept per version; beyond it, answers are
/// computed but not kept.
const MAX_ANSWERS: usize = 256;

/// The boards' versions an entry was computed at: (live window, model).
pub type Version = (u64, u64);

/// Values by key, each with the version it was computed at; at most
/// [`MAX_ANSWERS`] keys.
struct Kept<V> {
    values: HashMap<String, (Version, V)>,
    /// Keys whose newer value some thread is computing.
    refreshing: HashSet<String>,
}

/// What a lookup of a whole reply found.
pub enum Lookup<V> {
    /// Computed at the current version.
    Fresh(V),
    /// Computed at an older version while another thread computes the
    /// current one: good for this request, at most a publish behind.
    Stale(V),
    /// Nothing usable: the caller computes it (and is marked as doing so).
    Miss,
}

impl<V: Clone> Kept<V> {
    fn fresh(&self, version: Version, key: &str) -> Option<V> {
        match self.values.get(key) {
            Some((v, value)) if *v == version => Some(value.clone()),
            _ => None,
        }
    }

    fn lookup(&mut self, version: Version, key: &str) -> Lookup<V> {
        match self.values.get(key) {
            Some((v, value)) if *v == version => Lookup::Fresh(value.clone()),
            Some((_, value)) if self.refreshing.contains(key) => Lookup::Stale(value.clone()),
            _ => {
                self.refreshing.insert(key.to_string());
                Lookup::Miss
            }
        }
    }

    fn keep(&mut self, version: Version, key: String, value: V) {
        self.refreshing.remove(&key);
        if self.values.len() >= MAX_ANSWERS && !self.values.contains_key(&key) {
            self.values.retain(|_, (v, _)| *v == version);
        }
        if self.values.len() < MAX_ANSWERS || self.values.contains_key(&key) {
            self.values.insert(key, (version, value));
        }
    }
}

impl<V> Default for Kept<V> {
    fn default() -> Self {
        Kept {
            values: HashMap::new(),
            refreshing: HashSet::new(),
        }
    }
}

/// A whole reply: status and serialized body.
pub type Whole = (hyper::StatusCode, bytes::Bytes);

/// The cache; one per process, shared by the API threads.
#[derive(Default)]
pub struct Answers {
    model: Mutex<Option<(u64, Arc<LiveModel>)>>,
    local: Mutex<Kept<serde_json::Value>>,
    whole: Mutex<Kept<Whole>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it left a map, not a half-written value.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Answers {
    /// The live model at `version`, built by `build` if none is kept for it.
    pub fn model(
        &self,
        version: u64,
        build: impl FnOnce() -> Option<LiveModel>,
    ) -> Option<Arc<LiveModel>> {
        // Held while building: the threads that ask meanwhile want the same model.
        let mut kept = lock(&self.model);
        if let Some((v, model)) = kept.as_ref() {
            if *v == version {
                return Some(model.clone());
            }
        }
        let model = Arc::new(build()?);
        *kept = Some((version, model.clone()));
        Some(model)
    }

    /// The local answer for `key` at `version`, if one is kept.
    pub fn local(&self, version: Version, key: &str) -> Option<serde_json::Value> {
        lock(&self.local).fresh(version, key)
    }

    /// Keeps `answer` for `key` at `version`, dropping answers of older versions.
    pub fn keep(&self, version: Version, key: String, answer: &serde_json::Value) {
        lock(&self.local).keep(version, key, answer.clone());
    }

    /// The whole reply to `key` (path and query) at `version`; on a
    /// [`Lookup::Miss`] the caller must call [`Answers::keep_whole`] or
    /// [`Answers::abandon`] (a [`Refreshing`] guard does the latter).
    pub fn whole(&self, version: Version, key: &str) -> Lookup<Whole> {
        lock(&self.whole).lookup(version, key)
    }

    /// Keeps a whole reply.
    pub fn keep_whole(&self, version: Version, key: String, reply: Whole) {
        lock(&self.whole).keep(version, key, reply);
    }

    /// Gives up computing `key`: the next request computes it.
    pub fn abandon(&self, key: &str) {
        lock(&self.whole).refreshing.remove(key);
    }
}

/// Abandons a refresh unless it was kept: a request dropped halfway (its
/// client went away) must not leave its key marked forever.
pub struct Refreshing<'a> {
    /// The cache.
    pub answers: &'a Answers,
    /// The key being computed.
    pub key: String,
}

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.answers.abandon(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(total: i64) -> LiveModel {
        LiveModel {
            as_of: 1,
            rows: Vec::new(),
            total_24h: total,
        }
    }

    #[test]
    fn a_model_is_built_once_per_version() {
        let answers = Answers::default();
        let mut builds = 0;
        for _ in 0..3 {
            answers.model(7, || {
                builds += 1;
                Some(model(5))
            });
        }
        assert_eq!(builds, 1);
        let newer = answers.model(8, || Some(model(9))).map(|m| m.total_24h);
        assert_eq!(newer, Some(9));
    }

    #[test]
    fn a_stale_reply_is_served_only_while_another_thread_refreshes() {
        let answers = Answers::default();
        let body = |s: &str| (hyper::StatusCode::OK, bytes::Bytes::from(s.to_string()));
        assert!(matches!(answers.whole((1, 1), "k"), Lookup::Miss));
        answers.keep_whole((1, 1), "k".into(), body("one"));
        assert!(matches!(answers.whole((1, 1), "k"), Lookup::Fresh(_)));
        assert!(
            matches!(answers.whole((2, 1), "k"), Lookup::Miss),
            "the first asker refreshes"
        );
        match answers.whole((2, 1), "k") {
            Lookup::Stale((_, b)) => assert_eq!(b, "one"),
            _ => panic!("others get the older reply meanwhile"),
        }
        drop(Refreshing {
            answers: &answers,
            key: "k".into(),
        });
        assert!(
            matches!(answers.whole((2, 1), "k"), Lookup::Miss),
            "an abandoned refresh is retried"
        );
    }

    #[test]
    fn local_answers_hold_only_at_their_version_and_are_bounded() {
        let answers = Answers::default();
        answers.keep((1, 1), "a".into(), &serde_json::json!(1));
        assert_eq!(answers.local((1, 1), "a"), Some(serde_json::json!(1)));
        assert_eq!(answers.local((1, 2), "a"), None);
        for i in 0..MAX_ANSWERS + 10 {
            answers.keep((2, 2), i.to_string(), &serde_json::json!(i));
        }
        assert_eq!(answers.local((2, 2), "a"), None);
        assert_eq!(answers.local((2, 2), "0"), Some(serde_json::json!(0)));
        let last = (MAX_ANSWERS + 9).to_string();
        assert_eq!(answers.local((2, 2), &last), None);
    }
}
