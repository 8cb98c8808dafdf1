//! `backupctl watch [STAGE]`: a live view of running stages, fed by their D-Bus signals
//! (`crate::report::dbus`): a bar per stage on a terminal, one line per event otherwise.
//! With a STAGE it ends when that stage does: 0 when it succeeded, 1 when it failed.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use zbus::{Connection, MatchRule, MessageStream};

use crate::commands::Context;
use crate::out::human_bytes;
use crate::outln;
use crate::paths::Scope;
use crate::report::dbus::{INTERFACE, PROJECT, object_path, stage_of_path, unlabel};
use crate::report::{Progress, short_duration};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Follow only this stage, and end when it ends.
    pub stage: Option<String>,
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    zbus::block_on(watch(ctx.scope(), args.stage.as_deref()))
}

type ProgressArgs = (u64, u64, f64, u64, u64, u64, u64, u64, Vec<String>);
type CompleteArgs = (
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    i64,
    i64,
    u64,
    u64,
    u64,
    f64,
    String,
    bool,
);

/// Where events are shown.
struct View {
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    last_line: HashMap<String, Instant>,
}

impl View {
    fn new() -> Self {
        View {
            bars: std::io::stdout()
                .is_terminal()
                .then(|| (MultiProgress::new(), HashMap::new())),
            last_line: HashMap::new(),
        }
    }

    /// An event worth a line of its own. An error only when stdout was closed: then there is no one left to watch for.
    fn event(&mut self, stage: &str, text: &str) -> std::io::Result<()> {
        let line = format!("{stage}: {text}");
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(line);
                Ok(())
            }
            None => outln!("{line}"),
        }
    }

    /// A progress update: the stage's bar, or a line at most once a second.
    fn progress(&mut self, stage: &str, percent: f64, text: String) -> std::io::Result<()> {
        match &mut self.bars {
            Some((multi, bars)) => {
                let bar = bars.entry(stage.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(100));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>12.bold} [{bar:30}] {msg}")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(stage.to_string());
                    bar
                });
                bar.set_position(percent.clamp(0.0, 100.0) as u64);
                bar.set_message(text);
            }
            None => {
                let due = self
                    .last_line
                    .get(stage)
                    .is_none_or(|last| last.elapsed() >= Duration::from_secs(1));
                if due {
                    self.last_line.insert(stage.to_string(), Instant::now());
                    outln!("{stage}: {text}")?;
                }
            }
        }
        Ok(())
    }

    fn done(&mut self, stage: &str) {
        if let Some((_, bars)) = &mut self.bars
            && let Some(bar) = bars.remove(stage)
        {
            bar.finish_and_clear();
        }
    }
}

async fn watch(scope: Scope, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let (bus, connection) = match scope {
        Scope::System => ("system", Connection::system().await),
        Scope::User => ("session", Connection::session().await),
    };
    let connection = connection.with_context(|| format!("cannot reach the {bus} bus"))?;
    let mut rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(INTERFACE);
    if let Some(stage) = only {
        rule = rule.path(object_path(stage));
    }
    let mut stream = MessageStream::for_match_rule(rule.build()?, &connection, None).await?;

    let mut view = View::new();
    let prefix = format!("{PROJECT}.stage.");
    let running: Vec<String> = zbus::fdo::DBusProxy::new(&connection)
        .await?
        .list_names()
        .await?
        .iter()
        .filter_map(|name| unlabel(name.as_str().strip_prefix(&prefix)?))
        .filter(|stage| only.is_none_or(|only| only == stage))
        .collect();
    for stage in &running {
        view.event(stage, "running")?;
    }
    if running.is_empty() {
        let what = only.map_or("stages".to_string(), |s| format!("stage {s}"));
        view.event("watch", &format!("waiting for {what} to start ({bus} bus)"))?;
    }

    while let Some(message) = stream.next().await {
        let message = message?;
        let header = message.header();
        let Some(stage) = header.path().and_then(|p| stage_of_path(p)) else {
            continue;
        };
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let body = message.body();
        match member.as_str() {
            "BackupStarted" => view.event(&stage, "started")?,
            "Progress" => {
                let (
                    elapsed,
                    remaining,
                    fraction,
                    files_total,
                    files_done,
                    bytes_total,
                    bytes_done,
                    errors,
                    current,
                ): ProgressArgs = body.deserialize()?;
                let progress = Progress {
                    percent: Some(fraction * 100.0),
                    bytes_done: Some(bytes_done),
                    bytes_total: (bytes_total > 0).then_some(bytes_total),
                    files_done: (files_done > 0 || files_total > 0).then_some(files_done),
                    files_total: (files_total > 0).then_some(files_total),
                    eta: (remaining > 0).then(|| Duration::from_secs(remaining)),
                    text: current.first().cloned(),
                };
                let mut line = format!(
                    "{} after {}",
                    progress.line(),
                    short_duration(Duration::from_secs(elapsed))
                );
                if errors > 0 {
                    line.push_str(&format!(", {errors} errors"));
                }
                view.progress(&stage, fraction * 100.0, line)?;
            }
            "BackupComplete" => {
                let c: CompleteArgs = body.deserialize()?;
                let (new, changed, files, bytes, added, duration, snapshot) =
                    (c.0, c.1, c.9, c.10, c.8, c.11, c.12);
                let mut line = format!(
                    "complete: {files} files ({new} new, {changed} changed), {} read, {} added, in {duration:.1}s",
                    human_bytes(bytes),
                    human_bytes(added),
                );
                if !snapshot.is_empty() {
                    line.push_str(&format!(", snapshot {snapshot}"));
                }
                view.done(&stage);
                view.event(&stage, &line)?;
                if only.is_some() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            "Error" => {
                let (error, during, item): (String, String, String) = body.deserialize()?;
                if during == "stage" {
                    view.done(&stage);
                    view.event(&stage, &format!("failed: {error}"))?;
                    if only.is_some() {
                        return Ok(ExitCode::from(crate::exit::FAILED));
                    }
                } else {
                    view.event(&stage, &format!("error during {during}: {error} ({item})"))?;
                }
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
