//! `gandi-vm config [--root DIR] [--cmdline FILE]`: per-boot housekeeping.

use crate::perboot;
use crate::settings::Settings;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(settings: &Settings, root: PathBuf, cmdline: Option<PathBuf>) -> Result<i32> {
    perboot::run(settings, &perboot::Options { root, cmdline })
}
