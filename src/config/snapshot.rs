//! The snapshot keys of a stage (`snapshot`, `snapshot_prefix`, `snapshot_locations`,
//! `exec_before_snapshot`) into [`snapshot::Settings`], and the help that names the kinds
//! they apply to.

use std::path::PathBuf;

use indexmap::IndexMap;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use crate::snapshot;
use crate::stages;

/// The snapshot keys as written, taken out of the stage's common keys.
pub(super) struct Keys {
    pub(super) snapshot: Option<Spanned<String>>,
    pub(super) snapshot_prefix: Option<Spanned<PathBuf>>,
    pub(super) snapshot_locations: Option<IndexMap<Spanned<String>, Spanned<PathBuf>>>,
    pub(super) exec_before_snapshot: Option<Spanned<Vec<String>>>,
}

/// The snapshot keys of a stage: `snapshot` turns them on, the others need it; only kinds
/// that read local sources can use them.
pub(super) fn settings(
    source: &Source,
    mut raw: Keys,
    kind: &stages::KindSpec,
    kind_name: &str,
) -> Result<Option<snapshot::Settings>, ConfigError> {
    let absolute = |path: &Spanned<PathBuf>, key: &str| {
        if path.get_ref().is_absolute() {
            source.normalized(path.span(), path.get_ref(), key)?;
            Ok(path.get_ref().clone())
        } else {
            Err(source.error(
                path.span(),
                format!("`{key}` needs absolute paths"),
                Some("write the full path, starting with /".into()),
            ))
        }
    };
    let mode = match raw.snapshot.take() {
        None => {
            let stray = [
                raw.snapshot_prefix
                    .as_ref()
                    .map(|p| ("snapshot_prefix", p.span())),
                raw.exec_before_snapshot
                    .as_ref()
                    .map(|p| ("exec_before_snapshot", p.span())),
            ]
            .into_iter()
            .flatten()
            .chain(
                raw.snapshot_locations
                    .iter()
                    .flat_map(|map| map.keys().next())
                    .map(|key| ("snapshot_locations", key.span())),
            )
            .next();
            return match stray {
                Some((key, span)) => Err(source.error(
                    span,
                    format!("`{key}` has no effect without `snapshot`"),
                    Some(
                        "add `snapshot = \"btrfs\"` (or \"auto\") to the stage, or remove the key"
                            .into(),
                    ),
                )),
                None => Ok(None),
            };
        }
        Some(mode) => mode,
    };
    let mode_value = match mode.get_ref().as_str() {
        "none" => return Ok(None),
        "btrfs" => snapshot::Mode::Btrfs,
        "auto" => snapshot::Mode::Auto,
        other => {
            return Err(source.error(
                mode.span(),
                format!("unknown snapshot kind `{other}`"),
                Some("use \"btrfs\", \"auto\" (btrfs where possible, else the live files) or \"none\"".into()),
            ));
        }
    };
    if kind.needs().sources.is_empty() {
        return Err(source.error(
            mode.span(),
            format!("a `{kind_name}` stage reads no local sources to snapshot"),
            Some(format!(
                "`snapshot` applies to stages that read local sources: {}",
                stages::names(|entry| entry.reads_local_sources).join(", ")
            )),
        ));
    }
    let prefix = raw
        .snapshot_prefix
        .as_ref()
        .map(|p| absolute(p, "snapshot_prefix"))
        .transpose()?;
    let mut locations = IndexMap::new();
    for (key, stem) in raw.snapshot_locations.take().unwrap_or_default() {
        let key = Spanned::new(key.span(), PathBuf::from(key.get_ref()));
        locations.insert(
            absolute(&key, "snapshot_locations")?,
            absolute(&stem, "snapshot_locations")?,
        );
    }
    let exec_before = match raw.exec_before_snapshot.take() {
        Some(argv) if argv.get_ref().is_empty() => {
            return Err(source.error(
                argv.span(),
                "`exec_before_snapshot` is empty",
                Some("give a command and its arguments, e.g. [\"mount\", \"/mnt/top\"], or remove the key".into()),
            ));
        }
        Some(argv) => argv.into_inner(),
        None => Vec::new(),
    };
    Ok(Some(snapshot::Settings {
        mode: mode_value,
        prefix,
        locations,
        exec_before,
    }))
}
