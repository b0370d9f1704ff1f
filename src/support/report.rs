//! `gandi-vm report [--output FILE]`: one archive with what support needs
//! (as cloud-init's `collect-logs`): the status of this boot and of the
//! last, the journal of our units and udev's lines about our rules, the
//! settings, the disks' records and table, the names of the values the
//! ledger tracks (never their fingerprints), versions.
//!
//! Never in it: the platform's config (`/gandi`: the password hash, the
//! customer's commands), any `authorized_keys`, the ledger's values, and
//! the output the customer's commands logged (their own secrets).

use crate::base::runner::Run;
use crate::base::settings::Settings;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most one part of the report may hold.
const MAX_PART: u64 = 8 << 20;

/// What the report holds: (name in the archive, content).
type Parts = Vec<(String, Vec<u8>)>;

/// A command's output, bounded; what went wrong instead when it failed.
fn command(program: &str, args: &[&str]) -> Vec<u8> {
    match Run::new(program)
        .args(args)
        .limit(Duration::from_secs(60))
        .outcome()
    {
        Ok(o) => {
            let failed = (!o.status.is_some_and(|s| s.success()))
                .then(|| o.summary("ended", &o.stderr_text()));
            let mut out = o.stdout;
            out.truncate(MAX_PART as usize);
            if let Some(failed) = failed {
                out.extend_from_slice(format!("\n# {failed}\n").as_bytes());
            }
            out
        }
        Err(e) => format!("# {e:#}\n").into_bytes(),
    }
}

/// A file of ours, when it is a regular file (bounded, without waiting);
/// `None` when there is none, what went wrong when it cannot be read.
fn file(path: &Path) -> Option<Vec<u8>> {
    match crate::base::read::read_state(path, MAX_PART) {
        Ok(data) => Some(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("# {} not read: {e}\n", path.display()).into_bytes()),
    }
}

/// The journal lines asked for: the last ones of each query (the newest
/// matter most), said so.
const JOURNAL_LINES: &str = "5000";

/// What the programs we run printed (logged as `run[N]: `, `script: `,
/// `init: `, `hook NAME: `, `plugin NAME: `: the customer's commands and
/// the admin's) is theirs, and may hold their secrets: left out. Each of
/// those pieces is logged as one line of at most 4 KiB with its prefix
/// (`runner::log_piece`), so no journal entry of theirs comes without it.
fn without_command_output(journal: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(journal);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        // The message: after the journal's `host gandi[PID]: `, if any.
        let message = line.split_once("]: ").map_or(line, |(_, m)| m);
        let theirs = ["run[", "script: ", "init: ", "hook ", "plugin "]
            .iter()
            .any(|m| message.starts_with(m) || line.starts_with(m));
        if !theirs {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// The names of the values the ledger tracks, one per line.
fn ledger_names(settings: &Settings) -> Vec<u8> {
    let Some(data) = file(&settings.paths.state_dir.join("applied.json")) else {
        return b"# no ledger\n".to_vec();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
        return b"# the ledger is damaged\n".to_vec();
    };
    let mut out = String::new();
    for key in v
        .get("values")
        .and_then(|v| v.as_object())
        .into_iter()
        .flat_map(|o| o.keys())
    {
        // Per-key entries name the key's fingerprint: kept short.
        let shown = match key.rsplit_once(':') {
            Some((head, fp)) if key.starts_with("key:") => {
                format!("{head}:{}...", &fp[..fp.len().min(8)])
            }
            _ => key.clone(),
        };
        out.push_str(&shown);
        out.push('\n');
    }
    if v.get("recovered").is_some() {
        out.push_str("# recovered after a damage\n");
    }
    out.into_bytes()
}

/// Everything that goes into the report.
pub fn collect(settings: &Settings) -> Parts {
    let mut parts: Parts = Vec::new();
    let mut add = |name: &str, data: Vec<u8>| parts.push((name.to_string(), data));
    let versions = format!(
        "gandi-vm {}\nkernel {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::base::read::read_small(&settings.paths.proc_dir.join("sys/kernel/osrelease"))
            .unwrap_or_default()
            .trim()
    );
    let mut v = versions.into_bytes();
    v.extend(file(Path::new("/etc/os-release")).unwrap_or_default());
    v.extend(command("systemctl", &["--version"]));
    v.extend(command("automount", &["-V"]));
    add("versions.txt", v);
    for (name, path) in [
        ("status.json", settings.paths.run_dir.join("status.json")),
        (
            "status.previous.json",
            settings.paths.state_dir.join("status.previous.json"),
        ),
        ("disks.index", settings.paths.run_dir.join("disks.index")),
    ] {
        if let Some(data) = file(&path) {
            add(name, data);
        }
    }
    // The values in force, not the file: comments and unknown keys an
    // admin wrote there stay on the VM.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("gandi-vm"));
    let exe = exe.to_string_lossy().into_owned();
    add("settings.txt", command(&exe, &["settings"]));
    let records = crate::disk::records::disks_dir(settings);
    for name in crate::kernel::views::list_names(&records) {
        if name.ends_with(".json")
            && let Some(data) = file(&records.join(&name))
        {
            add(&format!("records/{name}"), data);
        }
    }
    add("ledger-fields.txt", ledger_names(settings));
    add("disks.txt", command(&exe, &["disks"]));
    add("disks.json", command(&exe, &["disks", "--json"]));
    if settings.paths.systemd_dir.is_dir() {
        let units = [
            "-u",
            "gandi-bootstrap",
            "-u",
            "gandi-config",
            "-u",
            "gandi-mount",
            "-u",
            "gandi-postboot",
            "-u",
            "gandi-disk@*",
            "-u",
            "gandi-iface@*",
        ];
        let mut args = vec![
            "--no-pager",
            "-b",
            "-n",
            JOURNAL_LINES,
            "-o",
            "short-precise",
        ];
        args.extend(units);
        add(
            "journal/units.txt",
            without_command_output(&command("journalctl", &args)),
        );
        add(
            "journal/tag-gandi.txt",
            without_command_output(&command(
                "journalctl",
                &[
                    "--no-pager",
                    "-b",
                    "-n",
                    JOURNAL_LINES,
                    "-o",
                    "short-precise",
                    "-t",
                    "gandi",
                ],
            )),
        );
        add(
            "journal/previous-boot.txt",
            without_command_output(&command(
                "journalctl",
                &[
                    "--no-pager",
                    "-b",
                    "-1",
                    "-n",
                    JOURNAL_LINES,
                    "-o",
                    "short-precise",
                    "-t",
                    "gandi",
                ],
            )),
        );
        add(
            "journal/udev.txt",
            command(
                "journalctl",
                &[
                    "--no-pager",
                    "-b",
                    "-n",
                    JOURNAL_LINES,
                    "-o",
                    "short-precise",
                    "-u",
                    "systemd-udevd",
                    "--grep",
                    "gandi",
                ],
            ),
        );
        add(
            "units.txt",
            // Without the journal lines `status` shows by default: they
            // would hold what the commands printed.
            command(
                "systemctl",
                &["--no-pager", "--lines=0", "status", "gandi-*"],
            ),
        );
    } else if let Some(data) = file(&crate::disk::adopt::grow_log(settings)) {
        add("disk-grow.log", without_command_output(&data));
    }
    parts
}

/// Writes the report as a gzip'd tar at `output` (root-only), and returns
/// its path and the names it holds.
pub fn write(settings: &Settings, output: &Path) -> Result<Vec<String>> {
    let parts = collect(settings);
    let mut builder = tar::Builder::new(Vec::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, data) in &parts {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(now);
        h.set_cksum();
        builder
            .append_data(&mut h, format!("gandi-vm-report/{name}"), data.as_slice())
            .with_context(|| format!("adding {name}"))?;
    }
    let tar = builder.into_inner().context("ending the archive")?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).context("compressing the report")?;
    let gz = gz.finish().context("compressing the report")?;
    // Root-only from the start; put in place atomically (a link planted
    // at the output's name is replaced, never followed).
    crate::base::tree::write_atomic(output, &gz, 0o600)
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(parts.into_iter().map(|(n, _)| n).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_commands_printed_is_left_out() {
        let journal = "Dec 02 05:00:00.1 vm gandi[12]: run[0]: DB_PASSWORD=x\n\
                       Dec 02 05:00:00.2 vm gandi[12]: run[0]: done (exit 0)\n\
                       Dec 02 05:00:00.3 vm gandi[12]: hook post-vm-config: token\n\
                       Dec 02 05:00:00.4 vm gandi[12]: plugin 50-mine: secret\n\
                       Dec 02 05:00:00.5 vm gandi[12]: init: key\n\
                       Dec 02 05:00:00.6 vm gandi[12]: gandi-vm postboot: ok (2 steps)\n\
                       hook post-disk-attach: raw log line\n\
                       vdb: ext4 grown\n";
        let kept = String::from_utf8(without_command_output(journal.as_bytes())).unwrap();
        assert_eq!(
            kept,
            "Dec 02 05:00:00.6 vm gandi[12]: gandi-vm postboot: ok (2 steps)\nvdb: ext4 grown\n"
        );
    }
}
