//! `tar`, an example kind written as a new kind is: this one file, with its keys, one
//! `impl StageKind` that includes `restore`, and `impl Drillable` (a `drill` stage can
//! verify its archive). It is compiled for the tests only and not in
//! [`super::KINDS`]; CONTRIBUTING.md shows the two lines that would make it a kind of
//! backupctl. The tests below run it through the registry's [`Entry`] and the
//! kind-erased [`AnyKind`], exactly as the config loader and the commands do.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use toml::Spanned;

use super::drill::{self, Backup, Drill, DrillContext, Drillable, File, RestoreSample};
use super::verbs::{RestoreArgs, Verb, VerbContext};
use super::{Needs, Outcome, SpecError, StageContext, StageError, StageKind, require_absolute};
use crate::process::Command;

/// `[stage.NAME] kind = "tar"`: the sources, archived into one file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub sources: Vec<Spanned<PathBuf>>,
    /// The archive written by each run (replaced).
    pub archive: Spanned<PathBuf>,
}

impl Spec {
    /// `backupctl restore STAGE --target DIR`: the archive unpacked into DIR, each source
    /// under DIR/<its absolute path>.
    fn extract(&self, _: &VerbContext, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
        std::fs::create_dir_all(&args.target)?;
        Command::new("tar")
            .arg("-xf")
            .arg(self.archive.get_ref())
            .arg("-C")
            .arg(&args.target)
            .args(args.include.iter().map(|path| path.trim_start_matches('/')))
            .run()?;
        Ok(ExitCode::SUCCESS)
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "tar";
    const READS_LOCAL_SOURCES: bool = true;
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(Self::extract);
    const DRILL: Option<Drill<Self>> = Some(Drill::of("a tar stage"));

    fn validate(&self) -> Result<(), SpecError> {
        require_absolute(&self.sources, "sources")?;
        require_absolute(std::slice::from_ref(&self.archive), "archive")
    }

    fn needs(&self) -> Needs {
        let archive = self.archive.get_ref();
        Needs {
            writes: archive.parent().map(PathBuf::from).into_iter().collect(),
            tools: vec!["tar"],
            sources: self.sources.iter().map(|s| s.get_ref().clone()).collect(),
            ..Needs::default()
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        ctx.report.status("tar: archiving");
        // Relative to / so that tar stores the paths without warning about the leading /.
        let relative = self.sources.iter().map(|source| {
            source
                .get_ref()
                .strip_prefix("/")
                .unwrap_or(source.get_ref())
        });
        Command::new("tar")
            .arg("-cf")
            .arg(self.archive.get_ref())
            .arg("-C")
            .arg("/")
            .args(relative)
            .on_line(|line| ctx.log_output(line))
            .run()?;
        Ok(Outcome::default())
    }
}

/// A drill of the archive: unpacked whole into the scratch directory, then a sample of its
/// files compared byte for byte with the sources (`drill::verify_sample`).
impl Drillable for Spec {
    /// tar, the archive and the sources to compare with (the drill drops the writes).
    fn drill_needs(&self) -> Needs {
        StageKind::needs(self)
    }

    fn drill(&self, ctx: &DrillContext) -> Result<Outcome, StageError> {
        let archive = self.archive.get_ref();
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(ctx.scratch)
            .run()?;
        let mut files = Vec::new();
        unpacked_files(ctx.scratch, Path::new(""), &mut files)
            .map_err(|e| StageError::io("cannot list the unpacked archive", e))?;
        let taken = std::fs::metadata(archive)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|time| jiff::Timestamp::try_from(time).ok());
        let backup = Backup {
            files,
            taken,
            snapshot_id: None,
            label: archive.display().to_string(),
            restore: Box::new(Unpacked),
        };
        drill::verify_sample(ctx, backup)
    }
}

/// The whole archive is already unpacked in the scratch directory.
struct Unpacked;

impl RestoreSample for Unpacked {
    fn restore(&self, _: &[File], _: bool, scratch: &Path) -> Result<PathBuf, StageError> {
        Ok(scratch.to_path_buf())
    }
}

/// Every regular file under `root/relative`; tar stored each source under its absolute path.
fn unpacked_files(root: &Path, relative: &Path, out: &mut Vec<File>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let stored = relative.join(entry.file_name());
        let meta = entry.metadata()?;
        if meta.is_dir() {
            unpacked_files(root, &stored, out)?;
        } else if meta.is_file()
            && let Ok(mtime) = jiff::Timestamp::try_from(meta.modified()?)
        {
            out.push(File {
                source: Path::new("/").join(&stored),
                stored,
                size: meta.len(),
                mtime,
                git_blob: None,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use toml::de::DeTable;

    use super::*;
    use crate::paths::Scope;
    use crate::report::Reporter;
    use crate::stage_lock::StageLock;
    use crate::stages::{Capability, Entry};

    /// The registry entry the two lines of CONTRIBUTING.md would add.
    static TAR: Entry = Entry::of::<Spec>();

    fn table(text: &str) -> Spanned<DeTable<'_>> {
        DeTable::parse(text).unwrap()
    }

    #[test]
    fn the_tar_entry_knows_its_name_and_capabilities_from_its_impl() {
        assert_eq!(TAR.name, "tar");
        assert!(TAR.reads_local_sources);
        assert!(TAR.can(Capability::Restore));
        assert!(TAR.can(Capability::Drill));
        assert_eq!(TAR.drill_what(), Some("a tar stage"));
        for other in [
            Capability::History,
            Capability::Snapshots,
            Capability::Mount,
        ] {
            assert!(!TAR.can(other), "{other:?}");
        }
    }

    #[test]
    fn the_tar_entry_parses_and_checks_its_keys() {
        let error = TAR
            .parse(
                table("sources = [\"relative\"]\narchive = \"/a.tar\"\n"),
                None,
                &[],
            )
            .unwrap_err();
        assert!(
            matches!(&error, SpecError::Invalid { message, .. } if message.contains("`sources` needs absolute paths")),
            "{error:?}"
        );
        let error = TAR
            .parse(
                table("sources = [\"/a\"]\narchive = \"/a.tar\"\ncolor = 1\n"),
                None,
                &[],
            )
            .unwrap_err();
        assert!(matches!(error, SpecError::Toml(_)), "{error:?}");
        let error = TAR
            .parse(
                table("sources = [\"/a\"]\narchive = \"/a.tar\"\n"),
                Some(Path::new("/mnt/store")),
                &[],
            )
            .unwrap_err();
        assert!(
            matches!(&error, SpecError::Invalid { message, .. } if message.contains("cannot write into a store")),
            "{error:?}"
        );
    }

    /// A whole life of the example kind, dispatched as `backupctl stage` and `backupctl
    /// restore` dispatch: run (real tar), then restore into a new directory.
    #[test]
    fn a_tar_stage_runs_and_restores_through_the_kind_erased_spec() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let source = dir.join("notes");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("a.md"), "hello\n").unwrap();
        let archive = dir.join("out/notes.tar");
        std::fs::create_dir_all(archive.parent().unwrap()).unwrap();

        // A config whose one stage is then given the tar spec (the loader knows only KINDS).
        let mut config = crate::config::parse(
            &dir.join("config.toml"),
            "[stage.notes]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        config.stages[0].spec = TAR
            .parse(
                table(&format!(
                    "sources = [\"{}\"]\narchive = \"{}\"\n",
                    source.display(),
                    archive.display()
                )),
                None,
                &[],
            )
            .unwrap();
        let stage = &config.stages[0];
        assert_eq!(stage.spec.name(), "tar");
        assert_eq!(stage.spec.needs().tools, ["tar"]);
        assert_eq!(stage.spec.needs().sources, std::slice::from_ref(&source));
        assert_eq!(stage.spec.clone(), stage.spec, "compares as its Spec does");

        let state_dir = dir.join("state");
        let lock = StageLock::try_acquire(&state_dir, "notes", Scope::User, "test").unwrap();
        let report = Reporter::new("notes", Vec::new());
        let ctx = StageContext {
            config: &config,
            stage,
            scope: Scope::User,
            state_dir: state_dir.clone(),
            report: &report,
            run_id: crate::stages::new_id(),
            lock: &lock,
            repositories: &crate::repo_lock::RepositoryLocks::new(crate::repo_lock::Requester {
                state_dir: state_dir.clone(),
                stage: "notes".into(),
                job: "job".into(),
                wait: crate::repo_lock::DEFAULT_WAIT,
            }),
        };
        stage.spec.run(&ctx).unwrap();
        assert!(archive.is_file());

        let target = dir.join("restored");
        let verb = VerbContext {
            stage: "notes",
            scope: Scope::User,
        };
        let args = RestoreArgs {
            target: target.clone(),
            snapshot: "latest".into(),
            commit: "HEAD".into(),
            include: Vec::new(),
            verify: false,
            ..RestoreArgs::default()
        };
        let code = stage.spec.restore(&verb, &args).expect("tar restores");
        assert_eq!(code.unwrap(), ExitCode::SUCCESS);
        let restored = target.join(source.strip_prefix("/").unwrap()).join("a.md");
        assert_eq!(std::fs::read_to_string(restored).unwrap(), "hello\n");

        let history = crate::stages::verbs::HistoryArgs {
            path: None,
            json: false,
        };
        assert!(stage.spec.history(&verb, &history).is_none());
    }

    /// A drill of a tar stage through the capability, as a `drill` stage runs it: the
    /// archive verifies against its sources, and a source changed in place (same size and
    /// mtime, other bytes) is a mismatch that fails the drill.
    #[test]
    fn a_drill_of_a_tar_stage_verifies_the_archive_and_finds_a_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let source = dir.join("notes");
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::write(source.join("a.md"), "hello\n").unwrap();
        std::fs::write(source.join("sub/b.md"), "world\n").unwrap();
        let archive = dir.join("notes.tar");
        let text = "[stage.notes]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
                    [stage.drill]\nkind = \"drill\"\nstage = \"notes\"\n";
        let error = crate::config::parse(&dir.join("config.toml"), text).unwrap_err();
        assert!(error.message.contains("cannot be drilled"), "{error}");
        let mut config = crate::config::parse(
            &dir.join("config.toml"),
            "[stage.notes]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        config.stages[0].spec = TAR
            .parse(
                table(&format!(
                    "sources = [\"{}\"]\narchive = \"{}\"\n",
                    source.display(),
                    archive.display()
                )),
                None,
                &[],
            )
            .unwrap();
        let mut drill: crate::stages::drill::Spec = toml::from_str("stage = \"notes\"").unwrap();
        let stages = vec![("notes".to_string(), config.stages[0].spec.clone())];
        StageKind::resolve(&mut drill, &stages).unwrap();
        assert_eq!(StageKind::needs(&drill).tools, ["tar"]);
        assert!(StageKind::needs(&drill).writes.is_empty());

        let state_dir = dir.join("state");
        let lock = StageLock::try_acquire(&state_dir, "notes", Scope::User, "test").unwrap();
        let report = Reporter::new("notes", Vec::new());
        let ctx = StageContext {
            config: &config,
            stage: &config.stages[0],
            scope: Scope::User,
            state_dir: state_dir.clone(),
            report: &report,
            run_id: crate::stages::new_id(),
            lock: &lock,
            repositories: &crate::repo_lock::RepositoryLocks::new(crate::repo_lock::Requester {
                state_dir: state_dir.clone(),
                stage: "notes".into(),
                job: "job".into(),
                wait: crate::repo_lock::DEFAULT_WAIT,
            }),
        };
        config.stages[0].spec.run(&ctx).unwrap();
        let outcome = StageKind::run(&drill, &ctx).unwrap();
        assert_eq!(outcome.figures.files, Some(2));
        assert_eq!(outcome.figures.mismatches, Some(0));

        let changed = source.join("sub/b.md");
        let mtime = std::fs::metadata(&changed).unwrap().modified().unwrap();
        std::fs::write(&changed, "WORLD\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&changed)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let error = StageKind::run(&drill, &ctx).unwrap_err();
        assert_eq!(
            error.figures().and_then(|f| f.mismatches),
            Some(1),
            "{error}"
        );
        assert!(error.to_string().contains("sub/b.md"), "{error}");
    }
}
