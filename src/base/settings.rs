//! Settings from `/etc/default/gandi` (or `/etc/sysconfig/gandi`, or the file
//! named by `GANDI_CONFIG`).
//!
//! Two layers, as the file is read by shell scripts too:
//! - [`RawConfig`]: the `KEY=VALUE` pairs of a shell-style file, with the
//!   problems found on each line;
//! - [`Settings`]: validated, typed values, with the documented default for
//!   every key that is missing, empty or invalid.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

mod keys;
mod raw;
pub use keys::{KEYS, keys_table, known_key};
pub use raw::{LineError, RawConfig, ValueError};

/// Where the settings are looked for, in order, when `GANDI_CONFIG` is unset.
pub const DEFAULT_LOCATIONS: &[&str] = &["/etc/default/gandi", "/etc/sysconfig/gandi"];

/// The environment variable that names another settings file.
pub const CONFIG_ENV: &str = "GANDI_CONFIG";

/// Where the system's files are: the standard places on a VM. Tests point
/// them elsewhere through the `GANDI_*` keys of their settings file (and
/// `--root` reads that file from the tree); no admin needs to.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The file whose presence turns gandi-vm's boot stages and hot-plug
    /// paths off (`GANDI_DISABLED_FILE`, `/etc/gandi/disabled`).
    pub disabled_file: PathBuf,
    pub plugin_dir: PathBuf,
    /// The admin's early boot steps, run by `bootstrap`
    /// (`GANDI_BOOTSTRAP_DIR`).
    pub bootstrap_dir: PathBuf,
    /// Where the platform's archive is extracted (`GANDI_DIR`).
    pub gandi_dir: PathBuf,
    /// State kept across boots (`GANDI_STATE_DIR`): what was applied, the
    /// marks of what runs once.
    pub state_dir: PathBuf,
    pub temp_dir_conf: PathBuf,
    pub hook_dir: PathBuf,
    /// Runtime state (`GANDI_RUN_DIR`).
    pub run_dir: PathBuf,
    /// Our autofs master map entry (`GANDI_MASTER_MAP`).
    pub master_map: PathBuf,
    /// The system's master map, for the other maps' roots (`GANDI_AUTO_MASTER`).
    pub auto_master: PathBuf,
    /// Present when systemd is the init (`GANDI_SYSTEMD_DIR`): growths go
    /// to `gandi-disk@` units and autofs is reloaded through systemctl.
    pub systemd_dir: PathBuf,
    /// The automount daemon's PID file, signalled to reload its master map
    /// where systemd is not the init (`GANDI_AUTOFS_PIDFILE`).
    pub autofs_pid_file: PathBuf,
    /// The suite's program, which the map (a program of its own) starts
    /// to resume a growth left undone (`GANDI_BIN`).
    pub bin: PathBuf,
    /// Where the kernel's views are read; changed only by tests.
    pub sys_dir: PathBuf,
    pub proc_dir: PathBuf,
    pub dev_dir: PathBuf,
    pub udev_data_dir: PathBuf,
}

/// Validated settings. Every path the suite reads or writes comes from here.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file the settings were read from, if any.
    pub source: Option<PathBuf>,

    pub motd: bool,
    pub timezone: bool,
    pub sysctl: bool,
    pub sshd: bool,
    pub console: bool,
    pub hostname: bool,
    pub nameserver: bool,
    pub allow_mount: bool,
    pub cron: bool,
    pub multiqueue: bool,
    /// A routing table and source rules for each NIC but the first with a
    /// static address and gateway (`CONFIG_SOURCE_ROUTING`).
    pub source_routing: bool,
    pub network: bool,
    /// Run the platform's own script `/gandi/init` at postboot
    /// (`CONFIG_PLATFORM_SCRIPT`, off by default: its work is native).
    pub platform_script: bool,
    /// Bootstrap's steps the original did not gate, each on by default.
    pub user: bool,
    pub password: bool,
    pub ssh_keys: bool,
    pub swap: bool,
    pub root_grow: bool,
    pub modules: bool,
    /// Mount options added to the ones of the master map (`CONFIG_MOUNT_PARAMS`).
    pub mount_params: String,
    /// Where data disks appear (`CONFIG_DISK_ROOT`).
    pub disk_root: PathBuf,
    /// Interfaces never given DHCP (`CONFIG_NODHCP`).
    pub nodhcp: Vec<String>,
    /// Globs of kernel names that may be data disks (`CONFIG_DISK_DEVICES`).
    pub disk_devices: Vec<String>,
    /// The places the platform attaches its swap/config disk at
    /// (`GANDI_PLATFORM_DISK`): Xen kernel names, `pci-ADDRESS` slots.
    pub platform_disk: Vec<String>,

    pub syslog_target: String,

    /// Longest time a direct probe of the disks may take, in milliseconds.
    pub probe_timeout_ms: u64,
    /// Time limit of each post-boot command, in seconds.
    pub postboot_timeout_s: u64,
    /// What a hot-added memory block becomes: `online` or `online_movable`.
    pub memory_online: String,

    /// Line and value problems, to be logged by the caller.
    /// Where the system's files are (tests and `--root` point them
    /// elsewhere).
    pub paths: Paths,

    pub problems: Vec<String>,
}

/// The kernel command line word that turns gandi-vm off.
pub const DISABLED_WORD: &str = "gandi.disabled=1";

/// Why gandi-vm is turned off, when it is: `/etc/gandi/disabled` exists,
/// or the kernel command line holds `gandi.disabled=1` (the units say the
/// same through `ConditionPathExists=!` and `ConditionKernelCommandLine=!`).
/// The map and the disk helper go on serving disks (`CONFIG_ALLOW_MOUNT=0`
/// stops those).
pub fn disabled(settings: &Settings) -> Option<String> {
    if std::fs::symlink_metadata(&settings.paths.disabled_file).is_ok() {
        return Some(format!("{} exists", settings.paths.disabled_file.display()));
    }
    let cmdline =
        crate::base::read::read_small(&settings.paths.proc_dir.join("cmdline")).unwrap_or_default();
    cmdline
        .split_whitespace()
        .any(|w| w == DISABLED_WORD)
        .then(|| format!("{DISABLED_WORD} on the kernel command line"))
}

/// The places the platform attaches its disk at, by default
/// (`GANDI_PLATFORM_DISK`): Xen's `xvdz` (and `xvda2` of the old layout,
/// when it is a disk of its own), and the PCI slot right after the system
/// disk's on the platform's KVM machines.
pub const DEFAULT_PLATFORM_DISK: &str = "xvdz xvda2 pci-0000:00:04.0";

/// Default globs for `CONFIG_DISK_DEVICES`: Xen, SCSI/SATA, virtio and NVMe
/// names, partitions included.
pub const DEFAULT_DISK_DEVICES: &str = "xvd* sd* vd* nvme*n*";

impl Default for Settings {
    fn default() -> Self {
        Settings::from_raw(&RawConfig::default(), None)
    }
}

impl Settings {
    /// These settings with their paths changed by `f` (tests).
    pub fn with_paths(mut self, f: impl FnOnce(&mut Paths)) -> Settings {
        f(&mut self.paths);
        self
    }

    /// Reads the settings from `GANDI_CONFIG`, else the first default
    /// location that exists, else uses the defaults. A file named by
    /// `GANDI_CONFIG` that cannot be read is an error; so is an existing
    /// default file that cannot be read.
    pub fn load() -> anyhow::Result<Settings> {
        match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(path) => Settings::load_from(Path::new(&path)),
            None => {
                for loc in DEFAULT_LOCATIONS {
                    let path = Path::new(loc);
                    if path.exists() {
                        return Settings::load_from(path);
                    }
                }
                Ok(Settings::default())
            }
        }
    }

    /// The settings for a system tree at `root` (`--root DIR`): the file
    /// named by `GANDI_CONFIG`, else the tree's own `/etc/default/gandi` or
    /// `/etc/sysconfig/gandi` (read beneath the tree), else the defaults.
    /// The host's settings file is not read.
    pub fn load_for_root(root: &Path) -> anyhow::Result<Settings> {
        if root == Path::new("/") {
            return Settings::load();
        }
        if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            return Settings::load_from(Path::new(&path));
        }
        let tree = crate::base::tree::Tree::open(root)?;
        for loc in DEFAULT_LOCATIONS {
            match tree.read(loc) {
                Ok(data) => {
                    let text = String::from_utf8_lossy(&data);
                    return Ok(Settings::from_raw(
                        &RawConfig::parse(&text),
                        Some(tree.shown(loc)),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "reading settings {}: {e}",
                        tree.shown(loc).display()
                    ));
                }
            }
        }
        Ok(Settings::default())
    }

    /// Reads the settings from one file.
    pub fn load_from(path: &Path) -> anyhow::Result<Settings> {
        use anyhow::Context;
        let text = crate::base::read::read_text(path)
            .with_context(|| format!("reading settings {}", path.display()))?;
        Ok(Settings::from_raw(
            &RawConfig::parse(&text),
            Some(path.to_path_buf()),
        ))
    }

    /// Validates raw values, falling back to defaults where needed.
    pub fn from_raw(raw: &RawConfig, source: Option<PathBuf>) -> Settings {
        let mut problems: Vec<String> = raw.errors.iter().map(|e| e.to_string()).collect();
        let mut unknown: Vec<&String> = raw.values.keys().filter(|k| !known_key(k)).collect();
        unknown.sort();
        for key in unknown {
            problems.push(format!(
                "{key}: not a setting of gandi-vm (ignored; `man 5 gandi` lists them)"
            ));
        }
        let mut v = Values {
            raw,
            problems: &mut problems,
        };
        let settings = Settings {
            source: None,
            motd: v.flag("CONFIG_MOTD", true),
            timezone: v.flag("CONFIG_TIMEZONE", true),
            sysctl: v.flag("CONFIG_SYSCTL", true),
            sshd: v.flag("CONFIG_SSHD", true),
            console: v.flag("CONFIG_CONSOLE", true),
            hostname: v.flag("CONFIG_HOSTNAME", true),
            nameserver: v.flag("CONFIG_NAMESERVER", true),
            allow_mount: v.flag("CONFIG_ALLOW_MOUNT", true),
            cron: v.flag("CONFIG_CRON", true),
            multiqueue: v.flag("CONFIG_MULTIQUEUE", true),
            source_routing: v.flag("CONFIG_SOURCE_ROUTING", true),
            network: v.flag("CONFIG_NETWORK", true),
            platform_script: v.flag("CONFIG_PLATFORM_SCRIPT", false),
            user: v.flag("CONFIG_USER", true),
            password: v.flag("CONFIG_PASSWORD", true),
            ssh_keys: v.flag("CONFIG_SSH_KEYS", true),
            swap: v.flag("CONFIG_SWAP", true),
            root_grow: v.flag("CONFIG_ROOT_GROW", true),
            modules: v.flag("CONFIG_MODULES", true),
            mount_params: v.mount_params("CONFIG_MOUNT_PARAMS", "rw,nosuid,nodev,noatime"),
            disk_root: v.abs_path("CONFIG_DISK_ROOT", "/srv"),
            // As the original's shell reads it: an empty value is the empty
            // list (no interface excluded), not the default.
            nodhcp: v.words_or_none("CONFIG_NODHCP", "eth0"),
            disk_devices: v.words("CONFIG_DISK_DEVICES", DEFAULT_DISK_DEVICES),
            platform_disk: v.words("GANDI_PLATFORM_DISK", DEFAULT_PLATFORM_DISK),
            syslog_target: v.string("SYSLOG_TARGET", "gandi"),
            probe_timeout_ms: v.number("GANDI_PROBE_TIMEOUT_MS", 3000, 10, 60_000),
            postboot_timeout_s: v.number("GANDI_POSTBOOT_TIMEOUT", 600, 1, 86_400),
            memory_online: v.choice("CONFIG_MEMORY_ONLINE", &["online", "online_movable"]),
            paths: Paths {
                disabled_file: v.abs_path("GANDI_DISABLED_FILE", "/etc/gandi/disabled"),
                plugin_dir: v.abs_path("GANDI_PLUGIN_DIR", "/etc/gandi/plugins.d"),
                bootstrap_dir: v.abs_path("GANDI_BOOTSTRAP_DIR", "/etc/gandi/bootstrap.d"),
                gandi_dir: v.abs_path("GANDI_DIR", "/gandi"),
                state_dir: v.abs_path("GANDI_STATE_DIR", "/var/lib/gandi"),
                temp_dir_conf: v.abs_path("TEMP_DIR_CONF", "/var/gandi"),
                hook_dir: v.abs_path("GANDI_HOOK_DIR", "/etc/gandi/hooks"),
                run_dir: v.abs_path("GANDI_RUN_DIR", "/run/gandi"),
                master_map: v.abs_path("GANDI_MASTER_MAP", "/etc/auto.master.d/gandi.autofs"),
                auto_master: v.abs_path("GANDI_AUTO_MASTER", "/etc/auto.master"),
                systemd_dir: v.abs_path("GANDI_SYSTEMD_DIR", "/run/systemd/system"),
                autofs_pid_file: v.abs_path("GANDI_AUTOFS_PIDFILE", "/run/autofs.pid"),
                bin: v.abs_path("GANDI_BIN", "/usr/bin/gandi-vm"),
                sys_dir: v.abs_path("GANDI_SYS_DIR", "/sys"),
                proc_dir: v.abs_path("GANDI_PROC_DIR", "/proc"),
                dev_dir: v.abs_path("GANDI_DEV_DIR", "/dev"),
                udev_data_dir: v.abs_path("GANDI_UDEV_DATA_DIR", "/run/udev/data"),
            },
            problems: Vec::new(),
        };
        Settings {
            source,
            problems,
            ..settings
        }
    }
}

struct Values<'a> {
    raw: &'a RawConfig,
    problems: &'a mut Vec<String>,
}

impl Values<'_> {
    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(
            ValueError {
                key: key.to_string(),
                message,
            }
            .to_string(),
        );
    }

    fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.raw.get(key) {
            None => default,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "yes" | "true" | "on" => true,
                "0" | "no" | "false" | "off" => false,
                _ => {
                    let msg = format!(
                        "{v:?} is not 1 or 0; using the default ({})",
                        u8::from(default)
                    );
                    self.problem(key, msg);
                    default
                }
            },
        }
    }

    fn string(&mut self, key: &str, default: &str) -> String {
        self.raw.get(key).unwrap_or(default).to_string()
    }

    fn words(&mut self, key: &str, default: &str) -> Vec<String> {
        self.raw
            .get(key)
            .unwrap_or(default)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Like [`Values::words`], but a key given with an empty value is the
    /// empty list.
    fn words_or_none(&mut self, key: &str, default: &str) -> Vec<String> {
        match self.raw.values.get(key) {
            Some(v) => v.split_whitespace().map(str::to_string).collect(),
            None => self.words(key, default),
        }
    }

    fn abs_path(&mut self, key: &str, default: &str) -> PathBuf {
        match self.raw.get(key) {
            None => PathBuf::from(default),
            Some(v) if v.starts_with('/') && !v.contains('\n') => {
                let trimmed = v.trim_end_matches('/');
                PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed })
            }
            Some(v) => {
                let msg = format!("{v:?} is not an absolute path; using {default}");
                self.problem(key, msg);
                PathBuf::from(default)
            }
        }
    }

    fn number(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        match self.raw.get(key) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => {
                    let msg = format!("{v:?} is not a number from {min} to {max}; using {default}");
                    self.problem(key, msg);
                    default
                }
            },
        }
    }

    /// One of `choices` (the first is the default).
    fn choice(&mut self, key: &str, choices: &[&str]) -> String {
        match self.raw.get(key) {
            None => choices[0].to_string(),
            Some(v) if choices.contains(&v) => v.to_string(),
            Some(v) => {
                let msg = format!(
                    "{v:?} is not one of {}; using {}",
                    choices.join(", "),
                    choices[0]
                );
                self.problem(key, msg);
                choices[0].to_string()
            }
        }
    }

    /// Mount options: a comma-separated list of plain words, as they end up
    /// in an autofs map entry (no blanks, no `$`, `&`, `\`, quotes).
    fn mount_params(&mut self, key: &str, default: &str) -> String {
        match self.raw.get(key) {
            None => default.to_string(),
            Some(v) => {
                let ok = v.split(',').all(|opt| {
                    !opt.is_empty()
                        && opt
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-=.:/+@".contains(c))
                });
                if ok {
                    v.to_string()
                } else {
                    let msg = format!("{v:?} is not a list of mount options; using {default}");
                    self.problem(key, msg);
                    default.to_string()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
