//! Who may write what runs as root (docs/security.md): a config, a directory above it, or a
//! program an `exec` stage runs, that anyone but its reader and root may change is refused,
//! with the exact message and fix pinned here; the accepted cases (root's 0644 config, a
//! sticky directory, a store-like path, a user's own group-writable config) pass. The tests
//! run as root (they chown to `nobody` and drop to it with setpriv); the scratch directory's
//! name is written `@ROOT@` in the expected messages.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::util::{backupctl, placeholder, require_tool, run, stderr, stdout, tempdir, write};

const HELLO: &str = "[stage.hello]\nkind = \"hello\"\n";

/// `nobody`'s uid and gid on Debian.
const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), None).unwrap();
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests chown files to nobody: run them as root"
    );
}

/// `generate` of `config` into a scratch output: exit code 2, only the config-error unit
/// written, and stderr
/// with the scratch root written `@ROOT@`.
fn refused(root: &Path, config: &Path) -> String {
    let output_dir = root.join("units");
    let output = run(backupctl()
        .arg("--config")
        .arg(config)
        .args(["generate", "--binary", "/usr/bin/backupctl", "--output"])
        .arg(&output_dir));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    crate::util::assert_only_the_config_error_unit(&output_dir);
    // `check` refuses it through the same loader, with the same message.
    let checked = run(backupctl().arg("--config").arg(config).arg("check"));
    assert!(!checked.status.success());
    assert_eq!(stderr(&checked), stderr(&output));
    placeholder::collapse(&stderr(&output), root)
}

fn accepted(config: &Path) {
    let output = run(backupctl().arg("--config").arg(config).arg("check"));
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
}

const HELP: &str = "\n          (a config only its user and root may change, as sudo and sshd require: docs/security.md)\n";

#[test]
fn a_world_writable_config_is_refused_with_its_fix() {
    let root = tempdir();
    let config = root.path().join("config.toml");
    write(&config, HELLO);
    chmod(&config, 0o646);
    assert_eq!(
        refused(root.path(), &config),
        format!(
            "error: the config @ROOT@/config.toml is writable by others (owner root, mode 0646): whoever may write it decides what runs as root\n  --> @ROOT@/config.toml:1:1\n  = help: run: chmod go-w @ROOT@/config.toml{HELP}"
        )
    );
}

#[test]
fn a_group_writable_config_is_refused_with_its_fix() {
    let root = tempdir();
    let config = root.path().join("config.toml");
    write(&config, HELLO);
    chmod(&config, 0o664);
    assert_eq!(
        refused(root.path(), &config),
        format!(
            "error: the config @ROOT@/config.toml is writable by its group (owner root, group root, mode 0664): whoever may write it decides what runs as root\n  --> @ROOT@/config.toml:1:1\n  = help: run: chmod go-w @ROOT@/config.toml{HELP}"
        )
    );
}

#[test]
fn a_config_another_user_owns_is_refused_with_its_fix() {
    require_root();
    let root = tempdir();
    let config = root.path().join("config.toml");
    write(&config, HELLO);
    chown(&config, NOBODY);
    assert_eq!(
        refused(root.path(), &config),
        format!(
            "error: the config @ROOT@/config.toml belongs to nobody, not to root (mode 0644): nobody decides what runs as root\n  --> @ROOT@/config.toml:1:1\n  = help: run: chown root @ROOT@/config.toml{HELP}"
        )
    );
}

#[test]
fn a_config_in_a_writable_directory_is_refused_with_its_fix() {
    let root = tempdir();
    let dir = root.path().join("etc");
    let config = dir.join("config.toml");
    write(&config, HELLO);
    chmod(&dir, 0o777);
    assert_eq!(
        refused(root.path(), &config),
        format!(
            "error: the directory @ROOT@/etc above the config @ROOT@/etc/config.toml is writable by its group and others (owner root, group root, mode 0777): whoever may write it decides what runs as root\n  --> @ROOT@/etc/config.toml:1:1\n  = help: run: chmod go-w @ROOT@/etc{HELP}"
        )
    );
}

#[test]
fn a_symlink_into_a_writable_place_is_refused_where_it_points() {
    let root = tempdir();
    let shared = root.path().join("shared");
    write(&shared.join("config.toml"), HELLO);
    chmod(&shared, 0o777);
    let config = root.path().join("config.toml");
    std::os::unix::fs::symlink("shared/config.toml", &config).unwrap();
    assert_eq!(
        refused(root.path(), &config),
        format!(
            "error: the directory @ROOT@/shared above the config @ROOT@/config.toml is writable by its group and others (owner root, group root, mode 0777): whoever may write it decides what runs as root\n  --> @ROOT@/config.toml:1:1\n  = help: run: chmod go-w @ROOT@/shared{HELP}"
        )
    );
    // A link to a file another user owns names that file.
    chmod(&shared, 0o755);
    chown(&shared.join("config.toml"), NOBODY);
    assert!(
        refused(root.path(), &config).starts_with(
            "error: the config @ROOT@/config.toml (a symlink to @ROOT@/shared/config.toml) belongs to nobody, not to root (mode 0644)"
        )
    );
}

#[test]
fn roots_config_in_a_root_directory_and_in_a_sticky_one_passes() {
    require_root();
    let root = tempdir();
    let config = root.path().join("etc/config.toml");
    write(&config, HELLO);
    chmod(&config, 0o644);
    accepted(&config);
    // /tmp's rule: anyone may add entries to a sticky directory, only an entry's owner may
    // replace it, so root's file there is root's alone.
    let sticky = root.path().join("tmp");
    let config = sticky.join("config.toml");
    write(&config, HELLO);
    chmod(&sticky, 0o1777);
    accepted(&config);
    chown(&config, NOBODY);
    assert!(
        refused(root.path(), &config)
            .starts_with("error: the config @ROOT@/tmp/config.toml belongs to nobody, not to root")
    );
}

#[test]
fn a_config_in_a_store_like_tree_passes() {
    require_root();
    // As /nix/store: sticky and writable by the build group, read-only root-owned entries.
    let root = tempdir();
    let store = root.path().join("nix/store");
    let config = store.join("0123abcd-backupctl-config/config.toml");
    write(&config, HELLO);
    std::os::unix::fs::chown(&store, Some(0), Some(NOBODY)).unwrap();
    chmod(&config, 0o444);
    chmod(config.parent().unwrap(), 0o555);
    chmod(&store, 0o1775);
    accepted(&config);
    // An /etc link to it, as NixOS makes them.
    let etc = root.path().join("etc/backupctl");
    std::fs::create_dir_all(&etc).unwrap();
    std::os::unix::fs::symlink(&config, etc.join("config.toml")).unwrap();
    accepted(&etc.join("config.toml"));
    chmod(config.parent().unwrap(), 0o755);
}

/// `backupctl --user check` of `config` as nobody.
fn check_as_nobody(config: &Path) -> std::process::Output {
    require_tool("setpriv");
    run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(crate::util::backupctl_path())
        .env_remove("BACKUPCTL_CONFIG")
        .env("HOME", "/nonexistent")
        .args(["--user", "--config"])
        .arg(config)
        .arg("check"))
}

#[test]
fn a_users_config_may_be_group_writable_but_not_writable_by_others() {
    require_root();
    let root = tempdir();
    chmod(root.path(), 0o755);
    let dir = root.path().join("home");
    let config = dir.join("config.toml");
    write(&config, HELLO);
    chown(&dir, NOBODY);
    chown(&config, NOBODY);
    chmod(&config, 0o664);
    let output = check_as_nobody(&config);
    assert!(output.status.success(), "{}", stderr(&output));
    // Root reading the same file would run its stages as root: refused.
    assert!(refused(root.path(), &config).contains("belongs to nobody, not to root"));
    chmod(&config, 0o666);
    let output = check_as_nobody(&config);
    assert_eq!(
        placeholder::collapse(&stderr(&output), root.path()),
        "error: the config @ROOT@/home/config.toml is writable by others (owner nobody, group root, mode 0666): whoever may write it decides what runs as nobody\n  --> @ROOT@/home/config.toml:1:1\n  = help: run: chmod o-w @ROOT@/home/config.toml\n          (a config only its user and root may change, as sudo and sshd require: docs/security.md)\n"
    );
    // A directory above it another user owns (root's are fine).
    chmod(&config, 0o644);
    chown(&dir, 0);
    let other = root.path().join("other");
    write(&other.join("config.toml"), HELLO);
    chown(&other.join("config.toml"), NOBODY);
    chown(&other, 1);
    let output = check_as_nobody(&other.join("config.toml"));
    assert!(
        stderr(&output).contains("above the config")
            && stderr(&output).contains("belongs to daemon, not to nobody or root"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_writable_exec_script_is_reported_by_hello_and_refused_by_its_stage() {
    let root = tempdir();
    let script = root.path().join("bin/export.sh");
    write(&script, "#!/bin/sh\necho exported\n");
    chmod(&script, 0o777);
    // The stage's `cleanup` and the notify `command` are programs by path too.
    for other in ["cleanup.sh", "mail.sh"] {
        write(&root.path().join("bin").join(other), "#!/bin/sh\n");
        chmod(&root.path().join("bin").join(other), 0o775);
    }
    let config = crate::util::write_config(
        root.path(),
        "[notify.command]\ncommand = [\"@ROOT@/bin/mail.sh\"]\n\n[stage.export]\nkind = \"exec\"\ncommand = [\"@ROOT@/bin/export.sh\"]\ncleanup = [\"@ROOT@/bin/cleanup.sh\", \"now\"]\n",
    );
    let expected = "the file @ROOT@/bin/export.sh is writable by its group and others (owner root, group root, mode 0777): whoever may write it decides what runs as root; run: chmod go-w @ROOT@/bin/export.sh";
    let hello = run(crate::util::backupctl_user(root.path(), &config).arg("hello"));
    assert_eq!(hello.status.code(), Some(3));
    let table = placeholder::collapse(&stdout(&hello), root.path());
    assert!(
        table.lines().any(|line| line.starts_with("trusted")
            && line.contains("FAIL")
            && line.ends_with(expected)),
        "{table}"
    );
    for other in ["cleanup.sh", "mail.sh"] {
        let fail = format!(
            "the file @ROOT@/bin/{other} is writable by its group (owner root, group root, mode 0775)"
        );
        assert!(
            table
                .lines()
                .any(|line| line.starts_with("trusted") && line.contains(&fail)),
            "{table}"
        );
    }
    let stage = run(crate::util::backupctl_user(root.path(), &config).args(["stage", "export"]));
    assert_eq!(stage.status.code(), Some(3), "{}", stderr(&stage));
    let said = placeholder::collapse(&stderr(&stage), root.path());
    assert!(said.contains(expected), "{said}");
    assert!(!said.contains("exported"), "the script ran: {said}");
    // Fixed as the message says, it runs; hello shows its owner and mode.
    for program in ["export.sh", "cleanup.sh", "mail.sh"] {
        chmod(&root.path().join("bin").join(program), 0o755);
    }
    let stage = run(crate::util::backupctl_user(root.path(), &config).args(["stage", "export"]));
    assert_eq!(stage.status.code(), Some(0), "{}", stderr(&stage));
    let hello = run(crate::util::backupctl_user(root.path(), &config).arg("hello"));
    assert!(
        stdout(&hello).contains("owner root, mode 0755"),
        "{}",
        stdout(&hello)
    );
}

/// `backupctl --user --config CONFIG ARGS` with umask 000, as `run --here` from a careless
/// shell: no unit `UMask=` narrows what it creates.
fn with_umask_000(root: &Path, config: &Path, args: &[&str]) {
    let output = run(Command::new("sh")
        .args(["-c", "umask 000 && exec \"$@\"", "sh"])
        .arg(crate::util::backupctl_path())
        .env("STATE_DIRECTORY", root.join("state/backupctl"))
        .env("XDG_CACHE_HOME", root.join("cache"))
        .env_remove("BACKUPCTL_CONFIG")
        .args(["--user", "--config"])
        .arg(config)
        .args(args));
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn state_files_keep_their_modes_under_a_permissive_umask() {
    require_tool("restic");
    // Run records, their lock, stage locks, the metrics file and the drill's directories
    // must stay writable by root alone, so no other user changes what status or Prometheus
    // report; a drill of a world-writable tree restores it inside its 0700 scratch directory.
    let root = tempdir();
    let source = root.path().join("source/open");
    write(&source.join("file"), "restored bytes");
    chmod(&source.join("file"), 0o666);
    chmod(&source, 0o777);
    crate::util::write_secret(&root.path().join("password"), "secret");
    std::fs::create_dir(root.path().join("textfile")).unwrap();
    let config = crate::util::write_config(
        root.path(),
        r#"
[metrics]
textfile = "@ROOT@/textfile/backupctl.prom"

[jobs.drill]

[stage.home]
kind = "restic"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
init = true
paths = ["@ROOT@/source"]

[stage.drill-home]
job = "drill"
kind = "drill"
stage = "home"
sample = "100%"
"#,
    );
    with_umask_000(root.path(), &config, &["run", "--here"]);
    with_umask_000(root.path(), &config, &["run", "--here", "drill"]);
    let state = root.path().join("state/backupctl");
    assert!(state.join("runs.jsonl").exists());
    assert!(state.join("drill").is_dir());
    assert!(root.path().join("textfile/backupctl.prom").exists());
    let mut seen = 0;
    for entry in walkdir(&root.path().join("state"))
        .into_iter()
        .chain(walkdir(&root.path().join("textfile")))
    {
        let mode = std::fs::symlink_metadata(&entry)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o022, 0, "{} has mode {mode:o}", entry.display());
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} entries in the state directory");
    // The scratch directory is gone once the drill has compared the files.
    assert_eq!(std::fs::read_dir(state.join("drill")).unwrap().count(), 0);
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walkdir(&path));
        } else {
            found.push(path);
        }
    }
    found
}
