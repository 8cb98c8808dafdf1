//! What the database kinds (`postgresql`, `mysql`, `sqlite`) share: where a dump goes, and
//! how a password reaches a client tool.
//!
//! A dump goes one of two ways ([`Destination`]):
//! - `restic = "STAGE"`: streamed into the repository of that restic stage, one
//!   `restic backup --stdin` per database, stored as `/KIND/HOST/NAME` and tagged
//!   `backupctl:STAGE` (how `restore`, `snapshots` and a drill find them). The dump tool is a
//!   [`Producer`]: when it fails, restic is interrupted before the end of its input and makes
//!   no snapshot. The repository's location and secrets are the restic stage's, read through
//!   `restic::repo` (one place knows how restic gets them);
//! - `directory = "/var/backups/db"`: written to `DIR/.NAME.partial` and renamed over
//!   `DIR/NAME` only once the tool succeeded, so a failed dump never replaces the last good
//!   one; a later stage (rsync, rclone, git) copies the directory.
//!
//! Passwords never reach argv or the environment: [`PrivateFile`] writes the tool's passfile
//! or option file (mode 0600) into a directory only the stage's user can enter, and removes
//! it when the stage ends.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::restic::{self, repo};
use super::{KindSpec, Needs, SpecError, StageContext, StageError};
use crate::paths::Scope;
use crate::process::{Command, Producer, ToolError};
use crate::report::Figures;

/// Where a database stage's dumps go (see the module doc).
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    Directory(&'a Path),
    Restic(&'a restic::Spec),
}

/// The tag every snapshot of stage `stage` carries.
pub fn tag(stage: &str) -> String {
    format!("backupctl:{stage}")
}

/// Who reads the dumps, which decides restic's own lock.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    pub scope: Scope,
    lock: bool,
}

impl Access {
    /// A command (`restore`, `snapshots`): restic takes its non-exclusive lock.
    pub fn command(scope: Scope) -> Access {
        Access { scope, lock: true }
    }

    /// A drill: `--no-lock`, as its unit may not write the repository (the drill writes
    /// only its scratch directory); backupctl's shared repository lock, which the drill
    /// holds, keeps this machine's prunes away meanwhile.
    pub fn drill(scope: Scope) -> Access {
        Access { scope, lock: false }
    }

    /// restic on `spec`'s repository, reading.
    fn restic(self, spec: &restic::Spec) -> Result<std::process::Command, StageError> {
        let mut command = repo::interactive_command(spec, self.scope)?;
        if !self.lock {
            command.arg("--no-lock");
        }
        Ok(command)
    }
}

/// Checks that exactly one of `directory` and `restic` is given, and `directory` is absolute.
pub fn validate_destination(
    directory: &Option<Spanned<PathBuf>>,
    restic: &Option<Spanned<String>>,
) -> Result<(), SpecError> {
    match (directory, restic) {
        (None, None) => Err(SpecError::invalid(
            None,
            "a database stage needs `directory` or `restic`",
            "e.g. restic = \"offsite\" (a restic stage whose repository gets the dumps) or \
             directory = \"/var/backups/databases\"",
        )),
        (Some(_), Some(restic)) => Err(SpecError::invalid(
            Some(restic.span()),
            "give only one of `directory` and `restic`",
            "remove one of them; a later stage can copy the directory",
        )),
        (Some(directory), None) => {
            super::require_absolute(std::slice::from_ref(directory), "directory")
        }
        (None, Some(_)) => Ok(()),
    }
}

/// The restic stage the key `restic = "STAGE"` names, for every database kind's `resolve`
/// (`None` when the key is absent: the dumps go to a directory).
pub fn resolve_restic(
    name: Option<&Spanned<String>>,
    stages: &[(String, KindSpec)],
) -> Result<Option<Box<restic::Spec>>, SpecError> {
    let Some(name) = name else {
        return Ok(None);
    };
    let restic_stages: Vec<&str> = stages
        .iter()
        .filter(|(_, spec)| spec.downcast_ref::<restic::Spec>().is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    let hint = if restic_stages.is_empty() {
        "add a restic stage for the repository (it may be the one that backs up /etc), or \
         write the dumps into `directory`"
            .to_string()
    } else {
        format!("restic stages: {}", restic_stages.join(", "))
    };
    let Some((_, spec)) = stages.iter().find(|(n, _)| n == name.get_ref()) else {
        return Err(SpecError::invalid(
            Some(name.span()),
            format!(
                "`restic` names stage `{}`, which is not defined",
                name.get_ref()
            ),
            hint,
        ));
    };
    let Some(spec) = spec.downcast_ref::<restic::Spec>() else {
        return Err(SpecError::invalid(
            Some(name.span()),
            format!(
                "`restic` names stage `{}`, which is not a restic stage",
                name.get_ref()
            ),
            hint,
        ));
    };
    Ok(Some(Box::new(spec.clone())))
}

/// The connection keys `postgresql` and `mysql` share, as their checks and needs see them.
pub struct Server<'a> {
    pub host: Option<&'a Spanned<String>>,
    /// `host` names a machine (not a socket): the unit needs the network.
    pub network: bool,
    pub password_file: Option<&'a Spanned<PathBuf>>,
    pub password_credential: Option<&'a Spanned<PathBuf>>,
    /// The credential's name in the unit (`LoadCredential=NAME:PATH`).
    pub credential_name: &'static str,
    /// The scheme `hello` names the remote by, e.g. `postgresql`.
    pub scheme: &'static str,
}

/// Whether `host` names a machine rather than a socket (an absolute path): the unit then
/// needs the network.
pub fn is_network(host: Option<&Spanned<String>>) -> bool {
    host.is_some_and(|host| !host.get_ref().starts_with('/'))
}

impl Server<'_> {
    /// The host part of the dumps' path in a repository: the server's name over the
    /// network, this machine's for a socket.
    pub fn host_label(&self) -> String {
        match self.host {
            Some(host) if self.network => host.get_ref().clone(),
            _ => local_host(),
        }
    }

    /// The password keys: absolute paths, and at most one of them.
    pub fn validate(&self) -> Result<(), SpecError> {
        for file in [self.password_file, self.password_credential]
            .into_iter()
            .flatten()
        {
            super::require_absolute(std::slice::from_ref(file), "password_file")?;
        }
        if let (Some(_), Some(credential)) = (self.password_file, self.password_credential) {
            return Err(SpecError::invalid(
                Some(credential.span()),
                "give only one of `password_file` and `password_credential`",
                "remove one of them",
            ));
        }
        Ok(())
    }

    /// The client `tools`, the password as a secret or a credential, the network and the
    /// server as a remote when it is reached over the network.
    pub fn needs(&self, tools: Vec<&'static str>) -> Needs {
        Needs {
            network: self.network,
            tools,
            secrets: self
                .password_file
                .map(|f| f.get_ref().clone())
                .into_iter()
                .collect(),
            credentials: self
                .password_credential
                .map(|f| (self.credential_name.to_string(), f.get_ref().clone()))
                .into_iter()
                .collect(),
            remotes: self
                .host
                .filter(|_| self.network)
                .map(|h| format!("{}://{}", self.scheme, h.get_ref()))
                .into_iter()
                .collect(),
            ..Needs::default()
        }
    }
}

/// The repository a dump streams into (`restic backup --stdin`): shared, as restic's own
/// lock for a backup.
pub fn repositories(destination: Option<Destination>) -> Vec<crate::repo_lock::RepositoryUse> {
    match destination {
        Some(Destination::Restic(spec)) => spec
            .repository_use(crate::repo_lock::Mode::Shared)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// What writing to `destination` needs: the directory, or what the restic stage needs to
/// reach its repository (not its sources).
pub fn destination_needs(destination: Option<Destination>) -> Needs {
    match destination {
        Some(Destination::Directory(dir)) => Needs {
            writes: vec![dir.to_path_buf()],
            ..Needs::default()
        },
        Some(Destination::Restic(spec)) => {
            let mut needs = super::StageKind::needs(spec);
            needs.sources.clear();
            needs
        }
        None => Needs::default(),
    }
}

/// A secret read from `password_file` or the credential `name` of `password_credential`.
/// Checked as every secret file is; errors name the file, never its content.
pub fn read_password(
    file: Option<&Spanned<PathBuf>>,
    credential: Option<&Spanned<PathBuf>>,
    name: &str,
) -> Result<Option<String>, StageError> {
    let path = match (file, credential) {
        (Some(file), _) => {
            crate::secret_file::check(file.get_ref())
                .map_err(|e| StageError::Preflight(e.to_string()))?;
            file.get_ref().clone()
        }
        (None, Some(credential)) => repo::credential_path(name, credential.get_ref()),
        (None, None) => return Ok(None),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StageError::Failed(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(StageError::Failed(format!(
            "the password file {} is empty",
            path.display()
        )));
    }
    Ok(Some(password))
}

/// A file holding a secret for a client tool (a passfile, an option file), mode 0600 in a
/// directory of mode 0700; removed on drop. In `$RUNTIME_DIRECTORY` when the unit has one,
/// else in the state directory (`secrets/`), never in argv or the environment.
pub struct PrivateFile {
    pub path: PathBuf,
}

impl PrivateFile {
    pub fn create(state_dir: &Path, name: &str, contents: &str) -> Result<PrivateFile, StageError> {
        let dir = match std::env::var_os("RUNTIME_DIRECTORY") {
            Some(dir) => PathBuf::from(dir),
            None => state_dir.join("secrets"),
        };
        let context = |what: &str| format!("{what} {}", dir.display());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| StageError::io(context("cannot create"), e))?;
        let path = dir.join(name);
        // A killed run's file goes first: `create_new` refuses to open anything existing
        // (a symlink planted there included).
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StageError::io(context("cannot write a private file in"), e))?;
        file.write_all(contents.as_bytes())
            .map_err(|e| StageError::io(context("cannot write a private file in"), e))?;
        Ok(PrivateFile { path })
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What one dump left: its size, and the restic snapshot it went into.
#[derive(Debug, Default)]
pub struct Stored {
    pub bytes: u64,
    pub snapshot: Option<String>,
}

/// Stores a stage run's dumps at its [`Destination`].
pub struct Sink<'a> {
    destination: Destination<'a>,
    ctx: &'a StageContext<'a>,
    /// The restic environment (repository, password), when the destination is restic.
    env: Vec<(OsString, OsString)>,
    /// `/KIND/HOST/` in the repository.
    prefix: String,
    stored: Vec<Stored>,
}

impl<'a> Sink<'a> {
    /// Opens the destination: the directory is created; restic's stale locks from a killed
    /// run are removed (see [`RunMarker`]).
    pub fn open(
        destination: Destination<'a>,
        ctx: &'a StageContext<'a>,
        kind: &str,
        host: &str,
    ) -> Result<Sink<'a>, StageError> {
        let mut env = Vec::new();
        match destination {
            Destination::Directory(dir) => std::fs::create_dir_all(dir)
                .map_err(|e| StageError::io(format!("cannot create {}", dir.display()), e))?,
            Destination::Restic(spec) => {
                env = repo::environment(spec, ctx.scope)?;
            }
        }
        let sink = Sink {
            destination,
            ctx,
            env,
            prefix: format!("{kind}/{host}/"),
            stored: Vec::new(),
        };
        if let Destination::Restic(spec) = destination
            && RunMarker::new(ctx).left_by_a_killed_run()
        {
            tracing::warn!(
                "the previous run of this stage did not finish; removing stale restic locks"
            );
            // The locks of an earlier boot first, as the restic stage does (see boot_locks).
            if super::restic::boot_locks::ready_for_unlock(
                |args| repo::command(spec, &sink.env, &ctx.stage.environment).args(args),
                spec.local_repository().as_deref(),
            ) {
                sink.restic(vec!["unlock".into()]).run()?;
            }
        }
        Ok(sink)
    }

    fn restic(&self, args: Vec<OsString>) -> Command<'a> {
        let Destination::Restic(spec) = self.destination else {
            unreachable!("restic commands are for a restic destination")
        };
        repo::command(spec, &self.env, &self.ctx.stage.environment)
            .args(args)
            .on_line(|line| self.ctx.log_output(line))
            .on_stderr(|line| tracing::warn!("restic: {line}"))
            .tail_skips(repo::is_stack_frame)
    }

    /// Stores what `argv` writes to stdout as `name` (with `env` added to its environment).
    pub fn stream(
        &mut self,
        name: &str,
        argv: &[String],
        env: &[(String, String)],
    ) -> Result<&Stored, StageError> {
        let environment = self
            .ctx
            .stage
            .environment
            .iter()
            .chain(env.iter().map(|(k, v)| (k, v)));
        let producer = Producer::spawn(argv, environment)?;
        let stored = match self.destination {
            Destination::Directory(dir) => write_into(dir, name, |path| {
                let mut file = std::fs::File::create(path)
                    .map_err(|e| StageError::io(format!("cannot create {}", path.display()), e))?;
                let mut producer = producer;
                let bytes = std::io::copy(&mut producer, &mut file)
                    .map_err(|e| StageError::Failed(format!("dump of {name} failed: {e}")))?;
                file.sync_all()
                    .map_err(|e| StageError::io(format!("cannot write {}", path.display()), e))?;
                Ok(bytes)
            })?,
            Destination::Restic(_) => self.to_restic(name, producer)?,
        };
        self.stored.push(stored);
        Ok(self.stored.last().expect("just pushed"))
    }

    /// Stores a dump that `write` makes at a path it is given (a tool that writes a file or
    /// a directory itself, not a stream). Into restic it goes through a scratch file in the
    /// state directory, removed after.
    pub fn write_with(
        &mut self,
        name: &str,
        write: impl FnOnce(&Path) -> Result<(), StageError>,
    ) -> Result<&Stored, StageError> {
        let stored = match self.destination {
            Destination::Directory(dir) => write_into(dir, name, |path| {
                write(path)?;
                Ok(size_of(path))
            })?,
            Destination::Restic(_) => {
                let scratch = self
                    .ctx
                    .state_dir
                    .join("dump-scratch")
                    .join(&self.ctx.stage.name);
                let _ = std::fs::remove_dir_all(&scratch);
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&scratch)
                    .map_err(|e| {
                        StageError::io(format!("cannot create {}", scratch.display()), e)
                    })?;
                let path = scratch.join("dump");
                let result = write(&path).and_then(|()| {
                    let file = std::fs::File::open(&path).map_err(|e| {
                        StageError::io(format!("cannot read {}", path.display()), e)
                    })?;
                    self.to_restic(name, file)
                });
                let _ = std::fs::remove_dir_all(&scratch);
                result?
            }
        };
        self.stored.push(stored);
        Ok(self.stored.last().expect("just pushed"))
    }

    fn to_restic(
        &self,
        name: &str,
        input: impl Read + Send + 'static,
    ) -> Result<Stored, StageError> {
        let Destination::Restic(spec) = self.destination else {
            unreachable!("restic destination")
        };
        let mut args: Vec<OsString> = vec![
            "backup".into(),
            "--json".into(),
            "--stdin".into(),
            "--stdin-filename".into(),
            format!("{}{name}", self.prefix).into(),
            "--tag".into(),
            tag(&self.ctx.stage.name).into(),
        ];
        if let Some(host) = &spec.host {
            args.push("--host".into());
            args.push(host.into());
        }
        let mut summary = None;
        let marker = RunMarker::new(self.ctx);
        marker.set();
        let result = repo::command(spec, &self.env, &self.ctx.stage.environment)
            .args(args)
            .stdin_from(input)
            .env("RESTIC_PROGRESS_FPS", "1")
            .on_line(|line| {
                if let Some(restic::json::Message::Summary(found)) =
                    restic::json::Message::parse(line)
                {
                    summary = Some(found);
                }
            })
            .on_stderr(|line| tracing::warn!("restic: {line}"))
            .tail_skips(repo::is_stack_frame)
            .run();
        // restic removed its own lock only if it ended by itself; a cut stream, a stop or a
        // signal may leave the lock, which the marker has the next run remove.
        if matches!(result, Ok(_) | Err(ToolError::Failed { .. })) {
            marker.clear();
        }
        match result {
            Ok(_) => {}
            Err(ToolError::Input { source, .. }) => {
                return Err(StageError::Failed(format!(
                    "dump of {name} failed, no snapshot made: {source}"
                )));
            }
            Err(ToolError::Failed { stderr, .. }) => {
                return Err(StageError::Failed(format!(
                    "restic backup of the dump {name} failed: {}",
                    stderr
                        .lines()
                        .map(str::trim)
                        .collect::<Vec<_>>()
                        .join(" / ")
                )));
            }
            Err(other) => return Err(other.into()),
        }
        let summary = summary.ok_or_else(|| {
            StageError::Failed(format!("restic backup of {name} printed no summary"))
        })?;
        let figures = summary.figures();
        Ok(Stored {
            bytes: figures.bytes_read.unwrap_or_default(),
            snapshot: figures.snapshot_id,
        })
    }

    /// Stores the `checks` answers of the dump `dump` just stored, as `DUMP.checks.json`
    /// beside it (its own snapshot in restic), naming the dump's snapshot so that a drill
    /// pairs the two. Not counted among the dumps.
    pub fn store_answers(&mut self, dump: &str, checks: Vec<Answer>) -> Result<(), StageError> {
        let answers = Answers {
            dump: dump.to_string(),
            snapshot: self.stored.last().and_then(|s| s.snapshot.clone()),
            checks,
        };
        let mut text = serde_json::to_vec_pretty(&answers)
            .map_err(|e| StageError::Failed(format!("cannot record the checks: {e}")))?;
        text.push(b'\n');
        let name = answers_name(dump);
        match self.destination {
            Destination::Directory(dir) => {
                write_into(dir, &name, |path| {
                    std::fs::write(path, &text).map_err(|e| {
                        StageError::io(format!("cannot write {}", path.display()), e)
                    })?;
                    Ok(text.len() as u64)
                })?;
            }
            Destination::Restic(_) => {
                self.to_restic(&name, std::io::Cursor::new(text))?;
            }
        }
        Ok(())
    }

    /// The figures of every dump stored: dumps as files, their bytes, the last snapshot.
    pub fn figures(&self) -> Figures {
        Figures {
            files: Some(self.stored.len() as u64),
            bytes_read: Some(self.stored.iter().map(|s| s.bytes).sum()),
            snapshot_id: self.stored.iter().rev().find_map(|s| s.snapshot.clone()),
            ..Figures::default()
        }
    }
}

/// Writes `DIR/.NAME.partial` through `write`, then renames it over `DIR/NAME`: the last
/// good dump stays until a new one is whole. A dump that is a directory (PostgreSQL's
/// directory format) replaces the old one in two renames.
fn write_into(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&Path) -> Result<u64, StageError>,
) -> Result<Stored, StageError> {
    let partial = dir.join(format!(".{name}.partial"));
    let target = dir.join(name);
    remove_any(&partial);
    let bytes = match write(&partial) {
        Ok(bytes) => bytes,
        Err(error) => {
            remove_any(&partial);
            return Err(error);
        }
    };
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|e| {
            StageError::io(
                format!("cannot rename {} to {}", from.display(), to.display()),
                e,
            )
        })
    };
    if partial.is_dir() && target.exists() {
        let old = dir.join(format!(".{name}.old"));
        remove_any(&old);
        rename(&target, &old)?;
        rename(&partial, &target)?;
        remove_any(&old);
    } else {
        rename(&partial, &target)?;
    }
    // The rename is durable only once the directory is.
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    Ok(Stored {
        bytes,
        snapshot: None,
    })
}

fn remove_any(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// The bytes of a file, or of the files of a directory.
fn size_of(path: &Path) -> u64 {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().map(|e| size_of(&e.path())).sum(),
        Err(_) => path.metadata().map(|m| m.len()).unwrap_or_default(),
    }
}

/// A file in the state directory while restic runs for a stage: found at the next start, the
/// last run was killed and may have left a stale lock, which `restic unlock` removes.
struct RunMarker {
    path: PathBuf,
}

impl RunMarker {
    fn new(ctx: &StageContext) -> RunMarker {
        RunMarker {
            path: ctx.state_dir.join("restic-running").join(&ctx.stage.name),
        }
    }

    fn left_by_a_killed_run(&self) -> bool {
        self.path.exists()
    }

    fn set(&self) {
        // Best effort: without it only the automatic unlock of a later run is lost.
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Durably (file and directory), before restic runs: its local backend fsyncs the lock
        // it writes, which would otherwise outlive this marker after a power cut.
        let _ = crate::paths::write_atomically(
            &self.path,
            std::process::id().to_string().as_bytes(),
            crate::paths::Fsync::Yes,
            None,
        );
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// This machine's name, for `/KIND/HOST/` when the server is reached on a local socket.
pub fn local_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// One dump in a destination, as `snapshots` lists it and `restore` finds it.
#[derive(Debug, Clone)]
pub struct Dump {
    /// The file name (`shop.dump`, `globals.sql`).
    pub name: String,
    /// When it was made (RFC 3339 from restic; the file's modification time otherwise).
    pub time: String,
    /// The restic snapshot, when the destination is restic.
    pub snapshot: Option<String>,
    /// Where it is: `/KIND/HOST/NAME` in the snapshot, or the file.
    pub path: PathBuf,
}

/// The dumps at `destination` of stage `stage`, oldest first.
pub fn list(destination: Destination, stage: &str, access: Access) -> anyhow::Result<Vec<Dump>> {
    match destination {
        Destination::Directory(dir) => {
            let mut dumps = Vec::new();
            let entries = std::fs::read_dir(dir)
                .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                let time = modified
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map(|t| t.round(jiff::Unit::Second).map_or(t, |r| r).to_string())
                    .unwrap_or_default();
                dumps.push(Dump {
                    name,
                    time,
                    snapshot: None,
                    path: entry.path(),
                });
            }
            dumps.sort_by(|a, b| a.time.cmp(&b.time).then(a.name.cmp(&b.name)));
            Ok(dumps)
        }
        Destination::Restic(spec) => {
            let output = access
                .restic(spec)?
                .args(["snapshots", "--json", "--tag"])
                .arg(tag(stage))
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| anyhow::anyhow!("cannot run restic: {e}"))?;
            if !output.status.success() {
                anyhow::bail!("restic snapshots failed ({})", output.status);
            }
            let snapshots: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
            let mut dumps: Vec<Dump> = snapshots
                .iter()
                .filter_map(|snapshot| {
                    let path = snapshot["paths"][0].as_str()?;
                    Some(Dump {
                        name: Path::new(path).file_name()?.to_string_lossy().into_owned(),
                        time: snapshot["time"].as_str()?.to_string(),
                        snapshot: Some(snapshot["id"].as_str()?.to_string()),
                        path: PathBuf::from(path),
                    })
                })
                .collect();
            dumps.sort_by(|a, b| a.time.cmp(&b.time));
            Ok(dumps)
        }
    }
}

/// What a file holding the `checks` answers of dump `NAME` is called: `NAME.checks.json`.
const ANSWERS_SUFFIX: &str = ".checks.json";

fn answers_name(dump: &str) -> String {
    format!("{dump}{ANSWERS_SUFFIX}")
}

/// A file of the destination that holds `checks` answers, not a dump.
pub fn is_answers(name: &str) -> bool {
    name.ends_with(ANSWERS_SUFFIX)
}

/// The answers of a database stage's `checks` at dump time, stored beside the dump.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Answers {
    /// The dump's file name.
    pub dump: String,
    /// The dump's restic snapshot (a drill compares only answers of the dump it loaded).
    pub snapshot: Option<String>,
    pub checks: Vec<Answer>,
}

/// One query of `checks` and the rows it answered, one line each.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub query: String,
    pub answer: Vec<String>,
}

/// A database client's answer (`psql`, `mysql`, `sqlite3`): the lines it printed when it
/// exited 0, else what it said on stderr as the error.
pub fn client_rows(output: std::process::Output) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect())
}

/// Runs each query of `checks` through `ask` (the engine's client on the database).
pub fn ask_checks(
    database: &str,
    checks: &[String],
    mut ask: impl FnMut(&str) -> anyhow::Result<Vec<String>>,
) -> Result<Vec<Answer>, StageError> {
    checks
        .iter()
        .map(|query| {
            let answer = ask(query).map_err(|e| {
                StageError::Failed(format!(
                    "database {database}: check `{query}` failed: {e:#}"
                ))
            })?;
            Ok(Answer {
                query: query.clone(),
                answer: answer.into_iter().filter(|l| !l.is_empty()).collect(),
            })
        })
        .collect()
}

/// The drill's check of a loaded dump: the answers recorded with `found` at dump time,
/// asked again of the restored database through `ask` and compared (a different answer
/// fails, with both). Returns how many checks were compared (none when the dump has none).
pub fn check_answers(
    database: &str,
    destination: Destination,
    dumps: &[Dump],
    found: &Dump,
    access: Access,
    ask: impl FnMut(&str) -> anyhow::Result<Vec<String>>,
) -> Result<usize, StageError> {
    let recorded = recorded_answers(destination, dumps, found, access)
        .map_err(|e| StageError::Failed(format!("database {database}: {e:#}")))?;
    compare_checks(database, recorded.as_ref(), ask)
}

/// The answers recorded with `found` (its newest `.checks.json` in `dumps`, when it names
/// the same snapshot): `None` when the dump has none.
pub fn recorded_answers(
    destination: Destination,
    dumps: &[Dump],
    found: &Dump,
    access: Access,
) -> anyhow::Result<Option<Answers>> {
    let name = answers_name(&found.name);
    let Some(file) = dumps.iter().rev().find(|d| d.name == name) else {
        return Ok(None);
    };
    let text = read_text(destination, file, access)?;
    let answers: Answers = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{name} is not a record of checks: {e}"))?;
    if answers.snapshot != found.snapshot {
        tracing::warn!(
            "drill: the newest answers of {} are of another dump; its checks are not compared",
            found.name
        );
        return Ok(None);
    }
    Ok(Some(answers))
}

/// Asks the restored database each recorded query again (through `ask`) and compares: a
/// different answer fails, with both. Returns how many checks were compared.
pub fn compare_checks(
    database: &str,
    recorded: Option<&Answers>,
    ask: impl FnMut(&str) -> anyhow::Result<Vec<String>>,
) -> Result<usize, StageError> {
    let Some(recorded) = recorded else {
        return Ok(0);
    };
    let queries: Vec<String> = recorded.checks.iter().map(|c| c.query.clone()).collect();
    let now = ask_checks(database, &queries, ask)?;
    for (then, now) in recorded.checks.iter().zip(&now) {
        if then.answer != now.answer {
            return Err(StageError::Failed(format!(
                "database {database}: check `{}` answered {} at dump time, {} after the restore",
                then.query,
                then.answer.join(" / "),
                now.answer.join(" / ")
            )));
        }
    }
    Ok(now.len())
}

/// The default of `checks`: none.
pub fn no_checks() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

/// Checks the key `checks`: queries, none empty.
pub fn validate_checks(checks: &Spanned<Vec<String>>) -> Result<(), SpecError> {
    if checks.get_ref().iter().any(|q| q.trim().is_empty()) {
        return Err(SpecError::invalid(
            Some(checks.span()),
            "`checks` holds an empty query",
            "write queries whose answer a restored copy must repeat, e.g. \
             checks = [\"SELECT count(*) FROM orders\"]",
        ));
    }
    Ok(())
}

/// The newest dump of each name in `dumps` (oldest first, as [`list`] gives them), newest
/// first: what a drill loads.
pub fn newest(dumps: &[Dump]) -> Vec<&Dump> {
    let mut newest: Vec<&Dump> = Vec::new();
    for found in dumps.iter().rev().filter(|d| !is_answers(&d.name)) {
        if !newest.iter().any(|d| d.name == found.name) {
            newest.push(found);
        }
    }
    newest
}

/// Prints `dumps` as a table: one line per dump, grouped by name.
pub fn print(dumps: &[Dump]) -> anyhow::Result<()> {
    let mut sorted: Vec<&Dump> = dumps.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then(a.time.cmp(&b.time)));
    let width = sorted
        .iter()
        .map(|d| d.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    crate::outln!("{:<width$}  {:<25}  SNAPSHOT", "DUMP", "TIME")?;
    for dump in sorted {
        let snapshot = dump
            .snapshot
            .as_deref()
            .map_or("-", |id| &id[..id.len().min(8)]);
        crate::outln!("{:<width$}  {:<25}  {snapshot}", dump.name, dump.time)?;
    }
    Ok(())
}

/// The dump `name` to restore: the newest one, or the one in restic snapshot `snapshot`.
pub fn find<'d>(dumps: &'d [Dump], name: &str, snapshot: &str) -> anyhow::Result<&'d Dump> {
    let mut matching = dumps.iter().filter(|d| d.name == name);
    let found = if snapshot == "latest" {
        matching.next_back()
    } else {
        matching.find(|d| {
            d.snapshot
                .as_deref()
                .is_some_and(|id| id.starts_with(snapshot))
        })
    };
    found.ok_or_else(|| {
        let names: std::collections::BTreeSet<&str> =
            dumps.iter().map(|d| d.name.as_str()).collect();
        let known = names.into_iter().collect::<Vec<_>>().join(", ");
        anyhow::anyhow!(
            "no dump {name}{} (dumps: {})",
            if snapshot == "latest" {
                String::new()
            } else {
                format!(" in snapshot {snapshot}")
            },
            if known.is_empty() { "none" } else { &known }
        )
    })
}

/// A dump's bytes: its file, or the output of the `restic dump` that fetches it.
pub enum Input {
    File(std::fs::File),
    Pipe(std::process::ChildStdout),
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Input::File(file) => file.read(buf),
            Input::Pipe(pipe) => pipe.read(buf),
        }
    }
}

impl From<Input> for std::process::Stdio {
    fn from(input: Input) -> std::process::Stdio {
        match input {
            Input::File(file) => file.into(),
            Input::Pipe(pipe) => pipe.into(),
        }
    }
}

/// The bytes of a dump, to feed a loading tool: the file, or `restic dump` of the snapshot.
pub fn open(
    destination: Destination,
    dump: &Dump,
    access: Access,
) -> anyhow::Result<(Input, Option<std::process::Child>)> {
    match destination {
        Destination::Directory(_) => {
            let file = std::fs::File::open(&dump.path)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dump.path.display()))?;
            Ok((Input::File(file), None))
        }
        Destination::Restic(spec) => {
            let mut child = access
                .restic(spec)?
                .arg("dump")
                .arg(dump.snapshot.as_deref().unwrap_or("latest"))
                .arg(&dump.path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot run restic: {e}"))?;
            let stdout = child.stdout.take().expect("piped");
            Ok((Input::Pipe(stdout), Some(child)))
        }
    }
}

/// Starts a drill's throw-away server (`start`, on a thread of its own) while `meanwhile`
/// reads the destination here: restic's start-up (key derivation, index) and the server's
/// (`initdb`, `mariadb-install-db`) need not wait for each other. The thread logs into the
/// stage's span, so its lines keep the stage's journal fields.
pub fn start_server_while<S: Send, R>(
    start: impl FnOnce() -> Result<S, StageError> + Send,
    meanwhile: impl FnOnce() -> R,
) -> (Result<S, StageError>, R) {
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let starting = scope.spawn(move || {
            let _entered = span.enter();
            start()
        });
        let read = meanwhile();
        let server = starting.join().unwrap_or_else(|_| {
            Err(StageError::Failed(
                "the drill's server could not be started".into(),
            ))
        });
        (server, read)
    })
}

/// A small dump (the roles, recorded answers) read whole into memory.
pub fn read_text(destination: Destination, dump: &Dump, access: Access) -> anyhow::Result<String> {
    let (mut reader, fetcher) = open(destination, dump, access)?;
    let mut text = String::new();
    let read = reader.read_to_string(&mut text);
    if let Some(mut fetcher) = fetcher {
        let status = fetcher.wait()?;
        anyhow::ensure!(
            status.success(),
            "restic dump of {} failed ({status})",
            dump.name
        );
    }
    read?;
    Ok(text)
}

/// Runs `load` (a loading tool, stdin not set) with the dump's bytes as its stdin; fails
/// when either the tool or the reader (`restic dump`) failed, the tool's failure first.
///
/// The tool reads the file or restic's pipe itself: backupctl copies nothing, and a tool
/// that stops early (`pg_restore --exit-on-error` at its first error) ends `restic dump`
/// with SIGPIPE, where a copy through backupctl kept the pipe open and both waited forever.
pub fn load_into(
    destination: Destination,
    dump: &Dump,
    access: Access,
    mut load: std::process::Command,
) -> anyhow::Result<()> {
    let (input, fetcher) = open(destination, dump, access)?;
    let program = load.get_program().to_string_lossy().into_owned();
    let spawned = load.stdin(input).spawn();
    // The command holds the pipe's read end: dropped, the tool is its only reader.
    drop(load);
    let mut child = spawned.map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    let status = child.wait()?;
    let fetched = fetcher.map(|mut fetcher| fetcher.wait()).transpose()?;
    // SIGPIPE: the tool stopped reading (its own failure, or done before the end).
    let fetch_failed = fetched
        .filter(|fetched| !fetched.success() && !broken_pipe(*fetched))
        .map(|fetched| format!("restic dump of {} failed ({fetched})", dump.path.display()));
    match (status.success(), fetch_failed) {
        (true, None) => Ok(()),
        (true, Some(fetch)) => Err(anyhow::anyhow!(fetch)),
        (false, None) => Err(anyhow::anyhow!(
            "{program} failed to load {} ({status})",
            dump.name
        )),
        (false, Some(fetch)) => Err(anyhow::anyhow!(
            "{fetch}, and {program} failed to load {} ({status})",
            dump.name
        )),
    }
}

/// Whether a process was ended by SIGPIPE (its reader had gone).
fn broken_pipe(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(nix::sys::signal::Signal::SIGPIPE as i32)
}

/// Checks the key `databases`: `["all"]` alone, or names.
pub fn validate_databases(databases: &Spanned<Vec<String>>) -> Result<(), SpecError> {
    let list = databases.get_ref();
    if list.is_empty() {
        return Err(SpecError::invalid(
            Some(databases.span()),
            "`databases` is empty",
            "leave it out (all databases) or list names, e.g. databases = [\"shop\"]",
        ));
    }
    if list.len() > 1 && list.iter().any(|name| name == "all") {
        return Err(SpecError::invalid(
            Some(databases.span()),
            "`databases` holds \"all\" besides names",
            "write [\"all\"] alone (with `exclude_databases` for exceptions), or only names",
        ));
    }
    if let Some(bad) = list
        .iter()
        .find(|name| name.is_empty() || name.contains('/'))
    {
        return Err(SpecError::invalid(
            Some(databases.span()),
            format!("`databases` holds {bad:?}, which cannot be a dump's file name"),
            "name databases without `/`",
        ));
    }
    Ok(())
}

/// The databases to dump: `wanted` (or every one `discover` finds when it is `["all"]`),
/// minus `exclude`.
pub fn select(
    wanted: &[String],
    exclude: &[String],
    discover: impl FnOnce() -> Result<Vec<String>, StageError>,
) -> Result<Vec<String>, StageError> {
    let mut names = if wanted == ["all"] {
        discover()?
    } else {
        wanted.to_vec()
    };
    names.retain(|name| !exclude.contains(name));
    if names.is_empty() {
        return Err(StageError::Failed(
            "no database to dump (all excluded, or the server has none)".into(),
        ));
    }
    Ok(names)
}

/// The lines a client tool printed on stdout, for discovery queries.
pub fn query_lines(command: Command) -> Result<Vec<String>, StageError> {
    let mut lines = Vec::new();
    command
        .on_line(|line| {
            let line = line.trim_end();
            if !line.is_empty() {
                lines.push(line.to_string());
            }
        })
        .run()?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_last_good_dump() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shop.dump"), "good").unwrap();
        let error = write_into(dir.path(), "shop.dump", |path| {
            std::fs::write(path, "half").unwrap();
            Err(StageError::Failed("disk full".into()))
        })
        .unwrap_err();
        assert!(error.to_string().contains("disk full"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("shop.dump")).unwrap(),
            "good"
        );
        assert!(!dir.path().join(".shop.dump.partial").exists());
        write_into(dir.path(), "shop.dump", |path| {
            std::fs::write(path, "new").unwrap();
            Ok(3)
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("shop.dump")).unwrap(),
            "new"
        );
    }

    #[test]
    fn selects_databases() {
        let all = || Ok(vec!["a".to_string(), "b".to_string(), "c".to_string()]);
        assert_eq!(
            select(&["all".into()], &["b".into()], all).unwrap(),
            ["a", "c"]
        );
        assert_eq!(select(&["b".into()], &[], all).unwrap(), ["b"]);
        assert!(select(&["b".into()], &["b".into()], all).is_err());
    }
}
