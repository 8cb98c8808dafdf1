//! `exec`: run any command, the escape hatch (e.g. export notes, dump a database).

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Needs, Outcome, SpecError, StageError, StageKind, require_absolute};
use crate::process::Command;
use crate::process::ToolError;
use crate::stages::StageContext;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The argv; the first element is the program. No shell unless `shell = true`.
    pub command: Spanned<Vec<String>>,
    /// Run `command[0]` as a shell script with `/bin/sh -c` (then `command` has one element).
    #[serde(default)]
    pub shell: bool,
    pub working_directory: Option<Spanned<PathBuf>>,
    /// Paths the command writes; they become `ReadWritePaths=` in the hardened unit.
    #[serde(default)]
    pub writes: Vec<Spanned<PathBuf>>,
    /// The command needs the network (allows IP sockets in the unit).
    #[serde(default)]
    pub network: bool,
}

impl StageKind for Spec {
    const NAME: &'static str = "exec";

    fn validate(&self) -> Result<(), SpecError> {
        let command = self.command.get_ref();
        if command.is_empty() || command[0].is_empty() {
            return Err(SpecError::invalid(
                Some(self.command.span()),
                "`command` is empty",
                "give the program and its arguments, e.g. command = [\"/usr/local/bin/export-notes\", \"--to\", \"/data/notes\"]",
            ));
        }
        if self.shell && command.len() != 1 {
            return Err(SpecError::invalid(
                Some(self.command.span()),
                "with `shell = true`, `command` must be one string (the script)",
                "e.g. command = [\"pg_dump mydb | zstd > /data/db.sql.zst\"]",
            ));
        }
        require_absolute(&self.writes, "writes")?;
        if let Some(dir) = &self.working_directory {
            require_absolute(std::slice::from_ref(dir), "working_directory")?;
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        Needs {
            writes: self.writes.iter().map(|p| p.get_ref().clone()).collect(),
            network: self.network,
            // A shell script's text is in the config; /bin/sh comes from the system.
            trusted: if self.shell {
                vec![]
            } else {
                crate::needs::program_path(self.command.get_ref())
                    .into_iter()
                    .collect()
            },
            ..Needs::default()
        }
    }

    fn other_reads(&self) -> Vec<PathBuf> {
        let dir = self.working_directory.iter();
        dir.map(|dir| dir.get_ref().clone()).collect()
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let argv = self.command.get_ref();
        let mut command = if self.shell {
            Command::new("/bin/sh").args(["-c", &argv[0]])
        } else {
            Command::new(&argv[0]).args(&argv[1..])
        };
        if let Some(dir) = &self.working_directory {
            command = command.current_dir(dir.get_ref());
        }
        ctx.report.status(&format!("running {}", argv[0]));
        let mut read_only = false;
        let result = command
            .envs(&ctx.stage.environment)
            .on_line(|line| {
                read_only |= line.contains(EROFS_TEXT);
                ctx.log_output(line)
            })
            .run();
        match result {
            Ok(_) => Ok(Outcome::default()),
            Err(ToolError::Failed { tool, code, stderr })
                if read_only || stderr.contains(EROFS_TEXT) =>
            {
                let failed = ToolError::Failed { tool, code, stderr };
                Err(StageError::Failed(format!(
                    "{failed}\n{}",
                    read_only_hint(&ctx.stage.name, &self.needs().writes)
                )))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// How EROFS reads in a tool's output (strerror), whatever wrote it.
const EROFS_TEXT: &str = "Read-only file system";

/// What to do when the command wrote where its unit does not let it: the unit opens exactly
/// the `writes` paths (`ReadWritePaths=`), everything else is read-only
/// (`ProtectSystem=strict`).
pub fn read_only_hint(stage: &str, writes: &[PathBuf]) -> String {
    let allowed = if writes.is_empty() {
        "no path (no `writes`)".to_string()
    } else {
        writes
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "the command wrote to a read-only file system: under its unit (ProtectSystem=strict) \
         stage `{stage}` may write only {allowed} (`ReadWritePaths=` from `writes`); add the \
         path it writes to `writes` in [stage.{stage}] and run `backupctl generate` again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_an_exec_stage_writing_outside_writes_got_a_bare_read_only_error() {
        let hint = read_only_hint("dump", &[PathBuf::from("/srv/dumps")]);
        assert!(hint.contains("may write only /srv/dumps"), "{hint}");
        assert!(
            hint.contains("add the path it writes to `writes` in [stage.dump]"),
            "{hint}"
        );
        let none = read_only_hint("dump", &[]);
        assert!(
            none.contains("may write only no path (no `writes`)"),
            "{none}"
        );
    }
}
