use crate::kernel::device::DevNum;
use crate::kernel::escape::{unescape_hex, unescape_octal};
use crate::kernel::mounts::parse_mountinfo;
use crate::kernel::views::*;
use std::path::Path;
use std::path::PathBuf;

#[test]
fn partition_parent_from_sysfs_links() {
    let p = |t: &str, n: &str| partition_parent(Path::new(t), n);
    assert_eq!(
        p("../../devices/virtual/block/loop0/loop0p1", "loop0p1"),
        Some("loop0".into())
    );
    assert_eq!(p("../../devices/virtual/block/loop0", "loop0"), None);
    assert_eq!(
        p(
            "../../devices/pci0000:00/0000:00:04.0/virtio2/block/vdb",
            "vdb"
        ),
        None
    );
}

#[test]
fn partitions_parsing() {
    let text = "major minor  #blocks  name\n\n 254        0  268435456 vda\n \
                254        1     1024 vda1\n 104 0 2048 cciss/c0d0\n junk line\n";
    let parsed = parse_partitions(text);
    assert_eq!(parsed.len(), 3);
    assert_eq!(
        parsed[1],
        (
            DevNum {
                major: 254,
                minor: 1
            },
            1024,
            "vda1".to_string()
        )
    );
    // Named as sysfs does.
    assert_eq!(parsed[2].2, "cciss!c0d0");
}

#[test]
fn mountinfo_parsing() {
    let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n\
                40 22 0:45 / /mnt/with\\040space rw,nosuid - btrfs /dev/loop3 rw,space_cache\n";
    let m = parse_mountinfo(text);
    assert_eq!(m.len(), 2);
    assert_eq!(
        m[0].devnum,
        DevNum {
            major: 254,
            minor: 0
        }
    );
    assert_eq!(m[1].mount_point, PathBuf::from("/mnt/with space"));
    assert_eq!(m[1].source, "/dev/loop3");
    assert_eq!(m[1].fstype, "btrfs");
    assert!(m[1].options.contains("nosuid"));
}

#[test]
fn escapes() {
    assert_eq!(unescape_hex("my\\x20disk\\x2fx"), "my disk/x");
    assert_eq!(unescape_hex("bad\\xZZ"), "bad\\xZZ");
    assert_eq!(unescape_octal("a\\040b\\134c"), "a b\\c");
    // Not escapes: over 255, not octal, cut short.
    assert_eq!(unescape_octal("\\777\\9\\04"), "\\777\\9\\04");
    assert_eq!(unescape_hex("\\x4"), "\\x4");
}

proptest::proptest! {
    #![proptest_config(crate::testing::proptest_config(512))]

    /// Any text: no panic; without a backslash, unchanged.
    #[test]
    fn unescaping_any_text(s in "[a-z\\\\x0-9 ]{0,24}") {
        let (o, h) = (unescape_octal(&s), unescape_hex(&s));
        if !s.contains('\\') {
            proptest::prop_assert_eq!(&o, &s);
            proptest::prop_assert_eq!(&h, &s);
        }
    }
}
