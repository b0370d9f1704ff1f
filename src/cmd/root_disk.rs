//! `gandi-vm root-disk [--device DEV]`: the root partition and its
//! filesystem grown.

use crate::base::settings::Settings;
use crate::disk::rootgrow;
use anyhow::Result;

/// Grow a partition to the end of its disk when it is the last one (GPT:
/// named gandiroot), then its filesystem. Without --device, the root's.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The partition, e.g. /dev/vda1.
    #[arg(long, value_name = "PATH")]
    pub device: Option<String>,
}

pub fn run(settings: &Settings, args: Args) -> Result<i32> {
    let device = args.device.as_deref();
    let grown = match device {
        Some(d) => rootgrow::grow_partition(settings, d.strip_prefix("/dev/").unwrap_or(d)),
        None => rootgrow::grow_root(settings),
    }?;
    crate::base::out::line(&format!(
        "{}{}",
        if grown.changed {
            "grown: "
        } else {
            "unchanged: "
        },
        grown.detail
    ));
    Ok(0)
}
