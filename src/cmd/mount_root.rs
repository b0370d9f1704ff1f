//! `gandi-vm mount-root PATH [--force]`.

use crate::settings::Settings;
use anyhow::Result;
use std::path::Path;

pub fn run(settings: &Settings, path: &Path, force: bool) -> Result<i32> {
    crate::admin::mount_root(settings, path, force)
}
