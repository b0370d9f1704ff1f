//! The platform's JSON config (`/gandi/config`), read field by field.
//!
//! Each field, and each element of a list (each key, each resolver, each
//! interface, each address), is checked on its own: a bad one is left out
//! and reported with its path and place (`3:17: vif[0].pna[1].pna_address:
//! "x" is not an IP address`), and everything else is kept. Only a
//! document that is not JSON at all (or not an object) yields nothing.
//! Unknown fields are ignored; `null` means "not given".

use crate::json::{self, Node, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

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
    /// The root password, as a crypt(3) hash.
    pub password: Option<String>,
    /// Root's keys: `vm_conf.ssh_key`, then `keys`.
    pub root_keys: Vec<String>,
    /// A user to create, given `keys`.
    pub login: Option<String>,
    pub keys: Vec<String>,
    pub nameservers: Vec<IpAddr>,
    pub vifs: Vec<Vif>,
    /// Interfaces whose own config could not be used (a bad address, an
    /// entry that could not be read), with why: they get DHCP so that the
    /// VM stays reachable.
    pub unusable: BTreeMap<u32, String>,
    /// Whether the `vif` field was given at all.
    pub has_vif: bool,
    /// The commands for the first boot (`run`: a string or a list).
    pub run: Vec<String>,
    pub problems: Vec<Problem>,
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

    /// Whether any address of the config is IPv4: a config with none is
    /// IPv6-only.
    pub fn has_ipv4(&self) -> bool {
        self.vifs
            .iter()
            .flat_map(|v| &v.addrs)
            .any(|a| a.addr.is_ipv4())
    }
}

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
    r.twice(
        &doc,
        "",
        &[
            "vm_hostname",
            "vm_conf",
            "nameservers",
            "vif",
            "login",
            "keys",
            "run",
        ],
    );

    if let Some(h) = r.string(doc.get("vm_hostname"), "vm_hostname") {
        if valid_hostname(h) {
            c.hostname = Some(h.to_string());
        } else {
            r.bad(
                doc.get("vm_hostname"),
                "vm_hostname",
                format!("{h:?} is not a valid hostname"),
            );
        }
    }
    if let Some(conf) = r.object(doc.get("vm_conf"), "vm_conf") {
        r.twice(conf, "vm_conf", &["password", "ssh_key"]);
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
        let k = conf.get("ssh_key");
        if let Some(key) = r.string(k, "vm_conf.ssh_key") {
            match check_key_line(key) {
                Ok(line) => c.root_keys.push(line),
                Err(why) => r.bad(k, "vm_conf.ssh_key", why),
            }
        }
    }
    for (i, node) in r.list(doc.get("keys"), "keys").into_iter().enumerate() {
        let path = format!("keys[{i}]");
        if let Some(key) = r.string(Some(node), &path) {
            match check_key_line(key) {
                Ok(line) => {
                    if !c.keys.contains(&line) {
                        c.keys.push(line.clone());
                    }
                    if !c.root_keys.contains(&line) {
                        c.root_keys.push(line);
                    }
                }
                Err(why) => r.bad(Some(node), &path, why),
            }
        } else if matches!(node.value, Value::Null) {
            r.bad(Some(node), &path, "null is not an SSH key".into());
        }
    }
    if let Some(l) = r.string(doc.get("login"), "login") {
        if valid_login(l) {
            c.login = Some(l.to_string());
        } else {
            r.bad(
                doc.get("login"),
                "login",
                format!("{l:?} is not a valid user name"),
            );
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
    match doc.get("run").map(|n| &n.value) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if s.trim().is_empty() {
                r.bad(doc.get("run"), "run", "empty command".into());
            } else {
                c.run.push(s.clone());
            }
        }
        Some(Value::Array(items)) => {
            for (i, node) in items.iter().enumerate() {
                let path = format!("run[{i}]");
                match node.as_str() {
                    Some(s) if !s.trim().is_empty() => c.run.push(s.to_string()),
                    Some(_) => r.bad(Some(node), &path, "empty command".into()),
                    None => r.bad(
                        Some(node),
                        &path,
                        format!("expected a command (a string), found {}", node.value.kind()),
                    ),
                }
            }
        }
        Some(other) => r.bad(
            doc.get("run"),
            "run",
            format!(
                "expected a command or a list of commands, found {}",
                other.kind()
            ),
        ),
    }
    c.problems = r.problems;
    Ok(c)
}

fn vifs(r: &mut Reader, doc: &Node, c: &mut Config) {
    let field = doc.get("vif");
    c.has_vif = field.is_some_and(|f| !matches!(f.value, Value::Null));
    if let Some(f) = field
        && !matches!(f.value, Value::Array(_) | Value::Null)
    {
        r.bad(
            field,
            "vif",
            format!("expected a list of interfaces, found {}", f.value.kind()),
        );
        c.unusable
            .insert(0, "the vif field could not be read".into());
        return;
    }
    let mut seen = BTreeSet::new();
    let mut lost_entry = false;
    for (i, node) in r.list(field, "vif").into_iter().enumerate() {
        let base = format!("vif[{i}]");
        if !matches!(node.value, Value::Object(_)) {
            r.bad(
                Some(node),
                &base,
                format!(
                    "expected an interface (an object), found {}",
                    node.value.kind()
                ),
            );
            lost_entry = true;
            continue;
        }
        r.twice(node, &base, &["vif_number", "mac", "pna"]);
        let num_node = node.get("vif_number");
        let number = match num_node.map(|n| (&n.value, n.as_u64())) {
            Some((_, Some(n))) if n <= MAX_VIF => n as u32,
            Some((Value::Number(n), _)) => {
                r.bad(
                    num_node,
                    &format!("{base}.vif_number"),
                    format!("{n} is not an interface number from 0 to {MAX_VIF}"),
                );
                lost_entry = true;
                continue;
            }
            Some((v, _)) => {
                r.bad(
                    num_node,
                    &format!("{base}.vif_number"),
                    format!("expected a number, found {}", v.kind()),
                );
                lost_entry = true;
                continue;
            }
            None => {
                r.bad(Some(node), &base, "vif_number is missing".into());
                lost_entry = true;
                continue;
            }
        };
        if !seen.insert(number) {
            r.bad(
                num_node,
                &format!("{base}.vif_number"),
                format!("eth{number} appears twice: this entry is left out"),
            );
            continue;
        }
        let mac_path = format!("{base}.mac");
        let mac = match r.string(node.get("mac"), &mac_path) {
            Some(m) if valid_mac(m) => Some(m.to_ascii_lowercase()),
            Some(m) => {
                r.bad(
                    node.get("mac"),
                    &mac_path,
                    format!("{m:?} is not a MAC address: eth{number} is matched by name"),
                );
                None
            }
            None => None,
        };
        let mut addrs = Vec::new();
        let mut bad_addr = None;
        for (j, pna) in r
            .list(node.get("pna"), &format!("{base}.pna"))
            .into_iter()
            .enumerate()
        {
            let path = format!("{base}.pna[{j}]");
            match address(r, pna, &path) {
                Some(a) => addrs.push(a),
                None => bad_addr = Some(path),
            }
        }
        if let Some(path) = bad_addr
            && !addrs.iter().any(|a| a.addr.is_ipv4())
        {
            c.unusable
                .insert(number, format!("{path} could not be used"));
        }
        c.vifs.push(Vif { number, mac, addrs });
    }
    if lost_entry && !seen.contains(&0) {
        c.unusable.insert(
            0,
            "an interface entry could not be read, and none names eth0".into(),
        );
    }
}

fn address(r: &mut Reader, pna: &Node, path: &str) -> Option<Addr> {
    if !matches!(pna.value, Value::Object(_)) {
        r.bad(
            Some(pna),
            path,
            format!(
                "expected an address (an object), found {}",
                pna.value.kind()
            ),
        );
        return None;
    }
    let a_node = pna.get("pna_address");
    let addr = match r.string(a_node, &format!("{path}.pna_address")) {
        Some(s) => match s.parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => {
                r.bad(
                    a_node,
                    &format!("{path}.pna_address"),
                    format!("{s:?} is not an IP address"),
                );
                return None;
            }
        },
        None => {
            if a_node.is_none() {
                r.bad(Some(pna), path, "pna_address is missing".into());
            }
            return None;
        }
    };
    let pbn = r.object(pna.get("pbn"), &format!("{path}.pbn"));
    let Some(pbn) = pbn else {
        if pna.get("pbn").is_none() {
            r.bad(Some(pna), path, "pbn is missing".into());
        }
        return None;
    };
    let n_node = pbn.get("pbn_network");
    let npath = format!("{path}.pbn.pbn_network");
    let prefix = match r.string(n_node, &npath) {
        Some(n) => match parse_network(n) {
            Some((net, _)) if net.is_ipv4() != addr.is_ipv4() => {
                r.bad(n_node, &npath, "not of the address's family".into());
                return None;
            }
            Some((_, len)) => len,
            None => {
                r.bad(n_node, &npath, format!("{n:?} is not ADDR/LEN"));
                return None;
            }
        },
        None => {
            if n_node.is_none() {
                r.bad(
                    Some(pbn),
                    &format!("{path}.pbn"),
                    "pbn_network is missing".into(),
                );
            }
            return None;
        }
    };
    let g_node = pbn.get("pbn_gateway");
    let gpath = format!("{path}.pbn.pbn_gateway");
    let gateway = match r.string(g_node, &gpath) {
        None => None,
        Some(g) => match g.parse::<IpAddr>() {
            Ok(gw) if gw.is_ipv4() == addr.is_ipv4() => Some(gw),
            Ok(_) => {
                r.bad(g_node, &gpath, "not of the address's family".into());
                return None;
            }
            Err(_) => {
                r.bad(g_node, &gpath, format!("{g:?} is not an IP address"));
                return None;
            }
        },
    };
    Some(Addr {
        addr,
        prefix,
        gateway,
    })
}

#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    fn bad(&mut self, node: Option<&Node>, path: &str, message: String) {
        self.problems.push(Problem {
            path: path.to_string(),
            at: node.map(|n| (n.line, n.col)),
            message,
        });
    }

    /// A string field: `None` when absent or null (no problem), or of
    /// another type (a problem).
    fn string<'n>(&mut self, node: Option<&'n Node>, path: &str) -> Option<&'n str> {
        match node.map(|n| &n.value) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.bad(
                    node,
                    path,
                    format!("expected a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn object<'n>(&mut self, node: Option<&'n Node>, path: &str) -> Option<&'n Node> {
        match node.map(|n| &n.value) {
            None | Some(Value::Null) => None,
            Some(Value::Object(_)) => node,
            Some(other) => {
                self.bad(
                    node,
                    path,
                    format!("expected an object, found {}", other.kind()),
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: Option<&'n Node>, path: &str) -> Vec<&'n Node> {
        match node.map(|n| &n.value) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(other) => {
                self.bad(
                    node,
                    path,
                    format!("expected a list, found {}", other.kind()),
                );
                Vec::new()
            }
        }
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

/// A crypt(3) hash we accept for a password: `$id$...` (MD5, SHA-256,
/// SHA-512, yescrypt, bcrypt) of printable characters without `:`, or
/// `!`/`*` (locked). Plain text is never accepted.
pub fn valid_hash(h: &str) -> bool {
    if h == "!" || h == "*" {
        return true;
    }
    let ok_chars = h
        .chars()
        .all(|c| c.is_ascii_graphic() && c != ':' && c != '\\');
    let parts: Vec<&str> = h.split('$').collect();
    ok_chars
        && h.len() >= 13
        && h.len() <= 512
        && parts.len() >= 4
        && parts[0].is_empty()
        && matches!(
            parts[1],
            "1" | "5" | "6" | "y" | "gy" | "7" | "2a" | "2b" | "2y"
        )
        && parts.last().is_some_and(|p| p.len() >= 8)
}

/// A hostname (RFC 1123 labels, at most 253 characters).
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn key_type(word: &str) -> bool {
    (word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-"))
        && word.len() <= 64
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-@.".contains(c))
}

fn key_blob(word: &str) -> bool {
    word.len() >= 16
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
}

/// Splits the options of an `authorized_keys` line from the rest: options
/// are `name` or `name="value"` (a value may hold blanks and `\"`), joined
/// by commas, up to the first blank outside quotes.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&line[..i], line[i..].trim_start())),
            _ => {}
        }
    }
    Err(if quoted {
        "an option's quoted value is not closed".into()
    } else {
        "no key after the options".into()
    })
}

/// The options sshd knows in `authorized_keys` (sshd(8)).
const KEY_OPTIONS: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "command",
    "environment",
    "expiry-time",
    "from",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "permitlisten",
    "permitopen",
    "port-forwarding",
    "principals",
    "pty",
    "restrict",
    "tunnel",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

fn valid_options(opts: &str) -> bool {
    // name[="value"](,name[="value"])*
    let mut rest = opts;
    loop {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        if name_end == 0 || !KEY_OPTIONS.contains(&rest[..name_end].to_ascii_lowercase().as_str()) {
            return false;
        }
        rest = &rest[name_end..];
        if let Some(r) = rest.strip_prefix("=\"") {
            let mut escaped = false;
            let mut close = None;
            for (i, c) in r.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(i) = close else {
                return false;
            };
            rest = &r[i + 1..];
        }
        if rest.is_empty() {
            return true;
        }
        match rest.strip_prefix(',') {
            Some(r) => rest = r,
            None => return false,
        }
    }
}

/// Checks an `authorized_keys` line: `[options] type base64 [comment]`,
/// one line. Returns it trimmed, or why it is refused.
pub fn check_key_line(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.contains(['\n', '\r', '\0']) {
        return Err("an SSH key must be one line".into());
    }
    if k.is_empty() {
        return Err("empty SSH key".into());
    }
    let first = k.split_whitespace().next().unwrap_or_default();
    let rest = if key_type(first) {
        k
    } else {
        let Ok((opts, rest)) = split_options(k) else {
            return Err("not an SSH public key line (type, then the key in base64)".into());
        };
        if !valid_options(opts) {
            return Err(if opts.contains('=') || opts.contains(',') {
                format!("{opts:?} are not authorized_keys options")
            } else {
                "not an SSH public key line (type, then the key in base64)".into()
            });
        }
        rest
    };
    let mut words = rest.split_whitespace();
    match (words.next(), words.next()) {
        (Some(t), Some(b)) if key_type(t) && key_blob(b) => Ok(k.to_string()),
        (Some(t), _) if !key_type(t) => Err(format!("{t:?} is not an SSH key type")),
        _ => Err("not an SSH public key line (type, then the key in base64)".into()),
    }
}

/// A user name we create.
pub fn valid_login(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 32
        && l.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && l.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && l != "root"
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
pub fn valid_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `ADDR/LEN`.
pub fn parse_network(n: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = n.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    if len.is_empty() || len.len() > 3 || !len.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "vm_hostname": "web1.example.net",
        "vm_conf": {"password": "$6$saltsalt$abcdefghijklmnopqrstuv", "ssh_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE admin@x"},
        "nameservers": ["192.0.2.53", "2001:db8::53"],
        "vif": [{"vif_number": 0, "pna": [
            {"pna_address": "192.0.2.10", "pbn": {"pbn_network": "192.0.2.0/24", "pbn_gateway": "192.0.2.1"}},
            {"pna_address": "2001:db8::10", "pbn": {"pbn_network": "2001:db8::/64", "pbn_gateway": "2001:db8::1"}}
        ]}],
        "login": "alice",
        "keys": ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ alice@x"],
        "run": ["touch /tmp/mark", "echo done"],
        "something_new": {"ignored": true}
    }"#;

    #[test]
    fn reads_known_fields_and_ignores_unknown_ones() {
        let c = read(GOOD.as_bytes()).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.hostname.as_deref(), Some("web1.example.net"));
        assert_eq!(c.vifs[0].addrs.len(), 2);
        assert_eq!(c.run.len(), 2);
        assert_eq!(c.root_keys.len(), 2);
        assert_eq!(c.keys.len(), 1);
        let c = read(br#"{"run": "echo one", "vm_conf": null}"#).unwrap();
        assert_eq!(c.run, vec!["echo one"]);
        assert_eq!(read(b"{}").unwrap(), Config::default());
        assert!(read(b"[1]").is_err());
        let e = read(b"{not json").unwrap_err();
        assert_eq!(e.at, Some((1, 2)));
    }

    #[test]
    fn every_bad_element_is_reported_and_the_rest_kept() {
        let text = r#"{"vm_hostname": "bad_host!", "vm_conf": {"password": "hunter2", "ssh_key": 5},
            "nameservers": ["x", "192.0.2.1", 7], "login": "Root",
            "keys": ["not a key", "from=\"10.0.0.0/8\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE ok"],
            "vif": [{"vif_number": 1, "mac": "zz", "pna": [{"pna_address": "10.0.0.1", "pbn": {"pbn_network": "2001:db8::/64"}}]},
                    {"vif_number": 1}, {"vif_number": "zero"}, {"vif_number": 4294967295},
                    {"vif_number": 2, "pna": [{"pna_address": "10.0.2.5", "pbn": {"pbn_network": "10.0.2.0/24"}}]}],
            "run": ["ok", "", 3]}"#;
        let c = read(text.as_bytes()).unwrap();
        let paths: Vec<&str> = c.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "vm_hostname",
                "vm_conf.password",
                "vm_conf.ssh_key",
                "keys[0]",
                "login",
                "nameservers[0]",
                "nameservers[2]",
                "vif[0].mac",
                "vif[0].pna[0].pbn.pbn_network",
                "vif[1].vif_number",
                "vif[2].vif_number",
                "vif[3].vif_number",
                "run[1]",
                "run[2]",
            ]
        );
        assert!(c.problems.iter().all(|p| p.at.is_some()));
        assert_eq!(c.nameservers, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.root_keys.len(), 1);
        assert!(c.root_keys[0].starts_with("from="));
        let numbers: Vec<u32> = c.vifs.iter().map(|v| v.number).collect();
        assert_eq!(numbers, vec![1, 2]);
        assert_eq!(c.vifs[1].addrs.len(), 1);
        // eth1 had a bad address and no IPv4 left; eth0 is named by none
        // of the entries, one of which could not be read.
        assert!(c.unusable.contains_key(&1));
        assert!(c.unusable.contains_key(&0));
        assert_eq!(c.run, vec!["ok"]);
    }

    #[test]
    fn key_lines() {
        for good in [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ me@host with blanks",
            r#"from="10.0.0.0/8" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE x"#,
            r#"command="echo \"hi there\"",no-pty ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAy"#,
            "restrict sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9w",
        ] {
            assert!(check_key_line(good).is_ok(), "{good}");
        }
        assert_eq!(
            check_key_line("not a key").unwrap_err(),
            "not an SSH public key line (type, then the key in base64)"
        );
        for bad in [
            "",
            "hunter2",
            "ssh-ed25519",
            "ssh-ed25519 short",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE\nssh-rsa AAAA",
            r#"from="10.0.0.0/8 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"#,
            r#"bad option ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"#,
        ] {
            assert!(check_key_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes() {
        assert!(valid_hash(
            "$6$rounds=5000$saltsalt$abcdefghijklmnopqrstuvwxyz"
        ));
        assert!(valid_hash("$y$j9T$abcdefgh$ABCDEFGHIJKLMNOPQRSTUV"));
        assert!(valid_hash("!"));
        assert!(!valid_hash("hunter2"));
        assert!(!valid_hash("$6$salt$has:colon:inside"));
        assert!(!valid_hash("$6$salt$short"));
        assert!(!valid_hash("$9$salt$abcdefghijkl"));
    }
}
