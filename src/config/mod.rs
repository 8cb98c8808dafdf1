//! The TOML config: its model, where it lives, and how it is loaded and validated.
//!
//! Loading is strict: unknown keys, unknown stages in `after`, cycles, duplicate names, bad
//! durations and calendars are all errors that point at file, line and column. Nothing is
//! generated or run from a config that did not validate whole.

pub mod calendar;
pub mod conditions;
pub mod coverage;
mod defaults;
pub mod duration;
pub mod error;
mod job;
pub mod limits;
mod load;
pub mod metrics;
pub mod notify;
pub mod pathname;
mod repository;
pub mod size;
mod snapshot;
mod source;
mod stage;
pub mod store;
pub mod text;
mod timer;
pub mod units;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

pub use duration::Timespan;
pub use error::ConfigError;
pub use load::parse;
pub use metrics::Metrics;
pub use notify::Notify;
pub use store::Store;
pub use units::Units;

use crate::paths::Scope;
use crate::stages::KindSpec;

/// The name of the job that `[job]` describes; its units are `backup-job.service/.timer`.
pub const DEFAULT_JOB: &str = "job";

/// A whole, validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (absolute when loaded from disk); baked into `ExecStart=`.
    pub file: PathBuf,
    /// The text it was parsed from: problems found after loading (paths the units' sandbox
    /// would hide) are located in it without reading the file a second time.
    pub text: String,
    pub jobs: Vec<Job>,
    /// All stages of all jobs, in file order.
    pub stages: Vec<Stage>,
    /// Encrypted stores (`[store.NAME]`), in file order.
    pub stores: Vec<Store>,
    /// Declared restic repositories (`[repository.NAME]`), in file order; the stages that
    /// name one hold its keys in their own spec already.
    pub repositories: Vec<crate::stages::Repository>,
    /// Where failures (and, if asked, successes) are reported (`[notify]`).
    pub notify: Option<Notify>,
    /// The Prometheus text file (`[metrics]`).
    pub metrics: Option<Metrics>,
    /// What `backupctl coverage` walks and ignores (`[coverage]`).
    pub coverage: Option<coverage::Coverage>,
    /// Settings of the generated units themselves (`[units]`).
    pub units: Units,
    /// Limits of the slice all stage units run in together (`[slice]`).
    pub slice: limits::Limits,
    /// `stages` by name, built on the first [`Config::stage`]: the generator looks up every
    /// stage's parents, and a search each time made a long chain quadratic.
    pub(crate) stage_index: std::sync::OnceLock<std::collections::HashMap<String, usize>>,
}

/// A job: one `backup-NAME.service` that pulls in its stages, and optionally a timer.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub name: String,
    pub description: Option<String>,
    /// `OnCalendar=` of the job's timer; no timer when absent.
    pub schedule: Option<String>,
    pub randomized_delay: Option<Timespan>,
    pub persistent: bool,
    /// `OnBootSec=`: also run this long after boot (NixOS `timerConfig.OnBootSec`).
    pub on_boot: Option<Timespan>,
    /// `AccuracySec=` (systemd's default is 1min).
    pub accuracy: Option<Timespan>,
    /// `WakeSystem=`: wake the machine from suspend for the job.
    pub wake_system: bool,
    /// Keep the machine from suspending (and idling) while a stage of the job runs: a logind
    /// inhibitor lock the executor holds (see `crate::executor`).
    pub inhibit_sleep: bool,
    /// More `[Timer]` directives (`timer = { OnActiveSec = "5min" }`), checked: name and
    /// the value as written into the unit.
    pub timer: Vec<(String, String)>,
    /// System scope only: run the stages as this user/group instead of root.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Resource limits every stage of the job gets unless it sets the key itself.
    pub limits: limits::Limits,
    /// Bandwidth keys (`upload_limit`, `bandwidth`, …) every stage of the job whose kind takes
    /// the key gets unless it sets the key itself.
    pub bandwidth: Vec<BandwidthDefault>,
}

/// A job's bandwidth key, as written: a stage takes it into its own table (with these
/// positions, so a value its kind refuses is reported where the job writes it).
#[derive(Debug, Clone, PartialEq)]
pub struct BandwidthDefault {
    /// `upload_limit`, `download_limit` or `bandwidth` (`stages::bandwidth_keys`).
    pub key: &'static str,
    /// The value: a rate or a timetable, checked when the job is read.
    pub text: String,
    pub key_span: std::ops::Range<usize>,
    pub span: std::ops::Range<usize>,
}

/// One stage: an instance `backup@NAME.service` of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub job: String,
    pub description: Option<String>,
    /// Stages this one runs after (resolved: file order unless `after` was given).
    pub after: Vec<String>,
    /// `false`: the stage may fail without failing the job or stopping its dependents.
    pub required: bool,
    pub timeout: Option<Timespan>,
    pub nice: Option<i32>,
    pub io_class: Option<IoClass>,
    pub cpu_weight: Option<u32>,
    /// Resource limits (`memory_max`, …): the stage's own over its job's.
    pub limits: limits::Limits,
    /// Skip the stage cleanly unless this is a mount point (e.g. a USB disk).
    pub when_mounted: Option<PathBuf>,
    pub environment: IndexMap<String, String>,
    /// `EnvironmentFile=`: files of `KEY=VALUE` lines systemd reads into the stage's
    /// environment (backend keys), never read or shown by backupctl itself.
    pub environment_files: Vec<PathBuf>,
    /// `snapshot = "btrfs"|"auto"`: read the sources from btrfs snapshots (see `crate::snapshot`).
    pub snapshot: Option<crate::snapshot::Settings>,
    /// The store this stage writes into (`store = "NAME"`), or reads from (a drill of a stage
    /// that writes into one); its unit requires the store's.
    pub store: Option<String>,
    /// `ExecStopPost=`: a command run after the stage, whether it succeeded, failed or was
    /// stopped, in the stage's sandbox.
    pub cleanup: Option<Vec<String>>,
    /// `lock_wait`: how long the stage waits for a repository another stage holds (the
    /// local lock, and restic's own on a repository other hosts share); `None`: the default,
    /// `repo_lock::DEFAULT_WAIT`.
    pub lock_wait: Option<Timespan>,
    /// `on_ac_power`, `skip_on_metered`: when the stage is skipped.
    pub conditions: conditions::Conditions,
    pub spec: KindSpec,
}

impl Stage {
    /// What the stage needs: its kind's needs, and its `environment_file`s, which `hello`
    /// checks like the secrets they usually hold (present, not readable by others).
    pub fn needs(&self) -> crate::needs::Needs {
        let mut needs = self.spec.needs();
        needs.merge(crate::needs::Needs {
            secrets: self.environment_files.clone(),
            ..Default::default()
        });
        needs
    }
}

/// `IOSchedulingClass=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    Idle,
    BestEffort,
    Realtime,
}

impl IoClass {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "idle" => Some(IoClass::Idle),
            "best-effort" => Some(IoClass::BestEffort),
            "realtime" => Some(IoClass::Realtime),
            _ => None,
        }
    }

    pub fn as_systemd(self) -> &'static str {
        match self {
            IoClass::Idle => "idle",
            IoClass::BestEffort => "best-effort",
            IoClass::Realtime => "realtime",
        }
    }
}

impl Config {
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|job| job.name == name)
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let index = self.stage_index.get_or_init(|| {
            self.stages
                .iter()
                .enumerate()
                .map(|(i, stage)| (stage.name.clone(), i))
                .collect()
        });
        match index.get(name).and_then(|&i| self.stages.get(i)) {
            Some(stage) if stage.name == name => Some(stage),
            // `stages` changed after the index was built: search, as before the index.
            _ => self.stages.iter().find(|stage| stage.name == name),
        }
    }

    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores.iter().find(|store| store.name == name)
    }

    /// The stages of one job, in file order.
    pub fn stages_of<'a>(&'a self, job: &'a str) -> impl Iterator<Item = &'a Stage> + 'a {
        self.stages.iter().filter(move |stage| stage.job == job)
    }

    /// A job's stages in file order, and for each the indices of the stages it runs after.
    pub fn job_graph<'a>(&'a self, job: &'a str) -> (Vec<&'a Stage>, Vec<Vec<usize>>) {
        let stages: Vec<&Stage> = self.stages_of(job).collect();
        // By name: a search per `after` entry made `check` quadratic in the stage count.
        let index: std::collections::HashMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, stage)| (stage.name.as_str(), i))
            .collect();
        let edges = stages
            .iter()
            .map(|stage| {
                stage
                    .after
                    .iter()
                    .filter_map(|parent| index.get(parent.as_str()).copied())
                    .collect()
            })
            .collect();
        (stages, edges)
    }

    /// Reads and validates a config file: a regular file of at most [`MAX_CONFIG_SIZE`]
    /// (a FIFO, device or directory is refused at once instead of blocking or filling memory).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use crate::paths::ReadError;
        let cannot_read = |error: ReadError| {
            let help = match &error {
                ReadError::Io(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    "create it (`man backupctl.toml` explains every key; the Debian package has examples in /usr/share/doc/backupctl/examples/), or pass --config FILE".into()
                }
                ReadError::Io(_) => "check the file's permissions".into(),
                ReadError::NotRegular(_) => "pass the path of the config file itself".into(),
                ReadError::TooLarge { .. } => {
                    "is this the config? a config this large is not supported".into()
                }
            };
            ConfigError::whole_file(path, format!("cannot read the config: {error}"), Some(help))
        };
        let data = crate::paths::read_regular(path, MAX_CONFIG_SIZE).map_err(cannot_read)?;
        let text = String::from_utf8(data).map_err(|error| {
            ConfigError::whole_file(
                path,
                format!("cannot read the config: not UTF-8 text ({error})"),
                Some("save the file as UTF-8".into()),
            )
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        check_trust(&absolute)?;
        parse(&absolute, &text)
    }
}

/// Refuses a config someone other than its reader (and root) can change, or any directory on
/// the way to it: its stages run as the reader (`crate::trust`, docs/security.md). A load
/// error like a syntax error, so `check`, `generate`, `run`, `stage` and the boot-time
/// generator all refuse it the same way.
fn check_trust(path: &Path) -> Result<(), ConfigError> {
    crate::trust::check(path, "the config", crate::trust::Reader::current()).map_err(|error| {
        ConfigError::whole_file(
            path,
            error.problem(),
            Some(format!(
                "run: {}\n(a config only its user and root may change, as sudo and sshd \
                 require: docs/security.md)",
                error.fix()
            )),
        )
    })
}

/// The largest config file read (50 000 stages take about 3 MiB).
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// The default config file of a scope: `/etc/backupctl/config.toml`, or
/// `$XDG_CONFIG_HOME/backupctl/config.toml` (default `~/.config/…`) for a user.
pub fn default_path(scope: Scope) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from("/etc/backupctl/config.toml"),
        Scope::User => crate::paths::xdg_config_home().join("backupctl/config.toml"),
    }
}
