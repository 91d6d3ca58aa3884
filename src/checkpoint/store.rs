//! Checkpoints in the store: writing parts and manifests, listing them,
//! finding the newest one that is whole and valid, pruning old ones.

use std::collections::BTreeMap;

use super::format::*;
use crate::core::error::{Error, Result};
use crate::core::time::Pane;
use crate::sink::store::ObjectStore;

fn is_manifest(key: &str) -> bool {
    key.rsplit('/').next() == Some(MANIFEST)
}

/// Reads and writes one job's checkpoints in a store.
pub struct Checkpoints<'a> {
    store: &'a dyn ObjectStore,
    root: String,
}

fn json_err(what: &str, e: serde_json::Error) -> Error {
    Error::Input(format!("{what}: {e}"))
}

impl<'a> Checkpoints<'a> {
    /// The checkpoints of `job` in `store`.
    pub fn new(store: &'a dyn ObjectStore, job: &str) -> Self {
        Checkpoints {
            store,
            root: format!("checkpoints/{job}"),
        }
    }

    fn dir(&self, id: u64) -> String {
        format!("{}/{id:020}", self.root)
    }

    /// Writes worker `meta.worker`'s part and its metadata.
    pub fn write_part(&self, id: u64, part: &[u8], meta: &PartMeta) -> Result<()> {
        let dir = self.dir(id);
        self.store
            .put(&format!("{dir}/part-{:05}.ckpt", meta.worker), part)?;
        let json = serde_json::to_vec(meta).map_err(|e| Error::Internal(e.to_string()))?;
        self.store
            .put(&format!("{dir}/part-{:05}.json", meta.worker), &json)
    }

    /// Metadata of the parts of checkpoint `id` written so far.
    pub fn part_metas(&self, id: u64) -> Result<Vec<PartMeta>> {
        let keys = self.store.list(&format!("{}/", self.dir(id)))?;
        self.metas_of(keys.iter().map(String::as_str))
    }

    /// The JSON object at `key`, if it is there; one that does not parse
    /// is bad input.
    fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.store.get(key)? {
            Some(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).map_err(|e| json_err(key, e))?,
            )),
            None => Ok(None),
        }
    }

    /// The part metadata among `keys`, by worker.
    fn metas_of<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Result<Vec<PartMeta>> {
        let mut metas = Vec::new();
        for key in keys.filter(|k| k.ends_with(".json")) {
            metas.extend(self.json::<PartMeta>(key)?);
        }
        metas.sort_by_key(|m| m.worker);
        Ok(metas)
    }

    /// Writes the manifest of `id` if all `peers` parts exist and `frontier`
    /// has passed the checkpoint time; returns it when written.
    pub fn try_complete(
        &self,
        id: u64,
        peers: usize,
        frontier: Option<Pane>,
    ) -> Result<Option<Manifest>> {
        let metas = self.part_metas(id)?;
        if metas.len() < peers || metas.iter().any(|m| m.peers != peers) {
            return Ok(None);
        }
        let time = metas.iter().map(|m| m.frontier).max().unwrap_or(0);
        // An empty frontier means the dataflow is done: every hour is out.
        if frontier.is_some_and(|f| f < time) {
            return Ok(None);
        }
        let manifest = Manifest {
            id,
            time,
            peers,
            parts: metas,
        };
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        self.store
            .put(&format!("{}/{MANIFEST}", self.dir(id)), &json)?;
        Ok(Some(manifest))
    }

    /// True once checkpoint `id` has its manifest.
    pub fn is_complete(&self, id: u64) -> Result<bool> {
        Ok(self
            .store
            .get(&format!("{}/{MANIFEST}", self.dir(id)))?
            .is_some())
    }

    /// Every `(id, key)` under the job's checkpoints.
    fn objects(&self) -> Result<Vec<(u64, String)>> {
        let prefix = format!("{}/", self.root);
        Ok(self
            .store
            .list(&prefix)?
            .into_iter()
            .filter_map(|k| {
                let (id, _) = k.strip_prefix(&prefix)?.split_once('/')?;
                Some((id.parse().ok()?, k))
            })
            .collect())
    }

    /// Ids that have a manifest, newest first.
    pub fn complete(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .objects()?
            .into_iter()
            .filter_map(|(id, key)| is_manifest(&key).then_some(id))
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// The manifest of checkpoint `id`, if it is complete.
    pub fn manifest(&self, id: u64) -> Result<Option<Manifest>> {
        self.json(&format!("{}/{MANIFEST}", self.dir(id)))
    }

    /// The newest checkpoint after `above` that has a part taken on a stop
    /// ([`PartMeta::stop`]) by a cluster of `peers` workers, and no
    /// manifest yet. Metadata that does not parse is not a stop's, and
    /// does not hide the other parts' metadata.
    pub fn newest_stop_after(&self, above: u64, peers: usize) -> Result<Option<u64>> {
        let mut by_id: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (id, key) in self.objects()? {
            if id > above {
                by_id.entry(id).or_default().push(key);
            }
        }
        for (id, keys) in by_id.into_iter().rev() {
            if keys.iter().any(|k| is_manifest(k)) {
                continue;
            }
            for key in keys.iter().filter(|k| k.ends_with(".json")) {
                match self.json::<PartMeta>(key) {
                    Ok(Some(m)) if m.stop && m.peers == peers => return Ok(Some(id)),
                    Ok(_) | Err(Error::Input(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    /// The newest checkpoint whose manifest and every part verify, with all its ledgers.
    /// Broken checkpoints are logged and skipped for older ones.
    pub fn latest_valid(&self) -> Result<Option<Loaded>> {
        for id in self.complete()? {
            match self.load(id) {
                Ok(found) => return Ok(Some(found)),
                Err(e) => {
                    tracing::warn!(checkpoint = id, error = %e, "checkpoint unusable; trying an older one")
                }
            }
        }
        Ok(None)
    }

    /// Loads and verifies checkpoint `id`.
    pub fn load(&self, id: u64) -> Result<Loaded> {
        let dir = self.dir(id);
        let manifest: Manifest = self
            .json(&format!("{dir}/{MANIFEST}"))?
            .ok_or_else(|| Error::Input(format!("{dir}: no manifest")))?;
        if manifest.parts.len() != manifest.peers {
            return Err(Error::Input(format!(
                "{dir}: manifest lists {} parts for {} workers",
                manifest.parts.len(),
                manifest.peers
            )));
        }
        let mut all = Vec::new();
        for meta in &manifest.parts {
            let key = format!("{dir}/part-{:05}.ckpt", meta.worker);
            let part = self
                .store
                .get(&key)?
                .ok_or_else(|| Error::Input(format!("{key} is missing")))?;
            if part.len() as u64 != meta.bytes {
                return Err(Error::Input(format!(
                    "{key} is {} bytes, the manifest says {}",
                    part.len(),
                    meta.bytes
                )));
            }
            all.extend(decode_part(&part).map_err(|e| Error::Input(format!("{key}: {e}")))?);
        }
        Ok((manifest, all))
    }

    /// Deletes all but the newest `keep` complete checkpoints, and incomplete
    /// ones older than the newest complete one.
    pub fn prune(&self, keep: usize) -> Result<()> {
        let complete = self.complete()?;
        let Some(&newest) = complete.first() else {
            return Ok(());
        };
        let kept: Vec<u64> = complete.iter().take(keep.max(1)).copied().collect();
        for (id, key) in self.objects()? {
            if !kept.contains(&id) && id < newest {
                self.store.delete(&key)?;
            }
        }
        Ok(())
    }
}
