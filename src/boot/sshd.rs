//! sshd's settings: which keys the admin set (in `sshd_config` and every
//! file it includes), and where ours may go without overriding them.
//!
//! sshd takes the first value it reads of most keys, while `ListenAddress`
//! adds up; a key set inside a `Match` block applies to the connections it
//! matches. So ours are written only for the keys the admin set nowhere
//! (a `ListenAddress` of theirs means none of ours), and only where sshd
//! reads them in its global section: a drop-in of `sshd_config.d` when
//! `sshd_config` includes that folder before any `Match`, else our block
//! at the top of `sshd_config`.

use crate::base::block;
use crate::base::glob::glob_match;
use crate::base::tree::Tree;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The folder sshd's relative `Include` paths are taken from.
pub const SSH_DIR: &str = "/etc/ssh";
pub const CONFIG: &str = "/etc/ssh/sshd_config";
/// Our drop-in.
pub const DROPIN: &str = "/etc/ssh/sshd_config.d/50-gandi.conf";

/// How deep `Include` may nest (sshd's own limit is 16).
const MAX_DEPTH: usize = 16;
/// The most one settings file may hold.
const MAX_FILE: u64 = 1 << 20;

/// What the admin's files say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Keys (lower case) set anywhere, `Match` blocks included.
    pub keys: BTreeSet<String>,
    /// Whether `sshd_config` includes `sshd_config.d` in its global
    /// section (before its first `Match`).
    pub includes_dropins: bool,
    /// Files named by an `Include` that could not be read (named in the
    /// step's detail: a key set there is not seen).
    pub unread: Vec<String>,
}

/// The keyword and arguments of one line (`Key value`, `Key=value`);
/// `None` for blanks and comments.
pub fn directive(line: &str) -> Option<(String, &str)> {
    let l = line.trim_start();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let end = l
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(l.len());
    let key = l[..end].to_ascii_lowercase();
    let rest = l[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    (!key.is_empty()).then_some((key, rest))
}

/// The admin's settings in `sshd_config` beneath `t` and the files it
/// includes; our own drop-in and our block are not the admin's.
pub fn admin_settings(t: &Tree) -> Admin {
    let mut admin = Admin::default();
    let Ok(text) = t.read_limited(CONFIG, MAX_FILE) else {
        return admin;
    };
    let text = String::from_utf8_lossy(&text);
    let text = without_our_block(&text);
    let mut in_match = false;
    for line in text.lines() {
        let Some((key, args)) = directive(line) else {
            continue;
        };
        if key == "match" {
            in_match = true;
            continue;
        }
        if key == "include" {
            for pattern in words(args) {
                if !in_match && names_dropins(pattern) {
                    admin.includes_dropins = true;
                }
                include(t, pattern, 1, &mut admin);
            }
            continue;
        }
        admin.keys.insert(key);
    }
    admin
}

/// `sshd_config`'s text without our block (when intact).
fn without_our_block(text: &str) -> String {
    match block::find(text, &block::SSHD) {
        block::Block::Intact { begin, end, .. } => text
            .split_inclusive('\n')
            .enumerate()
            .filter(|(i, _)| *i < begin || *i > end)
            .map(|(_, l)| l)
            .collect(),
        _ => text.to_string(),
    }
}

/// The arguments of a line, split on blanks (quotes as sshd reads them).
fn words(args: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            out.push(&r[..end]);
            rest = r.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(&rest[..end]);
            rest = rest[end..].trim_start();
        }
    }
    out
}

/// Whether an `Include` pattern covers our drop-in.
fn names_dropins(pattern: &str) -> bool {
    let path = absolute(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return false;
    };
    dir == Path::new(DROPIN).parent().unwrap_or(Path::new("/"))
        && Path::new(DROPIN)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|ours| glob_match(name, ours))
}

fn absolute(pattern: &str) -> PathBuf {
    if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        Path::new(SSH_DIR).join(pattern)
    }
}

/// Reads the files an `Include` pattern names (a glob in its last part),
/// in name order, as sshd does.
fn include(t: &Tree, pattern: &str, depth: usize, admin: &mut Admin) {
    if depth > MAX_DEPTH {
        admin
            .unread
            .push(format!("{pattern} (includes nested too deep)"));
        return;
    }
    let path = absolute(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let names: Vec<String> = if name.contains(['*', '?', '[']) {
        t.list(dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| glob_match(name, n))
            .collect()
    } else {
        vec![name.to_string()]
    };
    for n in names {
        let file = dir.join(&n);
        if file == Path::new(DROPIN) {
            continue;
        }
        let text = match t.read_limited(&file, MAX_FILE) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                admin.unread.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        for line in String::from_utf8_lossy(&text).lines() {
            let Some((key, args)) = directive(line) else {
                continue;
            };
            match key.as_str() {
                "match" => {}
                "include" => {
                    for p in words(args) {
                        include(t, p, depth + 1, admin);
                    }
                }
                _ => {
                    admin.keys.insert(key);
                }
            }
        }
    }
}

/// Of `ours` (`Key value` lines), those the admin leaves to us: keys they
/// set nowhere; no `ListenAddress` at all when they set one.
pub fn left_to_us<'a>(admin: &Admin, ours: &[&'a str]) -> (Vec<&'a str>, Vec<String>) {
    let mut kept = Vec::new();
    let mut theirs = BTreeSet::new();
    for line in ours {
        let Some((key, _)) = directive(line) else {
            continue;
        };
        if admin.keys.contains(&key) {
            theirs.insert(key);
        } else {
            kept.push(*line);
        }
    }
    (kept, theirs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let path = dir.path().join(p.trim_start_matches('/'));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let t = Tree::open(dir.path()).unwrap();
        (dir, t)
    }

    const OURS: &[&str] = &[
        "PermitRootLogin prohibit-password",
        "PermitEmptyPasswords no",
        "ListenAddress ::",
        "ListenAddress 0.0.0.0",
    ];

    #[test]
    fn the_admins_keys_anywhere_are_left_to_them() {
        let (_d, t) = tree(&[
            (
                CONFIG,
                "Include /etc/ssh/sshd_config.d/*.conf\n# PermitEmptyPasswords yes\n\
                 PermitRootLogin=no\nMatch User bob\n  ListenAddress 10.0.0.5\n",
            ),
            (
                "/etc/ssh/sshd_config.d/10-admin.conf",
                "Include extra/*.conf\n",
            ),
            ("/etc/ssh/extra/x.conf", "X11Forwarding no\n"),
            (DROPIN, "PermitEmptyPasswords no\n"),
        ]);
        let admin = admin_settings(&t);
        assert!(admin.includes_dropins);
        assert!(admin.keys.contains("permitrootlogin"));
        assert!(admin.keys.contains("listenaddress"));
        assert!(admin.keys.contains("x11forwarding"));
        assert!(
            !admin.keys.contains("permitemptypasswords"),
            "ours is not theirs"
        );
        let (kept, theirs) = left_to_us(&admin, OURS);
        assert_eq!(kept, vec!["PermitEmptyPasswords no"]);
        assert_eq!(theirs, vec!["listenaddress", "permitrootlogin"]);
    }

    #[test]
    fn an_include_inside_match_is_not_the_global_section() {
        let (_d, t) = tree(&[(
            CONFIG,
            "Port 22\nMatch Address 10.0.0.0/8\n Include /etc/ssh/sshd_config.d/*.conf\n",
        )]);
        let admin = admin_settings(&t);
        assert!(!admin.includes_dropins);
        let (_d, t) = tree(&[(CONFIG, "Include sshd_config.d/*.conf\n")]);
        assert!(admin_settings(&t).includes_dropins);
    }

    #[test]
    fn include_loops_end() {
        let (_d, t) = tree(&[
            (CONFIG, "Include /etc/ssh/a.conf\n"),
            ("/etc/ssh/a.conf", "Include /etc/ssh/a.conf\nBanner x\n"),
        ]);
        let admin = admin_settings(&t);
        assert!(admin.keys.contains("banner"));
        assert!(!admin.unread.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config(512))]

        /// Any line: no panic; a key is one word, lower case.
        #[test]
        fn directives_of_any_line(line in "[ -~\t]{0,60}") {
            if let Some((key, _)) = directive(&line) {
                proptest::prop_assert!(!key.is_empty());
                proptest::prop_assert!(!key.contains(char::is_whitespace));
                proptest::prop_assert_eq!(key.to_ascii_lowercase(), key.clone());
            }
            let _ = words(&line);
        }
    }
}
