//! `backupctl check`: validate the config and print the resolved stage graph.

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

use crate::commands::Context;
use crate::config::Config;
use crate::dag;
use crate::out;
use crate::units::{job_service, job_timer, stage_service};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the graph as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also print, under each stage, its conditions and the bandwidth limits that apply to
    /// a run starting now (for restic and rsync, which keep one rate a run: the rate at start).
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Serialize)]
struct JobView<'a> {
    name: &'a str,
    unit: String,
    timer: Option<String>,
    schedule: Option<&'a str>,
    stages: Vec<StageView<'a>>,
}

#[derive(Serialize)]
struct StageView<'a> {
    name: &'a str,
    kind: &'a str,
    unit: String,
    after: &'a [String],
    required: bool,
    /// 0 for stages that start first; stages of equal depth may run in parallel.
    depth: usize,
}

fn views(config: &Config) -> Vec<JobView<'_>> {
    config
        .jobs
        .iter()
        .map(|job| {
            let (stages, edges) = config.job_graph(&job.name);
            let depths = dag::depths(&edges);
            let order = dag::topological(&edges).unwrap_or_else(|| (0..stages.len()).collect());
            JobView {
                name: &job.name,
                unit: job_service(&job.name),
                timer: job.schedule.as_ref().map(|_| job_timer(&job.name)),
                schedule: job.schedule.as_deref(),
                stages: order
                    .into_iter()
                    .map(|i| StageView {
                        name: &stages[i].name,
                        kind: stages[i].spec.name(),
                        unit: stage_service(&stages[i].name),
                        after: &stages[i].after,
                        required: stages[i].required,
                        depth: depths[i],
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Indentation levels shown at most: deeper stages are drawn at this depth with their depth
/// in front. Indenting a 33 000-stage chain in full wrote gigabytes and overflowed `format!`'s
/// width argument.
const MAX_INDENT: usize = 12;

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = match ctx.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(crate::exit::FAILED));
        }
    };
    // The config's own path goes into every unit (header, ExecStart=): `generate` would
    // refuse one that cannot stand on a unit line, so `check` says so first.
    let options = crate::generator::Options {
        scope: ctx.scope(),
        binary: super::generate::this_binary(),
    };
    if let Err(error) = crate::generator::check_paths(config, &options) {
        eprintln!("error: {error}");
        return Ok(ExitCode::from(crate::exit::FAILED));
    }
    // Valid TOML can still name paths the units would not see: refuse those here, not at
    // the first timer run.
    if let Err(error) = crate::generator::sandbox::check(config, None) {
        eprintln!("error: {error}");
        return Ok(ExitCode::from(crate::exit::FAILED));
    }
    let jobs = views(config);
    if args.json {
        let mut out = out::Buffered::new();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "config": config.file,
                "valid": true,
                "jobs": jobs,
            }),
        )
        .map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = out::Buffered::new();
    writeln!(out, "{}: valid", config.file.display())?;
    for job in jobs {
        let timer = match (&job.timer, job.schedule) {
            (Some(timer), Some(schedule)) => format!(", {timer} ({schedule})"),
            _ => ", no timer".into(),
        };
        writeln!(out, "\njob {} ({}{timer})", job.name, job.unit)?;
        let names: Vec<String> = job.stages.iter().map(tree_name).collect();
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        for (stage, name) in job.stages.iter().zip(&names) {
            let after = if stage.after.is_empty() {
                "first".to_string()
            } else {
                format!("after {}", stage.after.join(", "))
            };
            let optional = if stage.required { "" } else { ", may fail" };
            // Padded by hand: `{:<width$}` panics for widths beyond u16::MAX.
            let pad = " ".repeat(width - name.chars().count());
            writeln!(out, "  {name}{pad}  {:<8} {after}{optional}", stage.kind)?;
            if args.verbose {
                for line in config
                    .stage(stage.name)
                    .map(|s| s.manners())
                    .unwrap_or_default()
                {
                    writeln!(out, "      {line}")?;
                }
            }
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// The stage's name indented by its depth (at most [`MAX_INDENT`] levels).
fn tree_name(stage: &StageView<'_>) -> String {
    if stage.depth <= MAX_INDENT {
        format!("{}{}", "  ".repeat(stage.depth), stage.name)
    } else {
        format!(
            "{}[{}] {}",
            "  ".repeat(MAX_INDENT),
            stage.depth,
            stage.name
        )
    }
}
