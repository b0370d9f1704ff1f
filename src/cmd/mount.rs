//! `gandi-vm mount [--timeout S] [--all]`: the boot's block events replayed.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use anyhow::Result;

/// Make sure every data disk attached during boot was handed to the
/// attach helper before services start: done at once when every
/// candidate disk is recorded; else record here those whose udev entry is
/// current (udev's rule leaves the coldplug's disks to this stage, one
/// process for all), wait for udev's queue for the others, then replay
/// add events for the candidate disks not recorded yet (also with
/// CONFIG_ALLOW_MOUNT=0 or turned off: recording is not mounting).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Longest wait for udev's queue, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Replay add events of every block device, recorded or not (as
    /// the original did at every boot).
    #[arg(long)]
    pub all: bool,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let Args { timeout, all } = args;
    crate::boot::replay::run(settings, std::time::Duration::from_secs(timeout), all)
}
