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
        .arg(&file));
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
            }; }"#,
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
