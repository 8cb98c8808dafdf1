//! The `restic` stage against real repositories on loopback: a local directory, restic's REST
//! protocol (`rclone serve restic`), sftp through a real OpenSSH server, S3 through a real
//! S3-compatible server (moto). Each backup is restored and compared byte for byte with its
//! source (contents, modes, symlinks, hard links, empty dirs, odd names). The REST one runs
//! under the systemd user manager, with the server stopped mid-job.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::installed::InstalledUnits;
use crate::util::server::{Server, rest_server};
use crate::util::{
    assert_same_tree, backupctl_user, free_port, ok, random_file, require_tool, run, stderr,
    stdout, systemctl_user, systemd_lock, systemd_user_env, tempdir, write, write_config,
};

/// A private sshd on loopback that accepts one generated key for root; returns the server
/// and restic's `sftp.command` option for it.
fn sftp_server(dir: &Path) -> (Server, String) {
    require_tool("sshd");
    require_tool("ssh-keygen");
    let port = free_port();
    for key in ["host_key", "user_key"] {
        ok(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key)));
    }
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    let config = dir.join("sshd_config");
    write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
             StrictModes no\nPidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\n",
            d = dir.display()
        ),
    );
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut command = Command::new("/usr/sbin/sshd");
    command.args(["-D", "-e", "-f"]).arg(&config);
    let server = Server::start(command, port, "sshd");
    let sftp_command = format!(
        "sftp.command=ssh -p {port} -i {d}/user_key -o BatchMode=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 -s sftp",
        d = dir.display()
    );
    (server, sftp_command)
}

/// moto's S3 server (installed from PyPI by scripts/setup-deps).
fn s3_server() -> Server {
    require_tool("moto_server");
    let port = free_port();
    let mut command = Command::new("moto_server");
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    Server::start(command, port, "moto_server")
}

/// A tree with what a faithful backup must keep: contents, modes, symlinks (also dangling),
/// hard links, empty directories, names with spaces, newlines and non-UTF-8 bytes.
fn make_tree(root: &Path) {
    write(&root.join("plain.txt"), "hello\n");
    write(&root.join("dir with spaces/file name.txt"), "spaces\n");
    write(
        &root.join("deep/a/b/c/d.bin"),
        (0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
    );
    let script = root.join("bin/run.sh");
    write(&script, "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = root.join("private.key");
    write(&private, "not really a key\n");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let readonly = root.join("read-only.txt");
    write(&readonly, "ro\n");
    std::fs::set_permissions(&readonly, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::create_dir_all(root.join("empty dir")).unwrap();
    std::fs::create_dir_all(root.join("sticky")).unwrap();
    std::fs::set_permissions(root.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink("plain.txt", root.join("link-to-plain")).unwrap();
    std::os::unix::fs::symlink("/does/not/exist", root.join("dangling link")).unwrap();
    std::os::unix::fs::symlink("deep/a", root.join("link-to-dir")).unwrap();
    std::fs::hard_link(root.join("plain.txt"), root.join("hard link to plain")).unwrap();
    let latin1 = root.join(OsStr::from_bytes(b"caf\xe9 \xff.txt"));
    write(&latin1, "latin-1 name\n");
    write(&root.join("new\nline"), "newline in name\n");
    write(&root.join("empty file"), "");
}

/// Where restic restored `source` under `target`: `target/<absolute source path>`.
fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

/// Byte-for-byte comparison, plus the hard link (which diff cannot see).
#[track_caller]
fn assert_restored(source: &Path, target: &Path) {
    let copy = restored(target, source);
    assert_same_tree(source, &copy);
    let a = std::fs::metadata(copy.join("plain.txt")).unwrap();
    let b = std::fs::metadata(copy.join("hard link to plain")).unwrap();
    assert_eq!(a.ino(), b.ino(), "the hard link was restored as a copy");
}

/// A secret with a recognisable random value, in a 0600 file.
fn secret(dir: &Path, name: &str) -> (PathBuf, String) {
    let value = format!("{name}-{}", random_hex());
    let path = dir.join(name);
    write(&path, format!("{value}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, value)
}

fn random_hex() -> String {
    let mut bytes = [0u8; 12];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, in a form `journalctl --since` reads.
fn journal_now() -> String {
    jiff::Zoned::now().strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn config(dir: &Path, text: &str) -> PathBuf {
    write_config(dir, text)
}

fn restore_and_compare(dir: &Path, config: &Path, stage: &str, source: &Path) {
    let target = dir.join(format!("restore-{}", random_hex()));
    ok(backupctl_user(dir, config)
        .args(["restore", stage, "--target"])
        .arg(&target));
    assert_restored(source, &target);
}

fn snapshot_count(dir: &Path, config: &Path, stage: &str) -> usize {
    let out = ok(backupctl_user(dir, config).args(["snapshots", stage, "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("snapshots --json");
    list.len()
}

#[test]
fn restic_local_backup_restore_retention_and_check() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let source = dir.join("source");
    make_tree(&source);
    let (password, _) = secret(dir, "password");
    let repo = dir.join("repo");
    let config = config(
        dir,
        &format!(
            r#"
[stage.rlocal]
kind = "restic"
repository = "{repo}"
password_file = "{password}"
init = true
paths = ["{source}"]
exclude = ["*.tmp"]
tags = ["test"]
host = "testhost"
keep = {{ last = 2 }}

[jobs.rlocal-weekly]
description = "prune and check"

[stage.rlocal-prune]
job = "rlocal-weekly"
kind = "restic"
operation = "prune"
repository = "{repo}"
password_file = "{password}"
tags = ["test"]
host = "testhost"
keep = {{ last = 1 }}

[stage.rlocal-check]
job = "rlocal-weekly"
kind = "restic"
operation = "check"
repository = "{repo}"
password_file = "{password}"
read_data_subset = "50%"
"#,
            repo = repo.display(),
            password = password.display(),
            source = source.display()
        ),
    );
    write(&source.join("skip.tmp"), "excluded");
    ok(backupctl_user(dir, &config).args(["run", "--here"]));
    std::fs::remove_file(source.join("skip.tmp")).unwrap();
    assert!(
        repo.join("config").is_file(),
        "init = true created the repository"
    );
    restore_and_compare(dir, &config, "rlocal", &source);

    // Figures of the run record: the first backup added everything.
    let runs = dir.join("state/backupctl/runs.jsonl");
    let record = crate::util::read_run_records(&runs)
        .pop()
        .expect("a run record");
    assert_eq!(record["result"], "success", "{record}");
    assert!(
        record["figures"]["files_new"].as_u64().unwrap() >= 10,
        "{record}"
    );
    assert!(
        record["figures"]["bytes_added"].as_u64().unwrap() > 70_000,
        "{record}"
    );
    assert_eq!(record["figures"]["snapshot_id"].as_str().unwrap().len(), 8);

    // Retention after each backup keeps the last 2; the weekly job prunes to 1 and checks.
    write(&source.join("second.txt"), "2");
    ok(backupctl_user(dir, &config).args(["run", "--here"]));
    write(&source.join("third.txt"), "3");
    ok(backupctl_user(dir, &config).args(["run", "--here"]));
    assert_eq!(snapshot_count(dir, &config, "rlocal"), 2);
    let record = crate::util::read_run_records(&runs)
        .pop()
        .expect("a run record");
    assert_eq!(record["figures"]["files_new"], 1, "{record}");
    ok(backupctl_user(dir, &config).args(["run", "--here", "rlocal-weekly"]));
    assert_eq!(snapshot_count(dir, &config, "rlocal"), 1);
    restore_and_compare(dir, &config, "rlocal", &source);

    // Restoring one path only.
    let target = dir.join("partial");
    let only = source.join("dir with spaces");
    ok(backupctl_user(dir, &config)
        .args(["restore", "rlocal", "--include"])
        .arg(&only)
        .arg("--target")
        .arg(&target));
    assert_same_tree(&only, &restored(&target, &only));
    assert!(!restored(&target, &source).join("plain.txt").exists());

    // Browsing through FUSE: the latest snapshot has the same contents as the source.
    require_tool("fusermount3");
    let mountpoint = dir.join("mnt");
    std::fs::create_dir_all(&mountpoint).unwrap();
    let mut mount = backupctl_user(dir, &config)
        .args(["mount", "rlocal"])
        .arg(&mountpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = restored(&mountpoint.join("snapshots/latest"), &source);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !latest.join("plain.txt").exists() {
        assert!(
            mount.try_wait().unwrap().is_none(),
            "backupctl mount ended early"
        );
        assert!(Instant::now() < deadline, "the repository was not mounted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let diff = run(Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&source)
        .arg(&latest));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mount.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    mount.wait().unwrap();
    let still = run(Command::new("mountpoint").arg("-q").arg(&mountpoint));
    assert!(!still.status.success(), "Ctrl-C unmounts the repository");
    assert!(
        diff.status.success(),
        "mounted snapshot differs: {}",
        stdout(&diff)
    );
}

/// `rclone serve restic --append-only` on `dir`: snapshots can be added, never removed.
fn append_only_rest_server(dir: &Path, port: u16) -> Server {
    require_tool("rclone");
    let mut command = Command::new("rclone");
    command
        .args(["serve", "restic", "--append-only", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(dir);
    Server::start(command, port, "rclone serve restic --append-only")
}

/// The fleet layout of docs/fleet.md: a host backs up with its own key through an
/// append-only endpoint and cannot forget its snapshots (a thief with its key cannot either);
/// a prune job with full access can; the host's backup restores byte for byte.
#[test]
fn restic_append_only_rest_refuses_a_hosts_forget_and_a_full_access_prune_can() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let (host_dir, admin_dir) = (dir.join("host-a"), dir.join("admin"));
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::create_dir_all(&admin_dir).unwrap();
    let source = dir.join("source");
    make_tree(&source);
    let (admin_password, _) = secret(&admin_dir, "password");
    let (host_password, _) = secret(&host_dir, "password");
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let (full_port, append_port) = (free_port(), free_port());
    let _full = rest_server(&served, full_port);
    let _append = append_only_rest_server(&served, append_port);
    let full = format!("rest:http://127.0.0.1:{full_port}/fleet");
    let append = format!("rest:http://127.0.0.1:{append_port}/fleet");

    // The administrator creates the repository and gives the host a key of its own.
    let restic = |repo: &str, password: &Path, args: &[&str]| {
        let mut command = Command::new("restic");
        command
            .args(["--repo", repo, "--password-file"])
            .arg(password)
            .args(args)
            .env("RESTIC_CACHE_DIR", dir.join("cache"));
        command
    };
    ok(&mut restic(&full, &admin_password, &["init"]));
    ok(restic(
        &full,
        &admin_password,
        &["key", "add", "--new-password-file"],
    )
    .arg(&host_password));

    let host_config = write_config(
        &host_dir,
        &format!(
            r#"
[stage.backup]
kind = "restic"
repository = "{append}"
password_file = "{password}"
paths = ["{source}"]
host = "host-a"
tags = ["host-a"]

[jobs.cleanup]

[stage.forget]
job = "cleanup"
kind = "restic"
operation = "forget"
repository = "{append}"
password_file = "{password}"
host = "host-a"
keep = {{ last = 1 }}
"#,
            password = host_password.display(),
            source = source.display()
        ),
    );
    ok(backupctl_user(&host_dir, &host_config).args(["run", "--here"]));
    write(
        &source.join("plain.txt"),
        "changed after the first backup\n",
    );
    ok(backupctl_user(&host_dir, &host_config).args(["run", "--here"]));
    assert_eq!(snapshot_count(&host_dir, &host_config, "backup"), 2);

    // The host's forget is refused by the endpoint: both snapshots stay.
    let refused = run(backupctl_user(&host_dir, &host_config).args(["run", "--here", "cleanup"]));
    assert!(
        !refused.status.success()
            && stderr(&refused).contains("the repository refused to delete (403 Forbidden)"),
        "forget through the append-only endpoint succeeded or failed without saying why:\n{}",
        stderr(&refused)
    );
    assert!(
        !stderr(&refused).contains(".go:"),
        "a Go stack trace in the error:\n{}",
        stderr(&refused)
    );
    assert_eq!(snapshot_count(&host_dir, &host_config, "backup"), 2);

    // The prune job, with the administrator's key on the full-access endpoint, can.
    let admin_config = write_config(
        &admin_dir,
        &format!(
            r#"
[stage.prune]
kind = "restic"
operation = "prune"
repository = "{full}"
password_file = "{password}"
host = "host-a"
keep = {{ last = 1 }}
"#,
            password = admin_password.display()
        ),
    );
    ok(backupctl_user(&admin_dir, &admin_config).args(["run", "--here"]));
    assert_eq!(snapshot_count(&host_dir, &host_config, "backup"), 1);

    // What is left is the newest backup, and it restores through the host's endpoint.
    restore_and_compare(&host_dir, &host_config, "backup", &source);
}

#[test]
fn restic_without_init_fails_clearly_and_never_reinitialises() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let source = dir.join("source");
    write(&source.join("a"), "a");
    let (password, _) = secret(dir, "password");
    let repo = dir.join("repo");
    let text = |init: bool, password: &Path| {
        format!(
            "[stage.rnoinit]\nkind = \"restic\"\nrepository = \"{}\"\npassword_file = \"{}\"\n\
             init = {init}\npaths = [\"{}\"]\n",
            repo.display(),
            password.display(),
            source.display()
        )
    };
    let without = config(dir, &text(false, &password));
    let output = run(backupctl_user(dir, &without).args(["run", "--here"]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("there is no repository at the configured location"),
        "{}",
        stderr(&output)
    );
    assert!(!repo.join("config").exists());

    let with = config(dir, &text(true, &password));
    ok(backupctl_user(dir, &with).args(["run", "--here"]));
    let repo_config = std::fs::read(repo.join("config")).unwrap();
    // A wrong password must not look like a missing repository.
    let (other, _) = secret(dir, "other-password");
    let wrong = config(dir, &text(true, &other));
    let output = run(backupctl_user(dir, &wrong).args(["run", "--here"]));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("wrong password"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(repo.join("config")).unwrap(), repo_config);
    assert_eq!(std::fs::read_dir(repo.join("keys")).unwrap().count(), 1);
}

#[test]
fn restic_sftp_backup_restore() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let (_server, sftp_command) = sftp_server(dir);
    let source = dir.join("source");
    make_tree(&source);
    let (password, _) = secret(dir, "password");
    let config = config(
        dir,
        &format!(
            r#"
[stage.rsftp]
kind = "restic"
repository = "sftp:root@127.0.0.1:{repo}"
options = ["{sftp_command}"]
password_file = "{password}"
init = true
paths = ["{source}"]
"#,
            repo = dir.join("repo").display(),
            password = password.display(),
            source = source.display()
        ),
    );
    ok(backupctl_user(dir, &config).args(["run", "--here"]));
    assert!(dir.join("repo/config").is_file());
    restore_and_compare(dir, &config, "rsftp", &source);
}

#[test]
fn restic_s3_backup_restore_with_keys_from_files_and_credentials() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let server = s3_server();
    let source = dir.join("source");
    make_tree(&source);
    let (password, password_value) = secret(dir, "password");
    let (key_id, _) = secret(dir, "key-id");
    let (key, key_value) = secret(dir, "secret-key");
    let config = config(
        dir,
        &format!(
            r#"
[stage.rs3]
kind = "restic"
repository = "s3:http://127.0.0.1:{port}/backupctl-test/repo"
password_credential = "{password}"
backend_files = {{ AWS_ACCESS_KEY_ID = "{key_id}" }}
backend_credentials = {{ AWS_SECRET_ACCESS_KEY = "{key}" }}
init = true
paths = ["{source}"]
"#,
            port = server.port,
            password = password.display(),
            key_id = key_id.display(),
            key = key.display(),
            source = source.display()
        ),
    );
    let output = run(backupctl_user(dir, &config).args(["run", "--here"]));
    assert!(output.status.success(), "{}", stderr(&output));
    for secret in [&password_value, &key_value] {
        assert!(!stderr(&output).contains(secret.as_str()));
    }
    restore_and_compare(dir, &config, "rs3", &source);
}

/// Lock files in a local repository (named by their 64-hex-digit id; a restic killed while
/// writing one may also leave a `…-tmp-…` file, which restic ignores).
/// A restic stage `stage` in `dir` (with the keys `extra` added) whose backup (a tree with a
/// 96 MiB random file, into a local repository it creates) runs long enough to be stopped or
/// killed midway. Returns the source, the repository and the config.
fn long_backup(dir: &Path, stage: &str, extra: &str) -> (PathBuf, PathBuf, PathBuf) {
    let repo = dir.join("repo");
    let (source, config) = long_backup_to(dir, stage, &repo.display().to_string(), extra);
    (source, repo, config)
}

/// [`long_backup`] into `repository` (any restic repository string).
fn long_backup_to(dir: &Path, stage: &str, repository: &str, extra: &str) -> (PathBuf, PathBuf) {
    require_tool("restic");
    let source = dir.join("source");
    make_tree(&source);
    random_file(&source.join("big/one.bin"), 96 << 20);
    let (password, _) = secret(dir, "password");
    let config = config(
        dir,
        &format!(
            "[stage.{stage}]\nkind = \"restic\"\nrepository = \"{repository}\"\n\
             password_file = \"{}\"\ninit = true\npaths = [\"{}\"]\n{extra}",
            password.display(),
            source.display()
        ),
    );
    (source, config)
}

fn locks(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("locks"))
        .map(|dir| {
            dir.flatten()
                .filter(|entry| {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit())
                })
                .count()
        })
        .unwrap_or(0)
}

/// Runs `stage` and kills it (restic's process group first, as systemd's SIGKILL of the
/// whole cgroup does) once restic holds its lock in the repository directory `repo`: the
/// killed run leaves its marker and exactly one stale lock.
fn kill_mid_backup(dir: &Path, config: &Path, stage: &str, repo: &Path) {
    let mut child = backupctl_user(dir, config)
        .args(["stage", stage])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if locks(repo) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "restic never started writing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Each tool runs in a process group of its own (and gets its stop signal when its stage
    // dies: SIGINT for restic, on which it removes its lock): kill restic's group first, then
    // the stage's.
    let tools = run(Command::new("pgrep").args(["-P", &child.id().to_string()]));
    let groups: Vec<String> = stdout(&tools)
        .split_whitespace()
        .map(String::from)
        .chain([child.id().to_string()])
        .collect();
    for group in &groups {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group.parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    child.wait().unwrap();
    // restic was reparented when the stage died; wait until it is reaped, too (a zombie
    // still "exists" for restic's stale-lock test).
    let deadline = Instant::now() + Duration::from_secs(30);
    while groups.iter().any(|group| {
        run(Command::new("pgrep").args(["-g", group]))
            .status
            .success()
    }) {
        assert!(
            Instant::now() < deadline,
            "the killed restic was never reaped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(locks(repo), 1, "a stale lock is left");
}

#[test]
fn restic_killed_mid_backup_next_run_removes_the_stale_lock() {
    let dir = tempdir();
    let dir = dir.path();
    let (source, repo, config) = long_backup(dir, "rkill", "");
    kill_mid_backup(dir, &config, "rkill", &repo);

    let output = run(backupctl_user(dir, &config).args(["run", "--here"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("removing stale restic locks"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        locks(&repo),
        0,
        "stale lock not removed: {}",
        stderr(&output)
    );
    restore_and_compare(dir, &config, "rkill", &source);
}

/// After a killed run the next one starts with `restic unlock`; a remote repository that
/// cannot be reached yet (a catch-up run at boot, before the network or the server is up)
/// is retried like any attempt, not failed at once.
#[test]
fn after_a_killed_run_an_unreachable_repository_is_retried_from_the_unlock() {
    let dir = tempdir();
    let dir = dir.path();
    let served = dir.join("served");
    let port = free_port();
    let mut server = rest_server(&served, port);
    let (source, config) = long_backup_to(
        dir,
        "late",
        &format!("rest:http://127.0.0.1:{port}/repo"),
        "retries = 3\nretry_delay = \"2s\"\n",
    );
    kill_mid_backup(dir, &config, "late", &served.join("repo"));
    server.stop();
    let next = backupctl_user(dir, &config)
        .args(["stage", "late"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server comes back while the stage waits for its first retry.
    std::thread::sleep(Duration::from_millis(500));
    let _server = rest_server(&served, port);
    let output = next.wait_with_output().unwrap();
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("cannot reach the repository"), "{said}");
    assert!(said.contains("retry 1 of 3"), "{said}");
    assert_eq!(locks(&served.join("repo")), 0, "{said}");
    restore_and_compare(dir, &config, "late", &source);
}

/// The scenario of [`a_reboot_after_a_killed_backup`], in a PID namespace of its own (so that
/// the PIDs are the script's alone), `$@` being the stage's command line.
const REBOOT_SCENARIO: &str = r#"set -euo pipefail
restic_() { restic -r "$REPO" "$@"; }
# 1. The stage is killed mid-backup (the power cut): its run marker and restic's lock stay.
"$@" >/dev/null 2>&1 &
for _ in $(seq 600); do
    [ -n "$(restic_ list locks --no-lock 2>/dev/null)" ] && break
    sleep 0.1
done
kill -KILL -1 2>/dev/null || true
wait || true
id=$(restic_ list locks --no-lock)
pid=$(restic_ cat lock "$id" --no-lock | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$')
echo "$id" >"$OUT/dead.lock"
for _ in $(seq 300); do
    [ -z "$(ps -o stat= -p "$pid")" ] && break
    sleep 0.1
done
# 2. Another host's restic holds a live lock.
mkfifo "$OUT/other.in"
unshare --uts bash -c 'hostname elsewhere && exec restic -r "$REPO" backup --stdin --stdin-filename other.bin' \
    <"$OUT/other.in" >"$OUT/other.log" 2>&1 &
other=$!
exec 3>"$OUT/other.in"
for _ in $(seq 600); do
    [ "$(restic_ list locks --no-lock | wc -l)" = 2 ] && break
    sleep 0.1
done
# 3. In the new boot, another process has the dead restic's PID.
for _ in 1 2 3 4 5; do
    echo $((pid - 1)) >/proc/sys/kernel/ns_last_pid
    sleep 600 3>&- &
    victim=$!
    [ "$victim" = "$pid" ] && break
    kill "$victim"
done
echo "$victim $pid" >"$OUT/pids"
# 4. The next run, in a boot that began a second ago: a time namespace moves CLOCK_BOOTTIME
# and with it /proc/stat's btime, so the dead lock was made before this boot.
sleep 2
up=$(cut -d. -f1 /proc/uptime)
rc=0
unshare --time --boottime "-$((up - 1))" --fork "$@" >"$OUT/run.out" 2>"$OUT/run.err" 3>&- || rc=$?
echo "$rc" >"$OUT/run.rc"
if [ -n "$(ps -o stat= -p "$victim" | grep -v Z)" ]; then echo alive; else echo dead; fi >"$OUT/victim"
restic_ list locks --no-lock >"$OUT/locks.after"
# The other host's backup ends (fd 3 is its stdin's one writer).
echo other >&3
exec 3>&-
wait "$other"
echo $? >"$OUT/other.rc"
kill -KILL -1 2>/dev/null || true
"#;

/// What the run after the reboot left: its stderr, the dead lock's ID, the locks after it.
struct AfterReboot {
    run_stderr: String,
    dead_lock: String,
    locks_after: String,
}

/// A restic stage killed mid-backup, a reboot, another host's restic holding a live lock of
/// the same repository, and the dead restic's PID taken by a process of the new boot (a
/// `sleep`, which SIGHUP ends); then the stage's next run, which must succeed and leave the
/// `sleep` alive, its backup restored byte for byte.
fn a_reboot_after_a_killed_backup(dir: &Path, repository: &str) -> AfterReboot {
    require_tool("unshare");
    let (source, config) = long_backup_to(dir, "reboot", repository, "");
    let password = dir.join("password"); // the one long_backup_to wrote
    let stage = backupctl_user(dir, &config);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut scenario = Command::new("unshare");
    scenario
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "bash",
            "-c",
            REBOOT_SCENARIO,
            "bash",
        ])
        .arg(stage.get_program())
        .args(stage.get_args())
        .args(["stage", "reboot"])
        .env("REPO", repository)
        .env("RESTIC_PASSWORD_FILE", &password)
        .env("OUT", &out);
    for (key, value) in stage.get_envs() {
        match value {
            Some(value) => scenario.env(key, value),
            None => scenario.env_remove(key),
        };
    }
    ok(&mut scenario);
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let pids = read("pids");
    let (victim, dead) = pids.trim().split_once(' ').unwrap_or_default();
    assert_eq!(victim, dead, "no process got the dead restic's PID {dead}");
    assert_eq!(read("other.rc").trim(), "0", "{}", read("other.log"));
    let run_stderr = read("run.err");
    assert_eq!(read("run.rc").trim(), "0", "{run_stderr}");
    assert_eq!(
        read("victim").trim(),
        "alive",
        "restic's SIGHUP reached PID {dead}: {run_stderr}"
    );
    restore_and_compare(dir, &config, "reboot", &source);
    let dead_lock = read("dead.lock").trim().to_string();
    assert!(!dead_lock.is_empty());
    AfterReboot {
        run_stderr,
        dead_lock,
        locks_after: read("locks.after"),
    }
}

/// After a reboot, the restic of the new boot that has a dead lock's PID is never sent
/// restic's SIGHUP probe (`restic unlock` keeps a lock of this host younger than 30
/// minutes whose PID answers it, so it sends one). In a local repository the locks of the
/// earlier boot are removed as files; the other host's live lock stays.
#[test]
fn after_a_reboot_unlock_sends_no_sighup_to_a_pid_of_the_new_boot_local() {
    let dir = tempdir();
    let dir = dir.path();
    let repository = dir.join("repo").display().to_string();
    let after = a_reboot_after_a_killed_backup(dir, &repository);
    assert!(
        after
            .run_stderr
            .contains("made before this boot are left beside 1 other(s); removing their files"),
        "{}",
        after.run_stderr
    );
    assert!(
        !after.locks_after.contains(&after.dead_lock),
        "the dead lock is left: {}",
        after.locks_after
    );
    assert_eq!(
        after.locks_after.lines().count(),
        1,
        "{}",
        after.locks_after
    );
}

/// The same over REST, where restic cannot remove one lock: `unlock` does not run until the
/// dead lock is stale by its age, the backup runs beside it (both locks are shared ones).
#[test]
fn after_a_reboot_unlock_sends_no_sighup_to_a_pid_of_the_new_boot_rest() {
    let dir = tempdir();
    let dir = dir.path();
    let port = free_port();
    let _server = rest_server(&dir.join("served"), port);
    let repository = format!("rest:http://127.0.0.1:{port}/repo");
    let after = a_reboot_after_a_killed_backup(dir, &repository);
    assert!(
        after
            .run_stderr
            .contains("so it waits until restic calls them stale by their age"),
        "{}",
        after.run_stderr
    );
    assert!(
        after.locks_after.contains(&after.dead_lock),
        "the dead lock is gone: {}",
        after.locks_after
    );
}

/// A stop (`systemctl stop`, a shutdown: SIGTERM to the stage) mid-backup leaves no lock:
/// restic 0.14 removes its lock on SIGINT only, and died at once on the SIGTERM the stage used
/// to forward, leaving a lock that blocked `check`, `forget` and `prune` for 30 minutes (the
/// power-cut campaign, seed 2612, a shutdown during both restic stages).
#[test]
fn restic_stopped_mid_backup_leaves_no_lock() {
    let dir = tempdir();
    let dir = dir.path();
    // Held to 8 MiB/s (12 s for the file), so that a fast machine cannot finish the backup
    // before the stop below.
    let (_, repo, config) = long_backup(dir, "rstop", "upload_limit = \"8M\"\n");
    let child = backupctl_user(dir, &config)
        .args(["stage", "rstop"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while locks(&repo) == 0 {
        assert!(Instant::now() < deadline, "restic never started writing");
        std::thread::sleep(Duration::from_millis(10));
    }
    // restic writes its lock before it registers the handler that removes it: a stop in
    // between leaves the lock (for the next run's unlock). Past that moment:
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert_eq!(
        locks(&repo),
        0,
        "a stopped restic left its lock: {}",
        stderr(&output)
    );
}

/// Generates the units of `config` into the user manager (and a copy into `dir/units` to
/// read) through the one installer. Hold [`systemd_lock`] meanwhile.
fn install_units(dir: &Path, config: &Path) -> InstalledUnits {
    ok(backupctl_user(dir, config)
        .arg("generate")
        .arg("--output")
        .arg(dir.join("units")));
    crate::util::installed::install_units(backupctl_user(dir, config))
}

#[test]
fn restic_rest_under_systemd_survives_a_server_outage() {
    require_tool("restic");
    let _lock = systemd_lock();
    // Sources outside /tmp: the unit has a private /tmp.
    std::fs::create_dir_all("/var/lib/backupctl-tests").unwrap();
    let dir = tempfile::Builder::new()
        .prefix("restic-rest-")
        .tempdir_in("/var/lib/backupctl-tests")
        .unwrap();
    let dir = dir.path();
    let source = dir.join("source");
    make_tree(&source);
    random_file(&source.join("big/one.bin"), 8 << 20);
    let (password, password_value) = secret(dir, "password");
    let served = dir.join("served");
    let port = free_port();
    let mut server = rest_server(&served, port);
    let slow = dir.join("slow");
    let config = config(
        dir,
        &format!(
            r#"
[jobs.rrest]
description = "restic over REST"

# Gives the test a moment, mid-job, to stop the server.
[stage.rrest-wait]
job = "rrest"
kind = "exec"
command = ["/bin/sh", "-c", "if test -e '{slow}'; then sleep 3; fi"]

[stage.rrest-backup]
job = "rrest"
kind = "restic"
repository = "rest:http://127.0.0.1:{port}/repo"
password_file = "{password}"
init = true
paths = ["{source}"]
retries = 1
retry_delay = "1s"
"#,
            slow = slow.display(),
            password = password.display(),
            source = source.display()
        ),
    );
    let _units = install_units(dir, &config);
    let mut unit_text = String::new();
    for path in [
        "units/backup@.service",
        "units/backup-rrest.service",
        "units/backup@rrest-wait.service.d/backupctl.conf",
        "units/backup@rrest-backup.service.d/backupctl.conf",
    ] {
        unit_text.push_str(&std::fs::read_to_string(dir.join(path)).unwrap());
    }
    assert!(unit_text.contains("PrivateNetwork=no"), "{unit_text}");
    let run_job = || {
        let mut command = backupctl_user(dir, &config);
        command
            .args(["run", "rrest"])
            .envs(systemd_user_env().iter().map(|(k, v)| (k, v)));
        command
    };
    let journal_of = |since: &str| {
        let output = Command::new("journalctl")
            .args(["--no-pager", "-o", "cat", "--since", since])
            .arg("_SYSTEMD_USER_UNIT=backup@rrest-backup.service")
            .output()
            .unwrap();
        stdout(&output)
    };
    let since = journal_now();

    // 1. Backup through systemd, restore, compare. ps is watched while it runs.
    let mut job = run_job()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ps_seen = String::new();
    while job.try_wait().unwrap().is_none() {
        let listing = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        ps_seen.push_str(&String::from_utf8_lossy(&listing.stdout));
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = job.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(ps_seen.contains("restic"), "ps saw restic run");
    // STATUS= lines as `run` saw them (StatusText; it polls, so not every line is seen).
    let printed = stdout(&output);
    assert!(
        printed.contains("rrest-backup     running: restic: "),
        "{printed}"
    );
    assert!(
        printed.contains("rrest-backup     success: done in"),
        "{printed}"
    );
    restore_and_compare(dir, &config, "rrest-backup", &source);

    // 2. The server is stopped mid-job (while the first stage runs): the restic stage
    //    fails, retries once, then the job fails with a clear message.
    write(&slow, "");
    write(&source.join("added later.txt"), "must not be lost\n");
    let failing_since = journal_now();
    let job = run_job()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = run(systemctl_user().args(["is-active", "backup@rrest-wait.service"]));
        if stdout(&state).trim() == "activating" {
            break;
        }
        assert!(Instant::now() < deadline, "the first stage never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
    let output = job.wait_with_output().unwrap();
    let printed = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success(), "the job must fail: {printed}");
    assert!(
        printed.contains("rrest-backup") && printed.contains("failed"),
        "{printed}"
    );
    let journal = journal_of(&failing_since);
    assert!(
        journal.contains("cannot reach the repository"),
        "journal:\n{journal}"
    );
    assert!(
        journal.contains("connection refused"),
        "journal:\n{journal}"
    );
    assert!(journal.contains("retry 1 of 1"), "journal:\n{journal}");
    // Exit code 75 (temporary failure) once the retries ran out.
    let failure = stdout(&run(Command::new("journalctl").args([
        "--no-pager",
        "-o",
        "verbose",
        "--since",
        &failing_since,
        "BACKUPCTL_STAGE=rrest-backup",
    ])));
    assert!(failure.contains("BACKUPCTL_EXIT_CODE=75"), "{failure}");

    // 3. The server is back: a later run succeeds and nothing is lost.
    std::fs::remove_file(&slow).unwrap();
    let mut server = rest_server(&served, port);
    let output = run(&mut run_job());
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    restore_and_compare(dir, &config, "rrest-backup", &source);

    // The summary of each backup is in the journal as fields of the success record.
    let fields = stdout(&run(Command::new("journalctl").args([
        "--no-pager",
        "-o",
        "verbose",
        "--since",
        &since,
        "BACKUPCTL_STAGE=rrest-backup",
    ])));
    for field in [
        "BACKUPCTL_SNAPSHOT_ID=",
        "BACKUPCTL_FILES_NEW=",
        "BACKUPCTL_FILES_CHANGED=",
        "BACKUPCTL_BYTES_ADDED=",
        "BACKUPCTL_DURATION_SECS=",
    ] {
        assert!(
            fields.contains(field),
            "no {field} in the journal:\n{fields}"
        );
    }

    // 4. No secret in the units, the journal of the runs, or ps during a run.
    let export = Command::new("journalctl")
        .args(["--no-pager", "-o", "export", "--since", &since])
        .output()
        .unwrap();
    let export = String::from_utf8_lossy(&export.stdout).into_owned();
    assert!(
        journal_of(&since).contains("succeeded"),
        "the journal has the runs"
    );
    for (what, text) in [
        ("units", &unit_text),
        ("journal", &export),
        ("ps", &ps_seen),
    ] {
        assert!(
            !text.contains(&password_value),
            "the password is in the {what}"
        );
    }
    server.stop();
}

/// The units of `examples/restic.toml` (system scope) against the golden case
/// `tests/generate/restic-example/` (see `util::golden`; `BLESS=1` rewrites it).
#[test]
fn restic_example_units_match_golden_files() {
    crate::util::golden::assert_generated(&crate::util::golden::case("restic-example"));
}

/// Issue 20's keys for NixOS `services.restic.backups` users, under the systemd user manager:
/// `environment_file` hands S3 keys to restic (moto), `restic_binary` is the only restic the
/// units can find (their `PATH` holds none), `files_from_command` picks what is backed up,
/// `forget_args` and `check_args` reach restic. Each backup is restored byte for byte.
#[test]
fn restic_environment_file_binary_files_from_command_and_extra_args_under_systemd() {
    require_tool("restic");
    let _lock = systemd_lock();
    // util's scratch root is outside /tmp, which the unit cannot see (PrivateTmp=).
    let dir = crate::util::tempdir();
    let dir = dir.path();
    let server = s3_server();
    let source = dir.join("source");
    make_tree(&source);
    let (password, _) = secret(dir, "password");
    let key_value = format!("secret-{}", random_hex());
    let env_file = dir.join("s3.env");
    write(
        &env_file,
        format!("# S3 keys\nAWS_ACCESS_KEY_ID=backupctl\nAWS_SECRET_ACCESS_KEY={key_value}\n"),
    );
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The only restic the units can run: a copy outside their PATH.
    let bin = dir.join("restic-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let restic_copy = bin.join("restic-copy");
    let restic = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("restic"))
        .find(|path| path.is_file())
        .expect("restic in PATH");
    std::fs::copy(restic, &restic_copy).unwrap();
    let empty_path = dir.join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    let listed_repo = dir.join("listed-repo");
    let listed = [source.join("plain.txt"), source.join("dir with spaces")];
    let config = config(
        dir,
        &format!(
            r#"
[units]
path = ["{empty_path}"]

[jobs.nixkeys]
description = "issue 20 keys"

[stage.nk-s3]
job = "nixkeys"
kind = "restic"
repository = "s3:http://127.0.0.1:{port}/backupctl-nixkeys/repo"
password_file = "{password}"
environment_file = "{env_file}"
restic_binary = "{restic_copy}"
init = true
paths = ["{source}"]
keep = {{ last = 1 }}
forget_args = ["--keep-last", "2"]

[stage.nk-listed]
job = "nixkeys"
kind = "restic"
repository = "{listed_repo}"
password_file = "{password}"
restic_binary = "{restic_copy}"
init = true
files_from_command = ["/bin/sh", "-c", "printf '%s\\n' '{first}' '{second}'"]

[stage.nk-check]
job = "nixkeys"
kind = "restic"
operation = "check"
repository = "{listed_repo}"
password_file = "{password}"
restic_binary = "{restic_copy}"
check_args = ["--read-data"]
"#,
            empty_path = empty_path.display(),
            port = server.port,
            password = password.display(),
            env_file = env_file.display(),
            restic_copy = restic_copy.display(),
            source = source.display(),
            listed_repo = listed_repo.display(),
            first = listed[0].display(),
            second = listed[1].display(),
        ),
    );
    let _units = install_units(dir, &config);
    let drop_in =
        std::fs::read_to_string(dir.join("units/backup@nk-s3.service.d/backupctl.conf")).unwrap();
    assert!(
        drop_in.contains(&format!("EnvironmentFile={}", env_file.display())),
        "{drop_in}"
    );
    assert!(!drop_in.contains(&key_value), "the key stays in its file");
    let since = journal_now();
    let run_job = || {
        let output = run(backupctl_user(dir, &config)
            .args(["run", "nixkeys"])
            .envs(systemd_user_env().iter().map(|(k, v)| (k, v))));
        assert!(
            output.status.success(),
            "{}{}",
            stdout(&output),
            stderr(&output)
        );
    };
    run_job();
    // moto refuses requests without keys: outside the unit (no EnvironmentFile=) restic is
    // denied, so the unit's restic had them from the file. People restoring export them.
    let denied = run(backupctl_user(dir, &config).args(["snapshots", "nk-s3"]));
    assert!(!denied.status.success(), "no keys, no access");
    assert!(
        stderr(&denied).contains("Access Denied"),
        "{}",
        stderr(&denied)
    );
    let target = dir.join("restore-s3");
    ok(backupctl_user(dir, &config)
        .args(["restore", "nk-s3", "--target"])
        .arg(&target)
        .env("AWS_ACCESS_KEY_ID", "backupctl")
        .env("AWS_SECRET_ACCESS_KEY", &key_value));
    assert_restored(&source, &target);

    // files_from_command: exactly the listed paths, restored byte for byte.
    let target = dir.join("restore-listed");
    ok(backupctl_user(dir, &config)
        .args(["restore", "nk-listed", "--target"])
        .arg(&target));
    let copy = restored(&target, &source);
    let mut names: Vec<String> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dir with spaces", "plain.txt"]);
    assert_eq!(
        std::fs::read(copy.join("plain.txt")).unwrap(),
        std::fs::read(&listed[0]).unwrap()
    );
    assert_same_tree(&listed[1], &copy.join("dir with spaces"));

    // forget_args: `--keep-last 2` beside keep.last = 1 keeps two snapshots after three runs.
    run_job();
    run_job();
    let list = ok(backupctl_user(dir, &config)
        .args(["snapshots", "nk-s3", "--json"])
        .env("AWS_ACCESS_KEY_ID", "backupctl")
        .env("AWS_SECRET_ACCESS_KEY", &key_value));
    let list: Vec<serde_json::Value> = serde_json::from_str(&list).expect("snapshots --json");
    assert_eq!(
        list.len(),
        2,
        "keep.last = 1 plus forget_args' --keep-last 2"
    );

    // check_args: restic read all data, as it says in the check stage's journal.
    let journal = stdout(&run(Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "--since", &since])
        .arg("_SYSTEMD_USER_UNIT=backup@nk-check.service")));
    assert!(journal.contains("read all data"), "{journal}");
    let all = stdout(&run(Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "--since", &since])
        .arg("_SYSTEMD_USER_UNIT=backup@nk-s3.service")));
    assert!(
        !all.contains(&key_value),
        "the key never reaches the journal"
    );
}

/// A `files_from_command` that fails (after printing part of a list) fails the stage, and
/// restic makes no snapshot of the partial list.
#[test]
fn restic_failing_files_from_command_fails_without_a_snapshot() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let source = dir.join("source");
    make_tree(&source);
    let (password, _) = secret(dir, "password");
    let repo = dir.join("repo");
    ok(Command::new("restic")
        .args(["init", "--quiet", "--repo"])
        .arg(&repo)
        .arg("--password-file")
        .arg(&password));
    let config = config(
        dir,
        &format!(
            r#"
[stage.listfail]
kind = "restic"
repository = "{repo}"
password_file = "{password}"
files_from_command = ["/bin/sh", "-c", "echo '{plain}'; exit 4"]
"#,
            repo = repo.display(),
            password = password.display(),
            plain = source.join("plain.txt").display(),
        ),
    );
    let output = run(backupctl_user(dir, &config).args(["run", "--here"]));
    assert!(
        !output.status.success(),
        "a failing list command fails the stage"
    );
    assert!(
        stderr(&output).contains("sh failed with exit code 4"),
        "{}",
        stderr(&output)
    );
    assert_eq!(snapshot_count(dir, &config, "listfail"), 0);
}

/// `hello` checks an `environment_file` like a secret file: readable by others fails with
/// the chmod to run, private passes; its content is never printed.
#[test]
fn hello_checks_an_environment_file_like_a_secret() {
    let dir = tempdir();
    let dir = dir.path();
    let env_file = dir.join("keys.env");
    let value = format!("secret-{}", random_hex());
    write(&env_file, format!("AWS_SECRET_ACCESS_KEY={value}\n"));
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = config(
        dir,
        &format!(
            "[stage.keys]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\nenvironment_file = [\"{}\"]\n",
            env_file.display()
        ),
    );
    let open = run(backupctl_user(dir, &config).arg("hello"));
    assert!(!open.status.success(), "{}", stdout(&open));
    assert!(
        stdout(&open).contains(&format!("run: chmod 600 {}", env_file.display())),
        "{}",
        stdout(&open)
    );
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let private = run(backupctl_user(dir, &config).arg("hello"));
    assert!(private.status.success(), "{}", stdout(&private));
    for output in [&open, &private] {
        assert!(!stdout(output).contains(&value) && !stderr(output).contains(&value));
    }
}

/// Issue 23: `[repository.NAME]` declared once, a `copy` stage from a local repository to one
/// over the REST protocol, under the user manager. Backup to A, copy to B, restore from B
/// byte for byte; a drill of the copy restores from B; a second copy copies nothing (restic's
/// own "skipping" lines, and B's snapshot count). No password in the units or in ps.
#[test]
fn restic_copy_to_a_declared_rest_repository_under_systemd() {
    require_tool("restic");
    let _lock = systemd_lock();
    let scratch = tempdir();
    let dir = scratch.path();
    let source = dir.join("source");
    make_tree(&source);
    let (password_a, value_a) = secret(dir, "password-a");
    let (password_b, value_b) = secret(dir, "password-b");
    let served = dir.join("served");
    let port = free_port();
    let mut server = rest_server(&served, port);
    let config = config(
        dir,
        &format!(
            r#"
[repository.local]
location = "{dir}/repo-a"
password_file = "{password_a}"
init = true

[repository.offsite]
location = "rest:http://127.0.0.1:{port}/b"
password_file = "{password_b}"
init = true
retries = 0

[defaults.web]
host = "web1"
tags = ["files"]

[jobs.rcb]
[jobs.rcc]

[stage.rc-backup]
job = "rcb"
kind = "restic"
repository_name = "local"
extends = "web"
paths = ["{source}"]

[stage.rc-copy]
job = "rcc"
kind = "copy"
from = "local"
to = "offsite"
extends = "web"
keep = {{ last = 3 }}

[stage.rc-drill]
job = "rcc"
kind = "drill"
stage = "rc-copy"
sample = "100%"
"#,
            dir = dir.display(),
            password_a = password_a.display(),
            password_b = password_b.display(),
            source = source.display()
        ),
    );
    let _units = install_units(dir, &config);
    let run_job = |job: &str| {
        let mut command = backupctl_user(dir, &config);
        command
            .args(["run", job])
            .envs(systemd_user_env().iter().map(|(k, v)| (k, v)));
        let output = run(&mut command);
        assert!(
            output.status.success(),
            "{job}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    };
    let copy_journal = |since: &str| {
        stdout(&run(Command::new("journalctl")
            .args(["--no-pager", "-o", "cat", "--since", since])
            .arg("_SYSTEMD_USER_UNIT=backup@rc-copy.service")))
    };

    // 1. Backup into A, copy into B (created with A's chunker parameters), drill from B.
    run_job("rcb");
    let since = journal_now();
    let mut ps_seen = String::new();
    let mut job = backupctl_user(dir, &config)
        .args(["run", "rcc"])
        .envs(systemd_user_env().iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while job.try_wait().unwrap().is_none() {
        let listing = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        ps_seen.push_str(&String::from_utf8_lossy(&listing.stdout));
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = job.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let journal = copy_journal(&since);
    assert!(
        journal
            .contains("restic copy: 1 snapshot(s) copied from local to offsite, 0 already there"),
        "journal:\n{journal}"
    );
    assert!(
        served.join("b/config").exists(),
        "the REST repository was created"
    );
    let drill = stdout(&run(Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "--since", &since])
        .arg("_SYSTEMD_USER_UNIT=backup@rc-drill.service")));
    assert!(drill.contains("drill"), "drill journal:\n{drill}");
    restore_and_compare(dir, &config, "rc-copy", &source);
    assert_eq!(snapshot_count(dir, &config, "rc-copy"), 1);

    // 2. A second copy copies nothing: restic skips the snapshot B already has.
    let since = journal_now();
    run_job("rcc");
    let journal = copy_journal(&since);
    assert!(
        journal.contains("skipping source snapshot"),
        "journal:\n{journal}"
    );
    assert!(
        journal
            .contains("restic copy: 0 snapshot(s) copied from local to offsite, 1 already there"),
        "journal:\n{journal}"
    );
    assert_eq!(snapshot_count(dir, &config, "rc-copy"), 1);

    // 3. No password in the generated units or in ps while the copy ran.
    let mut unit_text = String::new();
    for entry in std::fs::read_dir(dir.join("units")).unwrap() {
        let path = entry.unwrap().path();
        let files = if path.is_dir() {
            std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        } else {
            vec![path]
        };
        for file in files.into_iter().filter(|f| f.is_file()) {
            unit_text.push_str(&std::fs::read_to_string(file).unwrap_or_default());
        }
    }
    assert!(unit_text.contains("ReadWritePaths="), "{unit_text}");
    for value in [&value_a, &value_b] {
        assert!(
            !unit_text.contains(value.as_str()),
            "a password is in the units"
        );
        assert!(!ps_seen.contains(value.as_str()), "a password is in ps");
    }
    server.stop();
}
