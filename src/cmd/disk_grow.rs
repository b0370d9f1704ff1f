//! `gandi-vm disk-grow NAME`: what `gandi-disk@NAME.service` runs.

use crate::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, name: &str) -> Result<i32> {
    crate::diskevent::grow_disk(settings, name)
}
