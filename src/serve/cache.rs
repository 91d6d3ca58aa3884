//! Answers computed once per published version of the boards.
//!
//! The workers publish their shards about once a second; between two
//! publishes every request for the same thing has the same answer. Without
//! this, each request merged and sorted every title of the live model, so a
//! few hundred requests a second took CPU from the workers. The model is
//! built once per version (one thread builds, the others wait for it), and
//! each distinct local answer once per version, up to a bound so that
//! requests varying `k` or the region cannot grow it without limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::query::LiveModel;

/// Distinct local answers kept per version; beyond it, answers are
/// computed but not kept.
const MAX_ANSWERS: usize = 256;

/// The boards' versions an entry was computed at: (live window, model).
pub type Version = (u64, u64);

/// The cache; one per process, shared by the API threads.
#[derive(Default)]
pub struct Answers {
    model: Mutex<Option<(u64, Arc<LiveModel>)>>,
    local: Mutex<(Version, HashMap<String, serde_json::Value>)>,
}

impl Answers {
    /// The live model at `version`, built by `build` if none is kept for it.
    pub fn model(
        &self,
        version: u64,
        build: impl FnOnce() -> Option<LiveModel>,
    ) -> Option<Arc<LiveModel>> {
        // Held while building: the threads that ask meanwhile want the same model.
        let mut kept = self.model.lock().unwrap_or_else(|e| e.into_inner());
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
        let kept = self.local.lock().unwrap_or_else(|e| e.into_inner());
        (kept.0 == version)
            .then(|| kept.1.get(key).cloned())
            .flatten()
    }

    /// Keeps `answer` for `key` at `version`, dropping answers of older versions.
    pub fn keep(&self, version: Version, key: String, answer: &serde_json::Value) {
        let mut kept = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if kept.0 != version {
            *kept = (version, HashMap::new());
        }
        if kept.1.len() < MAX_ANSWERS {
            kept.1.insert(key, answer.clone());
        }
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
