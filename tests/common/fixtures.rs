//! Fixture trees and swap images for the bootstrap tests and bench.

use super::sh;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const RELEASE: &str = "6.1.0-gandi-test";
pub const HASH: &str = "$6$saltsalt$Zx1dQ0z7nX0V9pXqHhG7vY1rN3tW8sL2kJ5mP4oA6bC9dE1fG3hI5jK7lM9nO1pQ3rS5tU7vW9xY1zA3bC5dE7";
pub const ADMIN_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdminKeyAdminKeyAdmin admin@desk";
pub const PLATFORM_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlatformKeyPlatformKey ops@gandi";
pub const USER_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQUserKeyUserKey alice@laptop";

pub fn config_json() -> String {
    format!(
        r#"{{
  "vm_hostname": "web1.example.net",
  "vm_conf": {{"password": "{HASH}", "user": "alice",
              "ssh_key": "{PLATFORM_KEY}\r\n{USER_KEY}\r\n", "run": "touch /tmp/mark"}},
  "nameservers": ["192.0.2.53", "2001:db8::53"],
  "vif": [
    {{"vif_number": 0, "pna": [
      {{"pna_address": "192.0.2.10", "pbn": {{"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}}}},
      {{"pna_address": "2001:db8::10", "pbn": {{"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::1"}}}}]}},
    {{"vif_number": 1, "pna": []}}
  ],
  "future_field": [1, 2, 3]
}}"#
    )
}

/// A minimal Debian-like root tree.
pub fn root_tree(dir: &Path, ifupdown: bool) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "etc",
        "root/.ssh",
        "home",
        "var/lib",
        "lib",
        "usr/sbin",
        "etc/network",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/shadow"),
        "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    )
    .unwrap();
    fs::set_permissions(root.join("etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\ndaemon:x:1:\n").unwrap();
    fs::write(root.join("etc/gshadow"), "root:*::\ndaemon:*::\n").unwrap();
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n# the admin's own line\n10.1.1.1\tbackup\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/resolv.conf"),
        "search example.net\nnameserver 10.0.0.1\n",
    )
    .unwrap();
    fs::write(
        root.join("root/.ssh/authorized_keys"),
        format!("{ADMIN_KEY}\n"),
    )
    .unwrap();
    if ifupdown {
        fs::write(
            root.join("etc/network/interfaces"),
            "source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n",
        )
        .unwrap();
        fs::write(root.join("usr/sbin/ifup"), "").unwrap();
    }
    root
}

/// A tar archive of (name, content, mode) entries.
pub fn tar(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A gzip'd modules tarball for RELEASE.
pub fn modules_tarball(dir: &Path) -> Vec<u8> {
    let raw = tar(&[
        (
            &format!("lib/modules/{RELEASE}/kernel/drivers/README"),
            b"no real modules here\n",
            0o644,
        ),
        (&format!("lib/modules/{RELEASE}/modules.order"), b"", 0o644),
        (&format!("boot/System.map-{RELEASE}"), b"map\n", 0o644),
    ]);
    let p = dir.join("modules.tar");
    fs::write(&p, raw).unwrap();
    sh(Command::new("gzip").arg("-nkf").arg(&p));
    fs::read(dir.join("modules.tar.gz")).unwrap()
}

/// A swap image: `head` bytes (zeros by default), the archive at 512 KiB.
pub fn image(dir: &Path, name: &str, archive: &[u8], head: Option<&[u8]>) -> PathBuf {
    let p = dir.join(name);
    let mut f = fs::File::create(&p).unwrap();
    f.set_len(8 << 20).unwrap();
    if let Some(h) = head {
        f.write_all(h).unwrap();
    }
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(512 * 1024)).unwrap();
    f.write_all(archive).unwrap();
    p
}

pub fn good_archive(dir: &Path) -> Vec<u8> {
    let modules = modules_tarball(dir);
    tar(&[
        ("gandi/config", config_json().as_bytes(), 0o644),
        (&format!("gandi/{RELEASE}-modules.tar.gz"), &modules, 0o644),
    ])
}

/// Every file under `dir`: content and mode.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        for e in fs::read_dir(d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                walk(&e.path(), out);
            } else if m.is_file() {
                out.insert(
                    e.path(),
                    (fs::read(e.path()).unwrap(), m.permissions().mode()),
                );
            }
        }
    }
    walk(dir, &mut out);
    out
}

/// A tree with what `gandi-vm config` reads (no loop device: the fstab is
/// by UUID already).
pub fn config_tree(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "etc/ssh/sshd_config.d",
        "usr/share/zoneinfo/Europe",
        "lib/systemd/system",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("usr/share/zoneinfo/Europe/Paris"), "TZif").unwrap();
    fs::write(
        root.join("lib/systemd/system/serial-getty@.service"),
        "[Unit]\n",
    )
    .unwrap();
    fs::write(root.join("etc/hostname"), "web1.example.net\n").unwrap();
    fs::write(
        root.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/crontab"),
        "17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n\
         25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/fstab"),
        "UUID=0b7e3b6e / ext4 defaults 0 1\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/ssh/sshd_config"),
        "Include /etc/ssh/sshd_config.d/*.conf\n",
    )
    .unwrap();
    root
}

/// The status of a stage run with `--root`: it lives in the tree.
pub fn root_status(root: &Path) -> serde_json::Value {
    let p = root.join("run/gandi/status.json");
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// Step `name` of `stage` in a status document.
pub fn step<'a>(s: &'a serde_json::Value, stage: &str, name: &str) -> &'a serde_json::Value {
    s[stage]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no stage {stage}: {s}"))
        .iter()
        .find(|x| x["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {s}"))
}

/// One tar entry of any shape, hostile ones included (the tar crate
/// refuses to write some): `kind` is the tar type flag.
pub fn raw_entry(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100 && link.len() < 100, "{name} -> {link}");
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let size = format!("{:011o}", data.len());
    h[124..135].copy_from_slice(size.as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    for b in &mut h[148..156] {
        *b = b' ';
    }
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Entries and the two zero blocks that end an archive.
pub fn with_end(mut blocks: Vec<u8>) -> Vec<u8> {
    blocks.extend_from_slice(&[0u8; 1024]);
    blocks
}

/// Settings for runs with `--root`: the tree's own paths (status in
/// `ROOT/run/gandi`), plus `lines`.
pub fn root_settings(config: &Path, lines: &[&str]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    fs::write(config, text).unwrap();
}

/// Every entry under `dir` (files, links, folders) with what can change:
/// content or link target, mode, owner, size, times.
pub fn full_snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(rd) = fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".to_string()
            } else {
                format!("file {:?}", fs::read(&p).unwrap())
            };
            out.insert(
                p.clone(),
                format!(
                    "{what} mode={:o} uid={} gid={} nlink={} mtime={}.{} ctime={}.{}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.nlink(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec()
                ),
            );
            if m.is_dir() {
                walk(&p, out);
            }
        }
    }
    walk(dir, &mut out);
    out
}
