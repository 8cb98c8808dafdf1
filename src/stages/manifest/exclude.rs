//! The `exclude` key of the stages that walk trees themselves (`manifest`, `gitrepos`): restic's
//! pattern syntax, so that one list serves every stage, matched by [`crate::patterns`]. A
//! pattern without `/` matches a name anywhere (`*.tmp`, `node_modules`); one with `/`
//! matches a run of names at any depth (`a/b`), from the root when it starts with `/`
//! (`/home/*/.cache`); `*` stays within a name, `**` crosses them, `\` escapes a wildcard.

use crate::patterns::Dialect;

/// A stage's `exclude` key, checked at load: the error points at the bad pattern.
pub fn check_patterns(patterns: &[toml::Spanned<String>]) -> Result<(), crate::stages::SpecError> {
    for pattern in patterns {
        crate::patterns::check(Dialect::Restic, pattern.get_ref()).map_err(|message| {
            crate::stages::SpecError::invalid(
                Some(pattern.span()),
                format!("bad exclude pattern: {message}"),
                "fix the pattern: `*` matches within a name, `**` across directories, `\\` \
                 escapes a wildcard",
            )
        })?;
    }
    Ok(())
}

/// The patterns of a stage's `exclude` key, without their places in the config.
pub fn pattern_texts(patterns: &[toml::Spanned<String>]) -> Vec<String> {
    patterns.iter().map(|p| p.get_ref().clone()).collect()
}
