//! The one rule for every path in a config: spelled as systemd requires of paths in units
//! (`path_is_normalized()`): no `.` or `..` component, no `//`, at most `PATH_MAX - 1` bytes
//! and no name longer than `NAME_MAX`. systemd ignores a `ReadWritePaths=` or
//! `Condition*=` entry that breaks this ("path is not normalized"), so the stage would run in
//! a sandbox without it; refusing such a path when the config loads says so at its line.
//!
//! A trailing `/` is kept: it is normalized for systemd, and meaningful for rsync sources.

use std::fmt;

/// The longest path the kernel (and systemd) takes: `PATH_MAX` counts the trailing NUL.
pub const MAX_PATH_BYTES: usize = 4095;
/// The longest name of one component (`NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a path is not in the form systemd takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNormalized {
    /// A `.` component.
    Dot {
        normalized: String,
    },
    /// A `..` component: resolving it lexically is only right when nothing before it is a
    /// symlink, so the spelling is a suggestion.
    DotDot {
        normalized: String,
    },
    /// Two or more slashes in a row.
    DoubleSlash {
        normalized: String,
    },
    TooLong {
        bytes: usize,
    },
    NameTooLong {
        bytes: usize,
    },
}

/// Checks one path (absolute or relative) against the rule.
pub fn check(path: &str) -> Result<(), NotNormalized> {
    if path.len() > MAX_PATH_BYTES {
        return Err(NotNormalized::TooLong { bytes: path.len() });
    }
    let components: Vec<&str> = path.split('/').collect();
    if let Some(long) = components.iter().find(|c| c.len() > MAX_NAME_BYTES) {
        return Err(NotNormalized::NameTooLong { bytes: long.len() });
    }
    if components.contains(&"..") {
        return Err(NotNormalized::DotDot {
            normalized: normalize(path),
        });
    }
    if components.contains(&".") {
        return Err(NotNormalized::Dot {
            normalized: normalize(path),
        });
    }
    if path.contains("//") {
        return Err(NotNormalized::DoubleSlash {
            normalized: normalize(path),
        });
    }
    Ok(())
}

/// The lexical normal form: `.` and empty components dropped, `..` eats its parent (never
/// above the root), a trailing `/` kept.
fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            name => parts.push(name),
        }
    }
    let mut normalized = parts.join("/");
    if absolute {
        normalized.insert(0, '/');
    }
    if path.ends_with('/') && !normalized.ends_with('/') {
        normalized.push('/');
    }
    if normalized.is_empty() {
        normalized.push('.');
    }
    normalized
}

impl fmt::Display for NotNormalized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotNormalized::Dot { .. } => f.write_str("it has a `.` component"),
            NotNormalized::DotDot { .. } => f.write_str("it has a `..` component"),
            NotNormalized::DoubleSlash { .. } => f.write_str("it has `//`"),
            NotNormalized::TooLong { bytes } => write!(
                f,
                "it is {bytes} bytes long, more than the {MAX_PATH_BYTES} a path may have"
            ),
            NotNormalized::NameTooLong { bytes } => write!(
                f,
                "one of its names is {bytes} bytes long, more than the {MAX_NAME_BYTES} a name may have"
            ),
        }
    }
}

impl NotNormalized {
    /// The error message for `key`'s value `path`, without repeating an overlong path.
    pub fn message(&self, key: &str, path: &str) -> String {
        match self {
            NotNormalized::TooLong { .. } | NotNormalized::NameTooLong { .. } => {
                format!("`{key}` is not a usable path: {self}")
            }
            _ => format!("the path `{path}` in `{key}` is not normalized: {self}"),
        }
    }

    /// What to write instead.
    pub fn help(&self) -> String {
        match self {
            NotNormalized::Dot { normalized } | NotNormalized::DoubleSlash { normalized } => {
                format!("systemd ignores paths that are not normalized; write `{normalized}`")
            }
            NotNormalized::DotDot { normalized } => format!(
                "systemd ignores paths that are not normalized; write the path without `..`, \
                 e.g. `{normalized}` (if no directory before the `..` is a symlink)"
            ),
            NotNormalized::TooLong { .. } | NotNormalized::NameTooLong { .. } => {
                "the kernel refuses such a path: use a shorter one (a symlink can stand in for a deep directory)".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normalized_paths() {
        for path in [
            "/",
            "/data/srv",
            "/home/sig/Sync/",
            "home",
            "a/b/",
            "/a.b/..c/.d",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn suggests_the_normal_form() {
        let normalized = |path: &str| match check(path) {
            Err(
                NotNormalized::Dot { normalized }
                | NotNormalized::DotDot { normalized }
                | NotNormalized::DoubleSlash { normalized },
            ) => normalized,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(normalized("/data/../srv"), "/srv");
        assert_eq!(normalized("/mnt/.."), "/");
        assert_eq!(normalized("/etc/."), "/etc");
        assert_eq!(normalized("/etc/./"), "/etc/");
        assert_eq!(normalized("/../x"), "/x");
        assert_eq!(normalized("//srv//data/"), "/srv/data/");
        assert_eq!(normalized("a/../../b"), "../b");
        assert_eq!(normalized("./x"), "x");
        assert_eq!(normalized("."), ".");
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        let long = format!("/{}", "d/".repeat(2500));
        assert_eq!(check(&long), Err(NotNormalized::TooLong { bytes: 5001 }));
        let name = format!("/data/{}", "n".repeat(256));
        assert_eq!(check(&name), Err(NotNormalized::NameTooLong { bytes: 256 }));
        assert_eq!(check(&format!("/{}", "n".repeat(255))), Ok(()));
        assert_eq!(check(&format!("/{}", "d/".repeat(2047))), Ok(()));
    }
}
