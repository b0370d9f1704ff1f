//! The command line, shared by the binary and the man page generator: the
//! verbs, each with the arguments its own file defines.

use super::{
    automount, bootstrap, config, disk, disk_event, disk_grow, disks, grow_private, iface, map,
    memory_online, mount, mount_root, postboot, queues, report, root_disk, status, validate,
};
use clap::{Parser, Subcommand};

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
    Map(map::Args),
    Disks(disks::Args),
    /// Print the settings in force and any problem in the settings file.
    Settings,
    Disk(disk::Args),
    DiskEvent(disk_event::Args),
    DiskGrow(disk_grow::Args),
    Bootstrap(bootstrap::Args),
    Config(config::Args),
    Mount(mount::Args),
    Postboot(postboot::Args),
    Validate(validate::Args),
    Status(status::Args),
    Report(report::Args),
    RootDisk(root_disk::Args),
    MountRoot(mount_root::Args),
    Automount(automount::Args),
    Iface(iface::Args),
    MemoryOnline(memory_online::Args),
    /// Internal (the packages run it): carry an admin's choices over from
    /// the original suite (gandi-hosting-vm2) and move aside what of it
    /// would mask or duplicate gandi-vm.
    #[command(hide = true)]
    MigrateOriginal,
    #[command(hide = true)]
    Queues(queues::Args),
    #[command(hide = true)]
    GrowPrivate(grow_private::Args),
}
