//! The platform's JSON config (`/gandi/config`), read field by field, by
//! the names the platform writes (docs/boot.md, "The platform's config"):
//! `vm_hostname`, `vm_conf` (`user`, `password`, `ssh_key`, `run`,
//! `script_args`), `nameservers`, `vif` (`vif_number`, `mac`, `pna`:
//! `pna_address` with `pbn` or `pvn`).
//!
//! Each field, and each element of a list (each key, each resolver, each
//! interface, each address), is checked on its own: a bad one is left out
//! and reported with its path and place (`3:17: vif[0].pna[1].pna_address:
//! "x" is not an IP address`), and everything else is kept. Only a
//! document that is not JSON at all (or not an object) yields nothing.
//! Unknown fields are ignored and noted (`notes`: `validate` lists them);
//! `null` means "not given".

use crate::platform::json::{self, Node, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

mod checks;
mod vifs;
pub use checks::{
    check_key_line, parse_network, valid_hash, valid_hostname, valid_login, valid_mac,
};
use vifs::vifs;

/// The highest interface number (`eth99`).
pub const MAX_VIF: u64 = 99;

/// One problem, with its place in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `vif[0].pna[1].pna_address`; empty for the document itself.
    pub path: String,
    /// Line and column of the value.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((l, c)) = self.at {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub addr: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    /// On a private VLAN (`pvn`): no DHCP server there, always static.
    pub private: bool,
}

/// One interface (`vif`): `ethN` with its valid addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vif {
    pub number: u32,
    pub mac: Option<String>,
    pub addrs: Vec<Addr>,
}

impl Vif {
    pub fn name(&self) -> String {
        format!("eth{}", self.number)
    }
}

/// What the config gives, every value checked. Absent, `null` and invalid
/// values are `None` or left out of their list; `problems` says which.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub hostname: Option<String>,
    /// The password, as a crypt(3) hash: root's and the user's.
    pub password: Option<String>,
    /// The login to create (`vm_conf.user`).
    pub user: Option<String>,
    /// The SSH keys (`vm_conf.ssh_key`: one per line, or a list), root's
    /// and the user's.
    pub keys: Vec<String>,
    pub nameservers: Vec<IpAddr>,
    pub vifs: Vec<Vif>,
    /// Interfaces whose own config could not be used (a bad address, an
    /// entry that could not be read), with why: they get DHCP so that the
    /// VM stays reachable.
    pub unusable: BTreeMap<u32, String>,
    /// Whether the `vif` field was given at all.
    pub has_vif: bool,
    /// The customer's command for the first boot (`vm_conf.run`, run with
    /// `sh -c`; a list is taken as several).
    pub run: Vec<String>,
    /// The arguments of `/gandi/script` (`vm_conf.script_args`).
    pub script_args: Option<String>,
    pub problems: Vec<Problem>,
    /// Fields the platform's config does not have: ignored, and said so.
    pub notes: Vec<Problem>,
}

impl Config {
    /// The problems under `prefix` (a field, or an element of a list).
    pub fn problems_at(&self, prefix: &str) -> Vec<&Problem> {
        self.problems
            .iter()
            .filter(|p| {
                p.path == prefix
                    || p.path.starts_with(&format!("{prefix}."))
                    || p.path.starts_with(&format!("{prefix}["))
            })
            .collect()
    }

    /// Whether the VM is IPv6-only, as the platform decides it: no public
    /// address whose network and gateway are IPv4 (a gateway-less private
    /// IPv4 does not make it dual-stack). An interface whose entry could
    /// not be used might have had one: then it is not (the reachability
    /// floor: DHCP and IPv4 resolvers).
    pub fn ipv6_only(&self) -> bool {
        self.unusable.is_empty()
            && !self
                .vifs
                .iter()
                .flat_map(|v| &v.addrs)
                .any(|a| !a.private && a.addr.is_ipv4() && a.gateway.is_some_and(|g| g.is_ipv4()))
    }

    /// Whether the config names interface `number`.
    pub fn names(&self, number: u32) -> bool {
        self.vifs.iter().any(|v| v.number == number) || self.unusable.contains_key(&number)
    }
}

/// The fields of each object of the platform's config.
const TOP: &[&str] = &["vm_hostname", "vm_conf", "nameservers", "vif"];
const VM_CONF: &[&str] = &["user", "password", "ssh_key", "run", "script_args"];
const VIF: &[&str] = &["vif_number", "mac", "pna"];
const PNA: &[&str] = &["pna_address", "pbn", "pvn"];
const PBN: &[&str] = &["pbn_network", "pbn_gateway"];
const PVN: &[&str] = &["pvn_network", "pvn_gateway"];
/// Fields earlier versions of ours read, never the platform's.
const NOT_OURS: &[(&str, &str)] = &[
    ("login", "vm_conf.user"),
    ("keys", "vm_conf.ssh_key"),
    ("run", "vm_conf.run"),
];
/// Fields of our own we write into the config.
const OURS: &[&str] = &["gandi_vm_cleaned"];

/// Reads the config: an error only when the text is not a JSON object.
pub fn read(text: &[u8]) -> Result<Config, Problem> {
    let doc = json::parse(text).map_err(|e| Problem {
        path: String::new(),
        at: Some((e.line, e.col)),
        message: e.message,
    })?;
    if !matches!(doc.value, Value::Object(_)) {
        return Err(Problem {
            path: String::new(),
            at: Some((doc.line, doc.col)),
            message: format!("the config is {}, not an object", doc.value.kind()),
        });
    }
    let mut r = Reader::default();
    let mut c = Config::default();
    r.twice(&doc, "", TOP);
    r.unknown(&doc, "", TOP);

    c.hostname = r.valid_string(
        doc.get("vm_hostname"),
        "vm_hostname",
        valid_hostname,
        "hostname",
    );
    if let Some(conf) = r.object(doc.get("vm_conf"), "vm_conf") {
        r.twice(conf, "vm_conf", VM_CONF);
        r.unknown(conf, "vm_conf", VM_CONF);
        let p = conf.get("password");
        if let Some(h) = r.string(p, "vm_conf.password") {
            if valid_hash(h) {
                c.password = Some(h.to_string());
            } else {
                r.bad(
                    p,
                    "vm_conf.password",
                    "not a crypt hash ($6$..., $y$...); plain passwords are refused".into(),
                );
            }
        }
        c.user = r.valid_string(conf.get("user"), "vm_conf.user", valid_login, "user name");
        keys(&mut r, conf.get("ssh_key"), &mut c);
        commands(&mut r, conf.get("run"), &mut c);
        let a = conf.get("script_args");
        if let Some(args) = r.string(a, "vm_conf.script_args") {
            if args.contains(['\n', '\r', '\0']) {
                r.bad(
                    a,
                    "vm_conf.script_args",
                    "the arguments must be one line".into(),
                );
            } else {
                c.script_args = Some(args.to_string());
            }
        }
    }
    for (i, node) in r
        .list(doc.get("nameservers"), "nameservers")
        .into_iter()
        .enumerate()
    {
        let path = format!("nameservers[{i}]");
        match node.as_str().map(|s| s.parse::<IpAddr>()) {
            Some(Ok(a)) if !c.nameservers.contains(&a) => c.nameservers.push(a),
            Some(Ok(_)) => {}
            Some(Err(_)) => r.bad(
                Some(node),
                &path,
                format!(
                    "{:?} is not an IP address",
                    node.as_str().unwrap_or_default()
                ),
            ),
            None => r.bad(
                Some(node),
                &path,
                format!(
                    "expected an IP address (a string), found {}",
                    node.value.kind()
                ),
            ),
        }
    }
    vifs(&mut r, &doc, &mut c);
    c.problems = r.problems;
    c.notes = r.notes;
    Ok(c)
}

/// `vm_conf.ssh_key`: one key per non-empty line (LF or CRLF), or a list of
/// such strings. Each key is checked on its own.
fn keys(r: &mut Reader, node: Option<&Node>, c: &mut Config) {
    let mut take = |r: &mut Reader, n: &Node, path: &str, text: &str| {
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.is_empty() {
            r.bad(Some(n), path, "empty SSH key".into());
        }
        for (j, line) in lines.iter().enumerate() {
            match check_key_line(line) {
                Ok(k) if !c.keys.contains(&k) => c.keys.push(k),
                Ok(_) => {}
                Err(why) if lines.len() > 1 => {
                    r.bad(Some(n), path, format!("line {}: {why}", j + 1))
                }
                Err(why) => r.bad(Some(n), path, why),
            }
        }
    };
    let Some(n) = node else {
        return;
    };
    match &n.value {
        Value::Null => {}
        Value::String(s) => take(r, n, "vm_conf.ssh_key", s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("vm_conf.ssh_key[{i}]");
                match &item.value {
                    Value::String(s) => take(r, item, &path, s),
                    other => r.bad(
                        Some(item),
                        &path,
                        format!("expected an SSH key (a string), found {}", other.kind()),
                    ),
                }
            }
        }
        other => r.bad(
            Some(n),
            "vm_conf.ssh_key",
            format!(
                "expected SSH keys (a string or a list), found {}",
                other.kind()
            ),
        ),
    }
}

/// `vm_conf.run`: a shell command (a list is taken as several).
fn commands(r: &mut Reader, node: Option<&Node>, c: &mut Config) {
    match node.map(|n| &n.value) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if s.trim().is_empty() {
                r.bad(node, "vm_conf.run", "empty command".into());
            } else {
                c.run.push(s.clone());
            }
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("vm_conf.run[{i}]");
                match item.as_str() {
                    Some(s) if !s.trim().is_empty() => c.run.push(s.to_string()),
                    Some(_) => r.bad(Some(item), &path, "empty command".into()),
                    None => r.bad(
                        Some(item),
                        &path,
                        format!("expected a command (a string), found {}", item.value.kind()),
                    ),
                }
            }
        }
        Some(other) => r.bad(
            node,
            "vm_conf.run",
            format!("expected a command (a string), found {}", other.kind()),
        ),
    }
}

#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
    notes: Vec<Problem>,
}

impl Reader {
    /// Notes the fields of `obj` that are not among `known`: ignored, and
    /// said so (the platform writes none; a field of an earlier version
    /// of ours names the platform's).
    fn unknown(&mut self, obj: &Node, base: &str, known: &[&str]) {
        let Value::Object(members) = &obj.value else {
            return;
        };
        for (k, _) in members {
            let name = k.name.as_str();
            if known.contains(&name) || (base.is_empty() && OURS.contains(&name)) {
                continue;
            }
            let path = if base.is_empty() {
                name.to_string()
            } else {
                format!("{base}.{name}")
            };
            let message = match NOT_OURS
                .iter()
                .find(|(old, _)| base.is_empty() && *old == name)
            {
                Some((_, real)) => format!("unknown field, ignored (the platform's is {real})"),
                None => "unknown field, ignored".to_string(),
            };
            self.notes.push(Problem {
                path,
                at: Some((k.line, k.col)),
                message,
            });
        }
    }

    fn bad(&mut self, node: Option<&Node>, path: &str, message: String) {
        self.problems.push(Problem {
            path: path.to_string(),
            at: node.map(|n| (n.line, n.col)),
            message,
        });
    }

    /// A field of the kind `take` accepts: `None` when absent or null (no
    /// problem), or of another kind (a problem naming `kind`).
    fn typed<'n, T>(
        &mut self,
        node: Option<&'n Node>,
        path: &str,
        kind: &str,
        take: impl FnOnce(&'n Node) -> Option<T>,
    ) -> Option<T> {
        let n = node?;
        if matches!(n.value, Value::Null) {
            return None;
        }
        let taken = take(n);
        if taken.is_none() {
            self.bad(
                node,
                path,
                format!("expected {kind}, found {}", n.value.kind()),
            );
        }
        taken
    }

    /// A string field.
    fn string<'n>(&mut self, node: Option<&'n Node>, path: &str) -> Option<&'n str> {
        self.typed(node, path, "a string", |n| match &n.value {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// A string field that `valid` accepts; another is a problem saying
    /// it is not a valid `what`.
    fn valid_string(
        &mut self,
        node: Option<&Node>,
        path: &str,
        valid: fn(&str) -> bool,
        what: &str,
    ) -> Option<String> {
        let s = self.string(node, path)?;
        if valid(s) {
            return Some(s.to_string());
        }
        self.bad(node, path, format!("{s:?} is not a valid {what}"));
        None
    }

    fn object<'n>(&mut self, node: Option<&'n Node>, path: &str) -> Option<&'n Node> {
        self.typed(node, path, "an object", |n| {
            matches!(n.value, Value::Object(_)).then_some(n)
        })
    }

    fn list<'n>(&mut self, node: Option<&'n Node>, path: &str) -> Vec<&'n Node> {
        self.typed(node, path, "a list", |n| match &n.value {
            Value::Array(items) => Some(items.iter().collect()),
            _ => None,
        })
        .unwrap_or_default()
    }

    /// Reports known keys given twice in an object (the last one is used).
    fn twice(&mut self, obj: &Node, base: &str, known: &[&str]) {
        let Value::Object(members) = &obj.value else {
            return;
        };
        let mut seen = BTreeSet::new();
        for (k, _) in members {
            if known.contains(&k.name.as_str()) && !seen.insert(k.name.as_str()) {
                let path = if base.is_empty() {
                    k.name.clone()
                } else {
                    format!("{base}.{}", k.name)
                };
                self.problems.push(Problem {
                    path,
                    at: Some((k.line, k.col)),
                    message: "given twice: the last one is used".into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
