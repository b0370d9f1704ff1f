//! `gandi-vm disk-grow NAME`: what `gandi-disk@NAME.service` runs.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use anyhow::{Result, bail};

/// Grow the filesystem of a data disk to the size of its device, record
/// it and run the post-disk-attach hook (what gandi-disk@NAME.service
/// runs). The work runs in a child that is started again when a signal
/// kills it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel name of the device (vdb).
    pub name: String,
    /// Do the work in this process (the watched child).
    #[arg(long, hide = true, conflicts_with_all = ["resume", "adopt"])]
    pub worker: bool,
    /// After the unit stopped: start it again when the growth is not
    /// done and no grower lives (its ExecStopPost=).
    #[arg(long, conflicts_with = "adopt")]
    pub resume: bool,
    /// Resume a growth left undone by a grower that was killed (started
    /// by a lookup or an event without systemd); ends at once when a
    /// grower holds the disk.
    #[arg(long)]
    pub adopt: bool,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let Args {
        name,
        worker,
        resume,
        adopt,
    } = args;
    let name = name.as_str();
    if !crate::disk::event::valid_name(name) {
        bail!("{name:?} is not a kernel device name");
    }
    if resume {
        crate::disk::supervise::resume(settings, name)
    } else if adopt {
        crate::disk::supervise::adopt(settings, name)
    } else if worker {
        let watcher = std::os::unix::process::parent_id();
        crate::disk::growjob::grow_disk(settings, name, Some(watcher))
    } else {
        crate::disk::supervise::grow_supervised(settings, name)
    }
}
