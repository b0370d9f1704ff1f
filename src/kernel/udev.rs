//! udev's database: a device's entry (what its blkid found, its attach
//! sequence number) and whether udevd runs (its entries are current only
//! then).

use crate::kernel::device::FsInfo;
use crate::kernel::escape::unescape_hex;
use std::path::Path;

/// Whether udevd answers on its control socket (`DATA_DIR/../control`).
/// A non-blocking connect: refused or missing means not running; a full
/// backlog still means running. Nothing is sent.
pub fn udev_alive(udev_data_dir: &Path) -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let Some(run) = udev_data_dir.parent() else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(&run.join("control")) else {
        return false;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    // A listener that answers (or whose queue is full) is alive; a socket
    // file with no listener refuses the connection.
    use std::os::fd::AsRawFd;
    matches!(
        connect(fd.as_raw_fd(), &addr),
        Ok(()) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINPROGRESS)
    )
}

/// Parses a udev database entry: the filesystem properties and the attach
/// sequence number udev saw (its `disk/by-diskseq` link).
pub fn parse_udev_entry(text: &str) -> (FsInfo, Option<u64>) {
    let mut fs = FsInfo::default();
    let (mut label, mut label_enc, mut uuid, mut uuid_enc) = (None, None, None, None);
    let mut seq = None;
    let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
    for line in text.lines() {
        if let Some(kv) = line.strip_prefix("E:") {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "ID_FS_TYPE" => fs.fstype = some(v),
                "ID_FS_USAGE" => fs.usage = some(v),
                "ID_FS_LABEL" => label = some(v),
                "ID_FS_LABEL_ENC" => label_enc = some(v).map(|v| unescape_hex(&v)),
                "ID_FS_UUID" => uuid = some(v),
                "ID_FS_UUID_ENC" => uuid_enc = some(v).map(|v| unescape_hex(&v)),
                "ID_PART_ENTRY_NAME" => fs.part_name = some(v).map(|v| unescape_hex(&v)),
                "ID_PART_TABLE_TYPE" => fs.part_table = some(v),
                "DISKSEQ" => seq = seq.or_else(|| v.parse().ok()),
                _ => {}
            }
        } else if let Some(n) = line.strip_prefix("S:disk/by-diskseq/") {
            seq = n.parse().ok();
        }
    }
    fs.label = label_enc.or(label);
    fs.uuid = uuid_enc.or(uuid);
    (fs, seq)
}
