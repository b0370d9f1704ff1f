//! `gandi-vm disk check|release KEY`.

use crate::base::out;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use anyhow::Result;

/// Act on one data disk.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DiskCmd,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    match args.command {
        DiskCmd::Release { key, force } => {
            crate::disk::release::release(settings, &key, force, &mut |l| out::line(l))
        }
        DiskCmd::Check { key } => crate::disk::check::run(settings, &key, &mut |l| out::line(l)),
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum DiskCmd {
    /// Check and repair a data disk's filesystem (it must not be mounted):
    /// e2fsck -fy, xfs_repair, or btrfs check (read-only). A disk whose
    /// last check found errors is refused by the map until this passes.
    Check {
        /// The disk's label, kernel name or UUID.
        key: String,
    },
    /// Prepare a disk for detach: run the pre-disk-detach hook, stop the
    /// services listed in MOUNTPOINT/.gandi/services, unmount it and mark
    /// it released so the map refuses it until it is detached or attached
    /// again. Names the processes that still hold it.
    Release {
        /// The disk's label, kernel name or UUID.
        key: String,
        /// Unmount lazily even when busy.
        #[arg(long)]
        force: bool,
    },
}
