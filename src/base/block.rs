//! The one editor for files where we own a block of lines among the
//! admin's (`authorized_keys`, `sshd_config`, `resolv.conf`, `/etc/hosts`).
//!
//! Our block is delimited by an exact BEGIN line and an exact END line,
//! each naming the file's purpose. Only the lines strictly between an
//! intact pair are ours. Any other line that looks like one of our markers
//! (an edited BEGIN or END, a second BEGIN, an END before its BEGIN, a
//! BEGIN without END) means the block is damaged: we cannot tell which
//! lines are ours, so the file is left byte for byte as it is and the
//! caller reports why. Every line outside our block, and every line ending,
//! is kept as it was.

/// The markers of one kind of block.
#[derive(Debug, Clone, Copy)]
pub struct Markers {
    pub begin: &'static str,
    pub end: &'static str,
    /// Marker pairs written by earlier versions, still recognised (and
    /// replaced by the current ones on the next change).
    pub legacy: &'static [(&'static str, &'static str)],
}

/// The pair earlier versions wrote in every file.
const LEGACY: &[(&str, &str)] = &[(
    "# BEGIN gandi-vm (keys from the platform; lines outside this block are yours)",
    "# END gandi-vm",
)];

/// `authorized_keys`.
pub const SSH_KEYS: Markers = Markers {
    begin: "# BEGIN gandi-vm: SSH keys from the platform (lines outside this block are yours)",
    end: "# END gandi-vm: SSH keys from the platform",
    legacy: LEGACY,
};

/// `sshd_config`, when sshd reads no drop-in folder.
pub const SSHD: Markers = Markers {
    begin: "# BEGIN gandi-vm: sshd settings (CONFIG_SSHD in /etc/default/gandi; lines outside this block are yours)",
    end: "# END gandi-vm: sshd settings",
    legacy: LEGACY,
};

/// `resolv.conf`, when no resolver service owns it.
pub const RESOLVERS: Markers = Markers {
    begin: "# BEGIN gandi-vm: resolvers from the platform (CONFIG_NAMESERVER in /etc/default/gandi; lines outside this block are yours)",
    end: "# END gandi-vm: resolvers from the platform",
    legacy: LEGACY,
};

/// `/etc/hosts`: the VM's own name.
pub const HOSTS: Markers = Markers {
    begin: "# BEGIN gandi-vm: this VM's name (CONFIG_HOSTNAME in /etc/default/gandi; lines outside this block are yours)",
    end: "# END gandi-vm: this VM's name",
    legacy: &[],
};

/// Where a new block goes.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// First in the file (sshd and the resolver take the first value).
    Top,
    Bottom,
    /// Right after the first line for which the function holds, else first.
    After(fn(&str) -> bool),
}

/// What a file holds of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Absent,
    /// Line indexes of the BEGIN and END lines.
    Intact {
        begin: usize,
        end: usize,
        legacy: bool,
    },
    /// Why we cannot tell which lines are ours.
    Damaged(String),
}

/// Whether a line looks like one of our markers, edited or not: a comment
/// that starts with BEGIN or END (any case) and names gandi-vm.
fn marker_like(line: &str) -> bool {
    let t = line.trim_start();
    let Some(rest) = t.strip_prefix('#') else {
        return false;
    };
    let rest = rest
        .trim_start_matches(['#', ' ', '\t'])
        .to_ascii_lowercase();
    (rest.starts_with("begin") || rest.starts_with("end")) && rest.contains("gandi-vm")
}

fn body(line: &str) -> &str {
    line.strip_suffix('\n').unwrap_or(line)
}

/// Finds our block in `text`.
pub fn find(text: &str, m: &Markers) -> Block {
    let lines: Vec<&str> = text.split_inclusive('\n').map(body).collect();
    let pairs: Vec<(&str, &str, bool)> = std::iter::once((m.begin, m.end, false))
        .chain(m.legacy.iter().map(|(b, e)| (*b, *e, true)))
        .collect();
    let mut begin: Option<(usize, usize)> = None; // (line, pair)
    let mut end: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        if !marker_like(line) {
            continue;
        }
        let n = i + 1;
        if let Some(p) = pairs.iter().position(|(b, _, _)| line == b) {
            if begin.is_some() {
                return Block::Damaged(format!("a second BEGIN line (line {n})"));
            }
            begin = Some((i, p));
            continue;
        }
        match begin {
            Some((_, p)) if *line == pairs[p].1 && end.is_none() => end = Some(i),
            Some(_) if end.is_some() => {
                return Block::Damaged(format!("a marker line after the END line (line {n})"));
            }
            Some(_) => {
                return Block::Damaged(format!("the END line is altered or missing (line {n})"));
            }
            None if pairs.iter().any(|(_, e, _)| line == e) => {
                return Block::Damaged(format!("an END line before any BEGIN (line {n})"));
            }
            None => {
                return Block::Damaged(format!("an altered marker line (line {n})"));
            }
        }
    }
    match (begin, end) {
        (None, _) => Block::Absent,
        (Some((b, _)), None) => Block::Damaged(format!("no END line after BEGIN (line {})", b + 1)),
        (Some((b, p)), Some(e)) => Block::Intact {
            begin: b,
            end: e,
            legacy: pairs[p].2,
        },
    }
}

/// The lines of our block (without line endings); empty when there is none.
pub fn ours(text: &str, m: &Markers) -> Result<Vec<String>, String> {
    match find(text, m) {
        Block::Absent => Ok(Vec::new()),
        Block::Damaged(why) => Err(why),
        Block::Intact { begin, end, .. } => Ok(text
            .split_inclusive('\n')
            .map(body)
            .skip(begin + 1)
            .take(end - begin - 1)
            .map(str::to_string)
            .collect()),
    }
}

/// `text` with our block holding exactly `lines` (no block when `lines`
/// is empty); every other line is kept as it was. An error, and nothing to
/// write, when the block is damaged.
pub fn replace(text: &str, m: &Markers, lines: &[String], place: Place) -> Result<String, String> {
    let mut block = String::new();
    if !lines.is_empty() {
        block.push_str(m.begin);
        block.push('\n');
        for l in lines {
            block.push_str(l);
            block.push('\n');
        }
        block.push_str(m.end);
        block.push('\n');
    }
    let parts: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len() + block.len());
    match find(text, m) {
        Block::Damaged(why) => return Err(why),
        Block::Intact { begin, end, .. } => {
            for p in &parts[..begin] {
                out.push_str(p);
            }
            out.push_str(&block);
            for p in &parts[end + 1..] {
                out.push_str(p);
            }
            // The END line had no newline (last line of the file): neither
            // does the file now, unless our block is what ends it.
        }
        Block::Absent => {
            if lines.is_empty() {
                return Ok(text.to_string());
            }
            let at = match place {
                Place::Top => 0,
                Place::Bottom => parts.len(),
                Place::After(f) => parts
                    .iter()
                    .position(|p| f(body(p)))
                    .map(|i| i + 1)
                    .unwrap_or(0),
            };
            for (i, p) in parts.iter().enumerate() {
                if i == at {
                    out.push_str(&block);
                }
                out.push_str(p);
                if i + 1 == parts.len() && !p.ends_with('\n') && at == parts.len() {
                    out.push('\n');
                }
            }
            if at == parts.len() {
                out.push_str(&block);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn adds_replaces_and_removes_the_block() {
        let admin = "ssh-ed25519 AAAA admin\n";
        let once = replace(admin, &SSH_KEYS, &s(&["ssh-rsa BBBB p"]), Place::Bottom).unwrap();
        assert_eq!(
            once,
            format!(
                "{admin}{}\nssh-rsa BBBB p\n{}\n",
                SSH_KEYS.begin, SSH_KEYS.end
            )
        );
        assert_eq!(
            replace(&once, &SSH_KEYS, &s(&["ssh-rsa BBBB p"]), Place::Bottom).unwrap(),
            once
        );
        assert_eq!(ours(&once, &SSH_KEYS).unwrap(), s(&["ssh-rsa BBBB p"]));
        assert_eq!(
            replace(&once, &SSH_KEYS, &[], Place::Bottom).unwrap(),
            admin
        );
        // No newline at the end of the admin's last line.
        let t = replace("a", &SSH_KEYS, &s(&["k"]), Place::Bottom).unwrap();
        assert!(t.starts_with("a\n# BEGIN"));
        let t = replace("a\nb\n", &HOSTS, &s(&["h"]), Place::After(|l| l == "a")).unwrap();
        assert_eq!(t, format!("a\n{}\nh\n{}\nb\n", HOSTS.begin, HOSTS.end));
    }

    #[test]
    fn legacy_blocks_are_recognised_and_renamed() {
        let old = format!("x\n{}\nold\n{}\ny\n", LEGACY[0].0, LEGACY[0].1);
        assert_eq!(ours(&old, &SSHD).unwrap(), s(&["old"]));
        let new = replace(&old, &SSHD, &s(&["new"]), Place::Top).unwrap();
        assert_eq!(new, format!("x\n{}\nnew\n{}\ny\n", SSHD.begin, SSHD.end));
    }

    #[test]
    fn damaged_blocks_are_refused() {
        let b = SSH_KEYS.begin;
        let e = SSH_KEYS.end;
        for (text, why) in [
            (format!("{b}\nk\n{e} edited\nPort 2222\n"), "altered"),
            (format!("{b}\nk\nPort 2222\n"), "no END"),
            (format!("{e}\n{b}\nk\n{e}\n"), "END line before"),
            (format!("{b}\n{b}\nk\n{e}\n"), "second BEGIN"),
            (format!("{b}\nk\n{e}\n{e}\n"), "after the END"),
            (format!("# begin GANDI-VM\nk\n{e}\n"), "altered"),
        ] {
            let err = replace(&text, &SSH_KEYS, &s(&["new"]), Place::Bottom).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    /// Admin lines, with marker-like lines among them.
    fn admin_line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 =#._-]{0,20}",
            Just("Port 2222".to_string()),
            Just("# END gandi-vm".to_string()),
            Just("# BEGIN gandi-vm".to_string()),
            Just(format!("{} note", SSH_KEYS.end)),
            Just(format!("{} ", SSH_KEYS.begin)),
            Just(SSH_KEYS.begin.to_string()),
            Just(SSH_KEYS.end.to_string()),
            Just("#end Gandi-VM block".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config(512))]

        /// Every line that is not strictly inside an intact block (or one
        /// of its two markers) survives, in order, whatever the file holds;
        /// a damaged file is returned unchanged or refused.
        #[test]
        fn no_admin_line_is_ever_lost(
            lines in proptest::collection::vec(admin_line(), 0..12),
            newline_at_end in any::<bool>(),
            ours_new in proptest::collection::vec("[a-z]{1,8}", 0..3),
            top in any::<bool>(),
        ) {
            let mut text = lines.join("\n");
            if newline_at_end && !text.is_empty() {
                text.push('\n');
            }
            let place = if top { Place::Top } else { Place::Bottom };
            let kept: Vec<String> = match find(&text, &SSH_KEYS) {
                Block::Intact { begin, end, .. } => text
                    .split_inclusive('\n')
                    .map(|l| body(l).to_string())
                    .enumerate()
                    .filter(|(i, _)| *i < begin || *i > end)
                    .map(|(_, l)| l)
                    .collect(),
                _ => text.split_inclusive('\n').map(|l| body(l).to_string()).collect(),
            };
            match replace(&text, &SSH_KEYS, &ours_new, place) {
                Err(_) => prop_assert!(matches!(find(&text, &SSH_KEYS), Block::Damaged(_))),
                Ok(out) => {
                    // What is not ours, in order, is the admin's lines.
                    let block = find(&out, &SSH_KEYS);
                    let rest: Vec<String> = match block {
                        Block::Intact { begin, end, .. } => out
                            .split_inclusive('\n')
                            .map(|l| body(l).to_string())
                            .enumerate()
                            .filter(|(i, _)| *i < begin || *i > end)
                            .map(|(_, l)| l)
                            .collect(),
                        Block::Absent => out.split_inclusive('\n').map(|l| body(l).to_string()).collect(),
                        Block::Damaged(w) => return Err(TestCaseError::fail(w)),
                    };
                    prop_assert_eq!(rest, kept);
                    prop_assert_eq!(ours(&out, &SSH_KEYS).unwrap(), ours_new.clone());
                    // A second run changes nothing.
                    prop_assert_eq!(replace(&out, &SSH_KEYS, &ours_new, place).unwrap(), out);
                }
            }
        }
    }
}
