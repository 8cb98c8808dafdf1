//! Exit codes and output (issue 11): every command ends quietly with 0 when the reader of its
//! output went away (`| head -1`), and errors map to the README's codes (1 failed, 2 usage or
//! config). Commands that must not hang (a FIFO given as a file) run under a time limit so a
//! regression fails instead of blocking the suite.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{backupctl, ok, require_tool, stderr, stdout, tempdir, write};

/// Runs `command` to its end, or kills it and fails the test after `limit`.
#[track_caller]
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut data = Vec::new();
        let _ = out.read_to_end(&mut data);
        data
    });
    let err = std::thread::spawn(move || {
        let mut data = Vec::new();
        let _ = err.read_to_end(&mut data);
        data
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not end within {limit:?}: it blocks");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `command` with its stdout on a pipe whose reading end is already closed, as after
/// `| head -1` has read its line: every write fails with EPIPE.
#[track_caller]
fn with_closed_stdout(command: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    command.stdout(writer).stderr(Stdio::piped());
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
        .wait_with_output()
        .expect("wait")
}

/// A config with a few stages, and `backupctl --user --config` on it with state in `dir`.
fn setup(dir: &Path) -> (PathBuf, impl Fn() -> Command) {
    let config = dir.join("config.toml");
    let mut text = String::from("[job]\nschedule = \"daily\"\n\n[stage.hello]\nkind = \"hello\"\n");
    for i in 0..50 {
        text.push_str(&format!(
            "\n[stage.run{i}]\nkind = \"exec\"\ncommand = [\"/usr/bin/true\", \"{i}\"]\n"
        ));
    }
    write(&config, text);
    let state = dir.join("state/backupctl");
    let file = config.clone();
    (config, move || {
        let mut command = backupctl();
        command
            .env("STATE_DIRECTORY", &state)
            .arg("--user")
            .arg("--config")
            .arg(&file);
        command
    })
}

#[test]
fn broken_pipe_quiet_exit_0_in_every_printing_command() {
    let dir = tempdir();
    let (_, bc) = setup(dir.path());
    let commands: &[&[&str]] = &[
        &["completions", "bash"],
        &["completions", "zsh"],
        &["man"],
        &["check"],
        &["check", "--json"],
        &["generate", "--dry-run", "--binary", "/usr/bin/backupctl"],
        &["status"],
        &["status", "--json"],
        &["--help"],
    ];
    let mut failures = Vec::new();
    for args in commands {
        let output = with_closed_stdout(bc().args(*args));
        let code = output.status.code();
        if code != Some(0) || !output.stderr.is_empty() {
            failures.push(format!(
                "backupctl {}: exit {code:?}, stderr:\n{}",
                args.join(" "),
                stderr(&output)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn config_error_exits_2() {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    write(&config, "[stage.x]\nkind = \"nope\"\n");
    for args in [
        &["status"][..],
        &["generate", "--dry-run"],
        &["run", "--here"],
    ] {
        let output = crate::util::run(backupctl().arg("--config").arg(&config).args(args));
        assert_eq!(
            output.status.code(),
            Some(2),
            "backupctl {args:?} on an invalid config:\n{}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("config.toml:2:"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn misspelt_names_exit_2() {
    let dir = tempdir();
    let (_, bc) = setup(dir.path());
    for args in [
        &["restore", "hallo", "--target", "/nonexistent"][..],
        &["history", "hallo"],
        &["snapshots", "hallo"],
        &["status", "nosuchjob"],
        &["run", "--here", "nosuchjob"],
        &["mount", "hallo", "/nonexistent"],
        &["restore", "hello", "--target", "/nonexistent"],
    ] {
        let output = crate::util::run(bc().args(args));
        assert_eq!(
            output.status.code(),
            Some(2),
            "backupctl {args:?}:\n{}",
            stderr(&output)
        );
    }
}

/// The bug: every command error was exit 2 ("usage or config error, nothing ran"), also a
/// restore that ran and failed.
#[test]
fn issue11_failed_git_restore_exits_1_not_2() {
    require_tool("git");
    let dir = tempdir();
    let dir = dir.path();
    let notes = dir.join("notes");
    write(&notes.join("a.md"), "hello\n");
    let config = dir.join("config.toml");
    write(
        &config,
        format!(
            "[stage.notes]\nkind = \"git\"\nsources = [\"{}\"]\nrepository = \"{}\"\n",
            notes.display(),
            dir.join("work").display()
        ),
    );
    let bc = || crate::util::backupctl_user(dir, &config);
    ok(bc().args(["run", "--here"]));
    let output = crate::util::run(
        bc().args([
            "restore",
            "notes",
            "--commit",
            "0123456789abcdef",
            "--target",
        ])
        .arg(dir.join("out")),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("0123456789abcdef"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn failed_restic_restore_exits_1() {
    require_tool("restic");
    let dir = tempdir();
    let dir = dir.path();
    write(&dir.join("source/a"), "data\n");
    let password = dir.join("password");
    write(&password, "secret-password\n");
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = dir.join("config.toml");
    write(
        &config,
        format!(
            "[stage.r]\nkind = \"restic\"\nrepository = \"{repo}\"\npassword_file = \"{password}\"\n\
             init = true\npaths = [\"{source}\"]\n",
            repo = dir.join("repo").display(),
            password = password.display(),
            source = dir.join("source").display()
        ),
    );
    let bc = || crate::util::backupctl_user(dir, &config);
    ok(bc().args(["run", "--here"]));
    let output = crate::util::run(
        bc().args(["restore", "r", "--snapshot", "deadbeef", "--target"])
            .arg(dir.join("out")),
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(!dir.join("out/a").exists(), "{}", stdout(&output));
}

/// The bug: `check` of a 33 000-stage chain panicked ("formatting argument out of range":
/// the indentation of the deepest stage overflowed `format!`'s width), after a quadratic
/// time and gigabytes of indentation.
#[test]
fn issue11_check_of_a_33000_stage_chain_does_not_panic() {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    let mut text = String::new();
    for i in 0..33_000 {
        text.push_str(&format!(
            "[stage.s{i}]\nkind = \"exec\"\ncommand = [\"/usr/bin/true\"]\n"
        ));
    }
    write(&config, text);
    let output = output_within(
        backupctl().arg("--config").arg(&config).arg("check"),
        Duration::from_secs(120),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listing = stdout(&output);
    assert!(
        listing.contains("[32999] s32999  exec     after s32998"),
        "the last stage is listed with its depth:\n{}",
        &listing[listing.len().saturating_sub(500)..]
    );
    assert!(
        listing.len() < 4_000_000,
        "{} bytes of output",
        listing.len()
    );
}

/// A FIFO, created in the test's directory.
fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// The bug: `verify --manifest` on a FIFO blocked forever, on /dev/zero read until memory ran
/// out; `--config` on a FIFO blocked too.
#[test]
fn issue11_verify_and_config_refuse_fifos_and_devices_at_once() {
    let dir = tempdir();
    let dir = dir.path();
    let pipe = dir.join("fifo");
    fifo(&pipe);
    std::fs::create_dir(dir.join("tree")).unwrap();
    let limit = Duration::from_secs(20);
    for (manifest, what) in [
        (pipe.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (dir, "directory"),
    ] {
        let output = output_within(
            backupctl()
                .arg("verify")
                .arg("--manifest")
                .arg(manifest)
                .arg(dir.join("tree")),
            limit,
        );
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(what), "{}", stderr(&output));
    }
    for (config, what) in [
        (pipe.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (dir, "directory"),
    ] {
        let output = output_within(backupctl().arg("--config").arg(config).arg("status"), limit);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains(&format!("cannot read the config: it is a {what}")),
            "{}",
            stderr(&output)
        );
    }
}

/// The bug: a manifest whose checksum is right but whose entries are out of order gave a
/// wrong diff (an entry both missing and added) instead of an error.
#[test]
fn issue11_verify_refuses_an_unsorted_manifest_with_a_valid_checksum() {
    use backupctl::stages::manifest::format::{Entry, FileType, Manifest};
    let dir = tempdir();
    let dir = dir.path();
    let tree = dir.join("tree");
    for name in ["a", "b"] {
        std::fs::create_dir_all(tree.join(name)).unwrap();
    }
    let entry = |path: &str| Entry {
        path: path.as_bytes().to_vec(),
        file_type: FileType::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        mtime_nsec: 0,
        target: None,
        rdev: None,
        hash: None,
    };
    let manifest = Manifest {
        root: tree.clone(),
        entries: vec![entry(""), entry("b"), entry("a")],
    };
    let file = dir.join("tree.manifest");
    // `encode` computes the checksum over what it is given, sorted or not.
    write(&file, manifest.encode());
    let output = crate::util::run(
        backupctl()
            .arg("verify")
            .arg("--manifest")
            .arg(&file)
            .arg(&tree),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("entry 3 (a): entries are not in path order"),
        "{}",
        stderr(&output)
    );
    assert!(
        stdout(&output).is_empty(),
        "no differences listed: {}",
        stdout(&output)
    );
}
