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

/// Whether `pid` is a live process of ours (`gandi-vm`, by the name the
/// kernel gave it from the program it runs, in `/proc/PID/stat`): a PID
/// named in a record or a status is not taken for ours once another
/// program has it (PIDs are reused, early in a boot most of all). Not
/// from `/proc/PID/cmdline`: reading it takes the process's memory lock,
/// and the map must not wait on a process stuck in a page fault.
pub fn alive_ours(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| ours_by_stat(&stat))
}

/// A `/proc/PID/stat` line of a live `gandi-vm`: its name between the
/// first `(` and the last `) ` (a name may hold either), its state not a
/// zombie's.
fn ours_by_stat(stat: &str) -> bool {
    let Some((head, rest)) = stat.rsplit_once(") ") else {
        return false;
    };
    let name = head.split_once('(').map(|(_, n)| n);
    name == Some("gandi-vm") && !rest.starts_with('Z') && !rest.starts_with('X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_by_the_kernel_name_of_a_live_process() {
        assert!(ours_by_stat("123 (gandi-vm) S 1 123 123 0 -1"));
        assert!(!ours_by_stat("123 (gandi-vm) Z 1 123 123 0 -1"));
        assert!(!ours_by_stat("123 (sleep) S 1 123 123 0 -1"));
        // A name that imitates the line's shape.
        assert!(!ours_by_stat("123 (x) (gandi-vm) S 1"));
        assert!(!ours_by_stat("123 (gandi-vm) S) 1"));
        assert!(!ours_by_stat(""));
        assert!(alive_ours(std::process::id()));
    }
}
