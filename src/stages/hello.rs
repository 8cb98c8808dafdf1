//! `hello`: the preflight of a job. Before anything is copied it checks what the job's other
//! stages need: their tools (printing versions), their destinations (writable, with free
//! space), their secret files (present, not readable by others). It prints a table and fails
//! with one precise line per problem, so the job stops before a half-done backup.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Needs, Outcome, SpecError, StageError, StageKind};
use crate::config::size::parse_size;
use crate::out::human_bytes;
use crate::stages::StageContext;

const DEFAULT_MIN_FREE: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Free space each local destination must have, e.g. "10G" (default 1G).
    pub min_free: Option<Spanned<String>>,
    /// More programs that must be present (besides those the job's stages use).
    #[serde(default)]
    pub tools: Vec<String>,
}

impl Spec {
    fn min_free(&self) -> u64 {
        self.min_free
            .as_ref()
            .and_then(|text| parse_size(text.get_ref()).ok())
            .unwrap_or(DEFAULT_MIN_FREE)
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: &'static str,
    pub item: String,
    pub ok: bool,
    pub detail: String,
}

impl StageKind for Spec {
    const NAME: &'static str = "hello";

    fn validate(&self) -> Result<(), SpecError> {
        if let Some(text) = &self.min_free {
            parse_size(text.get_ref()).map_err(|error| {
                SpecError::invalid(
                    Some(text.span()),
                    error.to_string(),
                    "e.g. min_free = \"10G\"",
                )
            })?;
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let mut needs = Needs::default();
        for stage in ctx.config.stages_of(&ctx.stage.job) {
            let other = stage.kind.needs();
            needs.writes.extend(other.writes);
            needs.tools.extend(other.tools);
            needs.secrets.extend(other.secrets);
            needs.remotes.extend(other.remotes);
        }
        if let Some(notify) = &ctx.config.notify {
            needs.secrets.extend(notify.secret_files());
        }
        ctx.report
            .status("hello: checking tools, destinations and secrets");
        let checks = run_checks(&needs, &self.tools, self.min_free());
        // The table is for the reader; a closed stdout must not change the stage's result.
        let _ = print_table(&checks);
        let failures: Vec<String> = checks
            .iter()
            .filter(|check| !check.ok)
            .map(|check| format!("{} {}: {}", check.what, check.item, check.detail))
            .collect();
        if failures.is_empty() {
            Ok(Outcome::default())
        } else {
            Err(StageError::Preflight(failures.join("; ")))
        }
    }
}

/// Runs every check; never stops at the first failure, so one run shows all problems.
pub fn run_checks(needs: &Needs, extra_tools: &[String], min_free: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    let tools: BTreeSet<&str> = needs
        .tools
        .iter()
        .copied()
        .chain(extra_tools.iter().map(String::as_str))
        .collect();
    for tool in tools {
        checks.push(check_tool(tool));
    }
    let writes: BTreeSet<&PathBuf> = needs.writes.iter().collect();
    for path in writes {
        checks.push(check_destination(path, min_free));
    }
    let secrets: BTreeSet<&PathBuf> = needs.secrets.iter().collect();
    for path in secrets {
        checks.push(check_secret(path));
    }
    for remote in needs.remotes.iter().collect::<BTreeSet<_>>() {
        checks.push(Check {
            what: "remote",
            item: remote.clone(),
            ok: true,
            detail: "reached by its stage (not probed here)".into(),
        });
    }
    checks
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).is_file().then(|| PathBuf::from(tool));
    }
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(tool))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub fn check_tool(tool: &str) -> Check {
    let Some(path) = find_in_path(tool) else {
        return Check {
            what: "tool",
            item: tool.into(),
            ok: false,
            detail: format!("not found in PATH; install it (Debian: apt install {tool})"),
        };
    };
    let version_args: &[&str] = match tool {
        "restic" | "rclone" => &["version"],
        "ssh" => &["-V"],
        _ => &["--version"],
    };
    let version = std::process::Command::new(&path)
        .args(version_args)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .map(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    Check {
        what: "tool",
        item: tool.into(),
        ok: true,
        detail: if version.is_empty() {
            path.display().to_string()
        } else {
            version
        },
    }
}

/// The path itself when it exists, else its nearest existing ancestor (where it will be made).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

fn check_destination(path: &Path, min_free: u64) -> Check {
    let item = path.display().to_string();
    let fail = |detail: String| Check {
        what: "destination",
        item: item.clone(),
        ok: false,
        detail,
    };
    let Some(existing) = existing_ancestor(path) else {
        return fail("no part of the path exists".into());
    };
    if !existing.is_dir() {
        return fail(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".backupctl-hello-{}", std::process::id()));
    if let Err(error) = std::fs::write(&probe, b"") {
        return fail(format!(
            "not writable ({error}); check ownership and ReadWritePaths="
        ));
    }
    let _ = std::fs::remove_file(&probe);
    let free = match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => stat.blocks_available() * stat.fragment_size(),
        Err(error) => return fail(format!("cannot read free space: {error}")),
    };
    let created = if existing == path {
        ""
    } else {
        " (will be created)"
    };
    if free < min_free {
        return fail(format!(
            "only {} free, {} required (min_free){created}",
            human_bytes(free),
            human_bytes(min_free)
        ));
    }
    Check {
        what: "destination",
        item,
        ok: true,
        detail: format!("writable, {} free{created}", human_bytes(free)),
    }
}

/// A secret file, checked as the stage that reads it will check it
/// ([`crate::secret_file::check`]).
pub fn check_secret(path: &Path) -> Check {
    let item = path.display().to_string();
    match crate::secret_file::check(path) {
        Ok(mode) => Check {
            what: "secret",
            item,
            ok: true,
            detail: format!("mode {mode:04o}"),
        },
        Err(error) => Check {
            what: "secret",
            item,
            ok: false,
            detail: error.to_string(),
        },
    }
}

/// On a terminal or pipe: an aligned table on stdout. Under systemd: one journal record per
/// row (with the stage's fields), failures at error priority.
pub fn print_table(checks: &[Check]) -> std::io::Result<()> {
    let under_journal =
        std::env::var_os("JOURNAL_STREAM").is_some() && !std::io::stdout().is_terminal();
    if under_journal {
        for check in checks {
            if check.ok {
                tracing::info!(
                    "{:<11} {:<30} ok    {}",
                    check.what,
                    check.item,
                    check.detail
                );
            } else {
                tracing::error!(
                    "{:<11} {:<30} FAIL  {}",
                    check.what,
                    check.item,
                    check.detail
                );
            }
        }
        return Ok(());
    }
    let width = checks
        .iter()
        .map(|c| c.item.len())
        .max()
        .unwrap_or(4)
        // A longer item overflows its column; an uncapped width past u16::MAX would panic.
        .clamp(4, 60);
    crate::outln!("{:<11} {:<width$} {:<5} DETAIL", "CHECK", "ITEM", "STATE")?;
    for check in checks {
        let state = if check.ok { "ok" } else { "FAIL" };
        crate::outln!(
            "{:<11} {:<width$} {:<5} {}",
            check.what,
            check.item,
            state,
            check.detail
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn flags_secrets_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "x").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let check = check_secret(&secret);
        assert!(!check.ok);
        assert!(check.detail.contains("chmod 600"), "{}", check.detail);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_secret(&secret).ok);
        assert!(!check_secret(&dir.path().join("missing")).ok);
    }

    #[test]
    fn checks_destinations_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("not/yet");
        let check = check_destination(&later, 1);
        assert!(check.ok, "{check:?}");
        assert!(check.detail.contains("will be created"));
        let check = check_destination(dir.path(), u64::MAX);
        assert!(!check.ok);
        assert!(check.detail.contains("min_free"));
    }

    #[test]
    fn finds_tools_and_reports_missing_ones() {
        assert!(check_tool("sh").ok);
        let missing = check_tool("backupctl-no-such-tool");
        assert!(!missing.ok);
        assert!(missing.detail.contains("not found in PATH"));
    }
}
