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
pub fn unit_started(settings: &Settings, name: &str) {
    let Some(index) = ifindex(settings, name) else {
        return;
    };
    let dir = marks_dir(settings);
    let record = dir.join(format!("{index}.unit"));
    if let Err(e) = fs::create_dir_all(&dir).and_then(|()| fs::write(&record, format!("{name}\n")))
    {
        log::warn!("{name}: cannot write {}: {e}", record.display());
    }
    let _ = fs::remove_file(dir.join(index.to_string()));
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
        .any(|w| {
            tree.lstat(format!("/etc/systemd/system/{w}/{unit}"))
                .is_ok()
        });
    (!enabled).then_some("no network stack enabled")
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
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Two NICs on the PCI bus (eth0 first, index 2; eth1 index 3), a root
    /// tree with systemd-networkd enabled, our folders.
    fn machine(dir: &Path) -> Settings {
        for (name, slot, index) in [("eth0", "03", 2), ("eth1", "04", 3)] {
            let dev = dir.join(format!("sys/devices/pci0000:00/0000:00:{slot}.0"));
            fs::create_dir_all(&dev).unwrap();
            let net = dir.join("sys/class/net").join(name);
            fs::create_dir_all(&net).unwrap();
            fs::write(net.join("type"), "1\n").unwrap();
            fs::write(net.join("ifindex"), format!("{index}\n")).unwrap();
            symlink(&dev, net.join("device")).unwrap();
            let conf = dir.join("proc/sys/net/ipv4/conf").join(name);
            fs::create_dir_all(&conf).unwrap();
            for k in ["arp_announce", "rp_filter", "arp_filter"] {
                fs::write(conf.join(k), "1\n").unwrap();
            }
        }
        fs::write(dir.join("proc/cmdline"), "root=/dev/vda1 quiet\n").unwrap();
        let wants = dir.join("root/etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        symlink(
            "/lib/systemd/system/systemd-networkd.service",
            wants.join("systemd-networkd.service"),
        )
        .unwrap();
        let mut s = Settings::default().with_paths(|p| {
            p.sys_dir = dir.join("sys");
            p.proc_dir = dir.join("proc");
            p.run_dir = dir.join("run");
            p.hook_dir = dir.join("hooks");
            p.udev_data_dir = dir.join("udev-data");
        });
        s.multiqueue = true;
        s
    }

    /// The marks (not the units' records), as `index=name`.
    fn marked(s: &Settings) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(marks_dir(s))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".unit"))
            .map(|e| {
                let held = fs::read_to_string(e.path()).unwrap();
                format!("{}={}", e.file_name().to_string_lossy(), held.trim())
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn vif_0_in_nodhcp_is_marked_by_its_index_a_secondary_never() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        s.nodhcp = vec!["eth0".into(), "eth1".into()];
        let done = prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["2=eth0"], "{}", done.detail);
        assert!(
            done.detail.contains("left to their unit: eth1"),
            "{}",
            done.detail
        );
        // No sysctl is set by bootstrap: a secondary's are its unit's,
        // after systemd-sysctl has run for it.
        let conf = dir.path().join("proc/sys/net/ipv4/conf");
        for nic in ["eth0", "eth1"] {
            assert_eq!(
                fs::read_to_string(conf.join(nic).join("rp_filter")).unwrap(),
                "1\n"
            );
        }
        // Out of CONFIG_NODHCP (vif 0 configured by its unit): its mark goes.
        s.nodhcp = vec!["eth1".into()];
        let done = prepare(&s, &tree).unwrap();
        assert!(marked(&s).is_empty(), "{}", done.detail);
        assert_eq!(done.result, crate::base::status::Outcome::Unchanged);
    }

    #[test]
    fn a_rename_keeps_the_mark_with_its_nic() {
        // Marked as eth0 (index 2); udev then swaps the two names: the NIC
        // now named eth1 is the marked one, the new eth0 is not.
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        s.nodhcp = vec!["eth0".into()];
        prepare(&s, &tree).unwrap();
        let net = dir.path().join("sys/class/net");
        fs::rename(net.join("eth0"), net.join("swap")).unwrap();
        fs::rename(net.join("eth1"), net.join("eth0")).unwrap();
        fs::rename(net.join("swap"), net.join("eth1")).unwrap();
        // The new eth0's `move` starts its unit with a process: the mark of
        // the NIC now named eth1 stays.
        unit_started(&s, "eth0");
        assert_eq!(marked(&s), ["2=eth0"]);
        assert!(marks_dir(&s).join("3.unit").exists());
        // The new eth0 unplugged: its record goes, the mark of the NIC
        // still there (which held the name eth0) stays.
        fs::remove_dir_all(net.join("eth0")).unwrap();
        forget(&s);
        assert_eq!(marked(&s), ["2=eth0"]);
        assert!(!marks_dir(&s).join("3.unit").exists());
        fs::remove_dir_all(net.join("eth1")).unwrap();
        forget(&s);
        assert!(marked(&s).is_empty());
    }

    #[test]
    fn a_nic_whose_unit_ran_is_not_marked_and_its_unit_removes_a_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        s.nodhcp = vec!["eth0".into()];
        // Udev handled the coldplug first: gandi-iface@eth0 ran.
        unit_started(&s, "eth0");
        let done = prepare(&s, &tree).unwrap();
        assert!(marked(&s).is_empty(), "{}", done.detail);
        assert!(
            done.detail.contains("its unit ran or is asked for already"),
            "{}",
            done.detail
        );
        // Bootstrap first, the unit later (a rename's `move`): the mark
        // goes, a later synthetic `add` asks for the active unit again.
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        s.nodhcp = vec!["eth0".into()];
        prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["2=eth0"]);
        unit_started(&s, "eth0");
        assert!(marked(&s).is_empty());
        assert!(marks_dir(&s).join("2.unit").exists());
        // The record survives bootstrap run again, and goes with the NIC.
        prepare(&s, &tree).unwrap();
        assert!(marks_dir(&s).join("2.unit").exists());
        forget(&s);
        assert!(marks_dir(&s).join("2.unit").exists());
        fs::remove_dir_all(dir.path().join("sys/class/net/eth0")).unwrap();
        forget(&s);
        assert!(!marks_dir(&s).join("2.unit").exists());
        // A NIC of no index (gone meanwhile) is left to its unit.
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        fs::remove_file(dir.path().join("sys/class/net/eth0/ifindex")).unwrap();
        s.nodhcp = vec!["eth0".into()];
        let done = prepare(&s, &tree).unwrap();
        assert!(marked(&s).is_empty());
        assert!(
            done.detail.contains("no interface index"),
            "{}",
            done.detail
        );
    }

    #[test]
    fn a_nic_udev_asked_gandi_iface_for_is_not_marked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        s.nodhcp = vec!["eth0".into()];
        let db = dir.path().join("udev-data");
        fs::create_dir_all(&db).unwrap();
        // Another unit wanted, or another NIC's entry: marked.
        fs::write(
            db.join("n2"),
            "I:1\nE:SYSTEMD_WANTS=other.service\nG:systemd\n",
        )
        .unwrap();
        fs::write(db.join("n3"), "E:SYSTEMD_WANTS=gandi-iface@eth1.service\n").unwrap();
        prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["2=eth0"]);
        // udev handled vif 0's event first and asked for gandi-iface@: its
        // mark goes, none is made.
        fs::write(
            db.join("n2"),
            "I:1\nE:GANDI_IFACE=eth0\nE:SYSTEMD_WANTS=x.service gandi-iface@eth0.service\nG:systemd\n",
        )
        .unwrap();
        let done = prepare(&s, &tree).unwrap();
        assert!(marked(&s).is_empty(), "{}", done.detail);
        assert!(
            done.detail.contains("its unit ran or is asked for already"),
            "{}",
            done.detail
        );
    }

    #[test]
    fn forget_leaves_everything_when_the_nics_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        s.nodhcp = vec!["eth0".into()];
        prepare(&s, &tree).unwrap();
        fs::remove_dir_all(dir.path().join("sys/class/net")).unwrap();
        forget(&s);
        assert_eq!(marked(&s), ["2=eth0"]);
    }

    #[test]
    fn nothing_is_marked_where_the_unit_has_more_to_do() {
        // A post-iface-attach hook: the units run it.
        let dir = tempfile::tempdir().unwrap();
        let s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        fs::create_dir_all(&s.paths.hook_dir).unwrap();
        prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["2=eth0"]);
        // Its mark of before goes once a hook is there.
        fs::write(s.paths.hook_dir.join("post-iface-attach"), "").unwrap();
        let done = prepare(&s, &tree).unwrap();
        assert!(marked(&s).is_empty(), "{}", done.detail);
        // systemd-networkd masked (in /etc, or on the kernel command
        // line), or not enabled: the unit sets the link up itself.
        for (masked, cmdline, enabled) in [
            (true, "", true),
            (false, "quiet systemd.mask=systemd-networkd", true),
            (false, "systemd.mask=systemd-networkd.service", true),
            (false, "", false),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s = machine(dir.path());
            let etc = dir.path().join("root/etc/systemd/system");
            if masked {
                symlink("/dev/null", etc.join("systemd-networkd.service")).unwrap();
            }
            if !cmdline.is_empty() {
                fs::write(dir.path().join("proc/cmdline"), cmdline).unwrap();
            }
            if !enabled {
                fs::remove_file(etc.join("multi-user.target.wants/systemd-networkd.service"))
                    .unwrap();
            }
            let tree = Tree::open(&dir.path().join("root")).unwrap();
            let done = prepare(&s, &tree).unwrap();
            assert!(
                marked(&s).is_empty(),
                "{masked} {cmdline} {enabled}: {}",
                done.detail
            );
        }
    }

    #[test]
    fn only_a_mask_of_the_stack_counts() {
        let unit = "systemd-networkd.service";
        assert!(masked_by("systemd.mask=systemd-networkd", unit));
        assert!(masked_by(
            "a systemd.mask=x systemd.mask=systemd-networkd.service",
            unit
        ));
        assert!(!masked_by(
            "systemd.mask=systemd-networkd-wait-online",
            unit
        ));
        assert!(!masked_by("systemd.unmask=systemd-networkd", unit));
        assert!(!masked_by("", unit));
    }

    #[test]
    fn only_names_the_rule_takes_as_they_are_are_marked() {
        assert!(plain_name("eth0"));
        assert!(plain_name("enp0s3"));
        assert!(plain_name("eth0.100"));
        assert!(!plain_name("wan-1"));
        assert!(!plain_name(".hidden"));
        assert!(!plain_name(""));
    }
}
