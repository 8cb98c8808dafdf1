//! `rsync`: copy sources to a local or ssh destination, preserving everything rsync can
//! (archive mode, hard links, ACLs, xattrs, numeric ids). `--delete` is opt-in. rsync's
//! exit 24 ("some files vanished", normal on a live system) is a warning, not a failure.

mod leftovers;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::verbs::{Listing, SnapshotsArgs, Verb, VerbContext};
use super::{
    Needs, Outcome, SpecError, StageError, StageKind, require_absolute, require_normalized, ssh,
};
use crate::process::{Command, ToolError};
use crate::report::{Figures, Progress};
use crate::stages::StageContext;

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
    /// Point-in-time read-only btrfs snapshots of the destination (a subvolume).
    pub rotate: Option<Spanned<Rotate>>,
    /// `--bwlimit`: a rate ("1M") or a timetable ("08:00 1M, 19:00 off"). rsync keeps one
    /// rate for a run, so a timetable gives the rate in effect when it starts (see
    /// `crate::bandwidth`). rsync limits the data it sends, and passes the limit to the rsync
    /// at the other end of a connection, so it holds for pushes and pulls alike.
    pub bandwidth: Option<crate::bandwidth::Limit>,
}

/// `rotate = { every = "168h", keep = 8 }`: take a btrfs snapshot of the destination at most
/// every `every`, keep the newest `keep` (see `crate::rotate`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    pub every: Spanned<String>,
    pub keep: Spanned<u32>,
}

impl Rotate {
    pub fn every(&self) -> std::time::Duration {
        crate::config::Timespan::parse(self.every.get_ref())
            .map(|span| span.0)
            .unwrap_or_default()
    }

    pub fn keep(&self) -> usize {
        *self.keep.get_ref() as usize
    }
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

    /// A `host:path` location; an `rsync://` one talks to the daemon's port directly (with
    /// `--rsh` rsync would reach it through ssh instead, which the daemon may not offer).
    fn uses_ssh(&self) -> bool {
        self.locations()
            .any(|l| is_remote(l.get_ref()) && !l.get_ref().starts_with("rsync://"))
    }

    /// `--bwlimit=KiB` for a run starting at `now`, when `bandwidth` limits it then.
    pub fn bwlimit_args(&self, now: crate::bandwidth::Minute) -> Vec<String> {
        let kib = self.bandwidth.as_ref().and_then(|l| l.at(now).0.kib());
        // A plain number is KiB/s to rsync (`--bwlimit=RATE`, "units of 1024 bytes").
        kib.map(|kib| format!("--bwlimit={kib}"))
            .into_iter()
            .collect()
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
            // rsync splits this value itself, by its own quoting rules.
            args.push("--rsh".into());
            args.push(ssh::command(
                ssh::Splitter::Rsync,
                self.ssh_key.as_ref().map(|key| key.get_ref().as_path()),
                &self.ssh_options,
            ));
        }
        args.extend(self.args.iter().cloned());
        args.push("--".into());
        args.extend(self.locations().map(|l| l.get_ref().clone()));
        args
    }
}

impl Spec {
    /// `backupctl snapshots STAGE`: where the snapshots of `rotate` are; the command lists
    /// them (opening the stage's store when there is one).
    fn rotated(&self, ctx: &VerbContext, _: &SnapshotsArgs) -> anyhow::Result<Listing> {
        let Some(rotate) = &self.rotate else {
            return Err(crate::exit::usage(format_args!(
                "stage `{}` keeps no snapshots; add rotate = {{ every = \"168h\", keep = 8 }}",
                ctx.stage
            )));
        };
        let rotate = rotate.get_ref();
        Ok(Listing::Rotated {
            destination: PathBuf::from(self.destination.get_ref().trim_end_matches('/')),
            every: rotate.every.get_ref().clone(),
            keep: *rotate.keep.get_ref(),
        })
    }
}

impl Spec {
    /// See [`StageKind::PLACE_IN_STORE`]: the destination, relative to the store, joined to
    /// its mount point.
    fn place_in_store(&mut self, root: &Path) -> Result<(), SpecError> {
        let relative = self.destination.get_ref();
        if relative.starts_with('/') || is_remote(relative) {
            return Err(SpecError::invalid(
                Some(self.destination.span()),
                format!(
                    "with `store`, the destination is a path inside the store, `{relative}` is not"
                ),
                "write it relative to the store, e.g. destination = \"home\"",
            ));
        }
        if Path::new(relative)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(SpecError::invalid(
                Some(self.destination.span()),
                "the destination cannot leave the store (`..`)",
                "write a path inside the store, e.g. destination = \"home\"",
            ));
        }
        require_normalized(self.destination.span(), relative, "destination")?;
        let trailing = if relative.ends_with('/') { "/" } else { "" };
        let joined = root.join(relative.trim_end_matches('/'));
        self.destination = Spanned::new(
            self.destination.span(),
            format!("{}{trailing}", joined.display()),
        );
        Ok(())
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "rsync";
    const BANDWIDTH_KEYS: &'static [&'static str] = &["bandwidth"];

    fn bandwidth(&self) -> Vec<crate::bandwidth::Applied<'_>> {
        let applied = |limit| crate::bandwidth::Applied {
            key: "bandwidth",
            limit,
            tool: "rsync",
            mid_run: crate::bandwidth::MidRun::RateAtStart,
        };
        self.bandwidth.iter().map(applied).collect()
    }

    const READS_LOCAL_SOURCES: bool = true;
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = Some(Self::rotated);
    const PLACE_IN_STORE: Option<super::kind::PlaceInStore<Self>> = Some(Self::place_in_store);
    const DRILL: Option<super::drill::Drill<Self>> = Some(super::drill::Drill::of(
        "an rsync stage with a local destination",
    ));

    fn validate(&self) -> Result<(), SpecError> {
        if let Some(rotate) = &self.rotate {
            let rotate_ref = rotate.get_ref();
            crate::config::Timespan::parse(rotate_ref.every.get_ref()).map_err(|error| {
                SpecError::invalid(
                    Some(rotate_ref.every.span()),
                    format!("invalid `every`: {error}"),
                    "a systemd time span, e.g. every = \"168h\" (a week)",
                )
            })?;
            if *rotate_ref.keep.get_ref() == 0 {
                return Err(SpecError::invalid(
                    Some(rotate_ref.keep.span()),
                    "`keep` must be at least 1",
                    "the number of snapshots to keep, e.g. keep = 8",
                ));
            }
            if is_remote(self.destination.get_ref()) {
                return Err(SpecError::invalid(
                    Some(rotate.span()),
                    "`rotate` needs a local destination on btrfs",
                    "snapshots are taken on this machine; remove `rotate` or copy into a store",
                ));
            }
        }
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
                    "write local paths in full, starting with /, or set `store = \"NAME\"` to copy into a store",
                ));
            }
            if !is_remote(text) {
                let key = if std::ptr::eq(location, &self.destination) {
                    "destination"
                } else {
                    "sources"
                };
                require_normalized(location.span(), text, key)?;
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
        let remote = self.locations().any(|l| is_remote(l.get_ref()));
        let mut tools = if self.uses_ssh() {
            vec!["rsync", "ssh"]
        } else {
            vec!["rsync"]
        };
        let mut capabilities = if is_remote(destination) {
            vec![]
        } else {
            vec!["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID"]
        };
        let writes = if is_remote(destination) {
            vec![]
        } else if self.rotate.is_some() {
            // The destination is a subvolume the stage creates itself, and the snapshots
            // live beside it: the parent must be writable (and must not be pre-created as a
            // plain directory).
            tools.push("btrfs");
            // Deleting a read-only snapshot is an admin operation in btrfs.
            capabilities.push("CAP_SYS_ADMIN");
            let path = Path::new(destination.trim_end_matches('/'));
            vec![path.parent().unwrap_or(path).to_path_buf()]
        } else {
            vec![PathBuf::from(destination)]
        };
        Needs {
            writes,
            network: remote,
            tools,
            secrets: self.ssh_key.iter().map(|k| k.get_ref().clone()).collect(),
            remotes: self
                .locations()
                .map(|l| l.get_ref())
                .filter(|l| is_remote(l))
                .cloned()
                .collect(),
            // Writing a faithful copy as root: set owners and modes, write into copied dirs.
            capabilities,
            credentials: Vec::new(),
            trusted: self
                .exclude_from
                .iter()
                .map(|f| f.get_ref().clone())
                .collect(),
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

    fn excludes(&self) -> crate::stages::ToolExcludes {
        crate::stages::ToolExcludes {
            dialect: crate::stages::Dialect::Rsync,
            patterns: self.exclude.clone(),
            files: self
                .exclude_from
                .iter()
                .map(|f| f.get_ref().clone())
                .collect(),
            exclude_caches: false,
        }
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let destination = self.destination.get_ref();
        if self.rotate.is_some() {
            prepare_subvolume(Path::new(destination.trim_end_matches('/')))?;
        } else if !is_remote(destination) {
            std::fs::create_dir_all(destination).map_err(|e| {
                StageError::io(format!("cannot create the destination {destination}"), e)
            })?;
        }
        let mut warnings = Vec::new();
        let mark = if is_remote(destination) {
            None
        } else {
            let mark = leftovers::RunMark::path(&ctx.state_dir, &ctx.stage.name);
            if let Some(started) = leftovers::RunMark::left_behind(&mark) {
                remove_leftovers(ctx, Path::new(destination), started, &mut warnings);
            }
            Some(leftovers::RunMark::set(mark).map_err(|e| {
                StageError::io(
                    format!("cannot mark the run in {}", ctx.state_dir.display()),
                    e,
                )
            })?)
        };
        ctx.report.status("rsync: copying");
        let mut figures = Figures::default();
        let finished = Command::new("rsync")
            .args(self.bwlimit_args(crate::bandwidth::now()))
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
            .run();
        // rsync has ended: on SIGTERM it removes its own temporary files, so the mark goes.
        // Killed by a signal (the OOM killer's SIGKILL hits rsync alone), it could not: the
        // mark stays, and the next run removes what it left.
        let killed = matches!(finished, Err(ToolError::Killed { .. }));
        if let Some(mark) = mark
            && !killed
        {
            mark.clear();
        }
        let finished = finished?;
        if finished.code == VANISHED {
            warnings.push(format!(
                "some source files vanished during the copy (rsync exit 24); normal on a live system: {}",
                finished.stderr_tail.lines().next().unwrap_or("")
            ));
        }
        if let Some(rotate) = &self.rotate {
            ctx.report.status("rsync: rotating snapshots");
            let rotate = rotate.get_ref();
            let plan = crate::rotate::apply(
                Path::new(destination.trim_end_matches('/')),
                jiff::Timestamp::now(),
                rotate.every(),
                rotate.keep(),
            )
            .map_err(|error| StageError::Failed(format!("rotation: {error}")))?;
            match &plan.take {
                Some(name) => tracing::info!(
                    "snapshot {name} taken; {} old snapshot(s) removed",
                    plan.remove.len()
                ),
                None => tracing::info!("rotation not due yet: no snapshot taken"),
            }
        }
        Ok(Outcome { warnings, figures })
    }
}

/// Removes what a killed run left in the destination; a failure to is a warning, not a
/// reason to skip the backup. Under the stage's lock (`ctx.lock`): no other run is writing.
fn remove_leftovers(
    ctx: &StageContext,
    destination: &Path,
    since: std::time::SystemTime,
    warnings: &mut Vec<String>,
) {
    match leftovers::remove(ctx.lock, destination, since) {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => tracing::info!(
            "removed {} partial file(s) an earlier run left in {} when it was killed: {}",
            removed.len(),
            destination.display(),
            removed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(error) => warnings.push(format!(
            "could not look for partial files an earlier, killed run left in {}: {error}",
            destination.display()
        )),
    }
}

/// A rotating destination must be a btrfs subvolume: created as one when missing, refused
/// when it is a plain directory (its snapshots could not be taken).
fn prepare_subvolume(path: &Path) -> Result<(), StageError> {
    use crate::btrfs;
    if !path.exists() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StageError::io(format!("cannot create {}", parent.display()), e))?;
        }
        return btrfs::create_subvolume(path).map_err(|error| {
            StageError::Failed(format!(
                "cannot create the subvolume {} for `rotate` (is it on btrfs?): {error}",
                path.display()
            ))
        });
    }
    if !btrfs::is_subvolume(path) {
        return Err(StageError::Preflight(format!(
            "{} is a plain directory, but `rotate` needs a btrfs subvolume; move it aside and let the next run create the subvolume",
            path.display()
        )));
    }
    Ok(())
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

    /// Issue 11: a `'` in `ssh_key` or `ssh_options` ended the single quotes of the `--rsh`
    /// value and added words to the ssh command line rsync runs. Real rsync splits the value
    /// here; a fake `ssh` first in PATH records the argv it got.
    #[test]
    fn rsh_quote_injection_in_ssh_options_and_key() {
        let dir = ssh::fake_ssh();
        let key = "/keys/it's here\\\"x\"";
        let spec: Spec = toml::from_str(&format!(
            "sources = [\"/nonexistent/src\"]\ndestination = \"injhost:dst\"\n\
             ssh_key = {}\nssh_options = {}\n",
            toml::Value::from(key),
            toml::Value::from(ssh::HOSTILE.to_vec()),
        ))
        .expect("spec");
        let mut args = spec.arguments();
        // Only the ssh call matters: rsync fails after it, on the missing source or the fake.
        args.retain(|a| !a.starts_with("--info") && a != "--acls" && a != "--xattrs");
        let status = std::process::Command::new("rsync")
            .args(&args)
            .env("PATH", ssh::path_with(dir.path()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("this test needs rsync: run scripts/setup-deps");
        assert!(!status.success());
        let mut expected = vec!["-o", "BatchMode=yes", "-i", key];
        for option in ssh::HOSTILE {
            expected.extend(["-o", option]);
        }
        assert_eq!(ssh::ssh_options_seen(dir.path(), "injhost"), expected);
    }

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
