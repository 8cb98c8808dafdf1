//! `drill`: proves that a backup restores. It takes a random sample of the files in the
//! newest backup of another stage (`stage = "home"`, a restic backup or an rsync copy),
//! always plus the most recently changed ones, gets them back (restic: `restic restore` of
//! just those files into a private scratch directory; rsync: straight from the destination,
//! or from its newest rotated snapshot) and compares each byte for byte, by BLAKE3, with the
//! truth: the BLAKE3 a `manifest` stage recorded at backup time when `manifest` is given,
//! else the live source file when its size and mtime are still those of the backup (a file
//! changed since is counted and skipped, not a failure).
//!
//! Any mismatch, and any restore that fails (restic reporting a damaged pack, say), fails the
//! stage. The target stage's spec is resolved when the config loads ([`StageKind::resolve`]),
//! so the drill's unit gets the target's secrets, credentials and network through [`Needs`].

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use serde::Deserialize;
use toml::Spanned;

use super::manifest::format::Manifest;
use super::{
    KindSpec, Needs, Outcome, Purpose, SpecError, StageContext, StageError, StageKind, manifest,
    restic, rsync,
};
use crate::out::human_bytes;
use crate::report::{Figures, Progress};

const DEFAULT_NEWEST: usize = 20;
const DEFAULT_FILES: u64 = 100;
/// The bytes of `--include` arguments one `restic restore` gets (Linux allows 2 MiB of
/// arguments and environment in all).
const MAX_INCLUDE_BYTES: usize = 256 * 1024;
/// The most mismatches listed in the failure message (all go to the journal).
const LISTED_MISMATCHES: usize = 5;

fn default_newest() -> usize {
    DEFAULT_NEWEST
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The backup stage to verify.
    pub stage: Spanned<String>,
    /// A share of the backup's files, e.g. "2%".
    pub sample: Option<Spanned<String>>,
    /// A number of files (instead of `sample`); default 100.
    pub files: Option<Spanned<u64>>,
    /// Always also the N most recently changed files.
    #[serde(default = "default_newest")]
    pub newest: usize,
    /// A manifest stage whose BLAKE3 list (taken at backup time) is the truth.
    pub manifest: Option<Spanned<String>>,
    /// The target's spec, filled in by [`StageKind::resolve`].
    #[serde(skip)]
    pub target: Option<Target>,
    /// The manifest stage's spec, filled in by [`StageKind::resolve`].
    #[serde(skip)]
    pub manifest_spec: Option<manifest::Spec>,
}

/// The backup a drill verifies.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Restic(Box<restic::Spec>),
    Rsync(Box<rsync::Spec>),
}

const DRILLABLE: &str = "a restic backup stage or an rsync stage with a local destination";

impl Spec {
    /// The sample's share in percent, from `sample = "2%"`.
    fn percent(&self) -> Option<f64> {
        let text = self.sample.as_ref()?.get_ref();
        text.strip_suffix('%')?.trim().parse::<f64>().ok()
    }

    /// How many files the random part of the sample takes out of `total`.
    fn sample_size(&self, total: usize) -> usize {
        match (self.percent(), &self.files) {
            (Some(percent), _) => ((total as f64) * percent / 100.0).ceil() as usize,
            (None, Some(files)) => *files.get_ref() as usize,
            (None, None) => DEFAULT_FILES as usize,
        }
        .min(total)
    }

    fn target(&self) -> Result<&Target, StageError> {
        self.target.as_ref().ok_or_else(|| {
            StageError::Failed(format!(
                "the stage to drill, `{}`, was not resolved",
                self.stage.get_ref()
            ))
        })
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "drill";

    fn validate(&self) -> Result<(), SpecError> {
        if let (Some(sample), Some(_)) = (&self.sample, &self.files) {
            return Err(SpecError::invalid(
                Some(sample.span()),
                "`sample` and `files` both say how many files to drill",
                "keep one: sample = \"2%\" or files = 500",
            ));
        }
        if let Some(sample) = &self.sample {
            match self.percent() {
                Some(p) if p > 0.0 && p <= 100.0 => {}
                _ => {
                    return Err(SpecError::invalid(
                        Some(sample.span()),
                        format!("`sample = \"{}\"` is not a share", sample.get_ref()),
                        "write a percentage above 0 and at most 100, e.g. sample = \"2%\"",
                    ));
                }
            }
        }
        Ok(())
    }

    fn reads_backup_of(&self) -> Option<&str> {
        Some(self.stage.get_ref())
    }

    fn resolve(&mut self, stages: &[(String, KindSpec)]) -> Result<(), SpecError> {
        let find = |name: &str| stages.iter().find(|(n, _)| n == name).map(|(_, s)| s);
        let drillable: Vec<&str> = stages
            .iter()
            .filter(|(_, spec)| target_of(spec).is_ok())
            .map(|(name, _)| name.as_str())
            .collect();
        let hint = if drillable.is_empty() {
            format!("point `stage` at {DRILLABLE}")
        } else {
            format!("stages that can be drilled: {}", drillable.join(", "))
        };
        let name = self.stage.get_ref();
        let Some(spec) = find(name) else {
            return Err(SpecError::invalid(
                Some(self.stage.span()),
                format!("the drill's stage `{name}` is not defined"),
                hint,
            ));
        };
        self.target = Some(target_of(spec).map_err(|why| {
            SpecError::invalid(
                Some(self.stage.span()),
                format!("stage `{name}` cannot be drilled: {why}"),
                hint.clone(),
            )
        })?);
        if let Some(manifest) = &self.manifest {
            let name = manifest.get_ref();
            let spec = find(name).and_then(|spec| spec.downcast_ref::<manifest::Spec>());
            let Some(spec) = spec else {
                return Err(SpecError::invalid(
                    Some(manifest.span()),
                    format!("`manifest = \"{name}\"` is not a manifest stage"),
                    "name a stage of kind \"manifest\" over the same sources, or remove `manifest`",
                ));
            };
            self.manifest_spec = Some(spec.clone());
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        // What the target needs to reach its backup (tools, secrets, credentials, network),
        // but nothing it writes: the drill writes only its scratch directory in the state
        // directory.
        let mut needs = match &self.target {
            Some(Target::Restic(spec)) => StageKind::needs(spec.as_ref()),
            Some(Target::Rsync(spec)) => StageKind::needs(spec.as_ref()),
            None => Needs::default(),
        };
        needs.writes.clear();
        needs.capabilities.clear();
        needs.tools.retain(|tool| *tool != "rsync");
        needs
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let mut drill = match self.target()? {
            Target::Restic(spec) => Backup::restic(spec, ctx)?,
            Target::Rsync(spec) => Backup::rsync(spec)?,
        };
        // Throughput is of getting the sample back and verifying it, not of the listing.
        let started = Instant::now();
        let total = drill.files.len();
        let chosen = choose(&mut drill.files, self.newest, self.sample_size(total));
        ctx.report.status(&format!(
            "drill: verifying {} of {total} files of {}'s backup",
            chosen.len(),
            self.stage.get_ref()
        ));
        let scratch = Scratch::new(ctx)?;
        let restored_root = match &drill.restic {
            Some(restic) => {
                // The whole snapshot: no include patterns for restic to match on every file.
                let everything = chosen.len() == total;
                restic.restore(&chosen, everything, &scratch.0)?;
                scratch.0.clone()
            }
            None => PathBuf::from("/"),
        };
        let truth = match (&self.manifest, &self.manifest_spec) {
            (Some(name), Some(spec)) => {
                Truth::Manifest(load_manifests(spec, &ctx.state_dir, name.get_ref())?)
            }
            _ => Truth::Source,
        };

        let mut tally = Tally::default();
        for (index, file) in chosen.iter().enumerate() {
            if crate::signals::stopped() {
                return Err(StageError::Interrupted);
            }
            ctx.report.progress(&Progress {
                files_done: Some(index as u64),
                files_total: Some(chosen.len() as u64),
                bytes_done: Some(tally.bytes),
                ..Progress::default()
            });
            tally.check(file, &drill.restored_path(&restored_root, file), &truth)?;
        }
        drop(scratch);

        let elapsed = started.elapsed();
        let throughput = (tally.bytes as f64 / elapsed.as_secs_f64().max(0.001)) as u64;
        let age = drill
            .taken
            .map(|taken| Timestamp::now().duration_since(taken).as_secs().max(0) as u64);
        let age_text = age
            .map(|secs| crate::report::short_duration(std::time::Duration::from_secs(secs)))
            .unwrap_or_else(|| "?".into());
        tracing::info!(
            backupctl_drill_files = tally.files,
            backupctl_drill_bytes = tally.bytes,
            backupctl_drill_mismatches = tally.mismatches.len(),
            backupctl_drill_skipped = tally.changed,
            backupctl_drill_throughput = throughput,
            backupctl_drill_snapshot_age_secs = age.unwrap_or_default(),
            "drill: {} files ({}) of {} verified, {} mismatches, {} changed since backup (skipped), {} not in the manifest, {}/s, snapshot {} old",
            tally.files,
            human_bytes(tally.bytes),
            drill.label,
            tally.mismatches.len(),
            tally.changed,
            tally.unlisted,
            human_bytes(throughput),
            age_text,
        );
        if !tally.mismatches.is_empty() {
            for mismatch in &tally.mismatches {
                tracing::error!("drill: mismatch: {mismatch}");
            }
            tracing::error!(
                message_id = crate::report::messages::DRILL_MISMATCH,
                backupctl_drill_target = self.stage.get_ref().as_str(),
                backupctl_drill_mismatches = tally.mismatches.len(),
                "drill: {} restored file(s) of stage {} differ from what was backed up",
                tally.mismatches.len(),
                self.stage.get_ref()
            );
            let listed: Vec<String> = tally
                .mismatches
                .iter()
                .take(LISTED_MISMATCHES)
                .map(ToString::to_string)
                .collect();
            return Err(StageError::Failed(format!(
                "the backup of stage `{}` does not restore intact: {} of {} files differ: {}{}",
                self.stage.get_ref(),
                tally.mismatches.len(),
                tally.files + tally.mismatches.len() as u64,
                listed.join("; "),
                if tally.mismatches.len() > LISTED_MISMATCHES {
                    "; … (all in the journal)"
                } else {
                    ""
                }
            )));
        }
        let mut warnings = Vec::new();
        if tally.files == 0 {
            warnings.push(format!(
                "drill verified no file of stage `{}` ({} in the sample changed since the backup)",
                self.stage.get_ref(),
                tally.changed
            ));
        }
        Ok(Outcome {
            warnings,
            figures: Figures {
                files: Some(tally.files),
                bytes_read: Some(tally.bytes),
                snapshot_id: drill.snapshot_id,
                ..Figures::default()
            },
        })
    }

    fn purpose(&self) -> Purpose {
        Purpose::Drill
    }
}

/// The target spec of a stage, or why it cannot be drilled.
fn target_of(spec: &KindSpec) -> Result<Target, String> {
    if let Some(restic) = spec.downcast_ref::<restic::Spec>() {
        if restic.operation != restic::Operation::Backup {
            return Err("it is a restic stage that makes no backups (`operation`)".into());
        }
        return Ok(Target::Restic(Box::new(restic.clone())));
    }
    if let Some(rsync) = spec.downcast_ref::<rsync::Spec>() {
        if rsync::is_remote(rsync.destination.get_ref()) {
            return Err("its destination is remote; a drill reads a local destination".into());
        }
        if rsync
            .sources
            .get_ref()
            .iter()
            .any(|s| rsync::is_remote(s.get_ref()))
        {
            return Err("its sources are remote; a drill compares with local sources".into());
        }
        return Ok(Target::Rsync(Box::new(rsync.clone())));
    }
    Err(format!(
        "it is a {} stage; drills verify {DRILLABLE}",
        spec.name()
    ))
}

/// One file of the backup, as the backup recorded it.
#[derive(Debug, Clone)]
struct File {
    /// The source path the file was backed up from.
    source: PathBuf,
    /// Where it is in an rsync destination (`None` for restic: restored by its source path).
    stored: Option<PathBuf>,
    size: u64,
    mtime: Timestamp,
}

/// The newest backup of the target: its files and how to get them back.
struct Backup<'a> {
    files: Vec<File>,
    taken: Option<Timestamp>,
    snapshot_id: Option<String>,
    /// For messages: "restic snapshot 1a2b3c4d", "/backup/home".
    label: String,
    restic: Option<Restic<'a>>,
}

impl<'a> Backup<'a> {
    fn restic(spec: &'a restic::Spec, ctx: &'a StageContext<'a>) -> Result<Self, StageError> {
        let restic = Restic {
            spec,
            ctx,
            env: restic::repo::environment(spec, ctx.scope)?,
            snapshot: String::new(),
        };
        ctx.report
            .status("drill: listing the newest restic snapshot");
        let mut args: Vec<OsString> = vec!["ls".into(), "--json".into()];
        // The stage's own snapshots, as `backupctl restore` picks them.
        args.extend(spec.selection_args().into_iter().map(OsString::from));
        for path in spec.paths.iter().flat_map(|paths| paths.get_ref()) {
            args.push("--path".into());
            args.push(path.get_ref().into());
        }
        args.push("latest".into());
        let mut files = Vec::new();
        let mut snapshot: Option<LsSnapshot> = None;
        let mut bad_lines = 0;
        restic
            .command(args)
            .on_line(|line| {
                match serde_json::from_str::<LsLine>(line) {
                    Ok(LsLine::Snapshot(found)) => snapshot = Some(found),
                    Ok(LsLine::Node(node)) if node.kind == "file" => {
                        if let Ok(mtime) = node.mtime.parse::<Timestamp>() {
                            files.push(File {
                                source: PathBuf::from(node.path),
                                stored: None,
                                size: node.size,
                                mtime,
                            });
                        }
                    }
                    Ok(LsLine::Node(_)) => {}
                    Err(_) => bad_lines += 1,
                };
            })
            .on_stderr(|line| tracing::warn!("restic: {line}"))
            .tail_skips(restic::repo::is_stack_frame)
            .run()
            .map_err(|error| restic_failed("list the newest snapshot", error))?;
        let Some(snapshot) = snapshot else {
            return Err(StageError::Failed(
                "the restic repository holds no snapshot of this stage yet; run the backup first"
                    .into(),
            ));
        };
        if bad_lines > 0 {
            tracing::warn!("drill: {bad_lines} lines of `restic ls` were not understood");
        }
        let short: String = snapshot.id.chars().take(8).collect();
        Ok(Backup {
            files,
            taken: snapshot.time.parse().ok(),
            snapshot_id: Some(short.clone()),
            label: format!("restic snapshot {short}"),
            restic: Some(Restic {
                snapshot: snapshot.id,
                ..restic
            }),
        })
    }

    fn rsync(spec: &rsync::Spec) -> Result<Self, StageError> {
        let destination = PathBuf::from(spec.destination.get_ref().trim_end_matches('/'));
        // With `rotate`, the newest snapshot is a backup no later run has touched.
        let (root, taken) = match &spec.rotate {
            Some(_) => match crate::rotate::list(&destination)
                .map_err(|e| StageError::Failed(e.to_string()))?
                .pop()
            {
                Some(snapshot) => (snapshot.path, Some(snapshot.taken)),
                None => (destination.clone(), None),
            },
            None => (destination.clone(), None),
        };
        let taken = match taken {
            Some(taken) => Some(taken),
            None => std::fs::metadata(&root)
                .ok()
                .and_then(|m| Timestamp::new(m.mtime(), m.mtime_nsec() as i32).ok()),
        };
        let mut files = Vec::new();
        for source in spec.sources.get_ref() {
            let source = source.get_ref();
            // `/a/b/` copies b's contents into the destination, `/a/b` copies b itself.
            let source_root = PathBuf::from(source.trim_end_matches('/'));
            let stored_root = if source.ends_with('/') {
                root.clone()
            } else {
                match source_root.file_name() {
                    Some(name) => root.join(name),
                    None => root.clone(),
                }
            };
            walk(&stored_root, &mut |stored, meta| {
                let rel = stored.strip_prefix(&stored_root).unwrap_or(stored);
                if let Ok(mtime) = Timestamp::new(meta.mtime(), meta.mtime_nsec() as i32) {
                    files.push(File {
                        source: source_root.join(rel),
                        stored: Some(stored.to_path_buf()),
                        size: meta.len(),
                        mtime,
                    });
                }
            })
            .map_err(|e| StageError::io(format!("cannot read {}", stored_root.display()), e))?;
        }
        if files.is_empty() {
            return Err(StageError::Failed(format!(
                "{} holds no files of the stage's sources; run the backup first",
                root.display()
            )));
        }
        Ok(Backup {
            files,
            taken,
            snapshot_id: None,
            label: root.display().to_string(),
            restic: None,
        })
    }

    /// Where the restored copy of `file` is.
    fn restored_path(&self, root: &Path, file: &File) -> PathBuf {
        match &file.stored {
            Some(stored) => stored.clone(),
            None => root.join(file.source.strip_prefix("/").unwrap_or(&file.source)),
        }
    }
}

/// Every regular file under `dir` (symlinks not followed).
fn walk(dir: &Path, found: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), found)?;
        } else if meta.is_file() {
            found(&entry.path(), &meta);
        }
    }
    Ok(())
}

/// A line of `restic ls --json`.
#[derive(Deserialize)]
#[serde(tag = "struct_type", rename_all = "lowercase")]
enum LsLine {
    Snapshot(LsSnapshot),
    Node(LsNode),
}

#[derive(Deserialize)]
struct LsSnapshot {
    id: String,
    time: String,
}

#[derive(Deserialize)]
struct LsNode {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    mtime: String,
}

/// restic on the target's repository, with its secrets and options.
struct Restic<'a> {
    spec: &'a restic::Spec,
    ctx: &'a StageContext<'a>,
    env: Vec<(OsString, OsString)>,
    snapshot: String,
}

impl Restic<'_> {
    fn command(&self, args: Vec<OsString>) -> crate::process::Command<'_> {
        let mut command = crate::process::Command::new("restic");
        for var in restic::repo::INHERITED {
            command = command.env_remove(var);
        }
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        // `--no-lock`: the drill only reads, and its unit may not write the repository.
        command
            .envs(&self.ctx.stage.environment)
            .args(self.spec.global_args())
            .arg("--no-lock")
            .args(args)
    }

    /// `restic restore SNAPSHOT --target DIR --include PATH…` for the chosen files, in
    /// batches whose includes stay far below the kernel's limit on an argument list; the
    /// whole snapshot without includes when `everything` was chosen.
    fn restore(&self, files: &[File], everything: bool, target: &Path) -> Result<(), StageError> {
        let mut batches: Vec<Vec<OsString>> = vec![Vec::new()];
        let mut batch_bytes = 0;
        for file in files.iter().filter(|_| !everything) {
            let mut arg = OsString::from("--include=");
            arg.push(escape_pattern(&file.source));
            if batch_bytes + arg.len() > MAX_INCLUDE_BYTES && batch_bytes > 0 {
                batches.push(Vec::new());
                batch_bytes = 0;
            }
            batch_bytes += arg.len() + 1;
            batches.last_mut().expect("one batch at least").push(arg);
        }
        for (index, includes) in batches.into_iter().enumerate() {
            self.ctx.report.status(&format!(
                "drill: restoring {} files (batch {})",
                includes.len(),
                index + 1
            ));
            let mut args: Vec<OsString> = vec![
                "restore".into(),
                self.snapshot.clone().into(),
                "--target".into(),
                target.into(),
            ];
            args.extend(includes);
            self.command(args)
                .on_line(|line| self.ctx.log_output(line))
                .on_stderr(|line| tracing::warn!("restic: {line}"))
                .tail_skips(restic::repo::is_stack_frame)
                .run()
                .map_err(|error| restic_failed("restore the sample", error))?;
        }
        Ok(())
    }
}

/// A path as a restic include pattern that matches only itself.
fn escape_pattern(path: &Path) -> OsString {
    let mut out = Vec::new();
    for &byte in path.as_os_str().as_bytes() {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(byte);
    }
    std::ffi::OsStr::from_bytes(&out).to_os_string()
}

fn restic_failed(what: &str, error: crate::process::ToolError) -> StageError {
    match error {
        crate::process::ToolError::Interrupted => StageError::Interrupted,
        other => StageError::Failed(format!(
            "drill: restic could not {what}, the backup does not restore: {other}"
        )),
    }
}

/// The private scratch directory restored files go to, under the state directory (never
/// /tmp: a unit's /tmp is private, `run --here`'s is shared), removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(ctx: &StageContext) -> Result<Self, StageError> {
        use std::os::unix::fs::DirBuilderExt;
        let parent = ctx.state_dir.join("drill");
        std::fs::create_dir_all(&parent)
            .map_err(|e| StageError::io(format!("cannot create {}", parent.display()), e))?;
        let dir = parent.join(format!("{}.{}", ctx.stage.name, ctx.run_id));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| StageError::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // restic restores read-only files and directories as they were; make them removable.
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+rwX"])
            .arg(&self.0)
            .status();
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("drill: cannot remove {}: {error}", self.0.display());
        }
    }
}

/// Picks the `newest` most recently changed files plus `sample` others at random; leaves
/// `files` reordered.
fn choose(files: &mut [File], newest: usize, sample: usize) -> Vec<File> {
    files.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| a.source.cmp(&b.source)));
    let newest = newest.min(files.len());
    let (head, rest) = files.split_at_mut(newest);
    let mut chosen: Vec<File> = head.to_vec();
    let sample = sample.min(rest.len());
    let mut random = Random::new();
    for i in 0..sample {
        let j = i + (random.next() % (rest.len() - i) as u64) as usize;
        rest.swap(i, j);
        chosen.push(rest[i].clone());
    }
    chosen
}

/// xorshift64*, seeded from /dev/urandom: a sample, not cryptography.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
        let seed = u64::from_le_bytes(seed) | 1;
        Random(seed ^ Timestamp::now().as_nanosecond() as u64 | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What a restored file is compared with.
enum Truth {
    /// The live source file, when unchanged since the backup.
    Source,
    /// The manifests of a manifest stage, by their roots.
    Manifest(Vec<Manifest>),
}

fn load_manifests(
    spec: &manifest::Spec,
    state_dir: &Path,
    stage: &str,
) -> Result<Vec<Manifest>, StageError> {
    let output = spec.output_dir(state_dir, stage);
    let mut manifests = Vec::new();
    for source in spec.sources.get_ref() {
        let file = manifest::Spec::manifest_file(&output, source.get_ref());
        let data = std::fs::read(&file).map_err(|e| {
            StageError::io(
                format!(
                    "cannot read the manifest {} (has stage `{stage}` run?)",
                    file.display()
                ),
                e,
            )
        })?;
        let manifest = Manifest::decode(&data)
            .map_err(|e| StageError::Failed(format!("manifest {}: {e}", file.display())))?;
        manifests.push(manifest);
    }
    Ok(manifests)
}

impl Truth {
    /// The expected BLAKE3 of `file`; `Ok(None)` when there is no truth for it.
    fn expected(&self, file: &File) -> Result<Option<[u8; 32]>, Skip> {
        match self {
            Truth::Source => {
                let meta = std::fs::symlink_metadata(&file.source).map_err(|_| Skip::Changed)?;
                let mtime = Timestamp::new(meta.mtime(), meta.mtime_nsec() as i32)
                    .map_err(|_| Skip::Changed)?;
                // Some copies keep whole seconds only.
                let same_time = mtime == file.mtime
                    || (file.mtime.subsec_nanosecond() == 0
                        && mtime.as_second() == file.mtime.as_second());
                if !meta.is_file() || meta.len() != file.size || !same_time {
                    return Err(Skip::Changed);
                }
                hash_file(&file.source).map(Some).map_err(|_| Skip::Changed)
            }
            Truth::Manifest(manifests) => {
                for manifest in manifests {
                    if let Ok(rel) = file.source.strip_prefix(&manifest.root) {
                        let key = rel.as_os_str().as_bytes();
                        if let Ok(index) = manifest
                            .entries
                            .binary_search_by(|entry| entry.path.as_slice().cmp(key))
                        {
                            return Ok(manifest.entries[index].hash);
                        }
                    }
                }
                Err(Skip::Unlisted)
            }
        }
    }
}

enum Skip {
    Changed,
    Unlisted,
}

#[derive(Default)]
struct Tally {
    files: u64,
    bytes: u64,
    changed: u64,
    unlisted: u64,
    mismatches: Vec<Mismatch>,
}

impl Tally {
    fn check(&mut self, file: &File, restored: &Path, truth: &Truth) -> Result<(), StageError> {
        let expected = match truth.expected(file) {
            Ok(Some(hash)) => hash,
            Ok(None) => {
                self.unlisted += 1;
                return Ok(());
            }
            Err(Skip::Changed) => {
                self.changed += 1;
                return Ok(());
            }
            Err(Skip::Unlisted) => {
                self.unlisted += 1;
                return Ok(());
            }
        };
        let actual = match hash_file(restored) {
            Ok(hash) => Some(hash),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(StageError::io(
                    format!("cannot read the restored {}", restored.display()),
                    error,
                ));
            }
        };
        if actual == Some(expected) {
            self.files += 1;
            self.bytes += file.size;
        } else {
            self.mismatches.push(Mismatch {
                path: file.source.clone(),
                expected,
                actual,
            });
        }
        Ok(())
    }
}

struct Mismatch {
    path: PathBuf,
    expected: [u8; 32],
    /// `None`: the restore did not bring the file back.
    actual: Option<[u8; 32]>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let expected = blake3::Hash::from(self.expected).to_hex();
        match &self.actual {
            Some(actual) => write!(
                f,
                "{} (expected BLAKE3 {expected}, restored {})",
                self.path.display(),
                blake3::Hash::from(*actual).to_hex()
            ),
            None => write!(
                f,
                "{} (expected BLAKE3 {expected}, not restored)",
                self.path.display()
            ),
        }
    }
}

/// BLAKE3 of a file, as `b3sum` computes it: memory-mapped and on every core for large
/// files (the drill competes with `restic restore` + `b3sum -c`, see scripts/bench.d/drill.sh).
fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap_rayon(path)?;
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, secs: i64) -> File {
        File {
            source: PathBuf::from(name),
            stored: None,
            size: 1,
            mtime: Timestamp::new(secs, 0).unwrap(),
        }
    }

    #[test]
    fn chooses_the_newest_and_a_random_sample_without_repeats() {
        let mut files: Vec<File> = (0..100).map(|i| file(&format!("/f{i}"), i)).collect();
        let chosen = choose(&mut files, 3, 10);
        assert_eq!(chosen.len(), 13);
        let names: Vec<_> = chosen.iter().map(|f| f.source.clone()).collect();
        assert_eq!(
            names[..3],
            [PathBuf::from("/f99"), "/f98".into(), "/f97".into()]
        );
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 13);
        let mut few: Vec<File> = (0..5).map(|i| file(&format!("/g{i}"), i)).collect();
        assert_eq!(choose(&mut few, 20, 100).len(), 5);
    }

    #[test]
    fn sample_sizes() {
        let spec =
            |text: &str| -> Spec { toml::from_str(&format!("stage = \"home\"\n{text}")).unwrap() };
        assert_eq!(spec("sample = \"2%\"").sample_size(1000), 20);
        assert_eq!(spec("sample = \"2%\"").sample_size(10), 1);
        assert_eq!(spec("files = 500").sample_size(100), 100);
        assert_eq!(spec("").sample_size(1000), DEFAULT_FILES as usize);
        assert!(spec("sample = \"0%\"").validate().is_err());
        assert!(spec("sample = \"2\"").validate().is_err());
        assert!(spec("sample = \"2%\"\nfiles = 3").validate().is_err());
        assert_eq!(spec("").newest, DEFAULT_NEWEST);
    }

    #[test]
    fn include_patterns_match_only_the_path() {
        assert_eq!(
            escape_pattern(Path::new("/a/b[1]*.txt")),
            OsString::from("/a/b\\[1\\]\\*.txt")
        );
    }
}
