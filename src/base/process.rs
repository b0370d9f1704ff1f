//! Whether a process named in a record, a status or a lock still runs.

/// Whether the process `pid` still runs (a grower that was killed leaves
/// its `growing` behind; it must not refuse the disk forever).
pub fn alive(pid: u32) -> bool {
    // A zombie (dead, not reaped yet) is not alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// Whether `pid` is a live process of ours (`gandi-vm`, by its first
/// argument): a PID named in a record or a status is not taken for ours
/// once another program has it (PIDs are reused, early in a boot most of
/// all).
pub fn alive_ours(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            argv0.rsplit(|&b| b == b'/').next() == Some(b"gandi-vm".as_slice())
        })
}
