//! Applying the platform's config to a root tree: password, users, keys,
//! hostname, resolvers, network. Every function writes only under `root`,
//! changes only the lines it owns, writes atomically, and reports whether
//! anything changed (a second run with the same config changes nothing).

use crate::platform::{Config, parse_network};
use crate::settings::Settings;
use crate::util;
use anyhow::{Context, Result, bail};
use std::fs;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Changed,
    Unchanged,
}

impl Change {
    pub fn or(self, other: Change) -> Change {
        if self == Change::Changed || other == Change::Changed {
            Change::Changed
        } else {
            Change::Unchanged
        }
    }
}

/// `root` joined with an absolute path.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Writes `content` unless the file already holds exactly it. Keeps the
/// owner of an existing file; sets `mode`.
pub fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<Change> {
    let old = fs::metadata(path).ok();
    if let Some(meta) = &old
        && fs::read(path).is_ok_and(|c| c == content)
    {
        if meta.permissions().mode() & 0o7777 != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
            return Ok(Change::Changed);
        }
        return Ok(Change::Unchanged);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    util::write_atomic(path, content, mode)?;
    if let Some(meta) = old {
        chown(path, meta.uid(), meta.gid())?;
    }
    Ok(Change::Changed)
}

pub fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("changing the owner of {}", path.display()))
}

/// The lock `/etc/.pwd.lock` that shadow tools (useradd, passwd) take, as
/// `lckpwdf(3)` does: an fcntl write lock, waited for up to 15 s.
pub struct PwdLock(#[allow(dead_code)] fs::File);

pub fn pwd_lock(root: &Path) -> Result<PwdLock> {
    let path = under(root, "/etc/.pwd.lock");
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // SAFETY: flock struct is plain data; a valid descriptor.
        let rc = unsafe {
            let mut fl: libc::flock = std::mem::zeroed();
            fl.l_type = libc::F_WRLCK as i16;
            fl.l_whence = libc::SEEK_SET as i16;
            libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl)
        };
        if rc == 0 {
            return Ok(PwdLock(file));
        }
        if Instant::now() > deadline {
            bail!("{} is held by another program", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets root's password hash in `/etc/shadow`, under the shadow lock.
pub fn set_root_password(root: &Path, hash: &str) -> Result<Change> {
    let _lock = pwd_lock(root)?;
    let path = under(root, "/etc/shadow");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut found = false;
    let mut out = String::with_capacity(text.len() + hash.len());
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"root") && fields.len() >= 2 && !found {
            found = true;
            fields[1] = hash;
            out.push_str(&fields.join(":"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        bail!("{} has no root line", path.display());
    }
    let mode = fs::metadata(&path)?.permissions().mode() & 0o7777;
    write_if_changed(&path, out.as_bytes(), mode & 0o640)
}

const BEGIN: &str = "# BEGIN gandi-vm (keys from the platform; lines outside this block are yours)";
const END: &str = "# END gandi-vm";

/// Puts `lines` in our marked block of `text`, keeping every other line.
pub fn with_block(text: &str, lines: &[String], at_top: bool) -> String {
    let mut kept = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# BEGIN gandi-vm") {
            inside = true;
        } else if inside && line == END {
            inside = false;
        } else if !inside {
            kept.push(line.to_string());
        }
    }
    let mut block = vec![BEGIN.to_string()];
    block.extend(lines.iter().cloned());
    block.push(END.to_string());
    let all = if lines.is_empty() {
        kept
    } else if at_top {
        block.into_iter().chain(kept).collect()
    } else {
        kept.into_iter().chain(block).collect()
    };
    let mut s = all.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// The user's id, group and home from `ROOT/etc/passwd`.
pub fn passwd_entry(root: &Path, user: &str) -> Option<(u32, u32, PathBuf)> {
    let text = fs::read_to_string(under(root, "/etc/passwd")).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, under(root, f[5]))))?
    })
}

/// Writes `keys` into the marked block of `USER's authorized_keys`.
pub fn set_keys(root: &Path, user: &str, keys: &[String]) -> Result<Change> {
    let (uid, gid, home) = passwd_entry(root, user)
        .with_context(|| format!("{user} is not in {}", under(root, "/etc/passwd").display()))?;
    let dir = home.join(".ssh");
    let mut change = Change::Unchanged;
    if !dir.is_dir() {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        chown(&dir, uid, gid)?;
        change = Change::Changed;
    }
    let path = dir.join("authorized_keys");
    let old = fs::read_to_string(&path).unwrap_or_default();
    let keys: Vec<String> = keys.iter().map(|k| k.trim().to_string()).collect();
    let new = with_block(&old, &keys, false);
    let c = write_if_changed(&path, new.as_bytes(), 0o600)?;
    if c == Change::Changed {
        chown(&path, uid, gid)?;
    }
    Ok(change.or(c))
}

/// Creates `login` (with a home and a group of its own) unless it exists.
pub fn create_user(root: &Path, login: &str) -> Result<Change> {
    if passwd_entry(root, login).is_some() {
        return Ok(Change::Unchanged);
    }
    let mut cmd = Command::new("useradd");
    if root != Path::new("/") {
        cmd.arg("--prefix").arg(root);
    }
    cmd.args([
        "--create-home",
        "--user-group",
        "--shell",
        "/bin/bash",
        login,
    ]);
    util::run(&mut cmd)?;
    Ok(Change::Changed)
}

/// `/etc/hostname` and our `127.0.1.1` line of `/etc/hosts`.
pub fn set_hostname(root: &Path, hostname: &str) -> Result<Change> {
    let c1 = write_if_changed(
        &under(root, "/etc/hostname"),
        format!("{hostname}\n").as_bytes(),
        0o644,
    )?;
    let hosts = under(root, "/etc/hosts");
    let old = fs::read_to_string(&hosts).unwrap_or_else(|_| default_hosts());
    let short = hostname.split('.').next().unwrap_or(hostname);
    let ours = if short == hostname {
        format!("127.0.1.1\t{hostname} # gandi-vm")
    } else {
        format!("127.0.1.1\t{hostname} {short} # gandi-vm")
    };
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !l.ends_with("# gandi-vm"))
        .map(str::to_string)
        .collect();
    let pos = lines
        .iter()
        .position(|l| l.starts_with("127.0.0.1"))
        .map(|p| p + 1)
        .unwrap_or(0);
    lines.insert(pos, ours);
    let c2 = write_if_changed(&hosts, (lines.join("\n") + "\n").as_bytes(), 0o644)?;
    Ok(c1.or(c2))
}

/// A minimal `/etc/hosts`.
pub fn default_hosts() -> String {
    "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\
     ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
        .to_string()
}

/// The live hostname.
pub fn set_live_hostname(hostname: &str) -> Result<()> {
    // SAFETY: pointer and length of a valid buffer.
    let rc = unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("sethostname");
    }
    Ok(())
}

/// Resolvers: a drop-in for systemd-resolved when `resolv.conf` is its
/// stub, else our block at the top of `resolv.conf`.
pub fn set_resolvers(root: &Path, servers: &[String]) -> Result<Change> {
    let resolv = under(root, "/etc/resolv.conf");
    let stub =
        fs::read_link(&resolv).is_ok_and(|t| t.to_string_lossy().contains("systemd/resolve/"));
    if stub {
        let dropin = under(root, "/etc/systemd/resolved.conf.d/gandi.conf");
        let text = format!(
            "# Written by gandi-vm bootstrap from the platform's config.\n[Resolve]\nDNS={}\n",
            servers.join(" ")
        );
        return write_if_changed(&dropin, text.as_bytes(), 0o644);
    }
    let old = fs::read_to_string(&resolv).unwrap_or_default();
    let lines: Vec<String> = servers.iter().map(|s| format!("nameserver {s}")).collect();
    let new = with_block(&old, &lines, true);
    write_if_changed(&resolv, new.as_bytes(), 0o644)
}

/// Which network stack the tree runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Networkd,
    Ifupdown,
}

/// ifupdown when `/etc/network/interfaces` exists and `ifup` is installed;
/// systemd-networkd otherwise.
pub fn detect_stack(root: &Path) -> Stack {
    let ifup = ["/sbin/ifup", "/usr/sbin/ifup"]
        .iter()
        .any(|p| under(root, p).exists());
    if ifup && under(root, "/etc/network/interfaces").exists() {
        Stack::Ifupdown
    } else {
        Stack::Networkd
    }
}

/// One interface's settings, from a `vif`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub mac: Option<String>,
    /// `ADDR/LEN` with the family's gateway.
    pub v4: Vec<(String, Option<String>)>,
    pub v6: Vec<(String, Option<String>)>,
    pub dhcp4: bool,
}

/// The interfaces of the config. DHCP for IPv4 is used on an interface
/// that has no static IPv4 address, unless the whole config is IPv6-only or
/// the interface is in `CONFIG_NODHCP`.
pub fn interfaces(config: &Config, settings: &Settings) -> Vec<Iface> {
    let v6_only = !config.vif.is_empty()
        && config.vif.iter().all(|v| {
            !v.pna.is_empty()
                && v.pna
                    .iter()
                    .all(|p| p.pna_address.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6()))
        });
    config
        .vif
        .iter()
        .map(|vif| {
            let name = format!("eth{}", vif.vif_number);
            let mut v4 = Vec::new();
            let mut v6 = Vec::new();
            for p in &vif.pna {
                let Ok(addr) = p.pna_address.parse::<IpAddr>() else {
                    continue;
                };
                let Some((_, len)) = parse_network(&p.pbn.pbn_network) else {
                    continue;
                };
                let entry = (format!("{addr}/{len}"), p.pbn.pbn_gateway.clone());
                if addr.is_ipv4() {
                    v4.push(entry)
                } else {
                    v6.push(entry)
                }
            }
            let dhcp4 = v4.is_empty() && !v6_only && !settings.nodhcp.contains(&name);
            Iface {
                name,
                mac: vif.mac.clone(),
                v4,
                v6,
                dhcp4,
            }
        })
        .collect()
}

const NET_HEADER: &str = "# Written by gandi-vm bootstrap from the platform's config (/gandi/config).\n\
# It is rewritten when the platform's config changes: put your own settings\n\
# in a file of yours that sorts before this one.\n";

/// A systemd-networkd `.network` file. Default routes get the interface's
/// metric (eth0 first), so routes of several interfaces coexist.
pub fn networkd_file(iface: &Iface) -> String {
    let metric = crate::iface::metric(&iface.name);
    let mut s = String::from(NET_HEADER);
    s.push_str("[Match]\n");
    match &iface.mac {
        Some(mac) => s.push_str(&format!("MACAddress={}\n", mac.to_ascii_lowercase())),
        None => s.push_str(&format!("Name={}\n", iface.name)),
    }
    s.push_str("\n[Network]\n");
    s.push_str(if iface.dhcp4 {
        "DHCP=ipv4\n"
    } else {
        "DHCP=no\n"
    });
    let mut gateways = Vec::new();
    for (addr, gw) in iface.v4.iter().chain(&iface.v6) {
        s.push_str(&format!("Address={addr}\n"));
        if let Some(g) = gw
            && !gateways.contains(g)
        {
            gateways.push(g.clone());
        }
    }
    for g in gateways {
        s.push_str(&format!("\n[Route]\nGateway={g}\nMetric={metric}\n"));
    }
    if iface.dhcp4 {
        s.push_str(&format!("\n[DHCPv4]\nRouteMetric={metric}\n"));
    }
    s
}

/// An ifupdown stanza file for `interfaces.d`.
pub fn ifupdown_file(iface: &Iface) -> String {
    let mut s = String::from(NET_HEADER);
    let n = &iface.name;
    s.push_str(&format!("auto {n}\n"));
    if iface.dhcp4 {
        s.push_str(&format!(
            "iface {n} inet dhcp\n\tmetric {}\n",
            crate::iface::metric(n)
        ));
    }
    for (family, list) in [("inet", &iface.v4), ("inet6", &iface.v6)] {
        for (i, (addr, gw)) in list.iter().enumerate() {
            s.push_str(&format!("iface {n} {family} static\n\taddress {addr}\n"));
            if i == 0
                && let Some(g) = gw
            {
                s.push_str(&format!(
                    "\tgateway {g}\n\tmetric {}\n",
                    crate::iface::metric(n)
                ));
            }
        }
    }
    s
}

/// Writes the network files for every `vif` and removes ours for
/// interfaces no longer in the config.
pub fn set_network(root: &Path, config: &Config, settings: &Settings) -> Result<(Stack, Change)> {
    let stack = detect_stack(root);
    let ifaces = interfaces(config, settings);
    let (dir, prefix, suffix) = match stack {
        Stack::Networkd => (under(root, "/etc/systemd/network"), "50-gandi-", ".network"),
        Stack::Ifupdown => (under(root, "/etc/network/interfaces.d"), "gandi-", ""),
    };
    let mut change = Change::Unchanged;
    let mut wanted = Vec::new();
    for iface in &ifaces {
        let file = format!("{prefix}{}{suffix}", iface.name);
        let text = match stack {
            Stack::Networkd => networkd_file(iface),
            Stack::Ifupdown => ifupdown_file(iface),
        };
        change = change.or(write_if_changed(&dir.join(&file), text.as_bytes(), 0o644)?);
        wanted.push(file);
    }
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && name.ends_with(suffix) && !wanted.contains(&name) {
                fs::remove_file(e.path())?;
                change = Change::Changed;
            }
        }
    }
    if stack == Stack::Ifupdown {
        let main = fs::read_to_string(under(root, "/etc/network/interfaces")).unwrap_or_default();
        if !main
            .lines()
            .any(|l| l.trim_start().starts_with("source") && l.contains("interfaces.d"))
        {
            log::warn!(
                "/etc/network/interfaces does not source interfaces.d: add \
                 `source /etc/network/interfaces.d/*` for the platform's addresses to apply"
            );
        }
    }
    Ok((stack, change))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_the_admins_lines() {
        let admin = "ssh-ed25519 AAAA admin\n";
        let once = with_block(admin, &["ssh-rsa BBBB platform".into()], false);
        assert_eq!(
            once,
            format!("ssh-ed25519 AAAA admin\n{BEGIN}\nssh-rsa BBBB platform\n{END}\n")
        );
        let twice = with_block(&once, &["ssh-rsa BBBB platform".into()], false);
        assert_eq!(once, twice);
        let replaced = with_block(&once, &["ssh-rsa CCCC new".into()], false);
        assert!(
            replaced.contains("admin") && replaced.contains("CCCC") && !replaced.contains("BBBB")
        );
        assert_eq!(with_block(&once, &[], false), admin);
    }
}
