//! What udev's database tells of a device, taken only while udevd runs
//! and only for the device's current attach.

use super::exclusion::same_attach;
use super::{Entry, Scan};
use crate::base::read::read_small;
use crate::kernel::device::{DevNum, Device, FsInfo};
use crate::kernel::udev::{parse_udev_entry, udev_alive};

impl Scan<'_> {
    /// udev's entries are only up to date while udevd runs.
    pub(super) fn udev_alive(&self) -> bool {
        *self
            .udev_alive
            .get_or_init(|| udev_alive(&self.settings.paths.udev_data_dir))
    }

    /// udev's database entry: the metadata and the attach sequence number
    /// udev saw (kept as the `disk/by-diskseq` link).
    pub(super) fn udev_entry(&self, devnum: DevNum) -> Option<(FsInfo, Option<u64>)> {
        let path = self.settings.paths.udev_data_dir.join(format!("b{devnum}"));
        let text = read_small(&path)?;
        Some(parse_udev_entry(&text))
    }

    /// Whether udev's entry, made when the disk had the attach sequence
    /// number `seq`, is of the disk's current attach (the disk's number read
    /// only when the entry has one).
    pub(super) fn udev_current(&self, entry: &Entry, seq: Option<u64>) -> bool {
        seq.is_none() || {
            let whole = self.parent(entry).unwrap_or_else(|| entry.name.clone());
            same_attach(self.diskseq(&whole), seq)
        }
    }

    /// udev's metadata for the device, unless the entry is left from an
    /// earlier attach under the same device number (udev stopped since):
    /// its attach sequence number must be the current one.
    pub(super) fn udev_fs(&self, dev: &Device) -> Option<FsInfo> {
        if !self.udev_alive() {
            return None;
        }
        let (fs, db_seq) = self.udev_entry(dev.devnum)?;
        same_attach(dev.diskseq, db_seq).then_some(fs)
    }
}
