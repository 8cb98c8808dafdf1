//! The ssh command line a stage hands to another program as one string: rsync's `--rsh`
//! and git's `GIT_SSH_COMMAND`. Each program re-splits that string by its own rules, so every
//! config value in it (the key path, the `-o` options) is quoted for exactly that splitter;
//! otherwise a `'` in a value would end the quoting and add words to ssh's argv.

use std::path::Path;

/// Who splits the command line again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Splitter {
    /// rsync's own splitter for `-e`/`--rsh` (main.c, `do_cmd`): words are separated by
    /// spaces only; `'…'` and `"…"` quote, and inside them the quote character doubled
    /// (`''`) stands for itself. Backslash has no meaning.
    Rsync,
    /// `sh -c`, which git uses for `GIT_SSH_COMMAND`.
    Shell,
}

impl Splitter {
    /// One word, quoted so that the splitter gives back exactly `word`.
    pub fn quote(self, word: &str) -> String {
        match self {
            Splitter::Rsync => format!("'{}'", word.replace('\'', "''")),
            Splitter::Shell => format!("'{}'", word.replace('\'', "'\\''")),
        }
    }
}

/// `ssh -o BatchMode=yes [-i KEY] [-o OPTION]…`, quoted for `splitter`.
pub fn command(splitter: Splitter, key: Option<&Path>, options: &[String]) -> String {
    let mut ssh = String::from("ssh -o BatchMode=yes");
    if let Some(key) = key {
        ssh.push_str(" -i ");
        ssh.push_str(&splitter.quote(&key.to_string_lossy()));
    }
    for option in options {
        ssh.push_str(" -o ");
        ssh.push_str(&splitter.quote(option));
    }
    ssh
}

/// Values that end, nest or double the quoting, and characters the splitters care about.
#[cfg(test)]
pub(crate) const HOSTILE: &[&str] = &[
    "Port=2222",
    "it's",
    "'",
    "''",
    "x' -oProxyCommand=touch /pwned '",
    "a\"b",
    "\"",
    "a b  c",
    "back\\slash\\",
    "$HOME `id` $(id) ; | &",
    "tab\there",
    "",
];

/// A directory under target/tmp (stages cannot see /tmp) holding a fake `ssh` that writes
/// its argv, one `[word]` a line, to `argv` next to it, then fails.
#[cfg(test)]
pub(crate) fn fake_ssh() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&base).expect("target/tmp");
    let dir = tempfile::Builder::new()
        .prefix("fake-ssh-")
        .tempdir_in(base)
        .expect("scratch directory");
    let ssh = dir.path().join("ssh");
    std::fs::write(
        &ssh,
        "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done > \"$(dirname \"$0\")/argv\"\nexit 1\n",
    )
    .expect("write fake ssh");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// The words the fake ssh saw, up to the host (ssh's own options).
#[cfg(test)]
pub(crate) fn ssh_options_seen(dir: &Path, host: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("argv"))
        .expect("the fake ssh did not run: the program refused the ssh command line it was given");
    text.lines()
        .map(|line| {
            line.strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .unwrap_or(line)
                .to_string()
        })
        .take_while(|word| word != host)
        .collect()
}

/// PATH with the fake ssh first.
#[cfg(test)]
pub(crate) fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_sh() {
        let ssh = command(Splitter::Shell, Some(Path::new("/k/it's")), &[]);
        let script = format!("for a in {ssh}; do printf '[%s]' \"$a\"; done");
        let output = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "[ssh][-o][BatchMode=yes][-i][/k/it's]"
        );
        for word in HOSTILE {
            let script = format!("printf '[%s]' {}", Splitter::Shell.quote(word));
            let output = std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&output.stdout), format!("[{word}]"));
        }
    }
}
