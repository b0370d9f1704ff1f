use super::*;
use std::fs;
use std::os::unix::fs::symlink;

#[test]
fn relative_paths() {
    assert_eq!(
        relative(Path::new("/etc/./shadow")).unwrap(),
        PathBuf::from("etc/shadow")
    );
    assert!(relative(Path::new("etc/../x")).is_err());
    assert_eq!(relative(Path::new("/")).unwrap(), PathBuf::new());
}

#[test]
fn reads_stay_beneath_and_writes_follow_no_link() {
    let top = tempfile::tempdir().unwrap();
    let outside = top.path().join("outside");
    fs::write(&outside, "secret").unwrap();
    let root = top.path().join("root");
    fs::create_dir_all(root.join("a/b/c/d")).unwrap();
    fs::create_dir_all(root.join("real")).unwrap();
    fs::write(root.join("real/file"), "in").unwrap();
    // A chain of links that climbs out.
    symlink("../../..", root.join("a/b/c/d/up")).unwrap();
    symlink("a/b/c/d/up/../../outside", root.join("config")).unwrap();
    symlink("real", root.join("alias")).unwrap();
    symlink(&outside, root.join("abs")).unwrap();
    let t = Tree::open(&root).unwrap();
    assert!(t.read("config").is_err());
    assert!(t.read("abs").is_err());
    assert!(t.read("/a/b/c/d/up/outside").is_err());
    assert_eq!(t.read("alias/file").unwrap(), b"in");
    // Owned reads and writes refuse every link.
    assert!(t.read_owned("alias/file").is_err());
    assert!(t.read_owned("config").is_err());
    assert!(
        t.write_atomic("alias/new", b"x", WriteOpts::mode(0o600))
            .is_err()
    );
    assert!(t.set_mode("abs", 0o600).is_err());
    assert!(
        t.write_if_changed("abs", b"x", WriteOpts::mode(0o600))
            .is_err()
    );
    assert_eq!(fs::read(&outside).unwrap(), b"secret");
    assert!(!root.join("real/new").exists());
    // A plain write, then the same again.
    let w = WriteOpts::mode(0o640);
    assert_eq!(
        t.write_if_changed("/etc/new", b"1\n", w).unwrap(),
        Change::Changed
    );
    assert_eq!(
        t.write_if_changed("etc/new", b"1\n", w).unwrap(),
        Change::Unchanged
    );
    let mode = fs::metadata(root.join("etc/new")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o640
    );
    // A leftover temporary file of a dead process is cleaned up.
    fs::write(root.join("etc/.new.gandi-tmp.999999999.0"), "torn").unwrap();
    t.write_atomic("etc/new", b"2\n", w).unwrap();
    assert_eq!(fs::read_dir(root.join("etc")).unwrap().count(), 1);
    // Made folders: the last gets its mode, the ones above 0755.
    t.create_dirs("var/lib/gandi", 0o700).unwrap();
    let m = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(root.join(p)).unwrap().permissions())
            & 0o777
    };
    assert_eq!(
        (m("var"), m("var/lib"), m("var/lib/gandi")),
        (0o755, 0o755, 0o700)
    );
    // Links are replaced, not followed.
    t.set_link("etc/l", Path::new("/nowhere")).unwrap();
    assert_eq!(
        t.set_link("etc/l", Path::new("/nowhere")).unwrap(),
        Change::Unchanged
    );
    assert_eq!(
        fs::read_link(root.join("etc/l")).unwrap(),
        Path::new("/nowhere")
    );
    // Removing through a link is refused; the link itself can go.
    assert!(t.remove_file("alias/file").is_err());
    assert!(t.remove_file("abs").unwrap());
    assert!(outside.exists());
}

/// A file replaced keeps its SELinux label and only it (the old content's
/// IMA hash is not carried to the new content); a new file gets none of
/// ours. Setting `security.*` needs root.
#[test]
fn a_replaced_file_keeps_its_selinux_label_only() {
    use rustix::fs::{XattrFlags, fgetxattr, fsetxattr};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: setting security.* attributes needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shadow = dir.path().join("etc/shadow");
    fs::create_dir_all(shadow.parent().unwrap()).unwrap();
    fs::write(&shadow, "root:*:1::::::\n").unwrap();
    let f = fs::File::open(&shadow).unwrap();
    let label = b"system_u:object_r:shadow_t:s0\0";
    match fsetxattr(&f, "security.selinux", label, XattrFlags::empty()) {
        Err(rustix::io::Errno::NOTSUP) => {
            eprintln!("skipped: no security attributes on this filesystem");
            return;
        }
        other => other.unwrap(),
    }
    let ima = fsetxattr(&f, "security.ima", b"\x04\x04old", XattrFlags::empty()).is_ok();
    drop(f);
    let tree = Tree::open(dir.path()).unwrap();
    tree.write_if_changed(
        "/etc/shadow",
        b"root:$6$new:1::::::\n",
        WriteOpts::keep(0o640),
    )
    .unwrap();
    let f = fs::File::open(&shadow).unwrap();
    assert_eq!(label::read_label(&f).unwrap().as_deref(), Some(&label[..]));
    let mut buf = [0u8; 64];
    if ima {
        assert!(
            fgetxattr(&f, "security.ima", &mut buf[..]).is_err(),
            "IMA copied"
        );
    }
    // A new file: no label of ours (SELinux is off here, nothing to ask).
    tree.write_if_changed("/etc/hostname", b"web1\n", WriteOpts::mode(0o644))
        .unwrap();
    let f = fs::File::open(dir.path().join("etc/hostname")).unwrap();
    if !Path::new("/sys/fs/selinux/enforce").exists() {
        assert_eq!(label::read_label(&f).unwrap(), None);
    }
    // A FIFO where the file was: not opened for its label (no hang), and
    // replaced as before.
    let fifo = dir.path().join("etc/fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    tree.write_atomic("/etc/fifo", b"x\n", WriteOpts::mode(0o644))
        .unwrap();
    assert_eq!(fs::read(&fifo).unwrap(), b"x\n");
}
