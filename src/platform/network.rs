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

/// One interface's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub mac: Option<String>,
    /// `ADDR/LEN` with the family's gateway.
    pub v4: Vec<(String, Option<String>)>,
    pub v6: Vec<(String, Option<String>)>,
    pub dhcp4: bool,
    /// Why DHCP was given against the usual rule, when it was.
    pub note: Option<String>,
}

/// The route metric of `ethN`: 1024 + N (eth0 first).
pub fn metric(iface: &str) -> u32 {
    1024 + iface
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse::<u32>()
        .unwrap_or(100)
        .min(1000)
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

/// The interfaces the config names, with the DHCP decision.
pub fn interfaces(config: &Config) -> Vec<Iface> {
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
                mac: vif.mac.clone(),
                dhcp4: v4.is_empty() && (!v6_only || unusable.is_some()),
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
        let name = format!("eth{n}");
        if !out.iter().any(|i| i.name == name) {
            out.push(Iface {
                name,
                mac: None,
                v4: Vec::new(),
                v6: Vec::new(),
                dhcp4: true,
                note: Some(format!("DHCP because {why}")),
            });
        }
    }
    out.sort_by_key(|i| metric(&i.name));
    out
}

/// The settings of a hot-plugged interface: from the config when it names
/// it, else DHCP (checked before the IPv6-only rule, as the platform's
/// `get_json.py` does).
pub fn hotplug(name: &str, config: Option<&Config>) -> Iface {
    let named = config.and_then(|c| interfaces(c).into_iter().find(|i| i.name == name));
    named.unwrap_or_else(|| Iface {
        name: name.to_string(),
        mac: None,
        v4: Vec::new(),
        v6: Vec::new(),
        dhcp4: true,
        note: None,
    })
}

/// Which network stack a tree runs (its files are what we write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Networkd,
    Ifupdown,
    /// NetworkManager (RHEL-family guests): keyfiles.
    NetworkManager,
}

/// Every stack, for clean-ups.
pub const STACKS: [Stack; 3] = [Stack::Networkd, Stack::Ifupdown, Stack::NetworkManager];

/// ifupdown when `/etc/network/interfaces` exists and `ifup` is installed;
/// else NetworkManager when it is installed; else systemd-networkd.
pub fn detect_stack(tree: &Tree) -> Stack {
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

/// The file of `name` for `stack`.
pub fn file_of(stack: Stack, name: &str) -> PathBuf {
    match stack {
        Stack::Networkd => PathBuf::from(format!("/etc/systemd/network/50-gandi-{name}.network")),
        Stack::Ifupdown => PathBuf::from(format!("/etc/network/interfaces.d/gandi-{name}")),
        Stack::NetworkManager => PathBuf::from(format!(
            "/etc/NetworkManager/system-connections/gandi-{name}.nmconnection"
        )),
    }
}

/// The mode of our file for `stack` (NetworkManager ignores keyfiles that
/// others can read).
pub fn mode_of(stack: Stack) -> u32 {
    match stack {
        Stack::NetworkManager => 0o600,
        _ => 0o644,
    }
}

/// The interface that has `mac` now (`SYS/class/net/*/address`).
pub fn interface_with_mac(sys_dir: &std::path::Path, mac: &str) -> Option<String> {
    let dir = sys_dir.join("class/net");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let addr = std::fs::read_to_string(e.path().join("address")).ok()?;
        addr.trim()
            .eq_ignore_ascii_case(mac)
            .then(|| e.file_name().to_string_lossy().into_owned())
    })
}

const NET_HEADER: &str = "# Written by gandi-vm from the platform's config (/gandi/config).\n\
# Written again only when the platform's value for this interface changes:\n\
# your edits are kept until then.\n";

/// A systemd-networkd `.network` file. Default routes get the interface's
/// metric (eth0 first), so routes of several interfaces coexist.
pub fn networkd_file(iface: &Iface) -> String {
    let metric = metric(&iface.name);
    let mut s = String::from(NET_HEADER);
    if let Some(note) = &iface.note {
        s.push_str(&format!("# {note}\n"));
    }
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
    s.push_str("IPv6AcceptRA=yes\n");
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
    if let Some(note) = &iface.note {
        s.push_str(&format!("# {note}\n"));
    }
    let n = &iface.name;
    s.push_str(&format!("auto {n}\n"));
    if iface.dhcp4 {
        s.push_str(&format!("iface {n} inet dhcp\n\tmetric {}\n", metric(n)));
    }
    for (family, list) in [("inet", &iface.v4), ("inet6", &iface.v6)] {
        for (i, (addr, gw)) in list.iter().enumerate() {
            s.push_str(&format!("iface {n} {family} static\n\taddress {addr}\n"));
            if family == "inet6" {
                s.push_str("\taccept_ra 2\n");
            }
            if i == 0
                && let Some(g) = gw
            {
                s.push_str(&format!("\tgateway {g}\n\tmetric {}\n", metric(n)));
            }
        }
    }
    s
}

/// A stable UUID for our connection of `name` (NetworkManager wants one).
fn connection_uuid(name: &str) -> String {
    let fp = crate::platform::ledger::fingerprint("nm-connection", name.as_bytes());
    let h = fp.as_bytes();
    let s = |r: std::ops::Range<usize>| String::from_utf8_lossy(&h[r]).into_owned();
    // Version 4 and variant bits, as a random UUID has them.
    format!(
        "{}-{}-4{}-8{}-{}",
        s(0..8),
        s(8..12),
        s(13..16),
        s(17..20),
        s(20..32)
    )
}

/// A NetworkManager keyfile, in the form NetworkManager writes them.
pub fn keyfile(iface: &Iface) -> String {
    let metric = metric(&iface.name);
    let mut s = String::from(NET_HEADER);
    if let Some(note) = &iface.note {
        s.push_str(&format!("# {note}\n"));
    }
    s.push_str(&format!(
        "[connection]\nid=gandi-{n}\nuuid={}\ntype=ethernet\n",
        connection_uuid(&iface.name),
        n = iface.name
    ));
    match &iface.mac {
        Some(_) => {}
        None => s.push_str(&format!("interface-name={}\n", iface.name)),
    }
    s.push_str("autoconnect=true\n\n[ethernet]\n");
    if let Some(mac) = &iface.mac {
        s.push_str(&format!("mac-address={}\n", mac.to_ascii_uppercase()));
    }
    let family =
        |s: &mut String, section: &str, list: &[(String, Option<String>)], dynamic: &str| {
            s.push_str(&format!("\n[{section}]\n"));
            for (i, (addr, gw)) in list.iter().enumerate() {
                match gw {
                    Some(g) if i == 0 => s.push_str(&format!("address{}={addr},{g}\n", i + 1)),
                    _ => s.push_str(&format!("address{}={addr}\n", i + 1)),
                }
            }
            // IPv6 always takes router advertisements, static addresses
            // beside them (NetworkManager's `auto` keeps `addressN=`).
            let method = if section == "ipv6" {
                "auto"
            } else if !list.is_empty() {
                "manual"
            } else {
                dynamic
            };
            s.push_str(&format!("method={method}\nroute-metric={metric}\n"));
        };
    let v4_dynamic = if iface.dhcp4 { "auto" } else { "disabled" };
    family(&mut s, "ipv4", &iface.v4, v4_dynamic);
    family(&mut s, "ipv6", &iface.v6, "auto");
    s
}

/// The file text of `iface` for `stack`.
pub fn render(stack: Stack, iface: &Iface) -> String {
    match stack {
        Stack::Networkd => networkd_file(iface),
        Stack::Ifupdown => ifupdown_file(iface),
        Stack::NetworkManager => keyfile(iface),
    }
}

/// What applying one interface did.
#[derive(Debug, Clone, PartialEq, Eq)]
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
mod tests {
    use super::*;
    use crate::platform::config;

    fn cfg(text: &str) -> Config {
        config::read(text.as_bytes()).unwrap()
    }

    #[test]
    fn dhcp_as_the_original_decides() {
        // eth0 static, eth1 without address: DHCP on eth1 only.
        let c = cfg(
            r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}}]}, {"vif_number": 1, "pna": []}]}"#,
        );
        let i = interfaces(&c);
        assert!(!i[0].dhcp4 && i[1].dhcp4);
        // eth0 without a static IPv4 in a config that has IPv4: DHCP.
        let c = cfg(
            r#"{"vif": [{"vif_number": 0}, {"vif_number": 1, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}}]}]}"#,
        );
        assert!(interfaces(&c)[0].dhcp4);
        // IPv6-only: DHCP for none.
        let c = cfg(
            r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "2001:db8::1", "pbn": {"pbn_network": "2001:db8::/64"}}]}, {"vif_number": 1}]}"#,
        );
        assert!(interfaces(&c).iter().all(|i| !i.dhcp4));
        // An IPv6 public address and a private IPv4 without gateway: still
        // IPv6-only (the platform's rule), the VLAN static.
        let c = cfg(
            r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "2001:db8::1", "pbn": {"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::ff"}}]},
                        {"vif_number": 1, "pna": [{"pna_address": "10.9.0.5", "pvn": {"pvn_network": "10.9.0.0/24"}}]}]}"#,
        );
        assert!(c.ipv6_only());
        let i = interfaces(&c);
        assert!(!i[0].dhcp4 && !i[1].dhcp4);
        assert_eq!(i[1].v4, vec![("10.9.0.5/24".to_string(), None)]);
        // A public IPv4 without gateway does not make it dual-stack either.
        let c = cfg(
            r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.9", "pbn": {"pbn_network": "192.0.2.0/24"}}]}]}"#,
        );
        assert!(c.ipv6_only());
        // eth0's only address is broken: DHCP, and the file says why.
        let c = cfg(
            r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.300", "pbn": {"pbn_network": "192.0.2.0/24"}}]}]}"#,
        );
        let i = interfaces(&c);
        assert!(i[0].dhcp4);
        assert!(networkd_file(&i[0]).contains("# DHCP because vif[0].pna[0]"));
        // The vif field unreadable: eth0 gets DHCP.
        let c = cfg(r#"{"vif": "eth0"}"#);
        let i = interfaces(&c);
        assert_eq!((i[0].name.as_str(), i[0].dhcp4), ("eth0", true));
    }

    #[test]
    fn hotplugged_interfaces() {
        let c = cfg(
            r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24"}}]}]}"#,
        );
        assert!(hotplug("eth3", Some(&c)).dhcp4);
        assert!(!hotplug("eth0", Some(&c)).dhcp4);
        assert!(hotplug("eth1", None).dhcp4);
        // IPv6-only: a NIC the config does not name still gets DHCP; one
        // it names does not.
        let v6 = cfg(
            r#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": "2001:db8::1", "pbn": {"pbn_network": "2001:db8::/64"}}]}, {"vif_number": 1}]}"#,
        );
        assert!(hotplug("eth2", Some(&v6)).dhcp4);
        assert!(!hotplug("eth1", Some(&v6)).dhcp4);
    }

    #[test]
    fn keyfiles() {
        let i = Iface {
            name: "eth1".into(),
            mac: None,
            v4: vec![("192.0.2.5/24".into(), Some("192.0.2.1".into()))],
            v6: vec![],
            dhcp4: false,
            note: None,
        };
        let k = keyfile(&i);
        assert!(k.contains("interface-name=eth1\n"));
        assert!(
            k.contains(
                "[ipv4]\naddress1=192.0.2.5/24,192.0.2.1\nmethod=manual\nroute-metric=1025\n"
            ),
            "{k}"
        );
        assert!(k.contains("[ipv6]\nmethod=auto\n"));
        let uuid = connection_uuid("eth1");
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_eq!(uuid, connection_uuid("eth1"));
        assert_ne!(uuid, connection_uuid("eth2"));
    }

    #[test]
    fn metrics_and_names() {
        assert_eq!(metric("eth0"), 1024);
        assert_eq!(metric("eth3"), 1027);
        assert!(valid_iface("eth1"));
        assert!(!valid_iface("../x"));
        assert!(!valid_iface("a very long interface"));
    }
}
