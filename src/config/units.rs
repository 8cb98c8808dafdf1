//! The model and validation of `[units]`: settings of the generated units themselves, not of
//! a job or stage. `path`: the units' `PATH`, for systems where the tools are not in systemd's
//! default search path (NixOS: every package has its own `/nix/store/…/bin`, and a unit's
//! default `PATH` holds only systemd's own; see the README's NixOS section).

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

use super::ConfigError;
use super::load::Source;

/// `[units]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Units {
    /// The directories searched for tools, in this order: the whole `PATH`, replacing systemd's
    /// default (`/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin` on a merged-/usr system),
    /// so that a unit finds exactly what the config lists (as NixOS's own `path` option does).
    pub path: Vec<PathBuf>,
}

impl Units {
    /// The value of `Environment=PATH=` in every unit that runs backupctl; `None` when
    /// `path` is empty (systemd's default applies).
    pub fn search_path(&self) -> Option<String> {
        if self.path.is_empty() {
            return None;
        }
        let dirs: Vec<String> = self
            .path
            .iter()
            .map(|dir| dir.to_string_lossy().into_owned())
            .collect();
        Some(dirs.join(":"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnits {
    #[serde(default)]
    path: Vec<Spanned<PathBuf>>,
}

/// Builds `[units]`.
pub(super) fn units(source: &Source, value: Spanned<DeValue>) -> Result<Units, ConfigError> {
    let raw = RawUnits::deserialize(value.into_deserializer())
        .map_err(|error| source.toml(error, None))?;
    let mut path = Vec::with_capacity(raw.path.len());
    for dir in raw.path {
        let text = dir.get_ref().to_string_lossy().into_owned();
        if !dir.get_ref().is_absolute() || text.contains(':') {
            return Err(source.error(
                dir.span(),
                format!("`path` entries must be absolute directories without `:`, not {text:?}"),
                Some(
                    "give each directory on its own, e.g. path = [\"/opt/restic/bin\"]: `:` \
                     separates the entries of PATH"
                        .into(),
                ),
            ));
        }
        source.normalized(dir.span(), dir.get_ref(), "path")?;
        path.push(dir.into_inner());
    }
    Ok(Units { path })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const STAGE: &str = "[stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n";

    #[test]
    fn path_is_the_whole_search_path_in_order() {
        let config = crate::config::parse(
            Path::new("c.toml"),
            &format!("[units]\npath = [\"/nix/store/a-restic/bin\", \"/opt/b/bin\"]\n{STAGE}"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.units.search_path().as_deref(),
            Some("/nix/store/a-restic/bin:/opt/b/bin")
        );
    }

    #[test]
    fn no_path_means_systemds_default() {
        let config = crate::config::parse(Path::new("c.toml"), &format!("[units]\n{STAGE}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.units.search_path(), None);
    }

    #[test]
    fn relative_or_joined_entries_are_refused() {
        for entry in ["bin", "/a/bin:/b/bin"] {
            let error = crate::config::parse(
                Path::new("c.toml"),
                &format!("[units]\npath = [\"{entry}\"]\n{STAGE}"),
            )
            .expect_err(entry)
            .to_string();
            assert!(
                error.contains("absolute directories without `:`"),
                "{error}"
            );
        }
    }
}
