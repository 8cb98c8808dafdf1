//! Where things live, per scope: config, state (run records, caches), generated units.

use std::path::PathBuf;

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
