//! The network of the platform's config: the interface model, the files of
//! each network stack, route metrics, and applying them (shared by
//! `bootstrap` and the hot-plug path `gandi-vm iface`).
//!
//! DHCP (IPv4), as the platform decides it: an interface of the config
//! with no static IPv4 address (public `pbn` or private `pvn`: a VLAN has
//! no DHCP server) gets DHCP, unless the VM is IPv6-only (no public address
//! whose network and gateway are IPv4); an interface the config does not
//! name gets DHCP when it is hot-plugged, IPv6-only or not. IPv6 takes
//! router advertisements as the platform relies on, and the static IPv6
//! addresses the config gives. `CONFIG_NODHCP` is read by the
//! hot-plug path only, as in the original (its default, `eth0`, leaves the
//! boot's eth0 to bootstrap). Reachability floor: an interface whose own
//! config could not be used (a bad address, an entry that could not be
//! read) gets DHCP whatever the rest says, and the status says why.

use crate::base::tree::{Change, Tree, WriteOpts};
use crate::platform::config::Config;
use crate::platform::ledger::Ledger;
use anyhow::Result;
use std::path::PathBuf;

pub mod names;
mod render;
pub mod routes;

pub use render::{ifupdown_file, keyfile, netplan_file, networkd_file, render};

/// One interface's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    /// Its vif number, its place in bus order: its route metric and table.
    pub index: u32,
    pub mac: Option<String>,
    /// `ADDR/LEN` with the family's gateway.
    pub v4: Vec<(String, Option<String>)>,
    pub v6: Vec<(String, Option<String>)>,
    pub dhcp4: bool,
    /// A routing table of its own and source rules (`routes`).
    pub source_routes: bool,
    /// Why DHCP was given against the usual rule, when it was.
    pub note: Option<String>,
}

impl Iface {
    /// A NIC the config does not name: DHCP.
    pub fn dhcp(name: &str, index: u32) -> Iface {
        Iface {
            name: name.to_string(),
            index,
            mac: None,
            v4: Vec::new(),
            v6: Vec::new(),
            dhcp4: true,
            source_routes: false,
            note: None,
        }
    }

    /// Its default routes' metric.
    pub fn metric(&self) -> u32 {
        metric(self.index)
    }
}

/// The route metric of interface `index`: 1024 + N (the first lowest).
pub fn metric(index: u32) -> u32 {
    1024 + index.min(1000)
}

/// A network interface name we accept.
pub fn valid_iface(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Whether an interface gets its own table: every one but the first
/// (index 0, the main default route's) with a static address and gateway,
/// unless `CONFIG_SOURCE_ROUTING=0`.
fn wants_table(
    index: u32,
    v4: &[(String, Option<String>)],
    v6: &[(String, Option<String>)],
    on: bool,
) -> bool {
    on && index > 0 && v4.iter().chain(v6).any(|(_, g)| g.is_some())
}

/// The interfaces the config names, with the DHCP decision, each named
/// `ethN` (see [`names`] for the names they have on a live system), in
/// index order. `source_routing` is `CONFIG_SOURCE_ROUTING`.
pub fn interfaces(config: &Config, source_routing: bool) -> Vec<Iface> {
    let v6_only = config.ipv6_only();
    let mut out: Vec<Iface> = config
        .vifs
        .iter()
        .map(|vif| {
            let mut v4 = Vec::new();
            let mut v6 = Vec::new();
            for a in &vif.addrs {
                let entry = (
                    format!("{}/{}", a.addr, a.prefix),
                    a.gateway.map(|g| g.to_string()),
                );
                if a.addr.is_ipv4() {
                    v4.push(entry);
                } else {
                    v6.push(entry);
                }
            }
            let unusable = config.unusable.get(&vif.number);
            Iface {
                name: vif.name(),
                index: vif.number,
                mac: vif.mac.clone(),
                dhcp4: v4.is_empty() && (!v6_only || unusable.is_some()),
                source_routes: wants_table(vif.number, &v4, &v6, source_routing),
                note: unusable
                    .filter(|_| v4.is_empty())
                    .map(|why| format!("DHCP because {why}")),
                v4,
                v6,
            }
        })
        .collect();
    // An interface the config meant but whose entry could not be read.
    for (n, why) in &config.unusable {
        if !out.iter().any(|i| i.index == *n) {
            let mut i = Iface::dhcp(&format!("eth{n}"), *n);
            i.note = Some(format!("DHCP because {why}"));
            out.push(i);
        }
    }
    out.sort_by_key(|i| i.index);
    out
}

/// Names each interface as the live system has it: the NIC with its MAC,
/// else the Nth NIC in bus order (`order`, see [`names::bus_order`]), else
/// `ethN` as given. Says in the interface's note when the MAC is nowhere.
pub fn name_live(ifaces: &mut [Iface], order: &[String], sys_dir: &std::path::Path) {
    // The NICs the vifs' MACs name first: a name so taken is never given
    // to another vif by its place.
    let by_mac: Vec<Option<String>> = ifaces
        .iter()
        .map(|i| {
            i.mac
                .as_deref()
                .and_then(|m| names::interface_with_mac(sys_dir, m))
                .filter(|n| valid_iface(n))
        })
        .collect();
    for (iface, found) in ifaces.iter_mut().zip(&by_mac) {
        match (&iface.mac, found) {
            (Some(_), Some(n)) => iface.name = n.clone(),
            // A MAC no NIC has now: named `ethN`, as given.
            (Some(mac), None) => {
                if iface.note.is_none() {
                    iface.note = Some(format!("no interface has {mac} now"));
                }
            }
            (None, _) => {
                if let Some(n) = order
                    .get(iface.index as usize)
                    .filter(|n| valid_iface(n) && !by_mac.iter().flatten().any(|m| m == *n))
                {
                    iface.name = n.clone();
                }
            }
        }
    }
}

/// The settings of a hot-plugged interface `name` at `index` with MAC
/// `mac`: from the config when it names it (by MAC, else by index), else
/// DHCP (checked before the IPv6-only rule, as the platform's
/// `get_json.py` does).
pub fn hotplug(
    name: &str,
    index: u32,
    mac: Option<&str>,
    config: Option<&Config>,
    source_routing: bool,
) -> Iface {
    let all = config
        .map(|c| interfaces(c, source_routing))
        .unwrap_or_default();
    let by_mac = mac.and_then(|m| {
        all.iter()
            .find(|i| i.mac.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)))
    });
    let named = by_mac.or_else(|| all.iter().find(|i| i.index == index && i.mac.is_none()));
    match named {
        Some(i) => Iface {
            name: name.to_string(),
            ..i.clone()
        },
        None => Iface::dhcp(name, index),
    }
}

/// Which network stack a tree runs (its files are what we write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Networkd,
    Ifupdown,
    /// NetworkManager (RHEL-family guests): keyfiles.
    NetworkManager,
    /// netplan (Ubuntu's): a YAML file it renders for networkd or
    /// NetworkManager.
    Netplan,
}

/// Every stack, for clean-ups.
pub const STACKS: [Stack; 4] = [
    Stack::Networkd,
    Stack::Ifupdown,
    Stack::NetworkManager,
    Stack::Netplan,
];

/// netplan when it is installed and in use (a YAML file not ours in one
/// of the folders it reads: on a host that runs another stack with netplan
/// merely installed, netplan's files would reach no one); else ifupdown
/// when `/etc/network/interfaces` exists and `ifup` is installed; else
/// NetworkManager when it is installed; else systemd-networkd.
pub fn detect_stack(tree: &Tree) -> Stack {
    let netplan = ["/usr/sbin/netplan", "/sbin/netplan"]
        .iter()
        .any(|p| tree.exists(p));
    if netplan && netplan_in_use(tree) {
        return Stack::Netplan;
    }
    let ifup = ["/sbin/ifup", "/usr/sbin/ifup"]
        .iter()
        .any(|p| tree.exists(p));
    let nm = ["/usr/sbin/NetworkManager", "/sbin/NetworkManager"]
        .iter()
        .any(|p| tree.exists(p));
    if ifup && tree.exists("/etc/network/interfaces") {
        Stack::Ifupdown
    } else if nm && tree.is_dir("/etc/NetworkManager") {
        Stack::NetworkManager
    } else {
        Stack::Networkd
    }
}

/// The folders netplan reads its YAML files from.
const NETPLAN_DIRS: [&str; 4] = [
    "/etc/netplan",
    "/run/netplan",
    "/lib/netplan",
    "/usr/lib/netplan",
];

/// Whether a netplan file that is not ours is in one of netplan's folders.
fn netplan_in_use(tree: &Tree) -> bool {
    NETPLAN_DIRS.iter().any(|dir| {
        tree.list(dir).is_ok_and(|names| {
            names.iter().any(|n| {
                let n = n.to_string_lossy();
                (n.ends_with(".yaml") || n.ends_with(".yml")) && !n.starts_with("00-gandi-")
            })
        })
    })
}

/// The file of `name` for `stack`.
pub fn file_of(stack: Stack, name: &str) -> PathBuf {
    match stack {
        Stack::Networkd => PathBuf::from(format!("/etc/systemd/network/50-gandi-{name}.network")),
        Stack::Ifupdown => PathBuf::from(format!("/etc/network/interfaces.d/gandi-{name}")),
        Stack::NetworkManager => PathBuf::from(format!(
            "/etc/NetworkManager/system-connections/gandi-{name}.nmconnection"
        )),
        // netplan reads /etc/netplan in name order, a later file's values
        // over an earlier one's: ours first, the admin's after.
        Stack::Netplan => PathBuf::from(format!("/etc/netplan/00-gandi-{name}.yaml")),
    }
}

/// The mode of our file for `stack` (NetworkManager ignores keyfiles that
/// others can read; netplan warns about them).
pub fn mode_of(stack: Stack) -> u32 {
    match stack {
        Stack::NetworkManager | Stack::Netplan => 0o600,
        _ => 0o644,
    }
}

/// What applying one interface did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written (new or changed platform value).
    Written(Change),
    /// The platform's value is the one applied before: the file is left as
    /// the admin has it.
    Kept,
}

/// Writes the file of `iface` when its platform value is new, and records
/// it in the ledger.
pub fn apply_one(tree: &Tree, ledger: &mut Ledger, stack: Stack, iface: &Iface) -> Result<Applied> {
    let text = render(stack, iface);
    let field = format!("iface:{}", iface.name);
    if !ledger.is_new(&field, text.as_bytes()) {
        return Ok(Applied::Kept);
    }
    let c = tree.write_if_changed(
        file_of(stack, &iface.name),
        text.as_bytes(),
        WriteOpts::mode(mode_of(stack)),
    )?;
    // The stack changed since we last wrote this interface (an upgrade,
    // another stack installed): our file of the other stack goes, when it
    // is what we wrote (its content is what the ledger holds); one the
    // admin edited stays.
    for other in STACKS.into_iter().filter(|s| *s != stack) {
        let path = file_of(other, &iface.name);
        if let Ok(old) = tree.read_limited(&path, 1 << 20)
            && !ledger.is_new(&field, &old)
        {
            tree.remove_file(&path)?;
        }
    }
    ledger.set(&field, text.as_bytes());
    Ok(Applied::Written(c))
}

/// Removes our file of an interface the platform no longer names, and its
/// ledger entry. Returns whether a file was removed.
pub fn forget(tree: &Tree, ledger: &mut Ledger, name: &str) -> Result<bool> {
    let mut removed = false;
    for stack in STACKS {
        removed |= tree.remove_file(file_of(stack, name))?;
    }
    ledger.remove(&format!("iface:{name}"));
    Ok(removed)
}

#[cfg(test)]
mod tests;
