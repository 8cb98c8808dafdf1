//! Where things live, per scope: config, state (run records, caches), generated units; and
//! how a file there is replaced whole.

use std::path::{Path, PathBuf};

use crate::config::Scope;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(fallback))
}

pub fn xdg_config_home() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config")
}

/// The state directory: `$STATE_DIRECTORY` when systemd made it (`StateDirectory=backupctl`),
/// else `/var/lib/backupctl` or `$XDG_STATE_HOME/backupctl`, the same places systemd uses.
pub fn state_dir(scope: Scope) -> PathBuf {
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are configured; ours is first.
        if let Some(first) = dirs.to_string_lossy().split(':').next()
            && !first.is_empty()
        {
            return PathBuf::from(first);
        }
    }
    match scope {
        Scope::System => PathBuf::from("/var/lib/backupctl"),
        Scope::User => xdg("XDG_STATE_HOME", ".local/state").join("backupctl"),
    }
}

/// The cache directory (`CacheDirectory=backupctl`): restic's cache and the like.
pub fn cache_dir(scope: Scope) -> PathBuf {
    if let Some(dirs) = std::env::var_os("CACHE_DIRECTORY")
        && let Some(first) = dirs.to_string_lossy().split(':').next()
        && !first.is_empty()
    {
        return PathBuf::from(first);
    }
    match scope {
        Scope::System => PathBuf::from("/var/cache/backupctl"),
        Scope::User => xdg("XDG_CACHE_HOME", ".cache").join("backupctl"),
    }
}

/// Where `generate` writes units when no `--output` is given.
pub fn unit_dir(scope: Scope) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from("/etc/systemd/system"),
        Scope::User => xdg_config_home().join("systemd/user"),
    }
}

/// Writes `data` beside `path` and renames it over `path`, so that a reader never sees half
/// a file and concurrent writers (parallel stages) leave one of their files whole. The
/// temporary name carries our pid: writers never share one. Removed again on failure.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, data)
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}
