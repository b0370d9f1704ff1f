//! `gandi-vm mount-root PATH [--force]`: the automount root moved.

use crate::base::settings::Settings;
use anyhow::Result;

/// Move the automount root: check PATH, rewrite the master map entry,
/// set CONFIG_DISK_ROOT, create PATH and reload autofs. Refuses while a
/// disk is mounted under the old root, unless --force.
#[derive(Debug, clap::Args)]
pub struct Args {
    pub path: std::path::PathBuf,
    /// Move even though disks are mounted under the old root.
    #[arg(long)]
    pub force: bool,
}

pub fn run(settings: &Settings, args: Args) -> Result<i32> {
    let edit = crate::automount::master::mount_root(settings, &args.path, args.force)?;
    Ok(super::automount::say(&edit))
}
