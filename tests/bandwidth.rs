//! Bandwidth limits against real servers on loopback: restic to a REST server (`rclone serve
//! restic`), rsync to an rsync daemon, rclone to a WebDAV server (`rclone serve webdav`).
//! Each limited transfer of a few MiB of incompressible data must take at least as long as
//! its limit allows, with 20 % for the bursts the tools' token buckets let through at the
//! start: elapsed ≥ size / (limit × 1.2). A lower bound only: a loaded machine makes the
//! transfer slower, never faster, so the assertion cannot flake that way. Each copy is then
//! restored (or read back) and compared byte for byte with its source.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::server::{Server, rest_server};
use crate::util::{
    assert_same_tree, backupctl_user, free_port, ok, random_file, require_tool, tempdir, write,
    write_config, write_secret,
};

/// The data sent: 2 MiB.
const SIZE: usize = 2 << 20;
/// The limit, in KiB/s, as the configs write it ("200K"): about 10 s for `SIZE`.
const LIMIT_KIB: u64 = 200;

/// The shortest time `SIZE` may take at the limit, with 20 % for bursts.
fn slowest_allowed() -> Duration {
    Duration::from_secs_f64(SIZE as f64 / (LIMIT_KIB as f64 * 1024.0 * 1.2))
}

/// Runs `what` and asserts it took at least [`slowest_allowed`].
fn assert_limited(what: &str, mut command: Command) {
    let started = Instant::now();
    ok(&mut command);
    let elapsed = started.elapsed();
    // The figure for a reader of `--nocapture`: how close to its limit the transfer ran.
    println!(
        "{what}: {SIZE} bytes in {elapsed:.2?} = {:.0} KiB/s under a limit of {LIMIT_KIB} KiB/s",
        SIZE as f64 / 1024.0 / elapsed.as_secs_f64()
    );
    assert!(
        elapsed >= slowest_allowed(),
        "{what}: {SIZE} bytes at {LIMIT_KIB} KiB/s took {elapsed:?}, faster than the limit \
         allows (at least {:?})",
        slowest_allowed()
    );
}

fn source(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("source");
    random_file(&source.join("data.bin"), SIZE);
    source
}

#[test]
fn restic_upload_limit_holds_against_a_rest_server() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    let source = source(dir);
    std::fs::create_dir_all(dir.join("rest")).unwrap();
    let server = rest_server(&dir.join("rest"), free_port());
    write_secret(&dir.join("password"), "bandwidth test\n");
    // A timetable with one entry holds all day: the rate at start is 200K whenever this runs.
    let config = write_config(
        dir,
        &format!(
            "[stage.up]\nkind = \"restic\"\nrepository = \"rest:http://127.0.0.1:{}/\"\n\
             password_file = \"@ROOT@/password\"\ninit = true\npaths = [\"@ROOT@/source\"]\n\
             upload_limit = \"00:00 {LIMIT_KIB}K\"\n",
            server.port
        ),
    );
    // `init` adds a few small files to the upload: only slower, the bound still holds.
    let mut backup = backupctl_user(dir, &config);
    backup.args(["run", "--here"]);
    assert_limited("restic --limit-upload", backup);
    let target = dir.join("restored");
    ok(backupctl_user(dir, &config)
        .args(["restore", "up", "--target"])
        .arg(&target));
    let restored = target.join(source.strip_prefix("/").unwrap());
    assert_same_tree(&source, &restored);
}

#[test]
fn rsync_bandwidth_holds_against_an_rsync_daemon() {
    require_tool("rsync");
    let dir = tempdir();
    let dir = dir.path();
    let source = source(dir);
    let port = free_port();
    let module = dir.join("module");
    std::fs::create_dir_all(&module).unwrap();
    write(
        &dir.join("rsyncd.conf"),
        format!(
            "pid file = {d}/rsyncd.pid\nuse chroot = no\n[backup]\npath = {m}\nread only = no\n\
             uid = root\ngid = root\n",
            d = dir.display(),
            m = module.display()
        ),
    );
    let mut daemon = Command::new("rsync");
    daemon
        .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--config={}", dir.join("rsyncd.conf").display()));
    let _server = Server::start(daemon, port, "rsync --daemon");
    // The limit is the job's, which the stage takes as its own `bandwidth` (restic's above is
    // the stage's own): both places a limit can be written are held to the real tool.
    let config = write_config(
        dir,
        &format!(
            "[job]\nbandwidth = \"{LIMIT_KIB}K\"\n\n\
             [stage.copy]\nkind = \"rsync\"\nsources = [\"@ROOT@/source/\"]\n\
             destination = \"rsync://127.0.0.1:{port}/backup/\"\nacls = false\nxattrs = false\n"
        ),
    );
    let mut copy = backupctl_user(dir, &config);
    copy.args(["run", "--here"]);
    assert_limited("rsync --bwlimit", copy);
    assert_same_tree(&source, &module);
}

#[test]
fn rclone_follows_its_timetable_against_a_webdav_server() {
    require_tool("rclone");
    let dir = tempdir();
    let dir = dir.path();
    let source = source(dir);
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let port = free_port();
    let mut webdav = Command::new("rclone");
    webdav
        .args(["serve", "webdav", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(&served);
    let _server = Server::start(webdav, port, "rclone serve webdav");
    write_secret(
        &dir.join("rclone.conf"),
        format!("[dav]\ntype = webdav\nurl = http://127.0.0.1:{port}/\nvendor = other\n"),
    );
    // Passed to rclone as its own timetable ("00:00,200K"): every entry the same rate, so the
    // limit holds whenever the test runs.
    let config = write_config(
        dir,
        &format!(
            "[stage.up]\nkind = \"rclone\"\nmode = \"copy\"\nsource = \"@ROOT@/source\"\n\
             destination = \"dav:copy\"\nconfig_file = \"@ROOT@/rclone.conf\"\n\
             upload_limit = \"00:00 {LIMIT_KIB}K, 12:00 {LIMIT_KIB}K\"\n"
        ),
    );
    let mut copy = backupctl_user(dir, &config);
    copy.args(["run", "--here"]);
    assert_limited("rclone --bwlimit timetable", copy);
    assert_same_tree(&source, &served.join("copy"));
}
