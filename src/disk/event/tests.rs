use super::*;
use crate::disk::handoff::unit_escape;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ACTION", "add"),
        ("SUBSYSTEM", "block"),
        (
            "DEVPATH",
            "/devices/pci0000:00/0000:00:05.0/virtio3/block/vdb",
        ),
        ("DEVNAME", "/dev/vdb"),
        ("MAJOR", "252"),
        ("MINOR", "16"),
        ("DISKSEQ", "12"),
        ("ID_FS_TYPE", "ext4"),
        ("ID_FS_USAGE", "filesystem"),
        ("ID_FS_LABEL_ENC", "my\\x20data"),
        ("ID_FS_UUID_ENC", "abcd"),
    ]
}

#[test]
fn reads_a_udev_event() {
    let e = udev_event(&env(&good())).unwrap();
    assert_eq!(e.action, Action::Add);
    assert_eq!(e.name, "vdb");
    assert_eq!(
        e.devnum,
        DevNum {
            major: 252,
            minor: 16
        }
    );
    assert_eq!(e.diskseq, Some(12));
    assert_eq!(e.fs.label.as_deref(), Some("my data"));
}

#[test]
fn rejects_malformed_events_naming_the_variable() {
    let cases: [(&str, Option<&str>, &str); 8] = [
        ("ACTION", None, "ACTION is not set"),
        ("ACTION", Some("bind"), "ACTION"),
        ("DEVPATH", None, "DEVPATH is not set"),
        ("DEVPATH", Some("/devices/x/../.."), "DEVPATH"),
        ("DEVNAME", Some("/dev/vdc"), "does not match"),
        ("MAJOR", Some("x"), "MAJOR is not a number"),
        ("MINOR", None, "MINOR is not set"),
        ("SUBSYSTEM", Some("net"), "SUBSYSTEM"),
    ];
    for (key, value, expect) in cases {
        let mut pairs = good();
        pairs.retain(|(k, _)| *k != key);
        if let Some(v) = value {
            pairs.push((key, v));
        }
        let err = format!("{:#}", udev_event(&env(&pairs)).unwrap_err());
        assert!(err.contains(expect), "{key}={value:?}: {err}");
    }
}

#[test]
fn unit_names() {
    assert_eq!(unit_escape("vdb1"), "vdb1");
    assert_eq!(unit_escape("cciss!c0d0"), "cciss\\x21c0d0");
    assert_eq!(unit_escape("dm-0"), "dm\\x2d0");
}

#[test]
fn names() {
    assert!(valid_name("vdb1"));
    assert!(valid_name("cciss!c0d0"));
    assert!(!valid_name("a/b"));
    assert!(!valid_name(".."));
    assert!(!valid_name("a b"));
}

#[test]
fn the_present_event_is_taken_from_an_udev_entry_written_before_the_mark() {
    use crate::base::settings::RawConfig;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let settings = Settings::from_raw(
        &RawConfig::parse(&format!(
            "GANDI_SYS_DIR={0}/sys\nGANDI_UDEV_DATA_DIR={0}/udev\n",
            d.display()
        )),
        None,
    );
    let sys = d.join("sys/class/block/vdb");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::create_dir_all(d.join("udev")).unwrap();
    std::fs::write(sys.join("dev"), "252:16\n").unwrap();
    std::fs::write(sys.join("diskseq"), "12\n").unwrap();
    let entry = d.join("udev/b252:16");
    let after = || SystemTime::now() + Duration::from_secs(60);
    // No entry: udev has not seen the device yet.
    assert!(present_event(&settings, "vdb", after()).is_none());
    // One of an earlier attach.
    std::fs::write(
        &entry,
        "S:disk/by-diskseq/11\nE:ID_FS_TYPE=ext4\nE:ID_FS_USAGE=filesystem\n",
    )
    .unwrap();
    assert!(present_event(&settings, "vdb", after()).is_none());
    // This attach's, with its filesystem, written before the mark.
    std::fs::write(
        &entry,
        "S:disk/by-diskseq/12\nE:ID_FS_TYPE=ext4\nE:ID_FS_USAGE=filesystem\n",
    )
    .unwrap();
    let ev = present_event(&settings, "vdb", after()).unwrap();
    assert_eq!(ev.action, Action::Add);
    assert_eq!(ev.diskseq, Some(12));
    assert_eq!(ev.fs.fstype.as_deref(), Some("ext4"));
    // A blank disk: recorded as udev probed it.
    std::fs::write(&entry, "S:disk/by-diskseq/12\nI:1\n").unwrap();
    assert!(
        present_event(&settings, "vdb", after())
            .unwrap()
            .fs
            .usage
            .is_none()
    );
    // Written at the mark or after: udev ran the helper for its event.
    let written = std::fs::metadata(&entry).unwrap().modified().unwrap();
    assert!(present_event(&settings, "vdb", written).is_none());
    assert!(present_event(&settings, "vdb", written - Duration::from_secs(1)).is_none());
    assert!(present_event(&settings, "vdb", written + Duration::from_nanos(1)).is_some());
}
