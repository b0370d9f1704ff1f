//! One key of the settings file changed in place (the admin's other lines,
//! comments and order kept; the file written atomically).

use crate::base::settings::{RawConfig, Settings};
use crate::base::tree;
use crate::base::tree::Change;
use anyhow::Result;
use std::fs;
use std::path::PathBuf;

/// Sets `key` in the settings file, changing only its line (or adding one).
pub fn set_setting(settings: &Settings, key: &str, value: &str) -> Result<(PathBuf, Change)> {
    let path = settings
        .source
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/default/gandi"));
    let text = fs::read_to_string(&path).unwrap_or_default();
    let quoted = if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    };
    let new_line = format!("{key}={quoted}");
    let mut found = false;
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("export ").unwrap_or(t);
        if t.starts_with(&format!("{key}=")) {
            if !found {
                lines.push(new_line.clone());
                found = true;
            }
            // A later assignment of the key would win: dropped.
        } else {
            lines.push(line.to_string());
        }
    }
    if !found {
        lines.push(new_line);
    }
    let new = lines.join("\n") + "\n";
    // Only the key's value matters: the same value written differently is
    // left alone.
    let current = RawConfig::parse(&text);
    if current.get(key) == Some(value) || (text == new) {
        return Ok((path, Change::Unchanged));
    }
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644)
    };
    tree::write_atomic(&path, new.as_bytes(), mode)?;
    Ok((path, Change::Changed))
}
