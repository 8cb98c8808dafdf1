//! `run` with systemd: start `backup-JOB.service` over D-Bus and follow its stages until the
//! start job is done, printing each stage's state changes and its `StatusText`.
//!
//! A unit "ran in this run" when it left the inactive state after we asked systemd to start
//! the job (`InactiveExitTimestamp`); that is how stages that never started (a required parent
//! failed) are told from stages that finished earlier in the day.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zbus::Connection;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};

use crate::config::Config;
use crate::paths::Scope;
use crate::units::{job_service, stage_service};

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot reach the {scope} service manager over D-Bus: {source}")]
    Connect {
        scope: &'static str,
        #[source]
        source: zbus::Error,
    },
    #[error("systemd refused to start {unit}: {source}")]
    Start {
        unit: String,
        #[source]
        source: zbus::Error,
    },
    #[error(transparent)]
    Bus(#[from] zbus::Error),
}

impl SystemdError {
    /// What to do about it, for the error message.
    pub fn hint(&self, scope: Scope) -> String {
        let user = if scope == Scope::User { " --user" } else { "" };
        match self {
            SystemdError::Connect { .. } => format!(
                "no service manager answers; run the job in this process with `backupctl{user} run --here`"
            ),
            SystemdError::Start { .. } => format!(
                "generate and load the units first: `backupctl{user} generate && systemctl{user} daemon-reload`"
            ),
            SystemdError::Bus(_) => String::new(),
        }
    }
}

/// How one stage ended, as systemd saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageState {
    pub name: String,
    pub active_state: String,
    pub result: String,
    pub status_text: String,
    pub ran: bool,
    pub condition_met: bool,
}

impl StageState {
    /// A short word for people: running, success, failed (exit-code), skipped, not run.
    pub fn describe(&self) -> String {
        if !self.ran {
            return if self.condition_met {
                "not run".into()
            } else {
                "skipped (condition)".into()
            };
        }
        match self.active_state.as_str() {
            "activating" | "active" | "reloading" | "deactivating" => "running".into(),
            _ if self.result == "success" => "success".into(),
            _ => format!("failed ({})", self.result),
        }
    }
}

pub struct JobOutcome {
    pub succeeded: bool,
    pub stages: Vec<StageState>,
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

pub async fn connect(scope: Scope) -> Result<Connection, SystemdError> {
    let connection = match scope {
        Scope::User => Connection::session().await,
        Scope::System => Connection::system().await,
    };
    connection.map_err(|source| connect_error(scope, source))
}

/// [`connect`] with a bound on every method call: for short questions (`status`, a stage
/// asking for its job run) that must not hang on a stuck bus.
pub async fn connect_with_timeout(
    scope: Scope,
    timeout: Duration,
) -> Result<Connection, SystemdError> {
    let builder = match scope {
        Scope::User => zbus::connection::Builder::session(),
        Scope::System => zbus::connection::Builder::system(),
    };
    builder
        .method_timeout(timeout)
        .build()
        .await
        .map_err(|source| connect_error(scope, source))
}

fn connect_error(scope: Scope, source: zbus::Error) -> SystemdError {
    SystemdError::Connect {
        scope: if scope == Scope::User {
            "user"
        } else {
            "system"
        },
        source,
    }
}

async fn unit_proxy<'a>(
    connection: &'a Connection,
    manager: &ManagerProxy<'_>,
    unit: &str,
) -> Result<(UnitProxy<'a>, ServiceProxy<'a>), SystemdError> {
    let path = manager.load_unit(unit.to_string()).await?;
    // Pin the unit while we follow it: an inactive oneshot unit is otherwise garbage
    // collected right after it finished, and its properties (InactiveExitTimestamp,
    // Result) then read as if it never ran. Best effort (refused without privileges).
    let _ = manager.ref_unit(unit.to_string()).await;
    let unit = UnitProxy::builder(connection)
        .path(path.clone())
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let service = ServiceProxy::builder(connection)
        .path(path)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    Ok((unit, service))
}

async fn read_state(
    name: &str,
    unit: &UnitProxy<'_>,
    service: &ServiceProxy<'_>,
    since: u64,
) -> Result<StageState, SystemdError> {
    Ok(StageState {
        name: name.to_string(),
        active_state: unit.active_state().await?,
        result: service.result().await?,
        status_text: service.status_text().await.unwrap_or_default(),
        ran: unit.inactive_exit_timestamp().await? >= since,
        condition_met: unit.condition_result().await.unwrap_or(true)
            || unit.condition_timestamp().await.unwrap_or(0) < since,
    })
}

/// Starts the job unit and follows it. `on_change` is called with each stage whose state or
/// status text changed, as it happens.
pub fn run_job(
    config: &Config,
    job: &str,
    scope: Scope,
    mut on_change: impl FnMut(&StageState),
) -> Result<JobOutcome, SystemdError> {
    zbus::block_on(async {
        let connection = connect(scope).await?;
        let manager = ManagerProxy::new(&connection).await?;
        let stage_names: Vec<String> = config.stages_of(job).map(|s| s.name.clone()).collect();
        let mut stages = Vec::new();
        for name in &stage_names {
            stages.push((
                name.clone(),
                unit_proxy(&connection, &manager, &stage_service(name)).await?,
            ));
        }
        let unit_name = job_service(job);
        let (job_unit_proxy, job_service) = unit_proxy(&connection, &manager, &unit_name).await?;
        let since = now_usec();
        let job_path = manager
            .start_unit(unit_name.clone(), "replace".into())
            .await
            .map_err(|source| SystemdError::Start {
                unit: unit_name.clone(),
                source,
            })?;
        let mut seen: HashMap<String, (String, String)> = HashMap::new();
        loop {
            let mut states = Vec::new();
            for (name, (unit, service)) in &stages {
                let state = read_state(name, unit, service, since).await?;
                let key = (state.describe(), state.status_text.clone());
                if state.ran && seen.get(name) != Some(&key) {
                    on_change(&state);
                    seen.insert(name.clone(), key);
                }
                states.push(state);
            }
            // The start job's object disappears when systemd is done with it.
            // No property cache: filling it would fail (and zbus warn) once the job is gone.
            let job_done = zbus::proxy::Builder::<zbus::Proxy>::new(&connection)
                .destination("org.freedesktop.systemd1")
                .path(job_path.clone())
                .interface("org.freedesktop.systemd1.Job")
                .cache_properties(CacheProperties::No)
                .build()
                .await?
                .get_property::<String>("State")
                .await
                .is_err();
            if job_done {
                let mut final_states = Vec::new();
                for (name, (unit, service)) in &stages {
                    final_states.push(read_state(name, unit, service, since).await?);
                }
                let job_ran = job_unit_proxy.inactive_exit_timestamp().await? >= since;
                let job_result = job_service.result().await?;
                let job_state = job_unit_proxy.active_state().await?;
                return Ok(JobOutcome {
                    succeeded: job_ran && job_result == "success" && job_state != "failed",
                    stages: final_states,
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}
