//! `gandi-vm memory-online BLOCK`: a hot-added memory block brought online.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use anyhow::Result;

/// Online a hot-added memory block (memoryN) that is offline, as
/// CONFIG_MEMORY_ONLINE says (online or online_movable).
#[derive(Debug, clap::Args)]
pub struct Args {
    pub block: String,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let block = args.block.as_str();
    crate::hotplug::memory::memory_online(settings, block)
}
