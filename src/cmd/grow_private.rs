//! `gandi-vm grow-private DEV FSTYPE MNT` (internal): a growth in a
//! private mount namespace, run by the grower.

use anyhow::Result;
use std::path::Path;

pub fn run(device: &Path, fstype: &str, mount_point: &Path) -> Result<i32> {
    crate::disk::fsgrow::grow_private(device, fstype, mount_point).map(|()| 0)
}
