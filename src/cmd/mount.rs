//! `gandi-vm mount [--timeout S] [--all]`: the boot's block events replayed.

use crate::base::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, timeout: u64, all: bool) -> Result<i32> {
    crate::boot::replay::run(settings, std::time::Duration::from_secs(timeout), all)
}
