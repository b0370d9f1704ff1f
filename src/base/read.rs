//! Reads that never wait: a file opened without blocking (a FIFO or a
//! device put in a file's place answers at once), small sysfs and tmpfs
//! files in one read, procfs whole, and our own state files only when they
//! are regular files of a bounded size.

use std::fs::{File, OpenOptions};
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
