//! `gandi-vm postboot [--root DIR]`: the platform's post-boot commands.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::boot::postboot;
use anyhow::Result;

/// Run the customer's commands of the platform's config once per config,
/// after the config stage has ended: /gandi/script with
/// vm_conf.script_args, then vm_conf.run (and the platform's own
/// /gandi/init with CONFIG_PLATFORM_SCRIPT=1); then remove them and the
/// password hash from disk; stop autofs with CONFIG_ALLOW_MOUNT=0.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use the /gandi and /var/lib/gandi of the tree at DIR.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let root = args.root;
    postboot::run(settings, &postboot::Options { root })
}
