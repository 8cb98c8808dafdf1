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
}
