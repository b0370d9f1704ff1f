//! `gandi-vm postboot`: the customer's commands given by the platform (the
//! config's `run`, and the archive's `init --postboot`), run at most once
//! per platform config, each with a time limit, output to the journal and
//! exit status to `status.json`; then the command material and the secrets
//! are removed from disk. And `gandi-vm mount`: the replay of block events.

use crate::apply::under;
use crate::disks::Scan;
use crate::platform;
use crate::records;
use crate::settings::Settings;
use crate::status::{Outcome, Recorder};
use crate::util;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Marks the config file once its secrets and commands are removed.
const CLEANED: &str = "gandi_vm_cleaned";

pub struct Options {
    pub root: PathBuf,
}

fn done_path(root: &Path) -> PathBuf {
    under(root, "/var/lib/gandi/postboot.done")
}

/// Runs one command through `sh -c` with the time limit.
fn run_command(rec: &mut Recorder, name: &str, mut cmd: Command, limit: Duration) {
    rec.step(name, || {
        let out = util::run_bounded(&mut cmd, limit)?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            log::info!("{name}: {line}");
        }
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            log::info!("{name}: {line}");
        }
        match out.status {
            None => bail!("killed after {} s", limit.as_secs()),
            Some(s) if s.success() => Ok((Outcome::Changed, "exit 0".into(), ())),
            Some(s) => bail!("{s}"),
        }
    });
}

/// Runs the stage; returns the exit code (1 when a command failed).
pub fn run(settings: &Settings, opts: &Options) -> Result<i32> {
    let root = opts.root.as_path();
    let mut rec = Recorder::default();
    let gandi = under(root, "/gandi");
    let config_path = gandi.join("config");
    let limit = Duration::from_secs(settings.postboot_timeout_s);

    match fs::read(&config_path) {
        Err(_) => rec.skip("commands", "no /gandi/config"),
        Ok(text) => {
            let value: Option<serde_json::Value> = serde_json::from_slice(&text).ok();
            let cleaned = value.as_ref().is_some_and(|v| v.get(CLEANED).is_some());
            let fingerprint = format!("{}:{:016x}", text.len(), util::fnv1a(&text));
            let done = fs::read_to_string(done_path(root)).unwrap_or_default();
            if cleaned {
                rec.skip("commands", "already run for this config (cleaned)");
            } else if done.lines().any(|l| l == fingerprint) {
                rec.skip("commands", "already run for this config");
            } else {
                let commands = match platform::parse(&text) {
                    Ok(c) => c.run.map(|r| r.commands()).unwrap_or_default(),
                    Err(p) => {
                        rec.step("commands", || -> Result<(Outcome, String, ())> {
                            bail!("{}: {p}", config_path.display())
                        });
                        Vec::new()
                    }
                };
                for (i, c) in commands.iter().enumerate() {
                    let mut cmd = Command::new("sh");
                    cmd.arg("-c").arg(c).current_dir(root);
                    run_command(&mut rec, &format!("run[{i}]"), cmd, limit);
                }
                let init = gandi.join("init");
                if init.is_file() {
                    let mut cmd = Command::new(&init);
                    cmd.arg("--postboot").current_dir(root);
                    run_command(&mut rec, "init --postboot", cmd, limit);
                }
                if commands.is_empty() && !init.is_file() {
                    rec.skip("commands", "none given");
                }
                // Recorded even when a command failed: they run once.
                let mark = done_path(root);
                if let Some(parent) = mark.parent() {
                    fs::create_dir_all(parent)?;
                }
                util::write_atomic(&mark, format!("{done}{fingerprint}\n").as_bytes(), 0o600)?;
            }
            if let Some(v) = value {
                rec.step("secrets", || clean(&gandi, &config_path, v));
            }
        }
    }

    if !settings.allow_mount {
        if root == Path::new("/") {
            rec.step("autofs", || {
                util::run(Command::new("systemctl").args(["stop", "autofs.service"]))?;
                Ok((
                    Outcome::Changed,
                    "stopped (CONFIG_ALLOW_MOUNT=0)".into(),
                    (),
                ))
            });
        } else {
            rec.skip("autofs", "--root");
        }
    }
    let failed = rec.stage.failed();
    crate::status::save(settings, "postboot", rec.stage)?;
    Ok(if failed { 1 } else { 0 })
}

/// Removes the command material (`/gandi/init`, the config's `run`) and
/// the secrets (the password hash) from disk, keeping the rest of the
/// config (the network setup still reads it).
fn clean(
    gandi: &Path,
    config_path: &Path,
    mut v: serde_json::Value,
) -> Result<(Outcome, String, ())> {
    let mut removed = Vec::new();
    let init = gandi.join("init");
    if init.exists() {
        fs::remove_file(&init).with_context(|| format!("removing {}", init.display()))?;
        removed.push("init");
    }
    if let Some(obj) = v.as_object_mut() {
        if obj.remove("run").is_some() {
            removed.push("run");
        }
        if let Some(conf) = obj.get_mut("vm_conf").and_then(|c| c.as_object_mut())
            && conf.remove("password").is_some()
        {
            removed.push("vm_conf.password");
        }
        if obj.get(CLEANED).is_none() {
            obj.insert(CLEANED.into(), serde_json::Value::Bool(true));
        }
    }
    if removed.is_empty() {
        return Ok((Outcome::Unchanged, String::new(), ()));
    }
    let mut text = serde_json::to_vec_pretty(&v)?;
    text.push(b'\n');
    util::write_atomic(config_path, &text, 0o600)?;
    Ok((
        Outcome::Changed,
        format!("removed {}", removed.join(", ")),
        (),
    ))
}

/// `gandi-vm mount`: makes sure that every data disk attached during boot
/// was handed to the attach helper before services start. Waits for udev's
/// queue (the events of the boot's coldplug), at most `limit`; then replays
/// `add` for the candidate disks the helper has not recorded yet (attached
/// before our rules were loaded, or whose event was lost), and waits for
/// those events. Disks that udev already
/// handed over are not processed twice. With `all`, replays `add` for every
/// block device, as the original did.
pub fn mount_stage(settings: &Settings, limit: Duration, all: bool) -> Result<i32> {
    let mut rec = Recorder::default();
    if !settings.allow_mount {
        rec.skip("replay", "CONFIG_ALLOW_MOUNT=0");
    } else if all {
        rec.step("replay", || {
            util::run(Command::new("udevadm").args([
                "trigger",
                "--action=add",
                "--subsystem-match=block",
            ]))?;
            settle(limit)?;
            Ok((
                Outcome::Changed,
                "add replayed for every block device".into(),
                (),
            ))
        });
    } else {
        rec.step("replay", || {
            settle(limit)?;
            let scan = Scan::new(settings)?;
            let devices = scan.devices();
            // A current record means udev ran our rule for the disk; its
            // growth, if any, was handed to gandi-disk@ then.
            let missing: Vec<&str> = devices
                .iter()
                .filter(|d| records::lookup(settings, d).is_none())
                .map(|d| d.name.as_str())
                .collect();
            if missing.is_empty() {
                return Ok((
                    Outcome::Unchanged,
                    format!("all {} candidate disks already recorded", devices.len()),
                    (),
                ));
            }
            let mut trigger = Command::new("udevadm");
            trigger.args(["trigger", "--action=add"]);
            for name in &missing {
                trigger.arg(settings.sys_dir.join("class/block").join(name));
            }
            util::run(&mut trigger)?;
            settle(limit)?;
            Ok((
                Outcome::Changed,
                format!("add replayed for {}", missing.join(" ")),
                (),
            ))
        });
    }
    let failed = rec.stage.failed();
    crate::status::save(settings, "mount", rec.stage)?;
    Ok(if failed { 1 } else { 0 })
}

/// `udevadm settle`, at most `limit`.
fn settle(limit: Duration) -> Result<()> {
    let secs = limit.as_secs().max(1).to_string();
    let out = util::run_bounded(
        Command::new("udevadm").args(["settle", "--timeout", &secs]),
        limit + Duration::from_secs(5),
    )?;
    if !out.success() {
        bail!("udev's queue did not empty within {secs} s");
    }
    Ok(())
}
