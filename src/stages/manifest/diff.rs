//! Comparing two manifests (what was recorded, what is there now): every entry that is new,
//! gone, renamed (a file gone and a file new with the same contents) or changed, and in
//! which of its fields. This is what `backupctl verify` prints.

use std::collections::HashMap;
use std::fmt;

use super::format::{Entry, FileType, Manifest, display_bytes};

/// Fields a comparison may leave out (e.g. owners, when a restore ran as another user).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ignore {
    pub mtime: bool,
    pub owner: bool,
    pub mode: bool,
    /// Only the mtime of directories (restores of a subset rewrite them).
    pub dir_mtime: bool,
}

/// One difference between the expected and the actual tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the tree, not in the manifest.
    Added(Vec<u8>),
    /// In the manifest, not in the tree.
    Missing(Vec<u8>),
    /// A file gone from `from` with its contents now at `to`.
    Renamed { from: Vec<u8>, to: Vec<u8> },
    /// Present in both, different in the listed ways.
    Changed { path: Vec<u8>, what: Vec<String> },
}

fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        display_bytes(path)
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Added(path) => write!(f, "+ {}", shown(path)),
            Difference::Missing(path) => write!(f, "- {}", shown(path)),
            Difference::Renamed { from, to } => write!(f, "R {} -> {}", shown(from), shown(to)),
            Difference::Changed { path, what } => {
                write!(f, "M {} ({})", shown(path), what.join(", "))
            }
        }
    }
}

/// How `actual` differs from `expected`, in path order (renames after the rest).
pub fn compare(expected: &Manifest, actual: &Manifest, ignore: Ignore) -> Vec<Difference> {
    let mut differences = Vec::new();
    let mut missing: Vec<&Entry> = Vec::new();
    let mut added: Vec<&Entry> = Vec::new();
    let (mut a, mut b) = (
        expected.entries.iter().peekable(),
        actual.entries.iter().peekable(),
    );
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => missing.push(a.next().unwrap()),
            (None, Some(_)) => added.push(b.next().unwrap()),
            (Some(x), Some(y)) => match x.path.cmp(&y.path) {
                std::cmp::Ordering::Less => missing.push(a.next().unwrap()),
                std::cmp::Ordering::Greater => added.push(b.next().unwrap()),
                std::cmp::Ordering::Equal => {
                    let what = changes(x, y, ignore);
                    if !what.is_empty() {
                        differences.push(Difference::Changed {
                            path: x.path.clone(),
                            what,
                        });
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }

    // Pair files that vanished with files that appeared holding the same bytes.
    let mut appeared: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
    for (index, entry) in added.iter().enumerate() {
        if let Some(hash) = entry.hash {
            appeared.entry(hash).or_default().push(index);
        }
    }
    let mut renamed_to = vec![false; added.len()];
    let mut renames = Vec::new();
    for entry in missing {
        let partner = entry
            .hash
            .and_then(|hash| appeared.get_mut(&hash))
            .and_then(|candidates| candidates.pop());
        match partner {
            Some(index) => {
                renamed_to[index] = true;
                renames.push(Difference::Renamed {
                    from: entry.path.clone(),
                    to: added[index].path.clone(),
                });
            }
            None => differences.push(Difference::Missing(entry.path.clone())),
        }
    }
    for (index, entry) in added.iter().enumerate() {
        if !renamed_to[index] {
            differences.push(Difference::Added(entry.path.clone()));
        }
    }
    differences.sort_by(|x, y| key(x).cmp(key(y)));
    differences.extend(renames);
    differences
}

fn key(difference: &Difference) -> &[u8] {
    match difference {
        Difference::Added(path) | Difference::Missing(path) => path,
        Difference::Changed { path, .. } => path,
        Difference::Renamed { from, .. } => from,
    }
}

/// The fields in which one entry differs from another, for people.
fn changes(expected: &Entry, actual: &Entry, ignore: Ignore) -> Vec<String> {
    let mut what = Vec::new();
    if expected.file_type != actual.file_type {
        what.push(format!(
            "type {} -> {}",
            expected.file_type.name(),
            actual.file_type.name()
        ));
        return what;
    }
    if expected.hash != actual.hash {
        what.push("content".into());
    }
    if expected.size != actual.size {
        what.push(format!("size {} -> {}", expected.size, actual.size));
    }
    if expected.target != actual.target {
        what.push(format!(
            "target {} -> {}",
            display_bytes(expected.target.as_deref().unwrap_or_default()),
            display_bytes(actual.target.as_deref().unwrap_or_default())
        ));
    }
    if expected.rdev != actual.rdev {
        what.push("device number".into());
    }
    if !ignore.mode && expected.mode != actual.mode {
        what.push(format!("mode {:04o} -> {:04o}", expected.mode, actual.mode));
    }
    if !ignore.owner && (expected.uid, expected.gid) != (actual.uid, actual.gid) {
        what.push(format!(
            "owner {}:{} -> {}:{}",
            expected.uid, expected.gid, actual.uid, actual.gid
        ));
    }
    let mtime_ignored = ignore.mtime || (ignore.dir_mtime && expected.file_type == FileType::Dir);
    // Symlink mtimes are not restored by every tool (restic does, rsync -a does too, cp not).
    if !mtime_ignored && (expected.mtime, expected.mtime_nsec) != (actual.mtime, actual.mtime_nsec)
    {
        what.push("mtime".into());
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(path: &str, hash: u8) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            file_type: FileType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 1,
            mtime: 1,
            mtime_nsec: 0,
            target: None,
            rdev: None,
            hash: Some([hash; 32]),
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            root: PathBuf::from("/r"),
            entries,
        }
    }

    #[test]
    fn lists_each_kind_of_difference() {
        let expected = manifest(vec![
            file("a", 1),
            file("b", 2),
            file("c", 3),
            file("old", 4),
        ]);
        let actual = manifest(vec![
            Entry {
                mode: 0o600,
                ..file("a", 1)
            },
            file("b", 9),
            file("d", 5),
            file("new", 4),
        ]);
        let lines: Vec<String> = compare(&expected, &actual, Ignore::default())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "M a (mode 0644 -> 0600)",
                "M b (content)",
                "- c",
                "+ d",
                "R old -> new"
            ]
        );
        let same = compare(&expected, &expected, Ignore::default());
        assert!(same.is_empty());
    }
}
