//! `/etc/auto.gandi`: the autofs program map, a program of its own.
//!
//! autofs runs it on every lookup under the mount root (`auto.gandi KEY`)
//! and waits for it with no time limit. It holds the lookup path only
//! (settings, discovery, records, the map), shared with the suite through
//! the library, and is linked statically: no loader, no shared libraries
//! to map, so each lookup costs little more than an `exec`.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(gandi_vm::cmd::map::main(std::env::args_os().collect()))
}
