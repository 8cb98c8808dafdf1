//! `tar`, an example kind written as a new kind is: this one file, with its keys and one
//! `impl StageKind` that includes `restore`. It is compiled for the tests only and not in
//! [`super::KINDS`]; CONTRIBUTING.md shows the two lines that would make it a kind of
//! backupctl. The tests below run it through the registry's [`Entry`] and the
//! kind-erased [`AnyKind`], exactly as the config loader and the commands do.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Deserialize;
use toml::Spanned;

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
        for other in [
            Capability::History,
            Capability::Snapshots,
            Capability::Mount,
            Capability::Drill,
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
            )
            .unwrap_err();
        assert!(matches!(error, SpecError::Toml(_)), "{error:?}");
        let error = TAR
            .parse(
                table("sources = [\"/a\"]\narchive = \"/a.tar\"\n"),
                Some(Path::new("/mnt/store")),
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
        config.stages[0].kind = TAR
            .parse(
                table(&format!(
                    "sources = [\"{}\"]\narchive = \"{}\"\n",
                    source.display(),
                    archive.display()
                )),
                None,
            )
            .unwrap();
        let stage = &config.stages[0];
        assert_eq!(stage.kind.name(), "tar");
        assert_eq!(stage.kind.needs().tools, ["tar"]);
        assert_eq!(stage.kind.needs().sources, std::slice::from_ref(&source));
        assert_eq!(stage.kind.clone(), stage.kind, "compares as its Spec does");

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
        };
        stage.kind.run(&ctx).unwrap();
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
        let code = stage.kind.restore(&verb, &args).expect("tar restores");
        assert_eq!(code.unwrap(), ExitCode::SUCCESS);
        let restored = target.join(source.strip_prefix("/").unwrap()).join("a.md");
        assert_eq!(std::fs::read_to_string(restored).unwrap(), "hello\n");

        let history = crate::stages::verbs::HistoryArgs {
            path: None,
            json: false,
        };
        assert!(stage.kind.history(&verb, &history).is_none());
    }
}
