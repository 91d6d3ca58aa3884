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

mod bench;
mod format;
mod ledger;
mod store;
mod writer;

pub use bench::{bench, BenchReport};
pub use format::*;
pub use ledger::{Checkpointer, StopStep};
pub use store::Checkpoints;
pub use writer::Writer;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::sink::store::ObjectStore;
    use crate::source::PartitionId;

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

    /// What a stopping worker's driver does (`job::driver`): a part of its
    /// final checkpoint, then the steps until it may leave; the id it left on.
    fn stop(mut cp: Checkpointer, now_ms: u64, partition: PartitionId) -> u64 {
        let positions: BTreeMap<PartitionId, i64> = [(partition, 9)].into();
        let take = |cp: &mut Checkpointer, id| {
            cp.take(
                id,
                100,
                &positions,
                &BTreeMap::new(),
                Some(Duration::from_secs(10)),
            )
            .expect("queued");
            cp.writer().wait_for(id);
        };
        let mut id = cp.final_id(now_ms);
        take(&mut cp, id);
        let began = std::time::Instant::now();
        loop {
            match cp.stop_step(id) {
                StopStep::Done => return id,
                StopStep::Follow(newer) => {
                    take(&mut cp, newer);
                    id = newer;
                }
                StopStep::Wait => std::thread::sleep(Duration::from_millis(20)),
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "stuck waiting for {id}"
            );
        }
    }

    #[test]
    fn processes_stopped_across_an_interval_boundary_agree_on_one_final_checkpoint() {
        // Two processes of one worker each; the stop reaches them on either
        // side of a boundary, so their clocks propose final checkpoints 10
        // and 11. Each took its periodic part of 10 if its clock passed it.
        // The second stops once the first's part of 11 is in the store, or
        // (the last case) once 10 is already complete, made of the first's
        // stop part and the second's periodic one.
        for (coordinator_at, peer_at, late) in [(11, 10, false), (10, 11, false), (10, 11, true)] {
            let dir = std::env::temp_dir().join(format!(
                "ckpt-stop-{}-{coordinator_at}-{late}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let store: std::sync::Arc<dyn ObjectStore> =
                std::sync::Arc::new(crate::sink::store::LocalStore::new(&dir).expect("store"));
            let process = |worker, at: u64| {
                let stats = std::sync::Arc::new(crate::core::stats::Stats::default());
                let writer = Writer::spawn(store.clone(), "j", 3, stats).expect("writer");
                writer.set_frontier(Some(1_000));
                let mut cp = Checkpointer::new(writer, worker, 2, 1000, 60);
                if at == 11 {
                    let positions: BTreeMap<PartitionId, i64> = [(worker as u32, 5)].into();
                    cp.take(10, 100, &positions, &BTreeMap::new(), None)
                        .expect("queued");
                }
                (cp, at * 1000 - 500)
            };
            let (a, a_now) = process(0, coordinator_at);
            let (b, b_now) = process(1, peer_at);
            let first_is_a = (coordinator_at == 11) != late;
            let (left_a, left_b) = std::thread::scope(|s| {
                let (first, second) = if first_is_a {
                    ((a, a_now, 0), (b, b_now, 1))
                } else {
                    ((b, b_now, 1), (a, a_now, 0))
                };
                let one = s.spawn(move || stop(first.0, first.1, first.2));
                let ckpts = Checkpoints::new(&*store, "j");
                while !(if late {
                    ckpts.manifest(10).expect("reads").is_some()
                } else {
                    ckpts.newest_stop_after(0, 2).expect("lists") == Some(11)
                }) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let two = s.spawn(move || stop(second.0, second.1, second.2));
                let (one, two) = (one.join().expect("first"), two.join().expect("second"));
                if first_is_a {
                    (one, two)
                } else {
                    (two, one)
                }
            });
            let case = format!("stopped at {coordinator_at} and {peer_at}, late {late}");
            assert_eq!((left_a, left_b), (11, 11), "{case}: both leave on 11");
            let (manifest, ledgers) = Checkpoints::new(&*store, "j")
                .latest_valid()
                .expect("reads")
                .expect("exists");
            assert_eq!(manifest.id, 11, "{case}");
            assert!(
                manifest.parts.iter().all(|m| m.stop),
                "{case}: {manifest:?}"
            );
            assert!(
                ledgers.iter().all(|(_, l)| l.next_offset == 9),
                "{case}: final positions"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
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

    #[test]
    fn a_stop_part_is_found_beside_a_part_whose_metadata_does_not_parse() {
        let dir = std::env::temp_dir().join(format!("ckpt-torn-meta-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = crate::sink::store::LocalStore::new(&dir).expect("store");
        let ckpts = Checkpoints::new(&store, "j");
        let meta = |worker, stop| PartMeta {
            worker,
            peers: 2,
            frontier: 5,
            partitions: vec![],
            entries: 0,
            bytes: 0,
            crc32: 0,
            stop,
        };
        ckpts.write_part(7, b"x", &meta(1, true)).expect("writes");
        assert_eq!(ckpts.newest_stop_after(0, 2).expect("lists"), Some(7));
        assert_eq!(
            ckpts.newest_stop_after(0, 3).expect("lists"),
            None,
            "another shape"
        );
        // Worker 0's metadata is torn (listed first): worker 1's stop still counts.
        let key = "checkpoints/j/00000000000000000007/part-00000.json";
        store.put(key, b"{\"worker\": 0, \"pe").expect("writes");
        assert_eq!(ckpts.newest_stop_after(0, 2).expect("lists"), Some(7));
        assert!(
            ckpts.part_metas(7).is_err(),
            "reading the parts still refuses it"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
