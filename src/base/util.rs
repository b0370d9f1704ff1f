//! Small helpers shared by every command: our own state files written
//! atomically, file locks, a stable fingerprint.

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for reading without ever waiting: a FIFO or a device put
/// in a file's place answers at once (and a read of a FIFO without a
/// writer ends at once).
pub fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
}

/// Reads a small file (sysfs attribute, udev entry, tmpfs file) with one
/// open and, for most files, one read: no size query as
/// `fs::read_to_string` makes; at most 1 MiB. The open never waits.
/// Not for procfs, which may return less than asked before the end.
pub fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = open_nonblocking(path).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = file.read(&mut buf[len..]).ok()?;
        len += n;
        // sysfs and tmpfs fill the buffer unless at the end: a short read
        // saves the extra call that would return 0.
        if n == 0 || len < buf.len() {
            break;
        }
        if buf.len() >= 1 << 20 {
            return None;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// Reads a whole file as text with one read per 16 KiB and nothing else:
/// no size query first (`fs::read_to_string` asks the size and the
/// position, two more calls, which procfs cannot answer anyway). For
/// procfs, whose reads may stop short before the end.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = open_nonblocking(path)?;
    let mut buf = vec![0u8; 16 << 10];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            // A FIFO with a writer but no data: not a file to wait on.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a regular file", path.display()),
                ));
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Reads one of our own state files (a record, the status): only a
/// regular file of at most `max` bytes, opened without waiting and
/// without following a link.
pub fn read_state(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file of at most {max} bytes: not read",
                path.display()
            ),
        ));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut data)?;
    Ok(data)
}

/// Writes our own state file `path` atomically (see `tree::write_atomic`).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    crate::base::tree::write_atomic(path, data, mode)
}

/// An exclusive lock on a file, released when dropped. Through
/// `std::fs::File::lock` (flock), stable in std: `fs2`, which the design
/// names, has had no release since 2018.
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Locks `path` (created when missing, with its folder). Waits for the
    /// lock when `wait`; otherwise `None` when another process holds it.
    pub fn take(path: &Path, wait: bool) -> Result<Option<FileLock>> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        if wait {
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
            return Ok(Some(FileLock(file)));
        }
        Self::try_until(file, path, std::time::Instant::now())
    }

    /// Like [`FileLock::take`], waiting at most `limit`.
    pub fn take_for(path: &Path, limit: std::time::Duration) -> Result<Option<FileLock>> {
        let Some(held) = Self::take(path, false)? else {
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            return Self::try_until(file, path, std::time::Instant::now() + limit);
        };
        Ok(Some(held))
    }

    fn try_until(
        file: File,
        path: &Path,
        deadline: std::time::Instant,
    ) -> Result<Option<FileLock>> {
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(FileLock(file))),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn locks_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/a.lock");
        let held = FileLock::take(&path, false).unwrap();
        assert!(held.is_some());
        assert!(FileLock::take(&path, false).unwrap().is_none());
        drop(held);
        assert!(FileLock::take(&path, false).unwrap().is_some());
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `data`, continuing from `hash`.
fn fnv1a_from(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// FNV-1a: a stable 64-bit fingerprint (not cryptographic).
pub fn fnv1a(data: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, data)
}

/// FNV-1a as a `Hasher`: fast for the short, trusted keys of per-lookup
/// maps (kernel device names), where SipHash's resistance to chosen keys
/// buys nothing and costs time on every lookup.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(FNV_OFFSET)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a_from(self.0, bytes);
    }
}

/// A hash map keyed by short trusted strings (see [`Fnv`]).
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// Where `program` is in `PATH` (else in the default one): an executable
/// regular file.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| crate::base::runner::DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}
