//! Load-time checks of a restic stage's keys that serde cannot make: which keys go
//! together, which exclude each other, what restic could not take.

use std::path::PathBuf;

use toml::Spanned;

use super::repo;
use super::spec::{Operation, Spec, local_path, valid_restic_duration};
use crate::config::Timespan;
use crate::stages::{SpecError, require_absolute, require_normalized};

impl Spec {
    /// `files_from`, `stdin_from` and `stdin_filename`: absolute, for backups, and a
    /// command's output alone (restic takes no paths beside `--stdin`).
    fn validate_sources(&self) -> Result<(), SpecError> {
        if let Some(file) = &self.files_from {
            require_absolute(std::slice::from_ref(file), "files_from")?;
        }
        if let Some(name) = &self.stdin_filename
            && self.stdin_from.is_none()
        {
            return Err(SpecError::invalid(
                Some(name.span()),
                "`stdin_filename` names the output of `stdin_from`, which is not set",
                "add stdin_from = [\"pg_dump\", \"mydb\"], or remove `stdin_filename`",
            ));
        }
        self.validate_files_from_command()?;
        let Some(command) = &self.stdin_from else {
            return Ok(());
        };
        if self.operation != Operation::Backup {
            return Err(SpecError::invalid(
                Some(command.span()),
                format!(
                    "`stdin_from` is for backups, not for `operation = \"{}\"`",
                    self.operation.name()
                ),
                "remove `stdin_from`, or make this a backup stage",
            ));
        }
        let Some(program) = command.get_ref().first() else {
            return Err(SpecError::invalid(
                Some(command.span()),
                "`stdin_from` is empty",
                "give the program and its arguments, e.g. [\"pg_dump\", \"mydb\"]",
            ));
        };
        if program.is_empty() {
            return Err(SpecError::invalid(
                Some(command.span()),
                "the `stdin_from` program is empty",
                "give the program and its arguments, e.g. [\"pg_dump\", \"mydb\"]",
            ));
        }
        for (key, span) in [
            ("paths", self.paths.as_ref().map(Spanned::span)),
            ("files_from", self.files_from.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                return Err(SpecError::invalid(
                    Some(span),
                    format!("`{key}` and `stdin_from` cannot be combined"),
                    "restic backs up either files or one command's output: make a second restic stage for the other",
                ));
            }
        }
        if let Some(name) = &self.stdin_filename {
            let text = name.get_ref();
            if text.is_empty() || text.contains('/') || text == "." || text == ".." {
                return Err(SpecError::invalid(
                    Some(name.span()),
                    format!("`stdin_filename` {text:?} is not a file name"),
                    "a plain name without `/`, e.g. \"mydb.sql\" (restore it with `restic dump latest /mydb.sql`)",
                ));
            }
        }
        Ok(())
    }
}

impl Spec {
    /// `files_from_command`: a program, for backups, not with `stdin_from` (both would be
    /// restic's stdin).
    fn validate_files_from_command(&self) -> Result<(), SpecError> {
        let Some(command) = &self.files_from_command else {
            return Ok(());
        };
        if command.get_ref().first().is_none_or(String::is_empty) {
            return Err(SpecError::invalid(
                Some(command.span()),
                "`files_from_command` has no program",
                "give the program and its arguments, e.g. [\"/usr/local/bin/list-projects\"]",
            ));
        }
        if self.operation != Operation::Backup {
            return Err(SpecError::invalid(
                Some(command.span()),
                format!(
                    "`files_from_command` is for backups, not for `operation = \"{}\"`",
                    self.operation.name()
                ),
                "remove `files_from_command`, or make this a backup stage",
            ));
        }
        if self.stdin_from.is_some() {
            return Err(SpecError::invalid(
                Some(command.span()),
                "`files_from_command` and `stdin_from` cannot be combined",
                "restic backs up either files or one command's output: make a second restic stage for the other",
            ));
        }
        Ok(())
    }
}

/// Exactly one of three alternative keys (given ones carry their span).
pub(super) fn one_of(
    options: [(&str, Option<Option<std::ops::Range<usize>>>); 3],
    missing: &str,
    example: &str,
) -> Result<(), SpecError> {
    let given: Vec<_> = options
        .iter()
        .filter_map(|(name, span)| span.clone().map(|span| (*name, span)))
        .collect();
    match given.as_slice() {
        [] => Err(SpecError::invalid(None, missing, example)),
        [_] => Ok(()),
        [(first, _), (second, span), ..] => Err(SpecError::invalid(
            span.clone(),
            format!("give only one of `{first}` and `{second}`"),
            "remove one of them",
        )),
    }
}

/// Every check of [`StageKind::validate`](crate::stages::StageKind::validate), in the order
/// the errors are reported.
pub(super) fn validate(spec: &Spec) -> Result<(), SpecError> {
    repository_checks(spec)?;
    extra_args(spec)?;
    require_absolute(&spec.exclude_file, "exclude_file")?;
    retry_and_keep(spec)?;
    spec.validate_sources()?;
    operation_keys(spec)
}

/// The checks of the keys a declared repository holds (`[repository.NAME]`, see
/// `declared`): location and password, `restic_binary`, secret files, time spans.
pub(super) fn repository_checks(spec: &Spec) -> Result<(), SpecError> {
    repository_and_password(spec)?;
    if let Some(binary) = &spec.restic_binary {
        let path = binary.get_ref().0;
        if !path.starts_with('/') {
            return Err(SpecError::invalid(
                Some(binary.span()),
                format!("`restic_binary` {path:?} is not an absolute path"),
                "give the restic executable's full path, e.g. \"/opt/restic/bin/restic\", or remove the key to use `restic` from PATH",
            ));
        }
        require_normalized(binary.span(), path, "restic_binary")?;
    }
    secret_files(spec)?;
    for (key, span) in [
        ("retry_delay", &spec.retry_delay),
        ("lock_wait", &spec.lock_wait),
    ] {
        if let Some(text) = span
            && let Err(error) = Timespan::parse(text.get_ref())
        {
            return Err(SpecError::invalid(
                Some(text.span()),
                format!("invalid `{key}`: {error}"),
                "use a systemd time span, e.g. \"30s\" or \"2min\"",
            ));
        }
    }
    Ok(())
}

/// Options of restic that backupctl sets itself (repository, password, cache): an extra
/// argument naming one would fight with the stage's keys or leak a secret into argv.
const MANAGED_OPTIONS: &[&str] = &[
    "-r",
    "--repo",
    "--repository-file",
    "-p",
    "--password-file",
    "--password-command",
    "--insecure-no-password",
    "--cache-dir",
    "--no-cache",
];

/// The managed option an extra argument names (`--repo`, `--repo=X`, `-rX`), if any.
fn managed_option(word: &str) -> Option<&'static str> {
    MANAGED_OPTIONS.iter().copied().find(|option| {
        let attached = if option.starts_with("--") {
            word.strip_prefix(option)
                .is_some_and(|rest| rest.starts_with('='))
        } else {
            word.starts_with(option) && !word.starts_with("--")
        };
        word == *option || attached
    })
}

/// `check_args` for a check stage, `forget_args` where `restic forget` runs (with `keep`),
/// neither naming an option backupctl manages.
fn extra_args(spec: &Spec) -> Result<(), SpecError> {
    for (key, args) in [
        ("check_args", &spec.check_args),
        ("forget_args", &spec.forget_args),
    ] {
        let Some(args) = args else { continue };
        if let Some(option) = args.get_ref().iter().find_map(|word| managed_option(word)) {
            return Err(SpecError::invalid(
                Some(args.span()),
                format!("`{key}` holds `{option}`, which backupctl sets from the stage's keys"),
                "give the repository and password with `repository`/`repository_file` and `password_file`/`password_command`; `options` takes restic's -o settings",
            ));
        }
    }
    if let Some(args) = &spec.check_args
        && spec.operation != Operation::Check
    {
        return Err(SpecError::invalid(
            Some(args.span()),
            "`check_args` is for `operation = \"check\"`",
            "add a check stage (e.g. in a weekly job) and move it there",
        ));
    }
    if let Some(args) = &spec.forget_args
        && spec.keep.is_none()
    {
        return Err(SpecError::invalid(
            Some(args.span()),
            "`forget_args` is for `restic forget`, which runs only with `keep`",
            "add keep = { daily = 7, … } to this stage, or remove `forget_args`",
        ));
    }
    Ok(())
}

/// One repository key and one password key; a password command restic can pass on intact.
fn repository_and_password(spec: &Spec) -> Result<(), SpecError> {
    let span = |s: &Option<Spanned<PathBuf>>| s.as_ref().map(|s| Some(s.span()));
    one_of(
        [
            (
                "repository",
                spec.repository.as_ref().map(|s| Some(s.span())),
            ),
            ("repository_file", span(&spec.repository_file)),
            ("repository_credential", span(&spec.repository_credential)),
        ],
        "a restic stage needs `repository`, `repository_file` or `repository_credential`",
        "e.g. repository = \"/data/restic\" or repository_file = \"/etc/backupctl/b2-repository\"",
    )?;
    one_of(
        [
            ("password_file", span(&spec.password_file)),
            (
                "password_command",
                spec.password_command.as_ref().map(|s| Some(s.span())),
            ),
            ("password_credential", span(&spec.password_credential)),
        ],
        "a restic stage needs `password_file`, `password_command` or `password_credential`",
        "e.g. password_file = \"/etc/backupctl/restic-password\" (mode 0600)",
    )?;
    if let Some(repository) = &spec.repository
        && let Some(path) = local_path(repository.get_ref())
    {
        require_normalized(repository.span(), path, "repository")?;
    }
    if let Some(command) = &spec.password_command
        && command.get_ref().is_empty()
    {
        return Err(SpecError::invalid(
            Some(command.span()),
            "`password_command` is empty",
            "give the program and its arguments, e.g. [\"pass\", \"show\", \"restic\"]",
        ));
    }
    if let Some(command) = &spec.password_command
        && let Some(word) = command
            .get_ref()
            .iter()
            .find(|word| repo::restic_word(word).is_none())
    {
        return Err(SpecError::invalid(
            Some(command.span()),
            format!("restic cannot pass the `password_command` word {word:?} on intact"),
            "restic splits the command itself and has no way to write an empty word, a word \
             ending in `\\`, or one holding both `'` and `\"` with spaces or `\\`; \
             put the command in a script and give its path",
        ));
    }
    Ok(())
}

/// Secret files are absolute; backend variables are named like restic's.
fn secret_files(spec: &Spec) -> Result<(), SpecError> {
    for file in [
        &spec.repository_file,
        &spec.repository_credential,
        &spec.password_file,
        &spec.password_credential,
    ]
    .into_iter()
    .flatten()
    {
        require_absolute(std::slice::from_ref(file), "secret files")?;
    }
    for (key, map) in [
        ("backend_files", &spec.backend_files),
        ("backend_credentials", &spec.backend_credentials),
    ] {
        for (var, path) in map {
            let valid = var.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                && var
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !valid || repo::INHERITED.contains(&var.as_str()) {
                return Err(SpecError::invalid(
                    Some(path.span()),
                    format!("`{var}` in `{key}` is not a backend variable name"),
                    "use restic's variable names, e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, B2_ACCOUNT_ID, B2_ACCOUNT_KEY; the repository and password have keys of their own",
                ));
            }
            require_absolute(std::slice::from_ref(path), key)?;
        }
    }
    Ok(())
}

/// `keep` has a rule and a restic duration.
fn retry_and_keep(spec: &Spec) -> Result<(), SpecError> {
    if let Some(keep) = &spec.keep {
        if keep.get_ref().arguments().is_empty() {
            return Err(SpecError::invalid(
                Some(keep.span()),
                "`keep` has no rule",
                "e.g. keep = { daily = 7, weekly = 5, monthly = 12 }",
            ));
        }
        if let Some(within) = &keep.get_ref().within
            && !valid_restic_duration(within.get_ref())
        {
            return Err(SpecError::invalid(
                Some(within.span()),
                format!("`{}` is not a restic duration", within.get_ref()),
                "numbers with y, m, d or h, e.g. \"1y6m\", \"30d\" or \"48h\"",
            ));
        }
    }
    Ok(())
}

/// What each operation needs (`paths` for a backup, `keep` for forget) and refuses.
fn operation_keys(spec: &Spec) -> Result<(), SpecError> {
    match spec.operation {
        Operation::Backup => {
            let Some(paths) = &spec.paths else {
                if spec.files_from.is_some()
                    || spec.files_from_command.is_some()
                    || spec.stdin_from.is_some()
                {
                    return Ok(());
                }
                return Err(SpecError::invalid(
                    None,
                    "a restic backup stage needs `paths`, `files_from`, `files_from_command` or `stdin_from`",
                    "list what to back up, e.g. paths = [\"/home\", \"/etc\"]",
                ));
            };
            if paths.get_ref().is_empty() {
                return Err(SpecError::invalid(
                    Some(paths.span()),
                    "`paths` is empty",
                    "list what to back up, e.g. paths = [\"/home\", \"/etc\"]",
                ));
            }
            require_absolute(paths.get_ref(), "paths")?;
        }
        other => {
            if let Some(paths) = &spec.paths {
                return Err(SpecError::invalid(
                    Some(paths.span()),
                    format!(
                        "`paths` is for backups, not for `operation = \"{}\"`",
                        other.name()
                    ),
                    "remove `paths`, or make this a backup stage",
                ));
            }
            if other == Operation::Forget && spec.keep.is_none() {
                return Err(SpecError::invalid(
                    None,
                    "`operation = \"forget\"` needs `keep`",
                    "e.g. keep = { daily = 7, weekly = 5, monthly = 12 }",
                ));
            }
        }
    }
    if let Some(subset) = &spec.read_data_subset
        && spec.operation != Operation::Check
    {
        return Err(SpecError::invalid(
            Some(subset.span()),
            "`read_data_subset` is for `operation = \"check\"`",
            "add a check stage (e.g. in a weekly job) and move it there",
        ));
    }
    Ok(())
}
