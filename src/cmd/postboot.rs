//! `gandi-vm postboot [--root DIR]`: the platform's post-boot commands.

use crate::base::settings::Settings;
use crate::boot::postboot;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(settings: &Settings, root: PathBuf) -> Result<i32> {
    postboot::run(settings, &postboot::Options { root })
}
