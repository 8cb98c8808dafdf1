//! Who may write a file that decides what runs: the config (its `exec` stages run as root in
//! system scope), and the programs and lists a stage hands to its tools by path. Whoever can
//! change such a file, or any directory on the way to it, runs commands as the user the
//! stages run as; sudo (sudoers), sshd (`StrictModes`) and cron refuse such files for this
//! reason, and so does backupctl (the rules, with the fix for each case: docs/security.md).
//!
//! The path is walked from `/` one entry at a time, as the kernel resolves it, so every
//! symlink is followed where it points and every directory on the way is checked (a NixOS
//! `/etc/backupctl/config.toml` → `/etc/static/…` → `/nix/store/…` is checked all along).
//! Each entry must belong to root or, under [`Reader::User`], to that user; no directory may
//! be writable by anyone else (root: its group or others; a user: others) unless it is sticky,
//! where only an entry's owner may rename or replace it — the next entry is then checked as
//! every entry is (this is why `/tmp/x` owned by root, and the root-owned paths in the
//! group-writable sticky `/nix/store`, pass). The file itself must not be writable by anyone
//! else. `secret_file` shares the words (`describe_access`, [`user_name`]).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Whose commands the file decides, and so who alone may write it (with root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Root reads it: only root may write it; group-writable counts as writable by others.
    Root,
    /// A user reads it (user scope): that user or root may own it; others may not write it.
    User(u32),
}

impl Reader {
    /// The user this process runs as: root for the system generator, system units and
    /// `sudo backupctl …`; the user for user units and a user's own commands.
    pub fn current() -> Reader {
        match nix::unistd::geteuid().as_raw() {
            0 => Reader::Root,
            uid => Reader::User(uid),
        }
    }

    fn trusts_owner(self, uid: u32) -> bool {
        uid == 0 || self == Reader::User(uid)
    }

    /// The write bits no one but the owner may have: root's files may not be group-writable
    /// either (sudo's rule); a user's group may write (user private groups, umask 002).
    fn foreign_write_bits(self) -> u32 {
        match self {
            Reader::Root => 0o022,
            Reader::User(_) => 0o002,
        }
    }

    fn name(self) -> String {
        match self {
            Reader::Root => "root".into(),
            Reader::User(uid) => user_name(uid),
        }
    }

    /// The `chmod` argument that takes the forbidden write bits away.
    fn chmod(self) -> &'static str {
        match self {
            Reader::Root => "go-w",
            Reader::User(_) => "o-w",
        }
    }
}

/// Why a file is not trusted. `Display` is one line: what is wrong (path, owner, mode in
/// words) and the command that fixes it; [`TrustError::problem`] and [`TrustError::fix`] give
/// the two halves for errors that show them apart (the config's).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot check who may write {what} {}: {source}", .path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}; run: {}", self.problem(), self.fix())]
    Untrusted {
        /// "the config", "the program", …
        what: &'static str,
        /// The file the caller asked about.
        file: PathBuf,
        /// The entry at fault: the file itself, a directory above it, or a symlink.
        entry: PathBuf,
        kind: EntryKind,
        owner: u32,
        group: u32,
        mode: u32,
        reader: Reader,
    },
    #[error("cannot check who may write {what} {}: too many symbolic links", .path.display())]
    Loop { what: &'static str, path: PathBuf },
}

/// What the entry at fault is, relative to the file checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    TheFile,
    Directory,
    Symlink,
}

impl TrustError {
    /// What is wrong, in words: the path, its owner and its mode.
    pub fn problem(&self) -> String {
        let TrustError::Untrusted {
            what,
            file,
            entry,
            kind,
            owner,
            group,
            mode,
            reader,
        } = self
        else {
            return self.to_string();
        };
        let subject = match kind {
            EntryKind::TheFile if entry != file => {
                format!(
                    "{what} {} (a symlink to {})",
                    file.display(),
                    entry.display()
                )
            }
            EntryKind::TheFile => format!("{what} {}", file.display()),
            EntryKind::Directory => format!(
                "the directory {} above {what} {}",
                entry.display(),
                file.display()
            ),
            EntryKind::Symlink => format!(
                "the symlink {} on the way to {what} {}",
                entry.display(),
                file.display()
            ),
        };
        if !reader.trusts_owner(*owner) {
            return format!(
                "{subject} belongs to {}, not to {} (mode {mode:04o}): {} decides what runs as {}",
                user_name(*owner),
                trusted_owners(*reader),
                user_name(*owner),
                reader.name()
            );
        }
        let access = describe_access(mode & reader.foreign_write_bits())
            .unwrap_or_else(|| "writable".into());
        let group = if mode & 0o020 != 0 {
            format!(", group {}", group_name(*group))
        } else {
            String::new()
        };
        format!(
            "{subject} is {access} (owner {}{group}, mode {mode:04o}): whoever may write it decides what runs as {}",
            user_name(*owner),
            reader.name()
        )
    }

    /// The one command that fixes it.
    pub fn fix(&self) -> String {
        let TrustError::Untrusted {
            entry,
            kind,
            owner,
            mode,
            reader,
            ..
        } = self
        else {
            return "check the path's permissions".into();
        };
        let path = shell_word(entry);
        let chown = match kind {
            EntryKind::Symlink => "chown -h",
            _ => "chown",
        };
        let writable = *kind != EntryKind::Symlink && mode & reader.foreign_write_bits() != 0;
        match (reader.trusts_owner(*owner), writable) {
            (false, false) => format!("{chown} {} {path}", reader.name()),
            (false, true) => format!(
                "{chown} {} {path} && chmod {} {path}",
                reader.name(),
                reader.chmod()
            ),
            _ => format!("chmod {} {path}", reader.chmod()),
        }
    }
}

/// "root", or "ann or root".
fn trusted_owners(reader: Reader) -> String {
    match reader {
        Reader::Root => "root".into(),
        Reader::User(uid) => format!("{} or root", user_name(uid)),
    }
}

/// A path as one shell word: quoted when it holds anything a shell would split or expand.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Symlinks followed before the walk gives up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Checks that only `reader` (and root) can change `path`: the file, every directory above it
/// and every symlink on the way, resolved as the kernel resolves them. `what` names the file
/// in the message ("the config").
pub fn check(path: &Path, what: &'static str, reader: Reader) -> Result<(), TrustError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let lstat = |entry: &Path| {
        std::fs::symlink_metadata(entry).map_err(|source| TrustError::Unreadable {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let untrusted = |entry: &Path, kind: EntryKind, meta: &std::fs::Metadata| {
        Err(TrustError::Untrusted {
            what,
            file: absolute.clone(),
            entry: entry.to_path_buf(),
            kind,
            owner: meta.uid(),
            group: meta.gid(),
            mode: meta.mode() & 0o7777,
            reader,
        })
    };
    let mut pending: VecDeque<OsString> = components(&absolute);
    let mut current = PathBuf::from("/");
    let root = lstat(&current)?;
    if !reader.trusts_owner(root.uid())
        || (root.mode() & reader.foreign_write_bits() != 0 && root.mode() & 0o1000 == 0)
    {
        return untrusted(&current, EntryKind::Directory, &root);
    }
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            current.pop();
            continue;
        }
        let entry = current.join(&name);
        let meta = lstat(&entry)?;
        if meta.file_type().is_symlink() {
            // The link's own mode means nothing; its owner matters where the directory lets
            // only owners replace entries, and that was the directory's check or this one.
            if !reader.trusts_owner(meta.uid()) {
                return untrusted(&entry, EntryKind::Symlink, &meta);
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(TrustError::Loop {
                    what,
                    path: path.to_path_buf(),
                });
            }
            let target = std::fs::read_link(&entry).map_err(|source| TrustError::Unreadable {
                what,
                path: path.to_path_buf(),
                source,
            })?;
            if target.is_absolute() {
                current = PathBuf::from("/");
            }
            for component in components(&target).into_iter().rev() {
                pending.push_front(component);
            }
            continue;
        }
        let last = pending.is_empty();
        let kind = if last {
            EntryKind::TheFile
        } else {
            EntryKind::Directory
        };
        if !reader.trusts_owner(meta.uid()) {
            return untrusted(&entry, kind, &meta);
        }
        let writable = meta.mode() & reader.foreign_write_bits() != 0;
        // A sticky directory lets others add entries but not replace ours: the next entry's
        // own owner check decides. The file itself gains nothing from a sticky bit.
        let sticky = meta.mode() & 0o1000 != 0 && !last;
        if writable && !sticky {
            return untrusted(&entry, kind, &meta);
        }
        current = entry;
    }
    Ok(())
}

/// The names a path walks through (`.` dropped, `..` kept for the walk to resolve).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// A user's name, or `uid N` when the user database does not know it.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => group.name,
        _ => format!("gid {gid}"),
    }
}

/// What the group and other bits of `mode` allow, in words (`None`: neither has any right),
/// e.g. "readable by its group and others", "readable by its group, writable by others".
pub fn describe_access(mode: u32) -> Option<String> {
    let rights = |bits: u32| -> Option<String> {
        let words: Vec<&str> = [(4, "readable"), (2, "writable"), (1, "executable")]
            .into_iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|(_, word)| word)
            .collect();
        match words.as_slice() {
            [] => None,
            [one] => Some(one.to_string()),
            [rest @ .., last] => Some(format!("{} and {last}", rest.join(", "))),
        }
    };
    let group = rights((mode >> 3) & 0o7);
    let others = rights(mode & 0o7);
    match (group, others) {
        (None, None) => None,
        (Some(g), None) => Some(format!("{g} by its group")),
        (None, Some(o)) => Some(format!("{o} by others")),
        (Some(g), Some(o)) if g == o => Some(format!("{g} by its group and others")),
        (Some(g), Some(o)) => Some(format!("{g} by its group, {o} by others")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A file in its own directory under the test's scratch directory (in the sticky /tmp).
    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/file");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        (dir, file)
    }

    #[test]
    fn the_readers_rule_decides_what_group_write_means() {
        let (_dir, file) = scratch();
        chmod(&file, 0o664);
        assert!(check(&file, "the file", Reader::Root).is_err());
        // A user's own file (or root's) may be written by its group, not by others.
        std::os::unix::fs::chown(&file, Some(65534), None).expect("the tests run as root");
        check(&file, "the file", Reader::User(65534)).unwrap();
        let foreign = check(&file, "the file", Reader::User(12345)).unwrap_err();
        assert!(
            foreign.problem().contains("not to uid 12345 or root"),
            "{foreign}"
        );
        chmod(&file, 0o646);
        let error = check(&file, "the file", Reader::User(65534)).unwrap_err();
        assert_eq!(error.fix(), format!("chmod o-w {}", file.display()));
    }

    #[test]
    fn a_writable_directory_is_refused_unless_sticky() {
        let (_dir, file) = scratch();
        let sub = file.parent().unwrap();
        chmod(sub, 0o757);
        let error = check(&file, "the file", Reader::Root).unwrap_err();
        assert!(
            matches!(&error, TrustError::Untrusted { entry, kind: EntryKind::Directory, .. } if entry == sub),
            "{error}"
        );
        assert_eq!(error.fix(), format!("chmod go-w {}", sub.display()));
        chmod(sub, 0o1757);
        check(&file, "the file", Reader::Root).unwrap();
        // The sticky bit does not help the file itself.
        chmod(&file, 0o1646);
        assert!(check(&file, "the file", Reader::Root).is_err());
    }

    #[test]
    fn symlinks_and_dot_dot_are_followed_as_the_kernel_does() {
        let (dir, _file) = scratch();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        // Through the writable directory and back out: the walk passes `open`, which anyone
        // could swap for a link elsewhere.
        let through = dir.path().join("open/../sub/file");
        assert!(check(&through, "the file", Reader::Root).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("sub/file", &link).unwrap();
        check(&link, "the file", Reader::Root).unwrap();
        let loop_link = dir.path().join("loop");
        std::os::unix::fs::symlink("loop", &loop_link).unwrap();
        assert!(matches!(
            check(&loop_link, "the file", Reader::Root),
            Err(TrustError::Loop { .. })
        ));
    }

    #[test]
    fn a_fix_quotes_a_path_a_shell_would_split() {
        assert_eq!(shell_word(Path::new("/etc/a b")), "'/etc/a b'");
        assert_eq!(shell_word(Path::new("/etc/backupctl")), "/etc/backupctl");
    }
}
