//! What systemd knows about a job's units, read over D-Bus for `status`: the few properties
//! we show, all requests in flight at once. Units are addressed by their object path, which
//! makes systemd load a unit that is not loaded (a finished oneshot unit is unloaded soon
//! after it ran).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::try_join_all;
use zbus::Connection;
use zbus::OwnedVariant;
use zbus_systemd::systemd1::ManagerProxy;

use crate::config::Config;
use crate::paths::Scope;
use crate::report::dbus::label;
use crate::units::{job_service, job_timer, stage_service};

/// A question `status` asks must not hang: the answer then says systemd could not be asked.
const TIMEOUT: Duration = Duration::from_secs(5);

const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const TIMER: &str = "org.freedesktop.systemd1.Timer";

/// One unit as systemd sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitView {
    /// `loaded`, `not-found`, …
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// The service's `Result` (`success`, `exit-code`, `timeout`, …).
    pub result: String,
    pub status_text: String,
    /// Of the current or last activation, hex; empty when it never ran since loaded.
    pub invocation_id: String,
    /// µs since the epoch; 0 when unknown. When the current or last activation began…
    pub inactive_exit_usec: u64,
    /// …and when it ended (inactive or failed).
    pub inactive_enter_usec: u64,
}

impl UnitView {
    /// Running from systemd's point of view: started and not yet back to inactive/failed.
    pub fn running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "activating" | "active" | "reloading" | "deactivating"
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimerView {
    pub active_state: String,
    /// µs since the epoch; 0 when not scheduled.
    pub next_elapse_usec: u64,
    pub last_trigger_usec: u64,
}

/// Everything `status` asks systemd about one job.
#[derive(Debug, Clone, Default)]
pub struct JobView {
    pub job: UnitView,
    /// The job run of the start job queued for the job unit (`crate::job_run`), if any.
    pub queued_run: Option<String>,
    pub timer: Option<TimerView>,
    pub stages: HashMap<String, UnitView>,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Connect(#[from] crate::runner::systemd::SystemdError),
    #[error("the service manager did not answer: {0}")]
    Bus(#[from] zbus::Error),
}

fn path_of(unit: &str) -> String {
    format!("/org/freedesktop/systemd1/unit/{}", label(unit))
}

type Properties = HashMap<&'static str, OwnedVariant>;

/// The named properties of one interface of `unit`, one `Get` each, all in flight at once:
/// `GetAll` would make systemd serialize (and us parse) a few hundred properties per unit,
/// which for 20 stages costs more than the round trips (measured, release build, whole
/// `status --json`: 36 ms with `GetAll`, 16 ms with `Get`; `systemctl show` of one unit: 8 ms).
/// A property systemd does not have (an older version) is simply absent.
async fn get(
    connection: &Connection,
    unit: &str,
    interface: &'static str,
    names: &[&'static str],
) -> zbus::Result<Properties> {
    let path = path_of(unit);
    let values = try_join_all(names.iter().map(|&name| {
        let path = path.as_str();
        async move {
            let reply = connection
                .call_method(
                    Some("org.freedesktop.systemd1"),
                    path,
                    Some("org.freedesktop.DBus.Properties"),
                    "Get",
                    &(interface, name),
                )
                .await;
            match reply {
                Ok(reply) => Ok(Some((name, reply.body().deserialize::<OwnedVariant>()?))),
                Err(zbus::Error::MethodError(..)) => Ok(None),
                Err(error) => Err(error),
            }
        }
    }))
    .await?;
    Ok(values.into_iter().flatten().collect())
}

fn string(properties: &Properties, name: &str) -> String {
    properties
        .get(name)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| String::try_from(v).ok())
        .unwrap_or_default()
}

fn number(properties: &Properties, name: &str) -> u64 {
    properties
        .get(name)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or_default()
}

fn hex(properties: &Properties, name: &str) -> String {
    properties
        .get(name)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<u8>::try_from(v).ok())
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

async fn unit_view(connection: &Connection, unit: &str) -> zbus::Result<UnitView> {
    let (general, service) = futures_util::future::try_join(
        get(
            connection,
            unit,
            UNIT,
            &[
                "LoadState",
                "ActiveState",
                "SubState",
                "InvocationID",
                "InactiveExitTimestamp",
                "InactiveEnterTimestamp",
            ],
        ),
        get(connection, unit, SERVICE, &["Result", "StatusText"]),
    )
    .await?;
    Ok(UnitView {
        load_state: string(&general, "LoadState"),
        active_state: string(&general, "ActiveState"),
        sub_state: string(&general, "SubState"),
        result: string(&service, "Result"),
        status_text: string(&service, "StatusText"),
        invocation_id: hex(&general, "InvocationID"),
        inactive_exit_usec: number(&general, "InactiveExitTimestamp"),
        inactive_enter_usec: number(&general, "InactiveEnterTimestamp"),
    })
}

async fn timer_view(connection: &Connection, unit: &str) -> zbus::Result<TimerView> {
    let (general, timer) = futures_util::future::try_join(
        get(connection, unit, UNIT, &["ActiveState"]),
        get(
            connection,
            unit,
            TIMER,
            &["NextElapseUSecRealtime", "LastTriggerUSec"],
        ),
    )
    .await?;
    Ok(TimerView {
        active_state: string(&general, "ActiveState"),
        next_elapse_usec: number(&timer, "NextElapseUSecRealtime"),
        last_trigger_usec: number(&timer, "LastTriggerUSec"),
    })
}

/// Asks systemd about every unit of `jobs` at once.
pub fn read(config: &Config, jobs: &[&str], scope: Scope) -> Result<Vec<JobView>, ViewError> {
    zbus::block_on(async {
        let connection = crate::runner::systemd::connect_with_timeout(scope, TIMEOUT).await?;
        let manager = ManagerProxy::new(&connection).await?;
        let views = jobs.iter().map(|&job| {
            let connection = &connection;
            let manager = &manager;
            async move {
                let has_timer = config.job(job).is_some_and(|j| j.schedule.is_some());
                let stages = try_join_all(config.stages_of(job).map(|stage| async move {
                    Ok::<_, zbus::Error>((
                        stage.name.clone(),
                        unit_view(connection, &stage_service(&stage.name)).await?,
                    ))
                }));
                let timer = async {
                    if has_timer {
                        timer_view(connection, &job_timer(job)).await.map(Some)
                    } else {
                        Ok(None)
                    }
                };
                let (unit, queued_run, timer, stages) = futures_util::future::try_join4(
                    unit_view(connection, &job_service(job)),
                    crate::job_run::current(connection, manager, job),
                    timer,
                    stages,
                )
                .await?;
                Ok::<_, zbus::Error>(JobView {
                    job: unit,
                    queued_run,
                    timer,
                    stages: stages.into_iter().collect(),
                })
            }
        });
        Ok(try_join_all(views).await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_use_systemds_label_escaping() {
        assert_eq!(
            path_of("backup@my-stage.service"),
            "/org/freedesktop/systemd1/unit/backup_40my_2dstage_2eservice"
        );
        assert_eq!(
            path_of("backup-job.timer"),
            "/org/freedesktop/systemd1/unit/backup_2djob_2etimer"
        );
    }
}
