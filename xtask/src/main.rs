//! The project's build tasks, kept out of the shipped binaries:
//! `xtask docs DIR` writes the man pages and shell completions, generated
//! from the command-line definition.

use anyhow::{Context, Result};
use clap::CommandFactory;
use gandi_vm::cli::Cli;
use std::fs;
use std::path::Path;

/// Writes `man8/gandi-vm.8`, `man8/gandi-vm-SUB.8` (and for `disk`'s own
/// subcommands) and `completions/{gandi-vm.bash,_gandi-vm,gandi-vm.fish}`.
fn generate(dir: &Path) -> Result<()> {
    let man = dir.join("man8");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let cmd = Cli::command().name("gandi-vm");
    page(&cmd, "gandi-vm", "gandi-vm", &man)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("gandi-vm-{}", sub.get_name());
        let bin = format!("gandi-vm {}", sub.get_name());
        page(sub, &name, &bin, &man)?;
        for subsub in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
            page(
                subsub,
                &format!("{name}-{}", subsub.get_name()),
                &format!("{bin} {}", subsub.get_name()),
                &man,
            )?;
        }
    }
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

fn page(cmd: &clap::Command, name: &str, bin: &str, dir: &Path) -> Result<()> {
    let cmd = cmd.clone().name(name.to_string()).bin_name(bin.to_string());
    let man = clap_mangen::Man::new(cmd).section("8").manual("gandi-vm");
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    let path = dir.join(format!("{name}.8"));
    fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [task, dir] if task == "docs" => generate(Path::new(dir)),
        _ => anyhow::bail!("usage: xtask docs DIR"),
    }
}
