//! Bandwidth limits, one syntax for every tool that takes one: a rate (`"1M"`, `"500K"`,
//! `"off"`) or a timetable of rates by time of day (`"08:00 1M, 19:00 off"`), written as
//! restic's `--limit-upload`/`--limit-download`, rsync's `--bwlimit` and rclone's `--bwlimit`.
//!
//! Units are binary, per second, as all three tools read them: `K` is KiB/s, `M` MiB/s, `G`
//! GiB/s. A bare number is refused: restic and rsync would read it as KiB/s, rclone too, but
//! a reader of the config would not know.
//!
//! A timetable's entry holds from its time until the next entry's; before the first entry
//! of the day the last one still holds (it began the day before), as rclone reads its own
//! timetables. Only rclone changes its rate during a run (it reads the timetable itself);
//! restic 0.14 and rsync take one rate per run, so for them the rate in effect when the tool
//! starts applies for the whole run ([`Limit::at`], [`MidRun`]). Waiting for a window
//! instead was not chosen: a timer already decides when a backup runs, and a backup that
//! waits for "off" could wait past its next run, or forever on a machine that sleeps at night.

use std::fmt;

/// A rate in bytes per second, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Off,
    BytesPerSec(u64),
}

impl Rate {
    /// KiB/s, the unit restic and rsync take (at least 1: 0 means "no limit" to both).
    pub fn kib(self) -> Option<u64> {
        match self {
            Rate::Off => None,
            Rate::BytesPerSec(bytes) => Some(bytes.div_ceil(1024).max(1)),
        }
    }

    /// rclone's spelling: `off`, or KiB/s with its `K` suffix.
    fn rclone(self) -> String {
        match self.kib() {
            None => "off".into(),
            Some(kib) => format!("{kib}K"),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Off => f.write_str("no limit"),
            Rate::BytesPerSec(bytes) => {
                write!(f, "{}/s", crate::out::human_bytes(*bytes))
            }
        }
    }
}

/// A time of day, minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Minute(pub u16);

impl fmt::Display for Minute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// A bandwidth limit as the config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// The same rate all day.
    Rate(Rate),
    /// Rates by time of day, times strictly increasing.
    Timetable(Vec<(Minute, Rate)>),
}

/// How a tool follows a timetable during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MidRun {
    /// The tool reads the timetable and changes its rate as the day goes (rclone).
    Follows,
    /// The tool takes one rate per run: the one in effect when it starts (restic 0.14, rsync).
    RateAtStart,
}

/// One limit of a stage, for `check --verbose` and `hello`: the key, its value and how the
/// stage's tool applies it.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    pub key: &'static str,
    pub limit: &'a Limit,
    pub tool: &'static str,
    pub mid_run: MidRun,
}

impl<'a> Applied<'a> {
    /// The `upload_limit` and `download_limit` a stage has, as `tool` applies them (restic
    /// and rclone take the same two keys).
    pub fn upload_and_download(
        upload: Option<&'a Limit>,
        download: Option<&'a Limit>,
        tool: &'static str,
        mid_run: MidRun,
    ) -> Vec<Applied<'a>> {
        [("upload_limit", upload), ("download_limit", download)]
            .into_iter()
            .filter_map(|(key, limit)| {
                Some(Applied {
                    key,
                    limit: limit?,
                    tool,
                    mid_run,
                })
            })
            .collect()
    }

    /// What applies for a run starting at `now`, in words.
    pub fn describe(&self, now: Minute) -> String {
        let Applied {
            key,
            limit,
            tool,
            mid_run,
        } = self;
        match (limit, mid_run) {
            (Limit::Rate(rate), _) => format!("{key}: {rate}"),
            (Limit::Timetable(_), MidRun::Follows) => {
                let (rate, from) = limit.at(now);
                format!(
                    "{key}: timetable \"{limit}\", followed by {tool} during the run (now {rate}{})",
                    from.map(|m| format!(" from the {m} entry"))
                        .unwrap_or_default()
                )
            }
            (Limit::Timetable(_), MidRun::RateAtStart) => {
                let (rate, from) = limit.at(now);
                format!(
                    "{key}: timetable \"{limit}\"; rate at start: {rate}{} ({tool} keeps one \
                     rate for a whole run)",
                    from.map(|m| format!(" from the {m} entry"))
                        .unwrap_or_default()
                )
            }
        }
    }
}

impl Limit {
    /// The rate in effect at `now`, and the timetable entry it comes from.
    pub fn at(&self, now: Minute) -> (Rate, Option<Minute>) {
        match self {
            Limit::Rate(rate) => (*rate, None),
            Limit::Timetable(entries) => {
                let entry = entries
                    .iter()
                    .rev()
                    .find(|(at, _)| *at <= now)
                    // Before the first entry of the day: the last one began yesterday.
                    .or(entries.last())
                    .expect("a timetable has entries");
                (entry.1, Some(entry.0))
            }
        }
    }

    /// The times at which the rate may change (none for a plain rate).
    fn times(&self) -> Vec<Minute> {
        match self {
            Limit::Rate(_) => Vec::new(),
            Limit::Timetable(entries) => entries.iter().map(|(at, _)| *at).collect(),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |rate: &Rate| match rate.kib() {
            None => "off".to_string(),
            Some(kib) if kib % 1024 == 0 => format!("{}M", kib / 1024),
            Some(kib) => format!("{kib}K"),
        };
        match self {
            Limit::Rate(rate) => f.write_str(&word(rate)),
            Limit::Timetable(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(at, rate)| format!("{at} {}", word(rate)))
                    .collect();
                f.write_str(&parts.join(", "))
            }
        }
    }
}

/// rclone's `--bwlimit` value for an upload and a download limit: a rate, `UP:DOWN`, or a
/// timetable `HH:MM,UP:DOWN HH:MM,UP:DOWN` holding both directions at each time either
/// changes. `None` without limits.
pub fn rclone_bwlimit(upload: Option<&Limit>, download: Option<&Limit>) -> Option<String> {
    let pair = |now: Minute| {
        let up = upload.map_or(Rate::Off, |l| l.at(now).0);
        let down = download.map_or(Rate::Off, |l| l.at(now).0);
        if up == down {
            up.rclone()
        } else {
            format!("{}:{}", up.rclone(), down.rclone())
        }
    };
    let mut times: Vec<Minute> = upload
        .iter()
        .chain(download.iter())
        .flat_map(|l| l.times())
        .collect();
    if upload.is_none() && download.is_none() {
        return None;
    }
    times.sort();
    times.dedup();
    if times.is_empty() {
        return Some(pair(Minute(0)));
    }
    let entries: Vec<String> = times
        .iter()
        .map(|&at| format!("{at},{}", pair(at)))
        .collect();
    Some(entries.join(" "))
}

/// Why a text is not a limit; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "`{0}` is not a rate: write a number with K (KiB/s), M (MiB/s) or G (GiB/s), e.g. \"500K\" or \"1.5M\", or \"off\""
    )]
    Rate(String),
    #[error(
        "`{0}` is not a time of day: write HH:MM from 00:00 to 23:59, e.g. \"08:00 1M, 19:00 off\""
    )]
    Time(String),
    #[error(
        "timetable entry `{0}` needs a time and a rate separated by a space, e.g. \"08:00 1M\""
    )]
    Entry(String),
    #[error(
        "the timetable's times must increase through the day, but {later} follows {earlier}: \
         write the entries from the earliest, e.g. \"08:00 1M, 19:00 off\""
    )]
    Order { earlier: String, later: String },
}

/// Parses a limit: a rate or a comma-separated timetable.
pub fn parse(text: &str) -> Result<Limit, LimitError> {
    let text = text.trim();
    if !text.contains(':') {
        return parse_rate(text).map(Limit::Rate);
    }
    let mut entries: Vec<(Minute, Rate)> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let Some((time, rate)) = entry.split_once(char::is_whitespace) else {
            return Err(LimitError::Entry(entry.to_string()));
        };
        let at = parse_time(time)?;
        let rate = parse_rate(rate.trim())?;
        if let Some((previous, _)) = entries.last()
            && *previous >= at
        {
            return Err(LimitError::Order {
                earlier: previous.to_string(),
                later: at.to_string(),
            });
        }
        entries.push((at, rate));
    }
    Ok(Limit::Timetable(entries))
}

fn parse_rate(text: &str) -> Result<Rate, LimitError> {
    let bad = || LimitError::Rate(text.to_string());
    if text.eq_ignore_ascii_case("off") {
        return Ok(Rate::Off);
    }
    let unitless = text.trim_end_matches("/s");
    let split = unitless
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let number: f64 = unitless[..split].parse().map_err(|_| bad())?;
    let factor: u64 = match unitless[split..].trim().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = number * factor as f64;
    // Below 1 KiB/s the tools cannot express it (their unit is the KiB).
    if !bytes.is_finite() || bytes < 1024.0 {
        return Err(bad());
    }
    Ok(Rate::BytesPerSec(bytes as u64))
}

fn parse_time(text: &str) -> Result<Minute, LimitError> {
    let bad = || LimitError::Time(text.to_string());
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    if hours.is_empty() || hours.len() > 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Ok(Minute(hours * 60 + minutes))
}

/// The local time of day now, which a timetable is read against.
pub fn now() -> Minute {
    let now = jiff::Zoned::now();
    Minute(now.hour() as u16 * 60 + now.minute() as u16)
}

/// A limit in a config, checked when it is read: errors carry the value's position.
impl<'de> serde::Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn rates_are_binary_units_per_second() {
        assert_eq!(parse("1M"), Ok(Limit::Rate(Rate::BytesPerSec(MIB))));
        assert_eq!(parse("500K"), Ok(Limit::Rate(Rate::BytesPerSec(500 << 10))));
        assert_eq!(
            parse("1.5MiB/s"),
            Ok(Limit::Rate(Rate::BytesPerSec(3 << 19)))
        );
        assert_eq!(parse("off"), Ok(Limit::Rate(Rate::Off)));
        for bad in ["1000", "1X", "", "0.5K", "M"] {
            assert!(
                matches!(parse(bad), Err(LimitError::Rate(_))),
                "{bad}: {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn a_timetable_holds_from_each_entry_and_wraps_at_midnight() {
        let limit = parse("08:00 1M, 19:00 off").unwrap();
        let rate = Rate::BytesPerSec(MIB);
        assert_eq!(limit.at(Minute(8 * 60)), (rate, Some(Minute(480))));
        assert_eq!(limit.at(Minute(18 * 60 + 59)), (rate, Some(Minute(480))));
        assert_eq!(limit.at(Minute(19 * 60)), (Rate::Off, Some(Minute(1140))));
        // 03:00 is still the evening's "off".
        assert_eq!(limit.at(Minute(180)), (Rate::Off, Some(Minute(1140))));
        assert_eq!(limit.to_string(), "08:00 1M, 19:00 off");
    }

    #[test]
    fn timetable_mistakes_are_named() {
        assert!(matches!(parse("25:00 1M"), Err(LimitError::Time(_))));
        assert!(matches!(parse("8:5 1M"), Err(LimitError::Time(_))));
        assert!(matches!(parse("08:00"), Err(LimitError::Entry(_))));
        assert!(matches!(
            parse("19:00 off, 08:00 1M"),
            Err(LimitError::Order { .. })
        ));
        assert!(matches!(parse("08:00 1T"), Err(LimitError::Rate(_))));
    }

    #[test]
    fn tools_get_kib() {
        assert_eq!(Rate::BytesPerSec(MIB).kib(), Some(1024));
        assert_eq!(Rate::BytesPerSec(1500).kib(), Some(2));
        assert_eq!(Rate::Off.kib(), None);
    }

    #[test]
    fn rclone_gets_both_directions_at_every_change() {
        let up = parse("08:00 1M, 19:00 off").unwrap();
        let down = parse("4M").unwrap();
        assert_eq!(
            rclone_bwlimit(Some(&down), None).as_deref(),
            Some("4096K:off")
        );
        assert_eq!(
            rclone_bwlimit(Some(&down), Some(&down)).as_deref(),
            Some("4096K")
        );
        assert_eq!(
            rclone_bwlimit(Some(&up), Some(&down)).as_deref(),
            Some("08:00,1024K:4096K 19:00,off:4096K")
        );
        assert_eq!(rclone_bwlimit(None, None), None);
    }

    #[test]
    fn describes_what_applies_at_start() {
        let limit = parse("08:00 1M, 19:00 off").unwrap();
        let applied = Applied {
            key: "upload_limit",
            limit: &limit,
            tool: "restic",
            mid_run: MidRun::RateAtStart,
        };
        let text = applied.describe(Minute(9 * 60));
        assert!(
            text.contains("rate at start: 1.0 MiB/s from the 08:00 entry"),
            "{text}"
        );
    }
}
