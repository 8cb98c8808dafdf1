//! [`Needs`]: what a stage must be allowed to do and what must be there for it. The stage
//! kinds declare it; the generator turns it into sandbox settings, and preflight
//! (`crate::preflight`) checks it. Below both, so neither has to import the other.

use std::path::PathBuf;

/// What a stage needs from its sandbox and environment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Needs {
    /// Paths the stage writes (→ `ReadWritePaths=`; `hello` checks them and their free space).
    pub writes: Vec<PathBuf>,
    /// The stage talks to the network (→ `RestrictAddressFamilies=` with IP, no `PrivateNetwork=`).
    pub network: bool,
    /// Programs the stage runs (`hello` checks them and prints their versions).
    pub tools: Vec<&'static str>,
    /// Files holding secrets (`hello` checks they exist and are not readable by others).
    pub secrets: Vec<PathBuf>,
    /// Remote places the stage reaches, for `hello`'s table (e.g. `host:path`, a repository).
    pub remotes: Vec<String>,
    /// Capabilities beyond reading everything, when run as root (system scope), e.g. the
    /// right to set owners on copied files.
    pub capabilities: Vec<&'static str>,
    /// Local paths the stage reads (what `snapshot = "btrfs"` snapshots).
    pub sources: Vec<PathBuf>,
    /// systemd credentials the unit loads (`LoadCredential=NAME:PATH`): the stage reads them
    /// from `$CREDENTIALS_DIRECTORY/NAME`, so the secret file may stay readable by root only
    /// even when the stage runs as another user.
    pub credentials: Vec<(String, PathBuf)>,
    /// Files that decide what the stage does, named by path: programs it runs (exec
    /// `command[0]`, `stdin_from[0]`, …; see [`program_path`]) and lists its tool reads
    /// (`exclude_from`, `files_from`). Whoever may write one runs commands as the stage's
    /// user, so `hello` and the stage check them (`crate::trust`).
    pub trusted: Vec<PathBuf>,
}

/// The path of a program named in an argv, when it is named by path; `None` for a plain name
/// found through `PATH` (`restic`, `pg_dump`): that comes from the system, and is not checked.
pub fn program_path(argv: &[String]) -> Option<PathBuf> {
    argv.first()
        .filter(|program| program.contains('/'))
        .map(PathBuf::from)
}

impl Needs {
    /// Adds `other`'s needs to these: the lists become their union (each entry once, in the
    /// order first seen; `writes` sorted, as `ReadWritePaths=` lists them), `network` is
    /// needed when either needs it. The one way needs of several stages are combined: for the
    /// `hello` stage's unit (the generator), what the `hello` stage checks, and what
    /// `backupctl hello` checks.
    pub fn merge(&mut self, other: Needs) {
        fn union<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
            for item in from {
                if !into.contains(&item) {
                    into.push(item);
                }
            }
        }
        union(&mut self.writes, other.writes);
        self.writes.sort();
        self.network |= other.network;
        union(&mut self.tools, other.tools);
        union(&mut self.secrets, other.secrets);
        union(&mut self.remotes, other.remotes);
        union(&mut self.capabilities, other.capabilities);
        union(&mut self.sources, other.sources);
        union(&mut self.credentials, other.credentials);
        union(&mut self.trusted, other.trusted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_a_union() {
        let mut needs = Needs {
            writes: vec!["/b".into()],
            tools: vec!["rsync"],
            ..Needs::default()
        };
        needs.merge(Needs {
            writes: vec!["/a".into(), "/b".into()],
            network: true,
            tools: vec!["rsync", "ssh"],
            ..Needs::default()
        });
        assert_eq!(needs.writes, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(needs.network);
        assert_eq!(needs.tools, ["rsync", "ssh"]);
    }
}
