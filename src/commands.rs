//! Small commands that only read: `disks`, `settings`.

use crate::device::{Device, human_size};
use crate::map;
use crate::scan::Scan;
use crate::settings::Settings;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

/// A device and where it appears under the mount root.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    device: &'a Device,
    /// `ROOT/KEY` for served devices.
    path: Option<PathBuf>,
}

/// `gandi-vm disks [--json]`.
pub fn disks(settings: &Settings, json: bool) -> Result<i32> {
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
        crate::out::line(&serde_json::to_string_pretty(&listed)?);
        return Ok(0);
    }
    if listed.is_empty() {
        crate::out::line(&format!(
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
            d.excluded
                .as_ref()
                .map(|e| format!("excluded: {e}"))
                .unwrap_or_default(),
        ]);
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
        crate::out::line(line.join("  ").trim_end());
    }
    Ok(0)
}

/// `gandi-vm settings`.
pub fn show_settings(settings: &Settings) -> Result<i32> {
    match &settings.source {
        Some(p) => crate::out::line(&format!("# read from {}", p.display())),
        None => crate::out::line("# no settings file: defaults"),
    }
    let s = settings;
    let flag = |b: bool| if b { "1" } else { "0" };
    let lines = [
        ("CONFIG_MOTD", flag(s.motd).to_string()),
        ("CONFIG_TIMEZONE", flag(s.timezone).to_string()),
        ("CONFIG_SYSCTL", flag(s.sysctl).to_string()),
        ("CONFIG_SSHD", flag(s.sshd).to_string()),
        ("CONFIG_CONSOLE", flag(s.console).to_string()),
        ("CONFIG_HOSTNAME", flag(s.hostname).to_string()),
        ("CONFIG_NAMESERVER", flag(s.nameserver).to_string()),
        ("CONFIG_CRON", flag(s.cron).to_string()),
        ("CONFIG_ALLOW_MOUNT", flag(s.allow_mount).to_string()),
        ("CONFIG_MOUNT_PARAMS", s.mount_params.clone()),
        ("CONFIG_DISK_ROOT", s.disk_root.display().to_string()),
        ("CONFIG_DISK_DEVICES", s.disk_devices.join(" ")),
        ("CONFIG_NODHCP", s.nodhcp.join(" ")),
        ("CONFIG_MULTIQUEUE", flag(s.multiqueue).to_string()),
        ("CONFIG_NETWORK", flag(s.network).to_string()),
        ("GANDI_PLUGIN_DIR", s.plugin_dir.display().to_string()),
        ("TEMP_DIR_CONF", s.temp_dir_conf.display().to_string()),
        ("SYSLOG_TARGET", s.syslog_target.clone()),
        ("GANDI_HOOK_DIR", s.hook_dir.display().to_string()),
        ("GANDI_RUN_DIR", s.run_dir.display().to_string()),
    ];
    for (k, v) in lines {
        crate::out::line(&format!("{k}=\"{v}\""));
    }
    for p in &s.problems {
        crate::out::line(&format!("# problem: {p}"));
    }
    Ok(if s.problems.is_empty() { 0 } else { 1 })
}
