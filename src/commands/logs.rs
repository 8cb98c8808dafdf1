//! `backupctl logs [STAGE] [--run ID|last] [-f]`: the journal records of backupctl's stages,
//! selected by our own journal fields (`crate::logs`), printed one line each or as journal
//! JSON.

use std::io::{BufRead, BufReader, Write};
use std::process::{ExitCode, Stdio};

use anyhow::Context as _;

use crate::commands::Context;
use crate::logs::{self, Record, Selection};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  backupctl logs --run last         every record of the newest job run\n  \
backupctl logs copy -n 20         the last 20 records of stage copy\n  \
backupctl logs --run last -f      follow the newest run as it goes on\n\n\
For the catalog's explanations of failures: journalctl -x MESSAGE_ID=… (see docs/watching.md)."
)]
pub struct Args {
    /// Only this stage's records.
    pub stage: Option<String>,
    /// Only this job's records (default: the stage's job, or every job of the config).
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// Only one run: a job run id (BACKUPCTL_JOB_RUN), a stage run id (BACKUPCTL_RUN), or
    /// `last` for the newest run.
    #[arg(long, value_name = "ID|last")]
    pub run: Option<String>,
    /// Keep printing new records as they are written.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Show only the newest N records.
    #[arg(long, short = 'n', value_name = "N")]
    pub lines: Option<u32>,
    /// Print the journal records as JSON, one object per line (journalctl -o json).
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    // A misspelt name would match no record and print nothing: say so instead.
    let stage_job = match &args.stage {
        Some(stage) => Some(ctx.stage(stage)?.job.clone()),
        None => None,
    };
    let jobs = match (&args.job, stage_job) {
        (Some(job), Some(stage_job)) if *job != stage_job => {
            return Err(crate::exit::usage(format_args!(
                "stage `{}` belongs to job `{stage_job}`, not `{job}`: leave out --job",
                args.stage.as_deref().unwrap_or_default()
            )));
        }
        (Some(job), _) => vec![ctx.job(job)?.name.clone()],
        (None, Some(stage_job)) => vec![stage_job],
        (None, None) => config.jobs.iter().map(|j| j.name.clone()).collect(),
    };
    let mut selection = Selection {
        jobs: jobs.clone(),
        stage: args.stage.clone(),
        run: None,
        uids: logs::writers(config, ctx.scope(), &jobs),
    };
    selection.run = match args.run.as_deref() {
        None => None,
        Some("last") => Some(newest_run(ctx, &selection)?),
        Some(id) => Some(id.to_string()),
    };

    let mut options = Vec::new();
    if args.follow {
        options.push("--follow".to_string());
    }
    if let Some(lines) = args.lines {
        options.push(format!("--lines={lines}"));
    } else if args.follow {
        // Follow from the start of the run, not from journalctl's default last ten.
        options.push("--lines=all".to_string());
    }
    // journalctl -f must not outlive us when we are killed (Ctrl-C, or SIGTERM to our pid
    // alone, would leave it following forever): `process` gives it our death signal.
    let mut child = logs::journalctl(&selection, &options).spawn(Stdio::null(), Stdio::piped())?;
    let color = crate::report::terminal::stdout_color();
    let mut out = std::io::stdout().lock();
    let reader = BufReader::new(child.stdout.take().context("journalctl's output")?);
    for line in reader.lines() {
        let line = line.context("reading journalctl's output")?;
        let written = if args.json {
            writeln!(out, "{line}")
        } else {
            match Record::parse(&line) {
                Some(record) => writeln!(out, "{}", record.line(color)),
                None => Ok(()),
            }
        };
        // A closed pipe (`| head`) ends us quietly (exit 0, see `crate::out`); journalctl
        // is ended first, so that it does not follow on for no one.
        if let Err(error) = written.and_then(|()| out.flush()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(crate::out::closed(error).into());
        }
    }
    let status = child.wait().context("waiting for journalctl")?;
    Ok(if status.success() || args.follow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILED)
    })
}

/// `--run last`: the newest run in the journal, else in the run records.
fn newest_run(ctx: &Context, selection: &Selection) -> anyhow::Result<String> {
    if let Some(run) = logs::last_run(selection)? {
        return Ok(run);
    }
    let records =
        crate::run_records::read(&crate::paths::state_dir(ctx.scope())).unwrap_or_default();
    records
        .iter()
        .rev()
        .find(|r| {
            selection.jobs.contains(&r.job)
                && selection.stage.as_ref().is_none_or(|s| *s == r.stage)
        })
        .map(|r| r.job_run.clone().unwrap_or_else(|| r.run.clone()))
        .context("no run found in the journal or the run records: has the job run yet?")
}
