//! Kernel-name patterns (`CONFIG_DISK_DEVICES`), matched as `fnmatch(3)`
//! does.

/// Shell-style glob match of a kernel name, as `fnmatch(3)` with no flags
/// does it (`*`, `?`, `[a-z]`, `[!...]`, `\\` escapes), byte by byte and
/// without allocating: the map matches every block device against it.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last `*`: pattern index, name index.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ni));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => match class_match(p, pi, n[ni]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                // No closing bracket: a literal `[`.
                None => (n[ni] == b'[').then_some(pi + 1),
            },
            Some(b'\\') if pi + 1 < p.len() => (n[ni] == p[pi + 1]).then_some(pi + 2),
            Some(&c) => (n[ni] == c).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                // Let the last `*` take one more byte.
                pi = sp;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches byte `c` against the bracket expression at `p[start]`: whether
/// it matched and the index after the `]`; `None` when there is no `]`.
fn class_match(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let mut hi_at = i + 2;
            if p[hi_at] == b'\\' {
                hi_at += 1;
            }
            let hi = *p.get(hi_at)?;
            hit |= lo <= c && c <= hi;
            i = hi_at + 1;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    #[test]
    fn globs() {
        assert!(glob_match("vd*", "vdb"));
        assert!(glob_match("vd*", "vdb1"));
        assert!(glob_match("xvd[b-y]*", "xvdc"));
        assert!(!glob_match("xvd[b-y]*", "xvdz"));
        assert!(glob_match("nvme*n*", "nvme0n1p2"));
        assert!(!glob_match("sd*", "vda"));
    }

    #[test]
    #[allow(unsafe_code)] // see the SAFETY comment
    fn globs_agree_with_fnmatch() {
        let patterns = [
            "vd*",
            "*",
            "",
            "?",
            "xvd[b-y]*",
            "xvd[!b-y]",
            "nvme*n*",
            "sd?",
            "loop*p*",
            "[]a]*",
            "[!]]x",
            "a\\*b",
            "a[",
            "*[0-9]",
            "**a",
            "*a*b*c",
            "cciss!c0d*",
            "[a-]x",
            "[\\]]",
            "v?[a-c][^d]",
        ];
        let names = [
            "",
            "vd",
            "vda",
            "vdb1",
            "xvdc",
            "xvdz",
            "nvme0n1p2",
            "sda",
            "sda1",
            "loop3p1",
            "]b",
            "x",
            "a*b",
            "ab",
            "a[",
            "a",
            "disk9",
            "aXbYc",
            "cciss!c0d0",
            "-x",
            "]",
            "vdaz",
            "vxcd",
        ];
        for pat in patterns {
            for name in names {
                let (cp, cn) = (CString::new(pat).unwrap(), CString::new(name).unwrap());
                // SAFETY: the test compares with the C library's own
                // fnmatch(3), which no safe crate wraps; both arguments are
                // valid NUL-terminated strings that outlive the call.
                let libc = unsafe { libc::fnmatch(cp.as_ptr(), cn.as_ptr(), 0) == 0 };
                assert_eq!(glob_match(pat, name), libc, "{pat:?} against {name:?}");
            }
        }
    }
}
