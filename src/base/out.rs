//! Standard output that survives its reader going away (`gandi-vm status |
//! head -1`): a line that cannot be written is dropped, and the command
//! goes on to its end (an action half-done because nobody reads its report
//! would be worse) and exits with its own code. Nothing panics on a closed
//! pipe.

use std::io::Write;

/// Writes one line to standard output; ignores a closed pipe.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Text written by someone else (a disk's label, a name from a disk) as
/// a terminal may show it: control characters (escapes, newlines) and
/// blanks other than a space are shown as `\xNN`, a backslash as `\x5c`.
/// For tables and messages; `--json` carries the raw value.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || c == '\\' || (c.is_whitespace() && c != ' ') {
            for b in c.to_string().bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn nothing_printed_carries_terminal_controls() {
        assert_eq!(printable("data disk"), "data disk");
        assert_eq!(printable("a\x1b[2Jb\nc"), "a\\x1b[2Jb\\x0ac");
        assert_eq!(printable("back\\slash"), "back\\x5cslash");
        assert_eq!(printable("\u{9b}x"), "\\xc2\\x9bx");
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config(256))]

        #[test]
        fn printable_has_no_control_character(s in "\\PC{0,20}|[\\x00-\\x1f\\x7f-\\u{9f}a]{0,20}") {
            let p = printable(&s);
            proptest::prop_assert!(!p.chars().any(|c| c.is_control()));
        }
    }
}
