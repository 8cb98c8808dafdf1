//! Resource limits: `memory_high`, `memory_max`, `memory_swap_max`, `io_weight`,
//! `io_read_bandwidth`, `io_write_bandwidth`, `cpu_quota`, `tasks_max`, taken by `[job]`
//! (`[jobs.NAME]`), by each `[stage.NAME]` (a stage's value overrides its job's, key by key)
//! and by `[slice]` (the slice every stage unit runs in, capping all of them together).
//!
//! Each key becomes one systemd resource-control directive ([`Limits::directives`]); the
//! values are checked here, at load, in the form systemd takes, because systemd ignores a
//! directive it cannot parse with only a log line, and the stage would run unlimited. The
//! keys are read from their own table (split off the stage's or job's by [`KEYS`]), so
//! that the other keys' parsers stay strict about unknown keys.

use std::ops::Range;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeTable;

use super::ConfigError;
use super::size::parse_size;
use super::source::Source;

/// The keys of [`RawLimits`]; a table's entries with these names are parsed here.
pub const KEYS: &[&str] = &[
    "memory_high",
    "memory_max",
    "memory_swap_max",
    "io_weight",
    "io_read_bandwidth",
    "io_write_bandwidth",
    "cpu_quota",
    "tasks_max",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_high: Option<Spanned<Number>>,
    memory_max: Option<Spanned<Number>>,
    memory_swap_max: Option<Spanned<Number>>,
    io_weight: Option<Spanned<i64>>,
    io_read_bandwidth: Option<IndexMap<Spanned<String>, Spanned<Number>>>,
    io_write_bandwidth: Option<IndexMap<Spanned<String>, Spanned<Number>>>,
    cpu_quota: Option<Spanned<String>>,
    tasks_max: Option<Spanned<Number>>,
}

/// A value written as a string (`"2G"`, `"50%"`, `"infinity"`) or a plain integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Integer(i64),
    Text(String),
}

impl Number {
    fn text(&self) -> String {
        match self {
            Number::Integer(n) => n.to_string(),
            Number::Text(text) => text.trim().to_string(),
        }
    }
}

/// A memory limit as systemd's `MemoryMax=` takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Memory {
    Bytes(u64),
    /// Of the machine's physical memory, 1–100.
    Percent(u8),
    Infinity,
}

impl Memory {
    /// As written into the unit: bytes in the largest unit that divides them (`2G`).
    pub fn as_systemd(self) -> String {
        match self {
            Memory::Bytes(bytes) => exact_size(bytes),
            Memory::Percent(percent) => format!("{percent}%"),
            Memory::Infinity => "infinity".into(),
        }
    }
}

/// `1073741824` → `1G`; a size that no unit divides stays in bytes.
fn exact_size(bytes: u64) -> String {
    for (suffix, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// `IOReadBandwidthMax=`/`IOWriteBandwidthMax=`: a block device, or a path whose file
/// system's device systemd limits, and bytes per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Bandwidth {
    pub path: PathBuf,
    pub bytes_per_second: u64,
}

/// The limits of one stage (its own over its job's), of one job, or of the slice.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory_high: Option<Memory>,
    pub memory_max: Option<Memory>,
    pub memory_swap_max: Option<Memory>,
    pub io_weight: Option<u16>,
    pub io_read_bandwidth: Vec<Bandwidth>,
    pub io_write_bandwidth: Vec<Bandwidth>,
    /// Percent of one CPU (`200` is two CPUs' worth).
    pub cpu_quota: Option<u32>,
    pub tasks_max: Option<Tasks>,
}

/// `TasksMax=`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tasks {
    Count(u64),
    Infinity,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// These limits, each key that is absent taken from `base` (a stage over its job).
    pub fn over(mut self, base: &Limits) -> Limits {
        self.memory_high = self.memory_high.or(base.memory_high);
        self.memory_max = self.memory_max.or(base.memory_max);
        self.memory_swap_max = self.memory_swap_max.or(base.memory_swap_max);
        self.io_weight = self.io_weight.or(base.io_weight);
        if self.io_read_bandwidth.is_empty() {
            self.io_read_bandwidth = base.io_read_bandwidth.clone();
        }
        if self.io_write_bandwidth.is_empty() {
            self.io_write_bandwidth = base.io_write_bandwidth.clone();
        }
        self.cpu_quota = self.cpu_quota.or(base.cpu_quota);
        self.tasks_max = self.tasks_max.or(base.tasks_max);
        self
    }

    /// The devices and paths an IO bandwidth limit names (read and write), for `hello` to
    /// check as systemd will resolve them.
    pub fn io_paths(&self) -> impl Iterator<Item = &std::path::Path> {
        self.io_read_bandwidth
            .iter()
            .chain(&self.io_write_bandwidth)
            .map(|limit| limit.path.as_path())
    }

    /// Each limit as the config key, the systemd directive and its value, in [`KEYS`] order:
    /// what the generator writes and what `hello` shows.
    pub fn directives(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut lines = Vec::new();
        let memory = [
            ("memory_high", "MemoryHigh", self.memory_high),
            ("memory_max", "MemoryMax", self.memory_max),
            ("memory_swap_max", "MemorySwapMax", self.memory_swap_max),
        ];
        for (key, directive, value) in memory {
            if let Some(value) = value {
                lines.push((key, directive, value.as_systemd()));
            }
        }
        if let Some(weight) = self.io_weight {
            lines.push(("io_weight", "IOWeight", weight.to_string()));
        }
        let bandwidths = [
            (
                "io_read_bandwidth",
                "IOReadBandwidthMax",
                &self.io_read_bandwidth,
            ),
            (
                "io_write_bandwidth",
                "IOWriteBandwidthMax",
                &self.io_write_bandwidth,
            ),
        ];
        for (key, directive, limits) in bandwidths {
            for limit in limits {
                let value = format!("{} {}", limit.path.display(), limit.bytes_per_second);
                lines.push((key, directive, value));
            }
        }
        if let Some(quota) = self.cpu_quota {
            lines.push(("cpu_quota", "CPUQuota", format!("{quota}%")));
        }
        match self.tasks_max {
            Some(Tasks::Count(count)) => lines.push(("tasks_max", "TasksMax", count.to_string())),
            Some(Tasks::Infinity) => lines.push(("tasks_max", "TasksMax", "infinity".into())),
            None => {}
        }
        lines
    }
}

/// Moves the limit keys of a table into a table of their own.
pub(super) fn split_off<'i>(table: &mut DeTable<'i>) -> DeTable<'i> {
    let mut limits = DeTable::new();
    let keys: Vec<_> = table
        .keys()
        .filter(|key| KEYS.contains(&key.get_ref().as_ref()))
        .cloned()
        .collect();
    for key in keys {
        if let Some((key, value)) = table.remove_entry(&key) {
            limits.insert(key, value);
        }
    }
    limits
}

/// Parses and checks the limit keys of one table (`span`: the table, for serde's errors).
pub(super) fn parse(
    source: &Source,
    span: Range<usize>,
    table: DeTable,
) -> Result<Limits, ConfigError> {
    if table.is_empty() {
        return Ok(Limits::default());
    }
    let raw = RawLimits::deserialize(Spanned::new(span, table).into_deserializer())
        .map_err(|error| source.toml(error, Some(VALUE_HELP.into())))?;
    let high_span = raw.memory_high.as_ref().map(Spanned::span);
    let limits = Limits {
        memory_high: memory(source, raw.memory_high, "memory_high", true)?,
        memory_max: memory(source, raw.memory_max, "memory_max", true)?,
        memory_swap_max: memory(source, raw.memory_swap_max, "memory_swap_max", false)?,
        io_weight: raw.io_weight.map(|w| io_weight(source, w)).transpose()?,
        io_read_bandwidth: bandwidths(source, raw.io_read_bandwidth, "io_read_bandwidth")?,
        io_write_bandwidth: bandwidths(source, raw.io_write_bandwidth, "io_write_bandwidth")?,
        cpu_quota: raw.cpu_quota.map(|q| cpu_quota(source, q)).transpose()?,
        tasks_max: raw.tasks_max.map(|t| tasks(source, t)).transpose()?,
    };
    // Above memory_max, memory_high never bites: the kernel kills before it throttles.
    if let (Some(Memory::Bytes(high)), Some(Memory::Bytes(max)), Some(span)) =
        (limits.memory_high, limits.memory_max, high_span)
        && high > max
    {
        return Err(source.error(
            span,
            format!(
                "memory_high ({}) is above memory_max ({}), so it would never throttle",
                exact_size(high),
                exact_size(max)
            ),
            Some("set memory_high below memory_max (it slows the stage down before memory_max kills it), or drop one of them".into()),
        ));
    }
    Ok(limits)
}

/// The `[slice]` table: only limit keys.
pub(super) fn slice_table(
    source: &Source,
    value: Spanned<toml::de::DeValue>,
) -> Result<Limits, ConfigError> {
    let span = value.span();
    match value.into_inner() {
        toml::de::DeValue::Table(table) => parse(source, span, table),
        _ => Err(source.error(
            span,
            "`slice` must be a table of limits",
            Some("e.g. [slice] followed by memory_max = \"4G\"".into()),
        )),
    }
}

const VALUE_HELP: &str = "sizes are strings such as \"512M\" or \"2G\" (K, M, G, T: powers of 1024), \
     percentages such as \"50%\", or \"infinity\"; io_*_bandwidth is a table such as \
     { \"/dev/sda\" = \"50M\" }; examples/full.toml shows every key";

fn memory(
    source: &Source,
    value: Option<Spanned<Number>>,
    key: &str,
    percent_allowed: bool,
) -> Result<Option<Memory>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.get_ref().text();
    let bad =
        |message: String, help: &str| Err(source.error(value.span(), message, Some(help.into())));
    if text == "infinity" {
        return Ok(Some(Memory::Infinity));
    }
    if let Some(number) = text.strip_suffix('%') {
        if !percent_allowed {
            return bad(
                format!("`{key}` takes a size, not a percentage"),
                "systemd 252 reads MemorySwapMax= as bytes only: give a size such as \"1G\", or \"infinity\"",
            );
        }
        return match number.trim().parse::<u8>() {
            Ok(percent @ 1..=100) => Ok(Some(Memory::Percent(percent))),
            _ => bad(
                format!("`{key}` {text:?} is not a percentage from 1% to 100%"),
                "a whole percentage of the machine's memory, e.g. \"50%\"",
            ),
        };
    }
    match parse_size(&text) {
        // Zero would let nothing run (memory_max) or throttle from the first page
        // (memory_high); for swap it is the usual "no swap" and allowed.
        Ok(0) if percent_allowed => bad(
            format!("`{key}` of zero leaves the stage no memory at all"),
            "give the most memory the stage may use, e.g. \"2G\", or omit the key",
        ),
        Ok(bytes) => Ok(Some(Memory::Bytes(bytes))),
        Err(_) => bad(
            format!("`{key}` {text:?} is not a size"),
            "use a number with K, M, G or T (powers of 1024), e.g. \"2G\", a percentage of the machine's memory (\"50%\"), or \"infinity\"",
        ),
    }
}

fn io_weight(source: &Source, weight: Spanned<i64>) -> Result<u16, ConfigError> {
    match u16::try_from(*weight.get_ref()) {
        Ok(value @ 1..=10000) => Ok(value),
        _ => Err(source.error(
            weight.span(),
            format!("io_weight {} is out of range", weight.get_ref()),
            Some("use a value from 1 to 10000 (systemd's default is 100)".into()),
        )),
    }
}

/// `{ "/dev/sda" = "50M", "/srv" = "20M" }`: absolute, normalized paths (a device node, or
/// a path on the file system to limit) and a rate per second above zero.
fn bandwidths(
    source: &Source,
    table: Option<IndexMap<Spanned<String>, Spanned<Number>>>,
    key: &str,
) -> Result<Vec<Bandwidth>, ConfigError> {
    let mut limits = Vec::new();
    for (path, rate) in table.unwrap_or_default() {
        let text = path.get_ref();
        if !text.starts_with('/') || text.chars().any(|c| c.is_whitespace() || c == '%') {
            return Err(source.error(
                path.span(),
                format!("`{key}` names {text:?}, which is not an absolute path without spaces or `%`"),
                Some(format!(
                    "name a block device or a path on the file system to limit, e.g. {key} = {{ \"/dev/sda\" = \"50M\" }}"
                )),
            ));
        }
        source.normalized(path.span(), std::path::Path::new(text), key)?;
        let rate_text = rate.get_ref().text();
        let bytes_per_second = match parse_size(&rate_text) {
            Ok(bytes) if bytes > 0 => bytes,
            _ => {
                return Err(source.error(
                    rate.span(),
                    format!("`{key}` rate {rate_text:?} is not a size per second above zero"),
                    Some("use bytes per second with K, M, G or T (powers of 1024), e.g. \"50M\"; omit the path for no limit".into()),
                ));
            }
        };
        limits.push(Bandwidth {
            path: PathBuf::from(text),
            bytes_per_second,
        });
    }
    Ok(limits)
}

/// `"50%"` of one CPU, `"200%"` for two CPUs' worth.
fn cpu_quota(source: &Source, quota: Spanned<String>) -> Result<u32, ConfigError> {
    let text = quota.get_ref().trim();
    match text.strip_suffix('%').map(|n| n.trim().parse::<u32>()) {
        Some(Ok(percent @ 1..=100_000)) => Ok(percent),
        _ => Err(source.error(
            quota.span(),
            format!("cpu_quota {text:?} is not a percentage of one CPU"),
            Some("e.g. cpu_quota = \"50%\" (half a CPU) or \"200%\" (two CPUs' worth)".into()),
        )),
    }
}

fn tasks(source: &Source, value: Spanned<Number>) -> Result<Tasks, ConfigError> {
    let text = value.get_ref().text();
    if text == "infinity" {
        return Ok(Tasks::Infinity);
    }
    match text.parse::<u64>() {
        Ok(count) if count > 0 => Ok(Tasks::Count(count)),
        _ => Err(source.error(
            value.span(),
            format!("tasks_max {text:?} is not a number of tasks"),
            Some("give the most processes and threads the stage may have at once, e.g. 512, or \"infinity\"".into()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_list_is_the_raw_tables() {
        assert_eq!(super::super::stage::field_names::<RawLimits>(), KEYS);
    }

    #[test]
    fn sizes_are_written_in_their_largest_exact_unit() {
        assert_eq!(exact_size(2 << 30), "2G");
        assert_eq!(exact_size(1536 << 20), "1536M");
        assert_eq!(exact_size(1000), "1000");
    }

    #[test]
    fn a_stage_overrides_its_job_key_by_key() {
        let job = Limits {
            memory_high: Some(Memory::Bytes(1 << 30)),
            tasks_max: Some(Tasks::Count(64)),
            ..Default::default()
        };
        let stage = Limits {
            memory_high: Some(Memory::Percent(50)),
            ..Default::default()
        }
        .over(&job);
        assert_eq!(stage.memory_high, Some(Memory::Percent(50)));
        assert_eq!(stage.tasks_max, Some(Tasks::Count(64)));
    }
}
