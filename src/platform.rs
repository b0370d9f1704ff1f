//! The platform's JSON config (`/gandi/config`): typed structures for the
//! known fields, unknown fields ignored, and checks that name the place of
//! every problem.

use serde::Deserialize;
use std::net::IpAddr;

/// The config the platform writes. Every field is optional: a missing one
/// means "nothing to do" for its step.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Config {
    #[serde(default)]
    pub vm_hostname: Option<String>,
    #[serde(default)]
    pub vm_conf: VmConf,
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub vif: Vec<Vif>,
    /// A user to create, with `keys`.
    #[serde(default)]
    pub login: Option<String>,
    /// SSH keys (for `login` when given, and for root).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Commands for the first boot: a string or a list.
    #[serde(default)]
    pub run: Option<Run>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct VmConf {
    /// The root password, as a crypt(3) hash.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub ssh_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Vif {
    pub vif_number: u32,
    /// When given, the interface is matched by MAC address.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub pna: Vec<Pna>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Pna {
    pub pna_address: String,
    pub pbn: Pbn,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Pbn {
    /// `ADDR/LEN`.
    pub pbn_network: String,
    #[serde(default)]
    pub pbn_gateway: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Run {
    One(String),
    Many(Vec<String>),
}

impl Run {
    pub fn commands(&self) -> Vec<String> {
        match self {
            Run::One(c) => vec![c.clone()],
            Run::Many(v) => v.clone(),
        }
    }
}

/// One problem, with its place in the document (`vif[0].pna[1].pna_address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    /// `line:column` for syntax and type errors.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((l, c)) = self.at {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Parses the config: syntax and type errors come back as one problem with
/// its path and place.
pub fn parse(text: &[u8]) -> Result<Config, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Problem {
            path,
            at: Some((inner.line(), inner.column())),
            message: strip_position(&inner.to_string()),
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
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

/// An SSH public key line: `type base64 [comment]`, one line.
pub fn valid_ssh_key(k: &str) -> bool {
    let k = k.trim();
    let mut words = k.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return false;
    };
    !k.contains('\n')
        && !k.contains('\r')
        && (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && blob.len() >= 16
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
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
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Checks the values (after a successful parse). Every problem is listed.
pub fn check(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut bad = |path: String, message: String| {
        problems.push(Problem {
            path,
            at: None,
            message,
        })
    };
    if let Some(h) = &config.vm_hostname
        && !valid_hostname(h)
    {
        bad(
            "vm_hostname".into(),
            format!("{h:?} is not a valid hostname"),
        );
    }
    if let Some(p) = &config.vm_conf.password
        && !valid_hash(p)
    {
        bad(
            "vm_conf.password".into(),
            "not a crypt hash ($6$..., $y$...); plain passwords are refused".into(),
        );
    }
    if let Some(k) = &config.vm_conf.ssh_key
        && !valid_ssh_key(k)
    {
        bad(
            "vm_conf.ssh_key".into(),
            "not an SSH public key line".into(),
        );
    }
    for (i, k) in config.keys.iter().enumerate() {
        if !valid_ssh_key(k) {
            bad(format!("keys[{i}]"), "not an SSH public key line".into());
        }
    }
    if let Some(l) = &config.login
        && !valid_login(l)
    {
        bad("login".into(), format!("{l:?} is not a valid user name"));
    }
    for (i, ns) in config.nameservers.iter().enumerate() {
        if ns.parse::<IpAddr>().is_err() {
            bad(
                format!("nameservers[{i}]"),
                format!("{ns:?} is not an IP address"),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, vif) in config.vif.iter().enumerate() {
        if !seen.insert(vif.vif_number) {
            bad(
                format!("vif[{i}].vif_number"),
                format!("{} appears twice", vif.vif_number),
            );
        }
        if let Some(m) = &vif.mac
            && !valid_mac(m)
        {
            bad(
                format!("vif[{i}].mac"),
                format!("{m:?} is not a MAC address"),
            );
        }
        for (j, pna) in vif.pna.iter().enumerate() {
            let base = format!("vif[{i}].pna[{j}]");
            let addr = pna.pna_address.parse::<IpAddr>();
            if addr.is_err() {
                bad(
                    format!("{base}.pna_address"),
                    format!("{:?} is not an IP address", pna.pna_address),
                );
            }
            match parse_network(&pna.pbn.pbn_network) {
                None => bad(
                    format!("{base}.pbn.pbn_network"),
                    format!("{:?} is not ADDR/LEN", pna.pbn.pbn_network),
                ),
                Some((net, _)) => {
                    if let Ok(a) = addr
                        && a.is_ipv4() != net.is_ipv4()
                    {
                        bad(
                            format!("{base}.pbn.pbn_network"),
                            "not of the address's family".into(),
                        );
                    }
                }
            }
            if let Some(gw) = &pna.pbn.pbn_gateway
                && gw.parse::<IpAddr>().is_err()
            {
                bad(
                    format!("{base}.pbn.pbn_gateway"),
                    format!("{gw:?} is not an IP address"),
                );
            }
        }
    }
    if let Some(Run::Many(cmds)) = &config.run {
        for (i, c) in cmds.iter().enumerate() {
            if c.trim().is_empty() {
                bad(format!("run[{i}]"), "empty command".into());
            }
        }
    }
    problems
}

/// Parses and checks: the config, or every problem found.
pub fn load(text: &[u8]) -> Result<Config, Vec<Problem>> {
    let config = parse(text).map_err(|p| vec![p])?;
    let problems = check(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
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
    fn parses_known_fields_and_ignores_unknown_ones() {
        let c = load(GOOD.as_bytes()).unwrap();
        assert_eq!(c.vm_hostname.as_deref(), Some("web1.example.net"));
        assert_eq!(c.vif[0].pna.len(), 2);
        assert_eq!(c.run.unwrap().commands().len(), 2);
        let c = load(br#"{"run": "echo one"}"#).unwrap();
        assert_eq!(c.run.unwrap().commands(), vec!["echo one"]);
        assert_eq!(load(b"{}").unwrap(), Config::default());
    }

    #[test]
    fn a_wrong_type_names_the_path_and_place() {
        let err = parse(br#"{"vif": [{"vif_number": 0, "pna": [{"pna_address": 5, "pbn": {"pbn_network": "x"}}]}]}"#)
            .unwrap_err();
        assert_eq!(err.path, "vif[0].pna[0].pna_address");
        assert!(err.at.is_some());
        let err = parse(b"{\"vm_hostname\": \n  [1]}").unwrap_err();
        assert_eq!(err.path, "vm_hostname");
        assert_eq!(err.at.map(|a| a.0), Some(2));
        let err = parse(b"{not json").unwrap_err();
        assert!(err.message.contains("key must be a string"), "{err}");
    }

    #[test]
    fn values_are_checked() {
        let text = r#"{"vm_hostname": "bad_host!", "vm_conf": {"password": "hunter2"},
            "nameservers": ["x"], "login": "Root",
            "vif": [{"vif_number": 1, "mac": "zz", "pna": [{"pna_address": "10.0.0.1", "pbn": {"pbn_network": "2001:db8::/64"}}]},
                    {"vif_number": 1}]}"#;
        let problems = load(text.as_bytes()).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "vm_hostname",
                "vm_conf.password",
                "login",
                "nameservers[0]",
                "vif[0].mac",
                "vif[0].pna[0].pbn.pbn_network",
                "vif[1].vif_number"
            ]
        );
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
