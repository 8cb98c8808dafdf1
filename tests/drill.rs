//! The `drill` stage: a sample of a real backup restored (restic) or read back (rsync) and
//! compared byte for byte, by BLAKE3, with the source or a manifest; then the backup damaged
//! (a flipped byte in a restic pack, in an rsync destination file with its size and mtime
//! kept) and the drill must fail and name the problem. The rsync case and a restic case with
//! the password as a systemd credential run under the systemd user manager, the restic case
//! with a manifest and `status` with `run --here`.

use std::path::Path;
use std::process::Command;

use crate::util::installed::{Installed, last_run_record};
use crate::util::{
    backupctl_user, flip_byte, incompressible_bytes, largest_file, ok, require_tool, run, stderr,
    stdout, systemctl_user, tempdir, write, write_config,
};

/// A tree of a few files, one of them a MiB of pseudo-random bytes (its own restic pack).
fn make_source(root: &Path) {
    write(&root.join("plain.txt"), "hello\n");
    write(
        &root.join("dir with spaces/file [1].txt"),
        "spaces and brackets\n",
    );
    write(&root.join("deep/a/b/c.txt"), "deep\n");
    write(&root.join("big.bin"), incompressible_bytes(1 << 20));
}

fn last_record(dir: &Path, stage: &str) -> serde_json::Value {
    let runs = crate::util::read_run_records(&dir.join("state/backupctl/runs.jsonl"));
    runs.iter()
        .rfind(|r| r["stage"] == stage)
        .cloned()
        .unwrap_or_else(|| panic!("no run record of {stage}: {runs:?}"))
}

#[test]
fn a_restic_drill_verifies_the_sample_and_fails_on_a_damaged_pack() {
    require_tool("restic");
    let tmp = tempdir();
    let dir = tmp.path();
    let source = dir.join("source");
    make_source(&source);
    write(&dir.join("password"), "drill-password\n");
    std::fs::set_permissions(
        dir.join("password"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = write_config(
        dir,
        r#"
[jobs.drill]

[stage.home]
kind = "restic"
repository = "@ROOT@/repo"
password_file = "@ROOT@/password"
init = true
paths = ["@ROOT@/source"]
host = "drillhost"

[stage.home-manifest]
kind = "manifest"
sources = ["@ROOT@/source"]

[stage.drill-home]
job = "drill"
kind = "drill"
stage = "home"
sample = "100%"
newest = 2

[stage.drill-home-manifest]
job = "drill"
kind = "drill"
stage = "home"
files = 2
manifest = "home-manifest"
"#,
    );
    ok(backupctl_user(dir, &config).args(["run", "--here", "job"]));
    let output = ok(backupctl_user(dir, &config).args(["run", "--here", "drill"]));
    for stage in ["drill-home", "drill-home-manifest"] {
        let record = last_record(dir, stage);
        assert_eq!(record["result"], "success", "{record}\n{output}");
        assert_eq!(record["kind"], "drill");
        assert_eq!(record["figures"]["snapshot_id"].as_str().unwrap().len(), 8);
    }
    let record = last_record(dir, "drill-home");
    assert_eq!(
        record["figures"]["files"], 4,
        "every file verified: {record}"
    );
    assert_eq!(
        record["figures"]["bytes_read"].as_u64().unwrap(),
        (1 << 20) + 6 + 20 + 5,
        "{record}"
    );
    assert_eq!(
        last_record(dir, "drill-home-manifest")["figures"]["files"],
        4
    );
    assert!(
        !dir.join("state/backupctl/drill").exists()
            || std::fs::read_dir(dir.join("state/backupctl/drill"))
                .unwrap()
                .next()
                .is_none(),
        "the scratch directory is removed"
    );

    // `status` shows the backup stage's newest drill.
    let status = ok(backupctl_user(dir, &config).args(["status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let home = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|job| job["stages"].as_array().unwrap())
        .find(|stage| stage["name"] == "home")
        .unwrap()
        .clone();
    assert_eq!(home["last_drill"]["result"], "success", "{home}");
    assert_eq!(home["last_drill"]["files"], 4, "{home}");
    assert_eq!(home["last_drill"]["mismatches"], 0, "{home}");
    assert!(home["last_drill"]["snapshot_age_secs"].is_u64(), "{home}");
    let table = ok(backupctl_user(dir, &config).args(["status"]));
    assert!(
        table.contains("last verified restore: ") && table.contains(", success (4 files, backup "),
        "{table}"
    );

    // A file changed since the backup is skipped, not a failure.
    write(&source.join("plain.txt"), "changed!\n");
    ok(backupctl_user(dir, &config).args(["run", "--here", "drill"]));
    assert_eq!(last_record(dir, "drill-home")["figures"]["files"], 3);
    write(&source.join("plain.txt"), "hello\n");

    // The pack holding big.bin's data, damaged: the drill must fail and say so.
    flip_byte(&largest_file(&dir.join("repo/data")));
    let output = run(backupctl_user(dir, &config).args(["run", "--here", "drill"]));
    assert!(!output.status.success(), "{}", stderr(&output));
    let record = last_record(dir, "drill-home");
    assert_eq!(record["result"], "failed", "{record}");
    assert_eq!(record["exit_code"], 1, "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(
        error.contains("does not restore"),
        "the failure names the problem: {error}"
    );
}

#[test]
fn an_rsync_drill_under_systemd_names_the_flipped_file() {
    require_tool("rsync");
    let job = Installed::new(
        "drill-rsync",
        r#"
[metrics]
textfile = "@ROOT@/textfile/backupctl.prom"

[jobs.drill]

[stage.copy]
kind = "rsync"
sources = ["@ROOT@/source"]
destination = "@ROOT@/dest"

[stage.drill-copy]
job = "drill"
kind = "drill"
stage = "copy"
sample = "100%"
"#,
    );
    make_source(&job.path("source"));
    std::fs::create_dir_all(job.path("textfile")).unwrap();
    ok(systemctl_user().args(["start", "backup@copy.service"]));
    ok(systemctl_user().args(["start", "backup@drill-copy.service"]));
    let record = last_run_record("drill-copy");
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(record["figures"]["files"], 4, "{record}");

    let flipped = job.path("dest/source/deep/a/b/c.txt");
    flip_byte(&flipped);
    let output = run(systemctl_user().args(["start", "backup@drill-copy.service"]));
    assert!(!output.status.success(), "the drill unit fails");
    let record = last_run_record("drill-copy");
    assert_eq!(record["result"], "failed", "{record}");
    // The figures stay on record when a drill fails on a mismatch.
    assert_eq!(record["figures"]["mismatches"], 1, "{record}");
    assert_eq!(record["figures"]["files"], 3, "{record}");
    // The drill's unit, read-only but for its scratch directory, still writes the metrics
    // file, where the fleet's alert on mismatched files reads the count.
    let metrics = std::fs::read_to_string(job.path("textfile/backupctl.prom")).unwrap();
    let series = r#"{backup_job="drill",stage="drill-copy"}"#;
    assert!(
        metrics
            .lines()
            .any(|line| line == format!("backupctl_stage_last_mismatched_files{series} 1")),
        "{metrics}"
    );
    // The copy it verified was made seconds ago.
    let age: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(&format!(
                "backupctl_stage_last_verified_backup_age_seconds{series} "
            ))
        })
        .unwrap_or_else(|| panic!("no verified backup age in {metrics}"))
        .parse()
        .unwrap();
    assert!((0.0..600.0).contains(&age), "{metrics}");
    let error = record["error"].as_str().unwrap();
    let path = job.path("source/deep/a/b/c.txt");
    let expected = blake3::hash(b"deep\n").to_hex().to_string();
    let mut flipped_data = b"deep\n".to_vec();
    flipped_data[2] ^= 0xff;
    let actual = blake3::hash(&flipped_data).to_hex().to_string();
    assert!(
        error.contains(&format!(
            "{} (expected BLAKE3 {expected}, restored {actual})",
            path.display()
        )),
        "{error}"
    );
    // The record `journalctl -x` explains from the catalog, with the drill's fields.
    let invocation = stdout(&run(systemctl_user().args([
        "show",
        "-P",
        "InvocationID",
        "backup@drill-copy.service",
    ])));
    let records = stdout(&run(Command::new("journalctl").args([
        "-o",
        "json",
        "--no-pager",
        "MESSAGE_ID=5a94c8d232014863aa36186810241ac7",
        &format!("BACKUPCTL_RUN={}", invocation.trim()),
    ])));
    assert!(
        records.contains("\"BACKUPCTL_DRILL_TARGET\":\"copy\"")
            && records.contains("\"BACKUPCTL_DRILL_MISMATCHES\":\"1\""),
        "no drill-mismatch record of this run in the journal: {records}"
    );
    let _ = run(systemctl_user().arg("reset-failed"));
}

/// Under systemd, with the password as a systemd credential: the drill's unit loads the
/// target's credential and reads a repository it may not write (`--no-lock`).
#[test]
fn a_restic_drill_under_systemd_uses_the_targets_credential() {
    require_tool("restic");
    let job = Installed::new(
        "drill-restic",
        r#"
[jobs.drill]

[stage.home]
kind = "restic"
repository = "@ROOT@/repo"
password_credential = "@ROOT@/password"
init = true
paths = ["@ROOT@/source"]

[stage.drill-home]
job = "drill"
kind = "drill"
stage = "home"
files = 1
newest = 1
"#,
    );
    make_source(&job.path("source"));
    write(&job.path("password"), "drill-password\n");
    std::fs::set_permissions(
        job.path("password"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let drop_in = std::fs::read_to_string(
        Path::new(crate::util::installed::UNIT_DIR)
            .join("backup@drill-home.service.d/backupctl.conf"),
    )
    .unwrap();
    assert!(
        drop_in.contains("LoadCredential=restic-password:"),
        "the drill's unit loads the target's credential:\n{drop_in}"
    );
    ok(systemctl_user().args(["start", "backup@home.service"]));
    ok(systemctl_user().args(["start", "backup@drill-home.service"]));
    let record = last_run_record("drill-home");
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(record["figures"]["files"], 2, "{record}");

    flip_byte(&largest_file(&job.path("repo/data")));
    // Every file this time, so that big.bin is in the sample.
    let config = std::fs::read_to_string(&job.config)
        .unwrap()
        .replace("files = 1", "files = 100");
    write_config(&job.root, &config);
    ok(&mut job.backupctl(&["generate", "--output", crate::util::installed::UNIT_DIR]));
    ok(systemctl_user().arg("daemon-reload"));
    let output = run(systemctl_user().args(["start", "backup@drill-home.service"]));
    assert!(!output.status.success(), "the drill unit fails");
    let record = last_run_record("drill-home");
    assert_eq!(record["result"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("does not restore"), "{error}");
    let _ = run(systemctl_user().arg("reset-failed"));
}

/// A git stage's newest commit, under systemd: checked out into the drill's scratch
/// directory and compared with the live sources by blob id and BLAKE3; the files the newest
/// commit changed are "the newest"; a damaged object fails the drill.
#[test]
fn a_git_drill_under_systemd_verifies_the_newest_commit_and_fails_on_a_damaged_object() {
    require_tool("git");
    require_tool("rsync");
    let job = Installed::new(
        "drill-git",
        r#"
[jobs.drill]

[stage.notes]
kind = "git"
sources = ["@ROOT@/source"]
repository = "@ROOT@/notes"
remotes = ["@ROOT@/usb.git"]

[stage.drill-usb]
job = "drill"
kind = "drill"
stage = "notes"
sample = "100%"
remote = "@ROOT@/usb.git"

[stage.drill-notes]
job = "drill"
kind = "drill"
stage = "notes"
sample = "100%"

[stage.drill-newest]
job = "drill"
kind = "drill"
stage = "notes"
files = 0
newest = 1
"#,
    );
    let drill = |stage: &str| -> serde_json::Value {
        let _ = run(systemctl_user().args(["start", &format!("backup@{stage}.service")]));
        last_run_record(stage)
    };
    make_source(&job.path("source"));
    // The unit may write its local remote; systemd wants the path to exist.
    std::fs::create_dir_all(job.path("usb.git")).unwrap();
    ok(systemctl_user().args(["start", "backup@notes.service"]));
    let record = drill("drill-notes");
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(
        record["figures"]["files"], 4,
        "every file verified: {record}"
    );
    assert_eq!(
        record["figures"]["bytes_read"].as_u64().unwrap(),
        (1 << 20) + 6 + 20 + 5,
        "{record}"
    );
    assert_eq!(record["figures"]["snapshot_id"].as_str().unwrap().len(), 8);

    // A second commit that changes one file: it is the newest one.
    write(&job.path("source/plain.txt"), "hello again\n");
    ok(systemctl_user().args(["start", "backup@notes.service"]));
    let record = drill("drill-newest");
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(record["figures"]["files"], 1, "{record}");
    assert_eq!(record["figures"]["bytes_read"], 12, "plain.txt: {record}");

    // Changed since the commit: skipped, not a failure.
    write(&job.path("source/plain.txt"), "and again\n");
    let record = drill("drill-notes");
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(record["figures"]["files"], 3, "{record}");

    // big.bin's object, damaged (a loose object: zlib holds random data as it is).
    flip_byte(&largest_file(&job.path("notes/.git/objects")));
    let record = drill("drill-notes");
    assert_eq!(record["result"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("does not restore"), "{error}");

    // The copy pushed to the local remote is drilled on its own: intact, then damaged.
    let record = drill("drill-usb");
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(
        record["figures"]["files"], 3,
        "plain.txt changed since: {record}"
    );
    flip_byte(&largest_file(&job.path("usb.git/objects")));
    let record = drill("drill-usb");
    assert_eq!(record["result"], "failed", "{record}");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("does not restore"),
        "{record}"
    );
    assert!(
        !job.path("source/big.bin")
            .metadata()
            .unwrap()
            .permissions()
            .readonly(),
        "the source is untouched"
    );
    let _ = run(systemctl_user().arg("reset-failed"));
}
