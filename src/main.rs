//! The `gandi-vm` binary: everything is in the library's `cmd`.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(gandi_vm::cmd::main(std::env::args_os().collect()))
}
