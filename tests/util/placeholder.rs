//! The one placeholder of the test suite: `@ROOT@`, the directory a test's paths hang off.
//!
//! In a config a test writes, `@ROOT@` stands for the test's scratch root (a
//! [`tempdir`](super::tempdir) or a directory under /var/lib/backupctl-e2e), filled in with
//! [`expand`] before the config is written. In a golden file, `@ROOT@` stands for the
//! directory of the case's config (so the config itself reads `@ROOT@/config.toml`), put
//! there by [`collapse`] so that the files do not depend on where the checkout lives.

use std::path::Path;

/// The placeholder's spelling.
pub const ROOT: &str = "@ROOT@";

/// `text` with every `@ROOT@` replaced by `root`.
pub fn expand(text: &str, root: &Path) -> String {
    text.replace(ROOT, &root.display().to_string())
}

/// `text` with every occurrence of `root` replaced by `@ROOT@`: the inverse of [`expand`].
pub fn collapse(text: &str, root: &Path) -> String {
    text.replace(&root.display().to_string(), ROOT)
}
