//! The command line, shared by the binary and the man page generator.

use clap::{Parser, Subcommand};
use std::ffi::OsString;

/// Guest agent for Gandi cloud VMs: data disks on demand under the mount
/// root, first-boot setup from the platform's config, hot-plugged resources.
///
/// Settings come from /etc/default/gandi (or /etc/sysconfig/gandi), or the
/// file named by the GANDI_CONFIG environment variable.
#[derive(Debug, Parser)]
#[command(name = "gandi-vm", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// The autofs program map: print the map entry of the data disk named
    /// KEY (label, kernel name or UUID). Same as running the program through
    /// a link named auto.gandi.
    Map {
        /// The name looked up under the mount root.
        key: OsString,
    },
    /// List the candidate data disks: label, UUID, type, size, where they are
    /// mounted, their path under the mount root, or why they are left out.
    Disks {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the settings in force and any problem in the settings file.
    Settings,
}
