//! Encrypted stores: config errors, the generated store units (golden files), and the
//! end-to-end scenarios in a Debian guest under qemu (this kernel has neither device-mapper
//! nor CIFS): the Debian package installed with `dpkg -i`, CIFS and block stores, the packaged
//! system generator, no plaintext, rotation, a stop mid-rsync, and `dpkg -r` leaving nothing
//! behind. The guest test fails, never skips, when qemu cannot run.

use std::path::Path;

use crate::util::{backupctl, golden, repo_root, run, stderr, tempdir, write};

fn config_with(store: &str) -> String {
    format!(
        "[store.nas]\nimage = \"backup.luks\"\nsize = \"1G\"\nkeyfile = \"/etc/backupctl/nas.key\"\n{store}\n\n\
         [stage.docs]\nkind = \"rsync\"\nstore = \"nas\"\nsources = [\"/srv/docs/\"]\ndestination = \"docs\"\n"
    )
}

#[track_caller]
fn check_fails(config: &str, expected: &[&str]) {
    let dir = tempdir();
    let file = dir.path().join("config.toml");
    write(&file, config);
    let output = run(backupctl().arg("--config").arg(&file).arg("check"));
    assert!(!output.status.success(), "check accepted:\n{config}");
    let message = stderr(&output);
    for part in expected {
        assert!(message.contains(part), "expected `{part}` in:\n{message}");
    }
}

#[test]
fn store_password_in_config_is_refused_with_position() {
    check_fails(
        &config_with("remote = { volume = \"//nas/b\", username = \"u\", password = \"hunter2\" }"),
        &[
            "config.toml:5:",
            "does not belong in the config",
            "password_file",
        ],
    );
}

#[test]
fn store_errors_name_the_key() {
    check_fails(
        &config_with("remote = { volume = \"nas/b\", username = \"u\", password_file = \"/p\" }"),
        &["is not a CIFS volume", "//HOST/SHARE"],
    );
    check_fails(
        &config_with("remote = { device = \"sdb\" }"),
        &["`sdb` is not a block device", "UUID="],
    );
    check_fails(
        &config_with("remote = { device = \"UUID=x\", username = \"u\" }"),
        &["`username` does not apply to a block remote"],
    );
    let unknown = config_with("remote = { device = \"UUID=x\" }")
        .replace("store = \"nas\"", "store = \"san\"");
    check_fails(
        &unknown,
        &["store `san` is not defined", "defined stores: nas"],
    );
    let absolute = config_with("remote = { device = \"UUID=x\" }")
        .replace("destination = \"docs\"", "destination = \"/data/docs\"");
    check_fails(&absolute, &["destination is a path inside the store"]);
    let rotate = config_with("remote = { device = \"UUID=x\" }").replace(
        "destination = \"docs\"",
        "destination = \"docs\"\nrotate = { every = \"1 fortnight\", keep = 2 }",
    );
    check_fails(&rotate, &["invalid `every`"]);
}

/// The units of `examples/store.toml` against the golden case `tests/generate/store-example/`
/// (see `util::golden`; `BLESS=1` rewrites it).
#[test]
fn store_units_match_golden_files() {
    golden::assert_generated(&golden::case("store-example"));
}

/// The whole store lifecycle under a real systemd in a Debian guest (≈ 5 min emulated), with
/// backupctl installed from its Debian package (`scripts/package`) and removed at the end.
#[test]
fn store_end_to_end_in_a_guest() {
    let script = repo_root().join("scripts/guest/store-test");
    assert!(
        Path::new("/usr/bin/qemu-system-x86_64").exists(),
        "qemu-system-x86_64 is missing: run scripts/setup-deps (installs qemu-system-x86, debootstrap)"
    );
    let package = crate::util::debian_package();
    let output = run(std::process::Command::new(&script).arg(package));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && log.contains("ALL PASSED"),
        "the guest scenarios failed ({}):\n{log}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
