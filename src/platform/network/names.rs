//! Which interface is vif N: the platform gives a guest its NICs in vif
//! order on the bus (PCI slots in order under KVM, `vif-N` under Xen), so
//! vif N is the Nth network device of the kernel that is an Ethernet NIC
//! on a bus (`/sys/class/net/X/device` exists, `type` is 1), sorted by the
//! sysfs path of that device, whatever its name (`eth1`, `ens4`,
//! `enp0s4`). A vif with a MAC is the interface that has it. Without the
//! kernel's view (`--root`, no such NIC), vif N is named `ethN`.

use std::cmp::Ordering;
use std::path::Path;

/// The NICs on a bus, in bus order (`SYS/class/net`).
pub fn bus_order(sys_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sys_dir.join("class/net")) else {
        return Vec::new();
    };
    let mut nics: Vec<(String, String)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let path = e.path();
            let kind = crate::base::read::read_small(&path.join("type"))?;
            if kind.trim() != "1" {
                return None;
            }
            let device = std::fs::canonicalize(path.join("device")).ok()?;
            Some((device.to_string_lossy().into_owned(), name))
        })
        .collect();
    nics.sort_by(|a, b| bus_cmp(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
    nics.into_iter().map(|(_, n)| n).collect()
}

/// Compares two sysfs paths folder by folder: a name made of letters (or
/// `-`) then digits (`vif-10`, `virtio3`) by its stem then its number,
/// anything else (PCI addresses, fixed-width hex) as text; a numbered name
/// sorts before a text one. A total order (each folder maps to one key),
/// as sorting needs.
pub fn bus_cmp(a: &str, b: &str) -> Ordering {
    let key = |p: &str| -> Vec<Key> { p.split('/').map(Key::of).collect() };
    key(a).cmp(&key(b))
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Num(String, u64, String),
    Text(String),
}

impl Key {
    fn of(s: &str) -> Key {
        match numbered(s) {
            Some((stem, n)) => Key::Num(stem.to_string(), n, s.to_string()),
            None => Key::Text(s.to_string()),
        }
    }
}

/// `vif-10` -> ("vif-", 10): letters or `-`, then only digits.
fn numbered(s: &str) -> Option<(&str, u64)> {
    let digits = s.find(|c: char| c.is_ascii_digit())?;
    let (stem, num) = s.split_at(digits);
    if stem.is_empty()
        || !stem.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
        || !num.chars().all(|c| c.is_ascii_digit())
        || num.len() > 18
    {
        return None;
    }
    Some((stem, num.parse().ok()?))
}

/// The interface that has `mac` now (`SYS/class/net/*/address`).
pub fn interface_with_mac(sys_dir: &Path, mac: &str) -> Option<String> {
    let dir = sys_dir.join("class/net");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let addr = crate::base::read::read_small(&e.path().join("address"))?;
        addr.trim()
            .eq_ignore_ascii_case(mac)
            .then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// The index (vif number) of interface `name`: its place in `order`, else
/// the number of a kernel name `ethN`, else none.
pub fn index_of(name: &str, order: &[String]) -> Option<u32> {
    if let Some(i) = order.iter().position(|n| n == name) {
        return u32::try_from(i).ok();
    }
    eth_number(name)
}

/// N of `ethN`.
pub fn eth_number(name: &str) -> Option<u32> {
    let n = name.strip_prefix("eth")?;
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) || n.len() > 3 {
        return None;
    }
    n.parse().ok()
}

/// Whether a `CONFIG_NODHCP` word means interface `name` of index `index`:
/// the name itself, or `ethN` for vif N.
pub fn nodhcp_means(word: &str, name: &str, index: Option<u32>) -> bool {
    word == name || (index.is_some() && eth_number(word) == index)
}
