//! `gandi-vm config [--root DIR] [--cmdline FILE]`: per-boot housekeeping.

use crate::base::settings::Settings;
use crate::boot::config;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(settings: &Settings, root: PathBuf, cmdline: Option<PathBuf>) -> Result<i32> {
    config::run(settings, &config::Options { root, cmdline })
}
