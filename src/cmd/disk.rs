//! `gandi-vm disk check|release KEY`.

use crate::base::out;
use crate::base::settings::Settings;
use crate::cmd::cli::DiskCmd;
use anyhow::Result;

pub fn run(settings: &Settings, command: DiskCmd) -> Result<i32> {
    match command {
        DiskCmd::Release { key, force } => {
            crate::disk::release::release(settings, &key, force, &mut |l| out::line(l))
        }
        DiskCmd::Check { key } => crate::disk::check::run(settings, &key, &mut |l| out::line(l)),
    }
}
