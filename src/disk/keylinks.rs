//! The per-key links under `GANDI_RUN_DIR/keys/` the map answers with: one
//! per key a user looked up, pointing at the device served, renamed into
//! place atomically, dropped before a release.

use crate::base::settings::Settings;
use std::fs;
use std::path::PathBuf;

/// The folder of the per-key links the map answers with.
pub fn keys_dir(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("keys")
}

/// The link for `key`: its name is the key in hex, so any key (blanks,
/// UTF-8) makes a path autofs can carry; a key over 100 bytes (whose hex
/// would pass the 255 bytes a name may hold) is named by its SHA-256.
pub fn key_link(settings: &Settings, key: &str) -> PathBuf {
    keys_dir(settings).join(key_file_name(key))
}

/// A file name for any key: the key in hex, or for a key over 100 bytes
/// its SHA-256 (the hex would pass the 255 bytes a name may hold).
pub fn key_file_name(key: &str) -> String {
    use crate::base::fingerprint::hex;
    if key.len() <= 100 {
        hex(key.as_bytes())
    } else {
        use sha2::Digest;
        format!("sha256-{}", hex(&sha2::Sha256::digest(key.as_bytes())))
    }
}

/// Points the link of `key` at `device` (atomically: a new link renamed
/// over the old one). No disk I/O: /run is a tmpfs.
pub fn set_key_link(
    settings: &Settings,
    key: &str,
    device: &std::path::Path,
) -> std::io::Result<PathBuf> {
    let link = key_link(settings, key);
    if fs::read_link(&link).ok().as_deref() == Some(device) {
        return Ok(link);
    }
    fs::create_dir_all(keys_dir(settings))?;
    let tmp = link.with_extension(format!("new{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(device, &tmp)?;
    fs::rename(&tmp, &link)?;
    Ok(link)
}

/// Removes every key link that points at `device`: autofs may have kept
/// the map's answer for those keys, and a mount through a missing link
/// fails. Returns the links removed (see [`restore_key_links`]).
pub fn drop_key_links(settings: &Settings, device: &std::path::Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(keys_dir(settings)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| fs::read_link(e.path()).ok().as_deref() == Some(device))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .map(|e| e.path())
        .collect()
}

/// Puts back links removed by [`drop_key_links`].
pub fn restore_key_links(links: &[PathBuf], device: &std::path::Path) {
    for link in links {
        let _ = std::os::unix::fs::symlink(device, link);
    }
}
