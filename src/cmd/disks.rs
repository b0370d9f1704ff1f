//! `gandi-vm disks [--json]`: the candidate disks and what becomes of each.

use crate::base::settings::Settings;
use crate::disk::map;
use crate::disk::scan::Scan;
use crate::kernel::device::{Device, human_size};
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

/// List the candidate data disks: label, UUID, type, size, where they are
/// mounted, their path under the mount root, or why they are left out.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A device and where it appears under the mount root.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    device: &'a Device,
    /// `ROOT/KEY` for served devices.
    path: Option<PathBuf>,
}

/// `gandi-vm disks [--json]`.
pub fn run(settings: &Settings, args: Args) -> Result<i32> {
    let json = args.json;
    let scan = Scan::new(settings)?;
    let devices = scan.devices();
    let gone = scan.gone();
    let listed: Vec<Listed> = devices
        .iter()
        .chain(&gone)
        .map(|d| Listed {
            device: d,
            path: map::served_key(&devices, d, &settings.disk_root)
                .map(|k| settings.disk_root.join(k)),
        })
        .collect();
    if json {
        crate::base::out::line(&serde_json::to_string_pretty(&listed)?);
        return Ok(0);
    }
    if listed.is_empty() {
        crate::base::out::line(&format!(
            "no candidate disks (CONFIG_DISK_DEVICES=\"{}\")",
            settings.disk_devices.join(" ")
        ));
        return Ok(0);
    }
    let dash = |s: Option<&str>| s.unwrap_or("-").to_string();
    let mut rows = vec![
        [
            "NAME", "LABEL", "UUID", "TYPE", "SIZE", "MOUNTED", "PATH", "NOTE",
        ]
        .map(String::from),
    ];
    for l in &listed {
        let d = l.device;
        let mounted = if d.mounts.is_empty() {
            "-".to_string()
        } else {
            d.mounts
                .iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push([
            d.name.clone(),
            dash(d.fs.label.as_deref()),
            dash(d.fs.uuid.as_deref()),
            dash(d.fs.fstype.as_deref()),
            human_size(d.size),
            mounted,
            l.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into()),
            match &d.excluded {
                Some(e) => format!("excluded: {e}"),
                None if d.growth_left => {
                    "its growth is not done and no grower works on it now: started again \
                     (by its unit's end under systemd, else by its next lookup or an event)"
                        .to_string()
                }
                None => String::new(),
            },
        ]);
    }
    for row in rows.iter_mut() {
        for cell in row.iter_mut() {
            *cell = crate::base::out::printable(cell);
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        crate::base::out::line(line.join("  ").trim_end());
    }
    Ok(0)
}
