//! A JSON-lines file as a source: replay and backfill.
//!
//! The file is cut into a fixed number of contiguous byte ranges, the
//! *partitions* (`source.file.partitions`, independent of the number of
//! workers); a line belongs to the range its first byte lies in, so every
//! line is read exactly once without coordination. Partition `p` is read,
//! in order, by worker `p mod workers`, and has its own watermark: which
//! records are late, and so every published hour, is the same on any
//! parallelism. Positions are byte offsets.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Batch, PartitionId, Poll, Source};
use crate::core::error::{Error, Result};
use crate::core::event::Validation;
/// The byte ranges `[start, end)` a file of `len` bytes is cut into for `parts` readers.
pub fn splits(len: u64, parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|k| (len * k / parts, len * (k + 1) / parts))
        .collect()
}

/// One byte range being read.
struct Range {
    reader: BufReader<File>,
    /// Offset of the next line to read.
    pos: u64,
    end: u64,
    partition: PartitionId,
    finished: bool,
}

impl Range {
    fn open(path: &Path, partition: PartitionId, (start, end): (u64, u64)) -> Result<Range> {
        let ctx = || format!("opening event file {}", path.display());
        let mut file = File::open(path).map_err(|e| Error::io(ctx(), e))?;
        let mut pos = start;
        if start > 0 {
            // Skip the tail of a line that began in the previous range.
            file.seek(SeekFrom::Start(start - 1))
                .map_err(|e| Error::io(ctx(), e))?;
            let mut reader = BufReader::new(file);
            let mut skipped = Vec::new();
            let n = reader
                .read_until(b'\n', &mut skipped)
                .map_err(|e| Error::io(ctx(), e))?;
            pos = start - 1 + n as u64;
            file = reader.into_inner();
            file.seek(SeekFrom::Start(pos))
                .map_err(|e| Error::io(ctx(), e))?;
        }
        Ok(Range {
            reader: BufReader::with_capacity(256 << 10, file),
            pos,
            end,
            partition,
            finished: false,
        })
    }
}

/// Reads one worker's partitions of a file.
pub struct FileSource {
    path: PathBuf,
    ranges: Vec<Range>,
    /// The range read next.
    current: usize,
    limits: Validation,
    line: Vec<u8>,
}

impl FileSource {
    /// Opens the partitions `p` of `partitions` with `p mod peers == index`.
    pub fn open(
        path: &Path,
        partitions: usize,
        index: usize,
        peers: usize,
        limits: Validation,
    ) -> Result<FileSource> {
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("opening event file {}", path.display()), e))?
            .len();
        let ranges = splits(len, partitions)
            .into_iter()
            .enumerate()
            .filter(|(p, _)| p % peers.max(1) == index)
            .map(|(p, r)| Range::open(path, p as PartitionId, r))
            .collect::<Result<Vec<_>>>()?;
        Ok(FileSource {
            path: path.to_path_buf(),
            ranges,
            current: 0,
            limits,
            line: Vec::with_capacity(512),
        })
    }
}

impl Source for FileSource {
    fn partitions(&self) -> Vec<PartitionId> {
        self.ranges.iter().map(|r| r.partition).collect()
    }

    fn focus(&mut self, partition: PartitionId) {
        if let Some(k) = self.ranges.iter().position(|r| r.partition == partition) {
            self.current = k;
        }
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
        if self.ranges.get(self.current).is_none_or(|r| r.finished) {
            // Move on to a range that is not finished.
            match self.ranges.iter().position(|r| !r.finished) {
                Some(k) => self.current = k,
                None => return Ok(Poll::Idle),
            }
        }
        let Some(range) = self.ranges.get_mut(self.current) else {
            return Ok(Poll::Idle);
        };
        batch.partition = range.partition;
        self.limits.now_ms = crate::core::time::now_ms();
        while (batch.read as usize) < max && range.pos < range.end {
            self.line.clear();
            let n = (&mut range.reader)
                .take(u64::MAX)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
            if n == 0 {
                break;
            }
            let at = range.pos;
            range.pos += n as u64;
            let mut raw = &self.line[..];
            if let Some(stripped) = raw.strip_suffix(b"\n") {
                raw = stripped;
            }
            if let Some(stripped) = raw.strip_suffix(b"\r") {
                raw = stripped;
            }
            batch.push_raw(raw, at, &self.limits);
        }
        if batch.read > 0 {
            Ok(Poll::Data)
        } else {
            range.finished = true;
            Ok(Poll::Finished(range.partition))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_line_once() {
        let dir = std::env::temp_dir().join(format!("filesrc-{}", std::process::id()));
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("line {i} {}\n", "x".repeat(i % 17)));
        }
        std::fs::write(&dir, &text).expect("temp file");
        let limits = Validation {
            now_ms: 0,
            max_future_ms: 0,
        };
        for (partitions, peers) in [(1, 1), (2, 1), (3, 2), (7, 3), (16, 4)] {
            let mut seen = Vec::new();
            for k in 0..peers {
                let mut src = FileSource::open(&dir, partitions, k, peers, limits).expect("opens");
                let mut batch = Batch::default();
                let mut left = src.partitions().len();
                while left > 0 {
                    batch.clear();
                    match src.poll(&mut batch, 13).expect("reads") {
                        Poll::Data => seen.extend(batch.rejects.iter().map(|r| {
                            (
                                r.partition,
                                r.position,
                                String::from_utf8_lossy(&r.raw).into_owned(),
                            )
                        })),
                        Poll::Finished(_) => left -= 1,
                        Poll::Idle => {}
                    }
                }
            }
            seen.sort();
            let mut parts: Vec<u32> = seen.iter().map(|s| s.0).collect();
            parts.dedup();
            assert_eq!(parts.len(), partitions, "every partition read");
            let lines: Vec<String> = seen.into_iter().map(|s| s.2).collect();
            let expected: Vec<String> = text.lines().map(|l| l.to_string()).collect();
            assert_eq!(lines, expected, "{partitions} partitions, {peers} readers");
        }
        let _ = std::fs::remove_file(&dir);
    }
}
