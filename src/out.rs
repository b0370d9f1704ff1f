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
