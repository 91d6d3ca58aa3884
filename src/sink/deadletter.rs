//! The dead-letter sink: every rejected or late record, with its reason.
//!
//! Nothing the pipeline refuses disappears: each such record is written
//! here with a stable reason code, a human-readable detail, and where it came
//! from (source, partition, position), so that counts can be reconciled
//! against the input.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, Result};

/// One dead letter, as written (JSON lines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Stable code: `malformed`, `unknown_value`, `out_of_range` or `late`.
    pub reason: String,
    /// What exactly was wrong.
    pub detail: String,
    /// Which source it came from (`file`, `generator`, `kafka:<topic>`).
    pub source: String,
    /// Partition within the source.
    pub partition: u32,
    /// Position within the partition (byte offset, item index, Kafka offset).
    pub position: u64,
    /// The record as received (lossy UTF-8 if it was not text).
    pub raw: String,
}

/// Receives dead letters.
pub trait DeadLetterSink {
    /// Records one dead letter; `raw` is the record exactly as received.
    fn write(&mut self, letter: &DeadLetter, raw: &[u8]) -> Result<()>;
    /// Makes everything written so far durable (may block).
    fn flush(&mut self) -> Result<()>;
    /// Serves background work without blocking, reporting failures so far.
    fn poll(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Appends to `<dir>/worker-<index>.jsonl`.
pub struct LocalDeadLetters {
    path: String,
    out: BufWriter<File>,
}

impl LocalDeadLetters {
    /// Opens (appending) the file of worker `index` in `dir`.
    pub fn open(dir: &Path, index: usize) -> Result<LocalDeadLetters> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                format!("creating dead-letter directory {}", dir.display()),
                e,
            )
        })?;
        let path = dir.join(format!("worker-{index:05}.jsonl"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening dead-letter file {}", path.display()), e))?;
        Ok(LocalDeadLetters {
            path: path.display().to_string(),
            out: BufWriter::new(file),
        })
    }
}

impl DeadLetterSink for LocalDeadLetters {
    fn write(&mut self, letter: &DeadLetter, _raw: &[u8]) -> Result<()> {
        serde_json::to_writer(&mut self.out, letter).map_err(|e| {
            Error::io(
                format!("writing dead letter to {}", self.path),
                std::io::Error::other(e),
            )
        })?;
        self.out
            .write_all(b"\n")
            .map_err(|e| Error::io(format!("writing dead letter to {}", self.path), e))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io(format!("flushing {}", self.path), e))?;
        // On disk, not only in the page cache: a checkpoint taken after this
        // must not outlive the letters of the records before its offsets.
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.path), e))
    }
}

/// Keeps dead letters in memory (unit tests, benchmarks that only count).
#[derive(Default, Debug)]
pub struct MemoryDeadLetters {
    /// Everything written.
    pub letters: Vec<DeadLetter>,
    /// Keep only the count, not the letters.
    pub count_only: bool,
    /// How many were written.
    pub count: u64,
}

impl DeadLetterSink for MemoryDeadLetters {
    fn write(&mut self, letter: &DeadLetter, _raw: &[u8]) -> Result<()> {
        self.count += 1;
        if !self.count_only {
            self.letters.push(letter.clone());
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Reads every dead letter under `dir` (all workers' files).
pub fn read_local(dir: &Path) -> Result<Vec<DeadLetter>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
        for (n, line) in text.lines().enumerate() {
            let letter: DeadLetter = serde_json::from_str(line)
                .map_err(|e| Error::Input(format!("{} line {}: {e}", p.display(), n + 1)))?;
            out.push(letter);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk (the letters' file is `/dev/full`, which fails every
    /// write with "no space left") is an error that says so and names the
    /// file, never a silent loss at the next checkpoint.
    #[test]
    fn a_full_disk_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("dlq-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("worker-00000.jsonl");
        let _ = std::fs::remove_file(&file);
        std::os::unix::fs::symlink("/dev/full", &file).expect("symlink");
        let mut sink = LocalDeadLetters::open(&dir, 0).expect("opens");
        let letter = DeadLetter {
            reason: "malformed".into(),
            detail: "not JSON".into(),
            source: "file".into(),
            partition: 0,
            position: 7,
            raw: "x".repeat(100),
        };
        let mut failed = None;
        for _ in 0..200 {
            // Buffered: the error shows at the latest when the buffer is flushed.
            if let Err(e) = sink.write(&letter, b"x").and_then(|()| sink.flush()) {
                failed = Some(e);
                break;
            }
        }
        let err = failed.expect("a write to a full disk fails");
        let text = err.to_string();
        assert!(text.contains("the disk is full"), "{text}");
        assert!(text.contains("worker-00000.jsonl"), "{text}");
        assert_eq!(err.exit_code(), 74, "a local I/O fault, not a bug");
        assert!(!err.retryable());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
