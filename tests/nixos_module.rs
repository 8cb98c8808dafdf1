//! The NixOS module (`nix/module.nix`), evaluated for real with nixpkgs' `lib.evalModules`
//! (the vendored nixpkgs-lib) against stand-ins for `pkgs` and the NixOS options it sets
//! (`tests/nix/`): the TOML it renders goes through the real generator, the stage order in the
//! units must be the order of the Nix list, and the hello stage's `ExecStart=` must find
//! restic and rsync with only the `PATH` the unit sets, as on NixOS, where a unit's default
//! `PATH` holds systemd's own `bin` and nothing else. Nothing is started under systemd.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{backupctl, backupctl_path, ok, repo_root, require_tool, run, stderr, stdout};
use crate::util::{tempdir, write, write_secret};

/// The stand-in packages: `DIR/NAME/bin`, with symlinks to this machine's tools where the
/// package would hold them.
const PACKAGES: &[&str] = &[
    "backupctl",
    "restic",
    "rsync",
    "rclone",
    "git",
    "openssh",
    "btrfs-progs",
    "cryptsetup",
    "cifs-utils",
    "util-linux",
    "bash",
    "sqlite",
    "postgresql",
    "mariadb",
    "tzdata",
    "coreutils",
    "findutils",
    "gnugrep",
    "gnused",
    "systemd",
];

/// The nixpkgs `lib` the module is evaluated with.
fn nixpkgs_lib() -> PathBuf {
    let lib = PathBuf::from(
        std::env::var_os("NIXPKGS_LIB").unwrap_or_else(|| "/work/shared/vendor/nixpkgs-lib".into()),
    )
    .join("lib");
    assert!(
        lib.join("default.nix").is_file(),
        "this test needs nixpkgs' lib at {} (set NIXPKGS_LIB to a nixpkgs-lib checkout)",
        lib.display()
    );
    lib
}

/// Where a tool is on this machine's PATH.
fn which(tool: &str) -> PathBuf {
    require_tool(tool);
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
        .unwrap()
}

/// Makes the stand-in package directories under `root`; returns them as a Nix attribute set.
fn packages(root: &Path) -> String {
    let mut attrs = String::from("{ ");
    for name in PACKAGES {
        let bin = root.join(name).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        attrs.push_str(&format!("{name} = \"{}\"; ", root.join(name).display()));
    }
    std::os::unix::fs::symlink(backupctl_path(), root.join("backupctl/bin/backupctl")).unwrap();
    for tool in ["restic", "rsync"] {
        std::os::unix::fs::symlink(which(tool), root.join(tool).join("bin").join(tool)).unwrap();
    }
    attrs.push('}');
    attrs
}

/// Evaluates the module with `config` (the text of a NixOS module) and returns what
/// tests/nix/eval.nix reports: failed assertions, or the settings and what else it set.
/// Evaluates `config` against stand-in packages in a fresh directory; `files` are written
/// there first (`./NAME` in the config refers to them).
fn evaluate_in_scratch(files: &[(&str, &str)], config: &str) -> serde_json::Value {
    let dir = tempdir();
    let dir = dir.path();
    for (name, contents) in files {
        write(&dir.join(name), contents);
    }
    let packages = packages(&dir.join("pkgs"));
    evaluate(dir, &packages, config)
}

fn evaluate(dir: &Path, packages: &str, config: &str) -> serde_json::Value {
    evaluate_with(dir, packages, config, &[])
}

/// [`evaluate`] with more arguments for tests/nix/eval.nix (`--arg NAME EXPR`, `--argstr`).
fn evaluate_with(dir: &Path, packages: &str, config: &str, more: &[&str]) -> serde_json::Value {
    require_tool("nix-instantiate");
    let file = dir.join("configuration.nix");
    write(&file, config);
    let output = ok(Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo_root().join("tests/nix/eval.nix"))
        .arg("--arg")
        .arg("lib")
        .arg(nixpkgs_lib())
        .args(["--arg", "dirs", packages])
        .arg("--arg")
        .arg("config")
        .arg(&file)
        .args(more));
    serde_json::from_str(&output).unwrap_or_else(|e| panic!("{e}: {output}"))
}

/// The value of the first `KEY=` line of a unit.
fn setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(String::from)
}

/// Three stages whose names sort otherwise than they run (backblaze < hello < logseq).
fn three_stages(dir: &Path) -> String {
    let source = dir.join("source");
    write(&source.join("notes.txt"), "a note\n");
    let password = dir.join("restic-password");
    write_secret(&password, "secret\n");
    // What the units' `ExecStartPre=+… prepare-paths` creates before the stage runs.
    std::fs::create_dir_all(dir.join("copy")).unwrap();
    std::fs::create_dir_all(dir.join("repository")).unwrap();
    format!(
        r#"{{
  services.backupctl = {{
    enable = true;
    settings.job.schedule = "daily";
    stages = [
      {{ name = "hello"; kind = "hello"; min_free = "1M"; }}
      {{ name = "logseq"; kind = "rsync"; sources = [ "{source}/" ]; destination = "{copy}/"; }}
      {{ name = "backblaze"; kind = "restic"; repository = "{repository}";
         password_file = "{password}"; paths = [ "{source}" ]; }}
    ];
  }};
}}"#,
        source = source.display(),
        copy = dir.join("copy").display(),
        repository = dir.join("repository").display(),
        password = password.display(),
    )
}

#[test]
fn the_modules_units_run_the_stages_in_list_order_and_find_their_tools() {
    let dir = tempdir();
    let dir = dir.path();
    let packages = packages(&dir.join("pkgs"));
    let evaluated = evaluate(dir, &packages, &three_stages(dir));
    assert_eq!(
        evaluated["assertions"],
        serde_json::json!([]),
        "{evaluated:#}"
    );

    // json2toml, as nixpkgs' formats.toml does.
    let toml = toml::to_string(&evaluated["settings"]).unwrap();
    let config = dir.join("config.toml");
    write(&config, &toml);
    let units = dir.join("units");
    // The package's wrapper sets BACKUPCTL_BINARY to itself (nix/package.nix).
    let wrapper = dir.join("pkgs/backupctl/bin/backupctl");
    ok(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--output"])
        .arg(&units)
        .env("BACKUPCTL_BINARY", &wrapper));

    // The order of the Nix list, not the sorted order of the TOML tables.
    let drop_in = |stage: &str| {
        std::fs::read_to_string(units.join(format!("backup@{stage}.service.d/backupctl.conf")))
            .unwrap()
    };
    assert_eq!(setting(&drop_in("hello"), "After"), None, "{toml}");
    assert_eq!(
        setting(&drop_in("logseq"), "After").as_deref(),
        Some("backup@hello.service"),
        "{toml}"
    );
    assert_eq!(
        setting(&drop_in("backblaze"), "After").as_deref(),
        Some("backup@logseq.service"),
        "{toml}"
    );

    // The template calls the wrapper, with the module's PATH.
    let template = std::fs::read_to_string(units.join("backup@.service")).unwrap();
    let exec_start = setting(&template, "ExecStart").expect("ExecStart=");
    let words: Vec<String> = exec_start
        .split_whitespace()
        .map(|word| word.replace("%i", "hello"))
        .collect();
    assert_eq!(Path::new(&words[0]), wrapper, "{template}");
    let environment = setting(&template, "Environment").expect("Environment=PATH=");
    let path = environment
        .trim_matches('"')
        .strip_prefix("PATH=")
        .unwrap_or_else(|| panic!("not PATH: {environment}"))
        .to_string();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for package in ["restic", "rsync", "systemd"] {
        assert!(
            dirs.contains(&dir.join("pkgs").join(package).join("bin")),
            "{package} missing from the units' PATH {path}"
        );
    }
    assert!(
        dirs.iter().all(|d| d.starts_with(dir.join("pkgs"))),
        "the units' PATH has more than the module's directories: {path}"
    );

    // The hello stage as systemd would start it: only the unit's PATH, and the state
    // directories StateDirectory=/CacheDirectory= would make.
    let hello = |path: &str| {
        run(Command::new(&words[0])
            .args(&words[1..])
            .env_clear()
            .env("PATH", path)
            .env("STATE_DIRECTORY", dir.join("state"))
            .env("CACHE_DIRECTORY", dir.join("cache")))
    };
    let output = hello(&path);
    assert!(
        output.status.success(),
        "hello with PATH={path} failed ({}):\n{}{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    // Without the module's PATH (systemd's bin alone, the NixOS default), the same stage
    // finds neither tool: what the PATH above fixed.
    let bare = dir.join("pkgs/systemd/bin");
    let output = hello(&bare.to_string_lossy());
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains("restic") && text.contains("not found in PATH"),
        "{text}"
    );
}

#[test]
fn stages_in_an_attribute_set_need_after() {
    let evaluated = evaluate_in_scratch(
        &[],
        r#"{ services.backupctl = {
              enable = true;
              settings.stage.hello.kind = "hello";
              settings.stage.logseq = { kind = "rsync"; sources = [ "/home/" ]; destination = "/data/"; };
            }; }"#,
    );
    let messages = evaluated["assertions"].to_string();
    assert!(
        messages.contains("Nix sorts attribute names")
            && messages.contains("hello, logseq")
            && messages.contains("services.backupctl.stages"),
        "{evaluated:#}"
    );
}

#[test]
fn conditions_and_bandwidth_options_render_as_the_loaders_keys() {
    let evaluated = evaluate_in_scratch(
        &[],
        r#"{ services.backupctl = {
              enable = true;
              settings.job = { upload_limit = "2M"; bandwidth = "1M"; };
              stages = [ { name = "cloud"; kind = "rclone"; mode = "copy"; source = "/srv";
                           destination = "cloud:srv"; config_file = "/etc/rclone.conf";
                           on_ac_power = true; skip_on_metered = true;
                           upload_limit = "08:00 1M, 19:00 off"; download_limit = "4M"; }
                         { name = "nas"; kind = "rsync"; sources = [ "/srv/" ];
                           destination = "nas:/srv/"; bandwidth = "500K"; } ];
            }; }"#,
    );
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let stage = &evaluated["settings"]["stage"];
    assert_eq!(stage["cloud"]["on_ac_power"], true, "{stage:#}");
    assert_eq!(stage["cloud"]["skip_on_metered"], true, "{stage:#}");
    assert_eq!(stage["cloud"]["upload_limit"], "08:00 1M, 19:00 off");
    assert_eq!(stage["cloud"]["download_limit"], "4M");
    assert_eq!(stage["nas"]["bandwidth"], "500K", "{stage:#}");
    // Unset options leave no key behind (the loader refuses `bandwidth` on rclone).
    assert!(stage["cloud"].get("bandwidth").is_none(), "{stage:#}");
    // A job's bandwidth keys, the default of its stages that take them.
    let job = &evaluated["settings"]["job"];
    assert_eq!(job["upload_limit"], "2M", "{job:#}");
    assert_eq!(job["bandwidth"], "1M", "{job:#}");
    assert!(job.get("download_limit").is_none(), "{job:#}");
}

#[test]
fn a_nix_path_as_a_secret_file_is_refused() {
    let evaluated = evaluate_in_scratch(
        &[("secret", "s3cret\n")],
        r#"{ services.backupctl = {
              enable = true;
              stages = [ { name = "home"; kind = "restic"; repository = "/srv/restic";
                           password_file = ./secret; paths = [ "/home" ]; } ];
            }; }"#,
    );
    let messages = evaluated["assertions"].to_string();
    assert!(
        messages.contains("services.backupctl.stages[0].password_file is a Nix path")
            && messages.contains("world-readable /nix/store"),
        "{evaluated:#}"
    );
}

#[test]
fn job_users_own_their_stage_names_on_the_bus() {
    let evaluated = evaluate_in_scratch(
        &[],
        r#"{ services.backupctl = {
              enable = true;
              settings.job.user = "sig";
              stages = [ { name = "hello"; kind = "hello"; } ];
            };
            users.users.sig = { isSystemUser = true; }; }"#,
    );
    let policies = evaluated["dbus"].to_string();
    assert!(
        policies.contains(r#"<policy user=\"sig\">"#)
            && policies.contains(r#"<allow own_prefix=\"io.github.backupctl\"/>"#),
        "{evaluated:#}"
    );
    // The catalog goes where systemd reads catalogs, and the generator where NixOS links
    // generators from.
    let tmpfiles = evaluated["tmpfiles"].to_string();
    assert!(
        tmpfiles.contains("/usr/local/lib/systemd/catalog/backupctl.catalog"),
        "{tmpfiles}"
    );
    assert!(
        evaluated["generators"]["backupctl"]
            .as_str()
            .unwrap()
            .ends_with("lib/systemd/system-generators/backupctl-generator"),
        "{evaluated:#}"
    );
}

/// The files nix/package.nix's source fileset selects (tests/nix/fileset.nix evaluates
/// package.nix's own expression), relative to the repository.
fn package_source_files() -> Vec<String> {
    require_tool("nix-instantiate");
    let output = ok(Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo_root().join("tests/nix/fileset.nix"))
        .arg("--arg")
        .arg("lib")
        .arg(nixpkgs_lib()));
    serde_json::from_str(&output).unwrap_or_else(|e| panic!("{e}: {output}"))
}

/// What Nix builds is the fileset's copy of the repository, not the repository: a file the
/// build reads (`include_str!`) and the fileset leaves out fails only there. So exactly those
/// files are copied into a scratch directory and built as buildRustPackage does, offline and
/// with the lock file (into a target directory of its own under target/, kept between runs so
/// only backupctl itself is rebuilt).
#[test]
fn the_packages_source_set_builds() {
    let files = package_source_files();
    assert!(
        files.iter().any(|f| f == "Cargo.lock") && files.iter().any(|f| f == "src/main.rs"),
        "{files:?}"
    );
    let scratch = tempdir();
    let source = scratch.path().join("source");
    for file in &files {
        let to = source.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(file), &to).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // The test's own CARGO_PKG_* would look like changed `env!` values and rebuild the
    // dependencies (as scripts/package explains).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" {
            cargo.env_remove(&key);
        }
    }
    let output = run(cargo
        .args(["build", "--offline", "--locked"])
        .current_dir(&source)
        .env(
            "CARGO_TARGET_DIR",
            repo_root().join("target/package-source"),
        ));
    assert!(
        output.status.success(),
        "cargo build of the {} files nix/package.nix's fileset selects failed ({}): add what \
         the build reads to the fileset\n{}",
        files.len(),
        output.status,
        stderr(&output)
    );
}

/// The assertions of an evaluation, as one string (empty when all held).
fn assertions(evaluated: &serde_json::Value) -> String {
    evaluated["assertions"]
        .as_array()
        .map(|failed| {
            failed
                .iter()
                .map(|m| m.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Only keys that may hold secrets refuse a Nix path: an exclude list is not one, and goes
/// into the store as nixpkgs' TOML rendering copies any path.
#[test]
fn a_nix_path_under_a_key_that_holds_no_secret_is_accepted() {
    let evaluated = evaluate_in_scratch(
        &[("excludes", "*.tmp\n")],
        r#"{ services.backupctl = {
              enable = true;
              stages = [ { name = "home"; kind = "restic"; repository = "/srv/restic";
                           password_file = "/root/restic-password"; paths = [ "/home" ];
                           exclude_file = [ ./excludes ]; } ];
            }; }"#,
    );
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let excludes = evaluated["settings"]["stage"]["home"]["exclude_file"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{evaluated:#}"));
    assert!(excludes.ends_with("-excludes"), "{excludes}");
}

/// `extraPackages` come before the package's tools in the units' PATH, so a restic there is
/// the one the stages run; the package's wrapper appends its tools after the unit's PATH.
#[test]
fn extra_packages_override_the_packages_restic() {
    let dir = tempdir();
    let dir = dir.path();
    let packages = packages(&dir.join("pkgs"));
    let newer = dir.join("restic-newer");
    std::fs::create_dir_all(newer.join("bin")).unwrap();
    std::os::unix::fs::symlink(which("restic"), newer.join("bin/restic")).unwrap();
    let evaluated = evaluate(
        dir,
        &packages,
        &format!(
            r#"{{ services.backupctl = {{
                  enable = true;
                  stages = [ {{ name = "hello"; kind = "hello"; }} ];
                  extraPackages = [ {{ type = "derivation"; name = "restic-newer"; outPath = "{}"; }} ];
                }}; }}"#,
            newer.display()
        ),
    );
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let path: Vec<PathBuf> = evaluated["unitPath"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect();
    let found = path
        .iter()
        .map(|d| d.join("restic"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no restic in {path:?}"));
    assert_eq!(found, newer.join("bin/restic"), "{path:?}");

    let package = std::fs::read_to_string(repo_root().join("nix/package.nix")).unwrap();
    assert!(
        package.contains("--suffix PATH :") && !package.contains("--prefix PATH"),
        "the wrapper must append its tools, never put them before the unit's PATH"
    );
}

/// A package without `passthru.tools` (not built by nix/package.nix) still gets the stages'
/// tools into the units' PATH.
#[test]
fn a_package_without_tools_still_gets_the_stages_tools() {
    let dir = tempdir();
    let dir = dir.path();
    let packages = packages(&dir.join("pkgs"));
    let evaluated = evaluate_with(
        dir,
        &packages,
        r#"{ services.backupctl = { enable = true; stages = [ { name = "hello"; kind = "hello"; } ]; }; }"#,
        &["--argstr", "backupctl", "bare"],
    );
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let path = evaluated["unitPath"].to_string();
    for tool in ["restic", "rsync", "rclone", "git", "openssh", "util-linux"] {
        let bin = dir.join("pkgs").join(tool).join("bin");
        assert!(
            path.contains(&format!("\"{}\"", bin.display())),
            "{tool} missing: {path}"
        );
    }
}

/// A `job.user` the system does not declare fails the build, not the stage at 3 am.
#[test]
fn a_job_user_must_be_declared() {
    let config = |users: &str| {
        format!(
            r#"{{ services.backupctl = {{
                  enable = true;
                  settings.jobs.nightly.user = "backup";
                  stages = [ {{ name = "hello"; kind = "hello"; job = "nightly"; }} ];
                }};
                {users} }}"#
        )
    };
    let evaluated = evaluate_in_scratch(&[], &config(""));
    let messages = assertions(&evaluated);
    assert!(
        messages.contains("backup do not") && messages.contains("users.users.backup"),
        "{evaluated:#}"
    );
    let evaluated = evaluate_in_scratch(
        &[],
        &config(r#"users.users.backup = { isSystemUser = true; group = "backup"; };"#),
    );
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
}

/// The build-time check runs with tzdata's zoneinfo as TZDIR (the build sandbox has none;
/// tests/calendar.rs shows that `check` reads it).
#[test]
fn the_config_check_gets_tzdata() {
    let dir = tempdir();
    let dir = dir.path();
    let packages = packages(&dir.join("pkgs"));
    let evaluated = evaluate(
        dir,
        &packages,
        r#"{ services.backupctl = { enable = true; settings.job.schedule = "*-*-* 03:00:00 Europe/Berlin";
             stages = [ { name = "hello"; kind = "hello"; } ]; }; }"#,
    );
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    assert_eq!(
        evaluated["checkEnv"][0]["TZDIR"].as_str(),
        Some(format!("{}/share/zoneinfo", dir.join("pkgs/tzdata").display()).as_str()),
        "{evaluated:#}"
    );
}

/// package.nix's postInstall for a build machine that can run the binary (directly or
/// through an emulator) and for one that cannot (tests/nix/postinstall.nix).
fn post_install(emulator: bool) -> String {
    let output = ok(Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo_root().join("tests/nix/postinstall.nix"))
        .arg("--arg")
        .arg("lib")
        .arg(nixpkgs_lib())
        .args(["--arg", "emulator", if emulator { "true" } else { "false" }]));
    serde_json::from_str(&output).unwrap_or_else(|e| panic!("{e}: {output}"))
}

/// A cross build never runs the host's binary on the build machine: the man pages and
/// completions come through the emulator, or not at all.
#[test]
fn post_install_survives_cross_builds() {
    require_tool("nix-instantiate");
    let native = post_install(true);
    assert!(
        native.contains("EMULATOR $out/bin/backupctl man --dir man")
            && native.contains("<(EMULATOR $out/bin/backupctl completions bash)"),
        "{native}"
    );
    let cross = post_install(false);
    assert!(
        !cross.contains("$out/bin/backupctl man") && !cross.contains("completions"),
        "{cross}"
    );
    assert!(cross.contains("wrapProgram $out/bin/backupctl"), "{cross}");
}

/// The stage and job options a services.restic.backups user knows, rendered as the TOML keys
/// the loader reads.
const RESTIC_OPTIONS: &str = r#"{ pkgs, ... }: { services.backupctl = {
      enable = true;
      settings.job.timerConfig = { RandomizedDelaySec = "1h"; Persistent = true; FixedRandomDelay = true; };
      settings.job.schedule = "daily";
      stages = [ { name = "b2"; kind = "restic"; repository = "b2:bucket:/host";
                   password_file = "/etc/backupctl/restic-password";
                   environmentFile = "/etc/backupctl/b2.env";
                   package = pkgs.restic;
                   dynamicFilesFrom = "find /srv -name '*.db'";
                   keep = { daily = 7; };
                   pruneOpts = [ "--keep-tag" "important" ]; }
                 # restic.nix runs the check in the backup's unit; here it is a stage.
                 { name = "b2-check"; kind = "restic"; operation = "check";
                   repository = "b2:bucket:/host";
                   password_file = "/etc/backupctl/restic-password";
                   environmentFile = "/etc/backupctl/b2.env";
                   checkOpts = [ "--read-data-subset=5%" ]; } ];
    }; }"#;

#[test]
fn restic_backups_options_render_as_the_loaders_keys() {
    let dir = tempdir();
    let dir = dir.path();
    let packages = packages(&dir.join("pkgs"));
    let evaluated = evaluate(dir, &packages, RESTIC_OPTIONS);
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let stage = &evaluated["settings"]["stage"]["b2"];
    let pkgs = dir.join("pkgs");
    assert_eq!(
        stage["environment_file"], "/etc/backupctl/b2.env",
        "{stage:#}"
    );
    assert_eq!(
        stage["restic_binary"],
        format!("{}/bin/restic", pkgs.join("restic").display()),
        "{stage:#}"
    );
    assert_eq!(
        stage["files_from_command"],
        serde_json::json!([
            format!("{}/bin/bash", pkgs.join("bash").display()),
            "-c",
            "find /srv -name '*.db'"
        ]),
        "{stage:#}"
    );
    let check = &evaluated["settings"]["stage"]["b2-check"];
    assert_eq!(
        check["check_args"],
        serde_json::json!(["--read-data-subset=5%"]),
        "{check:#}"
    );
    assert!(
        check.get("checkOpts").is_none(),
        "checkOpts left in {check:#}"
    );
    assert_eq!(
        stage["forget_args"],
        serde_json::json!(["--keep-tag", "important"])
    );
    for camel in [
        "environmentFile",
        "package",
        "dynamicFilesFrom",
        "checkOpts",
        "pruneOpts",
    ] {
        assert!(stage.get(camel).is_none(), "{camel} left in {stage:#}");
    }
    let job = &evaluated["settings"]["job"];
    // restic.nix's timerConfig: the directives with a key of their own become that key (the
    // loader refuses them in `timer`), the rest pass through.
    assert_eq!(job["randomized_delay"], "1h", "{job:#}");
    assert_eq!(job["persistent"], true, "{job:#}");
    assert_eq!(
        job["timer"],
        serde_json::json!({ "FixedRandomDelay": true }),
        "{job:#}"
    );
    assert!(job.get("timerConfig").is_none(), "{job:#}");
}

/// The same rendered TOML through the real loader and generator: needs the loader to read
/// `environment_file`, `timer`, `restic_binary`, `files_from_command`, `check_args` and
/// `forget_args` (added alongside, in the restic stage's keys).
#[test]
fn restic_backups_options_pass_the_real_check_and_reach_the_units() {
    let dir = tempdir();
    let dir = dir.path();
    let packages = packages(&dir.join("pkgs"));
    let evaluated = evaluate(dir, &packages, RESTIC_OPTIONS);
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let config = dir.join("config.toml");
    write(&config, toml::to_string(&evaluated["settings"]).unwrap());
    let units = dir.join("units");
    ok(backupctl()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--binary", "/usr/bin/backupctl", "--output"])
        .arg(&units));
    let drop_in =
        std::fs::read_to_string(units.join("backup@b2.service.d/backupctl.conf")).unwrap();
    assert!(
        drop_in.contains("EnvironmentFile=/etc/backupctl/b2.env"),
        "{drop_in}"
    );
    let timer = std::fs::read_to_string(units.join("backup-job.timer")).unwrap();
    assert!(
        timer.contains("RandomizedDelaySec=1h")
            && timer.contains("Persistent=true")
            && timer.contains("FixedRandomDelay=true"),
        "{timer}"
    );
}

/// The ```nix blocks of the README's NixOS section.
fn readme_nix_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("\n## NixOS\n")
        .nth(1)
        .expect("README.md has a `## NixOS` section");
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```nix\n")
        .skip(1)
        .map(|block| block.split("\n```").next().unwrap().to_string())
        .collect()
}

/// The README's NixOS example as a user pastes it: a configuration.nix beside a checkout
/// (`./backupctl`) that imports the module itself, evaluated with every assertion holding.
#[test]
fn the_readmes_nixos_example_evaluates_as_pasted() {
    let blocks = readme_nix_blocks();
    assert!(
        !blocks.is_empty(),
        "no ```nix block in the README's NixOS section"
    );
    for block in blocks {
        let dir = tempdir();
        let dir = dir.path();
        std::os::unix::fs::symlink(repo_root(), dir.join("backupctl")).unwrap();
        let packages = packages(&dir.join("pkgs"));
        // The block imports the module (`./backupctl/nix/module.nix`): the harness does not.
        let evaluated = evaluate_with(dir, &packages, &block, &["--arg", "module", "false"]);
        assert_eq!(assertions(&evaluated), "", "{block}\n{evaluated:#}");
        assert!(
            evaluated["settings"]["stage"]
                .as_object()
                .is_some_and(|s| !s.is_empty()),
            "{block}\n{evaluated:#}"
        );
    }
}

/// `hello`'s hint for a missing tool on NixOS (`/etc/NIXOS`, made here in a private mount
/// namespace over an overlay of /etc): not "apt install", but the module's extraPackages.
#[test]
fn hellos_missing_tool_hint_on_nixos_names_extra_packages() {
    require_tool("unshare");
    let dir = tempdir();
    let dir = dir.path();
    let config = crate::util::write_config(
        dir,
        "[stage.copy]\nkind = \"rsync\"\nsources = [\"@ROOT@/src/\"]\ndestination = \"@ROOT@/dst/\"\n",
    );
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::create_dir_all(dir.join("overlay")).unwrap();
    let hello = |nixos: bool| {
        let mut script = String::from("set -e\n");
        if nixos {
            script.push_str(
                "mount -t tmpfs tmpfs \"$OVERLAY\"\nmkdir \"$OVERLAY/u\" \"$OVERLAY/w\"\n\
                 mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$OVERLAY/u,workdir=$OVERLAY/w\" /etc\n\
                 touch /etc/NIXOS\n",
            );
        }
        script.push_str("exec env PATH=\"$EMPTY\" \"$BACKUPCTL\" --config \"$CONFIG\" hello\n");
        let output = run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("OVERLAY", dir.join("overlay"))
            .env("EMPTY", dir.join("empty"))
            .env("BACKUPCTL", backupctl_path())
            .env("CONFIG", &config)
            .env_remove("BACKUPCTL_CONFIG"));
        format!("{}{}", stdout(&output), stderr(&output))
    };
    let text = hello(true);
    assert!(
        text.contains("rsync")
            && text.contains("services.backupctl.extraPackages")
            && !text.contains("apt install"),
        "{text}"
    );
    let text = hello(false);
    assert!(text.contains("apt install rsync"), "{text}");
}

/// The database kinds' keys are typed options, rendered under the loader's names; a value
/// of the wrong type (a `format` pg_dump has not) is refused when the module is evaluated.
#[test]
fn database_stage_options_are_typed_and_render_as_the_loaders_keys() {
    let dir = tempdir();
    let dir = dir.path();
    let packages = packages(&dir.join("pkgs"));
    let config = |format: &str| {
        format!(
            r#"{{ services.backupctl = {{
      enable = true;
      settings.job.schedule = "daily";
      stages = [
        {{ name = "repo"; kind = "restic"; repository = "/srv/restic";
           password_file = "/etc/backupctl/restic-password"; operation = "check"; }}
        {{ name = "pg"; kind = "postgresql"; host = "/run/postgresql"; port = 5433;
           databases = [ "shop" ]; exclude_databases = [ ]; username = "backup";
           password_credential = "/etc/backupctl/pg-password"; maintenance_database = "postgres";
           format = "{format}"; globals = false; restic = "repo";
           checks = [ "SELECT count(*) FROM orders" ]; }}
        {{ name = "pgdir"; kind = "postgresql"; format = "directory"; jobs = 4;
           directory = "/var/backups/postgresql"; }}
        {{ name = "db"; kind = "mysql"; host = "/run/mysqld/mysqld.sock"; directory = "/var/backups/mysql"; }}
        {{ name = "notes"; kind = "sqlite"; databases = [ "/var/lib/app/app.db" ]; restic = "repo"; }}
      ];
    }}; }}"#
        )
    };
    let evaluated = evaluate(dir, &packages, &config("custom"));
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let pg = &evaluated["settings"]["stage"]["pg"];
    assert_eq!(pg["port"], 5433, "{pg:#}");
    assert_eq!(pg["format"], "custom", "{pg:#}");
    assert_eq!(pg["globals"], false, "{pg:#}");
    assert_eq!(pg["restic"], "repo", "{pg:#}");
    assert_eq!(
        pg["password_credential"], "/etc/backupctl/pg-password",
        "{pg:#}"
    );
    assert_eq!(
        pg["checks"],
        serde_json::json!(["SELECT count(*) FROM orders"]),
        "{pg:#}"
    );
    assert_eq!(evaluated["settings"]["stage"]["pgdir"]["jobs"], 4);
    assert_eq!(
        evaluated["settings"]["stage"]["notes"]["databases"],
        serde_json::json!(["/var/lib/app/app.db"])
    );
    // The kinds' client tools are on the units' PATH.
    let path = evaluated["unitPath"].to_string();
    for package in ["postgresql", "mariadb", "sqlite"] {
        let bin = dir.join("pkgs").join(package).join("bin");
        assert!(
            path.contains(&bin.display().to_string()),
            "{package}: {path}"
        );
    }
    // Unset options are not rendered (the loader's defaults apply).
    assert!(evaluated["settings"]["stage"]["db"].get("port").is_none());

    let file = dir.join("configuration.nix");
    write(&file, config("zip"));
    let refused = run(Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo_root().join("tests/nix/eval.nix"))
        .arg("--arg")
        .arg("lib")
        .arg(nixpkgs_lib())
        .args(["--arg", "dirs", &packages])
        .arg("--arg")
        .arg("config")
        .arg(&file));
    assert!(!refused.status.success(), "format = \"zip\" was accepted");
    let said = stderr(&refused);
    assert!(said.contains("format"), "{said}");
}

/// The limit options (job, stage, slice) render as the loader's keys, nulls left out.
#[test]
fn limit_options_render_as_the_loaders_keys() {
    let evaluated = evaluate_in_scratch(
        &[],
        r#"{ services.backupctl = {
              enable = true;
              settings.job = { schedule = "daily"; memory_high = "1G"; tasks_max = 256; };
              settings.slice.memory_max = "50%";
              stages = [
                { name = "home"; kind = "rsync"; sources = [ "/home/" ]; destination = "/data/";
                  memory_max = "2G"; io_write_bandwidth = { "/data" = "20M"; }; }
              ];
            }; }"#,
    );
    assert_eq!(assertions(&evaluated), "", "{evaluated:#}");
    let settings = &evaluated["settings"];
    assert_eq!(settings["job"]["memory_high"], "1G", "{settings:#}");
    assert_eq!(settings["job"]["tasks_max"], 256, "{settings:#}");
    assert_eq!(
        settings["slice"],
        serde_json::json!({ "memory_max": "50%" })
    );
    let stage = &settings["stage"]["home"];
    assert_eq!(stage["memory_max"], "2G", "{stage:#}");
    assert_eq!(
        stage["io_write_bandwidth"],
        serde_json::json!({ "/data": "20M" })
    );
    assert!(
        stage.get("memory_high").is_none(),
        "a null left in {stage:#}"
    );
}
