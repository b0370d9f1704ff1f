//! The two escapes of the kernel's and udev's texts: octal `\040` (the
//! mount table) and hex `\x20` (udev's database), undone.

/// Undoes the four-byte escapes `\ABC` of `s`: `decode` gives the byte for
/// the three bytes after a backslash, or `None` when they are no escape
/// (then the backslash is kept as it is).
fn unescape4(s: &str, decode: impl Fn(&[u8]) -> Option<u8>) -> String {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'\\') {
        return s.to_string();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(v) = bytes.get(i + 1..i + 4).and_then(&decode)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Undoes the kernel's `\040`-style escapes of mount tables.
pub fn unescape_octal(s: &str) -> String {
    unescape4(s, |d| {
        if !d.iter().all(|b| (b'0'..=b'7').contains(b)) {
            return None;
        }
        u8::try_from(d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'))).ok()
    })
}

/// Undoes udev's `\xNN` escapes (`ID_FS_LABEL_ENC`), also those of our
/// records index.
pub fn unescape_hex(s: &str) -> String {
    unescape4(s, |d| {
        let hex = std::str::from_utf8(d.get(1..3)?).ok()?;
        (d[0] == b'x')
            .then(|| u8::from_str_radix(hex, 16).ok())
            .flatten()
    })
}
