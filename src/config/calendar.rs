//! Validation of systemd calendar events (`OnCalendar=`, systemd.time(7)).
//!
//! backupctl does not compute elapse times (systemd does); it only checks the syntax so that
//! a typo is reported with its position in the config instead of as a timer that never fires.
//! Accepted: the shorthands (`daily`, `weekly`, …) and `[WEEKDAYS] [DATE] [TIME] [TIMEZONE]`
//! where each date/time component is `*`, a value, a list, a range `a..b` and a repetition
//! `/n`, and the day may count from the month's end with `~`.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("empty calendar expression")]
    Empty,
    #[error("`{0}` is not a weekday (use Mon, Tue, …, Sun, or ranges like Mon..Fri)")]
    Weekday(String),
    #[error("`{0}` is not a date (use YYYY-MM-DD with `*`, lists, ranges `..` and `/` repeats)")]
    Date(String),
    #[error("`{0}` is not a time of day (use HH:MM or HH:MM:SS)")]
    Time(String),
    #[error("{what} {value} is out of range {min}..{max}")]
    Range {
        what: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("unexpected `{0}` (expected weekdays, a date, a time and a time zone, in that order)")]
    Unexpected(String),
}

const SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "monthly",
    "weekly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];

const WEEKDAYS: &[(&str, &str)] = &[
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// Checks a calendar expression; `Ok(())` means systemd will accept it.
pub fn validate(expr: &str) -> Result<(), CalendarError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(CalendarError::Empty);
    }
    if SHORTHANDS.contains(&expr.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut tokens = expr.split_whitespace().peekable();
    // Weekdays come first and are the only part that starts with a letter (but a timezone
    // also does, so only take it when a weekday name parses).
    if let Some(first) = tokens.peek()
        && first.starts_with(|c: char| c.is_ascii_alphabetic())
        && is_weekday_list(first)
    {
        tokens.next();
    }
    let mut seen_date = false;
    let mut seen_time = false;
    let mut seen_zone = false;
    for token in tokens {
        if seen_zone {
            return Err(CalendarError::Unexpected(token.to_string()));
        }
        if token.contains(':') && !seen_time {
            validate_time(token)?;
            seen_time = true;
        } else if token.contains('-') && !token.contains('/') && !seen_date && !seen_time
            || (token.starts_with(|c: char| c.is_ascii_digit() || c == '*')
                && !seen_date
                && !seen_time)
        {
            validate_date(token)?;
            seen_date = true;
        } else if is_timezone(token) {
            seen_zone = true;
        } else {
            return Err(CalendarError::Unexpected(token.to_string()));
        }
    }
    Ok(())
}

fn is_weekday_list(token: &str) -> bool {
    token.split(',').all(|part| {
        let mut ends = part.splitn(2, "..");
        ends.all(|day| weekday(day).is_some())
    })
}

fn weekday(name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    WEEKDAYS
        .iter()
        .position(|(short, long)| lower == *short || lower == *long)
}

fn is_timezone(token: &str) -> bool {
    token.eq_ignore_ascii_case("utc")
        || (token.contains('/')
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
            && token.starts_with(|c: char| c.is_ascii_uppercase()))
}

fn validate_date(token: &str) -> Result<(), CalendarError> {
    let bad = || CalendarError::Date(token.to_string());
    // The day may be separated by `~` (counting from the end of the month) instead of `-`.
    let (head, day, from_end) = match token.rfind('~') {
        Some(at) => (&token[..at], &token[at + 1..], true),
        None => match token.rfind('-') {
            Some(at) => (&token[..at], &token[at + 1..], false),
            None => return Err(bad()),
        },
    };
    let parts: Vec<&str> = head.split('-').collect();
    let (year, month) = match parts.as_slice() {
        [month] => (None, *month),
        [year, month] => (Some(*year), *month),
        _ => return Err(bad()),
    };
    if let Some(year) = year {
        component(year, "year", 1970, 2199).map_err(|e| or_syntax(e, bad()))?;
    }
    component(month, "month", 1, 12).map_err(|e| or_syntax(e, bad()))?;
    let max_day = if from_end { 28 } else { 31 };
    component(day, "day", 1, max_day).map_err(|e| or_syntax(e, bad()))?;
    Ok(())
}

fn validate_time(token: &str) -> Result<(), CalendarError> {
    let bad = || CalendarError::Time(token.to_string());
    let parts: Vec<&str> = token.split(':').collect();
    let (hour, minute, second) = match parts.as_slice() {
        [h, m] => (*h, *m, None),
        [h, m, s] => (*h, *m, Some(*s)),
        _ => return Err(bad()),
    };
    component(hour, "hour", 0, 23).map_err(|e| or_syntax(e, bad()))?;
    component(minute, "minute", 0, 59).map_err(|e| or_syntax(e, bad()))?;
    if let Some(second) = second {
        // Seconds may carry a fraction, e.g. 00:00:00.5; validate the whole part.
        let whole: String = second
            .split(',')
            .map(|part| part.split('.').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",");
        component(&whole, "second", 0, 59).map_err(|e| or_syntax(e, bad()))?;
    }
    Ok(())
}

/// A range error is precise and kept; a bare syntax failure is replaced by the caller's
/// message, which names the whole token.
fn or_syntax(error: Option<CalendarError>, syntax: CalendarError) -> CalendarError {
    error.unwrap_or(syntax)
}

/// One date/time component: `*`, `*/n`, or a comma list of `v`, `a..b`, `v/n`, `a..b/n`.
/// `Err(None)` is a syntax error; `Err(Some(_))` a value out of range.
fn component(
    text: &str,
    what: &'static str,
    min: u32,
    max: u32,
) -> Result<(), Option<CalendarError>> {
    if text.is_empty() {
        return Err(None);
    }
    for item in text.split(',') {
        let (range, repeat) = match item.split_once('/') {
            Some((range, repeat)) => (range, Some(repeat)),
            None => (item, None),
        };
        if let Some(repeat) = repeat {
            let n: u32 = repeat.parse().map_err(|_| None)?;
            if n == 0 {
                return Err(None);
            }
        }
        if range == "*" {
            continue;
        }
        let (low, high) = match range.split_once("..") {
            Some((low, high)) => (low, Some(high)),
            None => (range, None),
        };
        let check = |value: &str| -> Result<u32, Option<CalendarError>> {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(None);
            }
            let value: u32 = value.parse().map_err(|_| None)?;
            if value < min || value > max {
                return Err(Some(CalendarError::Range {
                    what,
                    value,
                    min,
                    max,
                }));
            }
            Ok(value)
        };
        let low = check(low)?;
        if let Some(high) = high {
            let high = check(high)?;
            if high < low {
                return Err(None);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_forms() {
        for expr in [
            "daily",
            "Weekly",
            "*-*-* 03:00:00",
            "*-*-* 03:00",
            "Mon..Fri 22:30",
            "Sat,Sun 04:00",
            "Mon *-*-* 00:00:00",
            "*-*-01 00:00:00",
            "2026-*-* 12:00",
            "*-02~03",
            "*:0/15",
            "*:00:00",
            "12,14,16:00",
            "*-*-* 03:00:00 UTC",
            "*-*-* 03:00 Europe/Berlin",
            "Fri *-*-1..7 18:00",
            "00:00:00.5",
        ] {
            assert_eq!(validate(expr), Ok(()), "{expr}");
        }
    }

    #[test]
    fn rejects_typos() {
        assert!(matches!(
            validate("daly"),
            Err(CalendarError::Unexpected(_))
        ));
        assert!(matches!(
            validate("*-*-* 25:00"),
            Err(CalendarError::Range { what: "hour", .. })
        ));
        assert!(matches!(
            validate("*-13-* 00:00"),
            Err(CalendarError::Range { what: "month", .. })
        ));
        assert!(validate("*-*-* 3").is_err());
        assert!(validate("Mon..Fry 10:00").is_err());
        assert!(validate("*-*-* 10:00 10:00").is_err());
        assert_eq!(validate(""), Err(CalendarError::Empty));
    }
}
