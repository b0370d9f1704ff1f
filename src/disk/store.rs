//! Writing the records: a record replaced atomically and then the index
//! rebuilt; a device forgotten with its record, release mark and key links.

use crate::base::settings::Settings;
use crate::base::tree;
use crate::disk::index::write_index;
use crate::disk::keylinks::drop_key_links;
use crate::disk::records::{Record, disks_dir, path, released_dir};
use anyhow::Context;
use std::fs;

/// Writes `record` atomically, then the index.
pub fn write(settings: &Settings, record: &Record) -> anyhow::Result<()> {
    let dir = disks_dir(settings);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(record)?;
    json.push(b'\n');
    tree::write_atomic(&path(settings, &record.name), &json, 0o644)?;
    write_index(settings)
}

/// Forgets a device: its record, its release mark and the key links that
/// point at it.
pub fn forget(settings: &Settings, name: &str) -> anyhow::Result<()> {
    drop_key_links(
        settings,
        &settings.paths.dev_dir.join(name.replace('!', "/")),
    );
    let record = path(settings, name);
    let mut removed_record = false;
    for path in [&record, &released_dir(settings).join(name)] {
        match fs::remove_file(path) {
            Ok(()) => {
                log::info!("{name}: removed {}", path.display());
                removed_record |= path == &record;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    if removed_record {
        write_index(settings)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
