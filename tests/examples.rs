//! Every config shipped in `examples/` is valid (`backupctl check`), so the documentation
//! cannot drift from what the loader accepts.

use crate::util::{backupctl, ok, repo_root};

#[test]
fn every_example_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            ok(backupctl().arg("--config").arg(&path).arg("check"));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example configs found");
}
