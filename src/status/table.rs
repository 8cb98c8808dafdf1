//! `status` for people: a header per job (its unit, timer, last run) and a compact table of
//! its stages. Colour only when stdout is a terminal (`color` is decided by the caller).

use std::fmt::Write;

use super::{JobStatus, StageStatus, Status};
use crate::config::size::human_bytes;

/// Local time, to the second, for a timestamp in RFC 3339.
fn local(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(time) => time
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => text.to_string(),
    }
}

fn seconds(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        crate::report::short_duration(std::time::Duration::from_secs_f64(secs))
    }
}

struct Paint {
    color: bool,
}

impl Paint {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A result word, coloured by what it means.
    fn result(&self, word: &str, width: usize) -> String {
        let padded = format!("{word:<width$}");
        match word {
            "success" => self.paint("32", &padded),
            "failed" | "interrupted" => self.paint("1;31", &padded),
            "running" => self.paint("1;34", &padded),
            "skipped" | "warning" => self.paint("33", &padded),
            _ => padded,
        }
    }
}

pub fn render(status: &Status, color: bool) -> String {
    let paint = Paint { color };
    let mut out = String::new();
    if let Some(error) = &status.systemd.error {
        let _ = writeln!(
            out,
            "{}",
            paint.paint(
                "33",
                &format!("systemd could not be asked ({error}); showing the run records only")
            )
        );
    }
    for (index, job) in status.jobs.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        job_header(&mut out, job, &paint);
        stage_table(&mut out, &job.stages, &paint);
    }
    out
}

fn job_header(out: &mut String, job: &JobStatus, paint: &Paint) {
    let mut line = format!("job {}", paint.paint("1", &job.name));
    if let Some(unit) = &job.unit {
        if unit.load_state == "not-found" {
            let _ = write!(
                line,
                "  ({} not installed: run `backupctl generate`)",
                unit.name
            );
        } else {
            let _ = write!(line, "  {}: {}", unit.name, unit.active_state);
        }
    }
    match &job.timer {
        Some(timer) => match &timer.next_elapse {
            Some(next) => {
                let _ = write!(line, "  next run {}", local(next));
            }
            None => {
                let _ = write!(line, "  timer {} ({})", timer.name, timer.active_state);
            }
        },
        None if job.unit.is_some() => line.push_str("  no schedule"),
        None => {}
    }
    let _ = writeln!(out, "{line}");
    let Some(run) = &job.last_run else {
        let _ = writeln!(out, "last run: none recorded");
        return;
    };
    let mut line = String::from("last run ");
    if let Some(started) = &run.started {
        line.push_str(&local(started));
    }
    if let Some(duration) = run.duration_secs {
        let _ = write!(line, " ({})", seconds(duration));
    }
    let _ = write!(line, ": {}", paint.result(&run.result, 0));
    if !run.failed.is_empty() {
        let _ = write!(line, "; failed: {}", run.failed.join(", "));
    }
    if !run.not_run.is_empty() && run.result != "running" {
        let _ = write!(line, "; not run: {}", run.not_run.join(", "));
    }
    let _ = write!(line, "  [run {}]", run.id);
    let _ = writeln!(out, "{line}");
}

fn stage_table(out: &mut String, stages: &[StageStatus], paint: &Paint) {
    const HEADERS: [&str; 8] = [
        "STAGE",
        "KIND",
        "STATE",
        "RESULT",
        "LAST SUCCESS",
        "TIME",
        "ADDED",
        "DETAIL",
    ];
    let rows: Vec<[String; 8]> = stages.iter().map(row).collect();
    // Every column but the last (free-width detail) is as wide as its widest cell.
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut header = String::new();
    for (index, name) in HEADERS.iter().enumerate() {
        let width = if index == 7 { 0 } else { widths[index] };
        let _ = write!(header, "{name:<width$}  ");
    }
    let _ = writeln!(out, "{}", paint.paint("1", header.trim_end()));
    for row in rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths[index];
            match index {
                3 => line.push_str(&paint.result(cell, width)),
                5 | 6 => {
                    let _ = write!(line, "{cell:>width$}");
                }
                7 => line.push_str(cell),
                _ => {
                    let _ = write!(line, "{cell:<width$}");
                }
            }
            line.push_str("  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn row(stage: &StageStatus) -> [String; 8] {
    let result = match stage.result.as_deref() {
        Some("success") if stage.warnings > 0 => "warning".to_string(),
        Some(word) => word.to_string(),
        None => "-".to_string(),
    };
    let mut detail = stage
        .status_text
        .clone()
        .or_else(|| stage.error.clone())
        .unwrap_or_default();
    if !stage.required {
        detail = format!("{detail} (may fail)").trim_start().to_string();
    }
    [
        stage.name.clone(),
        stage.kind.clone(),
        stage.state.clone().unwrap_or_else(|| "?".into()),
        result,
        stage.last_success.as_deref().map_or("-".into(), local),
        stage.last_duration_secs.map_or("-".into(), seconds),
        stage.bytes_added.map_or("-".into(), human_bytes),
        detail,
    ]
}
