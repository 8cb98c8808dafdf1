//! The Debian package (`scripts/package`, `[package.metadata.deb]` in Cargo.toml): every file
//! the README promises is in it (`dpkg-deb -c`), the maintainer scripts reload systemd and the
//! journal catalog only where they should, lintian finds nothing to object to, and unpacked
//! into a throwaway root the generator symlinks lead to the binary and generate units.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::util::{backupctl, debian_package, ok, repo_root, require_tool, tempdir, write};

/// One entry of `dpkg-deb -c`: its `ls -l` style mode and, for a symlink, where it points.
struct Entry {
    mode: String,
    link: Option<String>,
}

/// `dpkg-deb -c PACKAGE` as path (`/usr/bin/backupctl`) → entry.
fn contents(package: &Path) -> BTreeMap<String, Entry> {
    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(package));
    listing
        .lines()
        .map(|line| {
            // drwxr-xr-x root/root 0 2026-01-01 00:00 ./usr/bin/  (or: ./a -> b)
            let fields: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
            let fields: Vec<&str> = fields.into_iter().filter(|f| !f.is_empty()).collect();
            let rest = line
                .split_once(" ./")
                .map(|(_, rest)| rest)
                .unwrap_or_else(|| panic!("unexpected dpkg-deb -c line: {line}"));
            let (path, link) = match rest.split_once(" -> ") {
                Some((path, link)) => (path, Some(link.to_string())),
                None => (rest, None),
            };
            let path = format!("/{}", path.trim_end_matches('/'));
            let mode = fields[0].to_string();
            (path, Entry { mode, link })
        })
        .collect()
}

/// The files the package must hold: the binary, generators, catalog, D-Bus policy, Prometheus
/// rules, a man page for each page `backupctl man --dir` writes, the completions, the example
/// configs.
fn expected_files() -> Vec<String> {
    let mut files: Vec<String> = [
        "/usr/bin/backupctl",
        "/usr/lib/systemd/system-generators/backupctl-generator",
        "/usr/lib/systemd/user-generators/backupctl-generator",
        "/usr/lib/systemd/catalog/backupctl.catalog",
        "/usr/share/dbus-1/system.d/io.github.backupctl.conf",
        "/usr/share/backupctl/backupctl.rules.yml",
        "/usr/share/bash-completion/completions/backupctl",
        "/usr/share/zsh/vendor-completions/_backupctl",
        "/usr/share/fish/vendor_completions.d/backupctl.fish",
        "/usr/share/doc/backupctl/copyright",
    ]
    .map(String::from)
    .to_vec();
    let temp = tempdir();
    let man = temp.path().join("man1");
    ok(backupctl().arg("man").arg("--dir").arg(&man));
    for page in std::fs::read_dir(&man).unwrap() {
        let name = page.unwrap().file_name().into_string().unwrap();
        let section = name.rsplit('.').next().unwrap();
        files.push(format!("/usr/share/man/man{section}/{name}.gz"));
    }
    for example in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let name = example.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".toml") {
            files.push(format!("/usr/share/doc/backupctl/examples/{name}"));
        }
    }
    files
}

#[test]
fn package_holds_every_file() {
    let package = debian_package();
    let contents = contents(&package);
    let listing = contents.keys().cloned().collect::<Vec<_>>().join("\n");
    let missing: Vec<String> = expected_files()
        .into_iter()
        .filter(|f| !contents.contains_key(f))
        .collect();
    assert!(
        missing.is_empty(),
        "{} lacks:\n{}\nit holds:\n{listing}",
        package.display(),
        missing.join("\n")
    );
    assert!(
        contents
            .keys()
            .any(|f| f == "/usr/share/man/man1/backupctl-store-init.1.gz"),
        "no page for a nested subcommand:\n{listing}"
    );
    assert!(
        contents.contains_key("/usr/share/man/man5/backupctl.toml.5.gz"),
        "no page for the config file:\n{listing}"
    );
    let binary = &contents["/usr/bin/backupctl"];
    assert_eq!(binary.mode, "-rwxr-xr-x", "mode of /usr/bin/backupctl");
    for scope in ["system", "user"] {
        let generator =
            &contents[&format!("/usr/lib/systemd/{scope}-generators/backupctl-generator")];
        assert!(
            generator.mode.starts_with('l') && generator.link.is_some(),
            "the {scope} generator is not a symlink ({})",
            generator.mode
        );
    }
    // Nothing in /etc: a package's files there would be conffiles, and the config is the
    // admin's (the examples are under /usr/share/doc).
    assert!(
        !contents.keys().any(|f| f.starts_with("/etc/")),
        "files in /etc:\n{listing}"
    );
}

#[test]
fn package_control_and_maintainer_scripts() {
    let package = debian_package();
    let field = |name: &str| {
        ok(Command::new("dpkg-deb").arg("-f").arg(&package).arg(name))
            .trim()
            .to_string()
    };
    assert_eq!(field("Package"), "backupctl");
    assert!(
        field("Version").starts_with(env!("CARGO_PKG_VERSION")),
        "Version {} is not Cargo.toml's {}",
        field("Version"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        field("Depends").contains("libc6"),
        "Depends: {}",
        field("Depends")
    );

    let temp = tempdir();
    let control = temp.path().join("DEBIAN");
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&package)
        .arg(&control));
    for (script, action) in [("postinst", "configure"), ("postrm", "remove")] {
        let path = control.join(script);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the package has no {script}: {e}"));
        ok(Command::new("sh").arg("-n").arg(&path));
        for expected in [
            action,
            "[ -d /run/systemd/system ]",
            "systemctl --system daemon-reload",
            "journalctl",
            "--update-catalog",
        ] {
            assert!(
                text.contains(expected),
                "{script} lacks `{expected}`:\n{text}"
            );
        }
        assert!(
            !text.contains("#DEBHELPER#"),
            "cargo-deb left the #DEBHELPER# token in {script}"
        );
    }
}

/// lintian's verdict: no error and no warning. Informational tags are printed, not fatal.
#[test]
fn package_passes_lintian() {
    require_tool("lintian");
    let package = debian_package();
    let output = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
        .arg(&package)
        .output()
        .expect("lintian runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "lintian objects to {} ({}):\n{report}{}",
        package.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    if !report.trim().is_empty() {
        eprintln!("lintian (informational):\n{report}");
    }
}

/// Unpacked into a throwaway root (`dpkg-deb -x`): both generators resolve to the packaged
/// binary, and called as systemd calls them they write the units of a config, the user one in
/// user scope (it knows its scope from the directory it was called through).
#[test]
fn package_generators_lead_to_the_binary() {
    let package = debian_package();
    let temp = tempdir();
    let root = temp.path().join("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(&package).arg(&root));
    let binary = root.join("usr/bin/backupctl").canonicalize().unwrap();
    let config = temp.path().join("config.toml");
    write(
        &config,
        "[job]\nschedule = \"daily\"\n\n[stage.hello]\nkind = \"hello\"\n",
    );
    for scope in ["system", "user"] {
        let generator = root.join(format!(
            "usr/lib/systemd/{scope}-generators/backupctl-generator"
        ));
        let link = std::fs::read_link(&generator).unwrap();
        assert!(
            link.is_relative(),
            "the {scope} generator links to {link:?}: Debian wants a relative link"
        );
        assert_eq!(
            generator.canonicalize().unwrap(),
            binary,
            "the {scope} generator does not resolve to /usr/bin/backupctl"
        );
        let out = temp.path().join(format!("{scope}-units"));
        std::fs::create_dir_all(&out).unwrap();
        ok(Command::new(&generator)
            .args([&out, &out, &out])
            .env("BACKUPCTL_CONFIG", &config)
            .env_remove("SYSTEMD_SCOPE"));
        let service = std::fs::read_to_string(out.join("backup-job.service"))
            .unwrap_or_else(|e| panic!("the {scope} generator wrote no backup-job.service: {e}"));
        assert!(
            service.contains("Requires=backup@hello.service"),
            "{service}"
        );
        let stage = std::fs::read_to_string(out.join("backup@.service")).unwrap();
        assert!(
            stage.contains(&format!("ExecStart={}", binary.display())),
            "the stage unit does not run the packaged binary:\n{stage}"
        );
        assert_eq!(
            stage.contains("--user"),
            scope == "user",
            "the {scope} generator wrote units of the wrong scope:\n{stage}"
        );
    }
}
