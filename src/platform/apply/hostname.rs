//! The hostname step: `/etc/hostname`, the hosts line at eth0's address,
//! and the live hostname.

use super::*;

/// The line of `/etc/hosts` that names this VM: with eth0's static IPv4
/// address when it has one (as the platform's script writes it), else
/// 127.0.1.1 (Debian's convention without a fixed address).
pub(super) fn hosts_line(hostname: &str, addr: Option<IpAddr>) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let at = addr.map_or_else(|| "127.0.1.1".to_string(), |a| a.to_string());
    if short == hostname {
        format!("{at}\t{hostname}")
    } else {
        format!("{at}\t{hostname} {short}")
    }
}

/// A line earlier versions wrote for the hostname.
pub(super) fn legacy_hosts_line(line: &str) -> bool {
    line.starts_with("127.0.1.1\t") && line.ends_with(" # gandi-vm")
}

/// `/etc/hosts` with our block naming `hostname` (at `addr`, else
/// 127.0.1.1) right after the `127.0.0.1` line (earlier versions' line
/// replaced).
pub fn hosts_text(old: &str, hostname: &str, addr: Option<IpAddr>) -> Result<String, String> {
    let old: String = old
        .split_inclusive('\n')
        .filter(|l| !legacy_hosts_line(l.trim_end_matches('\n')))
        .collect();
    block::replace(
        &old,
        &block::HOSTS,
        &[hosts_line(hostname, addr)],
        Place::After(|l| l.starts_with("127.0.0.1")),
    )
}

/// `/etc/hostname`, `/etc/mailname` and our block of `/etc/hosts` (the
/// name at `addr`, eth0's static IPv4 address, when there is one).
pub fn set_hostname(t: &Tree, hostname: &str, addr: Option<IpAddr>) -> Result<Change> {
    let c1 = t.write_if_changed(
        "/etc/hostname",
        format!("{hostname}\n").as_bytes(),
        WriteOpts::keep(0o644),
    )?;
    let c0 = t.write_if_changed(
        "/etc/mailname",
        format!("{hostname}\n").as_bytes(),
        WriteOpts::keep(0o644),
    )?;
    Ok(c0.or(c1).or(set_hosts(t, hostname, addr)?))
}

/// Our block of `/etc/hosts`: `hostname` at `addr` (else 127.0.1.1).
pub fn set_hosts(t: &Tree, hostname: &str, addr: Option<IpAddr>) -> Result<Change> {
    let old = match t.read_owned("/etc/hosts") {
        Ok((d, _)) => String::from_utf8_lossy(&d).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => default_hosts(),
        Err(e) => return Err(e).context("reading /etc/hosts"),
    };
    let new = hosts_text(&old, hostname, addr).map_err(|why| {
        anyhow::anyhow!("/etc/hosts: our block is damaged ({why}): left as it is")
    })?;
    t.write_if_changed("/etc/hosts", new.as_bytes(), WriteOpts::keep(0o644))
}

/// A minimal `/etc/hosts`.
pub fn default_hosts() -> String {
    "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\
     ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
        .to_string()
}

/// The live hostname.
pub fn set_live_hostname(hostname: &str) -> Result<()> {
    nix::unistd::sethostname(hostname).context("sethostname")
}
