//! What every command gets from the command line besides its own arguments: the scope
//! (`--user`), the config's path (`--config`, `$BACKUPCTL_CONFIG` or the scope's default) and
//! the config itself, loaded on first use. `cli` builds it; the commands never see clap's
//! `Cli`, so `commands` does not depend on `cli`.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, Job, Stage};
use crate::paths::Scope;
use crate::stages::verbs::VerbContext;
use crate::stages::{self, Capability};

/// The resolved global options of one invocation.
#[derive(Debug)]
pub struct Context {
    scope: Scope,
    config_path: PathBuf,
    /// Loaded by [`Context::config`]: `man`, `completions`, `verify`, `watch` and
    /// `prepare-paths` work without a config, and each command that needs one loads it at
    /// the point where it always did (`umount` asks for root first).
    config: OnceCell<Config>,
}

impl Context {
    pub fn new(scope: Scope, config_path: PathBuf) -> Self {
        Context {
            scope,
            config_path,
            config: OnceCell::new(),
        }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config, loaded on the first call; its error already says file, line, column and
    /// what to do. A failed load is not kept: the next call tries again.
    pub fn config(&self) -> Result<&Config, ConfigError> {
        if let Some(config) = self.config.get() {
            return Ok(config);
        }
        let config = Config::load(&self.config_path)?;
        Ok(self.config.get_or_init(|| config))
    }

    /// The job named on the command line; the error (a usage error, exit 2) lists the
    /// config's jobs.
    pub fn job(&self, name: &str) -> anyhow::Result<&Job> {
        let config = self.config()?;
        config.job(name).ok_or_else(|| {
            let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
            crate::exit::usage(format_args!(
                "no job `{name}` in {}; its jobs are: {}",
                config.file.display(),
                names.join(", ")
            ))
        })
    }

    /// The stage named on the command line; the error (a usage error, exit 2) lists the
    /// config's stages.
    pub fn stage(&self, name: &str) -> anyhow::Result<&Stage> {
        let config = self.config()?;
        config.stage(name).ok_or_else(|| {
            let names: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
            crate::exit::usage(format_args!(
                "no stage `{name}` in {}; its stages are: {}",
                config.file.display(),
                names.join(", ")
            ))
        })
    }

    /// What a kind's restore/history/snapshots/mount gets: the stage, and where we run.
    pub fn verb<'s>(&self, stage: &'s Stage) -> VerbContext<'s> {
        VerbContext {
            stage: &stage.name,
            scope: self.scope,
        }
    }
}

/// The error (a usage error, exit 2) of a command whose verb the stage's kind does not
/// have; it names the kinds that do, from the registry.
pub fn unsupported(capability: Capability, stage: &Stage) -> anyhow::Error {
    let verb = capability.verb();
    crate::exit::usage(format_args!(
        "`{verb}` works on {} stages; `{}` is a stage of kind {}",
        stages::that_can(capability),
        stage.name,
        stage.spec.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_with(text: &str) -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, Context::new(Scope::User, path))
    }

    /// The exit class a command's error carries (`cli::exit_code` walks the same chain).
    fn class(error: &anyhow::Error) -> Option<crate::exit::Class> {
        error.chain().find_map(crate::exit::class_of)
    }

    const TWO_STAGES: &str = "[stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\
                              [stage.b]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n";

    #[test]
    fn the_config_is_read_only_when_asked_for() {
        let ctx = Context::new(Scope::System, PathBuf::from("/nonexistent/backupctl.toml"));
        assert_eq!(ctx.scope(), Scope::System);
        assert_eq!(ctx.config_path(), Path::new("/nonexistent/backupctl.toml"));
        let error = ctx.config().unwrap_err().to_string();
        assert!(error.contains("cannot read the config"), "{error}");
    }

    #[test]
    fn the_config_is_loaded_once() {
        let (dir, ctx) = context_with(TWO_STAGES);
        let first: *const Config = ctx.config().unwrap();
        std::fs::remove_file(dir.path().join("config.toml")).unwrap();
        let second: *const Config = ctx.config().unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn an_unknown_stage_or_job_is_a_usage_error_listing_the_names() {
        let (_dir, ctx) = context_with(TWO_STAGES);
        assert_eq!(ctx.stage("b").unwrap().name, "b");
        let error = ctx.stage("c").unwrap_err();
        assert_eq!(class(&error), Some(crate::exit::Class::Usage));
        let text = error.to_string();
        assert!(text.starts_with("no stage `c` in "), "{text}");
        assert!(text.ends_with("; its stages are: a, b"), "{text}");
        let error = ctx.job("nightly").unwrap_err();
        assert_eq!(class(&error), Some(crate::exit::Class::Usage));
        assert!(error.to_string().starts_with("no job `nightly` in "));
    }

    #[test]
    fn a_missing_capability_names_the_kinds_that_have_it() {
        let (_dir, ctx) = context_with(TWO_STAGES);
        let stage = ctx.stage("a").unwrap();
        assert_eq!(ctx.verb(stage).stage, "a");
        let error = unsupported(Capability::History, stage);
        assert_eq!(class(&error), Some(crate::exit::Class::Usage));
        assert_eq!(
            error.to_string(),
            "`history` works on git stages; `a` is a stage of kind exec"
        );
    }
}
