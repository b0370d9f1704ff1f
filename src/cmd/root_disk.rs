//! `gandi-vm root-disk [--device DEV]`: the root partition and its
//! filesystem grown.

use crate::base::settings::Settings;
use crate::disk::rootgrow;
use anyhow::Result;

pub fn run(settings: &Settings, device: Option<&str>) -> Result<i32> {
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
