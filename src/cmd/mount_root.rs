//! `gandi-vm mount-root PATH [--force]`.

use crate::base::settings::Settings;
use anyhow::Result;
use std::path::Path;

pub fn run(settings: &Settings, path: &Path, force: bool) -> Result<i32> {
    crate::automount::master::mount_root(settings, path, force)
}
