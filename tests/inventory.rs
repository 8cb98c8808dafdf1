//! The `gitrepos` and `manifest` stages and `backupctl verify`, on generated trees: every
//! repository state classified, every kind of tree change detected, manifests stable.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::{backupctl, ok, require_tool, run, stderr, stdout, tempdir, write};

/// `git` with a fixed identity and no user config, so the tests do not depend on the machine.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "protocol.file.allow=always",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.org")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.org")
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A stage run through `run --here`, with its state directory under `home`.
fn run_stage(home: &Path, config: &str) -> std::process::Output {
    let file = home.join("config.toml");
    write(&file, config);
    run(backupctl()
        .arg("--config")
        .arg(&file)
        .args(["--user", "run", "--here"])
        .env("STATE_DIRECTORY", home.join("state/backupctl")))
}

#[track_caller]
fn run_ok(home: &Path, config: &str) {
    let output = run_stage(home, config);
    assert!(
        output.status.success(),
        "run --here failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
}

/// Builds one repository in each state under `root/`, with their upstream in `upstream.git`.
fn repositories(root: &Path) {
    let base = root.parent().unwrap();
    let seed = base.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q"]);
    write(&seed.join("tracked.txt"), "one\n");
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-qm", "first"]);
    git(base, &["clone", "-q", "--bare", "seed", "upstream.git"]);
    let upstream = base.join("upstream.git");
    let clone = |name: &str| -> PathBuf {
        git(root, &["clone", "-q", upstream.to_str().unwrap(), name]);
        root.join(name)
    };

    clone("clean");
    let ahead = clone("ahead");
    write(&ahead.join("tracked.txt"), "two\n");
    git(&ahead, &["commit", "-qam", "local work"]);
    let behind = clone("behind");
    // Someone else pushes; `behind` fetches but does not merge.
    let other = clone("other-pusher");
    write(&other.join("more.txt"), "more\n");
    git(&other, &["add", "."]);
    git(&other, &["commit", "-qm", "second"]);
    git(&other, &["push", "-q"]);
    git(&behind, &["fetch", "-q"]);
    git(&other, &["fetch", "-q"]);
    let modified = clone("modified");
    write(&modified.join("tracked.txt"), "changed\n");
    let staged = clone("staged");
    write(&staged.join("added.txt"), "new\n");
    git(&staged, &["add", "added.txt"]);
    let untracked = clone("untracked");
    write(&untracked.join("loose.txt"), "loose\n");
    write(&untracked.join(".gitignore"), "ignored.txt\n.gitignore\n");
    write(&untracked.join("ignored.txt"), "ignored\n");
    let stashed = clone("stashed");
    write(&stashed.join("tracked.txt"), "stash me\n");
    git(&stashed, &["stash", "-q"]);
    let detached = clone("detached");
    git(&detached, &["checkout", "-q", "--detach", "HEAD"]);
    let unpushed_branch = clone("unpushed-branch");
    git(&unpushed_branch, &["checkout", "-qb", "topic"]);
    git(
        &unpushed_branch,
        &["commit", "-q", "--allow-empty", "-m", "topic work"],
    );
    git(&unpushed_branch, &["checkout", "-q", "main"]);
    let local = root.join("local-only");
    std::fs::create_dir_all(&local).unwrap();
    git(&local, &["init", "-q"]);
    git(&local, &["commit", "-q", "--allow-empty", "-m", "mine"]);
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q"]);
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            upstream.to_str().unwrap(),
            "bare.git",
        ],
    );
    let superproject = clone("superproject");
    git(
        &superproject,
        &["submodule", "add", "-q", upstream.to_str().unwrap(), "sub"],
    );
    git(&superproject, &["commit", "-qm", "add submodule"]);
    let with_worktree = clone("with-worktree");
    git(
        &with_worktree,
        &["worktree", "add", "-q", "../linked", "-b", "linked"],
    );
    // Excluded by the stage's `exclude`: never reported.
    let hidden = root.join("skipme/hidden");
    std::fs::create_dir_all(&hidden).unwrap();
    git(&hidden, &["init", "-q"]);
}

fn by_path<'a>(report: &'a Value, root: &Path, name: &str) -> &'a Value {
    let path = root.join(name).display().to_string();
    report["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == path.as_str())
        .unwrap_or_else(|| panic!("{name} not in the report: {report:#}"))
}

#[test]
fn gitrepos_classifies_every_repository_state() {
    require_tool("git");
    let home = tempdir();
    let root = home.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    repositories(&root);
    let out = home.path().join("out");
    run_ok(
        home.path(),
        &format!(
            "[stage.repos]\nkind = \"gitrepos\"\nroots = [{root:?}]\noutput = {out:?}\n\
             exclude = [\"skipme\"]\nexclude_pushed = true\n"
        ),
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("repos.json")).unwrap()).unwrap();
    let repo = |name| by_path(&report, &root, name);
    let upstream = home.path().join("upstream.git").display().to_string();

    let clean = repo("clean");
    assert_eq!(clean["kind"], "worktree");
    assert_eq!(clean["remotes"][0]["name"], "origin");
    assert_eq!(clean["remotes"][0]["url"], upstream.as_str());
    assert_eq!(clean["branch"], "main");
    assert_eq!(
        clean["head"],
        git(&root.join("clean"), &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(clean["upstream"], "origin/main");
    assert_eq!((&clean["ahead"], &clean["behind"]), (&0.into(), &0.into()));
    assert_eq!(clean["pushed"], true, "clean: {clean:#}");

    let ahead = repo("ahead");
    assert_eq!(ahead["ahead"], 1);
    assert_eq!(ahead["unpushed"], 1);
    assert_eq!(ahead["pushed"], false);

    let behind = repo("behind");
    assert_eq!(
        (&behind["ahead"], &behind["behind"]),
        (&0.into(), &1.into())
    );
    assert_eq!(behind["pushed"], true, "behind loses nothing: {behind:#}");

    let modified = repo("modified");
    assert_eq!(modified["uncommitted"], 1);
    assert_eq!(modified["untracked"], 0);
    assert_eq!(modified["pushed"], false);

    let staged = repo("staged");
    assert_eq!(staged["uncommitted"], 1);
    assert_eq!(staged["untracked"], 0);
    assert_eq!(staged["pushed"], false);

    let untracked = repo("untracked");
    assert_eq!(untracked["untracked"], 1, "ignored files do not count");
    assert_eq!(untracked["uncommitted"], 0);
    assert_eq!(untracked["pushed"], false);

    let stashed = repo("stashed");
    assert_eq!(stashed["stashes"], 1);
    assert_eq!(stashed["uncommitted"], 0);
    assert_eq!(stashed["pushed"], false);

    let detached = repo("detached");
    assert_eq!(detached["branch"], Value::Null);
    assert_eq!(
        detached["head"],
        git(&root.join("detached"), &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(detached["pushed"], true);

    let topic = repo("unpushed-branch");
    assert_eq!(topic["branch"], "main");
    assert_eq!(topic["ahead"], 0);
    assert_eq!(topic["unpushed"], 1, "a commit on another local branch");
    assert_eq!(topic["pushed"], false);

    let local = repo("local-only");
    assert_eq!(local["remotes"], Value::Array(vec![]));
    assert_eq!(local["unpushed"], 1);
    assert_eq!(local["pushed"], false);

    let empty = repo("empty");
    assert_eq!(empty["head"], Value::Null);
    assert_eq!(empty["branch"], "main");
    assert_eq!(empty["pushed"], false);

    let bare = repo("bare.git");
    assert_eq!(bare["kind"], "bare");
    assert_eq!(bare["remotes"][0]["url"], upstream.as_str());
    // A bare clone has no remote-tracking branches: nothing proves its commits are elsewhere.
    assert_eq!(bare["pushed"], false, "bare: {bare:#}");

    let superproject = repo("superproject");
    assert_eq!(superproject["kind"], "worktree");
    // Committed locally only: the submodule's addition is not pushed.
    assert_eq!(superproject["unpushed"], 1);
    let sub = repo("superproject/sub");
    assert_eq!(sub["kind"], "submodule");
    assert!(
        sub["git_dir"]
            .as_str()
            .unwrap()
            .ends_with("superproject/.git/modules/sub"),
        "{sub:#}"
    );

    let with_worktree = repo("with-worktree");
    assert_eq!(with_worktree["linked_worktrees"], 1);
    assert_eq!(
        with_worktree["pushed"], false,
        "linked worktrees keep state in .git"
    );
    assert_eq!(repo("linked")["kind"], "linked-worktree");

    let paths: Vec<&str> = report["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert!(
        !paths.iter().any(|p| p.contains("skipme")),
        "excluded: {paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("/.git")),
        "never inside .git: {paths:?}"
    );

    // The exclude file: exactly the pushed, clean repositories' git directories.
    let excludes = std::fs::read_to_string(out.join("exclude-pushed.txt")).unwrap();
    let mut listed: Vec<&str> = excludes.lines().filter(|l| !l.starts_with('#')).collect();
    listed.sort();
    let expect = |name: &str| root.join(name).display().to_string();
    assert_eq!(
        listed,
        [
            expect("behind/.git"),
            expect("clean/.git"),
            expect("detached/.git"),
            expect("other-pusher/.git"),
        ]
    );
}

#[test]
fn restore_script_clones_repositories_back() {
    require_tool("git");
    let home = tempdir();
    let root = home.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    repositories(&root);
    let out = home.path().join("out");
    run_ok(
        home.path(),
        &format!(
            "[stage.repos]\nkind = \"gitrepos\"\nroots = [{root:?}]\noutput = {out:?}\n\
             exclude = [\"skipme\"]\n"
        ),
    );
    let script = out.join("restore-repos.sh");
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o111,
        0o111
    );
    // A restore without the git directories (what exclude-pushed.txt leaves out) ...
    let prefix = home.path().join("restored");
    let restored_clean = prefix.join(root.strip_prefix("/").unwrap()).join("clean");
    std::fs::create_dir_all(&restored_clean).unwrap();
    std::fs::copy(
        root.join("clean/tracked.txt"),
        restored_clean.join("tracked.txt"),
    )
    .unwrap();
    let output = run(Command::new("sh")
        .arg(&script)
        .arg(&prefix)
        .env("GIT_CONFIG_GLOBAL", "/dev/null"));
    assert!(
        output.status.success(),
        "restore-repos.sh failed:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
    // ... gets its history back under the restored files, clean.
    assert_eq!(git(&restored_clean, &["status", "--porcelain"]), "");
    for name in ["clean", "ahead", "detached", "behind"] {
        let restored = prefix.join(root.strip_prefix("/").unwrap()).join(name);
        assert!(restored.join(".git").exists(), "{name} was not restored");
    }
    let restored = |name: &str| prefix.join(root.strip_prefix("/").unwrap()).join(name);
    assert_eq!(
        git(&restored("clean"), &["rev-parse", "HEAD"]),
        git(&root.join("clean"), &["rev-parse", "HEAD"])
    );
    assert_eq!(
        git(&restored("detached"), &["rev-parse", "HEAD"]),
        git(&root.join("detached"), &["rev-parse", "HEAD"])
    );
    assert!(restored("bare.git").join("HEAD").is_file());
    assert!(
        !restored("local-only").exists(),
        "no remote, nothing to clone"
    );
}

/// A small tree with every entry type and a name that is not UTF-8.
fn sample_tree(root: &Path) {
    write(&root.join("a.txt"), "alpha\n");
    write(&root.join("dir/b.bin"), vec![7u8; 100_000]);
    write(&root.join("dir/deeper/c"), "c\n");
    write(&root.join("big"), vec![1u8; 5 << 20]);
    write(&root.join("keep.tmp"), "excluded\n");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    let odd = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    write(&odd, "latin-1 name\n");
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
}

fn manifest_config(source: &Path, out: &Path) -> String {
    format!(
        "[stage.files]\nkind = \"manifest\"\nsources = [{source:?}]\noutput = {out:?}\n\
         exclude = [\"*.tmp\"]\n"
    )
}

/// The one manifest a single-source stage wrote.
fn manifest_file(out: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "manifest"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// `verify`'s exit code and the lines it printed.
fn verify(manifest: &Path, dir: &Path, extra: &[&str]) -> (i32, Vec<String>) {
    let output = run(backupctl()
        .arg("verify")
        .arg("--manifest")
        .arg(manifest)
        .arg(dir)
        .args(extra));
    (
        output.status.code().unwrap_or(-1),
        stdout(&output).lines().map(String::from).collect(),
    )
}

/// A copy that keeps modes and times (what a faithful restore gives).
fn copy_tree(from: &Path, to: &Path) {
    ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn manifest_is_stable_and_verify_detects_each_change() {
    let home = tempdir();
    let source = home.path().join("tree");
    sample_tree(&source);
    let out = home.path().join("out");
    let config = manifest_config(&source, &out);
    run_ok(home.path(), &config);
    let file = manifest_file(&out);
    let first = std::fs::read(&file).unwrap();
    run_ok(home.path(), &config);
    assert_eq!(
        first,
        std::fs::read(&file).unwrap(),
        "manifest not byte-identical on an unchanged tree"
    );

    // Listed contents: excludes honoured, raw names kept.
    let listing = ok(backupctl().arg("verify").arg("--manifest").arg(&file));
    assert!(listing.contains(" caf\\xe9\n"), "{listing}");
    assert!(listing.contains("-> a.txt link"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("p ") && l.ends_with(" fifo"))
    );
    assert!(!listing.contains("keep.tmp"), "{listing}");

    let copy = |name: &str| {
        let dir = home.path().join(name);
        copy_tree(&source, &dir);
        std::fs::remove_file(dir.join("keep.tmp")).unwrap();
        // Removing it changed the root's mtime; a faithful restore would not have it at all.
        ok(Command::new("touch").arg("-r").arg(&source).arg(&dir));
        dir
    };
    let same = copy("same");
    assert_eq!(verify(&file, &same, &[]), (0, vec![]));

    // One changed byte, same size and mtime: only the hash can tell.
    let byte = copy("byte");
    let target = byte.join("dir/b.bin");
    let times = std::fs::metadata(&target).unwrap().modified().unwrap();
    let mut data = std::fs::read(&target).unwrap();
    data[50_000] ^= 1;
    std::fs::write(&target, data).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&target)
        .unwrap()
        .set_modified(times)
        .unwrap();
    assert_eq!(
        verify(&file, &byte, &[]),
        (1, vec!["M dir/b.bin (content)".to_string()])
    );

    let mode = copy("mode");
    std::fs::set_permissions(mode.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        verify(&file, &mode, &[]),
        (1, vec!["M a.txt (mode 0644 -> 0600)".to_string()])
    );

    let new = copy("new");
    write(&new.join("dir/deeper/new.txt"), "new\n");
    let (code, lines) = verify(&file, &new, &["--ignore", "dir-mtime"]);
    assert_eq!((code, lines), (1, vec!["+ dir/deeper/new.txt".to_string()]));

    let deleted = copy("deleted");
    std::fs::remove_file(deleted.join("dir/deeper/c")).unwrap();
    let (code, lines) = verify(&file, &deleted, &["--ignore", "dir-mtime"]);
    assert_eq!((code, lines), (1, vec!["- dir/deeper/c".to_string()]));

    let renamed = copy("renamed");
    std::fs::rename(renamed.join("a.txt"), renamed.join("dir/a-moved.txt")).unwrap();
    // The symlink still points at a.txt, which is fine: it is compared as a link.
    let (code, lines) = verify(&file, &renamed, &["--ignore", "dir-mtime"]);
    assert_eq!(
        (code, lines),
        (1, vec!["R a.txt -> dir/a-moved.txt".to_string()])
    );

    // Directory mtimes are compared unless told otherwise.
    let (code, lines) = verify(&file, &new, &[]);
    assert_eq!(code, 1);
    assert!(
        lines.contains(&"M dir/deeper (mtime)".to_string()),
        "{lines:?}"
    );
}

/// Levels of [`deep_tree`], each a 200-byte name: 8 KiB of path, twice PATH_MAX.
const DEEP_LEVELS: usize = 40;

/// The name of level `level` of [`deep_tree`].
fn deep_name(level: usize) -> String {
    format!("{level:02}{}", "d".repeat(198))
}

/// `root/` holding [`DEEP_LEVELS`] nested directories and, at the bottom, `a.txt`,
/// `bottom.bin` and `link -> a.txt`. Built relative to open directories: the full paths are
/// longer than the kernel takes.
fn deep_tree(root: &Path) {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, mkdirat};
    std::fs::create_dir(root).unwrap();
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
    let mut dir = nix::fcntl::open(root, dir_flags, Mode::empty()).unwrap();
    for level in 0..DEEP_LEVELS {
        let name = deep_name(level);
        mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(&dir, name.as_str(), dir_flags, Mode::empty()).unwrap();
    }
    for (name, data) in [
        ("a.txt", b"at the bottom\n".to_vec()),
        ("bottom.bin", vec![3u8; 10_000]),
    ] {
        let file = openat(
            &dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        std::io::Write::write_all(&mut std::fs::File::from(file), &data).unwrap();
    }
    nix::unistd::symlinkat("a.txt", &dir, "link").unwrap();
}

/// The bug: `verify --manifest FILE DIR` with a relative DIR on a tree deeper than PATH_MAX
/// reported false differences: the walker opened directories and hashed files by their full
/// path, which the kernel refuses past 4096 bytes, and counted each failure as a difference.
#[test]
fn issue11_verify_reads_a_tree_deeper_than_path_max() {
    let home = tempdir();
    let source = home.path().join("deep");
    deep_tree(&source);
    let out = home.path().join("out");
    run_ok(home.path(), &manifest_config(&source, &out));
    let file = manifest_file(&out);

    // The manifest itself describes the whole tree, the bottom files with their real hashes.
    let bottom: String = (0..DEEP_LEVELS)
        .map(deep_name)
        .collect::<Vec<_>>()
        .join("/");
    let listing = ok(backupctl().arg("verify").arg("--manifest").arg(&file));
    let entries: Vec<&str> = listing.lines().skip(1).collect();
    assert_eq!(entries.len(), 1 + DEEP_LEVELS + 3, "{listing}");
    let hash = |data: &[u8]| blake3::hash(data).to_hex().to_string();
    let bottom_bin = format!(" {} {bottom}/bottom.bin", hash(&[3u8; 10_000]));
    assert!(
        entries.iter().any(|line| line.ends_with(&bottom_bin)),
        "the deepest file is listed with its hash:\n{listing}"
    );
    assert!(
        entries
            .iter()
            .any(|line| line.ends_with(&format!(" -> a.txt {bottom}/link"))),
        "the deepest symlink is listed with its target"
    );

    let verify_relative = || {
        let output = run(backupctl()
            .arg("verify")
            .arg("--manifest")
            .arg(&file)
            .arg("deep")
            .current_dir(home.path()));
        (
            output.status.code().unwrap_or(-1),
            stdout(&output)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>(),
            stderr(&output),
        )
    };
    let (code, lines, errors) = verify_relative();
    assert_eq!((code, lines), (0, vec![]), "{errors}");
    assert!(!errors.contains("warning"), "{errors}");
    assert_eq!(verify(&file, &source, &[]), (0, vec![]));

    // One byte of the deepest file flipped, size and mtime kept: exactly that is reported.
    let mut dir = nix::fcntl::open(
        &source,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    for level in 0..DEEP_LEVELS {
        dir = nix::fcntl::openat(
            &dir,
            deep_name(level).as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
    }
    let target = std::fs::File::from(
        nix::fcntl::openat(
            &dir,
            "bottom.bin",
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap(),
    );
    let times = target.metadata().unwrap().modified().unwrap();
    std::os::unix::fs::FileExt::write_all_at(&target, &[4u8], 5_000).unwrap();
    target.set_modified(times).unwrap();
    drop(target);
    let (code, lines, errors) = verify_relative();
    assert_eq!(
        (code, lines),
        (1, vec![format!("M {bottom}/bottom.bin (content)")]),
        "{errors}"
    );
}

#[test]
fn manifest_cache_skips_unchanged_files() {
    let home = tempdir();
    let source = home.path().join("tree");
    sample_tree(&source);
    // Files changed within two seconds of a run are not trusted to the cache (racy clean).
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let out = home.path().join("out");
    let config = manifest_config(&source, &out);
    run_ok(home.path(), &config);
    write(&source.join("dir/deeper/c"), "changed\n");
    run_ok(home.path(), &config);
    let records = crate::util::read_run_records(&home.path().join("state/backupctl/runs.jsonl"));
    let figures: Vec<Value> = records.iter().map(|r| r["figures"].clone()).collect();
    assert_eq!(figures.len(), 2, "{records:?}");
    // a.txt, b.bin, c, big, caf\xe9 (keep.tmp is excluded).
    assert_eq!(figures[0]["files"], 5);
    assert_eq!(
        figures[0]["files_changed"], 5,
        "first run hashes everything"
    );
    assert_eq!(figures[1]["files"], 5);
    assert_eq!(
        figures[1]["files_changed"], 1,
        "second run hashes only the changed file"
    );
    // And the result is the same as a run without a cache.
    let file = manifest_file(&out);
    assert_eq!(verify(&file, &source, &["--exclude", "*.tmp"]), (0, vec![]));
}

#[test]
fn verify_reports_unreadable_manifests() {
    let home = tempdir();
    let bad = home.path().join("bad.manifest");
    write(&bad, "not a manifest");
    let output = run(backupctl()
        .arg("verify")
        .arg("--manifest")
        .arg(&bad)
        .arg(home.path()));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not a backupctl manifest"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn exclude_file_leaves_pushed_git_dirs_out_of_restic_and_rsync() {
    require_tool("git");
    require_tool("restic");
    require_tool("rsync");
    let home = tempdir();
    let root = home.path().join("src");
    std::fs::create_dir_all(&root).unwrap();
    repositories(&root);
    let out = home.path().join("out");
    run_ok(
        home.path(),
        &format!(
            "[stage.repos]\nkind = \"gitrepos\"\nroots = [{root:?}]\noutput = {out:?}\n\
             exclude_pushed = true\n"
        ),
    );
    let excludes = out.join("exclude-pushed.txt");

    // restic: --exclude-file takes the file as it is.
    let repo = home.path().join("restic");
    let password = home.path().join("password");
    write(&password, "bench");
    let restic = || {
        let mut command = Command::new("restic");
        command
            .env("RESTIC_REPOSITORY", &repo)
            .env("RESTIC_PASSWORD_FILE", &password)
            .env("RESTIC_CACHE_DIR", home.path().join("cache"));
        command
    };
    ok(restic().args(["init", "--quiet"]));
    ok(restic()
        .args(["backup", "--quiet", "--exclude-file"])
        .arg(&excludes)
        .arg(&root));
    let listing = ok(restic().args(["ls", "latest"]));
    let has = |listing: &str, name: &str| {
        let path = root.join(name).display().to_string();
        listing.lines().any(|l| l == path)
    };
    assert!(!has(&listing, "clean/.git"), "restic kept clean/.git");
    assert!(has(&listing, "clean/tracked.txt"));
    assert!(
        has(&listing, "ahead/.git/HEAD"),
        "restic left out an unpushed repo"
    );

    // rsync: patterns are anchored at the transfer root, so keep full paths with --relative.
    let copy = home.path().join("copy");
    ok(Command::new("rsync")
        .args(["-a", "--relative"])
        .arg(format!("--exclude-from={}", excludes.display()))
        .arg(format!("{}/", root.display()))
        .arg(&copy));
    let copied = |name: &str| copy.join(root.strip_prefix("/").unwrap()).join(name);
    assert!(!copied("clean/.git").exists(), "rsync kept clean/.git");
    assert!(copied("clean/tracked.txt").is_file());
    assert!(copied("ahead/.git/HEAD").is_file());
}
