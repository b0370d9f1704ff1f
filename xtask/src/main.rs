//! The project's build tasks, kept out of the shipped binaries:
//! `xtask docs DIR` writes the man pages and shell completions, generated
//! from the command-line definition and the table of settings.

use anyhow::{Context, Result};
use clap::CommandFactory;
use gandi_vm::cmd::cli::Cli;
use std::fs;
use std::path::Path;

/// Writes `man8/gandi-vm.8`, `man8/gandi-vm-SUB.8` (and for `disk`'s own
/// subcommands), `man5/gandi.5` and
/// `completions/{gandi-vm.bash,_gandi-vm,gandi-vm.fish}`.
fn generate(dir: &Path) -> Result<()> {
    let man = dir.join("man8");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let cmd = Cli::command().name("gandi-vm");
    page(&cmd, "gandi-vm", "gandi-vm", &man, MAIN_SECTIONS)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("gandi-vm-{}", sub.get_name());
        let bin = format!("gandi-vm {}", sub.get_name());
        page(sub, &name, &bin, &man, SUB_SECTIONS)?;
        for subsub in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            page(
                subsub,
                &format!("{name}-{}", subsub.get_name()),
                &format!("{bin} {}", subsub.get_name()),
                &man,
                SUB_SECTIONS,
            )?;
        }
    }
    let man5 = dir.join("man5");
    fs::create_dir_all(&man5)?;
    let path = man5.join("gandi.5");
    fs::write(&path, settings_page()).with_context(|| format!("writing {}", path.display()))?;
    let comp = dir.join("completions");
    fs::create_dir_all(&comp)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let mut c = Cli::command();
        clap_complete::generate_to(shell, &mut c, "gandi-vm", &comp)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    Ok(())
}

/// Text for roff: backslashes and hyphens escaped, a leading dot or quote
/// kept from being read as a request, `code` in bold.
fn roff(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut bold = false;
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '`' => {
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            _ => out.push(c),
        }
    }
    if bold {
        out.push_str("\\fR");
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// What each page is, in one line (its NAME, as `whatis` shows it).
const WHATIS: &[(&str, &str)] = &[
    ("gandi-vm", "guest agent for Gandi cloud VMs"),
    ("gandi-vm-map", "the autofs program map of the data disks"),
    ("gandi-vm-disks", "list the candidate data disks"),
    (
        "gandi-vm-settings",
        "print the settings in force and their problems",
    ),
    ("gandi-vm-disk", "act on one data disk"),
    (
        "gandi-vm-disk-check",
        "check and repair a data disk's filesystem",
    ),
    ("gandi-vm-disk-release", "prepare a data disk for detach"),
    (
        "gandi-vm-disk-event",
        "record a data disk from a block event",
    ),
    (
        "gandi-vm-disk-grow",
        "grow a data disk's filesystem to its device's size",
    ),
    (
        "gandi-vm-bootstrap",
        "first-boot setup from the platform's config",
    ),
    (
        "gandi-vm-config",
        "per-boot housekeeping and the admin's plugins",
    ),
    (
        "gandi-vm-mount",
        "hand the disks of the boot to the attach helper",
    ),
    ("gandi-vm-postboot", "run the customer's commands once"),
    ("gandi-vm-validate", "check a platform config file"),
    (
        "gandi-vm-status",
        "show the boot's stages, while they run too",
    ),
    ("gandi-vm-report", "write an archive for a support ticket"),
    (
        "gandi-vm-root-disk",
        "grow the root partition and filesystem",
    ),
    ("gandi-vm-mount-root", "move the automount root"),
    ("gandi-vm-automount", "turn automounting on or off"),
    (
        "gandi-vm-iface",
        "configure a hot-plugged network interface",
    ),
    ("gandi-vm-memory-online", "online a hot-added memory block"),
];

/// The NAME line of page `name`: from [`WHATIS`], else the first clause
/// of its about text.
fn whatis(name: &str, about: &str) -> String {
    WHATIS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or_else(|| one_line(about), |(_, w)| w.to_string())
}

/// The first clause of an about text, for the one line of NAME (`list the
/// candidate data disks`): up to its first `.`, `:` or `;`.
fn one_line(about: &str) -> String {
    let flat = about.split_whitespace().collect::<Vec<_>>().join(" ");
    let end = flat
        .char_indices()
        .find(|&(i, c)| {
            matches!(c, '.' | ':' | ';')
                && flat[i + 1..].chars().next().is_none_or(char::is_whitespace)
        })
        .map_or(flat.len(), |(i, _)| i);
    let mut line = flat[..end].trim().to_string();
    if let Some(first) = line.chars().next()
        && line.chars().nth(1).is_some_and(char::is_lowercase)
    {
        line.replace_range(..first.len_utf8(), &first.to_lowercase().to_string());
    }
    line
}

/// Sections written by hand after clap's, as (title, roff body).
type Sections = &'static [(&'static str, &'static str)];

const EXIT_STATUS: &str = r#".TP
\fB0\fR
Done: every step ran or had nothing to do; for the map, the entry was printed.
.TP
\fB1\fR
A step failed (\fBgandi\-vm status\fR says which and why), a value was refused, or the command could not do its work; for the map, the key is not served (no such disk, excluded, mounted elsewhere, turned off).
.TP
\fB2\fR
A usage error: unknown subcommand or option (with a suggestion), a missing argument; for the map, a key that cannot be a disk's name.
.TP
\fB3\fR
\fBstatus \-\-wait\fR ran out of time (\fB\-\-timeout\fR) before every stage of this boot had ended.
"#;

const MAIN_SECTIONS: Sections = &[
    ("EXIT STATUS", EXIT_STATUS),
    (
        "ENVIRONMENT",
        r#".TP
\fBGANDI_CONFIG\fR
The settings file to read instead of \fI/etc/default/gandi\fR or \fI/etc/sysconfig/gandi\fR (see \fBgandi\fR(5)).
.TP
\fBGANDI_LOG\fR
\fBdebug\fR or \fBwarn\fR: more or fewer log lines (the default is info).
.TP
\fBJOURNAL_STREAM\fR
Set by systemd when standard error is the journal: each line then carries its priority (\fBjournalctl \-p err \-t gandi\fR finds the errors) and is not sent to syslog again.
"#,
    ),
    (
        "FILES",
        r#".TP
\fI/etc/default/gandi\fR, \fI/etc/sysconfig/gandi\fR
The settings (\fBgandi\fR(5)).
.TP
\fI/etc/gandi/disabled\fR
When it exists (as with \fBgandi.disabled=1\fR on the kernel command line) no boot stage nor hot\-plug path runs; the map keeps serving the disks already there unless \fBCONFIG_ALLOW_MOUNT=0\fR.
.TP
\fI/etc/auto.gandi\fR
The autofs program map: a link to \fI/usr/libexec/gandi\-vm/gandi\-map\fR.
.TP
\fI/etc/auto.master.d/gandi.autofs\fR
The master map entry of the mount root (\fBgandi\-vm mount\-root\fR moves it).
.TP
\fI/etc/gandi/hooks/\fR, \fI/etc/gandi/plugins.d/\fR, \fI/etc/gandi/bootstrap.d/\fR
The admin's hooks and steps; run only when owned by root and writable by no one else.
.TP
\fI/run/gandi/status.json\fR
This boot's stages and steps, written as they run (\fBgandi\-vm status\fR).
.TP
\fI/var/lib/gandi/\fR
State kept across boots: the values applied (names only in a report), the previous boot's status, the platform disk's record.
.TP
\fI/gandi/\fR
The platform's configuration, extracted at the first boot (root only).
"#,
    ),
    (
        "EXAMPLES",
        r#"Wait over SSH until the boot's stages have ended, then see how they went:
.PP
.RS
.nf
gandi\-vm status \-\-wait \-\-timeout 900 && echo ready
.fi
.RE
.PP
List the data disks, then release one before detaching it:
.PP
.RS
.nf
gandi\-vm disks
gandi\-vm disk release backups
.fi
.RE
.PP
Check a configuration as the platform would send it, from standard input:
.PP
.RS
.nf
gandi\-vm validate \- < config.json
.fi
.RE
.PP
Collect what support needs (no secret goes in it):
.PP
.RS
.nf
gandi\-vm report \-\-output /root/report.tar.gz
.fi
.RE
.PP
Turn every boot stage and hot\-plug path off, then on again:
.PP
.RS
.nf
touch /etc/gandi/disabled
rm /etc/gandi/disabled
.fi
.RE
"#,
    ),
    (
        "SEE ALSO",
        r#"\fBgandi\fR(5), \fBautofs\fR(5), \fBautomount\fR(8), \fBudev\fR(7), \fBsystemd.unit\fR(5), \fBjournalctl\fR(1)
"#,
    ),
];

const SUB_SECTIONS: Sections = &[
    ("EXIT STATUS", EXIT_STATUS),
    (
        "SEE ALSO",
        r#"\fBgandi\-vm\fR(8), \fBgandi\fR(5)
"#,
    ),
];

fn page(cmd: &clap::Command, name: &str, bin: &str, dir: &Path, extra: Sections) -> Result<()> {
    let long = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(bin.to_string())
        .about(whatis(name, &long))
        .long_about(long);
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("gandi-vm");
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut buf)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut buf)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(&mut buf)?;
    }
    for (title, body) in extra {
        buf.extend_from_slice(format!(".SH \"{title}\"\n{body}").as_bytes());
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut buf)?;
    }
    let path = dir.join(format!("{name}.8"));
    fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))
}

/// `gandi(5)`: the settings file, from the same table as the README's.
fn settings_page() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!(
        ".TH GANDI 5 \"\" \"gandi-vm {version}\" \"gandi-vm\"\n\
         .SH NAME\ngandi \\- settings of gandi\\-vm\n\
         .SH SYNOPSIS\n\\fI/etc/default/gandi\\fR (Debian), \\fI/etc/sysconfig/gandi\\fR (RPM), \
         or the file named by \\fBGANDI_CONFIG\\fR\n\
         .SH DESCRIPTION\n\
         Shell\\-style \\fBKEY=VALUE\\fR lines, with quotes and \\fB#\\fR comments. An empty value \
         means the default (for \\fBCONFIG_NODHCP\\fR, the empty list); \\fB$\\fR is not expanded; \
         a malformed line is reported with its number and skipped, a key that is not one of \
         these is reported (by \\fBgandi\\-vm settings\\fR and at each stage's start) and ignored. \
         Flags take \\fB1\\fR or \\fB0\\fR. \\fBgandi\\-vm settings\\fR prints the values in force.\n\
         .SH KEYS\n"
    );
    for (keys, default, meaning) in gandi_vm::base::settings::KEYS {
        let names: Vec<String> = keys
            .iter()
            .map(|k| format!("\\fB{}\\fR", roff(k)))
            .collect();
        out.push_str(&format!(
            ".TP\n{}\n{}\n(default: {})\n",
            names.join(", "),
            roff(meaning),
            roff(default)
        ));
    }
    out.push_str(
        ".SH FILES\n\
         .TP\n\\fI/etc/gandi/disabled\\fR\n\
         When it exists, no boot stage nor hot\\-plug path runs (see \\fBGANDI_DISABLED_FILE\\fR).\n\
         .SH EXAMPLES\n\
         Keep the admin's own resolvers and leave disks unmounted:\n\
         .PP\n.RS\n.nf\nCONFIG_NAMESERVER=0\nCONFIG_ALLOW_MOUNT=0\n.fi\n.RE\n\
         .SH \"SEE ALSO\"\n\\fBgandi\\-vm\\fR(8)\n",
    );
    out
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [task, dir] if task == "docs" => generate(Path::new(dir)),
        _ => anyhow::bail!("usage: xtask docs DIR"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_line() {
        assert_eq!(
            one_line("List the candidate data disks: label, UUID,\ntype."),
            "list the candidate data disks"
        );
        assert_eq!(
            one_line("Handle a block event. Without"),
            "handle a block event"
        );
        assert_eq!(one_line("UUID first."), "UUID first");
        assert_eq!(
            one_line("Wait for /etc/auto.gandi"),
            "wait for /etc/auto.gandi"
        );
    }

    #[test]
    fn every_page_has_its_whatis() {
        let cmd = Cli::command();
        let mut names = vec!["gandi-vm".to_string()];
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let name = format!("gandi-vm-{}", sub.get_name());
            for subsub in sub.get_subcommands().filter(|s| s.get_name() != "help") {
                names.push(format!("{name}-{}", subsub.get_name()));
            }
            names.push(name);
        }
        for name in &names {
            assert!(
                WHATIS.iter().any(|(n, _)| n == name),
                "{name} has no NAME line"
            );
        }
        for (name, what) in WHATIS {
            assert!(names.iter().any(|n| n == name), "{name} is no page");
            assert!(what.len() < 60 && !what.contains('('), "{name}: {what}");
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff("`a-b` c\\d"), "\\fBa\\-b\\fR c\\ed");
        assert_eq!(roff(".hidden"), "\\&.hidden");
        assert_eq!(roff("`open"), "\\fBopen\\fR");
    }
}
