//! `gandi-vm config`: per-boot housekeeping, each step gated by its flag in
//! `/etc/default/gandi`. Files we own carry a header saying so; files we
//! edit keep every line we do not own; nothing is written when nothing
//! changes.

use crate::apply::{self, Change, under, write_if_changed};
use crate::disks;
use crate::hooks;
use crate::settings::Settings;
use crate::status::{Outcome, Recorder};
use crate::util;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Options {
    pub root: PathBuf,
    /// The kernel command line (default `/proc/cmdline`).
    pub cmdline: Option<PathBuf>,
}

/// The original's default timezone.
pub const DEFAULT_TIMEZONE: &str = "Europe/Paris";

const OWNED: &str = "# Written by gandi-vm config at each boot; edits are overwritten.\n\
# Turn this step off in /etc/default/gandi instead.\n";

fn outcome(c: Change) -> Outcome {
    match c {
        Change::Changed => Outcome::Changed,
        Change::Unchanged => Outcome::Unchanged,
    }
}

/// Runs the stage; returns the exit code (1 when a step failed).
pub fn run(settings: &Settings, opts: &Options) -> Result<i32> {
    let root = opts.root.as_path();
    if !root.is_dir() {
        bail!("{} is not a folder", root.display());
    }
    let mut rec = Recorder::default();
    type Step<'a> = &'a dyn Fn() -> Result<(Outcome, String, ())>;
    let flag = |on: bool, name: &str, key: &str, rec: &mut Recorder, f: Step| {
        if on {
            rec.step(name, f);
        } else {
            rec.skip(name, &format!("{key}=0"));
        }
    };
    flag(
        settings.console,
        "console",
        "CONFIG_CONSOLE",
        &mut rec,
        &|| console(settings, root),
    );
    flag(
        settings.hostname,
        "hosts",
        "CONFIG_HOSTNAME",
        &mut rec,
        &|| hosts(root),
    );
    rec.step("fstab", || fstab(settings, root));
    flag(settings.cron, "cron", "CONFIG_CRON", &mut rec, &|| {
        cron(root)
    });
    flag(
        settings.timezone,
        "timezone",
        "CONFIG_TIMEZONE",
        &mut rec,
        &|| timezone(settings, root, opts.cmdline.as_deref()),
    );
    flag(settings.sshd, "sshd", "CONFIG_SSHD", &mut rec, &|| {
        sshd(root)
    });
    flag(settings.motd, "motd", "CONFIG_MOTD", &mut rec, &|| {
        motd(root)
    });
    rec.step("mount-count", || mount_count(settings, root));
    rec.step("hook", || {
        match hooks::run(settings, "post-vm-config", &[], hooks::HOOK_LIMIT) {
            hooks::HookResult::Absent => {
                Ok((Outcome::Skipped, "no post-vm-config hook".into(), ()))
            }
            hooks::HookResult::Ok => Ok((Outcome::Changed, "post-vm-config".into(), ())),
            other => bail!("post-vm-config: {other:?}"),
        }
    });
    let failed = rec.stage.failed();
    crate::status::save(settings, "config", rec.stage)?;
    Ok(if failed { 1 } else { 0 })
}

/// Enables systemd's serial getty on the consoles that exist: `hvc0` (Xen)
/// when the kernel has it, `ttyS0` when it is a kernel console.
fn console(settings: &Settings, root: &Path) -> Result<(Outcome, String, ())> {
    let mut ttys = Vec::new();
    if settings.sys_dir.join("class/tty/hvc0").exists() {
        ttys.push("hvc0");
    }
    let consoles = fs::read_to_string(settings.proc_dir.join("consoles")).unwrap_or_default();
    if consoles
        .lines()
        .any(|l| l.split_whitespace().next() == Some("ttyS0"))
    {
        ttys.push("ttyS0");
    }
    if ttys.is_empty() {
        return Ok((Outcome::Skipped, "no hvc0 or ttyS0 console".into(), ()));
    }
    let unit = [
        "/lib/systemd/system/serial-getty@.service",
        "/usr/lib/systemd/system/serial-getty@.service",
    ]
    .into_iter()
    .find(|p| under(root, p).exists())
    .unwrap_or("/lib/systemd/system/serial-getty@.service");
    let wants = under(root, "/etc/systemd/system/getty.target.wants");
    let mut change = Change::Unchanged;
    for tty in &ttys {
        let link = wants.join(format!("serial-getty@{tty}.service"));
        if fs::symlink_metadata(&link).is_ok() {
            continue; // enabled already, or masked/changed by the admin
        }
        fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
        std::os::unix::fs::symlink(unit, &link)
            .with_context(|| format!("creating {}", link.display()))?;
        change = Change::Changed;
    }
    Ok((outcome(change), ttys.join(" "), ()))
}

/// `/etc/hosts` when missing.
fn hosts(root: &Path) -> Result<(Outcome, String, ())> {
    let path = under(root, "/etc/hosts");
    if path.exists() {
        return Ok((Outcome::Unchanged, String::new(), ()));
    }
    let hostname = fs::read_to_string(under(root, "/etc/hostname")).unwrap_or_default();
    let hostname = hostname.trim();
    let mut text = apply::default_hosts();
    if !hostname.is_empty() {
        let short = hostname.split('.').next().unwrap_or(hostname);
        text.push_str(&format!("127.0.1.1\t{hostname} {short} # gandi-vm\n"));
    }
    write_if_changed(&path, text.as_bytes(), 0o644)?;
    Ok((Outcome::Changed, "created".into(), ()))
}

/// The fstab line of `/`: (index, fields).
fn root_line(text: &str) -> Option<(usize, Vec<String>)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let t = l.trim_start();
        if t.starts_with('#') {
            return None;
        }
        let f: Vec<String> = t.split_whitespace().map(str::to_string).collect();
        (f.len() >= 2 && f[1] == "/").then_some((i, f))
    })
}

/// Points the root line of `/etc/fstab` at the filesystem's UUID when it
/// names a device path (`/dev/vda1`), keeping a backup; other lines kept.
fn fstab(settings: &Settings, root: &Path) -> Result<(Outcome, String, ())> {
    let path = under(root, "/etc/fstab");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok((Outcome::Skipped, "no /etc/fstab".into(), ()));
    };
    let Some((index, fields)) = root_line(&text) else {
        return Ok((Outcome::Skipped, "no root line".into(), ()));
    };
    if !fields[0].starts_with("/dev/") {
        return Ok((Outcome::Unchanged, format!("root is {}", fields[0]), ()));
    }
    let dev = PathBuf::from(&fields[0]);
    // ext2/3/4: the superblock read directly (no blkid started); others
    // probed, bounded.
    let uuid = match crate::grow::ExtSuper::read(&dev) {
        Ok(sb) => sb.uuid,
        Err(_) => disks::probe(
            std::slice::from_ref(&dev),
            Duration::from_millis(settings.probe_timeout_ms),
        )
        .and_then(|m| m.get(&dev).and_then(|f| f.uuid.clone()))
        .with_context(|| format!("no filesystem UUID found on {}", dev.display()))?,
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let old_line = lines[index].clone();
    // Keep the line's layout: replace the first field only.
    let start = old_line.find(&fields[0]).unwrap_or(0);
    lines[index] = format!(
        "{}UUID={uuid}{}",
        &old_line[..start],
        &old_line[start + fields[0].len()..]
    );
    let backup = under(root, "/etc/fstab.gandi-vm.bak");
    util::write_atomic(&backup, text.as_bytes(), 0o644)?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(&path)?.permissions().mode() & 0o7777
    };
    write_if_changed(&path, (lines.join("\n") + "\n").as_bytes(), mode)?;
    Ok((
        Outcome::Changed,
        format!("{} -> UUID={uuid} (backup {})", fields[0], backup.display()),
        (),
    ))
}

/// A number derived from the machine id: the same at every boot of one
/// machine, different between machines.
fn machine_number(root: &Path) -> Result<u64> {
    let id = fs::read_to_string(under(root, "/etc/machine-id")).unwrap_or_default();
    let id = id.trim();
    if id.is_empty() {
        bail!("/etc/machine-id is empty: the spread would be the same on every VM");
    }
    Ok(crate::util::fnv1a(id.as_bytes()))
}

/// Spreads the system crontab's `run-parts` jobs over the night, per
/// machine: minutes for hourly, minutes and hours (1 to 6) for the others.
fn cron(root: &Path) -> Result<(Outcome, String, ())> {
    let path = under(root, "/etc/crontab");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok((Outcome::Skipped, "no /etc/crontab".into(), ()));
    };
    let n = machine_number(root)?;
    let minute = n % 60;
    let hour = 1 + (n / 60) % 6;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let job = ["hourly", "daily", "weekly", "monthly"]
            .into_iter()
            .find(|j| line.contains("run-parts") && line.contains(&format!("/etc/cron.{j}")));
        match job {
            Some(j) if !line.trim_start().starts_with('#') && fields.len() >= 7 => {
                // Keep the separator after the time fields as it was.
                let rest = line
                    .splitn(3, char::is_whitespace)
                    .nth(2)
                    .map(str::trim_start)
                    .unwrap_or_default();
                let (m, h) = match j {
                    "hourly" => (minute.to_string(), fields[1].to_string()),
                    "daily" => (((minute + 8) % 60).to_string(), hour.to_string()),
                    "weekly" => (((minute + 30) % 60).to_string(), hour.to_string()),
                    _ => (((minute + 45) % 60).to_string(), hour.to_string()),
                };
                out.push(format!("{m} {h}\t{rest}"));
            }
            _ => out.push(line.to_string()),
        }
    }
    let c = write_if_changed(&path, (out.join("\n") + "\n").as_bytes(), 0o644)?;
    Ok((outcome(c), format!("minute {minute}, hour {hour}"), ()))
}

/// The `gandi=ZONE` parameter of the kernel command line.
pub fn cmdline_timezone(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gandi="))
        .map(str::to_string)
}

/// A zone name: `Area/City`, no `..`.
fn valid_zone(z: &str) -> bool {
    !z.is_empty()
        && !z.starts_with('/')
        && z.split('/').all(|p| !p.is_empty() && p != "..")
        && z.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
}

/// Timezone from `gandi=ZONE` on the kernel command line; without it, the
/// default only when none is set (an admin's choice is kept).
fn timezone(
    settings: &Settings,
    root: &Path,
    cmdline: Option<&Path>,
) -> Result<(Outcome, String, ())> {
    let cmdline_path = cmdline
        .map(Path::to_path_buf)
        .unwrap_or_else(|| settings.proc_dir.join("cmdline"));
    let given = cmdline_timezone(&fs::read_to_string(&cmdline_path).unwrap_or_default());
    let localtime = under(root, "/etc/localtime");
    let zone = match given {
        Some(z) => z,
        None if fs::symlink_metadata(&localtime).is_ok() => {
            return Ok((
                Outcome::Unchanged,
                "set already; no gandi= on the command line".into(),
                (),
            ));
        }
        None => DEFAULT_TIMEZONE.to_string(),
    };
    if !valid_zone(&zone) || !under(root, &format!("/usr/share/zoneinfo/{zone}")).is_file() {
        bail!("unknown timezone {zone:?}");
    }
    let target = format!("/usr/share/zoneinfo/{zone}");
    let mut change = write_if_changed(
        &under(root, "/etc/timezone"),
        format!("{zone}\n").as_bytes(),
        0o644,
    )?;
    if fs::read_link(&localtime).ok().as_deref() != Some(Path::new(&target)) {
        let tmp = localtime.with_file_name(".localtime.gandi-vm");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)?;
        fs::rename(&tmp, &localtime)
            .with_context(|| format!("replacing {}", localtime.display()))?;
        change = Change::Changed;
    }
    Ok((outcome(change), zone, ()))
}

const SSHD_SETTINGS: &[&str] = &[
    "PermitRootLogin prohibit-password",
    "PermitEmptyPasswords no",
    "ListenAddress ::",
    "ListenAddress 0.0.0.0",
];

/// SSH host keys when missing; our settings as a drop-in when sshd reads
/// `sshd_config.d`, else as a marked block in `sshd_config`.
fn sshd(root: &Path) -> Result<(Outcome, String, ())> {
    let config = under(root, "/etc/ssh/sshd_config");
    if !config.exists() {
        return Ok((
            Outcome::Skipped,
            "no sshd_config (openssh-server not installed)".into(),
            (),
        ));
    }
    let etc_ssh = under(root, "/etc/ssh");
    let had: usize = count_host_keys(&etc_ssh);
    // ssh-keygen -A makes the rsa, ecdsa and ed25519 keys: started only when
    // one is missing (it costs a process at every boot otherwise).
    let complete = ["rsa", "ecdsa", "ed25519"]
        .iter()
        .all(|t| etc_ssh.join(format!("ssh_host_{t}_key")).exists());
    if !complete {
        let mut keygen = Command::new("ssh-keygen");
        keygen.arg("-A");
        if root != Path::new("/") {
            keygen.arg("-f").arg(root);
        }
        util::run(&mut keygen)?;
    }
    let mut change = if count_host_keys(&etc_ssh) > had {
        Change::Changed
    } else {
        Change::Unchanged
    };
    let text = fs::read_to_string(&config)?;
    let includes = text.lines().any(|l| {
        let l = l.trim_start();
        l.to_ascii_lowercase().starts_with("include") && l.contains("sshd_config.d")
    });
    let body: Vec<String> = SSHD_SETTINGS.iter().map(|s| s.to_string()).collect();
    if includes {
        let dropin = under(root, "/etc/ssh/sshd_config.d/50-gandi.conf");
        let text = format!("{OWNED}{}\n", body.join("\n"));
        change = change.or(write_if_changed(&dropin, text.as_bytes(), 0o644)?);
        Ok((outcome(change), dropin.display().to_string(), ()))
    } else {
        // sshd takes the first value it reads: our block goes first.
        let new = apply::with_block(&text, &body, true);
        change = change.or(write_if_changed(&config, new.as_bytes(), 0o644)?);
        Ok((outcome(change), "managed block in sshd_config".into(), ()))
    }
}

fn count_host_keys(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("ssh_host_") && n.ends_with("_key")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A message of the day pointing to the docs and to our settings.
fn motd(root: &Path) -> Result<(Outcome, String, ())> {
    let text = format!(
        "{}\nThis VM is set up by gandi-vm. Data disks appear on demand under\n\
         /srv/LABEL (`gandi-vm disks` lists them; `gandi-vm disk release KEY`\n\
         before detaching one). Settings: /etc/default/gandi. Help: man gandi-vm,\n\
         https://docs.gandi.net/\n",
        OWNED
            .lines()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let c = write_if_changed(&under(root, "/etc/motd.d/gandi"), text.as_bytes(), 0o644)?;
    Ok((outcome(c), String::new(), ()))
}

/// An ext3/4 root with an unlimited mount count gets a check every 42
/// mounts or 2 months, as the original set.
fn mount_count(settings: &Settings, root: &Path) -> Result<(Outcome, String, ())> {
    let dev = if root == Path::new("/") {
        let mi = fs::read_to_string(settings.proc_dir.join("self/mountinfo")).unwrap_or_default();
        let mounts = disks::parse_mountinfo(&mi);
        disks::root_mount(&mounts)
            .filter(|m| m.fstype == "ext3" || m.fstype == "ext4")
            .map(|m| PathBuf::from(&m.source))
    } else {
        // The tree's root, as its fstab names it.
        let text = fs::read_to_string(under(root, "/etc/fstab")).unwrap_or_default();
        root_line(&text).and_then(|(_, f)| {
            let spec = &f[0];
            let fstype = f.get(2).map(String::as_str).unwrap_or("");
            if fstype != "ext3" && fstype != "ext4" {
                return None;
            }
            if let Some(uuid) = spec.strip_prefix("UUID=") {
                Some(settings.dev_dir.join("disk/by-uuid").join(uuid))
                    .filter(|p| p.exists())
                    .or_else(|| {
                        util::run(Command::new("blkid").args(["-U", uuid]))
                            .ok()
                            .map(|s| PathBuf::from(s.trim()))
                    })
            } else {
                Some(PathBuf::from(spec))
            }
        })
    };
    let Some(dev) = dev.filter(|d| d.exists()) else {
        return Ok((
            Outcome::Skipped,
            "root is not ext3/ext4 on a known device".into(),
            (),
        ));
    };
    // The superblock read directly: no tool started at each boot.
    let max = crate::grow::ExtSuper::read(&dev)?.max_mount_count;
    if max > 0 {
        return Ok((
            Outcome::Unchanged,
            format!("{} checked every {max} mounts", dev.display()),
            (),
        ));
    }
    util::run(
        Command::new("tune2fs")
            .args(["-c", "42", "-i", "2m"])
            .arg(&dev),
    )?;
    Ok((
        Outcome::Changed,
        format!("{}: 42 mounts / 2 months", dev.display()),
        (),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezone_parameter() {
        assert_eq!(
            cmdline_timezone("root=/dev/vda1 gandi=America/New_York quiet").as_deref(),
            Some("America/New_York")
        );
        assert_eq!(cmdline_timezone("root=/dev/vda1"), None);
        assert!(valid_zone("Europe/Paris"));
        assert!(!valid_zone("../../etc/shadow"));
        assert!(!valid_zone("/etc/x"));
    }

    #[test]
    fn fstab_root_line() {
        let t =
            "# comment / x\nproc /proc proc defaults 0 0\n/dev/vda1 / ext4 errors=remount-ro 0 1\n";
        let (i, f) = root_line(t).unwrap();
        assert_eq!(i, 2);
        assert_eq!(f[0], "/dev/vda1");
    }
}
