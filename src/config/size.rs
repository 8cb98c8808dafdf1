//! Byte sizes written like `500M`, `1G`, `1.5GiB` (powers of 1024, as df and systemd do);
//! `crate::out::human_bytes` writes them back for people.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a size (use a number with K, M, G or T, e.g. \"2G\")")]
pub struct SizeError(pub String);

pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let bad = || SizeError(text.to_string());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let number: f64 = trimmed[..split].parse().map_err(|_| bad())?;
    let unit = trimmed[split..]
        .trim()
        .trim_end_matches("iB")
        .trim_end_matches('B');
    let factor: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad()),
    };
    Ok((number * factor as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert!(parse_size("lots").is_err());
    }
}
