//! The model and validation of `[metrics]`: the Prometheus text file that each run's
//! results are written to, for node_exporter's textfile collector.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

use super::ConfigError;
use super::load::Source;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// The `.prom` file for node_exporter's textfile collector.
    pub textfile: PathBuf,
}

impl Metrics {
    /// The directory the units must be able to write (temporary file + rename happen there).
    pub fn directory(&self) -> &Path {
        self.textfile.parent().unwrap_or(Path::new("/"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    textfile: Spanned<PathBuf>,
}

/// Builds `[metrics]`.
pub(super) fn metrics(source: &Source, value: Spanned<DeValue>) -> Result<Metrics, ConfigError> {
    let raw = RawMetrics::deserialize(value.into_deserializer())
        .map_err(|error| source.toml(error, None))?;
    let path = raw.textfile;
    let valid = path.get_ref().is_absolute()
        && path.get_ref().extension().is_some_and(|e| e == "prom")
        && path.get_ref().file_name().is_some();
    if !valid {
        return Err(source.error(
            path.span(),
            "`textfile` must be an absolute path ending in .prom",
            Some("node_exporter's textfile collector reads only *.prom files, e.g. textfile = \"/var/lib/node_exporter/textfile_collector/backupctl.prom\"".into()),
        ));
    }
    source.normalized(path.span(), path.get_ref(), "textfile")?;
    Ok(Metrics {
        textfile: path.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn directory_is_the_textfile_parent() {
        let config = crate::config::parse(
            Path::new("c.toml"),
            "[metrics]\ntextfile = \"/var/lib/node_exporter/textfile_collector/b.prom\"\n\
             [stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.metrics.unwrap().directory(),
            Path::new("/var/lib/node_exporter/textfile_collector")
        );
    }
}
