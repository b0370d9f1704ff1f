//! Every key of the settings file, its default and its meaning: the one
//! table the man page `gandi(5)`, `gandi-vm settings` and the check of
//! unknown keys read.

use super::*;

/// Every key of the settings file: the keys of a row, their default and
/// what they mean. The one source of the README's table, of `gandi(5)`
/// and of the unknown-key check.
pub const KEYS: &[(&[&str], &str, &str)] = &[
    (
        &["CONFIG_ALLOW_MOUNT"],
        "1",
        "0: the map serves nothing (disks are still recorded and grown)",
    ),
    (
        &["CONFIG_MOUNT_PARAMS"],
        "`rw,nosuid,nodev,noatime`",
        "options added for each disk",
    ),
    (
        &["CONFIG_DISK_ROOT"],
        "`/srv`",
        "where disks appear (`gandi-vm mount-root PATH` moves it with the master map)",
    ),
    (
        &["CONFIG_DISK_DEVICES"],
        "`xvd* sd* vd* nvme*n*`",
        "kernel names that may be data disks",
    ),
    (
        &["GANDI_PLATFORM_DISK"],
        "`xvdz xvda2 pci-0000:00:04.0`",
        "where the platform attaches its swap/config disk: Xen names, PCI slots (`docs/boot.md`)",
    ),
    (
        &["CONFIG_HOSTNAME", "CONFIG_NAMESERVER", "CONFIG_NETWORK"],
        "1",
        "bootstrap's hostname, resolvers, network",
    ),
    (
        &["CONFIG_USER", "CONFIG_PASSWORD", "CONFIG_SSH_KEYS"],
        "1",
        "bootstrap's user, password, keys",
    ),
    (
        &["CONFIG_SWAP", "CONFIG_ROOT_GROW", "CONFIG_MODULES"],
        "1",
        "bootstrap's swap area, root disk growth, kernel modules",
    ),
    (
        &["CONFIG_SYSCTL"],
        "1",
        "link and load `/etc/gandi/sysctl.conf`",
    ),
    (
        &["CONFIG_NODHCP"],
        "`eth0`",
        "interfaces the hot-plug path gives no address (DHCP nor static); `ethN` names vif N's interface, whatever its name",
    ),
    (
        &["CONFIG_SOURCE_ROUTING"],
        "1",
        "each NIC but the first with a static address and gateway answers through its own gateway (a routing table and source rules, `docs/hotplug.md`)",
    ),
    (
        &[
            "CONFIG_MOTD",
            "CONFIG_TIMEZONE",
            "CONFIG_SSHD",
            "CONFIG_CONSOLE",
            "CONFIG_CRON",
        ],
        "1",
        "`config` steps",
    ),
    (
        &["CONFIG_MULTIQUEUE"],
        "1",
        "virtio NICs get min(CPUs, 8) queues",
    ),
    (
        &["CONFIG_PLATFORM_SCRIPT"],
        "0",
        "1: run the platform's own `/gandi/init` at postboot, as the original did (`docs/boot.md`)",
    ),
    (
        &["CONFIG_MEMORY_ONLINE"],
        "`online`",
        "zone of hot-added memory (`online`, `online_movable`)",
    ),
    (
        &["GANDI_POSTBOOT_TIMEOUT"],
        "600",
        "time limit of each post-boot command, in seconds",
    ),
    (
        &["GANDI_PLUGIN_DIR", "GANDI_BOOTSTRAP_DIR"],
        "`/etc/gandi/plugins.d`, `/etc/gandi/bootstrap.d`",
        "the admin's own steps",
    ),
    (&["GANDI_HOOK_DIR"], "`/etc/gandi/hooks`", "hooks"),
    (
        &["GANDI_DIR", "GANDI_STATE_DIR", "GANDI_RUN_DIR"],
        "`/gandi`, `/var/lib/gandi`, `/run/gandi`",
        "the platform's archive, state kept across boots, runtime state",
    ),
    (
        &["GANDI_DISABLED_FILE"],
        "`/etc/gandi/disabled`",
        "when it exists, no boot stage nor hot-plug path of ours runs (as `gandi.disabled=1` on the kernel command line); the units and udev rules look at `/etc/gandi/disabled` itself, the key moves only the check of gandi-vm (tests, unusual systems)",
    ),
    (
        &["SYSLOG_TARGET", "TEMP_DIR_CONF"],
        "`gandi`, `/var/gandi`",
        "as the original",
    ),
    (
        &["GANDI_BIN"],
        "`/usr/bin/gandi-vm`",
        "the suite's program, started by the map (a program of its own) to resume a growth whose grower was killed",
    ),
    (
        &["GANDI_SYSTEMD_DIR", "GANDI_AUTOFS_PIDFILE"],
        "`/run/systemd/system`, `/run/autofs.pid`",
        "how to tell systemd is the init; the automount to reload without it",
    ),
    (
        &[
            "GANDI_MASTER_MAP",
            "GANDI_AUTO_MASTER",
            "GANDI_SYS_DIR",
            "GANDI_PROC_DIR",
            "GANDI_DEV_DIR",
            "GANDI_UDEV_DATA_DIR",
        ],
        "the system's",
        "the system files read or edited, for tests and unusual systems",
    ),
    (
        &["GANDI_PROBE_TIMEOUT_MS"],
        "3000",
        "the map's time limit for probing a disk udev has not described yet",
    ),
];

/// The README's table of [`KEYS`], row by row.
pub fn keys_table() -> String {
    let mut out = String::from("| key | default | meaning |\n| --- | --- | --- |\n");
    for (keys, default, meaning) in KEYS {
        let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        out.push_str(&format!(
            "| {} | {default} | {meaning} |\n",
            keys.join(", ")
        ));
    }
    out
}

/// Whether `key` is one of the settings file's.
pub fn known_key(key: &str) -> bool {
    key == CONFIG_ENV || KEYS.iter().any(|(keys, _, _)| keys.contains(&key))
}
