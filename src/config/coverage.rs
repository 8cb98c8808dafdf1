//! The model and validation of `[coverage]`: which directories `backupctl coverage` walks
//! (`roots`) and which paths it never reports (`ignore`).

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

use super::ConfigError;
use super::load::Source;

/// `[coverage]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Coverage {
    /// The directories to walk; empty: the scope's defaults (see `crate::coverage`).
    pub roots: Vec<PathBuf>,
    /// Absolute glob patterns (`*` within a name, `**` across names) of paths never reported
    /// nor walked, e.g. "/var/lib/docker" or "/home/*/Downloads".
    pub ignore: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoverage {
    #[serde(default)]
    roots: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
}

/// Builds `[coverage]`.
pub(super) fn coverage(source: &Source, value: Spanned<DeValue>) -> Result<Coverage, ConfigError> {
    let raw = RawCoverage::deserialize(value.into_deserializer())
        .map_err(|error| source.toml(error, None))?;
    for root in &raw.roots {
        if !root.get_ref().is_absolute() {
            return Err(source.error(
                root.span(),
                "a coverage root must be an absolute path",
                Some("e.g. roots = [\"/home\", \"/etc\"]".into()),
            ));
        }
        source.normalized(root.span(), root.get_ref(), "roots")?;
    }
    for pattern in &raw.ignore {
        let text = pattern.get_ref();
        let problem = if !text.starts_with('/') {
            Some("an ignore pattern must be absolute (start with /)".to_string())
        } else {
            globset::Glob::new(text).err().map(|e| e.kind().to_string())
        };
        if let Some(problem) = problem {
            return Err(source.error(
                pattern.span(),
                format!("invalid ignore pattern: {problem}"),
                Some("e.g. ignore = [\"/var/lib/docker\", \"/home/*/Downloads\"]".into()),
            ));
        }
    }
    Ok(Coverage {
        roots: raw.roots.into_iter().map(Spanned::into_inner).collect(),
        ignore: raw.ignore.into_iter().map(Spanned::into_inner).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(table: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::parse(
            Path::new("c.toml"),
            &format!("{table}\n[stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n"),
        )
    }

    #[test]
    fn reads_roots_and_ignore() {
        let config = parse("[coverage]\nroots = [\"/home\"]\nignore = [\"/home/*/Downloads\"]")
            .unwrap_or_else(|e| panic!("{e}"));
        let coverage = config.coverage.unwrap();
        assert_eq!(coverage.roots, [Path::new("/home")]);
        assert_eq!(coverage.ignore, ["/home/*/Downloads"]);
    }

    #[test]
    fn refuses_relative_roots_and_bad_patterns() {
        let error = parse("[coverage]\nroots = [\"home\"]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("absolute"), "{error}");
        let error = parse("[coverage]\nignore = [\"/a/[\"]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid ignore pattern"), "{error}");
    }
}
