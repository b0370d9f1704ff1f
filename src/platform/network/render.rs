//! The text of one interface's file for each network stack: a
//! systemd-networkd `.network`, an ifupdown stanza, a NetworkManager
//! keyfile, a netplan file. Default routes get the interface's metric
//! (the first interface lowest), and an interface with its own table its
//! source rules (`routes`).

use super::routes::{MAIN_TABLE, SourceRule, rules_of};
use super::{Iface, Stack};

const NET_HEADER: &str = "# Written by gandi-vm from the platform's config (/gandi/config).\n\
# Written again only when the platform's value for this interface changes:\n\
# your edits are kept until then.\n";

/// The file text of `iface` for `stack`.
pub fn render(stack: Stack, iface: &Iface) -> String {
    match stack {
        Stack::Networkd => networkd_file(iface),
        Stack::Ifupdown => ifupdown_file(iface),
        Stack::NetworkManager => keyfile(iface),
        Stack::Netplan => netplan_file(iface),
    }
}

fn header(iface: &Iface) -> String {
    let mut s = String::from(NET_HEADER);
    if let Some(note) = &iface.note {
        s.push_str(&format!("# {note}\n"));
    }
    s
}

/// Each family's gateways, in order, without repeats.
fn gateways(iface: &Iface) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, gw) in iface.v4.iter().chain(&iface.v6) {
        if let Some(g) = gw
            && !out.contains(g)
        {
            out.push(g.clone());
        }
    }
    out
}

/// The gateways of the interface's own table: one per family.
fn table_gateways(rules: &[SourceRule]) -> Vec<&SourceRule> {
    let mut out: Vec<&SourceRule> = Vec::new();
    for r in rules {
        if !out.iter().any(|o| o.v6 == r.v6) {
            out.push(r);
        }
    }
    out
}

/// A systemd-networkd `.network` file.
pub fn networkd_file(iface: &Iface) -> String {
    let metric = iface.metric();
    let mut s = header(iface);
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
    for (addr, _) in iface.v4.iter().chain(&iface.v6) {
        s.push_str(&format!("Address={addr}\n"));
    }
    for g in gateways(iface) {
        s.push_str(&format!("\n[Route]\nGateway={g}\nMetric={metric}\n"));
    }
    let rules = rules_of(iface);
    for r in table_gateways(&rules) {
        s.push_str(&format!(
            "\n[Route]\nGateway={}\nTable={}\n",
            r.gateway, r.table
        ));
    }
    for r in &rules {
        s.push_str(&format!(
            "\n[RoutingPolicyRule]\nFrom={}\nTable={MAIN_TABLE}\nSuppressPrefixLength=0\nPriority={}\n",
            r.from, r.main_priority
        ));
        s.push_str(&format!(
            "\n[RoutingPolicyRule]\nFrom={}\nTable={}\nPriority={}\n",
            r.from, r.table, r.table_priority
        ));
    }
    if iface.dhcp4 {
        s.push_str(&format!("\n[DHCPv4]\nRouteMetric={metric}\n"));
    }
    s
}

/// An ifupdown stanza file for `interfaces.d`.
pub fn ifupdown_file(iface: &Iface) -> String {
    let mut s = header(iface);
    let n = &iface.name;
    let metric = iface.metric();
    let rules = rules_of(iface);
    s.push_str(&format!("auto {n}\n"));
    if iface.dhcp4 {
        s.push_str(&format!("iface {n} inet dhcp\n\tmetric {metric}\n"));
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
                s.push_str(&format!("\tgateway {g}\n\tmetric {metric}\n"));
            }
            if i == 0 {
                for r in rules.iter().filter(|r| r.v6 == (family == "inet6")) {
                    for cmd in r.ip_up(n) {
                        let line = format!("ip {}", cmd.join(" "));
                        if cmd.get(2).is_some_and(|v| v == "del") {
                            s.push_str(&format!("\tpost-up {line} 2>/dev/null || true\n"));
                        } else {
                            s.push_str(&format!("\tpost-up {line}\n"));
                        }
                    }
                    for cmd in r.ip_down() {
                        s.push_str(&format!(
                            "\tpre-down ip {} 2>/dev/null || true\n",
                            cmd.join(" ")
                        ));
                    }
                }
            }
        }
    }
    s
}

/// A stable UUID for our connection of `name` (NetworkManager wants one).
pub(super) fn connection_uuid(name: &str) -> String {
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
    let metric = iface.metric();
    let mut s = header(iface);
    s.push_str(&format!(
        "[connection]\nid=gandi-{n}\nuuid={}\ntype=ethernet\n",
        connection_uuid(&iface.name),
        n = iface.name
    ));
    if iface.mac.is_none() {
        s.push_str(&format!("interface-name={}\n", iface.name));
    }
    s.push_str("autoconnect=true\n\n[ethernet]\n");
    if let Some(mac) = &iface.mac {
        s.push_str(&format!("mac-address={}\n", mac.to_ascii_uppercase()));
    }
    let rules = rules_of(iface);
    let family = |s: &mut String, v6: bool, list: &[(String, Option<String>)], dynamic: &str| {
        s.push_str(if v6 { "\n[ipv6]\n" } else { "\n[ipv4]\n" });
        for (i, (addr, gw)) in list.iter().enumerate() {
            match gw {
                Some(g) if i == 0 => s.push_str(&format!("address{}={addr},{g}\n", i + 1)),
                _ => s.push_str(&format!("address{}={addr}\n", i + 1)),
            }
        }
        // IPv6 always takes router advertisements, static addresses
        // beside them (NetworkManager's `auto` keeps `addressN=`).
        let method = if v6 {
            "auto"
        } else if !list.is_empty() {
            "manual"
        } else {
            dynamic
        };
        s.push_str(&format!("method={method}\nroute-metric={metric}\n"));
        let mine: Vec<&SourceRule> = rules.iter().filter(|r| r.v6 == v6).collect();
        if let Some(r) = mine.first() {
            let default = if v6 { "::/0" } else { "0.0.0.0/0" };
            s.push_str(&format!(
                "route1={default},{}\nroute1_options=table={}\n",
                r.gateway, r.table
            ));
        }
        let mut n = 0;
        for r in mine {
            n += 1;
            s.push_str(&format!(
                "routing-rule{n}=priority {} from {} suppress_prefixlength 0 table {MAIN_TABLE}\n",
                r.main_priority, r.from
            ));
            n += 1;
            s.push_str(&format!(
                "routing-rule{n}=priority {} from {} table {}\n",
                r.table_priority, r.from, r.table
            ));
        }
    };
    let v4_dynamic = if iface.dhcp4 { "auto" } else { "disabled" };
    family(&mut s, false, &iface.v4, v4_dynamic);
    family(&mut s, true, &iface.v6, "auto");
    s
}

/// The network of `ADDR/LEN` (`192.0.2.10/24` -> `192.0.2.0/24`).
fn network_of(addr: &str) -> Option<String> {
    let (a, len) = addr.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match a.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            Some(format!(
                "{}/{len}",
                std::net::Ipv4Addr::from(u32::from(v4) & mask)
            ))
        }
        std::net::IpAddr::V6(v6) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            Some(format!(
                "{}/{len}",
                std::net::Ipv6Addr::from(u128::from(v6) & mask)
            ))
        }
        _ => None,
    }
}

/// A netplan file: one interface under `ethernets`, its ID its name (an
/// admin's file with the same ID, read after ours, wins where netplan
/// merges). No renderer: the system's own. netplan has no
/// `suppress_prefixlength`: the interface's own table carries its subnet.
pub fn netplan_file(iface: &Iface) -> String {
    let metric = iface.metric();
    let mut s = header(iface);
    s.push_str("network:\n  version: 2\n  ethernets:\n");
    s.push_str(&format!("    {}:\n", iface.name));
    if let Some(mac) = &iface.mac {
        s.push_str(&format!(
            "      match:\n        macaddress: \"{}\"\n",
            mac.to_ascii_lowercase()
        ));
    }
    s.push_str(&format!("      dhcp4: {}\n", iface.dhcp4));
    s.push_str("      dhcp6: false\n      accept-ra: true\n");
    if iface.dhcp4 {
        s.push_str(&format!(
            "      dhcp4-overrides:\n        route-metric: {metric}\n"
        ));
    }
    let addrs: Vec<&String> = iface.v4.iter().chain(&iface.v6).map(|(a, _)| a).collect();
    if !addrs.is_empty() {
        s.push_str("      addresses:\n");
        for a in &addrs {
            s.push_str(&format!("        - \"{a}\"\n"));
        }
    }
    let rules = rules_of(iface);
    let mut routes = String::new();
    for g in gateways(iface) {
        let to = if g.contains(':') { "::/0" } else { "0.0.0.0/0" };
        routes.push_str(&format!(
            "        - to: \"{to}\"\n          via: \"{g}\"\n          metric: {metric}\n"
        ));
    }
    for r in table_gateways(&rules) {
        let to = if r.v6 { "::/0" } else { "0.0.0.0/0" };
        routes.push_str(&format!(
            "        - to: \"{to}\"\n          via: \"{}\"\n          table: {}\n",
            r.gateway, r.table
        ));
        let list = if r.v6 { &iface.v6 } else { &iface.v4 };
        let mut nets: Vec<String> = Vec::new();
        for net in list.iter().filter_map(|(a, _)| network_of(a)) {
            if !nets.contains(&net) {
                routes.push_str(&format!(
                    "        - to: \"{net}\"\n          scope: link\n          table: {}\n",
                    r.table
                ));
                nets.push(net);
            }
        }
    }
    if !routes.is_empty() {
        s.push_str("      routes:\n");
        s.push_str(&routes);
    }
    if !rules.is_empty() {
        s.push_str("      routing-policy:\n");
        for r in &rules {
            s.push_str(&format!(
                "        - from: \"{}\"\n          table: {}\n          priority: {}\n",
                r.from, r.table, r.table_priority
            ));
        }
    }
    s
}
