//! The command line: flag definitions (also the source of `--help`, the man page and the
//! shell completions), the generator entry point, and dispatch to `crate::commands`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands;
use crate::config;
use crate::paths::Scope;

/// systemd-native backups: generate units from a TOML config and run their stages.
#[derive(Debug, Parser)]
#[command(
    name = "backupctl",
    version,
    about,
    long_about = "backupctl turns a TOML description of a backup job into systemd units \
(backup-job.service, backup-job.timer, backup@.service with one instance per stage) and is the \
executor of each stage. systemd does the sequencing, the timers and the supervision.",
    after_help = format!(
        "Exit codes: {}.\n\nConfig: /etc/backupctl/config.toml, or with --user \
         $XDG_CONFIG_HOME/backupctl/config.toml.",
        crate::exit::summary()
    )
)]
pub struct Cli {
    /// The config file (default: /etc/backupctl/config.toml, or the user's with --user).
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "BACKUPCTL_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// Work with the user's service manager and config instead of the system's.
    #[arg(long, global = true)]
    pub user: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the systemd units for the config.
    Generate(commands::generate::Args),
    /// Validate the config and print the resolved stage graph.
    Check(commands::check::Args),
    /// Run one stage (the ExecStart= of backup@.service).
    Stage(commands::stage::Args),
    /// Run a job: through systemd, or in this process with --here.
    Run(commands::run::Args),
    /// Check tools, keys, secrets and remotes of the whole config.
    Hello(commands::hello::Args),
    /// Set up, open and close encrypted stores ([store.NAME]).
    Store(commands::store::Args),
    /// Mount a store's files (read-only unless --read-write) or a restic stage's repository (FUSE).
    Mount(commands::mount::MountArgs),
    /// Unmount what `mount` mounted for a store; closes it unless a backup still uses it.
    Umount(commands::mount::UmountArgs),
    /// List the snapshots of a stage: a restic repository's, or rotated btrfs snapshots.
    Snapshots(commands::snapshots::Args),
    /// List the versions of a stage's backup (git: the commits that touched a path).
    History(commands::history::Args),
    /// List what under the roots (/home, /etc, …) no stage backs up, and missing sources.
    Coverage(commands::coverage::Args),
    /// Restore files from a stage's backup (restic snapshot, git commit) into a directory.
    Restore(commands::restore::Args),
    /// Show the last run of each job and the state of its stages (systemd and run records).
    Status(commands::status::Args),
    /// Show the journal records of the stages, selected by backupctl's journal fields.
    Logs(commands::logs::Args),
    /// Show the progress of running stages live (from their D-Bus signals).
    Watch(commands::watch::Args),
    /// Compare a tree (e.g. a restore) against a manifest; exit 1 if they differ.
    Verify(commands::verify::Args),
    // The doc comment is the --help text: `[notify]` is the config table, not a doc link.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Report a job's or stage's result through the [notify] channels (what the notifier
    /// unit runs); by hand with --result to try them.
    Notify(commands::notify::Args),
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page backupctl(1) (roff); with --dir, write it and one page per
    /// subcommand.
    Man {
        /// Write backupctl.1, a page per subcommand (backupctl-status.1,
        /// backupctl-store-init.1, …) and the config file's backupctl.toml.5 into DIR
        /// instead of printing backupctl(1).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Log a job's summary once all its stages ran (ExecStart= of backup-JOB.service).
    #[command(hide = true)]
    JobFinished { job: String },
    /// Record the stages of a job run that systemd skipped by a Condition…= (ExecStart= of
    /// backup-skips@JOB.service, after every stage, however the job ends).
    #[command(hide = true)]
    RecordSkips { job: String },
    /// Whether a stage may run now (ExecCondition= of a stage with skip_on_metered): exit 0
    /// to run, 1 to skip (its run record written), 255 when it cannot tell.
    #[command(hide = true)]
    Condition { stage: String },
    /// Record what systemd saw of a stage's end (ExecStopPost= of backup@.service): a stage
    /// killed by its memory limit is recorded as such.
    #[command(hide = true)]
    StageEnded { stage: String },
    /// Create the directories a stage writes, before its sandbox is set up.
    #[command(hide = true)]
    PreparePaths {
        /// Give new directories to this user (and group): the stage's `User=`.
        #[arg(long, value_name = "USER[:GROUP]")]
        owner: Option<String>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

impl Cli {
    /// What the commands get of the global options: the scope and the config's path
    /// resolved; the config is loaded when a command first asks for it.
    pub fn context(&self) -> commands::Context {
        let scope = if self.user {
            Scope::User
        } else {
            Scope::System
        };
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| config::default_path(scope));
        commands::Context::new(scope, path)
    }
}

/// The clap command, for the man page, completions and tests.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(dirs) = generator_dirs(&args) {
        return commands::generate::as_systemd_generator(&args[0], &dirs);
    }
    let cli = Cli::parse_from(args);
    // Before logging or anything else starts a thread: it sets our environment.
    let go_limit = matches!(cli.command, Command::Stage(_))
        .then(crate::cgroup::limit_go_tools)
        .flatten();
    crate::report::logging::init();
    if let Some(limit) = go_limit {
        tracing::info!(
            "Go tools (restic, rclone) run with GOMEMLIMIT={} bytes: 90 % of this stage's \
             memory limit of {} bytes (memory_high or memory_max of the stage, its job or \
             the slice)",
            limit.gomemlimit_bytes,
            limit.ceiling_bytes
        );
    }
    // What is still buffered must reach the reader before we say how it went.
    match run(cli).and_then(|code| Ok(crate::out::flush().map(|()| code)?)) {
        Ok(code) => code,
        // The reader went away (`| head`): it has what it wanted, nothing to report.
        Err(error) if crate::out::is_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit_code(&error))
        }
    }
}

/// The exit code of a command's error: the first code found along its chain, a class a
/// command attached (`crate::exit::classified`), a config error (usage: nothing ran) or a
/// stage error (its own code); anything else is a failure.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(class) = crate::exit::class_of(cause) {
            return class.code();
        }
        if cause.is::<config::ConfigError>() {
            return crate::exit::USAGE;
        }
        if let Some(stage) = cause.downcast_ref::<crate::stages::StageError>() {
            return stage.exit_code();
        }
    }
    crate::exit::FAILED
}

/// systemd calls generators with one or three absolute directories (normal, early, late).
fn generator_dirs(args: &[OsString]) -> Option<Vec<PathBuf>> {
    let rest = args.get(1..)?;
    let looks_like_dirs =
        matches!(rest.len(), 1 | 3) && rest.iter().all(|a| Path::new(a).is_absolute());
    looks_like_dirs.then(|| rest.iter().map(PathBuf::from).collect())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = &cli.context();
    match &cli.command {
        Command::Generate(args) => commands::generate::run(ctx, args),
        Command::Check(args) => commands::check::run(ctx, args),
        Command::Stage(args) => commands::stage::run(ctx, args),
        Command::Run(args) => commands::run::run(ctx, args),
        Command::Hello(args) => commands::hello::run(ctx, args),
        Command::Store(args) => commands::store::run(ctx, args),
        Command::Mount(args) => commands::mount::mount(ctx, args),
        Command::Umount(args) => commands::mount::umount(ctx, args),
        Command::Snapshots(args) => commands::snapshots::run(ctx, args),
        Command::History(args) => commands::history::run(ctx, args),
        Command::Restore(args) => commands::restore::run(ctx, args),
        Command::Coverage(args) => commands::coverage::run(ctx, args),
        Command::Status(args) => commands::status::run(ctx, args),
        Command::Logs(args) => commands::logs::run(ctx, args),
        Command::Watch(args) => commands::watch::run(ctx, args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Notify(args) => commands::notify::run(ctx, args),
        Command::JobFinished { job } => commands::internal::job_finished(ctx, job),
        Command::RecordSkips { job } => commands::internal::record_skips(ctx, job),
        Command::Condition { stage } => Ok(commands::internal::condition(ctx, stage)),
        Command::StageEnded { stage } => commands::internal::stage_ended(ctx, stage),
        Command::PreparePaths { owner, paths } => {
            commands::internal::prepare_paths(owner.as_deref(), paths)
        }
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command(), "backupctl", &mut script);
            crate::out::bytes(&script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: None } => commands::man::print(command()),
        Command::Man { dir: Some(dir) } => commands::man::write_dir(command(), dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn parses_example_command_lines() {
        for argv in [
            vec!["backupctl", "generate", "--user", "--output", "/tmp/x"],
            vec!["backupctl", "--config", "c.toml", "stage", "hello"],
            vec!["backupctl", "run", "--here"],
            vec!["backupctl", "run", "offsite", "--user"],
            vec!["backupctl", "check"],
            vec!["backupctl", "store", "init-key", "nas"],
            vec!["backupctl", "store", "init", "nas"],
            vec!["backupctl", "mount", "nas", "/mnt/restore"],
            vec!["backupctl", "umount", "nas"],
            vec!["backupctl", "snapshots", "docs"],
            vec!["backupctl", "hello"],
            vec![
                "backupctl",
                "restore",
                "b2",
                "--include",
                "/etc",
                "--target",
                "/tmp/r",
            ],
            vec!["backupctl", "mount", "b2", "/mnt"],
            vec!["backupctl", "status"],
            vec!["backupctl", "--user", "status", "offsite", "--json"],
            vec!["backupctl", "logs"],
            vec!["backupctl", "logs", "copy", "--run", "last", "-f"],
            vec![
                "backupctl",
                "logs",
                "--job",
                "offsite",
                "-n",
                "50",
                "--json",
            ],
            vec!["backupctl", "man"],
            vec!["backupctl", "man", "--dir", "/tmp/man1"],
            vec!["backupctl", "notify", "backup@copy.service"],
            vec!["backupctl", "notify", "--start", "backup-job.service"],
            vec![
                "backupctl",
                "notify",
                "--result",
                "failure",
                "backup@copy.service",
            ],
        ] {
            Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
    }

    #[test]
    fn recognises_generator_invocations() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(generator_dirs(&args(&["gen", "/run/a", "/run/b", "/run/c"])).is_some());
        assert!(generator_dirs(&args(&["gen", "/run/a"])).is_some());
        assert!(generator_dirs(&args(&["backupctl", "check"])).is_none());
        assert!(generator_dirs(&args(&["backupctl", "/a", "/b"])).is_none());
    }

    #[test]
    fn the_exit_class_is_found_under_context_and_not_shown() {
        use anyhow::Context;
        let error = Err::<(), _>(crate::exit::usage("no stage `x`"))
            .context("restoring")
            .unwrap_err();
        assert_eq!(exit_code(&error), crate::exit::USAGE);
        assert_eq!(format!("{error:#}"), "restoring: no stage `x`");
    }

    #[test]
    fn a_classified_error_keeps_its_causes() {
        use crate::exit::{Class, Classify};
        use anyhow::Context;
        let io = std::io::Error::other("disk on fire");
        let error = Err::<(), _>(io)
            .context("writing")
            .classify(Class::Temporary)
            .unwrap_err();
        assert_eq!(exit_code(&error), crate::exit::TEMPORARY);
        assert_eq!(format!("{error:#}"), "writing: disk on fire");
    }

    #[test]
    fn unclassified_errors_are_failures() {
        assert_eq!(
            exit_code(&anyhow::anyhow!("restic failed")),
            crate::exit::FAILED
        );
    }
}
