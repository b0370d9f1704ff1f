//! `gandi-vm bootstrap [--root DIR] [--device DEV]`.

use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::boot::bootstrap;
use anyhow::Result;

/// First boot: read the platform's config archive at 512 KiB of the
/// platform's disk (the one at the place GANDI_PLATFORM_DISK names, never
/// one found by its label), extract its gandi/ tree to /gandi, apply it
/// (the user, the password, SSH keys, hostname, resolvers, network),
/// unpack the kernel's modules, (re)create and enable the swap, load the
/// sysctl file, grow the root disk and run the admin's early steps. Each
/// step's result goes to GANDI_RUN_DIR/status.json.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Set up the tree at DIR instead of the live system: every file is
    /// written under DIR and nothing is done to the running system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: std::path::PathBuf,
    /// The platform's disk (a device or an image file), instead of
    /// looking for it at its place.
    #[arg(long, value_name = "PATH")]
    pub device: Option<std::path::PathBuf>,
    /// The kernel whose modules are unpacked (default: the running one).
    #[arg(long, value_name = "RELEASE")]
    pub kernel_release: Option<String>,
}

pub fn run(settings: &Settings, args: Args) -> Result<Ended> {
    let Args {
        root,
        device,
        kernel_release,
    } = args;
    bootstrap::run(
        settings,
        &bootstrap::Options {
            root,
            device,
            kernel_release,
        },
    )
}
