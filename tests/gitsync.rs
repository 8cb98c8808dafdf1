//! The `git` and `rclone` stages and the three machine profiles of `examples/` (laptop, cloud
//! server, Raspberry Pi), against the real git, rsync, rclone, OpenSSH on a loopback port,
//! restic, lighttpd serving Debian's gitweb, and headless Chromium.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    backupctl, free_port, ok, repo_root, require_tool, run, stderr, tempdir, write, write_config,
    write_secret,
};

// ---------------------------------------------------------------------------------------
// Helpers: loopback servers, configs, run records.
// ---------------------------------------------------------------------------------------

/// A server process, killed when the test ends (also when it fails).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    fn spawn(command: &mut Command, port: u16, what: &str, log: &Path) -> Daemon {
        let log_file = std::fs::File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut daemon = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daemon;
            }
            if let Some(status) = daemon.0.try_wait().unwrap() {
                panic!(
                    "{what} exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} does not listen on 127.0.0.1:{port}");
    }
}

/// OpenSSH on a loopback port that lets one generated key in as the current user (root).
struct Sshd {
    port: u16,
    key: PathBuf,
    known_hosts: PathBuf,
    _daemon: Daemon,
}

fn ssh_keygen(path: &Path) {
    ok(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "backupctl-test",
            "-f",
        ])
        .arg(path));
}

fn start_sshd(dir: &Path) -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.exists(),
        "this test needs OpenSSH's server (/usr/sbin/sshd): run scripts/setup-deps"
    );
    require_tool("ssh-keygen");
    std::fs::create_dir_all(dir).unwrap();
    let host_key = dir.join("host_key");
    let key = dir.join("client_key");
    ssh_keygen(&host_key);
    ssh_keygen(&key);
    std::fs::copy(key.with_extension("pub"), dir.join("authorized_keys")).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n",
            host = host_key.display(),
            dir = dir.display()
        ),
    );
    // sshd's privilege separation directory; Debian creates it at boot.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let daemon = Daemon::spawn(
        Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config),
        port,
        "sshd",
        &dir.join("sshd.log"),
    );
    let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let fields: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let known_hosts = dir.join("known_hosts");
    write(
        &known_hosts,
        format!("[127.0.0.1]:{port} {}\n", fields.join(" ")),
    );
    Sshd {
        port,
        key,
        known_hosts,
        _daemon: daemon,
    }
}

impl Sshd {
    /// An rclone config with one sftp remote `server` for this sshd.
    fn rclone_conf(&self) -> String {
        format!(
            "[server]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = root\nkey_file = {}\n\
             known_hosts_file = {}\nshell_type = unix\n",
            self.port,
            self.key.display(),
            self.known_hosts.display()
        )
    }
}

/// An example profile with its real-world paths moved under the test's machines.
fn profile(name: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(repo_root().join("examples").join(name)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{name} no longer mentions {from}");
        text = text.replace(from, to);
    }
    text
}

/// `backupctl run --here` of a machine's config, its state in `machine/state`.
fn run_here(machine: &Path, config: &Path) -> String {
    let output = run(backupctl()
        .arg("--config")
        .arg(config)
        .args(["run", "--here"])
        .env("STATE_DIRECTORY", machine.join("state")));
    let printed = stderr(&output);
    assert!(
        output.status.success(),
        "{} failed:\n{printed}",
        config.display()
    );
    printed
}

/// The latest run record of every stage of a machine (stage → (result, record)).
fn last_runs(machine: &Path) -> HashMap<String, serde_json::Value> {
    let mut last = HashMap::new();
    for record in crate::util::read_run_records(&machine.join("state/runs.jsonl")) {
        last.insert(record["stage"].as_str().unwrap().to_string(), record);
    }
    last
}

#[track_caller]
fn assert_result(machine: &Path, stage: &str, expected: &str) -> serde_json::Value {
    let runs = last_runs(machine);
    let record = runs
        .get(stage)
        .unwrap_or_else(|| panic!("no run record of {stage}"));
    assert_eq!(record["result"], expected, "{stage}: {record}");
    record.clone()
}

fn git(repo: &Path, args: &[&str]) -> String {
    ok(Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null"))
    .trim()
    .to_string()
}

fn commit_count(repo: &Path) -> usize {
    git(repo, &["rev-list", "--count", "main"]).parse().unwrap()
}

/// Compares two trees' files byte for byte (rclone carries contents and times, not modes).
#[track_caller]
fn assert_same_files(expected: &Path, actual: &Path) {
    let diff = run(Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(expected)
        .arg(actual));
    assert!(
        diff.status.success(),
        "{} and {} differ:\n{}{}",
        expected.display(),
        actual.display(),
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
}

/// A bind mount of a directory onto itself: a "USB disk" that `when_mounted` accepts.
struct BindMount(PathBuf);

impl BindMount {
    fn new(path: &Path) -> BindMount {
        let output = run(Command::new("mount").arg("--bind").arg(path).arg(path));
        assert!(
            output.status.success(),
            "this test needs to bind-mount a directory (root, mount namespace allowing it): {}",
            stderr(&output)
        );
        BindMount(path.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn stage_config(dir: &Path, body: &str) -> PathBuf {
    write_config(dir, body)
}

fn stage(dir: &Path, config: &Path, name: &str) -> std::process::Output {
    run(backupctl()
        .arg("--config")
        .arg(config)
        .args(["stage", name])
        .env("STATE_DIRECTORY", dir.join("state")))
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

/// Commit mode: one commit per change, none without; excludes and the size limit honoured;
/// `.gitignore` files in the sources hide nothing; history lists the commits of a path and
/// restore brings back an old version byte for byte.
#[test]
fn git_stage_commits_changes_only_and_restores_old_versions() {
    require_tool("git");
    require_tool("rsync");
    let dir = tempdir();
    let dir = dir.path();
    let notes = dir.join("src/Notes");
    write(&notes.join("todo.md"), "version 1\n");
    write(&notes.join(".gitignore"), "*.md\n");
    write(&notes.join("scratch.tmp"), "not backed up\n");
    write(&notes.join("sub/deep.txt"), "deep\n");
    write(&notes.join("big.bin"), vec![7u8; 64 * 1024]);
    std::fs::set_permissions(notes.join("sub/deep.txt"), PermissionsExt::from_mode(0o755)).unwrap();
    let config = stage_config(
        dir,
        &format!(
            r#"
[stage.git]
kind = "git"
sources = ["{notes}"]
repository = "{dir}/work"
remotes = ["{dir}/remote.git"]
exclude = ["*.tmp"]
max_file_size = "32K"
"#,
            notes = notes.display(),
            dir = dir.display()
        ),
    );
    let remote = dir.join("remote.git");

    let first = stage(dir, &config, "git");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("Notes/big.bin") && stderr(&first).contains("max_file_size"),
        "the size limit must be reported: {}",
        stderr(&first)
    );
    assert_eq!(commit_count(&remote), 1);
    let files = git(&remote, &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(files, "Notes/.gitignore\nNotes/sub/deep.txt\nNotes/todo.md");
    let old = git(&remote, &["rev-parse", "main"]);

    // Nothing changed: no commit.
    let again = stage(dir, &config, "git");
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(commit_count(&remote), 1);

    // One change (same size, same second): one commit whose message says what changed.
    write(&notes.join("todo.md"), "version 2\n");
    assert!(stage(dir, &config, "git").status.success());
    assert_eq!(commit_count(&remote), 2);
    let subject = git(&remote, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("backup ") && subject.ends_with(": 0 added, 1 modified, 0 deleted"),
        "{subject}"
    );
    let record = assert_result(dir, "git", "success");
    assert_eq!(record["figures"]["files_changed"], 1);

    let history = ok(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["history", "git"])
        .arg(notes.join("todo.md")));
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(lines[1].starts_with(&old[..12]), "{history}");

    // Restore the first version of the directory into a new place.
    let target = dir.join("restored");
    ok(backupctl()
        .arg("--config")
        .arg(&config)
        .args([
            "restore",
            "git",
            "--commit",
            &old,
            "--include",
            "Notes/todo.md",
        ])
        .arg("--include")
        .arg(notes.join("sub"))
        .arg("--target")
        .arg(&target));
    assert_eq!(
        std::fs::read_to_string(target.join("Notes/todo.md")).unwrap(),
        "version 1\n"
    );
    assert_eq!(
        std::fs::read(target.join("Notes/sub/deep.txt")).unwrap(),
        std::fs::read(notes.join("sub/deep.txt")).unwrap()
    );
    let mode = std::fs::metadata(target.join("Notes/sub/deep.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the executable bit is kept");
    // The work tree still holds the newest version.
    assert_eq!(
        std::fs::read_to_string(dir.join("work/Notes/todo.md")).unwrap(),
        "version 2\n"
    );

    // A missing source fails the stage before anything is committed as deleted.
    std::fs::rename(&notes, dir.join("elsewhere")).unwrap();
    let missing = stage(dir, &config, "git");
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert_eq!(commit_count(&remote), 2);
}

fn bisync_config(dir: &Path, extra: &str) -> PathBuf {
    stage_config(
        dir,
        &format!(
            r#"
[stage.sync]
kind = "rclone"
mode = "bisync"
source = "{dir}/laptop"
destination = "{dir}/server"
{extra}
"#,
            dir = dir.display()
        ),
    )
}

/// A file edited on both sides: both versions end up on both sides, and the stage reports
/// the conflict (a warning in its run record and the journal), without failing.
#[test]
fn bisync_conflict_keeps_both_versions_and_reports_it() {
    require_tool("rclone");
    let dir = tempdir();
    let dir = dir.path();
    let (laptop, server) = (dir.join("laptop"), dir.join("server"));
    write(&laptop.join("notes/todo.md"), "original\n");
    write(&laptop.join("a.txt"), "a\n");
    write(&server.join("b.txt"), "b\n");
    let config = bisync_config(dir, "");

    // First run: resync, a union of both sides.
    let first = stage(dir, &config, "sync");
    assert!(first.status.success(), "{}", stderr(&first));
    assert_same_files(&laptop, &server);
    assert!(server.join("a.txt").exists() && laptop.join("b.txt").exists());

    std::thread::sleep(Duration::from_millis(1100));
    write(&laptop.join("notes/todo.md"), "edited on the laptop\n");
    write(&server.join("notes/todo.md"), "edited on the server\n");
    let second = stage(dir, &config, "sync");
    assert!(second.status.success(), "{}", stderr(&second));
    for side in [&laptop, &server] {
        assert_eq!(
            std::fs::read_to_string(side.join("notes/todo.md..path1")).unwrap(),
            "edited on the laptop\n"
        );
        assert_eq!(
            std::fs::read_to_string(side.join("notes/todo.md..path2")).unwrap(),
            "edited on the server\n"
        );
    }
    assert_same_files(&laptop, &server);
    let record = assert_result(dir, "sync", "success");
    let warnings = record["warnings"].to_string();
    assert!(
        warnings.contains("conflict: notes/todo.md changed on both sides"),
        "{record}"
    );
    assert!(stderr(&second).contains("conflict: notes/todo.md"));
}

/// A bisync that fails deletes nothing on either side: neither when most files vanished on
/// one side (an empty mount, a wrong path: rclone's max-delete safety stops it), nor when a
/// side cannot be read at all.
#[test]
fn failed_bisync_deletes_nothing() {
    require_tool("rclone");
    let dir = tempdir();
    let dir = dir.path();
    let (laptop, server) = (dir.join("laptop"), dir.join("server"));
    for i in 0..10 {
        write(&laptop.join(format!("file{i}.txt")), format!("{i}\n"));
    }
    let config = bisync_config(dir, "max_delete = 25");
    assert!(stage(dir, &config, "sync").status.success());
    assert_same_files(&laptop, &server);

    // 6 of 10 files gone on the server: more than 25%.
    for i in 0..6 {
        std::fs::remove_file(server.join(format!("file{i}.txt"))).unwrap();
    }
    let failed = stage(dir, &config, "sync");
    assert!(!failed.status.success(), "{}", stderr(&failed));
    let record = assert_result(dir, "sync", "failed");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("rclone bisync failed"),
        "{record}"
    );
    assert_eq!(std::fs::read_dir(&laptop).unwrap().count(), 10);
    assert_eq!(std::fs::read_dir(&server).unwrap().count(), 4);

    // The server side unreadable: fails, the laptop keeps everything.
    std::fs::rename(&server, dir.join("server-away")).unwrap();
    let unreadable = stage(dir, &config, "sync");
    assert!(!unreadable.status.success());
    assert_eq!(std::fs::read_dir(&laptop).unwrap().count(), 10);
}

/// The whole design on loopback: the laptop profile syncs both ways with the "server"
/// (OpenSSH, rclone's sftp backend), the server profile commits what arrived (one commit per
/// change, none when nothing changed) and copies it off-site with restic, the Pi profile is
/// skipped while its disk is absent, then mirrors the git repository over ssh and copies the
/// folders onto the disk — which then holds the laptop's folders byte for byte.
#[test]
fn laptop_server_and_pi_profiles_end_to_end() {
    for tool in ["git", "rsync", "rclone", "restic", "ssh", "mount"] {
        require_tool(tool);
    }
    let dir = tempdir();
    let root = dir.path();
    let sshd = start_sshd(&root.join("sshd"));
    let (laptop, server, pi) = (root.join("laptop"), root.join("server"), root.join("pi"));
    let at = |machine: &Path, path: &str| format!("{}{path}", machine.display());

    // The laptop: two folders, rclone's config pointing at the sshd.
    let home = laptop.join("home/sig");
    write(&home.join("Notes/todo.md"), "buy milk\n");
    write(&home.join("Notes/ideas/garden.md"), "tomatoes\n");
    write(&home.join("Documents/report.txt"), vec![b'r'; 10_000]);
    write_secret(&home.join(".config/rclone/backup.conf"), sshd.rclone_conf());
    let laptop_config = laptop.join("config.toml");
    write(
        &laptop_config,
        profile(
            "laptop.toml",
            &[
                ("/home/sig", at(&laptop, "/home/sig")),
                ("/srv/", at(&server, "/srv/")),
            ],
        ),
    );

    // The server: what an earlier sync left there, restic's off-site repository.
    write(
        &server.join("srv/sync/sig/Notes/from-phone.md"),
        "photo notes\n",
    );
    write_secret(&server.join("etc/restic-password"), "correct horse\n");
    // The off-site repository's own password (the example declares it with its own file).
    write_secret(&server.join("etc/offsite-password"), "correct horse\n");
    write_secret(
        &server.join("etc/offsite-repository"),
        format!("{}\n", server.join("offsite").display()),
    );
    ok(Command::new("restic")
        .args(["init", "--quiet"])
        .env(
            "RESTIC_REPOSITORY_FILE",
            server.join("etc/offsite-repository"),
        )
        .env("RESTIC_PASSWORD_FILE", server.join("etc/restic-password")));
    let server_config = server.join("config.toml");
    write(
        &server_config,
        profile(
            "server.toml",
            &[
                ("/srv/", at(&server, "/srv/")),
                ("/var/lib/backupctl/", at(&server, "/var/lib/backupctl/")),
                ("/etc/backupctl/", at(&server, "/etc/")),
            ],
        ),
    );

    // The Pi: its key and known hosts, rclone's config; the "USB disk" is a directory that is
    // bind-mounted later.
    std::fs::create_dir_all(pi.join("etc")).unwrap();
    std::fs::copy(&sshd.key, pi.join("etc/pi_ed25519")).unwrap();
    std::fs::copy(&sshd.known_hosts, pi.join("etc/known_hosts")).unwrap();
    write_secret(&pi.join("etc/rclone.conf"), sshd.rclone_conf());
    let disk = pi.join("usb");
    std::fs::create_dir_all(&disk).unwrap();
    let pi_config = pi.join("config.toml");
    write(
        &pi_config,
        profile(
            "pi.toml",
            &[
                (
                    "sig@backup.example.org",
                    format!("root@127.0.0.1:{}", sshd.port),
                ),
                ("/srv/", at(&server, "/srv/")),
                ("/etc/backupctl/", at(&pi, "/etc/")),
                ("/mnt/usb", disk.display().to_string()),
            ],
        ),
    );

    // 1. The laptop's first sync: a union of both sides.
    run_here(&laptop, &laptop_config);
    assert_result(&laptop, "notes", "success");
    assert_result(&laptop, "documents", "success");
    assert!(home.join("Notes/from-phone.md").exists());
    assert_same_files(&home.join("Notes"), &server.join("srv/sync/sig/Notes"));

    // 2. A change on each side reaches the other.
    std::thread::sleep(Duration::from_millis(1100));
    write(&home.join("Notes/todo.md"), "buy milk\nand bread\n");
    write(
        &server.join("srv/sync/sig/Documents/from-desktop.txt"),
        "synced by another machine\n",
    );
    run_here(&laptop, &laptop_config);
    assert_eq!(
        std::fs::read_to_string(server.join("srv/sync/sig/Notes/todo.md")).unwrap(),
        "buy milk\nand bread\n"
    );
    assert!(home.join("Documents/from-desktop.txt").exists());
    assert_same_files(
        &home.join("Documents"),
        &server.join("srv/sync/sig/Documents"),
    );

    // 3. The server's nightly job: a commit, a restic backup into its own repository, then
    // the copy of that repository off-site.
    let bare = server.join("srv/git/sig.git");
    run_here(&server, &server_config);
    assert_result(&server, "git", "success");
    assert_result(&server, "backup", "success");
    assert_result(&server, "offsite", "success");
    assert_eq!(commit_count(&bare), 1);
    run_here(&server, &server_config);
    assert_eq!(commit_count(&bare), 1, "no commit without a change");
    std::thread::sleep(Duration::from_millis(1100));
    write(&home.join("Notes/ideas/garden.md"), "tomatoes\nbasil\n");
    run_here(&laptop, &laptop_config);
    run_here(&server, &server_config);
    assert_eq!(commit_count(&bare), 2, "one commit for one change");
    assert_eq!(
        git(&bare, &["diff", "--name-only", "main~1", "main"]),
        "Notes/ideas/garden.md"
    );
    // The off-site copy restores to the same bare repository.
    let restored = root.join("restic-restore");
    ok(Command::new("restic")
        .args(["restore", "latest", "--quiet", "--target"])
        .arg(&restored)
        .env(
            "RESTIC_REPOSITORY_FILE",
            server.join("etc/offsite-repository"),
        )
        .env("RESTIC_PASSWORD_FILE", server.join("etc/restic-password")));
    assert_same_files(&bare, &restored.join(bare.strip_prefix("/").unwrap()));

    // 4. The Pi without its disk: both stages skipped, nothing written.
    run_here(&pi, &pi_config);
    assert_result(&pi, "git-mirror", "skipped");
    assert_result(&pi, "files", "skipped");
    assert_eq!(std::fs::read_dir(&disk).unwrap().count(), 0);

    // 5. With the disk: the mirror and the copy; the copy is the laptop's folders.
    let _mount = BindMount::new(&disk);
    run_here(&pi, &pi_config);
    assert_result(&pi, "git-mirror", "success");
    assert_result(&pi, "files", "success");
    let mirror = disk.join("backup/git/sig.git");
    assert_eq!(
        git(&mirror, &["rev-parse", "main"]),
        git(&bare, &["rev-parse", "main"])
    );
    for folder in ["Notes", "Documents"] {
        assert_same_files(
            &home.join(folder),
            &disk.join("backup/sync/sig").join(folder),
        );
    }
    // And the mirror restores the newest version of a file, as on the server.
    let target = root.join("pi-restore");
    ok(backupctl()
        .arg("--config")
        .arg(&pi_config)
        .args(["restore", "git-mirror", "--include", "Notes", "--target"])
        .arg(&target)
        .env("STATE_DIRECTORY", pi.join("state")));
    assert_same_files(&home.join("Notes"), &target.join("Notes"));
}

/// gitweb (Debian's, served by lighttpd with examples/gitweb/) shows the backup repository
/// and a file as it was at an older commit, loaded in headless Chromium.
#[test]
fn gitweb_shows_a_file_at_an_older_commit_in_chromium() {
    require_tool("git");
    require_tool("rsync");
    require_tool("lighttpd");
    require_tool("chromium");
    assert!(
        Path::new("/usr/share/gitweb/gitweb.cgi").exists(),
        "this test needs gitweb (Debian package gitweb): run scripts/setup-deps"
    );
    let dir = tempdir();
    let dir = dir.path();
    let notes = dir.join("sync/Notes");
    write(&notes.join("todo.md"), "first version: buy milk\n");
    let config = stage_config(
        dir,
        &format!(
            r#"
[stage.git]
kind = "git"
sources = ["{notes}"]
repository = "{dir}/work"
remotes = ["{dir}/srv/git/sig.git"]
"#,
            notes = notes.display(),
            dir = dir.display()
        ),
    );
    assert!(stage(dir, &config, "git").status.success());
    let bare = dir.join("srv/git/sig.git");
    let old = git(&bare, &["rev-parse", "main"]);
    write(&notes.join("todo.md"), "second version: buy bread\n");
    assert!(stage(dir, &config, "git").status.success());
    assert_eq!(commit_count(&bare), 2);

    let port = free_port();
    let example = |name: &str| {
        std::fs::read_to_string(repo_root().join("examples/gitweb").join(name)).unwrap()
    };
    let gitweb_conf = dir.join("gitweb.conf");
    write(
        &gitweb_conf,
        example("gitweb.conf").replace("/srv/git", &dir.join("srv/git").display().to_string()),
    );
    let lighttpd_conf = dir.join("lighttpd.conf");
    write(
        &lighttpd_conf,
        example("lighttpd.conf")
            .replace(
                "/etc/backupctl/gitweb/gitweb.conf",
                &gitweb_conf.display().to_string(),
            )
            .replace("server.port = 8080", &format!("server.port = {port}"))
            .replace(
                "/var/log/lighttpd/gitweb-error.log",
                &dir.join("error.log").display().to_string(),
            ),
    );
    let _server = Daemon::spawn(
        Command::new("lighttpd")
            .arg("-D")
            .arg("-f")
            .arg(&lighttpd_conf),
        port,
        "lighttpd",
        &dir.join("lighttpd.log"),
    );

    let chromium = |url: &str| {
        let profile = dir.join(format!("chromium-{}", free_port()));
        ok(Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(url))
        // gitweb writes the spaces of file contents as non-breaking ones.
        .replace('\u{a0}', " ")
    };
    let base = format!("http://127.0.0.1:{port}/");
    let summary = chromium(&format!("{base}?p=sig.git;a=summary"));
    assert!(
        summary.contains("backup of ") && summary.contains("0 added, 1 modified, 0 deleted"),
        "the summary page shows the description and the commits:\n{summary}"
    );
    let blob = chromium(&format!("{base}?p=sig.git;a=blob;f=Notes/todo.md;hb={old}"));
    assert!(
        blob.contains("first version: buy milk") && !blob.contains("second version"),
        "the old commit's content:\n{blob}"
    );
    let newest = chromium(&format!("{base}?p=sig.git;a=blob;f=Notes/todo.md;hb=main"));
    assert!(newest.contains("second version: buy bread"), "{newest}");
}

/// The git and rclone stages inside their generated, hardened units under the real systemd
/// user manager: the git stage commits and pushes to a local bare repository, an rclone copy
/// stage copies the same folder; both succeed in the sandbox (`ProtectSystem=strict`,
/// `ReadWritePaths=` only where they write).
#[test]
fn git_and_rclone_stages_run_in_their_units_under_the_user_manager() {
    use crate::util::{systemctl_user, systemd_lock, systemd_user_env};
    require_tool("systemctl");
    require_tool("git");
    require_tool("rsync");
    require_tool("rclone");
    let _lock = systemd_lock();
    systemd_user_env();
    // Not under /tmp: the units have PrivateTmp=.
    let root = PathBuf::from(format!(
        "/var/lib/backupctl-e2e/gitsync-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
    let _cleanup = Cleanup(root.clone());
    let binary = root.join("backupctl");
    std::fs::copy(crate::util::backupctl_path(), &binary).unwrap();
    let notes = root.join("sync/Notes");
    write(&notes.join("todo.md"), "in the sandbox\n");
    write(&notes.join("deep/er.txt"), vec![b'x'; 5000]);
    let config = root.join("config.toml");
    write(
        &config,
        format!(
            r#"
[stage.git]
kind = "git"
sources = ["{root}/sync/Notes"]
repository = "{root}/work"
remotes = ["{root}/srv/git/sig.git"]

[stage.disk]
kind = "rclone"
mode = "copy"
source = "{root}/sync"
destination = "{root}/disk/sync"
"#,
            root = root.display()
        ),
    );
    let mut generate = Command::new(&binary);
    generate.arg("--config").arg(&config).arg("--user");
    // Dropped before `_cleanup`: the units go before their directory.
    let _units = crate::util::installed::install_units(generate);
    let started = run(systemctl_user().args(["start", "backup-job.service"]));
    let show = |unit: &str| {
        ok(systemctl_user().args(["show", "-p", "Result", "--value", unit]))
            .trim()
            .to_string()
    };
    let journal = || {
        ok(Command::new("journalctl").args([
            "--no-pager",
            "-o",
            "cat",
            "--user-unit",
            "backup@git.service",
            "--user-unit",
            "backup@disk.service",
        ]))
    };
    assert!(
        started.status.success() && show("backup@git.service") == "success",
        "the job failed: {}\n{}",
        stderr(&started),
        journal()
    );
    assert_eq!(show("backup@disk.service"), "success", "{}", journal());
    let bare = root.join("srv/git/sig.git");
    assert_eq!(commit_count(&bare), 1);
    assert_eq!(
        git(&bare, &["show", "main:Notes/todo.md"]),
        "in the sandbox"
    );
    assert_same_files(&root.join("sync"), &root.join("disk/sync"));
}

/// rclone's config can come from a systemd credential: with `config_credential` it is read
/// from `$CREDENTIALS_DIRECTORY` (what `LoadCredential=` provides); without that directory
/// the stage fails its preflight and says how to provide it.
#[test]
fn rclone_config_comes_from_a_credential() {
    require_tool("rclone");
    let dir = tempdir();
    let dir = dir.path();
    write(&dir.join("src/a/b.txt"), "through a credential\n");
    write(
        &dir.join("credentials/rclone.conf"),
        "[store]\ntype = local\n",
    );
    let config = stage_config(
        dir,
        &format!(
            r#"
[stage.copy]
kind = "rclone"
mode = "copy"
source = "{dir}/src"
destination = "store:{dir}/dst"
config_credential = "rclone.conf"
"#,
            dir = dir.display()
        ),
    );
    let without = stage(dir, &config, "copy");
    assert_eq!(without.status.code(), Some(3), "{}", stderr(&without));
    assert!(stderr(&without).contains("LoadCredential=rclone.conf"));

    let with = run(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["stage", "copy"])
        .env("STATE_DIRECTORY", dir.join("state"))
        .env("CREDENTIALS_DIRECTORY", dir.join("credentials")));
    assert!(with.status.success(), "{}", stderr(&with));
    assert_same_files(&dir.join("src"), &dir.join("dst"));
    let record = assert_result(dir, "copy", "success");
    assert_eq!(record["figures"]["files_changed"], 1, "{record}");
}
