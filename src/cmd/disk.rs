//! `gandi-vm disk check|release KEY`.

use crate::base::settings::Settings;
use crate::cmd::cli::DiskCmd;
use anyhow::Result;

pub fn run(settings: &Settings, command: DiskCmd) -> Result<i32> {
    match command {
        DiskCmd::Release { key, force } => crate::disk::release::release(settings, &key, force),
        DiskCmd::Check { key } => crate::disk::check::run(settings, &key),
    }
}
