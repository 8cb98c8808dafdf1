//! `sqlite`: consistent copies of SQLite databases while their programs use them, and their
//! restore.
//!
//! Never a copy of the live file (a copy taken mid-write may not open): `VACUUM INTO` reads
//! the database in one read transaction and writes a new, compacted file, which is then
//! checked with `PRAGMA quick_check` before it goes to its destination ([`super::dump`]:
//! a restic repository or a directory, replaced atomically). `VACUUM INTO` needs a file, so
//! into restic the copy goes through a scratch file in the state directory.
//!
//! The unit may write in each database's directory: a reader of a database in WAL mode
//! writes its `-shm` index.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use toml::Spanned;

use super::dump::{self, Destination, Sink};
use super::restic;
use super::verbs::{Listing, RestoreArgs, SnapshotsArgs, Verb, VerbContext};
use super::{KindSpec, Needs, Outcome, SpecError, StageContext, StageError, StageKind};
use crate::process::{Command, ToolError};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The database files.
    pub databases: Vec<Spanned<PathBuf>>,
    /// Queries whose answers at dump time are recorded with the dump; a drill asks the
    /// restored database again and compares.
    #[serde(default = "dump::no_checks")]
    pub checks: Spanned<Vec<String>>,
    /// Write the copies into this directory (a later stage copies it).
    pub directory: Option<Spanned<PathBuf>>,
    /// Stream the copies into the repository of this restic stage.
    pub restic: Option<Spanned<String>>,
    /// The restic stage `restic` names, once resolved.
    #[serde(skip)]
    pub repository: Option<Box<restic::Spec>>,
}

/// The name a database's copy is stored under: its file name.
fn dump_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Spec {
    fn destination(&self) -> Option<Destination<'_>> {
        if let Some(dir) = &self.directory {
            return Some(Destination::Directory(dir.get_ref()));
        }
        self.repository.as_deref().map(Destination::Restic)
    }

    /// `restore STAGE --database NAME (--into FILE | --target DIR)`.
    fn restore(&self, ctx: &VerbContext, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
        let destination = self
            .destination()
            .ok_or_else(|| anyhow::anyhow!("the stage's restic stage is not resolved"))?;
        let Some(wanted) = &args.database else {
            return Err(crate::exit::usage(
                "name the database to restore: --database NAME (its file name)",
            ));
        };
        let dumps = dump::list(destination, ctx.stage, dump::Access::command(ctx.scope))?;
        let found = dump::find(&dumps, wanted, &args.snapshot)?;
        let target = match (&args.into, args.target.as_os_str().is_empty()) {
            (Some(into), _) => PathBuf::from(into),
            (None, false) => args.target.join(&found.name),
            (None, true) => {
                return Err(crate::exit::usage(
                    "say where the database goes: --into FILE (or --target DIR)",
                ));
            }
        };
        let occupied = target.metadata().is_ok_and(|m| m.len() > 0);
        if occupied && !args.replace {
            return Err(crate::exit::usage(format!(
                "{} exists and is not empty; restore into another file, or replace it with --replace",
                target.display()
            )));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let partial = target.with_file_name(format!(".{}.partial", dump_name(&target)));
        let mut write = std::process::Command::new("dd");
        write
            .arg(format!("of={}", partial.display()))
            .arg("status=none");
        if let Err(error) =
            dump::load_into(destination, found, dump::Access::command(ctx.scope), write)
        {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
        check(&partial).map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::rename(&partial, &target)?;
        crate::outln!("restored {} into {}", found.name, target.display())?;
        Ok(ExitCode::SUCCESS)
    }

    fn snapshots(&self, ctx: &VerbContext, _: &SnapshotsArgs) -> anyhow::Result<Listing> {
        let destination = self
            .destination()
            .ok_or_else(|| anyhow::anyhow!("the stage's restic stage is not resolved"))?;
        dump::print(&dump::list(
            destination,
            ctx.stage,
            dump::Access::command(ctx.scope),
        )?)?;
        Ok(Listing::Done(ExitCode::SUCCESS))
    }
}

/// `PRAGMA quick_check` of a copy: "ok", or the copy is refused.
fn check(path: &Path) -> Result<(), StageError> {
    let mut answer = Vec::new();
    Command::new("sqlite3")
        .args(["-bail", "-readonly"])
        .arg(path)
        .arg("PRAGMA quick_check;")
        .on_line(|line| answer.push(line.to_string()))
        .run()?;
    if answer != ["ok"] {
        return Err(StageError::Failed(format!(
            "the copy {} fails its integrity check: {}",
            path.display(),
            answer.join(" / ")
        )));
    }
    Ok(())
}

/// A drill of an sqlite stage: each database's newest copy fetched into the scratch
/// directory and checked with `PRAGMA integrity_check`; how long getting it back took is
/// logged (the recovery time to plan with). A copy that does not come back whole fails the
/// drill, naming the database.
impl super::drill::Drillable for Spec {
    fn drill_needs(&self) -> Needs {
        let mut needs = dump::destination_needs(self.destination());
        needs.writes.clear();
        needs.tools.push("sqlite3");
        needs
    }

    fn drill(&self, ctx: &super::drill::DrillContext) -> Result<Outcome, StageError> {
        let destination = self
            .destination()
            .ok_or_else(|| StageError::Failed("the stage's restic stage is not resolved".into()))?;
        let target = ctx.drill.stage.get_ref();
        let dumps = dump::list(destination, target, dump::Access::drill(ctx.stage.scope))
            .map_err(|e| StageError::Failed(format!("listing the copies of {target}: {e:#}")))?;
        let started = std::time::Instant::now();
        let mut bytes = 0;
        for database in &self.databases {
            let name = dump_name(database.get_ref());
            ctx.stage
                .report
                .status(&format!("drill: restoring {name} of {target}"));
            let found = dump::find(&dumps, &name, "latest")
                .map_err(|e| StageError::Failed(format!("database {name}: {e:#}")))?;
            let copy = ctx.scratch.join(&name);
            let mut write = std::process::Command::new("dd");
            write
                .arg(format!("of={}", copy.display()))
                .arg("status=none");
            dump::load_into(
                destination,
                found,
                dump::Access::drill(ctx.stage.scope),
                write,
            )
            .map_err(|e| StageError::Failed(format!("database {name}: {e:#}")))?;
            full_check(&copy).map_err(|e| StageError::Failed(format!("database {name}: {e}")))?;
            dump::check_answers(
                &name,
                destination,
                &dumps,
                found,
                dump::Access::drill(ctx.stage.scope),
                |sql| ask(&copy, sql),
            )?;
            bytes += copy.metadata().map(|m| m.len()).unwrap_or_default();
        }
        let took = started.elapsed();
        tracing::info!(
            backupctl_restore_seconds = took.as_secs_f64(),
            "drill: {} database(s) of {target} restored and checked in {}",
            self.databases.len(),
            crate::report::short_duration(took)
        );
        Ok(Outcome {
            warnings: Vec::new(),
            figures: crate::report::Figures {
                restore_seconds: Some(took.as_secs_f64()),
                files: Some(self.databases.len() as u64),
                bytes_read: Some(bytes),
                ..crate::report::Figures::default()
            },
        })
    }
}

/// The rows one query of `checks` answers in the database file `path`, one line each.
fn ask(path: &Path, sql: &str) -> anyhow::Result<Vec<String>> {
    let output = std::process::Command::new("sqlite3")
        .args(["-bail", "-readonly", "-batch"])
        .arg(path)
        .arg(sql)
        .stdin(std::process::Stdio::null())
        .output()?;
    dump::client_rows(output)
}

/// `PRAGMA integrity_check` (the full one, for the drill): "ok", or the copy is refused.
fn full_check(path: &Path) -> Result<(), StageError> {
    let mut answer = Vec::new();
    Command::new("sqlite3")
        .args(["-bail", "-readonly"])
        .arg(path)
        .arg("PRAGMA integrity_check;")
        .on_line(|line| answer.push(line.to_string()))
        .run()
        .map_err(|e| StageError::Failed(format!("the restored copy does not open: {e}")))?;
    if answer != ["ok"] {
        return Err(StageError::Failed(format!(
            "the restored copy fails its integrity check: {}",
            answer.join(" / ")
        )));
    }
    Ok(())
}

impl StageKind for Spec {
    const NAME: &'static str = "sqlite";
    const DRILL: Option<super::drill::Drill<Self>> =
        Some(super::drill::Drill::of("an sqlite stage"));
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(Self::restore);
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = Some(Self::snapshots);

    fn validate(&self) -> Result<(), SpecError> {
        dump::validate_destination(&self.directory, &self.restic)?;
        dump::validate_checks(&self.checks)?;
        if self.databases.is_empty() {
            return Err(SpecError::invalid(
                None,
                "`databases` is empty",
                "list the database files, e.g. databases = [\"/var/lib/app/app.db\"]",
            ));
        }
        super::require_absolute(&self.databases, "databases")?;
        for (i, database) in self.databases.iter().enumerate() {
            let name = dump_name(database.get_ref());
            if self.databases[..i]
                .iter()
                .any(|other| dump_name(other.get_ref()) == name)
            {
                return Err(SpecError::invalid(
                    Some(database.span()),
                    format!("two databases are called {name}: their copies would collide"),
                    "back them up in two stages",
                ));
            }
        }
        Ok(())
    }

    fn resolve(&mut self, stages: &[(String, KindSpec)]) -> Result<(), SpecError> {
        self.repository = dump::resolve_restic(self.restic.as_ref(), stages)?;
        Ok(())
    }

    fn repositories(&self) -> Vec<crate::repo_lock::RepositoryUse> {
        dump::repositories(self.destination())
    }

    fn needs(&self) -> Needs {
        let mut needs = Needs {
            tools: vec!["sqlite3"],
            // A WAL database's readers write its -shm index.
            writes: self
                .databases
                .iter()
                .filter_map(|db| db.get_ref().parent().map(Path::to_path_buf))
                .collect(),
            ..Needs::default()
        };
        needs.merge(dump::destination_needs(self.destination()));
        needs
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let destination = self
            .destination()
            .ok_or_else(|| StageError::Failed("the stage's restic stage is not resolved".into()))?;
        let mut sink = Sink::open(destination, ctx, Self::NAME, &dump::local_host())?;
        for database in &self.databases {
            let source = database.get_ref();
            ctx.report
                .status(&format!("sqlite: copying {}", source.display()));
            if !source.is_file() {
                return Err(StageError::Failed(format!(
                    "the database {} does not exist",
                    source.display()
                )));
            }
            let name = dump_name(source);
            // Asked of the copy: the answers are exactly the stored database's.
            let mut answers = Vec::new();
            sink.write_with(&name, |copy| {
                Command::new("sqlite3")
                    .args(["-bail", "-readonly"])
                    .arg(source)
                    .arg(format!("VACUUM INTO {};", literal(&copy.to_string_lossy())))
                    .on_line(|line| ctx.log_output(line))
                    .run()
                    .map_err(|error| match error {
                        // Stopped (systemctl stop, a shutdown): not a failed copy.
                        ToolError::Interrupted => StageError::Interrupted,
                        other => {
                            StageError::Failed(format!("copying {}: {other}", source.display()))
                        }
                    })?;
                check(copy)?;
                answers = dump::ask_checks(&name, self.checks.get_ref(), |sql| ask(copy, sql))?;
                Ok(())
            })?;
            if !answers.is_empty() {
                sink.store_answers(&name, answers)?;
            }
        }
        Ok(Outcome {
            warnings: Vec::new(),
            figures: sink.figures(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_its_keys() {
        let spec = |text: &str| -> Result<Spec, String> {
            let spec: Spec = toml::from_str(text).map_err(|e| e.to_string())?;
            spec.validate().map(|()| spec).map_err(|e| match e {
                SpecError::Invalid { message, .. } | SpecError::Conflict { message, .. } => message,
                SpecError::Toml(e) => e.to_string(),
            })
        };
        let ok =
            spec("databases = [\"/srv/app/app.db\"]\ndirectory = \"/var/backups/db\"").unwrap();
        assert_eq!(
            ok.needs().writes,
            [PathBuf::from("/srv/app"), PathBuf::from("/var/backups/db")]
        );
        for (text, expected) in [
            ("databases = []\ndirectory = \"/d\"", "is empty"),
            ("databases = [\"app.db\"]\ndirectory = \"/d\"", "absolute"),
            (
                "databases = [\"/a/x.db\", \"/b/x.db\"]\ndirectory = \"/d\"",
                "collide",
            ),
            ("databases = [\"/a/x.db\"]", "needs `directory` or `restic`"),
        ] {
            let error = spec(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
