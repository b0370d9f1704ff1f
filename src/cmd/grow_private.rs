//! `gandi-vm grow-private DEV FSTYPE MNT` (internal): a growth in a
//! private mount namespace, run by the grower.

use anyhow::Result;

/// Internal: mount, grow and unmount inside a private mount namespace.
#[derive(Debug, clap::Args)]
pub struct Args {
    pub device: std::path::PathBuf,
    pub fstype: String,
    pub mount_point: std::path::PathBuf,
}

pub fn run(args: Args) -> Result<i32> {
    let (device, fstype, mount_point) = (&args.device, args.fstype.as_str(), &args.mount_point);
    crate::disk::fsgrow::grow_private(device, fstype, mount_point).map(|()| 0)
}
