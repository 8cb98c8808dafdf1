//! How long a job's timer may leave between two runs: the longest gap between the next
//! elapses of its `OnCalendar=` expression, as systemd itself computes them
//! (`systemd-analyze calendar`), so that "Mon..Fri 03:00" gives the weekend's three days and
//! not one. The metrics export it, and the shipped alert rules compare the age of the last
//! success with it.

use std::time::Duration;

use crate::process::Command;

/// How many elapses are compared: enough for weekday patterns and monthly schedules.
const ITERATIONS: usize = 10;

/// The longest gap between the next elapses of `calendar`, or `None` when systemd cannot
/// tell (no `systemd-analyze`, an expression that elapses fewer than twice).
pub fn longest_gap(calendar: &str) -> Option<Duration> {
    let mut output = String::new();
    Command::new("systemd-analyze")
        .args(["calendar", &format!("--iterations={ITERATIONS}"), "--"])
        .arg(calendar)
        // Every elapse printed in UTC, without a second "(in UTC)" line per elapse.
        .env("TZ", "UTC")
        .on_line(|line| {
            output.push_str(line);
            output.push('\n');
        })
        .run()
        .ok()?;
    longest_gap_in(&output)
}

/// The longest gap between the elapses listed in `systemd-analyze calendar`'s output.
fn longest_gap_in(output: &str) -> Option<Duration> {
    let elapses: Vec<jiff::Timestamp> = output
        .lines()
        .filter_map(|line| {
            let (label, value) = line.split_once(": ")?;
            let label = label.trim();
            (label == "Next elapse" || label.starts_with("Iter. #")).then_some(value)?;
            // "Sat 2026-12-05 00:00:00 UTC"
            let mut words = value.split_whitespace().skip(1);
            let (date, time) = (words.next()?, words.next()?);
            let civil: jiff::civil::DateTime = format!("{date}T{time}").parse().ok()?;
            civil
                .to_zoned(jiff::tz::TimeZone::UTC)
                .ok()
                .map(|z| z.timestamp())
        })
        .collect();
    elapses
        .windows(2)
        .filter_map(|pair| Duration::try_from(pair[1].duration_since(pair[0])).ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_longest_gap_of_systemds_listing() {
        let output = "  Original form: Mon..Fri 03:00\n\
                      Normalized form: Mon..Fri *-*-* 03:00:00\n\
                          Next elapse: Fri 2026-12-04 03:00:00 UTC\n\
                             From now: 1h left\n\
                             Iter. #2: Mon 2026-12-07 03:00:00 UTC\n\
                             From now: 3 days left\n\
                             Iter. #3: Tue 2026-12-08 03:00:00 UTC\n";
        assert_eq!(longest_gap_in(output), Some(Duration::from_secs(3 * 86400)));
        assert_eq!(longest_gap_in("    Next elapse: never\n"), None);
    }

    #[test]
    fn asks_systemd() {
        assert_eq!(longest_gap("daily"), Some(Duration::from_secs(86400)));
        assert_eq!(
            longest_gap("Mon..Fri 03:00"),
            Some(Duration::from_secs(3 * 86400))
        );
        assert_eq!(longest_gap("not a calendar"), None);
    }
}
