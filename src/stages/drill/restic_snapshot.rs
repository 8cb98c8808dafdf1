//! A drill's restic target: the newest snapshot of the stage, listed with `restic ls` and
//! the sample restored with `restic restore` into the drill's scratch directory.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;

use super::{Backup, DrillContext, Drillable, File, RestoreSample};
use crate::stages::{Needs, Outcome, StageContext, StageError, StageKind, restic};

/// The bytes of `--include` arguments one `restic restore` gets (Linux allows 2 MiB of
/// arguments and environment in all).
const MAX_INCLUDE_BYTES: usize = 256 * 1024;

impl Drillable for restic::Spec {
    fn drillable(&self) -> Result<(), String> {
        if self.operation != restic::Operation::Backup {
            return Err("it is a restic stage that makes no backups (`operation`)".into());
        }
        Ok(())
    }

    /// The stage's repository, secrets, credentials and network.
    fn drill_needs(&self) -> Needs {
        StageKind::needs(self)
    }

    fn drill(&self, ctx: &DrillContext) -> Result<Outcome, StageError> {
        super::verify_sample(ctx, newest(self, ctx.stage)?)
    }
}

/// The newest snapshot of the stage `spec` configures.
fn newest<'a>(spec: &'a restic::Spec, ctx: &'a StageContext<'a>) -> Result<Backup<'a>, StageError> {
    let restic = Restic {
        spec,
        ctx,
        env: restic::repo::environment(spec, ctx.scope)?,
        snapshot: String::new(),
    };
    ctx.report
        .status("drill: listing the newest restic snapshot");
    let mut args: Vec<OsString> = vec!["ls".into(), "--json".into()];
    // The stage's own snapshots, as `backupctl restore` picks them.
    args.extend(spec.own_snapshots_args());
    args.push("latest".into());
    let mut files = Vec::new();
    let mut snapshot: Option<LsSnapshot> = None;
    let mut bad_lines = 0;
    restic
        .command(args)
        .on_line(|line| {
            match serde_json::from_str::<LsLine>(line) {
                Ok(LsLine::Snapshot(found)) => snapshot = Some(found),
                Ok(LsLine::Node(node)) if node.kind == "file" => {
                    if let Ok(mtime) = node.mtime.parse::<Timestamp>() {
                        files.push(File {
                            stored: PathBuf::from(node.path.trim_start_matches('/')),
                            source: PathBuf::from(node.path),
                            git_blob: None,
                            size: node.size,
                            mtime,
                        });
                    }
                }
                Ok(LsLine::Node(_)) => {}
                Err(_) => bad_lines += 1,
            };
        })
        .on_stderr(|line| tracing::warn!("restic: {line}"))
        .tail_skips(restic::repo::is_stack_frame)
        .run()
        .map_err(|error| restic_failed("list the newest snapshot", error))?;
    let Some(snapshot) = snapshot else {
        return Err(StageError::Failed(
            "the restic repository holds no snapshot of this stage yet; run the backup first"
                .into(),
        ));
    };
    if bad_lines > 0 {
        tracing::warn!("drill: {bad_lines} lines of `restic ls` were not understood");
    }
    let short: String = snapshot.id.chars().take(8).collect();
    Ok(Backup {
        files,
        taken: snapshot.time.parse().ok(),
        snapshot_id: Some(short.clone()),
        label: format!("restic snapshot {short}"),
        restore: Box::new(Restic {
            snapshot: snapshot.id,
            ..restic
        }),
    })
}

/// A line of `restic ls --json`.
#[derive(Deserialize)]
#[serde(tag = "struct_type", rename_all = "lowercase")]
enum LsLine {
    Snapshot(LsSnapshot),
    Node(LsNode),
}

#[derive(Deserialize)]
struct LsSnapshot {
    id: String,
    time: String,
}

#[derive(Deserialize)]
struct LsNode {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    mtime: String,
}

/// restic on the target's repository, with its secrets and options.
struct Restic<'a> {
    spec: &'a restic::Spec,
    ctx: &'a StageContext<'a>,
    env: Vec<(OsString, OsString)>,
    snapshot: String,
}

impl Restic<'_> {
    fn command(&self, args: Vec<OsString>) -> crate::process::Command<'_> {
        // `--no-lock`: the drill only reads, and its unit may not write the repository.
        restic::repo::command(self.spec, &self.env, &self.ctx.stage.environment)
            .arg("--no-lock")
            .args(args)
    }
}

impl RestoreSample for Restic<'_> {
    /// `restic restore SNAPSHOT --target DIR --include PATH…` for the chosen files, in
    /// batches whose includes stay far below the kernel's limit on an argument list; the
    /// whole snapshot without includes when `everything` was chosen.
    fn restore(
        &self,
        files: &[File],
        everything: bool,
        target: &Path,
    ) -> Result<PathBuf, StageError> {
        let mut batches: Vec<Vec<OsString>> = vec![Vec::new()];
        let mut batch_bytes = 0;
        for file in files.iter().filter(|_| !everything) {
            let mut arg = OsString::from("--include=");
            arg.push(escape_pattern(&file.source));
            if batch_bytes + arg.len() > MAX_INCLUDE_BYTES && batch_bytes > 0 {
                batches.push(Vec::new());
                batch_bytes = 0;
            }
            batch_bytes += arg.len() + 1;
            batches.last_mut().expect("one batch at least").push(arg);
        }
        for (index, includes) in batches.into_iter().enumerate() {
            self.ctx.report.status(&format!(
                "drill: restoring {} files (batch {})",
                includes.len(),
                index + 1
            ));
            let mut args: Vec<OsString> = vec![
                "restore".into(),
                self.snapshot.clone().into(),
                "--target".into(),
                target.into(),
            ];
            args.extend(includes);
            self.command(args)
                .on_line(|line| self.ctx.log_output(line))
                .on_stderr(|line| tracing::warn!("restic: {line}"))
                .tail_skips(restic::repo::is_stack_frame)
                .run()
                .map_err(|error| restic_failed("restore the sample", error))?;
        }
        Ok(target.to_path_buf())
    }
}

/// A path as a restic include pattern that matches only itself.
fn escape_pattern(path: &Path) -> OsString {
    let mut out = Vec::new();
    for &byte in path.as_os_str().as_bytes() {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(byte);
    }
    std::ffi::OsStr::from_bytes(&out).to_os_string()
}

fn restic_failed(what: &str, error: crate::process::ToolError) -> StageError {
    match error {
        crate::process::ToolError::Interrupted => StageError::Interrupted,
        other => StageError::Failed(format!(
            "drill: restic could not {what}, the backup does not restore: {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_patterns_match_only_the_path() {
        assert_eq!(
            escape_pattern(Path::new("/a/b[1]*.txt")),
            OsString::from("/a/b\\[1\\]\\*.txt")
        );
    }
}
