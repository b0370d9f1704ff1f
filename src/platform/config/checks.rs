//! The checks of single values: password hashes, hostnames, logins, MAC
//! addresses, networks and `authorized_keys` lines (with the options
//! sshd knows).

use std::net::IpAddr;

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
