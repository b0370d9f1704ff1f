//! `gandi-vm memory-online BLOCK`: a hot-added memory block brought online.

use crate::base::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, block: &str) -> Result<i32> {
    crate::hotplug::memory::memory_online(settings, block)
}
