//! What the units' sandbox hides (issue 11, items 3 and 7): paths under /tmp refused by
//! `check` and `generate` but usable by `run --here`; secret files checked by the stage that
//! reads them; `prepare-paths` never following a planted symlink.

use std::path::Path;
use std::process::Command;

use crate::util::{
    backupctl, backupctl_path, backupctl_user, require_tool, run, stderr, tempdir, write,
};

/// A directory under the real /tmp, which is what these tests are about (the units'
/// `PrivateTmp=` hides it); removed at the end of the test.
fn under_tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("backupctl-test-")
        .tempdir_in("/tmp")
        .expect("a directory under /tmp")
}

fn rsync_config(dir: &Path, destination: &Path) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    write(
        &config,
        format!(
            "[stage.copy]\nkind = \"rsync\"\nsources = [\"{}/src/\"]\ndestination = \"{}\"\n",
            dir.display(),
            destination.display()
        ),
    );
    write(&dir.join("src/a.txt"), "a");
    config
}

#[test]
fn regression_check_accepted_a_destination_under_tmp_that_private_tmp_hides() {
    let dir = tempdir();
    let tmp = under_tmp();
    let config = rsync_config(dir.path(), &tmp.path().join("backup"));
    let output = run(backupctl().arg("--config").arg(&config).arg("check"));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("`PrivateTmp=`"), "{err}");
    assert!(err.contains("`destination`: stage `copy` writes"), "{err}");
    assert!(err.contains(&format!("{}:4:16", config.display())), "{err}");
    assert!(err.contains("help: move it out of /tmp"), "{err}");

    // generate refuses it too and writes only the unit that reports the error.
    let units = dir.path().join("units");
    let output = run(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--output"])
        .arg(&units));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("`PrivateTmp=`"),
        "{}",
        stderr(&output)
    );
    crate::util::assert_only_the_config_error_unit(&units);

    // The systemd generator: a message, the error unit, exit 0 so the boot goes on.
    let dirs = [tempdir(), tempdir(), tempdir()];
    let output = run(Command::new(backupctl_path())
        .args(dirs.iter().map(|d| d.path()))
        .env("BACKUPCTL_CONFIG", &config)
        .env("SYSTEMD_SCOPE", "user"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("PrivateTmp="),
        "{}",
        stderr(&output)
    );
    crate::util::assert_only_the_config_error_unit(dirs[0].path());
}

#[test]
fn regression_check_accepted_a_config_file_under_tmp() {
    let tmp = under_tmp();
    let dir = tempdir();
    let config = tmp.path().join("config.toml");
    write(
        &config,
        format!(
            "[stage.copy]\nkind = \"rsync\"\nsources = [\"{0}/src/\"]\ndestination = \"{0}/dst\"\n",
            dir.path().display()
        ),
    );
    let output = run(backupctl().arg("--config").arg(&config).arg("check"));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("the config file"), "{err}");
    assert!(err.contains("PrivateTmp="), "{err}");
}

#[test]
fn run_here_still_copies_into_a_destination_under_tmp() {
    require_tool("rsync");
    let dir = tempdir();
    let tmp = under_tmp();
    let destination = tmp.path().join("backup");
    let config = rsync_config(dir.path(), &destination);
    let output = run(backupctl_user(dir.path(), &config).args(["run", "--here"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(destination.join("a.txt")).unwrap(),
        "a"
    );
    assert!(
        stderr(&output).contains("warning:") && stderr(&output).contains("PrivateTmp="),
        "{}",
        stderr(&output)
    );
}

/// A restic stage (no hello stage) with its password in `password` of mode `mode`.
fn restic_config(dir: &Path, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let password = dir.join("password");
    write(&password, "correct horse battery staple\n");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(mode)).unwrap();
    write(&dir.join("src/a.txt"), "a");
    let config = dir.join("config.toml");
    write(
        &config,
        format!(
            "[stage.vault]\nkind = \"restic\"\nrepository = \"{0}/repo\"\npassword_file = \"{0}/password\"\ninit = true\npaths = [\"{0}/src\"]\n",
            dir.display()
        ),
    );
    config
}

#[test]
fn regression_a_restic_stage_used_a_world_readable_password_file_without_hello() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let config = restic_config(dir, 0o644);
    let output = run(backupctl_user(dir, &config).args(["stage", "vault"]));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "the secret file {}/password is readable by its group and others (mode 0644); run: chmod 600",
            dir.display()
        )),
        "{err}"
    );
    assert!(!err.contains("correct horse"), "the secret leaked: {err}");
    assert!(
        !dir.join("repo").exists(),
        "restic ran with the exposed password"
    );

    // Fixed as the message says, the same stage backs up.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("password"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = run(backupctl_user(dir, &config).args(["stage", "vault"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.join("repo/config").is_file());
}

#[test]
fn regression_hello_called_a_group_readable_password_readable_by_others() {
    let dir = tempdir();
    let dir = dir.path();
    let config = restic_config(dir, 0o640);
    let output = run(backupctl_user(dir, &config).arg("hello"));
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        table.contains("is readable by its group (mode 0640); run: chmod 600"),
        "{table}"
    );
    assert!(!table.contains("by others"), "{table}");
}

/// `prepare-paths` runs as root (`ExecStartPre=+`): these tests need root to give
/// directories away, as the unit does.
#[track_caller]
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (prepare-paths chowns as root does under the unit): run it as root"
    );
}

const NOBODY: u32 = 65534;

#[test]
fn regression_prepare_paths_followed_a_symlink_planted_by_the_stage_user() {
    use std::os::unix::fs::MetadataExt;
    require_root();
    let dir = tempdir();
    let dir = dir.path();
    // The stage's user owns its directory and plants a link to somewhere root owns.
    let own = dir.join("stage");
    let victim = dir.join("victim");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).unwrap();
    let link = own.join("out");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();

    let output = run(backupctl()
        .args(["prepare-paths", "--owner", "nobody", "--"])
        .arg(link.join("new")));
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("refusing to follow the symlink"), "{err}");
    assert!(err.contains(&link.display().to_string()), "{err}");
    assert!(!victim.join("new").exists(), "created through the symlink");
    assert_eq!(
        std::fs::metadata(&victim).unwrap().uid(),
        0,
        "victim chowned"
    );
}

#[test]
fn prepare_paths_gives_away_only_what_it_created_and_follows_roots_own_links() {
    use std::os::unix::fs::MetadataExt;
    require_root();
    let dir = tempdir();
    let dir = dir.path();
    let existing = dir.join("existing");
    std::fs::create_dir_all(&existing).unwrap();
    let output = run(backupctl()
        .args(["prepare-paths", "--owner", "nobody", "--"])
        .arg(existing.join("a/b")));
    assert!(output.status.success(), "{}", stderr(&output));
    let uid = |p: &Path| std::fs::metadata(p).unwrap().uid();
    assert_eq!(uid(&existing), 0, "an existing parent keeps its owner");
    assert_eq!(uid(&existing.join("a")), NOBODY);
    assert_eq!(uid(&existing.join("a/b")), NOBODY);

    // A link root made in a directory only root may change (like /var/run → /run).
    std::os::unix::fs::symlink(&existing, dir.join("by-root")).unwrap();
    let output = run(backupctl()
        .args(["prepare-paths", "--"])
        .arg(dir.join("by-root/c")));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(existing.join("c").is_dir());
}

#[test]
fn an_exec_stage_failing_on_a_read_only_file_system_says_to_add_the_path_to_writes() {
    let dir = tempdir();
    let dir = dir.path();
    let config = dir.join("config.toml");
    // What a command writing outside its `ReadWritePaths=` prints under its unit.
    write(
        &config,
        format!(
            "[stage.dump]\nkind = \"exec\"\ncommand = [\"/bin/sh\", \"-c\", \"echo 'touch: /srv/x: Read-only file system' >&2; exit 1\"]\nwrites = [\"{}/dumps\"]\n",
            dir.display()
        ),
    );
    let output = run(backupctl_user(dir, &config).args(["stage", "dump"]));
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "stage `dump` may write only {}/dumps",
            dir.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("add the path it writes to `writes` in [stage.dump]"),
        "{err}"
    );
}
