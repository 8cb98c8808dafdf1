//! The unit generator: config in, systemd units out. Used by `backupctl generate` and by the
//! real systemd generator (same code, see `crate::cli::generator_main`).
//!
//! What it writes, for each job `J` and stage `S`:
//! - `backup@.service`: the hardened template every stage is an instance of;
//! - `backup@S.service.d/backupctl.conf`: the stage's order (`Requires=`/`Wants=` +
//!   `After=` on its parents), its settings and exactly the extra rights it needs;
//! - `backup-J.service`: pulls in its stages (`Requires=` for required ones, `Wants=` for the
//!   others) and runs after them, so `systemctl start backup-J` runs the whole DAG and fails
//!   when a required stage fails;
//! - `backup-J.timer` (when the job has a schedule), enabled through `timers.target.wants/`;
//! - `backup-skips@J.service` (when a stage of J has `when_mounted` or `on_ac_power`): records
//!   the stages systemd skipped by those conditions, however the job ends;
//! - with `[notify]`: `backup-notify@.service` and `OnFailure=`/`OnSuccess=` routing to it
//!   (see [`notify`]).
//!
//! Rendering is pure (no I/O), so a bad config never leaves half a unit set: writing happens
//! only after everything rendered (see [`write`](mod@write)).

pub mod config_error;
pub mod escape;
pub mod notify;
pub mod sandbox;
pub mod store;
pub mod write;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{Config, Job, Stage};
use crate::paths::Scope;
use crate::stages::Needs;
use crate::units;

/// How the units call back into backupctl.
#[derive(Debug, Clone)]
pub struct Options {
    pub scope: Scope,
    /// Absolute path of the backupctl binary for `ExecStart=`.
    pub binary: PathBuf,
}

/// One file of the generated set, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub path: PathBuf,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// A relative symlink, for `*.wants/` enablement.
    Symlink(PathBuf),
}

/// A path that goes into every unit but cannot be written in one.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {what} path {path:?} holds {flaw}, which cannot be written into a unit file (it goes \
     into every unit's ExecStart=): {help}"
)]
pub struct UnfitPath {
    what: &'static str,
    path: PathBuf,
    flaw: crate::config::text::Flaw,
    help: &'static str,
}

/// Checks the two paths the loader never sees, the config file's own and the binary's, by the
/// rule every config string follows (`crate::config::text`). Run before [`render`].
pub fn check_paths(config: &Config, options: &Options) -> Result<(), UnfitPath> {
    for (what, path, help) in [
        (
            "config",
            &config.file,
            "rename or move the file, or pass another --config",
        ),
        (
            "backupctl binary",
            &options.binary,
            "install backupctl at a plain path such as /usr/bin/backupctl, or pass --binary",
        ),
    ] {
        if let Some(flaw) = crate::config::text::flaw(&path.to_string_lossy()) {
            return Err(UnfitPath {
                what,
                path: path.clone(),
                flaw,
                help,
            });
        }
    }
    Ok(())
}

/// Renders the whole unit set of a config.
pub fn render(config: &Config, options: &Options) -> Vec<UnitFile> {
    let mut files = vec![
        text(units::STAGE_TEMPLATE, template(config, options)),
        text(units::SLICE, slice(config)),
    ];
    for job in &config.jobs {
        files.push(text(
            &units::job_service(&job.name),
            job_service(config, job, options),
        ));
        if skipped_by_systemd(config, job) {
            files.push(text(
                &units::skips_service(&job.name),
                skips_service(config, job, options),
            ));
        }
        if job.schedule.is_some() {
            let timer = units::job_timer(&job.name);
            files.push(text(&timer, job_timer(config, job)));
            files.push(UnitFile {
                path: Path::new("timers.target.wants").join(&timer),
                content: Content::Symlink(Path::new("..").join(&timer)),
            });
        }
    }
    if !config.stores.is_empty() {
        files.push(text(
            units::STORE_TEMPLATE,
            store::template(config, options),
        ));
        for each in &config.stores {
            files.push(UnitFile {
                path: Path::new(&format!("{}.d", each.unit())).join(units::DROP_IN),
                content: Content::Text(store::drop_in(config, each)),
            });
        }
    }
    if let Some(settings) = &config.notify {
        files.push(text(
            units::NOTIFY_TEMPLATE,
            notify::template(config, settings, options),
        ));
        if settings.pings_on_start() {
            files.push(text(
                units::NOTIFY_START_TEMPLATE,
                notify::start_template(config, settings, options),
            ));
        }
    }
    for stage in &config.stages {
        let path =
            Path::new(&format!("{}.d", units::stage_service(&stage.name))).join(units::DROP_IN);
        files.push(UnitFile {
            path,
            content: Content::Text(stage_drop_in(config, stage, options)),
        });
    }
    files
}

fn text(path: &str, content: String) -> UnitFile {
    UnitFile {
        path: PathBuf::from(path),
        content: Content::Text(content),
    }
}

fn header(config: &Config) -> String {
    format!(
        "# Generated by backupctl from {}. Do not edit: change the config, then run\n\
         # `backupctl generate` (or `systemctl daemon-reload` where the generator is installed).\n",
        escape::comment(&config.file.to_string_lossy())
    )
}

/// `BIN --config FILE [--user] VERB ARGS…`, escaped for `Exec*=`.
fn exec_line(config: &Config, options: &Options, verb: &[&str]) -> String {
    let mut words = vec![
        escape::exec_arg(&options.binary.to_string_lossy()),
        "--config".to_string(),
        escape::exec_arg(&config.file.to_string_lossy()),
    ];
    if options.scope == Scope::User {
        words.push("--user".into());
    }
    // Verb arguments may be specifiers (`%i`), so they are not escaped here.
    words.extend(verb.iter().map(|s| s.to_string()));
    words.join(" ")
}

/// The sandbox every unit of ours starts from. Stage drop-ins open exactly what they need.
const HARDENING: &str = "\
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
PrivateIPC=yes
PrivateMounts=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_UNIX
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@mount @swap @reboot @raw-io @module @obsolete @cpu-emulation @debug
SystemCallErrorNumber=EPERM
UMask=0077
";

/// Root keeps only the right to read everything; stages that write as root add theirs.
const BASE_CAPABILITIES: &str = "CAP_DAC_READ_SEARCH";

fn template(config: &Config, options: &Options) -> String {
    let mut unit = header(config);
    unit.push_str(
        "\n[Unit]\n\
         Description=backupctl stage %i\n\
         Documentation=man:backupctl(1)\n\
         # Stages are pulled in by their job; each stage's drop-in adds its order and rights.\n\
         \n[Service]\n\
         Type=oneshot\n",
    );
    // A stage a manual run holds (`run --here`, `backupctl stage`) is waited for, not
    // failed: the timer's run follows the manual one instead of failing the job.
    let _ = writeln!(
        unit,
        "ExecStart={}",
        exec_line(config, options, &["stage", "--wait", "%i"])
    );
    search_path(&mut unit, config);
    unit.push_str(
        "NotifyAccess=main\n\
         # SIGTERM reaches backupctl, which stops its tool cleanly before exiting.\n\
         KillMode=mixed\n\
         TimeoutStopSec=2min\n\
         # A background job yields to interactive work.\n\
         Nice=10\n\
         IOSchedulingClass=idle\n\
         CPUWeight=20\n",
    );
    // Every stage in one slice: `[slice]` limits cap them together, `systemd-cgls` groups them.
    let _ = writeln!(unit, "Slice={}", units::SLICE);
    stage_end_hook(&mut unit, config, options);
    state_directories(&mut unit, config, options, true);
    metrics_directory(&mut unit, config);
    unit.push_str("# Sandbox.\n");
    let _ = writeln!(unit, "CapabilityBoundingSet={BASE_CAPABILITIES}");
    unit.push_str(HARDENING);
    unit
}

/// `ExecStopPost=… stage-ended %i`: after every end of the stage, systemd's view of it
/// (`$SERVICE_RESULT`) reaches the record, so a stage its memory limit killed says so
/// (`crate::stage_ended`). "-": what it reports never changes the unit's result.
fn stage_end_hook(unit: &mut String, config: &Config, options: &Options) {
    let _ = writeln!(
        unit,
        "ExecStopPost=-{}",
        exec_line(config, options, &["stage-ended", "%i"])
    );
}

/// The slice of all stage units, with the `[slice]` limits.
fn slice(config: &Config) -> String {
    let mut unit = header(config);
    unit.push_str(
        "\n[Unit]\n\
         Description=backupctl stages\n\
         Documentation=man:backupctl(1)\n\
         \n[Slice]\n",
    );
    limit_lines(&mut unit, &config.slice);
    unit
}

/// One resource-control directive per limit (`crate::config::limits`). Written as they
/// are: systemd reads these values without expanding specifiers (`50%` is not `50%%`), and
/// the loader let through only numbers, sizes and paths without `%`.
fn limit_lines(unit: &mut String, limits: &crate::config::limits::Limits) {
    for (_, directive, value) in limits.directives() {
        let _ = writeln!(unit, "{directive}={value}");
    }
}

fn job_service(config: &Config, job: &Job, options: &Options) -> String {
    let stages: Vec<&Stage> = config.stages_of(&job.name).collect();
    let mut unit = header(config);
    unit.push_str("\n[Unit]\n");
    let description = job
        .description
        .clone()
        .unwrap_or_else(|| format!("backupctl job {}", job.name));
    let _ = writeln!(unit, "Description={}", escape::value(&description));
    unit.push_str("Documentation=man:backupctl(1)\n");
    let required: Vec<String> = stages
        .iter()
        .filter(|s| s.required)
        .map(|s| units::stage_service(&s.name))
        .collect();
    let optional: Vec<String> = stages
        .iter()
        .filter(|s| !s.required)
        .map(|s| units::stage_service(&s.name))
        .collect();
    if !required.is_empty() {
        let _ = writeln!(unit, "Requires={}", required.join(" "));
    }
    if !optional.is_empty() {
        let _ = writeln!(unit, "Wants={}", optional.join(" "));
    }
    let all: Vec<String> = stages
        .iter()
        .map(|s| units::stage_service(&s.name))
        .collect();
    if skipped_by_systemd(config, job) {
        // After it: `job-finished` then reads the skips it recorded.
        let skips = units::skips_service(&job.name);
        let _ = writeln!(unit, "Wants={skips}\nAfter={skips}");
    }
    let _ = writeln!(unit, "After={}", all.join(" "));
    // `systemctl stop backup-JOB` stops the running stages too (Requires= alone does not).
    let _ = writeln!(unit, "PropagatesStopTo={}", all.join(" "));
    if let Some(settings) = &config.notify {
        unit.push_str(&notify::job_lines(settings, &job.name));
    }
    unit.push_str("\n[Service]\nType=oneshot\n");
    let _ = writeln!(
        unit,
        "ExecStart={}",
        exec_line(config, options, &["job-finished", &job.name])
    );
    job_service_rights(&mut unit, config, job, options);
    unit
}

/// Whether a stage of `job` has a condition systemd checks itself (`when_mounted`,
/// `on_ac_power`): such a skip runs nothing of ours, so the job needs `backup-skips@JOB`.
fn skipped_by_systemd(config: &Config, job: &Job) -> bool {
    config
        .stages_of(&job.name)
        .any(|s| s.when_mounted.is_some() || s.conditions.on_ac_power)
}

/// `backup-skips@JOB.service`: `record-skips JOB` once every stage of the job has ended,
/// whether the job succeeded or not. The job unit `Wants=` it, so it is in every start's
/// transaction; `Wants=` (not `Requires=`) and its own `After=` on the stages make it run
/// when a required stage failed too, when systemd fails the job unit's start job at once
/// and `job-finished` never runs, or when the job is stopped.
fn skips_service(config: &Config, job: &Job, options: &Options) -> String {
    let mut unit = header(config);
    unit.push_str("\n[Unit]\n");
    let _ = writeln!(
        unit,
        "Description=backupctl job {}: records its stages skipped by a condition",
        job.name
    );
    unit.push_str("Documentation=man:backupctl(1)\n");
    let stages: Vec<String> = config
        .stages_of(&job.name)
        .map(|s| units::stage_service(&s.name))
        .collect();
    let _ = writeln!(unit, "After={}", stages.join(" "));
    unit.push_str("\n[Service]\nType=oneshot\n");
    let _ = writeln!(
        unit,
        "ExecStart={}",
        exec_line(config, options, &["record-skips", &job.name])
    );
    job_service_rights(&mut unit, config, job, options);
    unit
}

/// What a unit of the job's own needs (`job-finished`, `record-skips`): the run records, the
/// metrics, the user manager's bus, and nothing else.
fn job_service_rights(unit: &mut String, config: &Config, job: &Job, options: &Options) {
    search_path(unit, config);
    state_directories(unit, config, options, false);
    metrics_directory(unit, config);
    if options.scope == Scope::System {
        user_and_group(unit, job);
    }
    unit.push_str("CapabilityBoundingSet=\n");
    unit.push_str(HARDENING);
}

/// Where run records (and restic's cache) go. System scope: `StateDirectory=`/`CacheDirectory=`
/// (/var/lib/backupctl, /var/cache/backupctl). User scope: `~/.local/state/backupctl`, the
/// directory `paths::state_dir` gives `run --here` and `status` too, and `~/.cache/backupctl`;
/// systemd 252 would map `StateDirectory=` of a user unit to ~/.config instead.
fn state_directories(unit: &mut String, config: &Config, options: &Options, cache: bool) {
    if options.scope == Scope::System {
        unit.push_str("StateDirectory=backupctl\n");
        if cache {
            unit.push_str("CacheDirectory=backupctl\n");
        }
        return;
    }
    let state = format!("%h/{}", crate::paths::USER_STATE_DIR);
    let mut dirs = vec![("STATE_DIRECTORY", state.as_str())];
    if cache {
        dirs.push(("CACHE_DIRECTORY", "%h/.cache/backupctl"));
    }
    for (variable, dir) in &dirs {
        let _ = writeln!(unit, "Environment={variable}={dir}");
    }
    let paths: Vec<&str> = dirs.iter().map(|(_, dir)| *dir).collect();
    let _ = writeln!(
        unit,
        "ExecStartPre=+{} prepare-paths -- {}",
        exec_line(config, options, &[]),
        paths.join(" ")
    );
    let writable: Vec<String> = paths.iter().map(|dir| format!("-{dir}")).collect();
    let _ = writeln!(unit, "ReadWritePaths={}", writable.join(" "));
}

/// `Environment=PATH=` from `[units] path`: the tools (and backupctl's own children) are found
/// where the config says, e.g. in the NixOS module's `/nix/store/…/bin` directories, which
/// systemd's default `PATH` does not hold. Nothing when `path` is empty.
pub(crate) fn search_path(unit: &mut String, config: &Config) {
    if let Some(path) = config.units.search_path() {
        let _ = writeln!(unit, "Environment={}", escape::environment("PATH", &path));
    }
}

/// The directory of the metrics text file, written (temporary file + rename) after each stage
/// and when a job finishes. "-": a missing directory (no node_exporter) must not fail the unit.
fn metrics_directory(unit: &mut String, config: &Config) {
    if let Some(metrics) = &config.metrics {
        let _ = writeln!(
            unit,
            "ReadWritePaths={}",
            escape::word(&format!("-{}", metrics.directory().display()))
        );
    }
}

fn user_and_group(unit: &mut String, job: &Job) {
    if let Some(user) = &job.user {
        let _ = writeln!(unit, "User={}", escape::value(user));
    }
    if let Some(group) = &job.group {
        let _ = writeln!(unit, "Group={}", escape::value(group));
    }
}

fn job_timer(config: &Config, job: &Job) -> String {
    let mut unit = header(config);
    unit.push_str("\n[Unit]\n");
    let _ = writeln!(unit, "Description=Timer of backupctl job {}", job.name);
    unit.push_str("Documentation=man:backupctl(1)\n\n[Timer]\n");
    if let Some(schedule) = &job.schedule {
        let _ = writeln!(unit, "OnCalendar={}", escape::value(schedule));
    }
    let _ = writeln!(
        unit,
        "Persistent={}",
        if job.persistent { "true" } else { "false" }
    );
    if let Some(delay) = job.randomized_delay {
        let _ = writeln!(unit, "RandomizedDelaySec={delay}");
    }
    if let Some(delay) = job.on_boot {
        let _ = writeln!(unit, "OnBootSec={delay}");
    }
    if let Some(accuracy) = job.accuracy {
        let _ = writeln!(unit, "AccuracySec={accuracy}");
    }
    if job.wake_system {
        unit.push_str("WakeSystem=true\n");
    }
    for (directive, value) in &job.timer {
        let _ = writeln!(unit, "{directive}={}", escape::value(value));
    }
    let _ = writeln!(unit, "Unit={}", units::job_service(&job.name));
    unit.push_str("\n[Install]\nWantedBy=timers.target\n");
    unit
}

/// Capabilities a stage needs on top of [`BASE_CAPABILITIES`] when it runs as root.
fn extra_capabilities(needs: &Needs) -> Vec<&'static str> {
    let mut caps: Vec<&'static str> = needs.capabilities.clone();
    caps.sort_unstable();
    caps.dedup();
    caps
}

/// What a stage's unit must allow: its own needs, with a store's mount point for its
/// writes, and what its kind needs of its whole job ([`crate::stages::StageKind::JOB_NEEDS`]:
/// `hello` probes the job's destinations).
pub(crate) fn stage_needs(config: &Config, stage: &Stage) -> Needs {
    let mut needs = own_needs(stage);
    needs.merge(
        stage
            .spec
            .job_needs(&|| crate::stages::job_needs(config, Some(&stage.job))),
    );
    needs.writes.sort();
    needs.writes.dedup();
    needs
}

/// The stage's own needs, its writes inside a store being the store's mount point: each
/// path here is the stage's own (`check` reports a hidden one at this stage).
pub(crate) fn own_needs(stage: &Stage) -> Needs {
    let mut needs = stage.spec.needs();
    if let Some(store) = stage.store.as_ref().filter(|_| !needs.writes.is_empty()) {
        // The destination inside a store may not exist before the stage creates it, and a
        // missing ReadWritePaths= entry fails the unit; the store's mount point always exists
        // once its unit started. (A stage that only reads the store, a drill, writes nothing.)
        needs.writes = vec![crate::config::store::mount_point(store)];
    }
    needs.writes.sort();
    needs.writes.dedup();
    needs
}

fn stage_drop_in(config: &Config, stage: &Stage, options: &Options) -> String {
    let needs = stage_needs(config, stage);
    let job = config
        .job(&stage.job)
        .expect("validated: stage's job exists");
    let mut unit = header(config);
    unit.push_str("\n[Unit]\n");
    stage_unit_section(&mut unit, config, stage, &needs, options);
    unit.push_str("\n[Service]\n");
    stage_resources(&mut unit, stage, job, options);
    stage_exec_condition(&mut unit, config, stage, options);
    writable_paths(&mut unit, config, job, &needs, options);
    sandbox_rights(&mut unit, stage, &needs);
    unit
}

/// The drop-in's `[Unit]` lines: description, order after the parent stages, the store it
/// opens, the network, notifications, the mount it waits for.
fn stage_unit_section(
    unit: &mut String,
    config: &Config,
    stage: &Stage,
    needs: &Needs,
    options: &Options,
) {
    let description = match &stage.description {
        Some(description) => description.clone(),
        None => format!(
            "backupctl stage {} ({}) of job {}",
            stage.name,
            stage.spec.name(),
            stage.job
        ),
    };
    let _ = writeln!(unit, "Description={}", escape::value(&description));
    for parent in &stage.after {
        let parent_stage = config.stage(parent).expect("validated: parents exist");
        // A required parent stops its dependents when it fails; an optional one does not.
        let relation = if parent_stage.required {
            "Requires"
        } else {
            "Wants"
        };
        let _ = writeln!(unit, "{relation}={}", units::stage_service(parent));
    }
    if !stage.after.is_empty() {
        let parents: Vec<String> = stage
            .after
            .iter()
            .map(|p| units::stage_service(p))
            .collect();
        let _ = writeln!(unit, "After={}", parents.join(" "));
    }
    if let Some(name) = &stage.store {
        // systemd opens the store before the stage and closes it after the last user
        // (StopWhenUnneeded=). Wants=, not Requires=: with Requires= systemd 252 found the
        // store's unneeded-stop job "destructive" and the store stayed open after the run
        // (seen in the guest test). The assertion keeps a stage from writing beside a store
        // that did not open: it fails instead.
        let store_unit = units::store_service(name);
        let mount = crate::config::store::mount_point(name);
        let _ = writeln!(
            unit,
            "Wants={store_unit}\nAfter={store_unit}\nAssertPathIsMountPoint={}",
            escape::value(&mount.to_string_lossy())
        );
    }
    if needs.network && options.scope == Scope::System {
        unit.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    if let Some(settings) = &config.notify {
        unit.push_str(&notify::stage_lines(settings, &stage.name, &stage.job));
    }
    if let Some(mount) = &stage.when_mounted {
        // Absent disk: the stage is skipped (condition failed), which is not a failure.
        let _ = writeln!(
            unit,
            "ConditionPathIsMountPoint={}",
            escape::value(&mount.to_string_lossy())
        );
    }
    if stage.conditions.on_ac_power {
        // On battery: skipped like a missing disk; dependents still start (docs/conditions.md).
        unit.push_str("ConditionACPower=true\n");
    }
}

/// `skip_on_metered`: systemd has no condition for a metered network, so backupctl asks
/// NetworkManager itself before the stage starts. An `ExecCondition=` that exits 1 skips the
/// stage cleanly (no failure, no `OnFailure=`); it writes the skip's run record, since
/// `ExecStart=` never runs. It runs in the stage's sandbox, whose `AF_UNIX` reaches the bus.
fn stage_exec_condition(unit: &mut String, config: &Config, stage: &Stage, options: &Options) {
    if stage.conditions.skip_on_metered {
        let _ = writeln!(
            unit,
            "ExecCondition={}",
            exec_line(config, options, &["condition", "%i"])
        );
    }
}

/// Resource manners, environment and user: the stage's settings as the `[Service]` lines.
fn stage_resources(unit: &mut String, stage: &Stage, job: &Job, options: &Options) {
    if let Some(timeout) = stage.timeout {
        let _ = writeln!(unit, "TimeoutStartSec={timeout}");
    }
    if let Some(nice) = stage.nice {
        let _ = writeln!(unit, "Nice={nice}");
    }
    if let Some(class) = stage.io_class {
        let _ = writeln!(unit, "IOSchedulingClass={}", class.as_systemd());
    }
    if let Some(weight) = stage.cpu_weight {
        let _ = writeln!(unit, "CPUWeight={weight}");
    }
    limit_lines(unit, &stage.limits);
    for (key, value) in &stage.environment {
        let _ = writeln!(unit, "Environment={}", escape::environment(key, value));
    }
    for file in &stage.environment_files {
        let _ = writeln!(
            unit,
            "EnvironmentFile={}",
            escape::value(&file.to_string_lossy())
        );
    }
    if options.scope == Scope::System {
        user_and_group(unit, job);
    }
}

/// Where the stage writes: created before the sandbox is set up, then `ReadWritePaths=`.
fn writable_paths(unit: &mut String, config: &Config, job: &Job, needs: &Needs, options: &Options) {
    if !needs.writes.is_empty() {
        let paths: Vec<String> = needs
            .writes
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        // Created before the sandbox is set up ("+": outside it), since a missing
        // ReadWritePaths= entry cannot be created from inside.
        let owner = match (&job.user, &job.group) {
            (Some(user), Some(group)) if options.scope == Scope::System => {
                Some(format!("--owner={user}:{group}"))
            }
            (Some(user), None) if options.scope == Scope::System => Some(format!("--owner={user}")),
            _ => None,
        };
        let mut prepare = vec!["prepare-paths"];
        prepare.extend(owner.as_deref());
        prepare.push("--");
        prepare.extend(paths.iter().map(String::as_str));
        let escaped: Vec<String> = prepare.iter().map(|p| escape::exec_arg(p)).collect();
        let line = exec_line(config, options, &[]);
        let _ = writeln!(unit, "ExecStartPre=+{line} {}", escaped.join(" "));
        // "-": a path that is still missing must not fail the sandbox set-up of the
        // ExecStartPre= that creates it; each command gets its namespace anew.
        let words: Vec<String> = paths
            .iter()
            .map(|p| escape::word(&format!("-{p}")))
            .collect();
        let _ = writeln!(unit, "ReadWritePaths={}", words.join(" "));
    }
}

/// What the sandbox grants beyond the template: credentials, network, capabilities, the
/// cleanup command, snapshot rights.
fn sandbox_rights(unit: &mut String, stage: &Stage, needs: &Needs) {
    for (name, path) in &needs.credentials {
        let _ = writeln!(
            unit,
            "LoadCredential={}:{}",
            escape::value(name),
            escape::value(&path.to_string_lossy())
        );
    }
    if needs.network {
        unit.push_str("PrivateNetwork=no\nRestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK\n");
    }
    let caps = extra_capabilities(needs);
    // Also in user scope: root's user manager runs its units as root (a non-root
    // manager's units have no capabilities to keep).
    if !caps.is_empty() {
        let _ = writeln!(unit, "CapabilityBoundingSet={}", caps.join(" "));
    }
    if let Some(command) = &stage.cleanup {
        // After success, failure and stop alike; systemd sets $SERVICE_RESULT, $EXIT_CODE
        // and $EXIT_STATUS for it. Words are written literally (`$` escaped): a shell the
        // command starts expands those variables itself.
        let words: Vec<String> = command.iter().map(|w| escape::exec_arg(w)).collect();
        let _ = writeln!(unit, "ExecStopPost={}", words.join(" "));
    }
    if let Some(settings) = &stage.snapshot {
        snapshot_rights(unit, settings, needs);
    }
}

/// What `snapshot = "btrfs"` needs on top of the template: write access where snapshots are
/// created and deleted, and a private mount namespace with the right to bind-mount them
/// (`CAP_SYS_ADMIN`, the `@mount` calls the template filters, `RestrictNamespaces=mnt`).
/// The capability is granted in both scopes: a user manager running as root applies the
/// template's bounding set too, and for other users the implied user namespace holds it.
fn snapshot_rights(unit: &mut String, settings: &crate::snapshot::Settings, needs: &Needs) {
    unit.push_str(
        "# snapshot: create/delete btrfs snapshots, bind-mount them over the sources in a\n\
         # private mount namespace.\n",
    );
    let dirs: Vec<String> = settings
        .directories(&needs.sources)
        .iter()
        // "-": a directory that only exec_before_snapshot mounts does not exist yet.
        .map(|dir| format!("-{}", escape::word(&dir.to_string_lossy())))
        .collect();
    if !dirs.is_empty() {
        let _ = writeln!(unit, "ReadWritePaths={}", dirs.join(" "));
    }
    unit.push_str(
        "PrivateMounts=yes\n\
         RestrictNamespaces=mnt\n\
         SystemCallFilter=@mount\n\
         CapabilityBoundingSet=CAP_SYS_ADMIN\n",
    );
}
