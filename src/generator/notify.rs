//! Units of the notifier (`[notify]`): the template `backup-notify@.service`, whose instance is
//! the escaped name of the unit it reports on (`backup-notify@backup\x40copy.service.service`),
//! started by systemd through `OnFailure=`/`OnSuccess=`; and, when a healthchecks URL is set,
//! `backup-notify-start@JOB.service`, the start ping, which the job unit wants and every stage
//! of the job runs after.
//!
//! Why not the start ping in the job unit's `ExecStartPre=`: the job unit runs *after* its
//! stages (it is `After=` all of them), so that would ping at the end.
//!
//! Who reports a failure: every stage has `OnFailure=`, and its notifier has what matters (the
//! stage's result, run id and journal). A job whose required stage failed never runs, but
//! systemd still starts the job's `OnFailure=` unit (result "dependency"), without
//! `$MONITOR_SERVICE_RESULT`; that notifier stays quiet (see `commands::notify`), so a failure
//! is reported once. The job's `OnFailure=` speaks when its own `ExecStart=` failed, and
//! `OnSuccess=` reports a successful job.

use std::fmt::Write as _;

use super::{BASE_CAPABILITIES, HARDENING, Options, escape, exec_line, header, state_directories};
use crate::config::notify::{Channel, credentials};
use crate::config::{Config, Notify};
use crate::paths::Scope;
use crate::units::{self, notify_service, notify_start_service};

/// What the job unit's `[Unit]` section gains.
pub fn job_lines(notify: &Notify, job: &str) -> String {
    let own = notify_service(&units::job_service(job));
    let mut lines = format!("OnFailure={own}\n");
    if notify.wants_success() {
        let _ = writeln!(lines, "OnSuccess={own}");
    }
    if notify.pings_on_start() {
        // Wants=: a start ping that fails must never fail the job.
        let _ = writeln!(lines, "Wants={}", notify_start_service(job));
    }
    lines
}

/// What a stage's drop-in `[Unit]` section gains.
pub fn stage_lines(notify: &Notify, stage: &str, job: &str) -> String {
    let mut lines = format!(
        "OnFailure={}\n",
        notify_service(&units::stage_service(stage))
    );
    if notify.pings_on_start() {
        // Ordering only: the ping precedes the stages when the job pulled both in.
        let _ = writeln!(lines, "After={}", notify_start_service(job));
    }
    lines
}

/// The notifier template: `backupctl notify UNIT` with the unescaped instance.
pub fn template(config: &Config, notify: &Notify, options: &Options) -> String {
    service(
        config,
        notify,
        &notify.channels().collect::<Vec<_>>(),
        options,
        "backupctl notification about %I",
        &["notify", "%I"],
    )
}

/// The start ping: `backupctl notify --start backup-JOB.service`.
pub fn start_template(config: &Config, notify: &Notify, options: &Options) -> String {
    // Only the channels that ping at the start: this unit loads their secrets alone (not the
    // other channels', whose missing file would fail it too) and is bounded for them alone.
    let pingers: Vec<&Channel> = notify.channels().filter(|c| c.pings_on_start()).collect();
    service(
        config,
        notify,
        &pingers,
        options,
        "backupctl start ping of job %i",
        &["notify", "--start", &units::job_service("%i")],
    )
}

/// A notifier unit delivering through `channels` (of `notify`, which gives the timeout).
fn service(
    config: &Config,
    notify: &Notify,
    channels: &[&Channel],
    options: &Options,
    description: &str,
    verb: &[&str],
) -> String {
    let mut unit = header(config);
    let _ = write!(
        unit,
        "\n[Unit]\n\
         Description={description}\n\
         Documentation=man:backupctl(1)\n\
         # Reports only: an endpoint that cannot be reached fails this unit (see the journal),\n\
         # never the job it reports on.\n\
         \n[Service]\n\
         Type=oneshot\n\
         ExecStart={}\n",
        exec_line(config, options, verb)
    );
    super::search_path(&mut unit, config);
    // Each channel is bounded by `timeout`; this bounds them all together.
    let _ = writeln!(
        unit,
        "TimeoutStartSec={}s",
        notify.timeout.0.as_secs().max(1) * channels.len() as u64 + 30
    );
    // The run records are only read. In system scope, not through StateDirectory=: this unit
    // has no User=, and systemd would give the directory (recursively) to root at every start,
    // taking it from a job's `user` while its stages still write there. /var/lib stays
    // readable under ProtectSystem=strict. In user scope, the same directory the stages use.
    if options.scope == Scope::User {
        state_directories(&mut unit, config, options, false);
    }
    for (name, path) in credentials(channels.iter().copied()) {
        let _ = writeln!(
            unit,
            "LoadCredential={}:{}",
            escape::value(&name),
            escape::value(&path.to_string_lossy())
        );
    }
    // Reading only: the run records of a job with a `user` are that user's files (mode 0600),
    // which root reads with CAP_DAC_READ_SEARCH alone.
    let _ = writeln!(
        unit,
        "# Sandbox: network for the endpoints, reading, nothing else.\n\
         CapabilityBoundingSet={BASE_CAPABILITIES}"
    );
    unit.push_str(HARDENING);
    unit.push_str("PrivateNetwork=no\nRestrictAddressFamilies=AF_INET AF_INET6 AF_NETLINK\n");
    unit
}
