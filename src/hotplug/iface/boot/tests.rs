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
    let units = dir.join("root/lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::write(units.join("systemd-networkd.service"), "[Unit]\n").unwrap();
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
        p.bootstrap_dir = dir.join("bootstrap.d");
    });
    s.multiqueue = true;
    s
}

/// The machine with vif 0 (eth0) in CONFIG_NODHCP, its root tree open.
fn vif0_in_nodhcp() -> (tempfile::TempDir, Settings, Tree) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = machine(dir.path());
    let tree = Tree::open(&dir.path().join("root")).unwrap();
    s.nodhcp = vec!["eth0".into()];
    (dir, s, tree)
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
    let (dir, s, tree) = vif0_in_nodhcp();
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
    let (_dir, s, tree) = vif0_in_nodhcp();
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
    let (dir, s, tree) = vif0_in_nodhcp();
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
    let (dir, s, tree) = vif0_in_nodhcp();
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
            fs::remove_file(etc.join("multi-user.target.wants/systemd-networkd.service")).unwrap();
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

#[test]
fn a_dangling_link_enables_no_stack() {
    let (dir, s, tree) = vif0_in_nodhcp();
    // The package removed, its link left: the unit takes the link up.
    fs::remove_file(
        dir.path()
            .join("root/lib/systemd/system/systemd-networkd.service"),
    )
    .unwrap();
    let done = prepare(&s, &tree).unwrap();
    assert!(marked(&s).is_empty(), "{}", done.detail);
    assert!(
        done.detail.contains("no network stack enabled"),
        "{}",
        done.detail
    );
    // A relative link, and a copy of the unit, enable it.
    let wants = dir
        .path()
        .join("root/etc/systemd/system/multi-user.target.wants");
    let link = wants.join("systemd-networkd.service");
    fs::write(
        dir.path()
            .join("root/etc/systemd/system/systemd-networkd.service"),
        "",
    )
    .unwrap();
    fs::remove_file(&link).unwrap();
    symlink("../systemd-networkd.service", &link).unwrap();
    prepare(&s, &tree).unwrap();
    assert_eq!(marked(&s), ["2=eth0"]);
    fs::remove_file(&link).unwrap();
    fs::write(&link, "[Unit]\n").unwrap();
    prepare(&s, &tree).unwrap();
    assert_eq!(marked(&s), ["2=eth0"]);
}

#[test]
fn a_renamed_nic_is_found_by_its_old_names() {
    let (dir, s, tree) = vif0_in_nodhcp();
    prepare(&s, &tree).unwrap();
    assert_eq!(renamed(&s, "eth0"), None, "present under its name");
    let net = dir.path().join("sys/class/net");
    fs::rename(net.join("eth0"), net.join("wan0")).unwrap();
    // By the mark (the kept unit of eth0 stops).
    assert_eq!(renamed(&s, "eth0").as_deref(), Some("wan0"));
    // By the units' records, which keep every name: wan0's unit started,
    // then the NIC renamed again.
    unit_started(&s, "wan0");
    assert!(marked(&s).is_empty());
    fs::rename(net.join("wan0"), net.join("lan0")).unwrap();
    unit_started(&s, "lan0");
    unit_started(&s, "lan0");
    let record = fs::read_to_string(marks_dir(&s).join("2.unit")).unwrap();
    // The mark's name first: the NIC was eth0 when bootstrap marked it.
    assert_eq!(record, "eth0\nwan0\nlan0\n");
    assert_eq!(renamed(&s, "wan0").as_deref(), Some("lan0"));
    assert_eq!(renamed(&s, "lan0"), None);
    // A name no NIC of this boot had, and a NIC gone: not renamed.
    assert_eq!(renamed(&s, "eth9"), None);
    fs::remove_dir_all(net.join("lan0")).unwrap();
    assert_eq!(renamed(&s, "wan0"), None);
}

#[test]
fn a_name_given_again_is_the_last_nic_s() {
    let (dir, s, tree) = vif0_in_nodhcp();
    prepare(&s, &tree).unwrap();
    let net = dir.path().join("sys/class/net");
    // eth1 (index 3) renamed wan1 by the admin; a new NIC (index 5) takes
    // the name eth1, its unit runs, then it is unplugged.
    unit_started(&s, "eth1");
    fs::rename(net.join("eth1"), net.join("wan1")).unwrap();
    fs::create_dir_all(net.join("eth1")).unwrap();
    fs::write(net.join("eth1/ifindex"), "5\n").unwrap();
    unit_started(&s, "eth1");
    assert_eq!(
        fs::read_to_string(marks_dir(&s).join("5.unit")).unwrap(),
        "eth1\n"
    );
    fs::remove_dir_all(net.join("eth1")).unwrap();
    // Its --remove: gone, not wan1 renamed.
    assert_eq!(renamed(&s, "eth1"), None);
}

#[test]
fn the_record_keeps_the_name_of_the_mark_it_replaces() {
    let (dir, s, tree) = vif0_in_nodhcp();
    prepare(&s, &tree).unwrap();
    assert_eq!(marked(&s), ["2=eth0"]);
    // The coldplug's move renamed it ens3 and its unit with a process ran
    // (a later synthetic event): the kept unit of eth0 finds it still.
    let net = dir.path().join("sys/class/net");
    fs::rename(net.join("eth0"), net.join("ens3")).unwrap();
    unit_started(&s, "ens3");
    assert!(marked(&s).is_empty());
    assert_eq!(
        fs::read_to_string(marks_dir(&s).join("2.unit")).unwrap(),
        "eth0\nens3\n"
    );
    assert_eq!(renamed(&s, "eth0").as_deref(), Some("ens3"));
}

#[test]
fn only_a_gandi_iface_unit_s_process_keeps_the_records() {
    assert!(in_iface_unit(
        "0::/system.slice/system-gandi\\x2diface.slice/gandi-iface@eth0.service\n"
    ));
    assert!(in_iface_unit(
        "12:cpu:/\n1:name=systemd:/system.slice/system-gandi\\x2diface.slice/gandi-iface@eth1.service\n"
    ));
    // Another service's script, a shell of the admin's, the kept unit.
    for other in [
        "0::/system.slice/cron.service\n",
        "0::/user.slice/user-0.slice/session-1.scope\n",
        "0::/system.slice/system-gandi\\x2diface\\x2dkept.slice/gandi-iface-kept@eth0.service\n",
        "",
    ] {
        assert!(!in_iface_unit(other), "{other}");
    }
}

#[test]
fn clear_removes_the_marks_and_keeps_the_records() {
    let (_dir, s, tree) = vif0_in_nodhcp();
    prepare(&s, &tree).unwrap();
    fs::write(marks_dir(&s).join("3.unit"), "eth1\n").unwrap();
    clear(&s);
    assert!(marked(&s).is_empty());
    assert!(marks_dir(&s).join("3.unit").exists());
}
