//! The part file's format: magic, version, length, CRC-32, then each
//! partition's offset, clock and pane counts; the part's metadata and the
//! manifest as JSON.

use std::collections::{BTreeMap, HashMap};

use bytes::Buf;
use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};
use crate::core::event::ContentId;
use crate::core::model::{Cell, N_CELLS};
use crate::core::time::{Millis, Pane};
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
    /// Taken on a stop (a final checkpoint). Peers that stop too take a
    /// part at the newest such id, so a cluster stopped at once agrees on
    /// one final checkpoint whatever its clocks said.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop: bool,
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

/// CRC-32 (IEEE 802.3) of a part's payload.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
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

/// A cursor over a part's bytes: little-endian integers and byte runs
/// through `bytes::Buf`, every read checked against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Result<u32> {
        self.bytes.try_get_u32_le().map_err(truncated)
    }
    fn u64(&mut self) -> Result<u64> {
        self.bytes.try_get_u64_le().map_err(truncated)
    }
    fn i64(&mut self) -> Result<i64> {
        self.bytes.try_get_i64_le().map_err(truncated)
    }
    /// Bytes not read yet.
    fn left(&self) -> usize {
        self.bytes.remaining()
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
    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(Error::Input("checkpoint part is truncated".into()));
        }
        let (out, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(out)
    }
}

/// A read past the end of a part.
fn truncated(_: bytes::TryGetError) -> Error {
    Error::Input("checkpoint part is truncated".into())
}

/// Decodes a part file, verifying magic, version, length and checksum before reading anything.
pub fn decode_part(bytes: &[u8]) -> Result<Vec<(PartitionId, PartitionLedger)>> {
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(Error::Input(
            "not a checkpoint part (bad magic or too short)".into(),
        ));
    }
    let mut header = Reader { bytes: &bytes[8..] };
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
    let mut r = Reader { bytes: payload };
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
    if r.left() != 0 {
        return Err(Error::Input("checkpoint part has trailing bytes".into()));
    }
    Ok(out)
}
