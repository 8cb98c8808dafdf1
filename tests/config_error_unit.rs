//! A config that does not load at boot is never silent: `backupctl generate` and the real
//! generator write only `backupctl-config-error.service` (pinned in tests/config-error/CASE/
//! expected, `BLESS=1` rewrites it), pulled in at boot by `multi-user.target` (system) or
//! `default.target` (user). Its `ExecStart=` runs `check` on the config, which fails with the
//! error; `status` says the same. The boot under a real systemd is in scripts/guest/
//! (`config_error_boots_in_a_guest`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::golden::{self, args};
use crate::util::{
    backupctl, backupctl_path, repo_root, require_tool, run, stderr, stdout, tempdir,
};

fn cases() -> Vec<PathBuf> {
    ["system", "user"]
        .iter()
        .map(|name| repo_root().join("tests/config-error").join(name))
        .collect()
}

fn scope(case: &Path) -> &'static str {
    if args(case).iter().any(|a| a == "--user") {
        "user"
    } else {
        "system"
    }
}

#[test]
fn generate_writes_only_the_error_unit_for_a_broken_config() {
    for case in cases() {
        let out = tempdir();
        // A unit set of an earlier, valid config: the error unit replaces it.
        crate::util::golden::generate(
            &repo_root().join("tests/generate/design-example"),
            Path::new("/usr/bin/backupctl"),
            out.path(),
        );
        let output = run(backupctl()
            .arg("--config")
            .arg(case.join("config.toml"))
            .args(args(&case))
            .args(["generate", "--binary", "/usr/bin/backupctl", "--output"])
            .arg(out.path()));
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("config.toml:13:10"),
            "{}",
            stderr(&output)
        );
        assert!(
            stdout(&output).contains("wrote only backupctl-config-error.service"),
            "{}",
            stdout(&output)
        );
        golden::assert_dir(&case, out.path(), &case);
    }
}

#[test]
fn the_systemd_generator_writes_the_same_error_unit_and_exits_0() {
    for case in cases() {
        let dirs = [tempdir(), tempdir(), tempdir()];
        let output = run(Command::new(backupctl_path())
            .args(dirs.iter().map(|d| d.path()))
            .env("BACKUPCTL_CONFIG", case.join("config.toml"))
            .env("BACKUPCTL_BINARY", "/usr/bin/backupctl")
            .env("SYSTEMD_SCOPE", scope(&case)));
        assert!(output.status.success(), "{}", stderr(&output));
        golden::assert_dir(&case, dirs[0].path(), &case);
    }
}

/// What runs at boot: the unit is valid for systemd, and its `ExecStart=` fails with the
/// config's error and position.
#[test]
fn the_error_units_command_fails_with_the_error_and_its_position() {
    require_tool("systemd-analyze");
    for case in cases() {
        let out = tempdir();
        let output = run(Command::new(backupctl_path())
            .arg(out.path())
            .env("BACKUPCTL_CONFIG", case.join("config.toml"))
            .env("SYSTEMD_SCOPE", scope(&case)));
        assert!(output.status.success(), "{}", stderr(&output));
        let unit =
            std::fs::read_to_string(out.path().join("backupctl-config-error.service")).unwrap();

        let mut verify = Command::new("systemd-analyze");
        verify.args(["verify", "--man=no"]);
        let runtime = tempdir();
        if scope(&case) == "user" {
            std::fs::set_permissions(
                runtime.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
            verify.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
        }
        let output = run(verify
            .arg("backupctl-config-error.service")
            .current_dir(out.path())
            .env("SYSTEMD_LOG_LEVEL", "notice"));
        assert!(
            output.status.success() && stderr(&output).trim().is_empty(),
            "systemd-analyze verify:\n{}{}\n{unit}",
            stdout(&output),
            stderr(&output)
        );

        let exec_start = unit
            .lines()
            .find_map(|line| line.strip_prefix("ExecStart="))
            .expect("ExecStart=");
        let words: Vec<&str> = exec_start.split_whitespace().collect();
        assert_eq!(words[0], backupctl_path().to_str().unwrap());
        let output = run(Command::new(words[0]).args(&words[1..]));
        assert_eq!(
            output.status.code(),
            Some(1),
            "{exec_start}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("runs after `helo`, which is not a stage")
                && stderr(&output).contains("config.toml:13:10"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn status_names_the_config_error_and_the_error_unit() {
    let case = repo_root().join("tests/config-error/system");
    let output = run(backupctl()
        .arg("--config")
        .arg(case.join("config.toml"))
        .arg("status"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("config.toml:13:10"),
        "{}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("backupctl-config-error.service")
            && stdout(&output).contains("daemon-reload"),
        "{}",
        stdout(&output)
    );

    let output = run(backupctl()
        .arg("--config")
        .arg(case.join("config.toml"))
        .args(["status", "--json"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["config_error_unit"], "backupctl-config-error.service");
    assert!(
        json["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("config.toml:13:10")),
        "{json:#}"
    );
}

/// The boot under a real systemd (PID 1) in the Debian guest, with the package installed:
/// each broken config of scripts/guest/config-error-scenarios is on disk at a boot, and the
/// boot leaves `backupctl-config-error.service` in `systemctl --failed` with the error and its
/// position in the journal; the fixed config and `daemon-reload` bring the units back.
#[test]
fn config_error_boots_in_a_guest() {
    assert!(
        Path::new("/usr/bin/qemu-system-x86_64").exists(),
        "qemu-system-x86_64 is missing: run scripts/setup-deps (installs qemu-system-x86, qemu-utils, debootstrap)"
    );
    let package = crate::util::debian_package();
    let output =
        run(Command::new(repo_root().join("scripts/guest/config-error-test")).arg(package));
    let log = stdout(&output);
    assert!(
        output.status.success() && log.contains("ALL PASSED"),
        "the guest's config-error scenarios failed ({}):\n{log}\n{}",
        output.status,
        stderr(&output)
    );
}
