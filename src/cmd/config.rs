//! `gandi-vm config [--root DIR] [--cmdline FILE]`: per-boot housekeeping.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::boot::config;
use anyhow::Result;

/// Per-boot housekeeping, each step gated by its flag: serial console
/// getty, /etc/hosts when missing, the fstab root line by UUID, the
/// system crontab spread per machine, timezone, SSH host keys and
/// settings, motd; the admin's plugins and the post-vm-config hook;
/// then (after READY=1 to systemd when run by its unit) the ext3/4
/// root's mount count.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Set up the tree at DIR instead of the live system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// Read the kernel command line (gandi=ZONE) from FILE.
    #[arg(long, value_name = "FILE")]
    pub cmdline: Option<std::path::PathBuf>,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let Args { root, cmdline } = args;
    config::run(settings, &config::Options { root, cmdline })
}
