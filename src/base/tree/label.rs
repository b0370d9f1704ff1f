//! SELinux labels of the files we write. A file replaced by rename is a
//! new inode: it would get the label of a new file in its folder
//! (`/etc/shadow` as `etc_t`, not `shadow_t`, and the services reading it
//! fail). So a file we replace keeps its `security.selinux` label, set on
//! the temporary file before the rename; and only that attribute
//! (`security.ima` or `security.evm` copied from the old content would no
//! longer match the new one and break appraisal). A file we create on the
//! live system gets the policy's label (`restorecon`) when SELinux is on.

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use rustix::fs::XattrFlags;
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

const SELINUX: &str = "security.selinux";

/// The label of `name` in `dir`, if it has one (read through a descriptor
/// opened without following a link, without blocking on a FIFO).
pub(super) fn label_of(dir: &Dir, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let mut opts = OpenOptions::new();
    opts.read(true)
        .follow(FollowSymlinks::No)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = match dir.open_with(name, &opts) {
        Ok(f) => f,
        // Gone, or a run that may not read it (not root): no label to keep.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    read_label(&file)
}

/// `security.selinux` of an open file.
pub fn read_label(file: &impl AsFd) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::fgetxattr(file, SELINUX, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives the open (temporary) file `label`; returns whether it has it. A
/// filesystem without attributes, or a run that is not root (an image
/// builder's, which may not set `security.*`), keeps the folder's default.
/// A label the loaded policy does not know (`EINVAL`: the policy changed
/// since) or may not give (`EACCES`) is not worth losing the write for:
/// warned, and the caller asks for the policy's label instead.
pub(super) fn set_label(file: &impl AsFd, label: &[u8]) -> io::Result<bool> {
    match rustix::fs::fsetxattr(file, SELINUX, label, XattrFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOTSUP) => Ok(false),
        Err(Errno::PERM) if !nix::unistd::geteuid().is_root() => Ok(false),
        Err(e @ (Errno::INVAL | Errno::ACCESS)) => {
            log::warn!(
                "the file's SELinux label {:?} was refused ({e}): it gets the policy's",
                String::from_utf8_lossy(label).trim_end_matches('\0')
            );
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether SELinux runs (its filesystem is mounted).
fn selinux_on() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// A file we created on the live system (`path`, absolute): the policy's
/// label, when SELinux runs and `restorecon` is installed.
pub(super) fn label_new(path: &Path) {
    if !selinux_on() {
        return;
    }
    let Some(tool) = ["/usr/sbin/restorecon", "/sbin/restorecon"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        log::warn!(
            "{}: SELinux is on but restorecon is missing: the file has its folder's default label",
            path.display()
        );
        return;
    };
    if let Err(e) = crate::base::runner::Run::new(tool)
        .arg(path)
        .limit(std::time::Duration::from_secs(30))
        .output()
    {
        log::warn!("{e:#}");
    }
}
