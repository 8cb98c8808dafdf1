//! The generator: golden directories (`tests/generate/CASE/config.toml` in, `expected/` out,
//! compared as trees by `util::golden`), `systemd-analyze verify` on the generated units,
//! their security exposure score, the real-generator entry point, and clean-up of units of
//! removed stages. `BLESS=1` rewrites the expected directories; then review the diff.

use std::process::Command;

use crate::util::golden::{self, args, cases, generate};
use crate::util::{
    backupctl, backupctl_path, exposure_score, ok, repo_root, require_tool, run, stderr, stdout,
    tempdir, write,
};

#[test]
fn generated_units_match_the_golden_directories() {
    assert!(cases().len() >= 3);
    for case in cases() {
        golden::assert_generated(&case);
    }
}

#[test]
fn generated_units_pass_systemd_analyze_verify() {
    require_tool("systemd-analyze");
    for case in cases() {
        let out = tempdir();
        // The real binary: verify checks that ExecStart= exists and is executable.
        generate(&case, &backupctl_path(), out.path());
        let units: Vec<String> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".service") || name.ends_with(".timer"))
            .filter(|name| name != "backup@.service")
            .chain(
                // Instances, so the template is verified with each stage's drop-in.
                std::fs::read_dir(out.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter_map(|name| name.strip_suffix(".d").map(String::from)),
            )
            .collect();
        let mut command = Command::new("systemd-analyze");
        command.arg("verify").arg("--man=no");
        // Its own runtime directory: /run/user/0 exists only while the systemd sandbox runs,
        // and verify needs none of the manager's state.
        let runtime = tempdir();
        if args(&case).iter().any(|a| a == "--user") {
            std::fs::set_permissions(
                runtime.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
            command.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
        }
        let output = run(command
            .args(&units)
            .current_dir(out.path())
            .env("SYSTEMD_LOG_LEVEL", "notice"));
        assert!(
            output.status.success() && stderr(&output).trim().is_empty(),
            "{}: systemd-analyze verify {units:?}:\n{}{}",
            case.display(),
            stdout(&output),
            stderr(&output)
        );
    }
}

#[test]
fn stages_that_read_sources_and_write_locally_score_at_most_3() {
    require_tool("systemd-analyze");
    let case = repo_root().join("tests/generate/design-example");
    let out = tempdir();
    generate(&case, &backupctl_path(), out.path());
    for stage in ["hello", "logseq", "notes"] {
        let score = exposure_score(out.path(), stage);
        println!("systemd-analyze security: backup@{stage}.service exposure {score}");
        assert!(
            score <= 3.0,
            "backup@{stage}.service exposure {score} > 3.0"
        );
    }
}

#[test]
fn runs_as_a_systemd_generator_into_the_first_directory() {
    let config_dir = tempdir();
    let config = config_dir.path().join("config.toml");
    std::fs::copy(
        repo_root().join("tests/generate/design-example/config.toml"),
        &config,
    )
    .unwrap();
    let dirs = [tempdir(), tempdir(), tempdir()];
    let output = run(Command::new(backupctl_path())
        .args(dirs.iter().map(|d| d.path()))
        .env("BACKUPCTL_CONFIG", &config)
        .env("SYSTEMD_SCOPE", "system"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dirs[0].path().join("backup-job.service").is_file());
    assert!(
        dirs[0]
            .path()
            .join("timers.target.wants/backup-job.timer")
            .exists()
    );
    assert!(std::fs::read_dir(dirs[1].path()).unwrap().next().is_none());

    // A bad config: only the unit that fails with the error at boot (a user manager's
    // default.target pulls it in), a message, and still exit 0 so the boot goes on.
    std::fs::write(&config, "[stage.x]\nkind = \"nope\"\n").unwrap();
    let fresh = [tempdir(), tempdir(), tempdir()];
    let output = run(Command::new(backupctl_path())
        .args(fresh.iter().map(|d| d.path()))
        .env("BACKUPCTL_CONFIG", &config)
        .env("SYSTEMD_SCOPE", "user"));
    assert!(output.status.success());
    assert!(
        stderr(&output).contains("unknown stage kind `nope`"),
        "{}",
        stderr(&output)
    );
    let mut written: Vec<String> = std::fs::read_dir(fresh[0].path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        [
            ".backupctl-generated",
            "backupctl-config-error.service",
            "default.target.wants"
        ]
    );

    // No config at all: nothing to do.
    std::fs::remove_file(&config).unwrap();
    let output = run(Command::new(backupctl_path())
        .arg(fresh[0].path())
        .env("BACKUPCTL_CONFIG", &config));
    assert!(output.status.success());
}

#[test]
fn regenerating_removes_units_of_removed_stages_only() {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    let units = dir.path().join("units");
    let two = "[stage.a]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n\n[stage.b]\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n";
    std::fs::write(&config, two).unwrap();
    ok(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--output"])
        .arg(&units));
    write(
        &units.join("admin.service"),
        "[Service]\nExecStart=/bin/true\n",
    );
    assert!(units.join("backup@b.service.d/backupctl.conf").is_file());
    std::fs::write(&config, &two[..two.find("[stage.b]").unwrap()]).unwrap();
    let out = ok(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--output"])
        .arg(&units));
    assert!(out.contains("removed"), "{out}");
    assert!(!units.join("backup@b.service.d").exists());
    assert!(units.join("backup@a.service.d/backupctl.conf").is_file());
    assert!(
        units.join("admin.service").is_file(),
        "a unit we did not write is kept"
    );
}

#[test]
fn dry_run_prints_and_writes_nothing() {
    let out = ok(backupctl()
        .arg("--config")
        .arg(repo_root().join("tests/generate/design-example/config.toml"))
        .args(["generate", "--dry-run", "--binary", "/usr/bin/backupctl"]));
    assert!(out.contains("### backup-job.service"));
    assert!(out.contains("ExecStart=/usr/bin/backupctl --config"));
}

/// Regression (issue 21): the hello unit of a job whose rsync stage writes into a store had
/// that destination, under the store's mount point, in its `ReadWritePaths=` and its
/// `prepare-paths`, which created it on /run while the store was not mounted. hello probes
/// the job's other destinations only; the store's own checks cover the store.
#[test]
fn regression_hellos_unit_created_a_destination_under_an_unmounted_store() {
    let dir = tempdir();
    let config = dir.path().join("config.toml");
    let units = dir.path().join("units");
    std::fs::write(
        &config,
        "[store.nas]\nimage = \"backup.luks\"\nsize = \"2T\"\nkeyfile = \"/etc/backupctl/nas.key\"\n\
         remote = { device = \"/dev/sdz1\" }\n\n\
         [stage.hello]\nkind = \"hello\"\n\n\
         [stage.home]\nkind = \"rsync\"\nstore = \"nas\"\nsources = [\"/home/\"]\ndestination = \"home\"\n\n\
         [stage.etc]\nkind = \"rsync\"\nsources = [\"/etc/\"]\ndestination = \"/data/etc/\"\n",
    )
    .unwrap();
    ok(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--output"])
        .arg(&units));
    let hello =
        std::fs::read_to_string(units.join("backup@hello.service.d/backupctl.conf")).unwrap();
    assert!(hello.contains("ReadWritePaths=-/data/etc/\n"), "{hello}");
    assert!(!hello.contains("/run/backupctl/store"), "{hello}");
    let home = std::fs::read_to_string(units.join("backup@home.service.d/backupctl.conf")).unwrap();
    assert!(
        home.contains("ReadWritePaths=-/run/backupctl/store/nas\n"),
        "the store stage itself still writes its store: {home}"
    );
}
