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
    /// KEY: its label when the label leads to it, else its kernel name (one
    /// path per disk: another of its names, its UUID included, is refused
    /// and names that path). Same as running the program through a link
    /// named auto.gandi.
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
    /// Act on one data disk.
    Disk {
        #[command(subcommand)]
        command: DiskCmd,
    },
    /// Handle a block event. Without arguments (as udev runs it), read the
    /// event from the environment (ACTION, DEVPATH, DEVNAME, MAJOR, MINOR,
    /// ID_FS_*), record the disk and hand its growth to
    /// gandi-disk@NAME.service. With arguments (by hand), record and grow
    /// synchronously, or forget the disk on remove.
    DiskEvent {
        /// add, change or remove.
        #[arg(requires = "device")]
        action: Option<String>,
        /// The device: vdb or /dev/vdb.
        device: Option<String>,
    },
    /// Grow the filesystem of a data disk to the size of its device, record
    /// it and run the post-disk-attach hook (what gandi-disk@NAME.service
    /// runs). The work runs in a child that is started again when a signal
    /// kills it.
    DiskGrow {
        /// Kernel name of the device (vdb).
        name: String,
        /// Do the work in this process (the watched child).
        #[arg(long, hide = true, conflicts_with_all = ["resume", "adopt"])]
        worker: bool,
        /// After the unit stopped: start it again when the growth is not
        /// done and no grower lives (its ExecStopPost=).
        #[arg(long, conflicts_with = "adopt")]
        resume: bool,
        /// Resume a growth left undone by a grower that was killed (started
        /// by a lookup or an event without systemd); ends at once when a
        /// grower holds the disk.
        #[arg(long)]
        adopt: bool,
    },
    /// First boot: read the platform's config archive at 512 KiB of the
    /// platform's disk (the one at the place GANDI_PLATFORM_DISK names, never
    /// one found by its label), extract its gandi/ tree to /gandi, apply it
    /// (the user, the password, SSH keys, hostname, resolvers, network),
    /// unpack the kernel's modules, (re)create and enable the swap, load the
    /// sysctl file, grow the root disk and run the admin's early steps. Each
    /// step's result goes to GANDI_RUN_DIR/status.json.
    Bootstrap {
        /// Set up the tree at DIR instead of the live system: every file is
        /// written under DIR and nothing is done to the running system.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: std::path::PathBuf,
        /// The platform's disk (a device or an image file), instead of
        /// looking for it at its place.
        #[arg(long, value_name = "PATH")]
        device: Option<std::path::PathBuf>,
        /// The kernel whose modules are unpacked (default: the running one).
        #[arg(long, value_name = "RELEASE")]
        kernel_release: Option<String>,
    },
    /// Per-boot housekeeping, each step gated by its flag: serial console
    /// getty, /etc/hosts when missing, the fstab root line by UUID, the
    /// system crontab spread per machine, timezone, SSH host keys and
    /// settings, motd; the admin's plugins and the post-vm-config hook;
    /// then (after READY=1 to systemd when run by its unit) the ext3/4
    /// root's mount count.
    Config {
        /// Set up the tree at DIR instead of the live system.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: std::path::PathBuf,
        /// Read the kernel command line (gandi=ZONE) from FILE.
        #[arg(long, value_name = "FILE")]
        cmdline: Option<std::path::PathBuf>,
    },
    /// Make sure every data disk attached during boot was handed to the
    /// attach helper before services start: done at once when every
    /// candidate disk is recorded; else wait for udev's queue, then replay
    /// add events for the candidate disks not recorded yet (nothing with
    /// CONFIG_ALLOW_MOUNT=0).
    Mount {
        /// Longest wait for udev's queue, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Replay add events of every block device, recorded or not (as
        /// the original did at every boot).
        #[arg(long)]
        all: bool,
    },
    /// Run the customer's commands of the platform's config once per config,
    /// after the config stage has ended: /gandi/script with
    /// vm_conf.script_args, then vm_conf.run (and the platform's own
    /// /gandi/init with CONFIG_PLATFORM_SCRIPT=1); then remove them and the
    /// password hash from disk; stop autofs with CONFIG_ALLOW_MOUNT=0.
    Postboot {
        /// Use the /gandi and /var/lib/gandi of the tree at DIR.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: std::path::PathBuf,
    },
    /// Check a platform config file (JSON; - reads standard input): print
    /// each problem with its place, in the order of the file, then notes on
    /// fields the platform does not write; exit 0 when valid.
    Validate { file: std::path::PathBuf },
    /// Show the stages of this boot as they run and their steps (result,
    /// detail, duration, start and end): 0 when all went well, 1 when a
    /// step failed or a stage was cut short, 3 when --wait ran out of time.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The previous boot's stages instead of this boot's.
        #[arg(long, conflicts_with = "wait")]
        previous: bool,
        /// Wait until every stage of this boot has ended (a stage whose
        /// unit is disabled, masked or skipped by its condition counts as
        /// ended), then show them and exit with their result.
        #[arg(long)]
        wait: bool,
        /// The longest wait, in seconds.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 3600,
            requires = "wait"
        )]
        timeout: u64,
    },
    /// Write one archive with what support needs: the status of this boot
    /// and of the last, the journal of our units and udev's lines about our
    /// rules, the settings, the disks' records and table, the names of the
    /// values applied, versions. No secret goes in it: not the platform's
    /// config, no key, no command nor its output.
    Report {
        /// Where the archive goes (a .tar.gz, root-only).
        #[arg(
            long,
            short,
            value_name = "FILE",
            default_value = "gandi-vm-report.tar.gz"
        )]
        output: std::path::PathBuf,
    },
    /// Grow a partition to the end of its disk when it is the last one (GPT:
    /// named gandiroot), then its filesystem. Without --device, the root's.
    RootDisk {
        /// The partition, e.g. /dev/vda1.
        #[arg(long, value_name = "PATH")]
        device: Option<String>,
    },
    /// Move the automount root: check PATH, rewrite the master map entry,
    /// set CONFIG_DISK_ROOT, create PATH and reload autofs. Refuses while a
    /// disk is mounted under the old root, unless --force.
    MountRoot {
        path: std::path::PathBuf,
        /// Move even though disks are mounted under the old root.
        #[arg(long)]
        force: bool,
    },
    /// Turn automounting on or off: the master map entry (commented out
    /// when off) and CONFIG_ALLOW_MOUNT, then reload autofs. `auto` (run by
    /// the package on first install) enables it unless another autofs map
    /// already owns the mount root, and says so when autofs is missing.
    Automount {
        #[arg(value_parser = ["enable", "disable", "auto"])]
        action: String,
    },
    /// Configure a hot-plugged network interface (what
    /// gandi-iface@IFACE.service runs): link up; unless in CONFIG_NODHCP,
    /// addresses from the platform config (or DHCP) through networkd,
    /// ifupdown or udhcpc, ARP and rp_filter settings for secondary
    /// interfaces, virtio queues, a route metric per interface, then the
    /// post-iface-attach hook. With --remove (when the unit stops), stop
    /// its DHCP client and, if the NIC is gone, remove what was generated
    /// for it; a NIC still present (a shutdown) keeps its files.
    Iface {
        name: String,
        #[arg(long)]
        remove: bool,
        /// Read the config and write files under DIR.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: std::path::PathBuf,
    },
    /// Online a hot-added memory block (memoryN) that is offline, as
    /// CONFIG_MEMORY_ONLINE says (online or online_movable).
    MemoryOnline { block: String },
    /// Internal (the packages run it): carry an admin's choices over from
    /// the original suite (gandi-hosting-vm2) and move aside what of it
    /// would mask or duplicate gandi-vm.
    #[command(hide = true)]
    MigrateOriginal,
    /// Internal: set an interface's queues through the ethtool ioctl.
    #[command(hide = true)]
    Queues { name: String, count: u32 },
    /// Internal: mount, grow and unmount inside a private mount namespace.
    #[command(hide = true)]
    GrowPrivate {
        device: std::path::PathBuf,
        fstype: String,
        mount_point: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DiskCmd {
    /// Check and repair a data disk's filesystem (it must not be mounted):
    /// e2fsck -fy, xfs_repair, or btrfs check (read-only). A disk whose
    /// last check found errors is refused by the map until this passes.
    Check {
        /// The disk's label, kernel name or UUID.
        key: String,
    },
    /// Prepare a disk for detach: run the pre-disk-detach hook, stop the
    /// services listed in MOUNTPOINT/.gandi/services, unmount it and mark
    /// it released so the map refuses it until it is detached or attached
    /// again. Names the processes that still hold it.
    Release {
        /// The disk's label, kernel name or UUID.
        key: String,
        /// Unmount lazily even when busy.
        #[arg(long)]
        force: bool,
    },
}
