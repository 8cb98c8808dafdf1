//! systemd time spans (`systemd.time(7)`): "90s", "5min", "1h 30min", "2d", plain seconds.
//!
//! Parsed here rather than by systemd so that a bad value is reported with its position in
//! the config before any unit is written.

use std::fmt;
use std::time::Duration;

/// A validated systemd time span, rendered back in canonical form for unit files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespan(pub Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimespanError {
    #[error("empty time span")]
    Empty,
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("unknown time unit `{0}`")]
    UnknownUnit(String),
    #[error("time span too large")]
    Overflow,
}

/// Units of systemd.time(7), in microseconds.
const UNITS: &[(&[&str], u64)] = &[
    (&["us", "usec", "µs"], 1),
    (&["ms", "msec"], 1_000),
    (&["s", "sec", "second", "seconds"], 1_000_000),
    (&["m", "min", "minute", "minutes"], 60_000_000),
    (&["h", "hr", "hour", "hours"], 3_600_000_000),
    (&["d", "day", "days"], 86_400_000_000),
    (&["w", "week", "weeks"], 604_800_000_000),
    (&["M", "month", "months"], 2_629_800_000_000),
    (&["y", "year", "years"], 31_557_600_000_000),
];

impl Timespan {
    pub fn parse(text: &str) -> Result<Self, TimespanError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TimespanError::Empty);
        }
        let mut total: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            rest = rest.trim_start();
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(TimespanError::NotANumber(rest.to_string()));
            }
            let number: f64 = rest[..digits]
                .parse()
                .map_err(|_| TimespanError::NotANumber(rest[..digits].to_string()))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_alphabetic() && c != 'µ')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let micros = if unit.is_empty() {
                1_000_000
            } else {
                UNITS
                    .iter()
                    .find(|(names, _)| names.contains(&unit))
                    .map(|(_, micros)| *micros)
                    .ok_or_else(|| TimespanError::UnknownUnit(unit.to_string()))?
            };
            let add = number * micros as f64;
            if !add.is_finite() || add > u64::MAX as f64 {
                return Err(TimespanError::Overflow);
            }
            total = total
                .checked_add(add as u64)
                .ok_or(TimespanError::Overflow)?;
        }
        Ok(Timespan(Duration::from_micros(total)))
    }
}

impl fmt::Display for Timespan {
    /// Canonical systemd form, e.g. `1h 30min`, `45s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut micros = self.0.as_micros() as u64;
        if micros == 0 {
            return f.write_str("0");
        }
        const PARTS: &[(&str, u64)] = &[
            ("d", 86_400_000_000),
            ("h", 3_600_000_000),
            ("min", 60_000_000),
            ("s", 1_000_000),
            ("ms", 1_000),
            ("us", 1),
        ];
        let mut first = true;
        for (name, size) in PARTS {
            let count = micros / size;
            if count > 0 {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{count}{name}")?;
                first = false;
                micros -= count * size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        Timespan::parse(text).unwrap().0.as_secs()
    }

    #[test]
    fn parses_systemd_spans() {
        assert_eq!(secs("90"), 90);
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("5min"), 300);
        assert_eq!(secs("1h 30min"), 5400);
        assert_eq!(secs("1h30min"), 5400);
        assert_eq!(secs("2d"), 172_800);
        assert_eq!(secs("1w"), 604_800);
        assert_eq!(Timespan::parse("250ms").unwrap().0.as_millis(), 250);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            Timespan::parse("5 parsecs"),
            Err(TimespanError::UnknownUnit("parsecs".into()))
        );
        assert_eq!(Timespan::parse(""), Err(TimespanError::Empty));
        assert!(matches!(
            Timespan::parse("min"),
            Err(TimespanError::NotANumber(_))
        ));
    }

    #[test]
    fn renders_canonically() {
        assert_eq!(Timespan::parse("5400").unwrap().to_string(), "1h 30min");
        assert_eq!(Timespan::parse("0.25s").unwrap().to_string(), "250ms");
        assert_eq!(Timespan::parse("2d 1s").unwrap().to_string(), "2d 1s");
    }
}
