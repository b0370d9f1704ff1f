//! `gandi-vm disk-grow NAME`: what `gandi-disk@NAME.service` runs.

use crate::base::settings::Settings;
use anyhow::{Result, bail};

pub fn run(
    settings: &Settings,
    name: &str,
    worker: bool,
    resume: bool,
    adopt: bool,
) -> Result<i32> {
    if !crate::disk::event::valid_name(name) {
        bail!("{name:?} is not a kernel device name");
    }
    if resume {
        crate::disk::supervise::resume(settings, name)
    } else if adopt {
        crate::disk::supervise::adopt(settings, name)
    } else if worker {
        let watcher = std::os::unix::process::parent_id();
        crate::disk::growjob::grow_disk(settings, name, Some(watcher))
    } else {
        crate::disk::supervise::grow_supervised(settings, name)
    }
}
