//! The NICs bootstrap finds: for those whose addresses are not the unit's
//! job (in `CONFIG_NODHCP`: vif 0's by default), what `gandi-iface@NAME`
//! would do for them at the boot's coldplug (the secondary sysctls, the
//! queues) is done in bootstrap's own process, and a mark under
//! `/run/gandi/ifaces/` lets udev's rule start
//! `gandi-iface-kept@NAME.service` there instead: a unit with no process
//! of its own, which only holds the clean-up for when the NIC goes.

use super::secondary_sysctls;
use crate::base::settings::Settings;
use crate::base::status::Done;
use crate::base::tree::{Change, Tree};
use crate::hotplug::queues::multiqueue;
use crate::platform::network::{self, Stack, names};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

/// The folder of the marks: one empty file per NIC prepared in this boot
/// (a tmpfs, emptied at each boot).
pub fn marks_dir(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("ifaces")
}

/// Prepares the NICs present now whose unit would have nothing to do at
/// the coldplug but their sysctls and queues, and marks them. Nothing is
/// marked where the unit has more to do: a `post-iface-attach` hook (it
/// runs for every NIC at the coldplug, as the original's did), a network
/// stack that may not run (the unit would then bring the link up itself),
/// a name udev's rule must escape.
pub fn prepare(settings: &Settings, tree: &Tree) -> Result<Done> {
    if fs::symlink_metadata(settings.paths.hook_dir.join("post-iface-attach")).is_ok() {
        keep_only(&marks_dir(settings), &[]);
        return Ok(Done::skipped(
            "a post-iface-attach hook: each NIC's unit runs it at the coldplug",
        ));
    }
    if !stack_will_run(tree) {
        keep_only(&marks_dir(settings), &[]);
        return Ok(Done::skipped(
            "no network stack enabled: each NIC's unit sets its link up",
        ));
    }
    let order = names::bus_order(&settings.paths.sys_dir);
    let dir = marks_dir(settings);
    let mut marked = Vec::new();
    let mut left: Vec<String> = Vec::new();
    for (i, name) in order.iter().enumerate() {
        let index = u32::try_from(i).ok();
        let nodhcp = settings
            .nodhcp
            .iter()
            .any(|w| names::nodhcp_means(w, name, index));
        if !nodhcp || !plain_name(name) {
            left.push(name.clone());
            continue;
        }
        // One NIC's failure leaves it to its unit, which says it again.
        if index != Some(0)
            && let Err(e) = secondary_sysctls(settings, name)
        {
            left.push(format!("{name} ({e:#})"));
            continue;
        }
        if settings.multiqueue {
            multiqueue(settings, name);
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mark = dir.join(name);
        fs::write(&mark, "").with_context(|| format!("writing {}", mark.display()))?;
        marked.push(name.as_str());
    }
    keep_only(&dir, &marked);
    let mut detail = if marked.is_empty() {
        "none in CONFIG_NODHCP".to_string()
    } else {
        format!("{}: no unit process at the coldplug", marked.join(" "))
    };
    if !left.is_empty() {
        detail.push_str(&format!("; left to their unit: {}", left.join(" ")));
    }
    let change = if marked.is_empty() {
        Change::Unchanged
    } else {
        Change::Changed
    };
    Ok(Done::of(change, detail))
}

/// Removes the marks of an earlier run in this boot (bootstrap run again
/// by hand, CONFIG_NODHCP or a hook changed since) that this run did not
/// make: a later `add` of those NICs gets the unit with a process.
fn keep_only(dir: &std::path::Path, marked: &[&str]) {
    for old in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = old.file_name();
        if !marked.iter().any(|m| std::ffi::OsStr::new(m) == name) {
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

/// Whether the stack that will configure the NICs starts at boot, so that
/// `gandi-iface@` would not take the link itself (`Way::Direct`): ifupdown
/// and netplan always; systemd-networkd and NetworkManager when enabled in
/// `/etc/systemd/system` (a `*.wants/` link) and not masked there or in
/// `/run`.
fn stack_will_run(tree: &Tree) -> bool {
    let unit = match network::detect_stack(tree) {
        Stack::Ifupdown | Stack::Netplan => return true,
        Stack::Networkd => "systemd-networkd.service",
        Stack::NetworkManager => "NetworkManager.service",
    };
    let masked = ["/etc/systemd/system", "/run/systemd/system"]
        .iter()
        .any(|d| {
            tree.read_link(format!("{d}/{unit}"))
                .is_ok_and(|t| t == std::path::Path::new("/dev/null"))
        });
    if masked {
        return false;
    }
    tree.list("/etc/systemd/system")
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.to_str())
        .filter(|n| n.ends_with(".wants"))
        .any(|w| {
            tree.lstat(format!("/etc/systemd/system/{w}/{unit}"))
                .is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// Two NICs on the PCI bus (eth0 first), a root tree, our folders.
    fn machine(dir: &Path) -> Settings {
        for (name, slot) in [("eth0", "03"), ("eth1", "04")] {
            let dev = dir.join(format!("sys/devices/pci0000:00/0000:00:{slot}.0"));
            fs::create_dir_all(&dev).unwrap();
            let net = dir.join("sys/class/net").join(name);
            fs::create_dir_all(&net).unwrap();
            fs::write(net.join("type"), "1\n").unwrap();
            symlink(&dev, net.join("device")).unwrap();
            let conf = dir.join("proc/sys/net/ipv4/conf").join(name);
            fs::create_dir_all(&conf).unwrap();
            for k in ["arp_announce", "rp_filter", "arp_filter"] {
                fs::write(conf.join(k), "1\n").unwrap();
            }
        }
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
        });
        s.multiqueue = true;
        s
    }

    fn marked(s: &Settings) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(marks_dir(s))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_nics_in_nodhcp_are_prepared_and_marked_the_others_left_to_their_unit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        s.nodhcp = vec!["eth0".into()];
        let done = prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["eth0"], "{}", done.detail);
        assert!(
            done.detail.contains("left to their unit: eth1"),
            "{}",
            done.detail
        );
        // vif 0 gets no secondary's sysctls, a secondary in CONFIG_NODHCP
        // gets them (as its unit would have set them).
        let conf = dir.path().join("proc/sys/net/ipv4/conf");
        assert_eq!(
            fs::read_to_string(conf.join("eth0/rp_filter")).unwrap(),
            "1\n"
        );
        s.nodhcp = vec!["eth0".into(), "eth1".into()];
        prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["eth0", "eth1"]);
        // Run again with eth1 out of CONFIG_NODHCP: its mark goes.
        s.nodhcp = vec!["eth0".into()];
        prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["eth0"]);
        s.nodhcp = vec!["eth0".into(), "eth1".into()];
        prepare(&s, &tree).unwrap();
        assert_eq!(
            fs::read_to_string(conf.join("eth1/arp_announce")).unwrap(),
            "2"
        );
        assert_eq!(
            fs::read_to_string(conf.join("eth1/rp_filter")).unwrap(),
            "0"
        );
    }

    #[test]
    fn nothing_is_marked_where_the_unit_has_more_to_do() {
        // A post-iface-attach hook: the units run it.
        let dir = tempfile::tempdir().unwrap();
        let s = machine(dir.path());
        let tree = Tree::open(&dir.path().join("root")).unwrap();
        fs::create_dir_all(&s.paths.hook_dir).unwrap();
        prepare(&s, &tree).unwrap();
        assert_eq!(marked(&s), ["eth0"]);
        // Its mark of before goes once a hook is there.
        fs::write(s.paths.hook_dir.join("post-iface-attach"), "").unwrap();
        let done = prepare(&s, &tree).unwrap();
        assert!(marked(&s).is_empty(), "{}", done.detail);
        // systemd-networkd masked, or not enabled: the unit sets the link
        // up itself.
        for (masked, enabled) in [(true, true), (false, false)] {
            let dir = tempfile::tempdir().unwrap();
            let s = machine(dir.path());
            let etc = dir.path().join("root/etc/systemd/system");
            if masked {
                symlink("/dev/null", etc.join("systemd-networkd.service")).unwrap();
            }
            if !enabled {
                fs::remove_file(etc.join("multi-user.target.wants/systemd-networkd.service"))
                    .unwrap();
            }
            let tree = Tree::open(&dir.path().join("root")).unwrap();
            let done = prepare(&s, &tree).unwrap();
            assert!(marked(&s).is_empty(), "{masked} {enabled}: {}", done.detail);
        }
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
