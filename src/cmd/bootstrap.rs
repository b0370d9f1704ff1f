//! `gandi-vm bootstrap [--root DIR] [--device DEV]`.

use crate::base::settings::Settings;
use crate::boot::bootstrap;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(
    settings: &Settings,
    root: PathBuf,
    device: Option<PathBuf>,
    kernel_release: Option<String>,
) -> Result<i32> {
    bootstrap::run(
        settings,
        &bootstrap::Options {
            root,
            device,
            kernel_release,
        },
    )
}
