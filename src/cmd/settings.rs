//! `gandi-vm settings`: every setting in force, and the settings file's
//! problems.

use crate::base::settings::Settings;
use anyhow::Result;

pub fn run(settings: &Settings) -> Result<i32> {
    match &settings.source {
        Some(p) => crate::base::out::line(&format!("# read from {}", p.display())),
        None => crate::base::out::line("# no settings file: defaults"),
    }
    let s = settings;
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    let path = |p: &std::path::Path| p.display().to_string();
    let lines = [
        ("CONFIG_MOTD", flag(s.motd)),
        ("CONFIG_TIMEZONE", flag(s.timezone)),
        ("CONFIG_SYSCTL", flag(s.sysctl)),
        ("CONFIG_SSHD", flag(s.sshd)),
        ("CONFIG_CONSOLE", flag(s.console)),
        ("CONFIG_HOSTNAME", flag(s.hostname)),
        ("CONFIG_NAMESERVER", flag(s.nameserver)),
        ("CONFIG_CRON", flag(s.cron)),
        ("CONFIG_ALLOW_MOUNT", flag(s.allow_mount)),
        ("CONFIG_MOUNT_PARAMS", s.mount_params.clone()),
        ("CONFIG_DISK_ROOT", path(&s.disk_root)),
        ("CONFIG_DISK_DEVICES", s.disk_devices.join(" ")),
        ("CONFIG_NODHCP", s.nodhcp.join(" ")),
        ("CONFIG_MULTIQUEUE", flag(s.multiqueue)),
        ("CONFIG_SOURCE_ROUTING", flag(s.source_routing)),
        ("CONFIG_NETWORK", flag(s.network)),
        ("CONFIG_MEMORY_ONLINE", s.memory_online.clone()),
        ("GANDI_PLUGIN_DIR", path(&s.paths.plugin_dir)),
        ("GANDI_BOOTSTRAP_DIR", path(&s.paths.bootstrap_dir)),
        ("GANDI_DIR", path(&s.paths.gandi_dir)),
        ("GANDI_STATE_DIR", path(&s.paths.state_dir)),
        ("TEMP_DIR_CONF", path(&s.paths.temp_dir_conf)),
        ("SYSLOG_TARGET", s.syslog_target.clone()),
        ("GANDI_HOOK_DIR", path(&s.paths.hook_dir)),
        ("GANDI_RUN_DIR", path(&s.paths.run_dir)),
        ("GANDI_POSTBOOT_TIMEOUT", s.postboot_timeout_s.to_string()),
        ("GANDI_MASTER_MAP", path(&s.paths.master_map)),
        ("GANDI_AUTO_MASTER", path(&s.paths.auto_master)),
        ("GANDI_SYSTEMD_DIR", path(&s.paths.systemd_dir)),
        ("GANDI_AUTOFS_PIDFILE", path(&s.paths.autofs_pid_file)),
        ("GANDI_PROBE_TIMEOUT_MS", s.probe_timeout_ms.to_string()),
    ];
    for (k, v) in lines {
        crate::base::out::line(&format!("{k}=\"{v}\""));
    }
    for p in &s.problems {
        crate::base::out::line(&format!("# problem: {p}"));
    }
    Ok(if s.problems.is_empty() { 0 } else { 1 })
}
