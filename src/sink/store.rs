//! Object stores: a flat key space with atomic whole-object puts.
//!
//! The snapshot writer relies on two properties only: a put is all or
//! nothing (a reader never sees half an object), and a put of the same key
//! with the same bytes is harmless. The local store gets both from
//! write-to-temp-then-rename.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};

/// A place to put objects.
pub trait ObjectStore: Send + Sync {
    /// Writes `bytes` at `key`, atomically.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Reads `key`, or `None` if it does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Keys under `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes `key`; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// A directory on a local file system.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: &Path) -> Result<LocalStore> {
        std::fs::create_dir_all(root)
            .map_err(|e| Error::io(format!("creating store directory {}", root.display()), e))?;
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
    }

    /// Removes the temp files of puts that never finished (the process was
    /// killed) whose writer is no longer running, or that carry this
    /// process's id (a restarted container's pid repeats); returns how
    /// many. Called when a job opens its store, before any put.
    pub fn sweep(&self) -> Result<usize> {
        let mut removed = 0;
        self.walk(
            |_| true,
            |path, _| {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.is_some_and(|n| stale_temp(&n)) {
                    std::fs::remove_file(&path)
                        .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                    removed += 1;
                }
                Ok(())
            },
        )?;
        Ok(removed)
    }

    /// Visits every file under the root with its key, descending only into
    /// the directories (given by key, with a trailing `/`) that `descend`
    /// allows. A directory that vanished meanwhile is skipped.
    fn walk(
        &self,
        descend: impl Fn(&str) -> bool,
        mut file: impl FnMut(PathBuf, String) -> Result<()>,
    ) -> Result<()> {
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let listing = |e| Error::io(format!("listing {}", dir.display()), e);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(listing(e)),
            };
            for entry in entries {
                let entry = entry.map_err(listing)?;
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().replace('\\', "/");
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if descend(&format!("{key}/")) {
                        stack.push(path);
                    }
                } else {
                    file(path, key)?;
                }
            }
        }
        Ok(())
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty()
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::Internal(format!("invalid object key `{key}`")));
        }
        Ok(self.root.join(key))
    }
}

/// True for a temp file of [`LocalStore::put`] whose process is gone.
fn stale_temp(name: &str) -> bool {
    let Some((_, pid)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")) else {
        return false;
    };
    match pid.parse::<u32>() {
        Ok(pid) => pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

impl ObjectStore for LocalStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        // A hidden temp name in the same directory: rename is atomic there, and
        // readers globbing `*.parquet` never pick it up.
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let ctx = |what: &str| format!("{what} {}", tmp.display());
        let written = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(ctx("creating"), e))?;
            f.write_all(bytes)
                .map_err(|e| Error::io(ctx("writing"), e))?;
            f.sync_all().map_err(|e| Error::io(ctx("syncing"), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io(format!("renaming into {}", path.display()), e))
        })();
        if written.is_err() {
            // A full disk or a failed rename leaves no temp file behind.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // Only descend where keys could still match the prefix.
        let descend = |dir: &str| dir.starts_with(prefix) || prefix.starts_with(dir);
        self.walk(descend, |_, key| {
            let hidden = key.rsplit('/').next().unwrap_or("").starts_with('.');
            if key.starts_with(prefix) && !hidden {
                out.push(key);
            }
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {
                // Like an object store, leave no empty "directories" behind.
                let mut dir = path.parent();
                while let Some(d) = dir.filter(|d| *d != self.root) {
                    if std::fs::remove_dir(d).is_err() {
                        break;
                    }
                    dir = d.parent();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("deleting {}", path.display()), e)),
        }
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete() {
        let root = std::env::temp_dir().join(format!("store-{}", std::process::id()));
        let s = LocalStore::new(&root).expect("creates");
        s.put("a/dt=2026-01-01/hour=00/part-0.parquet", b"x")
            .expect("put");
        s.put("a/dt=2026-01-01/hour=00/_SUCCESS", b"{}")
            .expect("put");
        s.put("b/other", b"y").expect("put");
        assert_eq!(
            s.get("a/dt=2026-01-01/hour=00/part-0.parquet")
                .expect("get"),
            Some(b"x".to_vec())
        );
        assert_eq!(s.get("a/missing").expect("get"), None);
        assert_eq!(
            s.list("a/dt=2026-01-01/").expect("list"),
            vec![
                "a/dt=2026-01-01/hour=00/_SUCCESS".to_string(),
                "a/dt=2026-01-01/hour=00/part-0.parquet".to_string()
            ]
        );
        s.delete("b/other").expect("delete");
        s.delete("b/other").expect("delete twice");
        assert!(s.list("b/").expect("list").is_empty());
        assert!(s.put("../escape", b"no").is_err());
        // A put that cannot land (a directory where the object goes) leaves no temp file.
        std::fs::create_dir_all(root.join("c/taken/inside")).expect("dir");
        assert!(s.put("c/taken", b"z").is_err());
        let left: Vec<_> = std::fs::read_dir(root.join("c"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("taken")]);
        // A killed writer's temp file is swept; a live one's is not.
        std::fs::write(root.join("c/.x.parquet.tmp-4000000"), b"half").expect("write");
        let live = format!(".y.parquet.tmp-{}", std::process::id());
        std::fs::write(root.join("c").join(&live), b"mine").expect("write");
        assert_eq!(
            s.sweep().expect("sweep"),
            2,
            "a dead pid's and this (restarted) process's own"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A put onto a full disk fails with an error that says so and leaves
    /// no temp file. The temp file is made a link to `/dev/full`, which
    /// fails every write with "no space left on device".
    #[test]
    fn a_full_disk_is_a_clear_error_and_leaves_nothing() {
        let root = std::env::temp_dir().join(format!("store-full-{}", std::process::id()));
        let s = LocalStore::new(&root).expect("creates");
        std::fs::create_dir_all(root.join("t")).expect("dir");
        let tmp = root.join(format!("t/.part.parquet.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink("/dev/full", &tmp).expect("symlink");
        let err = s.put("t/part.parquet", b"bytes").expect_err("disk full");
        let text = err.to_string();
        assert!(text.contains("the disk is full"), "{text}");
        assert!(text.contains("part.parquet"), "{text}");
        assert!(!err.retryable());
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "temp removed");
        assert_eq!(
            s.get("t/part.parquet").expect("get"),
            None,
            "nothing landed"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
