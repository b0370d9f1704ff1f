//! `gandi-vm memory-online BLOCK`: a hot-added memory block brought online.

use crate::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, block: &str) -> Result<i32> {
    crate::iface::memory_online(settings, block)
}
