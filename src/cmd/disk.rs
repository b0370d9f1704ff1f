//! `gandi-vm disk check|release KEY`.

use crate::cli::DiskCmd;
use crate::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings, command: DiskCmd) -> Result<i32> {
    match command {
        DiskCmd::Release { key, force } => crate::release::release(settings, &key, force),
        DiskCmd::Check { key } => crate::check::run(settings, &key),
    }
}
