//! `drill`: proves that a backup restores. It takes a random sample of the files in the
//! newest backup of another stage (`stage = "home"`: a restic backup, an rsync copy or a git
//! stage's commit), always plus the most recently changed ones, gets them back (restic:
//! `restic restore` of just those files into a private scratch directory; git: `git
//! checkout` of them there; rsync: straight from the destination, or from its newest rotated
//! snapshot) and compares each byte for byte, by BLAKE3, with the truth: the BLAKE3 a
//! `manifest` stage recorded at backup time when `manifest` is given, else the live source
//! file when it is still what the backup recorded (size and mtime; for git, its blob id). A
//! file changed since is counted and skipped, not a failure.
//!
//! Any mismatch, and any restore that fails (restic reporting a damaged pack, say), fails the
//! stage. The target stage's spec is resolved when the config loads ([`StageKind::resolve`]),
//! so the drill's unit gets the target's secrets, credentials and network through [`Needs`].
//!
//! Which kinds can be drilled, and how, is their capability ([`StageKind::DRILL`], see
//! [`target`]): this module knows no kind but the `manifest` it may take as the truth. The
//! drill side of restic, rsync and git is here, one file each, because they share the
//! sample verification ([`verify_sample`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use serde::Deserialize;
use toml::Spanned;

use super::{
    KINDS, KindSpec, Needs, Outcome, Purpose, SpecError, StageContext, StageError, StageKind,
    manifest,
};
use crate::out::human_bytes;
use crate::report::{Figures, Progress};

const DEFAULT_NEWEST: usize = 20;
const DEFAULT_FILES: u64 = 100;
/// The most mismatches listed in the failure message (all go to the journal).
const LISTED_MISMATCHES: usize = 5;

mod git_commit;
mod restic_snapshot;
mod rsync_copy;
pub mod target;
mod verify;

pub use target::{Drill, DrillContext, Drillable};

use verify::{Tally, Truth};

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
    /// git targets: drill this local remote (a path in the stage's `remotes`) instead of the
    /// stage's own repository.
    pub remote: Option<Spanned<PathBuf>>,
    /// The target's spec, filled in by [`StageKind::resolve`]; its kind can be drilled.
    #[serde(skip)]
    pub target: Option<KindSpec>,
    /// The manifest stage's spec, filled in by [`StageKind::resolve`].
    #[serde(skip)]
    pub manifest_spec: Option<manifest::Spec>,
}

/// What can be drilled, from the registry: "a restic backup stage, … or a git stage in
/// commit mode" (each kind's [`Drill::what`]).
fn drillable_kinds() -> String {
    let whats: Vec<&str> = KINDS
        .iter()
        .filter_map(|entry| entry.drill_what())
        .collect();
    match whats.split_last() {
        None => "nothing".to_string(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

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

    fn target(&self) -> Result<&dyn Drillable, StageError> {
        self.target
            .as_ref()
            .and_then(|spec| spec.drill())
            .ok_or_else(|| {
                StageError::Failed(format!(
                    "the stage to drill, `{}`, was not resolved",
                    self.stage.get_ref()
                ))
            })
    }

    /// The default of [`Drillable::check_drill`]: `remote` picks one of the local remotes
    /// of a target that has them, so the others refuse it.
    pub fn refuse_remote(&self) -> Result<(), SpecError> {
        match &self.remote {
            None => Ok(()),
            Some(remote) => Err(SpecError::invalid(
                Some(remote.span()),
                "`remote` picks a local remote of the stage to drill",
                format!(
                    "stage `{}` has no remotes a drill can read: remove `remote`",
                    self.stage.get_ref()
                ),
            )),
        }
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

    /// The target's repositories, read: shared, whatever the target does to them.
    fn repositories(&self) -> Vec<crate::repo_lock::RepositoryUse> {
        let uses = self.target.iter().flat_map(|target| target.repositories());
        uses.map(|used| crate::repo_lock::RepositoryUse {
            mode: crate::repo_lock::Mode::Shared,
            ..used
        })
        .collect()
    }

    fn resolve(&mut self, stages: &[(String, KindSpec)]) -> Result<(), SpecError> {
        let find = |name: &str| stages.iter().find(|(n, _)| n == name).map(|(_, s)| s);
        let drillable: Vec<&str> = stages
            .iter()
            .filter(|(_, spec)| can_drill(spec).is_ok())
            .map(|(name, _)| name.as_str())
            .collect();
        let hint = if drillable.is_empty() {
            format!("point `stage` at {}", drillable_kinds())
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
        let target = can_drill(spec).map_err(|why| {
            SpecError::invalid(
                Some(self.stage.span()),
                format!("stage `{name}` cannot be drilled: {why}"),
                hint.clone(),
            )
        })?;
        target.check_drill(self)?;
        // `stages` are the specs as loaded, not yet resolved: the target's own references
        // (a database stage's `restic = "STAGE"`) are resolved on the drill's copy.
        let mut target = spec.clone();
        target.resolve(stages)?;
        self.target = Some(target);
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
        // directory. Its capabilities are the drill's own (a throw-away server's account).
        let Ok(target) = self.target() else {
            return Needs::default();
        };
        let mut needs = target.drill_needs();
        needs.writes.clear();
        needs.capabilities = target.drill_capabilities();
        needs
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let target = self.target()?;
        let scratch = Scratch::new(ctx)?;
        target.drill(&DrillContext {
            stage: ctx,
            drill: self,
            scratch: &scratch.0,
        })
    }

    fn purpose(&self) -> Purpose {
        Purpose::Drill
    }
}

/// The drill of a backup made of files: a random sample of `backup`'s files (plus the newest)
/// restored through its [`RestoreSample`] and each compared byte for byte with the truth
/// (the manifest when the drill names one, else the live source when unchanged since).
/// Fails with the mismatches counted; the journal gets one line of figures.
pub fn verify_sample(ctx: &DrillContext, mut backup: Backup) -> Result<Outcome, StageError> {
    let (this, scratch) = (ctx.drill, ctx.scratch);
    let ctx = ctx.stage;
    // Throughput is of getting the sample back and verifying it, not of the listing.
    let started = Instant::now();
    let total = backup.files.len();
    let chosen = choose(&mut backup.files, this.newest, this.sample_size(total));
    ctx.report.status(&format!(
        "drill: verifying {} of {total} files of {}'s backup",
        chosen.len(),
        this.stage.get_ref()
    ));
    // The whole backup: no include patterns for the tool to match on every file.
    let everything = chosen.len() == total;
    let restored_root = backup.restore.restore(&chosen, everything, scratch)?;
    let truth = match (&this.manifest, &this.manifest_spec) {
        (Some(name), Some(spec)) => Truth::Manifest(verify::load_manifests(
            spec,
            &ctx.state_dir,
            name.get_ref(),
        )?),
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
        tally.check(file, &restored_root.join(&file.stored), &truth)?;
    }

    let elapsed = started.elapsed();
    let throughput = (tally.bytes as f64 / elapsed.as_secs_f64().max(0.001)) as u64;
    let age = backup
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
        backup.label,
        tally.mismatches.len(),
        tally.changed,
        tally.unlisted,
        human_bytes(throughput),
        age_text,
    );
    let figures = Figures {
        files: Some(tally.files),
        bytes_read: Some(tally.bytes),
        snapshot_id: backup.snapshot_id,
        mismatches: Some(tally.mismatches.len() as u64),
        skipped: Some(tally.changed),
        throughput_bytes_per_sec: Some(throughput),
        snapshot_age_secs: age,
        ..Figures::default()
    };
    if !tally.mismatches.is_empty() {
        for mismatch in &tally.mismatches {
            tracing::error!("drill: mismatch: {mismatch}");
        }
        tracing::error!(
            message_id = crate::report::messages::DRILL_MISMATCH,
            backupctl_drill_target = this.stage.get_ref().as_str(),
            backupctl_drill_mismatches = tally.mismatches.len(),
            "drill: {} restored file(s) of stage {} differ from what was backed up",
            tally.mismatches.len(),
            this.stage.get_ref()
        );
        let listed: Vec<String> = tally
            .mismatches
            .iter()
            .take(LISTED_MISMATCHES)
            .map(ToString::to_string)
            .collect();
        return Err(StageError::Counted {
            message: format!(
                "the backup of stage `{}` does not restore intact: {} of {} files differ: {}{}",
                this.stage.get_ref(),
                tally.mismatches.len(),
                tally.files + tally.mismatches.len() as u64,
                listed.join("; "),
                if tally.mismatches.len() > LISTED_MISMATCHES {
                    "; … (all in the journal)"
                } else {
                    ""
                }
            ),
            figures: Box::new(figures),
        });
    }
    let mut warnings = Vec::new();
    if tally.files == 0 {
        warnings.push(format!(
            "drill verified no file of stage `{}` ({} in the sample changed since the backup)",
            this.stage.get_ref(),
            tally.changed
        ));
    }
    Ok(Outcome { warnings, figures })
}

/// The stage as a drill target, or why it cannot be drilled.
fn can_drill(spec: &KindSpec) -> Result<&dyn Drillable, String> {
    let Some(target) = spec.drill() else {
        return Err(format!(
            "it is a {} stage; drills verify {}",
            spec.name(),
            drillable_kinds()
        ));
    };
    target.drillable()?;
    Ok(target)
}

/// One file of the backup, as the backup recorded it.
#[derive(Debug, Clone)]
pub struct File {
    /// The source path the file was backed up from.
    pub source: PathBuf,
    /// Where its copy is once restored: relative to the restore's root (restic: the source
    /// path; git: the tree path), or absolute (rsync: in the destination itself).
    pub stored: PathBuf,
    pub size: u64,
    /// When it last changed, as the backup saw it (git: the commit time for files the newest
    /// commit changed, the parent's for the others); orders the "newest" part of the sample.
    pub mtime: Timestamp,
    /// git: the blob id the commit recorded. The live source counts as unchanged when it
    /// still hashes to it (git keeps no mtimes); `None`: when size and mtime are unchanged.
    pub git_blob: Option<gix::ObjectId>,
}

/// The newest backup of a target whose backups are files: its files and how to get them
/// back ([`verify_sample`]).
pub struct Backup<'a> {
    pub files: Vec<File>,
    pub taken: Option<Timestamp>,
    pub snapshot_id: Option<String>,
    /// For messages: "restic snapshot 1a2b3c4d", "/backup/home", "git commit 1a2b3c4d".
    pub label: String,
    pub restore: Box<dyn RestoreSample + 'a>,
}

/// How a drill gets a sample of a [`Backup`]'s files back.
pub trait RestoreSample {
    /// Gets `chosen` back under `scratch` (all of the backup when `everything`); returns the
    /// root the files' `stored` paths are relative to.
    fn restore(
        &self,
        chosen: &[File],
        everything: bool,
        scratch: &Path,
    ) -> Result<PathBuf, StageError>;
}

/// The private scratch directory restored files go to, under the state directory (never
/// /tmp: a unit's /tmp is private, `run --here`'s is shared), removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(ctx: &StageContext) -> Result<Self, StageError> {
        use std::os::unix::fs::DirBuilderExt;
        let parent = ctx.state_dir.join("drill");
        crate::paths::create_dir(&parent)
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
        // restic restores read-only directories as they were, and the drill's unit has no
        // CAP_DAC_OVERRIDE to remove what is in them.
        make_removable(&self.0);
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("drill: cannot remove {}: {error}", self.0.display());
        }
    }
}

/// Gives the owner `rwx` on `dir` and every directory below it (not following links), so
/// that the tree can be removed: removing an entry needs write and search on its directory.
fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !metadata.is_dir() {
        return;
    }
    let mode = metadata.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            make_removable(&entry.path());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_read_only_tree_is_made_removable() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = tempfile::tempdir().unwrap();
        let frozen = scratch.path().join("a/frozen");
        std::fs::create_dir_all(frozen.join("inner")).unwrap();
        std::fs::write(frozen.join("inner/file"), "x").unwrap();
        for dir in [frozen.join("inner"), frozen.clone()] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
        make_removable(scratch.path());
        for dir in [frozen.clone(), frozen.join("inner")] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        }
        std::fs::remove_dir_all(scratch.path().join("a")).unwrap();
    }

    fn file(name: &str, secs: i64) -> File {
        File {
            source: PathBuf::from(name),
            stored: PathBuf::from(name),
            size: 1,
            mtime: Timestamp::new(secs, 0).unwrap(),
            git_blob: None,
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
}
