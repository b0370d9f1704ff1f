//! `gandi-vm disk-grow NAME`: what `gandi-disk@NAME.service` runs.

use crate::settings::Settings;
use anyhow::{Result, bail};

pub fn run(
    settings: &Settings,
    name: &str,
    worker: bool,
    resume: bool,
    adopt: bool,
) -> Result<i32> {
    if !crate::diskevent::valid_name(name) {
        bail!("{name:?} is not a kernel device name");
    }
    if resume {
        crate::diskevent::resume(settings, name)
    } else if adopt {
        crate::diskevent::adopt(settings, name)
    } else if worker {
        let watcher = std::os::unix::process::parent_id();
        crate::diskevent::grow_disk(settings, name, Some(watcher))
    } else {
        crate::diskevent::grow_supervised(settings, name)
    }
}
