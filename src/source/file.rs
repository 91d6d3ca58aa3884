//! A JSON-lines file as a source: replay and backfill.
//!
//! The file is cut into one contiguous byte range per worker; a line
//! belongs to the range its first byte lies in, so every line is read by
//! exactly one worker without any coordination. Positions are byte offsets.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Batch, PartitionId, Poll, Source};
use crate::error::{Error, Result};
use crate::event::Validation;

/// The byte ranges `[start, end)` a file of `len` bytes is cut into for `parts` readers.
pub fn splits(len: u64, parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u64;
    (0..parts)
        .map(|k| (len * k / parts, len * (k + 1) / parts))
        .collect()
}

/// Reads the lines starting in one byte range of a file.
pub struct FileSource {
    path: PathBuf,
    reader: BufReader<File>,
    /// Offset of the next line to read.
    pos: u64,
    end: u64,
    partition: PartitionId,
    limits: Validation,
    line: Vec<u8>,
    finished: bool,
}

impl FileSource {
    /// Opens range `index` of `peers` ranges of `path`.
    pub fn open(path: &Path, index: usize, peers: usize, limits: Validation) -> Result<FileSource> {
        let ctx = || format!("opening event file {}", path.display());
        let mut file = File::open(path).map_err(|e| Error::io(ctx(), e))?;
        let len = file.metadata().map_err(|e| Error::io(ctx(), e))?.len();
        let (start, end) = splits(len, peers)[index];
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
        Ok(FileSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            pos,
            end,
            partition: index as PartitionId,
            limits,
            line: Vec::with_capacity(512),
            finished: false,
        })
    }
}

impl Source for FileSource {
    fn partitions(&self) -> Vec<PartitionId> {
        vec![self.partition]
    }

    fn poll(&mut self, batch: &mut Batch, max: usize) -> Result<Poll> {
        if self.finished {
            return Ok(Poll::Idle);
        }
        batch.partition = self.partition;
        self.limits.now_ms = crate::time::now_ms();
        while (batch.read as usize) < max {
            if self.pos >= self.end {
                break;
            }
            self.line.clear();
            let n = (&mut self.reader)
                .take(u64::MAX)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
            if n == 0 {
                break;
            }
            let at = self.pos;
            self.pos += n as u64;
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
            self.finished = true;
            Ok(Poll::Finished(self.partition))
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
        for peers in [1, 2, 3, 7] {
            let mut seen = Vec::new();
            for k in 0..peers {
                let mut src = FileSource::open(&dir, k, peers, limits).expect("opens");
                let mut batch = Batch::default();
                loop {
                    batch.clear();
                    match src.poll(&mut batch, 13).expect("reads") {
                        Poll::Data => seen.extend(
                            batch
                                .rejects
                                .iter()
                                .map(|r| String::from_utf8_lossy(&r.raw).into_owned()),
                        ),
                        _ => break,
                    }
                }
            }
            let expected: Vec<String> = text.lines().map(|l| l.to_string()).collect();
            assert_eq!(seen, expected, "{peers} readers");
        }
        let _ = std::fs::remove_file(&dir);
    }
}
