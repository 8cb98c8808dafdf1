//! `status` for people: a header per job (its unit, timer, last run) and a compact table of
//! its stages. Colour only when stdout is a terminal (`color` is decided by the caller).

use std::fmt::Write;

use super::{JobStatus, StageStatus, Status};
use crate::out::human_bytes;
use crate::report::terminal::{BLUE, BOLD, GREEN, RED, YELLOW, local_time, paint};
use crate::stages::Purpose;

/// Local time, to the second, for a timestamp in RFC 3339.
pub(super) fn local(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(time) => local_time(time),
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
        paint(self.color, code, text)
    }

    /// A result word, coloured by what it means.
    fn result(&self, word: &str, width: usize) -> String {
        let code = match word {
            "success" => GREEN,
            "failed" | "interrupted" => RED,
            "running" => BLUE,
            "skipped" | "warning" => YELLOW,
            _ => "",
        };
        self.paint(code, &format!("{word:<width$}"))
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
                YELLOW,
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
    for repository in &status.repositories {
        out.push('\n');
        let heading = format!("repository {}", repository.repository);
        let _ = writeln!(out, "{}", paint.paint(BOLD, &heading));
        out.push_str(&super::repositories::render(repository));
    }
    out
}

fn job_header(out: &mut String, job: &JobStatus, paint: &Paint) {
    let mut line = format!("job {}", paint.paint(BOLD, &job.name));
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
    let mut line = String::from("last run");
    if let Some(started) = &run.started {
        let _ = write!(line, " {}", local(started));
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
        let width = widths[index];
        // Numbers are right-aligned, and so are their headings.
        let _ = match index {
            5 | 6 => write!(header, "{name:>width$}  "),
            7 => write!(header, "{name}"),
            _ => write!(header, "{name:<width$}  "),
        };
    }
    let _ = writeln!(out, "{}", paint.paint(BOLD, header.trim_end()));
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
        .or_else(|| {
            let reason = stage.skip_reason.as_ref()?;
            Some(format!("skipped: {reason}"))
        })
        .unwrap_or_default();
    if let Some(drill) = &stage.last_drill {
        let counts = drill_counts(drill.files, drill.mismatches, drill.snapshot_age_secs);
        let verified = format!(
            "last verified restore: {}, {}{counts}{}",
            local(&drill.finished),
            drill.result,
            restore_time(drill.restore_seconds),
        );
        detail = if detail.is_empty() {
            verified
        } else {
            format!("{detail}; {verified}")
        };
    } else if detail.is_empty()
        && stage.purpose == Purpose::Drill
        && let Some(figures) = stage.last_run.as_ref().map(|run| &run.figures)
        && figures.files.is_some()
    {
        // A drill's own row says what its last run proved; a failed one shows its error.
        detail = format!(
            "restore verified{}{}",
            drill_counts(figures.files, figures.mismatches, figures.snapshot_age_secs),
            restore_time(figures.restore_seconds),
        );
    }
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

/// " (51 files, 2 differ, backup 2h03m old)", or "" when nothing is known: a drill's figures,
/// the same words on the drill's row and on the row of the stage it verifies.
/// ", restored in 3.2s": a database drill's recovery time.
fn restore_time(seconds: Option<f64>) -> String {
    seconds
        .map(|s| match s {
            s if s < 60.0 => format!(", restored in {s:.1}s"),
            s => {
                let took = crate::report::short_duration(std::time::Duration::from_secs_f64(s));
                format!(", restored in {took}")
            }
        })
        .unwrap_or_default()
}

fn drill_counts(files: Option<u64>, mismatches: Option<u64>, age_secs: Option<u64>) -> String {
    let mut counts = Vec::new();
    if let Some(files) = files {
        counts.push(format!("{files} files"));
    }
    if let Some(mismatches) = mismatches.filter(|&m| m > 0) {
        counts.push(format!("{mismatches} differ"));
    }
    if let Some(age) = age_secs {
        let age = crate::report::short_duration(std::time::Duration::from_secs(age));
        counts.push(format!("backup {age} old"));
    }
    if counts.is_empty() {
        String::new()
    } else {
        format!(" ({})", counts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{JobRun, SystemdReach};

    fn status() -> Status {
        let stage = |name: &str, result: &str, error: Option<&str>| StageStatus {
            name: name.into(),
            kind: "exec".into(),
            purpose: Purpose::Backup,
            required: result != "failed",
            unit: crate::units::stage_service(name),
            state: None,
            sub_state: None,
            status_text: None,
            result: Some(result.into()),
            error: error.map(String::from),
            skip_reason: None,
            warnings: 0,
            last_success: None,
            last_duration_secs: Some(1.25),
            bytes_added: Some(2048),
            last_run: None,
            last_drill: None,
        };
        Status {
            version: 1,
            scope: "system",
            systemd: SystemdReach {
                reachable: false,
                error: Some("no bus".into()),
            },
            jobs: vec![JobStatus {
                name: "job".into(),
                unit: None,
                timer: None,
                last_run: Some(JobRun {
                    id: "r1".into(),
                    result: "success".into(),
                    started: None,
                    finished: None,
                    duration_secs: Some(2.5),
                    failed: vec!["b".into()],
                    not_run: vec![],
                }),
                stages: vec![
                    stage("a", "success", None),
                    stage("b", "failed", Some("boom")),
                ],
            }],
            repositories: vec![],
        }
    }

    #[test]
    fn plain_without_colour_and_coloured_results_with_it() {
        let plain = render(&status(), false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert_eq!(
            plain.lines().collect::<Vec<_>>(),
            [
                "systemd could not be asked (no bus); showing the run records only",
                "job job",
                "last run (2.5s): success; failed: b  [run r1]",
                "STAGE  KIND  STATE  RESULT   LAST SUCCESS  TIME    ADDED  DETAIL",
                "a      exec  ?      success  -             1.2s  2.0 KiB",
                "b      exec  ?      failed   -             1.2s  2.0 KiB  boom (may fail)",
            ]
        );
        let coloured = render(&status(), true);
        assert!(coloured.contains("\x1b[32msuccess\x1b[0m"), "{coloured}");
        assert!(coloured.contains("\x1b[1;31mfailed \x1b[0m"), "{coloured}");
    }

    #[test]
    fn a_drill_row_says_what_its_last_run_verified() {
        let mut status = status();
        let stage = &mut status.jobs[0].stages[0];
        stage.kind = "drill".into();
        stage.purpose = Purpose::Drill;
        stage.bytes_added = None;
        stage.last_run = Some(crate::run_records::RunRecord {
            run: "r1".into(),
            started: "2026-12-04T03:00:00Z".into(),
            duration_secs: 1.25,
            figures: crate::report::Figures {
                files: Some(51),
                snapshot_age_secs: Some(7380),
                ..Default::default()
            },
            ..crate::run_records::sample_record(
                "a",
                "drill",
                crate::run_records::RunResult::Success,
                "2026-12-04T03:00:01Z",
            )
        });
        let plain = render(&status, false);
        assert!(
            plain.contains("restore verified (51 files, backup 2h03m old)"),
            "{plain}"
        );
    }
}
