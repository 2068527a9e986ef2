//! The disk spool: what delivery would otherwise drop (the retention bound passed while an
//! endpoint fails, the shutdown deadline) is written to a directory in the wire format, and
//! a client started on the same directory delivers it first.
//!
//! One file per batch: a header line (JSON: format version, the SDK key's fingerprint, the
//! endpoint path and headers, the item count, the body's length and CRC-32), then the
//! request body exactly as it would have been posted. A file is written whole to a
//! temporary name and renamed, so a reader never sees half of it, and then synced (`fsync`
//! of the files, then of the directory) once the batches of the moment are written: apart
//! from the write, so that a written batch counts as spooled even when a busy disk makes
//! syncing slow and shutdown's time runs out. A machine crash before the sync can leave a
//! file short; its length and CRC tell (see below). A file is claimed with an exclusive advisory
//! lock (`flock`) held until it is delivered and removed, so two processes on one directory
//! never send the same file; after taking the lock the claimant checks that the name still
//! leads to the file it locked (another process may have delivered and removed it in
//! between). A damaged or truncated file is renamed to `*.damaged` with a warning naming it,
//! never a failed start; files of another SDK key are left alone.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The extension of a spooled batch.
const EXTENSION: &str = "spool";

/// The header line of a spool file.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    /// Format version: 1.
    v: u32,
    /// Fingerprint of the SDK key the batch belongs to.
    key: String,
    /// Endpoint path (`/testImpressions/bulk`, ...).
    path: String,
    /// Endpoint headers (such as `SplitSDKImpressionsMode`).
    headers: Vec<(String, String)>,
    /// Items in the batch.
    items: u64,
    /// Body length in bytes.
    bytes: u64,
    /// CRC-32 of the body.
    crc: u32,
}

/// A spool directory, shared by the delivery workers of one client.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    key: String,
    /// Bytes in the directory as this process counts them (at open, plus what it wrote,
    /// minus what it removed).
    used: AtomicU64,
    seq: AtomicU64,
    /// Files written and not yet synced to disk (see [`Spool::sync`]).
    unsynced: Mutex<Vec<File>>,
}

/// Why a batch could not be spooled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpoolError {
    /// Writing it would pass the byte bound.
    #[error("the spool directory {} is full ({used} of {max} bytes)", dir.display())]
    Full { dir: PathBuf, used: u64, max: u64 },
    /// The file system refused.
    #[error("cannot write to the spool directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A spooled batch claimed by this process: locked until [`Claimed::remove`] or drop.
#[derive(Debug)]
pub(crate) struct Claimed {
    /// Kept open: the lock lives as long as the handle.
    _lock: File,
    path: PathBuf,
    /// Items in the batch.
    pub(crate) items: u64,
    /// The request body, as it would have been posted.
    pub(crate) body: Vec<u8>,
    /// The endpoint's headers when the batch was written.
    pub(crate) headers: Vec<(String, String)>,
}

impl Spool {
    /// Opens (creating it when needed) the spool directory `dir` for the SDK key `sdk_key`,
    /// holding at most `max_bytes`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the directory when it cannot be created or read.
    pub(crate) fn open(dir: &Path, max_bytes: u64, sdk_key: &str) -> Result<Spool, Error> {
        let io = |source| Error::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut used = 0;
        for entry in fs::read_dir(dir).map_err(io)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == EXTENSION) {
                used += entry.metadata().map_or(0, |m| m.len());
            }
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            key: fingerprint(sdk_key),
            used: AtomicU64::new(used),
            seq: AtomicU64::new(0),
            unsynced: Mutex::new(Vec::new()),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one batch for `path` (with its endpoint `headers`) of `items` items, whose
    /// request body is `body`.
    pub(crate) fn write(
        &self,
        path: &str,
        headers: &[(String, String)],
        items: u64,
        body: &[u8],
    ) -> Result<(), SpoolError> {
        let suffix = self.suffix(path);
        let mut crc = flate2::Crc::new();
        crc.update(body);
        let header = Header {
            v: 1,
            key: self.key.clone(),
            path: path.to_string(),
            headers: headers.to_vec(),
            items,
            bytes: body.len() as u64,
            crc: crc.sum(),
        };
        let mut line = serde_json::to_vec(&header).unwrap_or_default();
        line.push(b'\n');
        let size = (line.len() + body.len()) as u64;
        let used = self.used.fetch_add(size, Ordering::SeqCst);
        if used.saturating_add(size) > self.max_bytes {
            self.used.fetch_sub(size, Ordering::SeqCst);
            return Err(SpoolError::Full {
                dir: self.dir.clone(),
                used,
                max: self.max_bytes,
            });
        }
        let written = self.write_file(&suffix, &line, body);
        if written.is_err() {
            self.used.fetch_sub(size, Ordering::SeqCst);
        }
        written.map_err(|source| SpoolError::Io {
            dir: self.dir.clone(),
            source,
        })
    }

    /// Write and rename; [`Spool::sync`] makes it durable. A file cut short by a crash
    /// before its sync fails its CRC when read, and is skipped with a warning.
    fn write_file(&self, suffix: &str, header: &[u8], body: &[u8]) -> std::io::Result<()> {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        // Names sort in the order batches were written (by time, then per process), and
        // end with the key's fingerprint and the endpoint: a claimant opens only its own.
        let name = format!("{millis:015}-{:010}-{seq:08}{suffix}", std::process::id());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let done = self.dir.join(format!("{name}.{EXTENSION}"));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(header)?;
            f.write_all(body)?;
            fs::rename(&tmp, &done)?;
            self.unsynced.lock().push(f);
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Syncs the files written since the last call, then the directory (their names):
    /// written files survive the process at once, and a crash of the machine once synced.
    /// Separate from the write, so that a batch is counted as spooled as soon as it is in
    /// its file, even when a busy disk makes syncing slow (seconds, behind a large
    /// writeback) and shutdown's time runs out. Best effort: a failed sync is logged.
    pub(crate) fn sync(&self) {
        let files = std::mem::take(&mut *self.unsynced.lock());
        if files.is_empty() {
            return;
        }
        for f in files {
            if let Err(e) = f.sync_all() {
                log::warn!("spool {}: syncing a file failed: {e}", self.dir.display());
            }
        }
        // The renames are durable once the directory is synced (where the platform allows
        // opening a directory; elsewhere it is best effort).
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }

    /// How the names of this key's files for `path` end (before the extension):
    /// `-<fingerprint>-<endpoint>`.
    fn suffix(&self, path: &str) -> String {
        let endpoint: String = path
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("-{}-{endpoint}", self.key)
    }

    /// Claims every spooled batch of this SDK key for `path`, oldest first. Files another
    /// process holds are skipped; damaged ones are set aside with a warning.
    pub(crate) fn claim(&self, path: &str) -> Vec<Claimed> {
        let suffix = format!("{}.{EXTENSION}", self.suffix(path));
        let mut names: Vec<PathBuf> = match fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(&suffix))
                })
                .collect(),
            Err(e) => {
                log::warn!(
                    "cannot read the spool directory {}: {e}",
                    self.dir.display()
                );
                return Vec::new();
            }
        };
        names.sort();
        names
            .into_iter()
            .filter_map(|file| self.claim_file(&file, path))
            .collect()
    }

    fn claim_file(&self, file: &Path, path: &str) -> Option<Claimed> {
        let mut handle = OpenOptions::new().read(true).open(file).ok()?;
        // Held by another process, which will deliver it.
        handle.try_lock().ok()?;
        if !same_file(&handle, file) {
            // Delivered and removed by another process since we opened it.
            return None;
        }
        let mut text = Vec::new();
        if let Err(e) = handle.read_to_end(&mut text) {
            log::warn!("spool file {} cannot be read, skipped: {e}", file.display());
            return None;
        }
        let parsed = parse(&text);
        match parsed {
            Ok((header, _)) if header.key != self.key || header.path != path => None,
            Ok((header, body)) => Some(Claimed {
                _lock: handle,
                path: file.to_path_buf(),
                items: header.items,
                body: body.to_vec(),
                headers: header.headers,
            }),
            Err(why) => {
                let aside = file.with_extension("damaged");
                log::warn!(
                    "spool file {} is damaged ({why}); skipped, and renamed to {}",
                    file.display(),
                    aside.display()
                );
                let _ = fs::rename(file, &aside);
                self.forget(text.len() as u64);
                None
            }
        }
    }

    /// `size` bytes left the spool (removed, or set aside as damaged).
    fn forget(&self, size: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(size))
            });
    }

    /// Removes a delivered (or given up) batch, then releases its lock.
    pub(crate) fn remove(&self, claimed: Claimed) {
        let size = fs::metadata(&claimed.path).map_or(0, |m| m.len());
        match fs::remove_file(&claimed.path) {
            Ok(()) => self.forget(size),
            Err(e) => log::warn!(
                "spool file {} was delivered but cannot be removed ({e}); it may be sent again",
                claimed.path.display()
            ),
        }
    }
}

/// The header and the body of a spool file, checked.
fn parse(text: &[u8]) -> Result<(Header, &[u8]), String> {
    let end = text
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header: Header =
        serde_json::from_slice(&text[..end]).map_err(|e| format!("header: {e}"))?;
    if header.v != 1 {
        return Err(format!("unknown format version {}", header.v));
    }
    let body = &text[end + 1..];
    if body.len() as u64 != header.bytes {
        return Err(format!(
            "truncated: {} of {} body bytes",
            body.len(),
            header.bytes
        ));
    }
    let mut crc = flate2::Crc::new();
    crc.update(body);
    if crc.sum() != header.crc {
        return Err("checksum mismatch".into());
    }
    Ok((header, body))
}

/// Whether `path` still names the file `handle` has open.
#[cfg(unix)]
fn same_file(handle: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (handle.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether `path` still names the file `handle` has open (without inode numbers: that it
/// still exists).
#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

/// A stable fingerprint of the SDK key (the key itself is never written).
fn fingerprint(sdk_key: &str) -> String {
    let a = crate::engine::bucket::murmur3_hash(sdk_key, 0x5b1d_ca7e);
    let b = crate::engine::bucket::murmur3_hash(sdk_key, 0x0de1_1ce5);
    format!("{a:08x}{b:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Vec<(String, String)> {
        vec![("SplitSDKImpressionsMode".into(), "DEBUG".into())]
    }

    #[test]
    fn batches_round_trip_in_the_order_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20, "key-1").unwrap();
        spool.write("/events/bulk", &[], 2, b"[1,2]").unwrap();
        spool
            .write("/testImpressions/bulk", &headers(), 1, b"[{}]")
            .unwrap();
        spool.write("/events/bulk", &[], 1, b"[3]").unwrap();
        let events = spool.claim("/events/bulk");
        let bodies: Vec<&[u8]> = events.iter().map(|c| c.body.as_slice()).collect();
        assert_eq!(bodies, [b"[1,2]".as_slice(), b"[3]".as_slice()]);
        assert_eq!(events.iter().map(|c| c.items).sum::<u64>(), 3);
        let imps = spool.claim("/testImpressions/bulk");
        assert_eq!((imps.len(), imps[0].headers.clone()), (1, headers()));
        for c in events.into_iter().chain(imps) {
            spool.remove(c);
        }
        assert!(spool.claim("/events/bulk").is_empty());
        assert_eq!(spool.used.load(Ordering::SeqCst), 0);
        // Nothing but spool files was ever left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_claimed_file_is_not_claimed_again_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let a = Spool::open(dir.path(), 1 << 20, "k").unwrap();
        let b = Spool::open(dir.path(), 1 << 20, "k").unwrap();
        a.write("/events/bulk", &[], 1, b"[1]").unwrap();
        let first = a.claim("/events/bulk");
        assert_eq!(first.len(), 1);
        assert!(
            b.claim("/events/bulk").is_empty(),
            "locked by the first claimant"
        );
        a.remove(first.into_iter().next().unwrap());
        assert!(b.claim("/events/bulk").is_empty(), "delivered and removed");
    }

    #[test]
    fn other_keys_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        Spool::open(dir.path(), 1 << 20, "one")
            .unwrap()
            .write("/events/bulk", &[], 1, b"[1]")
            .unwrap();
        let other = Spool::open(dir.path(), 1 << 20, "two").unwrap();
        assert!(other.claim("/events/bulk").is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let text = fs::read_to_string(
            fs::read_dir(dir.path())
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap();
        assert!(
            !text.contains("one"),
            "the key itself is never written: {text}"
        );
    }

    #[test]
    fn damaged_and_truncated_files_are_set_aside_with_a_warning() {
        crate::test_logs::install();
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20, "k").unwrap();
        spool.write("/events/bulk", &[], 2, b"[1,2]").unwrap();
        spool.write("/events/bulk", &[], 1, b"[3]").unwrap();
        spool.write("/events/bulk", &[], 1, b"[4]").unwrap();
        let mut files: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        // Truncated by a crash, and a flipped byte.
        let text = fs::read(&files[0]).unwrap();
        fs::write(&files[0], &text[..text.len() - 2]).unwrap();
        let mut text = fs::read(&files[1]).unwrap();
        let last = text.len() - 1;
        text[last] = b'9';
        fs::write(&files[1], &text).unwrap();
        let claimed = spool.claim("/events/bulk");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].body, b"[4]");
        for (file, why) in [
            (&files[0], "truncated: 3 of 5 body bytes"),
            (&files[1], "checksum mismatch"),
        ] {
            let warned = crate::test_logs::lines("spool", &[&file.display().to_string(), why]);
            assert_eq!(warned.len(), 1, "{file:?}");
            assert!(file.with_extension("damaged").exists());
        }
    }

    #[test]
    fn the_byte_bound_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 400, "k").unwrap();
        spool.write("/events/bulk", &[], 1, &[b'x'; 100]).unwrap();
        let e = spool
            .write("/events/bulk", &[], 1, &[b'x'; 300])
            .unwrap_err();
        assert!(matches!(e, SpoolError::Full { .. }), "{e}");
        assert!(e.to_string().contains("is full"), "{e}");
        assert_eq!(spool.claim("/events/bulk").len(), 1);
        // A new process counts what is already there.
        let again = Spool::open(dir.path(), 400, "k").unwrap();
        assert!(again.used.load(Ordering::SeqCst) > 100);
    }
}
