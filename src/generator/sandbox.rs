//! What the generated sandbox would hide from a stage, found before any unit is written.
//!
//! Every unit of ours runs with `PrivateTmp=` (its own, empty /tmp and /var/tmp),
//! `PrivateDevices=` (a /dev with pseudo devices only) and `ProtectSystem=strict` plus
//! `ReadWritePaths=` from the stage's [`Needs`](crate::needs::Needs). A config naming a source, destination,
//! secret or the config file itself under /tmp validates, generates, and then fails at run
//! time with a bare "No such file or directory", or worse writes into a private /tmp that is
//! deleted after the run. `check` and `generate` refuse such a config instead, naming the
//! directive and the config key. The paths come from the same `own_needs` the generator
//! turns into `ReadWritePaths=`, so the two cannot disagree.
//!
//! `run --here` has no sandbox: it only warns (see `crate::commands::run`).

use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use crate::config::{Config, ConfigError};

/// How a stage (or unit) uses a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Reads,
    Writes,
    /// A secret file the stage (or the notifier) reads.
    Secret,
    /// The config file, which every `ExecStart=` passes with `--config`.
    Config,
    /// The backupctl binary of `ExecStart=`.
    Binary,
}

/// One path the sandbox would hide or leave read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub how: Use,
    /// The TOML table naming it (`stage.copy`, `notify`, `metrics`); `None`: not in the file.
    pub table: Option<String>,
    /// The unit directive responsible, e.g. `PrivateTmp=`.
    pub directive: &'static str,
    /// What the directive does to the path, for the message.
    pub effect: &'static str,
}

/// Why a path is out of a stage's reach, or `None` when the sandbox leaves it as it is.
fn hidden(path: &Path, how: Use) -> Option<(&'static str, &'static str)> {
    let path = normalize(path);
    let under = |root: &str| path.starts_with(root);
    if under("/tmp") || under("/var/tmp") {
        return Some((
            "PrivateTmp=",
            "the units get their own empty /tmp and /var/tmp, deleted after each run",
        ));
    }
    if under("/dev") && how != Use::Config {
        return Some((
            "PrivateDevices=",
            "the units see a private /dev holding pseudo devices only",
        ));
    }
    if how == Use::Writes && (under("/proc") || under("/sys")) {
        return Some((
            "ProtectSystem=strict",
            "the units see /proc and /sys read-only, and `ReadWritePaths=` cannot open them",
        ));
    }
    None
}

/// `..` and `.` resolved by text, so `/srv/../tmp/x` is seen as the /tmp path it is.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Every path of the config that the generated units would hide or leave read-only.
/// `binary`: the `ExecStart=` binary when units are about to be written.
pub fn problems(config: &Config, binary: Option<&Path>) -> Vec<Problem> {
    let mut found = Vec::new();
    let mut add = |path: &Path, how: Use, table: Option<String>| {
        if !path.is_absolute() {
            // Remote locations (`host:path`, `s3:…`) never reach here; relative paths are
            // refused by the loader.
            return;
        }
        if let Some((directive, effect)) = hidden(path, how) {
            let problem = Problem {
                path: path.to_path_buf(),
                how,
                table,
                directive,
                effect,
            };
            if !found.contains(&problem) {
                found.push(problem);
            }
        }
    };
    add(&config.file, Use::Config, None);
    if let Some(binary) = binary {
        add(binary, Use::Binary, None);
    }
    for stage in &config.stages {
        let table = Some(format!("stage.{}", stage.name));
        // The stage's own needs: what its unit needs of its whole job (hello's probes) is
        // reported at the stages it belongs to.
        let needs = super::own_needs(stage);
        for path in &needs.writes {
            add(path, Use::Writes, table.clone());
        }
        for path in needs.sources.iter().chain(&stage.spec.other_reads()) {
            add(path, Use::Reads, table.clone());
        }
        // LoadCredential= is read by the manager outside the sandbox: those are fine.
        let credentials: Vec<&PathBuf> = needs.credentials.iter().map(|(_, p)| p).collect();
        for path in needs.secrets.iter().filter(|p| !credentials.contains(p)) {
            add(path, Use::Secret, table.clone());
        }
    }
    if let Some(notify) = &config.notify {
        for secret in notify.secrets() {
            if let crate::config::notify::Secret::File(path) = secret {
                add(path, Use::Secret, Some("notify".into()));
            }
        }
    }
    if let Some(metrics) = &config.metrics {
        add(metrics.directory(), Use::Writes, Some("metrics".into()));
    }
    found
}

/// All problems of a config, each located in its file; shown one after the other.
#[derive(Debug, thiserror::Error)]
pub struct Hidden(pub Vec<ConfigError>);

impl fmt::Display for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n\nerror: ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Refuses a config whose units would hide one of its paths, each error pointed at its key in
/// the config's text (the model keeps no positions).
pub fn check(config: &Config, binary: Option<&Path>) -> Result<(), Hidden> {
    let errors: Vec<ConfigError> = problems(config, binary)
        .iter()
        .map(|problem| located(config, problem))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Hidden(errors))
    }
}

/// One line per problem, for `run --here`, which runs without a sandbox.
pub fn warnings(config: &Config) -> Vec<String> {
    problems(config, None)
        .iter()
        .map(|p| {
            format!(
                "{} is hidden from the units by {} ({}): `run --here` can use it, the timer's runs cannot",
                p.path.display(),
                p.directive,
                p.effect
            )
        })
        .collect()
}

fn located(config: &Config, problem: &Problem) -> ConfigError {
    let text = &config.text;
    let path = problem.path.display();
    let what = match problem.how {
        Use::Reads => "reads",
        Use::Writes => "writes",
        Use::Secret => "reads the secret",
        Use::Config | Use::Binary => "",
    };
    let fix = if problem.directive == "PrivateTmp=" {
        "move it out of /tmp and /var/tmp (e.g. under /srv, /var/backups or your home) and change the path here; `backupctl run --here`, which has no sandbox, can still use it"
    } else {
        "use a path outside /dev, /proc and /sys"
    };
    match (&problem.how, &problem.table) {
        (Use::Config, _) => ConfigError::whole_file(
            &config.file,
            format!(
                "the config file {path} is hidden from the units by `{}` ({}): every stage would fail with \"cannot read the config\"",
                problem.directive, problem.effect
            ),
            Some("move it, e.g. to /etc/backupctl/config.toml (or ~/.config/backupctl/config.toml with --user), and pass that path with --config".into()),
        ),
        (Use::Binary, _) => ConfigError::whole_file(
            &config.file,
            format!(
                "the backupctl binary {path} is hidden from the units by `{}` ({})",
                problem.directive, problem.effect
            ),
            Some("install backupctl outside /tmp (e.g. /usr/local/bin), or pass --binary PATH".into()),
        ),
        (_, table) => {
            let (span, key) = find(text, table.as_deref(), &problem.path);
            let owner = match table.as_deref().and_then(|t| t.strip_prefix("stage.")) {
                Some(stage) => format!("stage `{stage}`"),
                None => format!("[{}]", table.as_deref().unwrap_or("config")),
            };
            let key = key.map(|k| format!("`{k}`: ")).unwrap_or_default();
            ConfigError::at(
                &config.file,
                text,
                span,
                format!(
                    "{key}{owner} {what} {path}, which `{}` hides from its unit ({})",
                    problem.directive, problem.effect
                ),
                Some(fix.into()),
            )
        }
    }
}

/// The span of `path` in the table `[table]` of the text, and the key it belongs to (the
/// last `key =` before it in the table). Falls back to the table's header.
fn find(text: &str, table: Option<&str>, path: &Path) -> (Option<Range<usize>>, Option<String>) {
    let (start, end, header) = match table.and_then(|t| table_range(text, t)) {
        Some((start, end, header)) => (start, end, Some(header)),
        None => (0, text.len(), None),
    };
    let needle = path.to_string_lossy();
    let Some(at) = text[start..end].find(needle.as_ref()).map(|i| start + i) else {
        return (header, None);
    };
    let key = text[start..at].lines().rev().find_map(|line| {
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        (!key.is_empty() && !key.starts_with('[') && !key.contains(['"', '\'', ' ']))
            .then(|| key.to_string())
    });
    (Some(at..at + needle.len()), key)
}

/// Where the table `[name]` starts and ends in the text, and the span of its header.
fn table_range(text: &str, name: &str) -> Option<(usize, usize, Range<usize>)> {
    let header = format!("[{name}]");
    let mut offset = 0;
    let mut found: Option<(usize, Range<usize>)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        match &found {
            None if trimmed == header => {
                let indent = line.len() - line.trim_start().len();
                found = Some((
                    offset + line.len(),
                    offset + indent..offset + indent + header.len(),
                ));
            }
            Some((start, span)) if trimmed.starts_with('[') => {
                return Some((*start, offset, span.clone()));
            }
            _ => {}
        }
        offset += line.len();
    }
    found.map(|(start, span)| (start, text.len(), span))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(Path::new("/etc/backupctl/config.toml"), text).unwrap()
    }

    #[test]
    fn destination_under_tmp_names_private_tmp_and_the_key() {
        let text = "[stage.copy]\nkind = \"rsync\"\nsources = [\"/srv/data/\"]\ndestination = \"/tmp/backup\"\n";
        let error = check(&config(text), None).unwrap_err();
        assert_eq!(error.0.len(), 1, "{error}");
        let shown = error.to_string();
        assert!(shown.contains("`destination`"), "{shown}");
        assert!(shown.contains("stage `copy` writes /tmp/backup"), "{shown}");
        assert!(shown.contains("`PrivateTmp=`"), "{shown}");
        assert!(shown.contains("config.toml:4:16"), "{shown}");
        assert!(shown.contains("help: move it out of /tmp"), "{shown}");
    }

    #[test]
    fn sources_secrets_and_repositories_are_seen_through() {
        let text = "[stage.b2]\nkind = \"restic\"\nrepository = \"/var/tmp/repo\"\npassword_file = \"/tmp/pw\"\npaths = [\n  \"/home\",\n  \"/tmp/work\",\n]\n";
        let found = problems(&config(text), None);
        let paths: Vec<_> = found.iter().map(|p| (p.path.clone(), p.how)).collect();
        assert!(
            paths.contains(&(PathBuf::from("/var/tmp/repo"), Use::Writes)),
            "{paths:?}"
        );
        assert!(paths.contains(&(PathBuf::from("/tmp/pw"), Use::Secret)));
        assert!(paths.contains(&(PathBuf::from("/tmp/work"), Use::Reads)));
        let shown = check(&config(text), None).unwrap_err().to_string();
        // A path inside a multi-line array is attributed to its key.
        assert!(
            shown.contains("`paths`: stage `b2` reads /tmp/work"),
            "{shown}"
        );
        assert!(shown.contains("config.toml:7:4"), "{shown}");
    }

    #[test]
    fn config_file_under_tmp_is_refused_and_clean_configs_pass() {
        let text = "[stage.copy]\nkind = \"rsync\"\nsources = [\"/srv/data/\"]\ndestination = \"/mnt/backup\"\n";
        assert!(check(&config(text), None).is_ok());
        assert!(check(&config(text), Some(Path::new("/usr/bin/backupctl"))).is_ok());
        let in_tmp = crate::config::parse(Path::new("/tmp/c.toml"), text).unwrap();
        let shown = check(&in_tmp, None).unwrap_err().to_string();
        assert!(shown.contains("the config file /tmp/c.toml"), "{shown}");
        assert!(shown.contains("PrivateTmp="), "{shown}");
    }

    #[test]
    fn writes_into_proc_are_read_only() {
        let text =
            "[stage.x]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\nwrites = [\"/proc/sys/vm\"]\n";
        let found = problems(&config(text), None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].directive, "ProtectSystem=strict");
    }
}
