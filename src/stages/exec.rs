//! `exec`: run any command, the escape hatch (e.g. export notes, dump a database).

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Kind, Needs, Outcome, SpecError, StageError, require_absolute};
use crate::executor::StageContext;
use crate::process::Command;

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

impl Kind for Spec {
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
            ..Needs::default()
        }
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
        command
            .envs(&ctx.stage.environment)
            .on_line(|line| ctx.log_output(line))
            .run()?;
        Ok(Outcome::default())
    }
}
