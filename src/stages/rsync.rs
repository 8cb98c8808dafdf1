//! `rsync`: copy sources to a local or ssh destination, preserving everything rsync can
//! (archive mode, hard links, ACLs, xattrs, numeric ids). `--delete` is opt-in. rsync's
//! exit 24 ("some files vanished", normal on a live system) is a warning, not a failure.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{Kind, Needs, Outcome, SpecError, StageError, require_absolute};
use crate::executor::StageContext;
use crate::process::Command;
use crate::report::{Figures, Progress};

/// rsync: "Partial transfer due to vanished source files".
const VANISHED: i32 = 24;

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Local absolute paths or `[user@]host:path`. A trailing `/` copies the contents.
    pub sources: Spanned<Vec<Spanned<String>>>,
    /// A local absolute path (created if missing) or `[user@]host:path`.
    pub destination: Spanned<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub exclude_from: Vec<Spanned<PathBuf>>,
    /// Delete files in the destination that are gone from the sources.
    #[serde(default)]
    pub delete: bool,
    #[serde(default = "yes")]
    pub acls: bool,
    #[serde(default = "yes")]
    pub xattrs: bool,
    /// Extra arguments for rsync, placed before the paths.
    #[serde(default)]
    pub args: Vec<String>,
    /// The ssh key for remote sources or destinations.
    pub ssh_key: Option<Spanned<PathBuf>>,
    /// Extra `-o` options for ssh, e.g. ["Port=2222", "StrictHostKeyChecking=accept-new"].
    #[serde(default)]
    pub ssh_options: Vec<String>,
}

/// `host:path` or `user@host:path` (a colon before any slash), or `rsync://`.
pub fn is_remote(location: &str) -> bool {
    location.starts_with("rsync://")
        || location
            .find(':')
            .is_some_and(|colon| !location[..colon].contains('/'))
}

impl Spec {
    fn locations(&self) -> impl Iterator<Item = &Spanned<String>> {
        self.sources
            .get_ref()
            .iter()
            .chain(std::iter::once(&self.destination))
    }

    fn uses_ssh(&self) -> bool {
        self.locations().any(|l| is_remote(l.get_ref()))
    }

    /// The rsync argv (without the program).
    pub fn arguments(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--archive",
            "--hard-links",
            "--numeric-ids",
            "--info=progress2",
            "--stats",
        ]
        .map(String::from)
        .to_vec();
        if self.acls {
            args.push("--acls".into());
        }
        if self.xattrs {
            args.push("--xattrs".into());
        }
        if self.delete {
            // After the transfer, so that a failed run has not deleted anything yet.
            args.push("--delete-after".into());
        }
        args.extend(
            self.exclude
                .iter()
                .map(|pattern| format!("--exclude={pattern}")),
        );
        args.extend(
            self.exclude_from
                .iter()
                .map(|file| format!("--exclude-from={}", file.get_ref().display())),
        );
        if self.uses_ssh() {
            let mut ssh = String::from("ssh -o BatchMode=yes");
            if let Some(key) = &self.ssh_key {
                ssh.push_str(&format!(" -i '{}'", key.get_ref().display()));
            }
            for option in &self.ssh_options {
                ssh.push_str(&format!(" -o '{option}'"));
            }
            args.push("--rsh".into());
            args.push(ssh);
        }
        args.extend(self.args.iter().cloned());
        args.push("--".into());
        args.extend(self.locations().map(|l| l.get_ref().clone()));
        args
    }
}

impl Kind for Spec {
    fn validate(&self) -> Result<(), SpecError> {
        if self.sources.get_ref().is_empty() {
            return Err(SpecError::invalid(
                Some(self.sources.span()),
                "`sources` is empty",
                "list what to copy, e.g. sources = [\"/home/sig/Sync/Logseq/\"]",
            ));
        }
        for location in self.locations() {
            let text = location.get_ref();
            if !is_remote(text) && !text.starts_with('/') {
                return Err(SpecError::invalid(
                    Some(location.span()),
                    format!("`{text}` is neither an absolute path nor host:path"),
                    "write local paths in full, starting with /",
                ));
            }
        }
        require_absolute(&self.exclude_from, "exclude_from")?;
        if let Some(key) = &self.ssh_key {
            require_absolute(std::slice::from_ref(key), "ssh_key")?;
        }
        Ok(())
    }

    fn needs(&self) -> Needs {
        let destination = self.destination.get_ref();
        let remote = self.uses_ssh();
        Needs {
            writes: if is_remote(destination) {
                vec![]
            } else {
                vec![PathBuf::from(destination)]
            },
            network: remote,
            tools: if remote {
                vec!["rsync", "ssh"]
            } else {
                vec!["rsync"]
            },
            secrets: self.ssh_key.iter().map(|k| k.get_ref().clone()).collect(),
            remotes: self
                .locations()
                .map(|l| l.get_ref())
                .filter(|l| is_remote(l))
                .cloned()
                .collect(),
            // Writing a faithful copy as root: set owners and modes, write into copied dirs.
            capabilities: if is_remote(destination) {
                vec![]
            } else {
                vec!["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID"]
            },
            sources: self
                .sources
                .get_ref()
                .iter()
                .map(|s| s.get_ref())
                .filter(|s| !is_remote(s))
                .map(PathBuf::from)
                .collect(),
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let destination = self.destination.get_ref();
        if !is_remote(destination) {
            std::fs::create_dir_all(destination).map_err(|e| {
                StageError::io(format!("cannot create the destination {destination}"), e)
            })?;
        }
        ctx.report.status("rsync: copying");
        let mut figures = Figures::default();
        let mut warnings = Vec::new();
        let finished = Command::new("rsync")
            .args(self.arguments())
            .ok_codes(&[VANISHED])
            .on_line(|line| {
                if let Some(progress) = parse_progress(line) {
                    ctx.report.progress(&progress);
                } else {
                    parse_stat(line, &mut figures);
                }
            })
            .on_stderr(|line| {
                tracing::warn!("rsync: {line}");
            })
            .run()?;
        if finished.code == VANISHED {
            warnings.push(format!(
                "some source files vanished during the copy (rsync exit 24); normal on a live system: {}",
                finished.stderr_tail.lines().next().unwrap_or("")
            ));
        }
        Ok(Outcome { warnings, figures })
    }
}

/// One `--info=progress2` update:
/// `    1,234,567  45%   10.00MB/s    0:00:10 (xfr#5, to-chk=10/20)`.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let mut fields = line.split_whitespace();
    let bytes: u64 = fields.next()?.replace(',', "").parse().ok()?;
    let percent: f64 = fields.next()?.strip_suffix('%')?.parse().ok()?;
    let _rate = fields.next()?;
    let eta = fields.next().and_then(parse_clock);
    let mut progress = Progress {
        percent: Some(percent),
        bytes_done: Some(bytes),
        eta,
        ..Progress::default()
    };
    if let Some(check) = line.split("to-chk=").nth(1) {
        let check = check.trim_end_matches(')');
        if let Some((left, total)) = check.split_once('/')
            && let (Ok(left), Ok(total)) = (left.parse::<u64>(), total.parse::<u64>())
        {
            progress.files_total = Some(total);
            progress.files_done = Some(total.saturating_sub(left));
        }
    }
    Some(progress)
}

fn parse_clock(text: &str) -> Option<std::time::Duration> {
    let parts: Vec<u64> = text
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let secs = parts.iter().fold(0, |total, part| total * 60 + part);
    Some(std::time::Duration::from_secs(secs))
}

/// Lines of `--stats` that become the stage's figures.
fn parse_stat(line: &str, figures: &mut Figures) {
    let number = |text: &str| -> Option<u64> {
        text.split_whitespace()
            .next()?
            .replace(',', "")
            .parse()
            .ok()
    };
    if let Some(rest) = line.strip_prefix("Number of files: ") {
        figures.files = number(rest);
    } else if let Some(rest) = line.strip_prefix("Number of created files: ") {
        figures.files_new = number(rest);
    } else if let Some(rest) = line.strip_prefix("Number of regular files transferred: ") {
        figures.files_changed = number(rest);
    } else if let Some(rest) = line.strip_prefix("Total file size: ") {
        figures.bytes_read = number(rest);
    } else if let Some(rest) = line.strip_prefix("Total transferred file size: ") {
        figures.bytes_added = number(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_remote_locations() {
        assert!(is_remote("host:/data"));
        assert!(is_remote("sig@nas.local:backups/"));
        assert!(is_remote("rsync://nas/module"));
        assert!(!is_remote("/data/with:colon"));
        assert!(!is_remote("/home/sig/"));
    }

    #[test]
    fn parses_progress2_lines() {
        let progress =
            parse_progress("      1,234,567  45%   10.00MB/s    0:01:10 (xfr#5, to-chk=10/20)")
                .unwrap();
        assert_eq!(progress.bytes_done, Some(1_234_567));
        assert_eq!(progress.percent, Some(45.0));
        assert_eq!(progress.eta, Some(std::time::Duration::from_secs(70)));
        assert_eq!(
            (progress.files_done, progress.files_total),
            (Some(10), Some(20))
        );
        assert_eq!(parse_progress("sending incremental file list"), None);
        assert_eq!(parse_progress("Number of files: 3 (reg: 2, dir: 1)"), None);
    }

    #[test]
    fn parses_stats() {
        let mut figures = Figures::default();
        for line in [
            "Number of files: 1,203 (reg: 1,000, dir: 203)",
            "Number of created files: 7",
            "Number of regular files transferred: 12",
            "Total file size: 5,000,000 bytes",
            "Total transferred file size: 40,000 bytes",
        ] {
            parse_stat(line, &mut figures);
        }
        assert_eq!(figures.files, Some(1203));
        assert_eq!(figures.files_new, Some(7));
        assert_eq!(figures.files_changed, Some(12));
        assert_eq!(figures.bytes_read, Some(5_000_000));
        assert_eq!(figures.bytes_added, Some(40_000));
    }
}
