//! The systemd floor (`docs/design.md`, "The systemd floor"): every
//! directive of a shipped unit, and of every kind of `.network` file we
//! write, is in the table, at or under its floor; the packages refuse a
//! systemd older than the units' floor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests and benches: a failure is a panic, output is the report

use gandi_vm::platform::network::{Iface, networkd_file};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

struct Floor {
    units: u32,
    networkd: u32,
    /// `Key=` (units) or `[Section] Key=` (network): where, first version.
    table: BTreeMap<String, (String, u32)>,
}

fn floor() -> Floor {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/design.md")).unwrap();
    let start = doc.find("## The systemd floor").expect("no floor section");
    let rest = &doc[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let line = section
        .lines()
        .find(|l| l.starts_with("Floor: "))
        .expect("no `Floor:` line");
    let num = |what: &str| -> u32 {
        let at = line
            .find(what)
            .unwrap_or_else(|| panic!("{what} not in {line}"))
            + what.len();
        line[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let mut table = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 3, "{row}");
        let version: u32 = cells[2].parse().unwrap_or_else(|_| panic!("{row}"));
        // The backticked items that are directives (`Key=`), not values.
        for item in cells[0].split('`').skip(1).step_by(2) {
            if item.ends_with('=') {
                table.insert(item.to_string(), (cells[1].to_string(), version));
            }
        }
    }
    Floor {
        units: num("units"),
        networkd: num("networkd"),
        table,
    }
}

/// `(section, key)` of every directive of an INI-style file.
fn directives(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let key = line.split('=').next().unwrap().trim();
        out.push((section.clone(), format!("{key}=")));
    }
    out
}

#[test]
fn every_unit_directive_is_at_or_under_the_floor() {
    let f = floor();
    assert!(f.units >= 239, "PrivateMounts= needs 239");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/system");
    let mut seen = 0;
    for e in fs::read_dir(dir).unwrap().flatten() {
        let text = fs::read_to_string(e.path()).unwrap();
        for (section, key) in directives(&text) {
            seen += 1;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((kind, version)) = f.table.get(&key) else {
                panic!("{name}: {section} {key} is not in docs/design.md's floor table");
            };
            assert_eq!(kind, "unit", "{name}: {key}");
            assert!(
                *version <= f.units,
                "{name}: {key} needs systemd {version}, above the units' floor {}",
                f.units
            );
        }
    }
    assert!(seen > 50, "only {seen} directives read");
}

#[test]
fn every_network_file_directive_is_at_or_under_the_floor() {
    let f = floor();
    let static_public = Iface {
        v4: vec![("192.0.2.10/24".into(), Some("192.0.2.1".into()))],
        v6: vec![("2001:db8::10/64".into(), Some("2001:db8::1".into()))],
        dhcp4: false,
        source_routes: true,
        mac: Some("aa:00:00:00:00:01".into()),
        ..Iface::dhcp("eth1", 1)
    };
    let mut note = Iface::dhcp("eth2", 2);
    note.note = Some("DHCP because vif[2].pna[0] could not be read".into());
    let mut seen = BTreeMap::new();
    for iface in [Iface::dhcp("eth0", 0), static_public, note] {
        for (section, key) in directives(&networkd_file(&iface)) {
            seen.insert(format!("{section} {key}"), ());
        }
    }
    // Every kind of directive we write, at least the source rule's.
    assert!(
        seen.contains_key("[RoutingPolicyRule] SuppressPrefixLength="),
        "{seen:?}"
    );
    assert!(seen.contains_key("[DHCPv4] RouteMetric="), "{seen:?}");
    for d in seen.keys() {
        let Some((kind, version)) = f.table.get(d) else {
            panic!("{d} is not in docs/design.md's floor table");
        };
        assert_eq!(kind, "network", "{d}");
        assert!(
            *version <= f.networkd,
            "{d} needs systemd {version}, above networkd's floor {}",
            f.networkd
        );
    }
}

#[test]
fn the_packages_refuse_a_systemd_under_the_floor() {
    let f = floor();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let control = fs::read_to_string(root.join("packaging/deb/control.in")).unwrap();
    assert!(
        control.contains(&format!("\nBreaks: systemd (<< {})\n", f.units)),
        "{control}"
    );
    let spec = fs::read_to_string(root.join("packaging/rpm/gandi-vm.spec")).unwrap();
    assert!(
        spec.contains(&format!("\nConflicts:      systemd < {}\n", f.units)),
        "{spec}"
    );
}
