//! Golden files: output pinned in the repository and compared byte for byte.
//!
//! One layout for every golden set: `tests/generate/CASE/` holds the input, `config.toml`
//! (a symlink when the input is a shipped example, so the example is what is pinned), an
//! optional `args` file of extra global arguments (`--user`), and `expected/`, the output
//! tree exactly as it is on disk (drop-ins in their `.d` directories, symlinks as symlinks).
//! Paths are written with the [`placeholder`](super::placeholder) `@ROOT@`.
//!
//! With `BLESS` set in the environment the comparisons rewrite the golden files instead of
//! failing; review the diff (`git diff tests/`) before committing it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{backupctl, ok, placeholder, repo_root, tempdir, write};

/// Whether this run rewrites golden files (`BLESS` is set) instead of comparing with them.
pub fn blessing() -> bool {
    std::env::var_os("BLESS").is_some()
}

/// The directory of the golden case `name`.
pub fn case(name: &str) -> PathBuf {
    repo_root().join("tests/generate").join(name)
}

/// Every golden case, sorted.
pub fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/generate"))
        .expect("tests/generate exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The extra global arguments of a case (its `args` file, whitespace-separated).
pub fn args(case: &Path) -> Vec<String> {
    std::fs::read_to_string(case.join("args"))
        .map(|text| text.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// `backupctl [ARGS] --config CASE/config.toml generate --binary BINARY --output OUTPUT`.
pub fn generate(case: &Path, binary: &Path, output: &Path) {
    ok(backupctl()
        .arg("--config")
        .arg(case.join("config.toml"))
        .args(args(case))
        .arg("generate")
        .arg("--binary")
        .arg(binary)
        .arg("--output")
        .arg(output));
}

/// Generates the units of `case` (for `/usr/bin/backupctl`) and compares them with its
/// `expected/` tree, with the case's directory as `@ROOT@`; see [`assert_dir`].
#[track_caller]
pub fn assert_generated(case: &Path) {
    let out = tempdir();
    generate(case, Path::new("/usr/bin/backupctl"), out.path());
    assert_dir(case, out.path(), case);
}

/// Compares the tree `produced` with `CASE/expected/`, after replacing `root` in file
/// contents and symlink targets by `@ROOT@`; panics with `diff -ru` of the two. With
/// `BLESS` set, rewrites `expected/` first.
#[track_caller]
pub fn assert_dir(case: &Path, produced: &Path, root: &Path) {
    let expected = case.join("expected");
    let normalized = tempdir();
    copy_collapsed(produced, normalized.path(), root);
    if blessing() {
        let _ = std::fs::remove_dir_all(&expected);
        copy_collapsed(normalized.path(), &expected, Path::new(placeholder::ROOT));
    }
    let diff = Command::new("diff")
        .args(["-ru", "--no-dereference"])
        .arg(&expected)
        .arg(normalized.path())
        .output()
        .expect("run diff");
    assert!(
        diff.status.success(),
        "{} differs from the golden files (BLESS=1 rewrites them; then review the diff):\n{}{}",
        case.display(),
        String::from_utf8_lossy(&diff.stdout)
            .replace(&normalized.path().display().to_string(), "produced")
            .replace(&format!("{}/", repo_root().display()), ""),
        String::from_utf8_lossy(&diff.stderr)
    );
}

/// Compares `actual` with the golden file `expected` (which must exist unless blessing),
/// returning a message with both texts when they differ. With `BLESS` set, rewrites it
/// first. For corpora that collect every failure before failing once.
pub fn check_file(expected: &Path, actual: &str) -> Result<(), String> {
    if blessing() {
        write(expected, actual);
    }
    let golden = std::fs::read_to_string(expected)
        .map_err(|e| format!("{}: {e} (BLESS=1 writes it)", expected.display()))?;
    if golden == actual {
        return Ok(());
    }
    Err(format!(
        "{} differs (BLESS=1 rewrites it):\n--- expected\n{golden}\n--- actual\n{actual}",
        expected.display()
    ))
}

/// Copies the tree `from` into `to` with `root` collapsed to `@ROOT@`.
fn copy_collapsed(from: &Path, to: &Path, root: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let target = to.join(path.file_name().unwrap());
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(&path).unwrap();
            let link = placeholder::collapse(&link.display().to_string(), root);
            std::os::unix::fs::symlink(link, &target).unwrap();
        } else if meta.is_dir() {
            copy_collapsed(&path, &target, root);
        } else {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            write(&target, placeholder::collapse(&text, root));
        }
    }
}
