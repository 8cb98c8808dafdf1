//! How restic reaches a repository without a secret ever reaching argv, a unit file, the
//! journal or an error message: the repository and password are handed over as *file names*
//! (`RESTIC_REPOSITORY_FILE`, `RESTIC_PASSWORD_FILE`) or a command (`RESTIC_PASSWORD_COMMAND`),
//! backend keys (B2, S3) as environment variables read from files or systemd credentials.
//! Also: what a failed restic run meant (no repository yet, locked, network down).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Spec;
use crate::paths::Scope;
use crate::stages::StageError;

/// Credential names in the stage's unit (`LoadCredential=NAME:PATH`).
pub const REPOSITORY_CREDENTIAL: &str = "restic-repository";
pub const PASSWORD_CREDENTIAL: &str = "restic-password";

/// Which repository of a restic command a spec is: the one it works on (`-r`), or the one
/// `restic copy` (and `init --copy-chunker-params`) reads from (`--from-repo`). Each has its
/// own variables and credential names, so one unit can hold both repositories' secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub repository: &'static str,
    pub repository_file: &'static str,
    pub password_file: &'static str,
    pub password_command: &'static str,
    pub repository_credential: &'static str,
    pub password_credential: &'static str,
}

/// The repository restic works on.
pub const OWN: Role = Role {
    repository: "RESTIC_REPOSITORY",
    repository_file: "RESTIC_REPOSITORY_FILE",
    password_file: "RESTIC_PASSWORD_FILE",
    password_command: "RESTIC_PASSWORD_COMMAND",
    repository_credential: REPOSITORY_CREDENTIAL,
    password_credential: PASSWORD_CREDENTIAL,
};

/// The repository `restic copy` reads from (restic 0.14's `--from-*` variables).
pub const FROM: Role = Role {
    repository: "RESTIC_FROM_REPOSITORY",
    repository_file: "RESTIC_FROM_REPOSITORY_FILE",
    password_file: "RESTIC_FROM_PASSWORD_FILE",
    password_command: "RESTIC_FROM_PASSWORD_COMMAND",
    repository_credential: "restic-from-repository",
    password_credential: "restic-from-password",
};

/// Variables a caller's environment may hold that would fight with ours (restic refuses a
/// password file *and* a password command, for example).
pub const INHERITED: &[&str] = &[
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_FROM_REPOSITORY",
    "RESTIC_FROM_REPOSITORY_FILE",
    "RESTIC_FROM_PASSWORD_FILE",
    "RESTIC_FROM_PASSWORD_COMMAND",
];

/// Where a credential is: `$CREDENTIALS_DIRECTORY/NAME` when systemd loaded it for the unit,
/// else (`run --here`, `backupctl restore`) the configured file itself.
pub fn credential_path(name: &str, path: &Path) -> PathBuf {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) if Path::new(&dir).join(name).exists() => Path::new(&dir).join(name),
        _ => path.to_path_buf(),
    }
}

/// One word of `RESTIC_PASSWORD_COMMAND`, quoted for restic's own splitter (restic 0.14,
/// internal/backend/shellsplit.go), which is not a shell's: whitespace and `\\` split words
/// outside quotes; a quote starts or ends a word (`'a'b` is two words) unless a `\\` comes
/// right before it, and then both characters stay; there is no way to write `''` or `'\\''`.
/// `None` for a word it cannot give back: empty, ending in `\\`, or holding both kinds of
/// quote next to whitespace or `\\` (checked at load, see `Spec::validate`).
pub fn restic_word(word: &str) -> Option<String> {
    let special = |c: char| c.is_whitespace() || matches!(c, '\\' | '\'' | '"');
    if word.is_empty() || word.ends_with('\\') {
        None
    } else if !word.contains(special) {
        Some(word.to_string())
    } else if !word.contains('\'') {
        Some(format!("'{word}'"))
    } else if !word.contains('"') {
        Some(format!("\"{word}\""))
    } else {
        None
    }
}

/// `RESTIC_PASSWORD_COMMAND` for an argv; `None` if a word cannot be written for restic.
fn shell_join(argv: &[String]) -> Option<String> {
    argv.iter()
        .map(|word| restic_word(word))
        .collect::<Option<Vec<_>>>()
        .map(|words| words.join(" "))
}

/// Reads a secret file for an environment variable. The error names the file, never its
/// content.
fn read_secret(var: &str, path: &Path) -> Result<String, StageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StageError::Failed(format!(
            "cannot read the secret for {var} from {}: {e}",
            path.display()
        ))
    })?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(StageError::Failed(format!(
            "the secret file for {var}, {}, is empty",
            path.display()
        )));
    }
    Ok(value)
}

/// The environment restic runs with for this stage's repository.
pub fn environment(spec: &Spec, scope: Scope) -> Result<Vec<(OsString, OsString)>, StageError> {
    environment_as(spec, scope, OWN)
}

/// The environment that hands restic `spec`'s repository in `role`; the cache directory
/// comes with it.
pub fn environment_as(
    spec: &Spec,
    scope: Scope,
    role: Role,
) -> Result<Vec<(OsString, OsString)>, StageError> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |key: &str, value: OsString| env.push((key.into(), value));
    if let Some(repository) = &spec.repository {
        set(role.repository, repository.get_ref().into());
    }
    if let Some(file) = &spec.repository_file {
        set(role.repository_file, file.get_ref().into());
    }
    if let Some(path) = &spec.repository_credential {
        let file = credential_path(role.repository_credential, path.get_ref());
        set(role.repository_file, file.into());
    }
    if let Some(file) = &spec.password_file {
        set(role.password_file, file.get_ref().into());
    }
    if let Some(path) = &spec.password_credential {
        let file = credential_path(role.password_credential, path.get_ref());
        set(role.password_file, file.into());
    }
    if let Some(argv) = &spec.password_command {
        // `Spec::validate` refuses such words at load; a spec built otherwise fails here.
        let command = shell_join(argv.get_ref()).ok_or_else(|| {
            StageError::Failed(
                "a word of `password_command` cannot be passed through restic".into(),
            )
        })?;
        set(role.password_command, command.into());
    }
    set(
        "RESTIC_CACHE_DIR",
        crate::paths::cache_dir(scope).join("restic").into(),
    );
    for (var, path) in &spec.backend_files {
        env.push((var.into(), read_secret(var, path.get_ref())?.into()));
    }
    for (var, path) in &spec.backend_credentials {
        let file = credential_path(var, path.get_ref());
        env.push((var.into(), read_secret(var, &file)?.into()));
    }
    Ok(env)
}

/// A restic command of a stage run: the stage's repository and secrets (`env`, from
/// [`environment`]), its global options and its `environment`, nothing inherited that would
/// point restic elsewhere.
pub fn command<'a>(
    spec: &Spec,
    env: &[(OsString, OsString)],
    stage_environment: &'a indexmap::IndexMap<String, String>,
) -> crate::process::Command<'a> {
    let mut command = crate::process::Command::new(spec.program());
    for var in INHERITED {
        command = command.env_remove(var);
    }
    for (key, value) in env {
        command = command.env(key, value);
    }
    command
        .envs(stage_environment)
        .args(spec.global_args())
        // restic removes its lock when stopped by SIGINT, not by SIGTERM (Command::stop_with).
        .stop_with(nix::sys::signal::Signal::SIGINT)
}

/// A restic command for people (`snapshots`, `restore`, `mount`): the stage's repository,
/// the terminal inherited.
pub fn interactive_command(spec: &Spec, scope: Scope) -> Result<std::process::Command, StageError> {
    let mut command = std::process::Command::new(spec.program());
    for var in INHERITED {
        command.env_remove(var);
    }
    command.envs(environment(spec, scope)?);
    command.args(spec.global_args());
    Ok(command)
}

/// What a failed restic run meant, from what it printed on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No repository at the location (yet): `init = true` creates it.
    Missing,
    /// Another restic process holds a lock (or a killed one left it).
    Locked,
    /// The repository could not be reached; trying again later may work.
    Unreachable,
    /// The server refused to delete (HTTP 403): an append-only endpoint, for forget/prune.
    Forbidden,
    Other,
}

/// A line of a Go stack trace, as restic prints under some errors
/// (`github.com/restic/…/rest.(*Backend).Remove`, `\t…/rest.go:399`, `runtime.goexit`):
/// nothing a reader of the error can act on.
pub fn is_stack_frame(line: &str) -> bool {
    let line = line.trim();
    if line.is_empty() || line.contains(char::is_whitespace) {
        return false;
    }
    let source_line = line.rsplit_once(':').is_some_and(|(file, number)| {
        (file.ends_with(".go") || file.ends_with(".s"))
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
    });
    source_line
        || [
            "github.com/",
            "golang.org/",
            "gopkg.in/",
            "runtime.",
            "main.",
        ]
        .iter()
        .any(|prefix| line.starts_with(prefix))
}

/// Errors of a missing config file, per backend (local, sftp, REST, S3, B2).
const NOT_FOUND: &[&str] = &[
    "no such file or directory",
    "file does not exist",
    "404",
    "nosuchkey",
    "nosuchbucket",
    "does not exist",
    "not found",
];

/// Errors of a network or server that is down.
const UNREACHABLE: &[&str] = &[
    "connection refused",
    "connection reset",
    "broken pipe",
    "i/o timeout",
    "timeout awaiting",
    "tls handshake timeout",
    "no route to host",
    "network is unreachable",
    "no such host",
    "temporary failure in name resolution",
    "server misbehaving",
    "unexpected eof",
    "connection closed",
    "connection lost",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
    "500 internal server error",
    "subprocess ssh",
    "ssh command exited",
];

pub fn classify(stderr: &str) -> Failure {
    let text = stderr.to_lowercase();
    if text.contains("repository is already locked") {
        return Failure::Locked;
    }
    if UNREACHABLE.iter().any(|needle| text.contains(needle)) {
        return Failure::Unreachable;
    }
    if text.contains("403 forbidden") {
        return Failure::Forbidden;
    }
    // restic ≥ 0.17 exits 10 for this; 0.14 says it in words.
    if text.contains("is there a repository at the following location")
        && NOT_FOUND.iter().any(|needle| text.contains(needle))
    {
        return Failure::Missing;
    }
    Failure::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_go_stack_frames_from_messages() {
        for frame in [
            "github.com/restic/restic/internal/backend/rest.(*Backend).Remove",
            "\tgithub.com/restic/restic/internal/backend/rest/rest.go:399",
            "runtime.goexit",
            "runtime/asm_amd64.s:1594",
            "main.deleteFiles.func2",
            "golang.org/x/sync/errgroup.(*Group).Go.func1",
        ] {
            assert!(is_stack_frame(frame), "{frame}");
        }
        for message in [
            "blob not removed, server response: 403 Forbidden (403)",
            "unable to remove <snapshot/97e4626c9a> from the repository",
            "Fatal: wrong password or no key found",
            "",
        ] {
            assert!(!is_stack_frame(message), "{message}");
        }
    }

    #[test]
    fn classifies_restic_failures() {
        assert_eq!(
            classify(
                "unable to remove <snapshot/97e4> from the repository\nblob not removed, server response: 403 Forbidden (403)"
            ),
            Failure::Forbidden
        );
        assert_eq!(
            classify(
                "Fatal: unable to open config file: stat /tmp/rt/repo/config: no such file or directory\n\
                 Is there a repository at the following location?\n/tmp/rt/repo"
            ),
            Failure::Missing
        );
        assert_eq!(
            classify(
                "Fatal: unable to open config file: client.Head: Head \"http://127.0.0.1:1/x/config\": \
                 dial tcp 127.0.0.1:1: connect: connection refused\n\
                 Is there a repository at the following location?\nrest:http://127.0.0.1:1/x/"
            ),
            Failure::Unreachable
        );
        assert_eq!(
            classify(
                "Fatal: unable to create lock in backend: repository is already locked exclusively by PID 12 on vm"
            ),
            Failure::Locked
        );
        assert_eq!(
            classify("Fatal: wrong password or no key found"),
            Failure::Other
        );
    }

    #[test]
    fn quotes_password_command_words() {
        assert_eq!(
            shell_join(&["pass".into(), "show".into(), "my key".into()]).as_deref(),
            Some("pass show 'my key'")
        );
    }

    /// Issue 11: `password_command` words holding `'`, `\\` or `"` were quoted for sh, which
    /// restic is not: `it's x` reached the program as three words. Real restic runs the
    /// command here (a script recording its argv) against a fresh repository under target/tmp.
    #[test]
    fn restic_password_command_quote_injection() {
        use std::os::unix::fs::PermissionsExt;
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
        std::fs::create_dir_all(&base).expect("target/tmp");
        let dir = tempfile::Builder::new()
            .prefix("restic-pwcmd-")
            .tempdir_in(base)
            .expect("scratch directory");
        let repo = dir.path().join("repo");
        let init = std::process::Command::new("restic")
            .args(["init", "--quiet", "-r"])
            .arg(&repo)
            .env("RESTIC_PASSWORD", "pw")
            .output()
            .expect("this test needs restic: run scripts/setup-deps");
        assert!(init.status.success(), "restic init: {init:?}");
        let script = dir.path().join("pw");
        std::fs::write(
            &script,
            "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done > \"$0.argv\"\necho pw\n",
        )
        .expect("write script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let words = [
            "it's x",
            "it's",
            "a\\b",
            "a b\\c",
            "say \"hi\"",
            "\"",
            "'",
            "$HOME;|&",
            "plain",
        ];
        let mut argv = vec![script.display().to_string()];
        argv.extend(words.map(String::from));
        let command = shell_join(&argv).expect("every word can be written");
        let run = std::process::Command::new("restic")
            .args(["snapshots", "--quiet", "-r"])
            .arg(&repo)
            .env("RESTIC_PASSWORD_COMMAND", command)
            .output()
            .expect("restic runs");
        assert!(run.status.success(), "restic snapshots: {run:?}");
        let seen = std::fs::read_to_string(dir.path().join("pw.argv")).expect("argv recorded");
        let expected: String = words.iter().map(|w| format!("[{w}]\n")).collect();
        assert_eq!(seen, expected);
        for unwritable in ["", "ends\\", "both ' and \""] {
            assert_eq!(restic_word(unwritable), None, "{unwritable:?}");
        }
    }
}
