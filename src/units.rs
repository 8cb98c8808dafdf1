//! The names of the units backupctl generates, spelled in one place: the generator writes
//! them, and `status`, `job_run`, `runner`, `stage_lock`, `check` and the executor find the
//! same units by them.
//!
//! A job is `backup-JOB.service` (with `backup-JOB.timer` when it has a schedule, and
//! `backup-skips@JOB.service` when a stage of it has a `Condition…=`); a stage is
//! an instance of the template `backup@.service`; an encrypted store is an instance of
//! `backup-store@.service`. The notifier is an instance of `backup-notify@.service` per unit
//! it reports on, and `backup-notify-start@.service` per job for the start ping.

/// The stages' template; each stage is an instance ([`stage_service`]).
pub const STAGE_TEMPLATE: &str = "backup@.service";
/// The stores' template; each store is an instance ([`store_service`]).
pub const STORE_TEMPLATE: &str = "backup-store@.service";
/// The notifier's template; each instance reports on one unit ([`notify_service`]).
pub const NOTIFY_TEMPLATE: &str = "backup-notify@.service";
/// The start ping's template; each job with one is an instance ([`notify_start_service`]).
pub const NOTIFY_START_TEMPLATE: &str = "backup-notify-start@.service";
/// The slice every stage unit runs in: `[slice]` limits cap all stages together.
pub const SLICE: &str = "backup.slice";
/// What the generator writes instead of the job units when the config does not load: a
/// oneshot unit, started at boot, that fails with the error (`generator::config_error`).
pub const CONFIG_ERROR_SERVICE: &str = "backupctl-config-error.service";
/// The file name of our drop-in inside `UNIT.d/`.
pub const DROP_IN: &str = "backupctl.conf";

/// `backup-JOB.service`: the unit that pulls in a job's stages.
pub fn job_service(job: &str) -> String {
    format!("backup-{job}.service")
}

/// `backup-JOB.timer`: the timer of a job with a schedule.
pub fn job_timer(job: &str) -> String {
    format!("backup-{job}.timer")
}

/// `backup-skips@JOB.service`: records the stages of a job run that systemd skipped by a
/// `Condition…=`, however the job ends (`generator::skips_service`). An instance name, so
/// that no job's own unit can be called the same: job names hold no `@`.
pub fn skips_service(job: &str) -> String {
    format!("backup-skips@{job}.service")
}

/// `backup@STAGE.service`: the unit that runs one stage.
pub fn stage_service(stage: &str) -> String {
    format!("backup@{stage}.service")
}

/// The service unit that runs a job or a stage, read back from its name (the unit a
/// notification is about): the inverse of [`job_service`] and [`stage_service`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service<'a> {
    Job(&'a str),
    Stage(&'a str),
}

/// Reads `backup-JOB.service` or `backup@STAGE.service`; any other name (a timer, a store's or
/// a notifier's instance, someone else's unit) is `None`. Job names never hold `@`, so an
/// instance of another template (`backup-store@nas.service`) is no job.
pub fn parse_service(unit: &str) -> Option<Service<'_>> {
    let name = unit.strip_suffix(".service")?;
    if let Some(stage) = name.strip_prefix("backup@") {
        return (!stage.is_empty()).then_some(Service::Stage(stage));
    }
    let job = name.strip_prefix("backup-")?;
    (!job.is_empty() && !job.contains('@')).then_some(Service::Job(job))
}

/// `backup-store@STORE.service`: opens a store on start, closes it on stop.
pub fn store_service(store: &str) -> String {
    format!("backup-store@{store}.service")
}

/// `backup-notify@ESCAPED.service`: the notifier that reports on the unit `unit`.
pub fn notify_service(unit: &str) -> String {
    format!("backup-notify@{}.service", escape_instance(unit))
}

/// `backup-notify-start@JOB.service` (job names need no escaping but `-`, which `%i` keeps).
pub fn notify_start_service(job: &str) -> String {
    format!("backup-notify-start@{job}.service")
}

/// A string as a unit name's instance, as `systemd-escape` writes it: `/` → `-`, bytes other
/// than ASCII letters, digits, `:`, `_` and `.` (and a leading `.`) → `\xNN`. The unit reads it
/// back unescaped with `%I`. Used for the notifier's instance, which is a unit name itself
/// (`backup@copy.service` → `backup\x40copy.service`).
pub fn escape_instance(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'/' => escaped.push('-'),
            b'.' if index == 0 => escaped.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => {
                escaped.push(byte as char)
            }
            _ => escaped.push_str(&format!("\\x{byte:02x}")),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_jobs_stages_and_stores() {
        assert_eq!(job_service("offsite"), "backup-offsite.service");
        assert_eq!(job_timer("offsite"), "backup-offsite.timer");
        assert_eq!(stage_service("copy"), "backup@copy.service");
        assert_eq!(store_service("nas"), "backup-store@nas.service");
        assert_eq!(skips_service("offsite"), "backup-skips@offsite.service");
        assert_eq!(
            notify_service("backup@copy.service"),
            "backup-notify@backup\\x40copy.service.service"
        );
        assert_eq!(
            notify_start_service("offsite"),
            "backup-notify-start@offsite.service"
        );
    }

    #[test]
    fn service_names_read_back() {
        assert_eq!(
            parse_service(&job_service("offsite")),
            Some(Service::Job("offsite"))
        );
        assert_eq!(
            parse_service(&stage_service("copy")),
            Some(Service::Stage("copy"))
        );
        for other in [
            "backup-offsite.timer",
            "backup-store@nas.service",
            "backup-skips@offsite.service",
            "backup-notify-start@offsite.service",
            "backup@.service",
            "backup-.service",
            "sshd.service",
        ] {
            assert_eq!(parse_service(other), None, "{other}");
        }
    }

    #[test]
    fn escapes_instances_like_systemd_escape() {
        // `systemd-escape 'backup@my-stage.service'`
        assert_eq!(
            escape_instance("backup@my-stage.service"),
            "backup\\x40my\\x2dstage.service"
        );
        assert_eq!(
            escape_instance("backup-job.service"),
            "backup\\x2djob.service"
        );
        assert_eq!(escape_instance(".a/b"), "\\x2ea-b");
    }
}
