//! The platform's own first-boot script, `/gandi/init`.
//!
//! Its work is done natively by `bootstrap` and `postboot` (docs/boot.md
//! maps each of its actions to our step), and it must not run beside them:
//! it rewrites `/etc/network/interfaces`, `/etc/resolv.conf` (through any
//! link) and `/etc/shadow` whole, undoing the admin's edits, and ends with
//! `service ssh restart`, which a unit ordered before `sysinit.target`
//! would wait on until its time limit. So it is not run by default.
//!
//! With `CONFIG_PLATFORM_SCRIPT=1` it runs as the original ran it, but
//! where it can: at the postboot stage (after `ssh.service` is active),
//! once per config, only when it is executable, with the interpreter its
//! first line names. The platform's copy is Python 2: on a system without
//! Python 2 it is not run, and the status says so (a Python 2 script is
//! never handed to `python3`).

use crate::base::runner::{Outcome, Run};
use crate::base::tree::Tree;
use anyhow::Result;
use cap_std::fs::MetadataExt as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the script is to be run: its interpreter and that one's argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub program: PathBuf,
    pub arg: Option<String>,
}

/// The interpreter the script's first line names (`#!/bin/sh`,
/// `#!/usr/bin/env python2`), checked: `Err` says why the script is not
/// run (not executable, no interpreter named, one that is missing, a
/// Python 2 script without Python 2).
pub fn interpreter(tree: &Tree, init: &Path) -> Result<Interpreter, String> {
    let shown = tree.shown(init);
    let (head, meta) = tree
        .read_owned_limited(init, 64 << 20)
        .map_err(|e| format!("{}: {e}", shown.display()))?;
    if meta.mode() & 0o111 == 0 {
        return Err(format!(
            "{} is not executable (the original ran it only when it was)",
            shown.display()
        ));
    }
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Some(line) = first
        .strip_prefix(b"#!")
        .and_then(|l| std::str::from_utf8(l).ok())
    else {
        return Err(format!(
            "{} names no interpreter on its first line (#!)",
            shown.display()
        ));
    };
    let mut words = line.split_whitespace();
    let program = PathBuf::from(words.next().unwrap_or_default());
    let arg = words.next().map(str::to_string);
    // `env NAME`: the interpreter is NAME, found in PATH.
    let (name, found) = if program.file_name().is_some_and(|n| n == "env") {
        let Some(name) = arg.clone() else {
            return Err(format!("{}: `#!{line}` names no program", shown.display()));
        };
        let found = which(&name);
        (name, found)
    } else {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = program.is_file().then(|| program.clone());
        (name, found)
    };
    let Some(found) = found else {
        return Err(if is_python2_name(&name) {
            format!(
                "{} is a Python 2 script ({name}) and this system has no Python 2: not run \
                 (its work is done natively; it is never handed to python3)",
                shown.display()
            )
        } else {
            format!("{}: its interpreter {name} is missing", shown.display())
        });
    };
    // `python` is Python 2 for the platform's script: run it only if it is.
    if name == "python" && python_major(&found).is_none_or(|v| v != 2) {
        return Err(format!(
            "{} is written for Python 2 (`{name}`), and {} is not Python 2: not run",
            shown.display(),
            found.display()
        ));
    }
    Ok(Interpreter { program, arg })
}

fn is_python2_name(name: &str) -> bool {
    name == "python" || name.starts_with("python2")
}

/// The major version of a Python interpreter, from `--version`.
fn python_major(program: &Path) -> Option<u32> {
    let out = Run::new(program)
        .arg("--version")
        .limit(Duration::from_secs(10))
        .outcome()
        .ok()?;
    let text = format!("{}{}", out.stdout_text(), out.stderr_text());
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Runs the script with its interpreter, bounded, its output to the log.
pub fn run_platform_script(
    tree: &Tree,
    init: &Path,
    how: &Interpreter,
    limit: Duration,
) -> Result<Outcome> {
    let mut run = Run::new(&how.program);
    if let Some(a) = &how.arg {
        run = run.arg(a);
    }
    run.arg(tree.shown(init))
        .current_dir(tree.base())
        .limit(limit)
        .log_as("init")
        .outcome()
}

/// The path of `program` in PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .unwrap_or_else(|| crate::base::runner::DEFAULT_PATH.into())
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// What the files a script may change look like: every regular file of
/// `/etc` (and its folders), `root`'s and the homes' `.ssh`, by inode,
/// size and change time (no content is read).
pub fn snapshot(tree: &Tree) -> BTreeMap<PathBuf, (u64, u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<PathBuf> = vec!["/etc".into(), "/root/.ssh".into()];
    for home in tree.list("/home").unwrap_or_default() {
        todo.push(Path::new("/home").join(home).join(".ssh"));
    }
    let mut seen = 0;
    while let Some(dir) = todo.pop() {
        for name in tree.list_nofollow(&dir).unwrap_or_default() {
            let p = dir.join(name);
            let Ok(m) = tree.lstat(&p) else {
                continue;
            };
            seen += 1;
            if seen > 50_000 {
                return out;
            }
            if m.is_dir() {
                todo.push(p);
            } else {
                out.insert(p, (m.ino(), m.size(), m.ctime(), m.ctime_nsec()));
            }
        }
    }
    out
}

/// The paths that changed between two snapshots (added, removed, changed).
pub fn changed(
    before: &BTreeMap<PathBuf, (u64, u64, i64, i64)>,
    after: &BTreeMap<PathBuf, (u64, u64, i64, i64)>,
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, _)| p.clone())
        .collect();
    out.extend(before.keys().filter(|p| !after.contains_key(*p)).cloned());
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_interpreter_is_the_first_lines_and_python_2_is_never_python_3() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tree::open(dir.path()).unwrap();
        let put = |body: &str, mode: u32| {
            fs::write(dir.path().join("init"), body).unwrap();
            fs::set_permissions(dir.path().join("init"), fs::Permissions::from_mode(mode)).unwrap();
        };
        put("#!/bin/sh\necho hi\n", 0o700);
        assert_eq!(
            interpreter(&t, Path::new("init")).unwrap(),
            Interpreter {
                program: "/bin/sh".into(),
                arg: None
            }
        );
        put("#!/bin/sh\necho hi\n", 0o600);
        assert!(
            interpreter(&t, Path::new("init"))
                .unwrap_err()
                .contains("not executable")
        );
        put("import sys\nprint 'hi'\n", 0o700);
        assert!(
            interpreter(&t, Path::new("init"))
                .unwrap_err()
                .contains("no interpreter")
        );
        put("#!/usr/bin/env python2.7-nowhere\nprint 'x'\n", 0o700);
        assert!(
            interpreter(&t, Path::new("init"))
                .unwrap_err()
                .contains("Python 2")
        );
        put("#!/nonexistent/python2\nprint 'x'\n", 0o700);
        assert!(
            interpreter(&t, Path::new("init"))
                .unwrap_err()
                .contains("no Python 2")
        );
        put("#!/nonexistent/bash\n", 0o700);
        assert!(
            interpreter(&t, Path::new("init"))
                .unwrap_err()
                .contains("missing")
        );
    }
}
