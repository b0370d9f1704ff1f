//! The NICs bootstrap finds: vif 0, when its addresses are not the unit's
//! job (in `CONFIG_NODHCP`, its default), has nothing left for
//! `gandi-iface@NAME` to do at the boot's coldplug but its queues; they
//! are set in bootstrap's own process, and a mark under
//! `/run/gandi/ifaces/`, named by the NIC's interface index (which a
//! rename keeps), lets udev's rule start `gandi-iface-kept@NAME.service`
//! there instead: a unit with no process of its own, which only holds the
//! clean-up for when the NIC goes.
//!
//! A secondary NIC is never marked: its sysctls (`rp_filter=0`, ...) must
//! come after systemd's own rule has run `systemd-sysctl` for the new
//! interface on the same event (a glob of the admin's or the
//! distribution's, `net.ipv4.conf.*.rp_filter`, would win over a value set
//! before), which only its unit, started once udev is done with the
//! event, can do.

use crate::base::settings::Settings;
use crate::base::status::Done;
use crate::base::tree::{Change, Tree};
use crate::hotplug::queues::multiqueue;
use crate::platform::network::{self, Stack, names};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The folder of the marks: per NIC prepared in this boot, a file
/// `IFINDEX` holding its name; per NIC whose `gandi-iface@` process
/// ran in this boot, `IFINDEX.unit` (a tmpfs, emptied at each boot).
pub fn marks_dir(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("ifaces")
}

/// The interface index of a NIC present now (`/sys/class/net/NAME/ifindex`).
fn ifindex(settings: &Settings, name: &str) -> Option<u32> {
    crate::base::read::read_small(
        &settings
            .paths
            .sys_dir
            .join("class/net")
            .join(name)
            .join("ifindex"),
    )?
    .trim()
    .parse()
    .ok()
}

/// Called by `gandi-iface@NAME`'s process as it starts: records that the
/// NIC has its unit with a process in this boot (bootstrap then marks it
/// no more) and removes its mark, if bootstrap made one (a later synthetic
/// `add` of it then asks for the unit that is already active, not for a
/// second one). Written before the mark is removed: bootstrap, which
/// writes the mark before it looks for the record again, cannot leave a
/// mark behind either way round.
///
/// The record holds every name the NIC's units had in this boot, one a
/// line (a rename adds one): the unit of an earlier name, stopped by the
/// rename, finds the NIC by it ([`renamed`]).
pub fn unit_started(settings: &Settings, name: &str) {
    let Some(index) = ifindex(settings, name) else {
        return;
    };
    let dir = marks_dir(settings);
    let record = dir.join(format!("{index}.unit"));
    let mark = dir.join(index.to_string());
    let held = crate::base::read::read_small(&record).unwrap_or_default();
    // The name the mark holds (the NIC's at bootstrap) too: the kept unit
    // of that name finds the NIC by it once the mark is gone.
    let marked = crate::base::read::read_small(&mark).unwrap_or_default();
    let mut add = String::new();
    for n in marked.lines().map(str::trim).chain([name]) {
        if !n.is_empty() && !held.lines().any(|l| l == n) && !add.lines().any(|l| l == n) {
            add.push_str(n);
            add.push('\n');
        }
    }
    if !add.is_empty() {
        let written = fs::create_dir_all(&dir).and_then(|()| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&record)
                .and_then(|mut f| std::io::Write::write_all(&mut f, add.as_bytes()))
        });
        if let Err(e) = written {
            log::warn!("{name}: cannot write {}: {e}", record.display());
        }
    }
    let _ = fs::remove_file(&mark);
}

/// Whether this process is `gandi-iface@NAME`'s own (its invocation id
/// set by systemd, and its control group the unit's), not a command run by
/// hand or by another service's script: the marks and records are the
/// units' to keep.
pub fn run_by_its_unit(settings: &Settings) -> bool {
    std::env::var_os("INVOCATION_ID").is_some()
        && crate::base::read::read_small(&settings.paths.proc_dir.join("self/cgroup"))
            .is_some_and(|c| in_iface_unit(&c))
}

/// Whether `/proc/self/cgroup` (`cgroup`) places the process in a
/// `gandi-iface@` unit (cgroup v2's one line, or v1's `name=systemd`).
fn in_iface_unit(cgroup: &str) -> bool {
    cgroup.lines().any(|l| {
        l.rsplit('/')
            .next()
            .is_some_and(|u| u.starts_with("gandi-iface@") && u.ends_with(".service"))
    })
}

/// The name a NIC of this boot has now, when `name` is one it had before
/// (a mark or a unit's record of its interface index holds `name`) and it
/// is present under another: renamed, not gone. `None` otherwise. Of the
/// NICs that had the name, the last one counts (the highest index: the
/// kernel gives each new NIC a higher one), so a name given again to
/// another NIC after a rename is that NIC's.
pub fn renamed(settings: &Settings, name: &str) -> Option<String> {
    let last = fs::read_dir(marks_dir(settings))
        .ok()?
        .flatten()
        .filter(|e| {
            crate::base::read::read_small(&e.path())
                .is_some_and(|held| held.lines().any(|l| l.trim() == name))
        })
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.strip_suffix(".unit")
                .unwrap_or(&file)
                .parse::<u32>()
                .ok()
        })
        .max()?;
    fs::read_dir(settings.paths.sys_dir.join("class/net"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|now| now != name && ifindex(settings, now) == Some(last))
}

/// Removes this boot's marks (the units' records stay): every NIC's next
/// event gets the unit with a process.
pub fn clear(settings: &Settings) {
    keep_only(&marks_dir(settings), &[]);
}

/// Called when a NIC is gone: the marks and records of every NIC no
/// longer present go (by their index, which no NIC takes again: a name
/// they hold may be another NIC's since a rename). The folder is read
/// before the NICs are, so a record a new NIC's unit writes meanwhile is
/// not among those looked at; nothing goes when the NICs cannot be read.
pub fn forget(settings: &Settings) {
    let entries: Vec<_> = fs::read_dir(marks_dir(settings))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    if entries.is_empty() {
        return;
    }
    let Ok(nics) = fs::read_dir(settings.paths.sys_dir.join("class/net")) else {
        return;
    };
    let present: Vec<u32> = nics
        .flatten()
        .filter_map(|e| ifindex(settings, &e.file_name().to_string_lossy()))
        .collect();
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let index = name.strip_suffix(".unit").unwrap_or(&name).parse::<u32>();
        if index.is_ok_and(|i| !present.contains(&i)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether udev has already handled an event of the NIC with our rule
/// asking for `gandi-iface@` (its database entry, `/run/udev/data/nIFINDEX`,
/// is written before systemd is told): that unit's process will run, and
/// the NIC is not marked, so that no later event asks for the kept unit
/// beside it.
fn unit_wanted(settings: &Settings, index: u32) -> bool {
    crate::base::read::read_small(&settings.paths.udev_data_dir.join(format!("n{index}")))
        .is_some_and(|db| {
            db.lines()
                .filter_map(|l| l.strip_prefix("E:SYSTEMD_WANTS="))
                .any(|w| {
                    w.split_ascii_whitespace()
                        .any(|u| u.starts_with("gandi-iface@"))
                })
        })
}

/// Prepares vif 0 when it is in `CONFIG_NODHCP` and its unit would have
/// nothing to do at the coldplug but its queues, and marks it. Nothing is
/// marked where the unit has more to do: a `post-iface-attach` hook (it
/// runs for every NIC at the coldplug, as the original's did), a network
/// stack that may not run (the unit would then bring the link up itself),
/// a name udev's rule must escape, a NIC whose unit has run already.
pub fn prepare(settings: &Settings, tree: &Tree) -> Result<Done> {
    let dir = marks_dir(settings);
    if fs::symlink_metadata(settings.paths.hook_dir.join("post-iface-attach")).is_ok() {
        keep_only(&dir, &[]);
        return Ok(Done::skipped(
            "a post-iface-attach hook: each NIC's unit runs it at the coldplug",
        ));
    }
    if let Some(why) = stack_wont_run(settings, tree) {
        keep_only(&dir, &[]);
        return Ok(Done::skipped(format!(
            "{why}: each NIC's unit sets its link up"
        )));
    }
    let order = names::bus_order(&settings.paths.sys_dir);
    let mut marked: Vec<String> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    let mut left: Vec<String> = Vec::new();
    for (i, name) in order.iter().enumerate() {
        let index = u32::try_from(i).ok();
        let nodhcp = settings
            .nodhcp
            .iter()
            .any(|w| names::nodhcp_means(w, name, index));
        if index != Some(0) || !nodhcp || !plain_name(name) {
            left.push(name.clone());
            continue;
        }
        match mark(settings, &dir, name) {
            Ok(Some(ifindex)) => {
                marked.push(ifindex.to_string());
                named.push(name);
            }
            Ok(None) => left.push(format!("{name} (its unit ran or is asked for already)")),
            // Its unit does it all, and says so again if it fails too.
            Err(e) => left.push(format!("{name} ({e:#})")),
        }
    }
    keep_only(&dir, &marked);
    let mut detail = if named.is_empty() {
        "none marked".to_string()
    } else {
        format!("{}: no unit process at the coldplug", named.join(" "))
    };
    if !left.is_empty() {
        detail.push_str(&format!("; left to their unit: {}", left.join(" ")));
    }
    let change = if named.is_empty() {
        Change::Unchanged
    } else {
        Change::Changed
    };
    Ok(Done::of(change, detail))
}

/// Sets one NIC's queues and marks it; `None` when its unit's process has
/// run in this boot, or udev has asked for that unit already (before or
/// while this one wrote the mark: both are looked for again once the mark
/// is there).
fn mark(settings: &Settings, dir: &Path, name: &str) -> Result<Option<u32>> {
    let index = ifindex(settings, name).with_context(|| format!("{name}: no interface index"))?;
    let record = dir.join(format!("{index}.unit"));
    let taken = || record.exists() || unit_wanted(settings, index);
    if taken() {
        return Ok(None);
    }
    if settings.multiqueue {
        multiqueue(settings, name);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mark = dir.join(index.to_string());
    fs::write(&mark, format!("{name}\n")).with_context(|| format!("writing {}", mark.display()))?;
    if taken() {
        let _ = fs::remove_file(&mark);
        return Ok(None);
    }
    Ok(Some(index))
}

/// Removes the marks of an earlier run in this boot (bootstrap run again
/// by hand, CONFIG_NODHCP or a hook changed since) that this run did not
/// make: a later `add` of those NICs gets the unit with a process. The
/// units' records stay.
fn keep_only(dir: &Path, marked: &[String]) {
    for old in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = old.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".unit") && !marked.iter().any(|m| *m == name) {
            let _ = fs::remove_file(old.path());
        }
    }
}

/// A name udev's rule gives the kept unit as it is (the others are
/// escaped by `systemd-escape`, which the rule runs only for the unit that
/// has a process anyway).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Why the stack that will configure the NICs might not start at boot
/// (`gandi-iface@` would then take the link itself, `Way::Direct`), or
/// `None`: ifupdown and netplan always start; systemd-networkd and
/// NetworkManager when enabled in `/etc/systemd/system` (a `*.wants/`
/// link) and masked neither there, nor in `/run`, nor by `systemd.mask=`
/// on the kernel command line. A stack that is enabled but fails is not
/// foreseen: vif 0's link is then left down (its addresses, the stack's
/// job in CONFIG_NODHCP, would be missing anyway).
fn stack_wont_run(settings: &Settings, tree: &Tree) -> Option<&'static str> {
    let unit = match network::detect_stack(tree) {
        Stack::Ifupdown | Stack::Netplan => return None,
        Stack::Networkd => "systemd-networkd.service",
        Stack::NetworkManager => "NetworkManager.service",
    };
    let masked = ["/etc/systemd/system", "/run/systemd/system"]
        .iter()
        .any(|d| {
            tree.read_link(format!("{d}/{unit}"))
                .is_ok_and(|t| t == Path::new("/dev/null"))
        });
    let cmdline =
        crate::base::read::read_small(&settings.paths.proc_dir.join("cmdline")).unwrap_or_default();
    if masked || masked_by(&cmdline, unit) {
        return Some("the network stack's unit is masked");
    }
    let enabled = tree
        .list("/etc/systemd/system")
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.to_str())
        .filter(|n| n.ends_with(".wants"))
        .any(|w| leads_to_unit(tree, &Path::new("/etc/systemd/system").join(w), unit));
    (!enabled).then_some("no network stack enabled")
}

/// Whether `wants/unit` enables the unit: a link to a file that exists
/// (links followed beneath the tree; a dangling one, left by a removed
/// package, enables nothing), or a copy of the unit.
fn leads_to_unit(tree: &Tree, wants: &Path, unit: &str) -> bool {
    let link = wants.join(unit);
    match tree.read_link(&link) {
        Ok(target) => {
            // `..` taken lexically, as the tree's root bounds it.
            let mut at = PathBuf::from("/");
            for c in wants.join(target).components() {
                match c {
                    std::path::Component::ParentDir => {
                        at.pop();
                    }
                    std::path::Component::Normal(n) => at.push(n),
                    _ => {}
                }
            }
            tree.exists(at)
        }
        Err(_) => tree.lstat(&link).is_ok_and(|m| m.is_file()),
    }
}

/// Whether the kernel command line masks `unit` (`systemd.mask=UNIT`, the
/// `.service` suffix optional, several such words allowed).
fn masked_by(cmdline: &str, unit: &str) -> bool {
    let bare = unit.strip_suffix(".service").unwrap_or(unit);
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("systemd.mask="))
        .any(|v| v == unit || v == bare)
}

#[cfg(test)]
mod tests;
