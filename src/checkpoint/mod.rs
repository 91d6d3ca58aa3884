//! Frontier-based checkpoints: what the sources have absorbed, per partition.
//!
//! A checkpoint holds, for every source partition, the next offset to read,
//! the largest event time seen (the watermark's basis), and the
//! pre-aggregated `(content, pane)` view counts still inside the window.
//! That is small (keys × panes, not events), independent of how partitions
//! map to workers (so a checkpoint restores onto any number of workers and
//! processes), and enough to rebuild every window exactly.
//!
//! Layout under the snapshot store: `checkpoints/<job>/<id>/part-<worker>.ckpt`
//! (binary, versioned, CRC-checked), `part-<worker>.json` (its metadata),
//! then `MANIFEST` (JSON) last. A checkpoint without a manifest does not
//! exist. The manifest is written by worker 0 once every worker's part exists
//! and the dataflow frontier has passed the checkpoint's time `T`: then every
//! hour ending before `T` is published, and the parts hold every pane the
//! hours ending at or after `T` need.

mod writer;

pub use writer::Writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};
use crate::core::event::ContentId;
use crate::core::model::{Cell, N_CELLS};
use crate::core::time::{Millis, Pane};
use crate::sink::store::ObjectStore;
use crate::source::PartitionId;

/// Magic bytes at the start of a part file.
pub const MAGIC: &[u8; 8] = b"POPCKPT\0";
/// Version of the part format (2: the model's ledger keys carry the
/// breakdown cell; 3: each partition's clock with its held records).
pub const VERSION: u32 = 3;
/// Name of the manifest object.
pub const MANIFEST: &str = "MANIFEST";

/// Ledger keys of the model's input carry this bit; the rest of the key is
/// `content << 8 | cell << 1 | watch` (content ids have at most 55 bits):
/// the views (`watch` 0) or the watch time (1) of a title's breakdown cell.
pub const FACT_TAG: u64 = 1 << 63;

/// The ledger key of a title's views (or watch time) in one cell.
pub fn fact_key(content: ContentId, cell: Cell, watch: bool) -> u64 {
    FACT_TAG | content << 8 | u64::from(cell) << 1 | u64::from(watch)
}

/// The title, cell and measure of a model ledger key; `None` for a key
/// of the plain window counts.
pub fn fact_of(key: u64) -> Option<(ContentId, Cell, bool)> {
    (key & FACT_TAG != 0).then_some({
        (
            (key & !FACT_TAG) >> 8,
            ((key >> 1) & 0x7f) as Cell,
            key & 1 == 1,
        )
    })
}

/// A loaded checkpoint: its manifest and every partition's ledger.
pub type Loaded = (Manifest, Vec<(PartitionId, PartitionLedger)>);

/// A record a partition's clock holds for corroboration ([`crate::core::clock`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldRecord {
    /// Its event time.
    pub time: Millis,
    /// Its sequence number among the partition's records.
    pub seq: u64,
    /// Its position in the partition.
    pub position: u64,
    /// The event, as JSON.
    pub raw: Vec<u8>,
}

/// What a checkpoint keeps of a partition's clock: held records are read
/// before the checkpointed offset and not counted yet, so they travel in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockState {
    /// Largest accepted event time the clock trusts (the watermark's basis).
    pub base: Option<Millis>,
    /// Records offered to the clock so far.
    pub seq: u64,
    /// Records waiting for corroboration, oldest first.
    pub held: Vec<HeldRecord>,
}

/// What one partition has contributed so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionLedger {
    /// Next offset to read.
    pub next_offset: i64,
    /// The partition's clock.
    pub clock: ClockState,
    /// Accepted views by pane and content.
    pub panes: BTreeMap<Pane, HashMap<ContentId, i64>>,
}

impl PartitionLedger {
    /// Drops panes that no window ending at or after `frontier` can contain.
    pub fn prune(&mut self, frontier: Pane, window_panes: u64) {
        while let Some((&p, _)) = self.panes.first_key_value() {
            if p + window_panes > frontier {
                break;
            }
            self.panes.remove(&p);
        }
    }

    /// Number of live `(content, pane)` entries.
    pub fn entries(&self) -> usize {
        self.panes.values().map(|m| m.len()).sum()
    }
}

/// Per-worker metadata, written beside the part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Worker index.
    pub worker: usize,
    /// Number of workers in the cluster that wrote the checkpoint.
    pub peers: usize,
    /// The dataflow frontier when the worker captured its state.
    pub frontier: Pane,
    /// Partitions in the part.
    pub partitions: Vec<PartitionId>,
    /// `(content, pane)` entries in the part.
    pub entries: u64,
    /// Size of the part file.
    pub bytes: u64,
    /// CRC-32 of the part file's payload.
    pub crc32: u32,
}

/// The manifest: the checkpoint exists once this does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Checkpoint id (processing-time based, increasing).
    pub id: u64,
    /// Checkpoint time `T`: hours ending before it are published.
    pub time: Pane,
    /// Workers that wrote it.
    pub peers: usize,
    /// Their parts.
    pub parts: Vec<PartMeta>,
}

/// CRC-32 (IEEE 802.3), bitwise: checkpoint parts are checked once per restore.
pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in bytes {
        c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Encodes ledgers as a part file: magic, version, payload length, CRC, payload.
pub fn encode_part(ledgers: &[(PartitionId, &PartitionLedger)]) -> Vec<u8> {
    let entries: usize = ledgers.iter().map(|(_, l)| l.entries()).sum();
    let mut payload = Vec::with_capacity(16 + ledgers.len() * 32 + entries * 24);
    payload.extend_from_slice(&(ledgers.len() as u32).to_le_bytes());
    for (p, l) in ledgers {
        payload.extend_from_slice(&p.to_le_bytes());
        payload.extend_from_slice(&l.next_offset.to_le_bytes());
        payload.extend_from_slice(&l.clock.base.unwrap_or(i64::MIN).to_le_bytes());
        payload.extend_from_slice(&l.clock.seq.to_le_bytes());
        payload.extend_from_slice(&(l.clock.held.len() as u32).to_le_bytes());
        for h in &l.clock.held {
            payload.extend_from_slice(&h.time.to_le_bytes());
            payload.extend_from_slice(&h.seq.to_le_bytes());
            payload.extend_from_slice(&h.position.to_le_bytes());
            payload.extend_from_slice(&(h.raw.len() as u32).to_le_bytes());
            payload.extend_from_slice(&h.raw);
        }
        payload.extend_from_slice(&(l.entries() as u64).to_le_bytes());
        for (pane, counts) in &l.panes {
            // Sorted within a pane so the same state gives the same bytes.
            let mut sorted: Vec<(&ContentId, &i64)> = counts.iter().collect();
            sorted.sort_unstable();
            for (c, n) in sorted {
                payload.extend_from_slice(&pane.to_le_bytes());
                payload.extend_from_slice(&c.to_le_bytes());
                payload.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    frame_part(&payload)
}

/// A part file around `payload`: magic, version, payload length, CRC.
pub fn frame_part(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self
            .at
            .checked_add(N)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| Error::Input("checkpoint part is truncated".into()))?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    /// Bytes not read yet.
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }
    /// A count of items of at least `size` bytes each, checked against the
    /// bytes left, so that no count can ask for more memory than the part has.
    fn count(&mut self, n: u64, size: usize) -> Result<usize> {
        if n > (self.left() / size.max(1)) as u64 {
            return Err(Error::Input(format!(
                "checkpoint part claims {n} entries but holds only {} bytes",
                self.left()
            )));
        }
        Ok(n as usize)
    }
    fn bytes(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.left() {
            return Err(Error::Input("checkpoint part is truncated".into()));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }
}

/// Decodes a part file, verifying magic, version, length and checksum before reading anything.
pub fn decode_part(bytes: &[u8]) -> Result<Vec<(PartitionId, PartitionLedger)>> {
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(Error::Input(
            "not a checkpoint part (bad magic or too short)".into(),
        ));
    }
    let mut header = Reader { bytes, at: 8 };
    let version = header.u32()?;
    if version != VERSION {
        return Err(Error::Input(format!(
            "checkpoint part format version {version}, this build reads {VERSION}"
        )));
    }
    let len = header.u64()? as usize;
    let crc = header.u32()?;
    let payload = &bytes[24..];
    if payload.len() != len {
        return Err(Error::Input(format!(
            "checkpoint part is {} bytes, its header says {len}",
            payload.len()
        )));
    }
    if crc32(payload) != crc {
        return Err(Error::Input("checkpoint part fails its checksum".into()));
    }
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let n = r.u32()?;
    let n = r.count(n as u64, 32)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let p = r.u32()?;
        let next_offset = r.i64()?;
        let base = Some(r.i64()?).filter(|m| *m != i64::MIN);
        let seq = r.u64()?;
        let held_n = r.u32()?;
        let held_n = r.count(held_n as u64, 28)?;
        let mut held = Vec::with_capacity(held_n);
        for _ in 0..held_n {
            let time = r.i64()?;
            let seq = r.u64()?;
            let position = r.u64()?;
            let len = r.u32()? as usize;
            let raw = r.bytes(len)?.to_vec();
            held.push(HeldRecord {
                time,
                seq,
                position,
                raw,
            });
        }
        let entries = r.u64()?;
        r.count(entries, 24)?;
        let mut panes: BTreeMap<Pane, HashMap<ContentId, i64>> = BTreeMap::new();
        for _ in 0..entries {
            let pane = r.u64()?;
            let c = r.u64()?;
            let v = r.i64()?;
            if let Some((_, cell, _)) = fact_of(c).filter(|(_, cell, _)| *cell as usize >= N_CELLS)
            {
                return Err(Error::Input(format!(
                    "checkpoint part holds breakdown cell {cell}; there are {N_CELLS}"
                )));
            }
            panes.entry(pane).or_default().insert(c, v);
        }
        out.push((
            p,
            PartitionLedger {
                next_offset,
                clock: ClockState { base, seq, held },
                panes,
            },
        ));
    }
    if r.at != payload.len() {
        return Err(Error::Input("checkpoint part has trailing bytes".into()));
    }
    Ok(out)
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
        let dir = self.dir(id);
        let mut metas = Vec::new();
        for key in self.store.list(&format!("{dir}/"))? {
            if key.ends_with(".json") {
                if let Some(bytes) = self.store.get(&key)? {
                    metas.push(
                        serde_json::from_slice::<PartMeta>(&bytes)
                            .map_err(|e| json_err(&key, e))?,
                    );
                }
            }
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

    /// Ids that have a manifest, newest first.
    pub fn complete(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .store
            .list(&format!("{}/", self.root))?
            .into_iter()
            .filter_map(|k| {
                let rest = k.strip_prefix(&format!("{}/", self.root))?;
                let (id, name) = rest.split_once('/')?;
                (name == MANIFEST).then(|| id.parse().ok()).flatten()
            })
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
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
        let bytes = self
            .store
            .get(&format!("{dir}/{MANIFEST}"))?
            .ok_or_else(|| Error::Input(format!("{dir}: no manifest")))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| json_err(&format!("{dir}/{MANIFEST}"), e))?;
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
        for key in self.store.list(&format!("{}/", self.root))? {
            let Some(id) = key
                .strip_prefix(&format!("{}/", self.root))
                .and_then(|r| r.split_once('/'))
                .and_then(|(id, _)| id.parse::<u64>().ok())
            else {
                continue;
            };
            if !kept.contains(&id) && id < newest {
                self.store.delete(&key)?;
            }
        }
        Ok(())
    }
}

/// A worker's side of checkpointing: keeps its partitions' ledgers and
/// hands its part to the process's [`Writer`] on schedule.
pub struct Checkpointer {
    writer: Arc<Writer>,
    index: usize,
    peers: usize,
    interval_ms: u64,
    window_panes: u64,
    /// What this worker's partitions have contributed.
    pub ledgers: BTreeMap<PartitionId, PartitionLedger>,
    last_id: Option<u64>,
    /// The time of the checkpoint this run restored from: the frontier of a
    /// new checkpoint is never below it (hours before it are already out,
    /// and the restored ledgers hold nothing older).
    floor: Pane,
}

impl Checkpointer {
    /// A checkpointer for worker `index` of `peers`.
    pub fn new(
        writer: Arc<Writer>,
        index: usize,
        peers: usize,
        interval_ms: u64,
        window_panes: u64,
    ) -> Self {
        Checkpointer {
            writer,
            index,
            peers,
            interval_ms: interval_ms.max(1),
            window_panes,
            ledgers: BTreeMap::new(),
            last_id: None,
            floor: 0,
        }
    }

    /// The process's writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Continues after a restore from checkpoint `id` taken at `time`: new ids
    /// are larger, and new checkpoint times are not earlier.
    pub fn restored(&mut self, id: u64, time: Pane) {
        self.last_id = Some(id);
        self.floor = time;
    }

    /// Adds accepted views to a partition's ledger.
    pub fn record(&mut self, partition: PartitionId, content: ContentId, pane: Pane, n: i64) {
        *self
            .ledgers
            .entry(partition)
            .or_default()
            .panes
            .entry(pane)
            .or_default()
            .entry(content)
            .or_insert(0) += n;
    }

    /// The id of the checkpoint due now, if this worker has not taken it.
    pub fn due(&self, now_ms: u64) -> Option<u64> {
        let id = now_ms / self.interval_ms;
        (self.last_id.is_none_or(|l| id > l)).then_some(id)
    }

    /// The id a final checkpoint (on stop) uses: the next interval's.
    pub fn final_id(&self, now_ms: u64) -> u64 {
        (now_ms / self.interval_ms + 1).max(self.last_id.map_or(0, |l| l + 1))
    }

    /// Captures this worker's part of checkpoint `id` and queues it for the
    /// writer. `frontier` is the dataflow's output frontier now; `positions`
    /// the next offsets and `clocks` the clocks of this worker's partitions;
    /// `retry_for`: how long the writer may retry it (the final one of a stop).
    pub fn take(
        &mut self,
        id: u64,
        frontier: Pane,
        positions: &BTreeMap<PartitionId, i64>,
        clocks: &BTreeMap<PartitionId, ClockState>,
        retry_for: Option<std::time::Duration>,
    ) -> Result<PartMeta> {
        self.last_id = Some(id);
        let frontier = frontier.max(self.floor);
        for (&p, &offset) in positions {
            let l = self.ledgers.entry(p).or_default();
            l.next_offset = offset;
            l.clock = clocks.get(&p).cloned().unwrap_or_default();
        }
        for l in self.ledgers.values_mut() {
            l.prune(frontier, self.window_panes);
        }
        let list: Vec<(PartitionId, &PartitionLedger)> = self
            .ledgers
            .iter()
            .filter(|(p, _)| positions.contains_key(p))
            .map(|(p, l)| (*p, l))
            .collect();
        let part = encode_part(&list);
        let meta = PartMeta {
            worker: self.index,
            peers: self.peers,
            frontier,
            partitions: list.iter().map(|(p, _)| *p).collect(),
            entries: list.iter().map(|(_, l)| l.entries() as u64).sum(),
            bytes: part.len() as u64,
            crc32: crc32(&part[24..]),
        };
        self.writer.submit(id, part, meta.clone(), retry_for)?;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> PartitionLedger {
        let mut l = PartitionLedger {
            next_offset: 42,
            clock: ClockState {
                base: Some(1_767_225_600_000),
                seq: 9,
                held: vec![HeldRecord {
                    time: 1_767_240_000_000,
                    seq: 7,
                    position: 40,
                    raw: b"{\"held\":1}".to_vec(),
                }],
            },
            panes: BTreeMap::new(),
        };
        for pane in 100..170u64 {
            for c in 0..50u64 {
                l.panes
                    .entry(pane)
                    .or_default()
                    .insert(c * 7, (pane + c) as i64 % 5 + 1);
            }
        }
        l
    }

    #[test]
    fn checkpoints_after_a_restore_never_go_back() {
        let dir = std::env::temp_dir().join(format!("ckpt-floor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store: std::sync::Arc<dyn ObjectStore> =
            std::sync::Arc::new(crate::sink::store::LocalStore::new(&dir).expect("store"));
        let stats = std::sync::Arc::new(crate::core::stats::Stats::default());
        let writer = Writer::spawn(store.clone(), "j", 3, stats.clone()).expect("writer");
        let mut cp = Checkpointer::new(writer.clone(), 0, 1, 1000, 60);
        cp.restored(50, 29_000_000);
        assert_eq!(cp.due(50_999), None, "ids continue after the restored one");
        assert_eq!(cp.due(51_000), Some(51));
        cp.record(0, 7, 29_000_010, 2);
        let positions: BTreeMap<PartitionId, i64> = [(0, 9)].into();
        let meta = cp
            .take(51, 0, &positions, &BTreeMap::new(), None)
            .expect("queued");
        assert_eq!(
            meta.frontier, 29_000_000,
            "a fresh probe reading 0 does not pull the checkpoint time back"
        );
        writer.set_frontier(Some(29_000_000));
        writer.finish(std::time::Duration::from_secs(10));
        assert!(writer.is_complete(51));
        assert_eq!(
            stats
                .checkpoints_completed
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        let (manifest, ledgers) = Checkpoints::new(&*store, "j")
            .latest_valid()
            .expect("reads")
            .expect("exists");
        assert_eq!(manifest.time, 29_000_000);
        assert_eq!(ledgers[0].1.next_offset, 9);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// One partition with `entries` claimed and `body` after the claim.
    fn one_partition(held: u32, entries: u64, body: &[u8]) -> Vec<u8> {
        let mut p = 1u32.to_le_bytes().to_vec();
        p.extend_from_slice(&0u32.to_le_bytes()); // partition
        p.extend_from_slice(&5i64.to_le_bytes()); // next offset
        p.extend_from_slice(&i64::MIN.to_le_bytes()); // no clock base
        p.extend_from_slice(&0u64.to_le_bytes()); // seq
        p.extend_from_slice(&held.to_le_bytes());
        p.extend_from_slice(&entries.to_le_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn crafted_parts_with_valid_checksums_are_refused_without_allocating() {
        // Counts far beyond the bytes present: refused before any reservation.
        for (held, entries) in [(0, u64::MAX), (0, 1 << 40), (u32::MAX, 0)] {
            let err = decode_part(&frame_part(&one_partition(held, entries, &[])))
                .expect_err("huge count");
            assert!(err.to_string().contains("claims"), "{err}");
        }
        let huge_partitions = frame_part(&u32::MAX.to_le_bytes());
        assert!(decode_part(&huge_partitions).is_err());
        // A model key with breakdown cell 96 (one past the last).
        let mut entry = 100u64.to_le_bytes().to_vec();
        entry.extend_from_slice(&fact_key(7, 96, false).to_le_bytes());
        entry.extend_from_slice(&1i64.to_le_bytes());
        let err = decode_part(&frame_part(&one_partition(0, 1, &entry))).expect_err("cell 96");
        assert!(err.to_string().contains("cell 96"), "{err}");
        let mut ok = 100u64.to_le_bytes().to_vec();
        ok.extend_from_slice(&fact_key(7, 95, true).to_le_bytes());
        ok.extend_from_slice(&1i64.to_le_bytes());
        let decoded = decode_part(&frame_part(&one_partition(0, 1, &ok))).expect("cell 95 is fine");
        assert_eq!(
            fact_of(*decoded[0].1.panes[&100].keys().next().expect("one")),
            Some((7, 95, true))
        );
        // Truncated inside an entry, with the checksum of what is there.
        let cut = one_partition(0, 1, &ok[..20]);
        assert!(decode_part(&frame_part(&cut)).is_err());
    }

    #[test]
    fn round_trip_prune_and_corruption() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the standard check value");
        let mut l = ledger();
        let empty = PartitionLedger::default();
        let bytes = encode_part(&[(3, &l), (9, &empty)]);
        assert_eq!(bytes, encode_part(&[(3, &l), (9, &empty)]), "deterministic");
        assert_eq!(
            decode_part(&bytes).expect("decodes"),
            vec![(3, l.clone()), (9, empty.clone())]
        );
        // Every single flipped byte and every truncation is caught.
        for i in (0..bytes.len()).step_by(97) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_part(&bad).is_err(), "flip at {i}");
        }
        for len in [0, 7, 23, 24, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_part(&bytes[..len]).is_err(), "truncated to {len}");
        }
        l.prune(160, 60);
        assert_eq!(
            l.panes.keys().next(),
            Some(&101),
            "panes 100 + 60 <= 160 are gone"
        );
    }
}

/// Figures of [`bench()`].
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// `(content, pane)` entries checkpointed.
    pub entries: u64,
    /// Size of the part file.
    pub bytes: u64,
    /// Encoding the part and queueing it for the writer, seconds.
    pub take_seconds: f64,
    /// Writing the part, its metadata and the manifest, seconds.
    pub complete_seconds: f64,
    /// Finding, reading, verifying and decoding the checkpoint, seconds.
    pub load_seconds: f64,
}

/// Checkpoints `entries` live entries (over `panes` panes of one partition) to
/// `store` and loads them back, timing each step.
pub fn bench(
    store: std::sync::Arc<dyn ObjectStore>,
    entries: u64,
    panes: u64,
) -> Result<BenchReport> {
    let panes = panes.max(1);
    let stats = std::sync::Arc::new(crate::core::stats::Stats::default());
    let writer = Writer::spawn(store.clone(), "checkpoint-bench", 1, stats)?;
    let mut cp = Checkpointer::new(writer.clone(), 0, 1, 1, panes);
    let per_pane = entries.div_ceil(panes);
    let first: Pane = 29_500_000;
    let mut n = 0;
    'fill: for p in 0..panes {
        for c in 0..per_pane {
            if n == entries {
                break 'fill;
            }
            cp.record(0, c * 7 + p, first + p, 1 + (c % 5) as i64);
            n += 1;
        }
    }
    let positions: BTreeMap<PartitionId, i64> = [(0, 123_456_789)].into();
    let clocks: BTreeMap<PartitionId, ClockState> = [(
        0,
        ClockState {
            base: Some(1_770_000_000_000),
            ..Default::default()
        },
    )]
    .into();
    let id = crate::core::time::now_ms() as u64;
    let t = std::time::Instant::now();
    let meta = cp.take(id, first, &positions, &clocks, None)?;
    let take_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    writer.set_frontier(Some(first));
    writer.finish(std::time::Duration::from_secs(600));
    if !writer.is_complete(id) {
        return Err(Error::External {
            system: "object store",
            message: format!("checkpoint {id} was not written"),
            retryable: true,
        });
    }
    let complete_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let (_, ledgers) = Checkpoints::new(&*store, "checkpoint-bench")
        .latest_valid()?
        .ok_or_else(|| Error::Internal("the checkpoint just written is not there".into()))?;
    let load_seconds = t.elapsed().as_secs_f64();
    let got: u64 = ledgers.iter().map(|(_, l)| l.entries() as u64).sum();
    if got != entries {
        return Err(Error::Internal(format!(
            "wrote {entries} entries, read back {got}"
        )));
    }
    Ok(BenchReport {
        entries,
        bytes: meta.bytes,
        take_seconds,
        complete_seconds,
        load_seconds,
    })
}
