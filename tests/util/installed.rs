//! A job installed in the real systemd user manager (`scripts/systemd-sandbox`), and what the
//! end-to-end tests read back from it: the manager's run records, its job queue.
//!
//! Everything the units touch lives under /var/lib/backupctl-e2e (not /tmp: the units have
//! `PrivateTmp=`), including a copy of the binary, wherever the checkout is. Units go into
//! the runtime unit directory [`UNIT_DIR`]; whoever puts units there holds
//! [`systemd_lock`] meanwhile and removes them with [`remove_generated_units`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{
    SystemdLock, backupctl_path, ok, require_tool, run, systemctl_user, systemd_lock,
    systemd_user_env, write, write_config,
};

/// The runtime directory that outranks `~/.config/systemd/user` in the user manager's search
/// path, so units left there by anything else cannot shadow the ones under test.
pub const UNIT_DIR: &str = "/run/user/0/systemd/user.control";

/// The run records the stage units write.
pub const RUNS: &str = "/root/.local/state/backupctl/runs.jsonl";

/// The run records in [`RUNS`], oldest first (none when there is no file yet).
pub fn run_records() -> Vec<serde_json::Value> {
    super::read_run_records(Path::new(RUNS))
}

/// The newest run record of `stage` in the user manager's state directory.
pub fn last_run_record(stage: &str) -> serde_json::Value {
    run_records()
        .into_iter()
        .rfind(|r| r["stage"] == stage)
        .unwrap_or_else(|| panic!("no run record of {stage} in {RUNS}"))
}

/// Waits until the user manager has no queued or running jobs.
pub fn wait_until_idle() {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = ok(systemctl_user().args(["list-jobs", "--no-legend"]));
        if pending.trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "jobs still pending:\n{pending}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops every backupctl unit still loaded (jobs, timers, stage instances, notifiers), removes
/// the units `generate` listed in [`UNIT_DIR`]'s manifest (and the manifest), then reloads the
/// manager and forgets failed units. Stopping all of them, not only the job: a stage a test
/// started by itself would otherwise run on after the test released [`systemd_lock`] and
/// append its run record during the next test.
pub fn remove_generated_units() {
    let _ = run(systemctl_user().args(["stop", "backup*"]));
    let dir = Path::new(UNIT_DIR);
    if let Ok(list) = std::fs::read_to_string(dir.join(".backupctl-generated")) {
        for file in list.lines() {
            let path = dir.join(file);
            let _ = std::fs::remove_file(&path);
            if let Some(parent) = path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
    let _ = std::fs::remove_file(dir.join(".backupctl-generated"));
    let _ = run(systemctl_user().arg("daemon-reload"));
    let _ = run(systemctl_user().arg("reset-failed"));
}

/// Units a test generated into [`UNIT_DIR`], removed (with what `generate` listed in its
/// manifest) when dropped.
pub struct InstalledUnits;

impl Drop for InstalledUnits {
    fn drop(&mut self) {
        remove_generated_units();
    }
}

/// The one unit installer: generates the units of `backupctl` (a command that carries its
/// `--config` and `--user`) into [`UNIT_DIR`] and reloads the manager. Hold
/// [`systemd_lock`] meanwhile; the units go when the result is dropped.
pub fn install_units(backupctl: Command) -> InstalledUnits {
    generate_units(backupctl);
    InstalledUnits
}

/// [`install_units`] for an owner that removes the units itself ([`Installed`]).
fn generate_units(mut backupctl: Command) {
    systemd_user_env();
    ok(backupctl.args(["generate", "--output", UNIT_DIR]));
    ok(systemctl_user().arg("daemon-reload"));
}

/// A job installed in the user manager; removed again on drop.
pub struct Installed {
    pub root: PathBuf,
    pub config: PathBuf,
    pub binary: PathBuf,
    _lock: SystemdLock,
}

impl Installed {
    /// Writes `config` (with `@ROOT@` replaced by this test's directory), generates the
    /// units into the user manager's runtime unit directory and reloads it.
    pub fn new(name: &str, config: &str) -> Installed {
        require_tool("systemctl");
        require_tool("rsync");
        let lock = systemd_lock();
        systemd_user_env();
        let root = PathBuf::from(format!(
            "/var/lib/backupctl-e2e/{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let binary = root.join("backupctl");
        std::fs::copy(backupctl_path(), &binary).unwrap();
        let path = write_config(&root, config);
        let installed = Installed {
            root,
            config: path,
            binary,
            _lock: lock,
        };
        installed.generate();
        installed
    }

    fn generate(&self) {
        let mut backupctl = Command::new(&self.binary);
        backupctl.arg("--config").arg(&self.config).arg("--user");
        generate_units(backupctl);
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// `systemctl --user show -p PROPERTY --value UNIT`.
    pub fn show(&self, unit: &str, property: &str) -> String {
        ok(systemctl_user().args(["show", "-p", property, "--value", unit]))
            .trim()
            .to_string()
    }

    /// `backupctl --config … --user ARGS` with the sandbox's bus in the environment.
    pub fn backupctl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--user")
            .args(args)
            .env_remove("NO_COLOR")
            .envs(systemd_user_env().iter().map(|(k, v)| (k, v)));
        command
    }

    /// `backupctl status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let text = ok(&mut self.backupctl(&["status", "--json"]));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        remove_generated_units();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The generated template and one stage's drop-in, installed into the user manager's runtime
/// unit directory under a name of this test's own (`snaptest-PID@.service`), so that tests of
/// other worktrees sharing the manager never see them (no [`systemd_lock`] needed); removed
/// again on drop. `backupctl` carries its `--config` and `--user`; `generated` is where the
/// units are generated first.
pub struct InstalledStage {
    pub unit: String,
    files: Vec<PathBuf>,
}

impl InstalledStage {
    #[track_caller]
    pub fn install(mut backupctl: Command, generated: &Path, stage: &str, tag: &str) -> Self {
        ok(backupctl.args(["generate", "--output"]).arg(generated));
        let runtime = systemd_user_env()
            .iter()
            .find(|(key, _)| key == "XDG_RUNTIME_DIR")
            .map(|(_, value)| PathBuf::from(value))
            .expect("XDG_RUNTIME_DIR of the user manager");
        let dir = runtime.join("systemd/user");
        let template = format!("snaptest-{tag}-{}@.service", std::process::id());
        let unit = template.replace("@.", &format!("@{stage}."));
        let drop_in = dir.join(format!("{unit}.d/backupctl.conf"));
        write(
            &dir.join(&template),
            std::fs::read(generated.join("backup@.service")).unwrap(),
        );
        write(
            &drop_in,
            std::fs::read(generated.join(format!("backup@{stage}.service.d/backupctl.conf")))
                .unwrap(),
        );
        ok(systemctl_user().arg("daemon-reload"));
        InstalledStage {
            unit,
            files: vec![dir.join(template), drop_in],
        }
    }

    pub fn state(&self) -> String {
        ok(systemctl_user()
            .args(["show", "--value", "-p", "ActiveState"])
            .arg(&self.unit))
        .trim()
        .to_string()
    }

    /// The unit's journal (MESSAGE fields) of this test run.
    pub fn journal(&self) -> String {
        ok(Command::new("journalctl")
            .arg(format!("_SYSTEMD_USER_UNIT={}", self.unit))
            .args(["-o", "cat", "--no-pager"]))
    }
}

impl Drop for InstalledStage {
    fn drop(&mut self) {
        let _ = systemctl_user().arg("stop").arg(&self.unit).status();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
            if let Some(dir) = file
                .parent()
                .filter(|d| d.extension().is_some_and(|ext| ext == "d"))
            {
                let _ = std::fs::remove_dir(dir);
            }
        }
        let _ = systemctl_user().arg("daemon-reload").status();
    }
}
