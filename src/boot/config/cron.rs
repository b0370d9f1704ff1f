//! The crontab step: the times of the daily, weekly and monthly `run-parts`
//! lines spread by the machine's number; only lines that are exactly ours
//! change (an admin's job, a comment, a six-field line, CRLF stay).

use super::*;

/// A number derived from the machine id: the same at every boot of one
/// machine, different between machines.
pub(super) fn machine_number(t: &Tree) -> Result<u64> {
    let id = t.read_string("/etc/machine-id").unwrap_or_default();
    let id = id.trim();
    if id.is_empty() {
        bail!("/etc/machine-id is empty: the spread would be the same on every VM");
    }
    Ok(crate::base::fingerprint::fnv1a(id.as_bytes()))
}

/// A `run-parts` job of the system crontab, as the distribution ships it.
pub(super) struct CronJob {
    name: &'static str,
    minute: &'static str,
    hour: &'static str,
    /// Day of month, month, day of week.
    days: [&'static str; 3],
}

/// Debian's and Ubuntu's four jobs, with their stock times.
pub(super) const CRON_JOBS: [CronJob; 4] = [
    CronJob {
        name: "hourly",
        minute: "17",
        hour: "*",
        days: ["*", "*", "*"],
    },
    CronJob {
        name: "daily",
        minute: "25",
        hour: "6",
        days: ["*", "*", "*"],
    },
    CronJob {
        name: "weekly",
        minute: "47",
        hour: "6",
        days: ["*", "*", "7"],
    },
    CronJob {
        name: "monthly",
        minute: "52",
        hour: "6",
        days: ["1", "*", "*"],
    },
];

/// The commands of a stock job line, byte for byte.
pub(super) fn cron_commands(job: &str) -> [String; 3] {
    let run = format!("cd / && run-parts --report /etc/cron.{job}");
    [
        run.clone(),
        format!("test -x /usr/sbin/anacron || ( {run} )"),
        format!("test -x /usr/sbin/anacron || {{ {run}; }}"),
    ]
}

/// The minute and hour we give `job` on a machine numbered `n`.
pub(super) fn cron_spread(job: &CronJob, n: u64) -> (String, String) {
    let minute = n % 60;
    let hour = (1 + (n / 60) % 6).to_string();
    match job.name {
        "hourly" => (minute.to_string(), job.hour.to_string()),
        "daily" => (((minute + 8) % 60).to_string(), hour),
        "weekly" => (((minute + 30) % 60).to_string(), hour),
        _ => (((minute + 45) % 60).to_string(), hour),
    }
}

/// The fields of a crontab line with their byte ranges: six fields, then
/// the command (to the end of the line, a `\r` left out).
pub(super) fn cron_fields(line: &str) -> Option<([std::ops::Range<usize>; 6], &str)> {
    let body = line.strip_suffix('\r').unwrap_or(line);
    let mut ranges: [std::ops::Range<usize>; 6] = Default::default();
    let mut at = 0;
    for r in &mut ranges {
        let start = at + body[at..].find(|c: char| c != ' ' && c != '\t')?;
        let end = start + body[start..].find([' ', '\t'])?;
        *r = start..end;
        at = end;
    }
    let command = body[at..].trim_start_matches([' ', '\t']);
    (!command.is_empty()).then_some((ranges, command))
}

/// The line with the job's time spread over the night, when it is one of
/// ours: a stock `run-parts` job line of the system crontab (as the
/// distribution ships it, user `root`), whose time is the stock one or the
/// one we gave it. Anything else (a comment, `MAILTO=`, an admin's job, a
/// stock line whose time the admin changed) is `None`: left byte for byte.
pub(super) fn cron_line(line: &str, n: u64) -> Option<String> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    let (f, command) = cron_fields(line)?;
    let field = |i: usize| &line[f[i].clone()];
    if field(5) != "root" {
        return None;
    }
    let job = CRON_JOBS.iter().find(|j| {
        [field(2), field(3), field(4)] == j.days
            && cron_commands(j.name).iter().any(|c| c == command)
    })?;
    let (minute, hour) = cron_spread(job, n);
    let now = (field(0), field(1));
    if now != (job.minute, job.hour) && now != (minute.as_str(), hour.as_str()) {
        return None;
    }
    Some(format!(
        "{}{minute}{}{hour}{}",
        &line[..f[0].start],
        &line[f[0].end..f[1].start],
        &line[f[1].end..]
    ))
}

/// Spreads the system crontab's stock `run-parts` jobs over the night,
/// per machine: minutes for hourly, minutes and hours (1 to 6) for the
/// others. Only those lines change, and only their two time fields; every
/// other byte (comments, `MAILTO`, the admin's jobs, CRLF line ends) stays.
pub(super) fn cron(t: &Tree) -> Result<Done> {
    let Ok(text) = t.read_string("/etc/crontab") else {
        return Ok(Done::skipped("no /etc/crontab"));
    };
    let n = machine_number(t)?;
    let mut out = String::with_capacity(text.len());
    let mut ours = 0;
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match cron_line(body, n) {
            Some(new) => {
                ours += 1;
                out.push_str(&new);
                out.push_str(end);
            }
            None => out.push_str(line),
        }
    }
    let c = t.write_if_changed("/etc/crontab", out.as_bytes(), WriteOpts::keep(0o644))?;
    let (minute, hour) = (n % 60, 1 + (n / 60) % 6);
    Ok(Done::of(
        c,
        format!("{ours} stock jobs at minute {minute}, hour {hour}"),
    ))
}
