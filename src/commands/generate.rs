//! `backupctl generate`: write the units of the config; and the same as a systemd generator.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::commands::Context;
use crate::config::{self, Config};
use crate::generator::{self, Content, Options};
use crate::outln;
use crate::paths::Scope;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write into (default: /etc/systemd/system, or ~/.config/systemd/user with --user).
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The backupctl path to put in ExecStart= (default: $BACKUPCTL_BINARY, else this binary).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Print the units instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
}

/// The variable that names the binary the units call, when the one running is not it: a
/// wrapper (Nix's `wrapProgram`) runs the real binary under another name and sets it, so that
/// the units call the wrapper with its `PATH`, not the bare binary behind it.
pub const BINARY_VARIABLE: &str = "BACKUPCTL_BINARY";

/// The binary the units call: `$BACKUPCTL_BINARY` when it is an absolute path, else the one
/// running, as a canonical absolute path.
pub(crate) fn this_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BINARY_VARIABLE)
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
    {
        return path;
    }
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/backupctl"))
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let scope = ctx.scope();
    let options = Options {
        scope,
        binary: args.binary.clone().unwrap_or_else(this_binary),
    };
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| crate::paths::unit_dir(scope));
    let config = match usable(ctx, &options) {
        Ok(config) => config,
        Err(error) if args.dry_run => return Err(error),
        Err(error) => {
            // What the generator does at boot, so that units written here fail as visibly.
            let files =
                generator::config_error::render(ctx.config_path(), &format!("{error:#}"), &options);
            generator::write::write_units(&dir, &files)
                .with_context(|| format!("writing units into {}", dir.display()))?;
            outln!(
                "wrote only {} to {}: no backup runs until the config is fixed",
                crate::units::CONFIG_ERROR_SERVICE,
                dir.display()
            )?;
            return Err(error);
        }
    };
    let files = generator::render(config, &options);
    if args.dry_run {
        let mut out = crate::out::Buffered::new();
        for file in &files {
            match &file.content {
                Content::Text(text) => writeln!(out, "### {}\n{text}", file.path.display())?,
                Content::Symlink(target) => {
                    writeln!(out, "### {} -> {}\n", file.path.display(), target.display())?
                }
            }
        }
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let written = generator::write::write_units(&dir, &files)
        .with_context(|| format!("writing units into {}", dir.display()))?;
    outln!(
        "wrote {} files to {} ({} unchanged)",
        written.files.len(),
        dir.display(),
        written.unchanged
    )?;
    for removed in &written.removed {
        outln!("removed {} (no longer in the config)", removed.display())?;
    }
    let user = if scope == Scope::User { " --user" } else { "" };
    outln!(
        "next: systemctl{user} daemon-reload && systemctl{user} start {}",
        crate::units::job_service(config::DEFAULT_JOB)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The config, loaded and checked for everything the units need: the error is any load
/// error (syntax, validation, an unreadable or unsafe file) or a path the units cannot hold.
fn usable<'a>(ctx: &'a Context, options: &Options) -> anyhow::Result<&'a Config> {
    let config = ctx.config()?;
    generator::check_paths(config, options)?;
    generator::sandbox::check(config, Some(&options.binary))?;
    Ok(config)
}

/// Entry point when systemd runs us as a generator (`DIR [EARLY LATE]`). Writes into the
/// first directory. A missing config means no units; a bad config is logged and only the unit
/// that fails with its error is written; in both cases we exit 0 so the boot goes on.
pub fn as_systemd_generator(argv0: &OsString, dirs: &[PathBuf]) -> ExitCode {
    let scope = match std::env::var("SYSTEMD_SCOPE").as_deref() {
        Ok("user") => Scope::User,
        Ok(_) => Scope::System,
        Err(_) if argv0.to_string_lossy().contains("user-generators") => Scope::User,
        Err(_) => Scope::System,
    };
    let path = std::env::var_os("BACKUPCTL_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| config::default_path(scope));
    if !path.exists() {
        return ExitCode::SUCCESS;
    }
    let options = Options {
        scope,
        binary: this_binary(),
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => return config_error(&dirs[0], &path, &error.to_string(), &options),
    };
    if let Err(error) = generator::check_paths(&config, &options) {
        return config_error(&dirs[0], &path, &error.to_string(), &options);
    }
    if let Err(error) = generator::sandbox::check(&config, Some(&options.binary)) {
        let error = format!("config not usable by the units: {error}");
        return config_error(&dirs[0], &path, &error, &options);
    }
    let files = generator::render(&config, &options);
    match generator::write::write_units(&dirs[0], &files) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            log_boot(scope, &error.to_string());
            ExitCode::FAILURE
        }
    }
}

/// A config that does not load: its error goes to the kernel log, and the unit set is the
/// one unit that fails with it at boot (see `generator::config_error`). Exit 0 either way:
/// a generator never fails the boot.
fn config_error(dir: &Path, path: &Path, error: &str, options: &Options) -> ExitCode {
    log_boot(
        options.scope,
        &format!(
            "invalid config, only {} generated: {error}",
            crate::units::CONFIG_ERROR_SERVICE
        ),
    );
    let files = generator::config_error::render(path, error, options);
    if let Err(error) = generator::write::write_units(dir, &files) {
        log_boot(options.scope, &error.to_string());
    }
    ExitCode::SUCCESS
}

/// Journald may not run yet when system generators do: system scope logs to the kernel log.
fn log_boot(scope: Scope, message: &str) {
    let kmsg = Path::new("/dev/kmsg");
    if scope == Scope::System
        && let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open(kmsg)
    {
        for line in message.lines() {
            // <3> = error priority.
            let _ = writeln!(kmsg, "<3>backupctl-generator: {line}");
        }
        return;
    }
    eprintln!("backupctl-generator: {message}");
}
