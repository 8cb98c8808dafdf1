//! Validation of systemd calendar events (`OnCalendar=`, systemd.time(7)).
//!
//! backupctl does not compute elapse times (systemd does); it decides, before any unit is
//! written, whether systemd will accept the expression, so that a typo is reported with its
//! position in the config instead of as a timer that never fires. The rules are those of
//! systemd 252's `calendar_spec_from_string()` (src/shared/calendarspec.c), followed step by
//! step: a trailing time zone (`UTC`, the local zone's abbreviations, or any zone of the
//! time zone database as systemd finds it: `$TZDIR` when set, else `/usr/share/zoneinfo` and
//! NixOS's `/etc/zoneinfo`, see [`zone_dirs`]), the shorthands, then `[WEEKDAYS] [DATE] [TIME]` or
//! `@EPOCH`, then the range rules systemd applies after normalizing each component. The test
//! corpus in tests/calendar/ pins the agreement with `systemd-analyze calendar`.

use std::fmt;
use std::io::Read;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("empty calendar expression")]
    Empty,
    #[error("unknown time zone `{0}` ({dirs} no such zone)", dirs = zone_dirs_text())]
    UnknownZone(String),
    #[error(
        "`{0}` is not a shorthand (minutely, hourly, daily, weekly, monthly, quarterly, semiannually, yearly), a weekday or a date"
    )]
    Word(String),
    #[error(
        "`{0}` is not a weekday (use Mon…Sun or Monday…Sunday, lists `Sat,Sun`, ranges `Mon..Fri`)"
    )]
    Weekday(String),
    #[error("weekday range ending at `{0}` runs backwards or is left open (write e.g. Mon..Fri)")]
    WeekdayRange(String),
    #[error("{found}; expected {expected}")]
    Syntax {
        found: String,
        expected: &'static str,
    },
    #[error("number `{0}` is too large")]
    TooLarge(String),
    #[error("a repetition `/0` never advances")]
    ZeroRepeat,
    #[error("`@{0}` is not a time between 1970 and 2199 (seconds since 1970-01-01 UTC)")]
    Epoch(String),
    #[error("{what} {value} is out of range {min}..{max}")]
    Range {
        what: Field,
        value: Value,
        min: Value,
        max: Value,
    },
    #[error("{what} range {start}..{stop} runs backwards or is shorter than one second")]
    Backwards {
        what: Field,
        start: Value,
        stop: Value,
    },
    #[error(
        "{what} repetition `/{repeat}` from {start} never fires a second time within {min}..{max} (systemd refuses it)"
    )]
    Repeat {
        what: Field,
        start: Value,
        repeat: Value,
        min: Value,
        max: Value,
    },
}

impl CalendarError {
    /// What to do about it, for the help line under the error.
    pub fn help(&self) -> String {
        const SYNTAX: &str = "use systemd calendar syntax (`man systemd.time`), e.g. \"daily\" or \"*-*-* 03:00:00\"; `systemd-analyze calendar EXPR` shows when it elapses";
        match self {
            CalendarError::UnknownZone(_) => "`timedatectl list-timezones` lists the zones this system knows (e.g. Europe/Berlin); omit the zone for local time".into(),
            CalendarError::Repeat { .. } => "use a repetition shorter than the component's range, e.g. \"*:0/15\" (every 15 minutes) or \"0/6:00\" (every 6 hours)".into(),
            _ => SYNTAX.into(),
        }
    }
}

/// A date or time component, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Year,
    Month,
    Day,
    DayFromEnd,
    Hour,
    Minute,
    Second,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Year => "year",
            Field::Month => "month",
            Field::Day => "day",
            Field::DayFromEnd => "day counted from the month's end (`~`)",
            Field::Hour => "hour",
            Field::Minute => "minute",
            Field::Second => "second",
        })
    }
}

/// A component value as systemd stores it: seconds are kept in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    raw: i64,
    usec: bool,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.usec {
            return write!(f, "{}", self.raw);
        }
        let (whole, frac) = (self.raw / USEC_PER_SEC, self.raw % USEC_PER_SEC);
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let frac = format!("{frac:06}");
            write!(f, "{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

const USEC_PER_SEC: i64 = 1_000_000;
/// systemd's `CALENDARSPEC_COMPONENTS_MAX`: a list may have at most this many `,` in a row.
const COMPONENTS_MAX: usize = 240;
/// 2199-12-31 23:59:59 UTC, the last second systemd's year range (1970..2199) allows.
const EPOCH_MAX: i64 = 7_258_118_399;
/// Where the time zone database is, by distribution: Debian and most others, then NixOS
/// (whose systemd is patched to read `/etc/zoneinfo`).
const ZONEINFO: &[&str] = &["/usr/share/zoneinfo", "/etc/zoneinfo"];
/// glibc's and systemd's override of [`ZONEINFO`]; the NixOS module's build-time check sets
/// it to tzdata's directory, as the build sandbox has neither of the others.
const TZDIR: &str = "TZDIR";

const SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "monthly",
    "weekly",
    "yearly",
    "annually",
    "anually",
    "quarterly",
    "semiannually",
    "semi-annually",
    "biannually",
    "bi-annually",
];

/// In systemd's order: a full name is tried before its abbreviation.
const WEEKDAYS: &[(&str, u8)] = &[
    ("Monday", 0),
    ("Mon", 0),
    ("Tuesday", 1),
    ("Tue", 1),
    ("Wednesday", 2),
    ("Wed", 2),
    ("Thursday", 3),
    ("Thu", 3),
    ("Friday", 4),
    ("Fri", 4),
    ("Saturday", 5),
    ("Sat", 5),
    ("Sunday", 6),
    ("Sun", 6),
];

const COMPONENT: &str = "a number, `*`, a list `a,b`, a range `a..b` or a repetition `a/n` (`*/n` is not systemd syntax: write `0/n`)";

/// Checks a calendar expression as written after `OnCalendar=`; `Ok(())` means systemd will
/// accept it.
pub fn validate(expr: &str) -> Result<(), CalendarError> {
    validate_with_local_zone(expr, &local_zone_names())
}

/// [`validate`] with the local zone's names given (systemd also accepts those as a trailing
/// zone), so that a result does not depend on the caller's `TZ`.
pub fn validate_with_local_zone(expr: &str, local_names: &[String]) -> Result<(), CalendarError> {
    // The unit-file parser strips the value before systemd parses the expression.
    let expr = expr.trim_matches([' ', '\t', '\n', '\r']);
    if expr.is_empty() {
        return Err(CalendarError::Empty);
    }
    let body = strip_zone(expr, local_names);
    parse(body).map_err(|(at, error)| {
        // A last word that failed to parse and looks like a zone name is a misspelt zone
        // (`Europe/Berln`): say so rather than "unexpected".
        match expr.rfind(' ') {
            Some(space)
                if body.len() == expr.len()
                    && at >= space
                    && zone_syntax_ok(&expr[space + 1..])
                    && expr[space + 1..].contains(|c: char| c.is_ascii_alphabetic())
                    && !starts_with_weekday(&expr[space + 1..]) =>
            {
                CalendarError::UnknownZone(expr[space + 1..].to_string())
            }
            _ => error,
        }
    })
}

/// Removes a trailing time zone the way systemd does: ` UTC`, then the local zone's names
/// (`tzname`), then a last word that names a zone file.
fn strip_zone<'a>(expr: &'a str, local_names: &[String]) -> &'a str {
    if let Some(head) = strip_suffix_ignore_case(expr, " UTC") {
        return head;
    }
    for name in local_names.iter().filter(|name| !name.is_empty()) {
        if let Some(head) = strip_suffix_ignore_case(expr, name)
            && let Some(head) = head.strip_suffix(' ')
        {
            return head;
        }
    }
    match expr.rfind(' ') {
        Some(space) if zone_exists(&expr[space + 1..]) => &expr[..space],
        _ => expr,
    }
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split = text.len().checked_sub(suffix.len())?;
    (text.is_char_boundary(split) && text[split..].eq_ignore_ascii_case(suffix))
        .then(|| &text[..split])
}

/// The C library's `tzname` after `tzset()`: the local zone's standard and daylight names.
fn local_zone_names() -> Vec<String> {
    unsafe extern "C" {
        fn tzset();
        static tzname: [*const std::ffi::c_char; 2];
    }
    // SAFETY: glibc's tzset() fills `tzname` with two NUL-terminated strings (or null
    // pointers); they are copied at once, before any other call could reset them.
    unsafe {
        tzset();
        tzname
            .iter()
            .filter(|name| !name.is_null())
            .map(|name| {
                std::ffi::CStr::from_ptr(*name)
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| !name.is_empty())
            .collect()
    }
}

/// systemd's `verify_timezone()` rules on the name alone: letters, digits, `-_+/`, no leading,
/// trailing or doubled `/`.
fn zone_syntax_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        && name.len() < 4096
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+/".contains(&b))
}

/// systemd's `verify_timezone()`: `UTC`, or a regular zoneinfo file starting with `TZif`.
fn zone_exists(name: &str) -> bool {
    if name == "UTC" {
        return true;
    }
    if !zone_syntax_ok(name) {
        return false;
    }
    zone_dirs().iter().any(|dir| {
        let Ok(mut file) = std::fs::File::open(dir.join(name)) else {
            return false;
        };
        let mut magic = [0u8; 4];
        file.metadata().is_ok_and(|meta| meta.is_file())
            && file.read_exact(&mut magic).is_ok()
            && &magic == b"TZif"
    })
}

/// The zoneinfo directories a zone name is looked up in, as the units' systemd reads them:
/// `$TZDIR` alone when set, else those of [`ZONEINFO`] that exist (the first when none does,
/// so that a message can name it).
fn zone_dirs() -> Vec<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os(TZDIR).filter(|dir| !dir.is_empty()) {
        return vec![dir.into()];
    }
    let existing: Vec<std::path::PathBuf> = ZONEINFO
        .iter()
        .map(std::path::PathBuf::from)
        .filter(|dir| dir.is_dir())
        .collect();
    if existing.is_empty() {
        vec![ZONEINFO[0].into()]
    } else {
        existing
    }
}

/// "this system's /usr/share/zoneinfo has", for [`CalendarError::UnknownZone`].
fn zone_dirs_text() -> String {
    if let Some(dir) = std::env::var_os(TZDIR).filter(|dir| !dir.is_empty()) {
        return format!("TZDIR={} has", dir.to_string_lossy());
    }
    let dirs: Vec<String> = zone_dirs()
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    match dirs.as_slice() {
        [one] => format!("this system's {one} has"),
        many => format!("this system's {} have", many.join(" and ")),
    }
}

fn starts_with_weekday(word: &str) -> bool {
    WEEKDAYS.iter().any(|(name, _)| {
        word.len() >= name.len()
            && word.as_bytes()[..name.len()].eq_ignore_ascii_case(name.as_bytes())
    })
}

/// A parse failure and the byte offset it was found at.
type Failure = (usize, CalendarError);

/// One list item of a component: `start`, `start..stop` or `start[..stop]/repeat`.
#[derive(Debug, Clone, Copy)]
struct Item {
    start: i64,
    stop: Option<i64>,
    repeat: i64,
}

/// The components that were written; an empty list is `*` (any value).
#[derive(Default)]
struct Spec {
    year: Vec<Item>,
    month: Vec<Item>,
    day: Vec<Item>,
    end_of_month: bool,
    hour: Vec<Item>,
    minute: Vec<Item>,
    second: Vec<Item>,
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.text.as_bytes().get(self.at + ahead).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// The rest of the current word, for messages.
    fn word(&self) -> String {
        let rest = &self.text[self.at..];
        rest.split(' ').next().unwrap_or(rest).to_string()
    }

    fn syntax(&self, expected: &'static str) -> Failure {
        let found = if self.at >= self.text.len() {
            "the expression ends".to_string()
        } else {
            format!("unexpected `{}`", &self.text[self.at..])
        };
        (self.at, CalendarError::Syntax { found, expected })
    }
}

fn parse(body: &str) -> Result<(), Failure> {
    if body.is_empty() {
        return Err((0, CalendarError::Empty));
    }
    if SHORTHANDS
        .iter()
        .any(|name| body.eq_ignore_ascii_case(name))
    {
        return Ok(());
    }
    let mut cursor = Cursor { text: body, at: 0 };
    let mut spec = Spec::default();
    parse_weekdays(&mut cursor)?;
    if cursor.at == 0 && cursor.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
        return Err((0, CalendarError::Word(cursor.word())));
    }
    let epoch = parse_date(&mut cursor, &mut spec)?;
    if !epoch {
        parse_time(&mut cursor, &mut spec)?;
    }
    if cursor.peek().is_some() {
        return Err(cursor.syntax("the end (the order is weekdays, date, time, time zone)"));
    }
    spec.check().map_err(|error| (0, error))
}

fn parse_weekdays(cursor: &mut Cursor) -> Result<(), Failure> {
    let mut range_from: Option<u8> = None;
    let mut first = true;
    loop {
        let rest = &cursor.text.as_bytes()[cursor.at..];
        let found = WEEKDAYS.iter().find(|(name, _)| {
            rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        });
        let Some(&(name, day)) = found else {
            // No weekday here: the expression starts with the date (but not after a `,`/`..`).
            return if first {
                Ok(())
            } else {
                Err((cursor.at, CalendarError::Weekday(cursor.word())))
            };
        };
        if !matches!(rest.get(name.len()), None | Some(b'-' | b'.' | b',' | b' ')) {
            return Err((cursor.at, CalendarError::Weekday(cursor.word())));
        }
        if range_from.is_some_and(|from| from > day) {
            return Err((cursor.at, CalendarError::WeekdayRange(cursor.word())));
        }
        cursor.at += name.len();
        match cursor.peek() {
            None => return Ok(()),
            Some(b' ') => {
                cursor.skip_spaces();
                return Ok(());
            }
            Some(b'.') => {
                if range_from.is_some() || cursor.peek_at(1) != Some(b'.') {
                    return Err(cursor.syntax("`..` between two weekdays"));
                }
                range_from = Some(day);
                cursor.at += 2;
            }
            Some(b'-') => {
                if range_from.is_some() {
                    return Err(cursor.syntax("a weekday list, not a range of ranges"));
                }
                range_from = Some(day);
                cursor.at += 1;
            }
            _ => {
                range_from = None;
                cursor.at += 1;
            }
        }
        // A trailing comma is allowed, an open range is not.
        if matches!(cursor.peek(), None | Some(b' ')) {
            let at = cursor.at;
            cursor.skip_spaces();
            return match range_from {
                None => Ok(()),
                Some(_) => Err((at, CalendarError::WeekdayRange(name.to_string()))),
            };
        }
        first = false;
    }
}

/// Parses `[[YEAR-]MONTH-DAY]` or `@EPOCH`; returns true for the latter (nothing may follow).
fn parse_date(cursor: &mut Cursor, spec: &mut Spec) -> Result<bool, Failure> {
    if cursor.peek().is_none() {
        return Ok(false);
    }
    if cursor.peek() == Some(b'@') {
        cursor.at += 1;
        parse_epoch(cursor)?;
        return Ok(true);
    }
    let start = cursor.at;
    let first = parse_chain(cursor, false)?;
    // A `:` (or nothing) after the first component: it was the hour, there is no date.
    if matches!(cursor.peek(), None | Some(b':')) {
        cursor.at = start;
        return Ok(false);
    }
    match cursor.peek() {
        Some(b'~') => spec.end_of_month = true,
        Some(b'-') => {}
        _ => return Err(cursor.syntax("`-` or `~` between date parts, or `:` in a time")),
    }
    cursor.at += 1;
    let second = parse_chain(cursor, false)?;
    if matches!(cursor.peek(), None | Some(b' ')) {
        cursor.skip_spaces();
        spec.month = first;
        spec.day = second;
        return Ok(false);
    }
    if spec.end_of_month {
        return Err(cursor.syntax("a space after the day (`~` separates month and day)"));
    }
    match cursor.peek() {
        Some(b'~') => spec.end_of_month = true,
        Some(b'-') => {}
        _ => return Err(cursor.syntax("`-` or `~` between month and day")),
    }
    cursor.at += 1;
    let third = parse_chain(cursor, false)?;
    if !matches!(cursor.peek(), None | Some(b' ')) {
        return Err(cursor.syntax("a space after the date"));
    }
    cursor.skip_spaces();
    spec.year = first;
    spec.month = second;
    spec.day = third;
    Ok(false)
}

/// `@SECONDS`, read like C's `strtoul` (leading white space, a sign, wrapping negatives).
fn parse_epoch(cursor: &mut Cursor) -> Result<(), Failure> {
    let start = cursor.at;
    let bytes = cursor.text.as_bytes();
    let mut at = cursor.at;
    while bytes
        .get(at)
        .is_some_and(|b| b" \t\n\x0b\x0c\r".contains(b))
    {
        at += 1;
    }
    let negative = match bytes.get(at) {
        Some(b'-') => {
            at += 1;
            true
        }
        Some(b'+') => {
            at += 1;
            false
        }
        _ => false,
    };
    let digits_start = at;
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    if at == digits_start {
        return Err(cursor.syntax("seconds since 1970 after `@`"));
    }
    let written = cursor.text[start..at].to_string();
    let value: u64 = cursor.text[digits_start..at]
        .parse()
        .map_err(|_| (start, CalendarError::Epoch(written.clone())))?;
    let seconds = if negative {
        (value as i64).wrapping_neg()
    } else {
        value as i64
    };
    if !(0..=EPOCH_MAX).contains(&seconds) {
        return Err((start, CalendarError::Epoch(written)));
    }
    cursor.at = at;
    Ok(())
}

/// Parses `HH:MM[:SS]`; nothing at all means 00:00:00.
fn parse_time(cursor: &mut Cursor, spec: &mut Spec) -> Result<(), Failure> {
    if cursor.peek().is_none() {
        return Ok(());
    }
    spec.hour = parse_chain(cursor, false)?;
    if cursor.peek() != Some(b':') {
        return Err(cursor.syntax("`:` between hour and minute"));
    }
    cursor.at += 1;
    spec.minute = parse_chain(cursor, false)?;
    if cursor.peek().is_none() {
        return Ok(());
    }
    if cursor.peek() != Some(b':') {
        return Err(cursor.syntax("`:` before the seconds, or the end of the time"));
    }
    cursor.at += 1;
    spec.second = parse_chain(cursor, true)?;
    if cursor.peek().is_some() {
        return Err(cursor.syntax("the end of the time"));
    }
    Ok(())
}

/// One component: `*` or a comma list of items. Seconds (`usec`) are kept in microseconds,
/// and their `*` means "every whole second".
fn parse_chain(cursor: &mut Cursor, usec: bool) -> Result<Vec<Item>, Failure> {
    if cursor.peek() == Some(b'*') {
        cursor.at += 1;
        return Ok(if usec {
            vec![Item {
                start: 0,
                stop: None,
                repeat: USEC_PER_SEC,
            }]
        } else {
            Vec::new()
        });
    }
    let mut items = Vec::new();
    loop {
        if items.len() > COMPONENTS_MAX {
            return Err((
                cursor.at,
                CalendarError::Syntax {
                    found: format!("a list of more than {} items", COMPONENTS_MAX + 1),
                    expected: "a shorter list (systemd's limit), or a range `a..b`",
                },
            ));
        }
        items.push(parse_item(cursor, usec)?);
        if cursor.peek() != Some(b',') {
            return Ok(items);
        }
        cursor.at += 1;
    }
}

fn parse_item(cursor: &mut Cursor, usec: bool) -> Result<Item, Failure> {
    let start = parse_number(cursor, usec)?;
    let mut stop = None;
    let mut repeat = 0;
    if cursor.peek() == Some(b'.') && cursor.peek_at(1) == Some(b'.') {
        cursor.at += 2;
        stop = Some(parse_number(cursor, usec)?);
        repeat = if usec { USEC_PER_SEC } else { 1 };
    }
    if cursor.peek() == Some(b'/') {
        cursor.at += 1;
        let at = cursor.at;
        repeat = parse_number(cursor, usec)?;
        if repeat == 0 {
            return Err((at, CalendarError::ZeroRepeat));
        }
    } else if let Some(stop) = stop
        && usec
        && start + repeat > stop
    {
        // systemd refuses a seconds range without a repetition that is under one second.
        return Err((
            cursor.at,
            CalendarError::Backwards {
                what: Field::Second,
                start: Value { raw: start, usec },
                stop: Value { raw: stop, usec },
            },
        ));
    }
    if !matches!(cursor.peek(), None | Some(b' ' | b',' | b'-' | b'~' | b':')) {
        return Err(cursor.syntax(COMPONENT));
    }
    Ok(Item {
        start,
        stop,
        repeat,
    })
}

/// A decimal number, with up to six fractional digits for seconds (rounded on the seventh).
fn parse_number(cursor: &mut Cursor, usec: bool) -> Result<i64, Failure> {
    let start = cursor.at;
    let bytes = cursor.text.as_bytes();
    if !cursor.peek().is_some_and(|b| b.is_ascii_digit()) {
        return Err(cursor.syntax(COMPONENT));
    }
    let mut end = start;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let too_large = || {
        (
            start,
            CalendarError::TooLarge(cursor.text[start..end].to_string()),
        )
    };
    let mut value: u64 = cursor.text[start..end].parse().map_err(|_| too_large())?;
    cursor.at = end;
    if usec {
        value = value
            .checked_mul(USEC_PER_SEC as u64)
            .ok_or_else(too_large)?;
        // One `.` is a decimal point, `..` a range.
        if cursor.peek() == Some(b'.') && cursor.peek_at(1) != Some(b'.') {
            cursor.at += 1;
            let fraction = parse_fraction(cursor)?;
            value = value.checked_add(fraction).ok_or_else(too_large)?;
        }
    }
    if value > i32::MAX as u64 {
        return Err(too_large());
    }
    Ok(value as i64)
}

/// systemd's `parse_fractional_part_u(…, 6, …)`: at least one digit, six kept, the seventh
/// rounds, any further ones are ignored.
fn parse_fraction(cursor: &mut Cursor) -> Result<u64, Failure> {
    let bytes = cursor.text.as_bytes();
    let mut value = 0u64;
    let mut at = cursor.at;
    for i in 0..6 {
        match bytes.get(at) {
            Some(digit) if digit.is_ascii_digit() => {
                value = value * 10 + u64::from(digit - b'0');
                at += 1;
            }
            _ if i == 0 => return Err(cursor.syntax("digits after the decimal point")),
            _ => {
                value *= 10u64.pow(6 - i);
                break;
            }
        }
    }
    if bytes.get(at).is_some_and(|b| (b'5'..=b'9').contains(b)) {
        value += 1;
    }
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    cursor.at = at;
    Ok(value)
}

impl Spec {
    /// systemd's `calendar_spec_normalize()` then `calendar_spec_valid()`.
    fn check(mut self) -> Result<(), CalendarError> {
        // Two-digit years: 12 → 2012, 89 → 1989.
        for item in &mut self.year {
            item.start = fix_year(item.start);
            item.stop = item.stop.map(fix_year);
        }
        let end_of_month = self.end_of_month && !self.day.is_empty();
        let day = if end_of_month {
            Field::DayFromEnd
        } else {
            Field::Day
        };
        check_chain(&mut self.year, Field::Year, 1970, 2199, false)?;
        check_chain(&mut self.month, Field::Month, 1, 12, false)?;
        check_chain(&mut self.day, day, 1, 31, end_of_month)?;
        check_chain(&mut self.hour, Field::Hour, 0, 23, false)?;
        check_chain(&mut self.minute, Field::Minute, 0, 59, false)?;
        check_chain(
            &mut self.second,
            Field::Second,
            0,
            60 * USEC_PER_SEC - 1,
            false,
        )
    }
}

fn fix_year(year: i64) -> i64 {
    match year {
        0..70 => year + 2000,
        70..100 => year + 1900,
        _ => year,
    }
}

fn check_chain(
    items: &mut [Item],
    what: Field,
    min: i64,
    max: i64,
    end_of_month: bool,
) -> Result<(), CalendarError> {
    let usec = what == Field::Second;
    let value = |raw| Value { raw, usec };
    // Days counted from the month's end stop 28 days back (every month has them).
    let max = if end_of_month { max - 3 } else { max };
    for item in items {
        normalize(item);
        let range = |raw| CalendarError::Range {
            what,
            value: value(raw),
            min: value(min),
            max: value(max),
        };
        let repeat = || CalendarError::Repeat {
            what,
            start: value(item.start),
            repeat: value(item.repeat),
            min: value(min),
            max: value(max),
        };
        if item.start < min || item.start > max {
            return Err(range(item.start));
        }
        if item.repeat > max - min {
            return Err(repeat());
        }
        match item.stop {
            Some(stop) => {
                if stop < min || stop > max {
                    return Err(range(stop));
                }
                if item.start + item.repeat > stop {
                    return Err(CalendarError::Backwards {
                        what,
                        start: value(item.start),
                        stop: value(stop),
                    });
                }
            }
            None if end_of_month && item.start - item.repeat < min => return Err(repeat()),
            None if !end_of_month && item.start + item.repeat > max => return Err(repeat()),
            None => {}
        }
    }
    Ok(())
}

/// systemd's `normalize_chain()` per item: a range is cut to a multiple of its repetition,
/// and a repetition that cannot fire twice in its range (or a one-value range) is dropped.
fn normalize(item: &mut Item) {
    if let Some(stop) = item.stop {
        let mut stop = stop;
        if stop > item.start && item.repeat > 0 {
            stop -= (stop - item.start) % item.repeat;
        }
        item.stop = Some(stop);
        if (stop > item.start && item.repeat > 0 && item.start + item.repeat > stop)
            || item.start == stop
        {
            item.repeat = 0;
            item.stop = None;
        }
    }
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
            "*-*-* 03:00 utc",
            "Fri *-*-1..7 18:00",
            "00:00:00.5",
            "@0",
            "*:0..10/150",
        ] {
            assert_eq!(validate(expr), Ok(()), "{expr}");
        }
    }

    #[test]
    fn rejects_what_systemd_refuses() {
        assert_eq!(validate("daly"), Err(CalendarError::Word("daly".into())));
        assert!(matches!(
            validate("*-*-* 25:00"),
            Err(CalendarError::Range {
                what: Field::Hour,
                ..
            })
        ));
        assert!(matches!(
            validate("*-13-* 00:00"),
            Err(CalendarError::Range {
                what: Field::Month,
                ..
            })
        ));
        assert!(matches!(
            validate("*:0/150"),
            Err(CalendarError::Repeat {
                what: Field::Minute,
                ..
            })
        ));
        assert!(matches!(
            validate("*:50/15"),
            Err(CalendarError::Repeat { .. })
        ));
        assert!(matches!(
            validate("*-*-* 03:00:00."),
            Err(CalendarError::Syntax { .. })
        ));
        assert!(matches!(
            validate("00:00:05..05"),
            Err(CalendarError::Backwards { .. })
        ));
        assert!(matches!(
            validate("@7258118400"),
            Err(CalendarError::Epoch(_))
        ));
        assert!(validate("*-*-* 3").is_err());
        assert!(validate("Mon..Fry 10:00").is_err());
        assert!(validate("Fri..Mon 10:00").is_err());
        assert!(validate("*-*-* 10:00 10:00").is_err());
        assert!(validate("*:*/15").is_err());
        assert_eq!(validate(""), Err(CalendarError::Empty));
    }

    #[test]
    fn names_a_misspelt_time_zone() {
        assert_eq!(
            validate("*-*-* 03:00:00 Europe/Berln"),
            Err(CalendarError::UnknownZone("Europe/Berln".into()))
        );
    }

    #[test]
    fn accepts_the_local_zones_abbreviations_like_systemd() {
        // As `TZ=Europe/Berlin systemd-analyze calendar '08:00 cest'` does.
        let berlin = ["CET".to_string(), "CEST".to_string()];
        assert_eq!(validate_with_local_zone("08:00 cest", &berlin), Ok(()));
        assert!(validate_with_local_zone("08:00 CEST", &["UTC".into(), "UTC".into()]).is_err());
    }

    #[test]
    fn seconds_render_with_their_fraction() {
        let value = Value {
            raw: 59_500_000,
            usec: true,
        };
        assert_eq!(value.to_string(), "59.5");
    }
}
