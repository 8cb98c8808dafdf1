//! Unit-file injection (issue 11): no string in any config value may add a line, key or
//! section to a generated unit. A property suite fills one string slot of a config that has
//! every string-valued key of every stage kind, job, store, notify and metrics with an
//! arbitrary string (line breaks, NUL, backslashes, `%`, `$`, quotes, brackets, `=`, comment
//! signs, non-ASCII, non-characters; path slots keep a valid absolute prefix). Each config
//! is loaded in-process: it is either refused with an error located at that slot, or its
//! rendered units, read back the way systemd reads unit files, have exactly the (section,
//! key) lines of the same config with benign values, and the descriptions read back equal
//! the config's. A sample of accepted cases also goes through the real `systemd-analyze
//! verify`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use backupctl::config;
use backupctl::generator::{self, Content, Options, UnitFile};
use backupctl::paths::Scope;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

use crate::util::{backupctl_path, repo_root, require_tool, run, stderr, stdout};

/// How many configs the property tries (CI budget: well under 2 minutes in a debug build).
const CASES: u32 = 10_000;
/// How many accepted configs also go through `systemd-analyze verify`.
const VERIFIED: usize = 30;

/// The config path the units name (never read: the config is parsed from memory).
const CONFIG_PATH: &str = "/etc/backupctl/config.toml";

/// Every string-valued key, each as a `{slot}`. Slots stand alone on their line, so an error
/// about one names that line.
const TEMPLATE: &str = r#"[job]
description = {job_description}
schedule = {schedule}
randomized_delay = {randomized_delay}
user = {user}
group = {group}

[jobs.offsite]
description = {offsite_description}
schedule = "Sun 04:00"

[store.nas]
image = {image}
size = {store_size}
keyfile = {keyfile}
remote = { volume = {volume}, username = {username}, password_file = {store_password_file}, domain = {domain}, options = [{mount_option}] }

[store.usb]
image = "backup.luks"
keyfile = "/etc/backupctl/usb.key"
remote = { device = {device} }

[store.vault]
image = "vault.luks"
keyfile = "/etc/backupctl/vault.key"
remote = { volume = "//nas.local/vault", username = "sig", password_credential = {store_password_credential} }

[stage.hello]
kind = "hello"
description = {stage_description}
min_free = {min_free}
tools = [{tool}]

[stage.{stage_name}]
kind = "exec"
command = [{exec_program}, {exec_arg}]
working_directory = {working_directory}
writes = [{writes}]
when_mounted = {when_mounted}
nice = 5
io_class = {io_class}

[stage.{stage_name}.environment]
{env_key} = {env_value}

[stage.copy]
kind = "rsync"
sources = [{rsync_source}]
destination = {rsync_destination}
exclude = [{rsync_exclude}]
exclude_from = [{rsync_exclude_from}]
args = [{rsync_arg}]
ssh_key = {rsync_ssh_key}
ssh_options = [{ssh_option}]
timeout = {timeout}
rotate = { every = {rotate_every}, keep = 4 }
snapshot = "btrfs"
snapshot_prefix = {snapshot_prefix}
snapshot_locations = { {snapshot_location_key} = {snapshot_location_stem} }
exec_before_snapshot = ["/usr/bin/mount", {exec_before_arg}]

[stage.stored]
kind = "rsync"
store = "nas"
sources = ["/etc/"]
destination = {store_destination}

[stage.offsite]
kind = "restic"
job = "offsite"
repository = {restic_repository}
password_file = {restic_password_file}
paths = [{restic_path}]
exclude = [{restic_exclude}]
exclude_file = [{restic_exclude_file}]
tags = [{restic_tag}]
host = {restic_host}
options = [{restic_option}]
backup_args = [{restic_backup_arg}]
environment_file = {environment_file}
restic_binary = {restic_binary}
backend_files = { AWS_SECRET_ACCESS_KEY = {backend_file} }
retry_delay = {retry_delay}
keep = { within = {keep_within} }

[repository.near]
location = "/srv/restic-near"
password_file = "/etc/backupctl/near.pass"
lock_wait = "1h"

[repository.far]
location_credential = "/etc/credstore/far.repo"
password_credential = "/etc/credstore/far.pass"

[stage.copy-far]
kind = "copy"
job = "offsite"
from = "near"
to = "far"
host = {restic_host}
tags = [{restic_tag}]
keep = { daily = 7 }

[stage.check]
kind = "restic"
job = "offsite"
operation = "check"
repository_file = {restic_repository_file}
password_credential = {restic_password_credential}
backend_credentials = { B2_ACCOUNT_KEY = {backend_credential} }
read_data_subset = {read_data_subset}

[stage.prune]
kind = "restic"
job = "offsite"
operation = "forget"
repository_credential = {restic_repository_credential}
password_command = [{password_program}, {password_arg}]
keep = { daily = 7 }

[stage.postgresql]
kind = "postgresql"
job = "offsite"
databases = [{pg_database}]
exclude_databases = [{pg_exclude_database}]
host = {pg_host}
username = {pg_username}
maintenance_database = {pg_maintenance_database}
restic = "offsite"

[stage.mariadb]
kind = "mysql"
host = {mysql_host}
username = {mysql_username}
password_file = {mysql_password_file}
directory = {mysql_directory}

[stage.sqlite]
kind = "sqlite"
databases = [{sqlite_database}]
directory = {sqlite_directory}

[stage.notesgit]
kind = "git"
repository = {git_repository}
sources = [{git_source}]
remotes = [{git_remote}]
branch = {git_branch}
exclude = [{git_exclude}]
max_file_size = {max_file_size}
ssh_key = {git_ssh_key}
ssh_options = [{git_ssh_option}]

[stage.cloud]
kind = "rclone"
mode = "sync"
source = {rclone_source}
destination = {rclone_destination}
config_file = {rclone_config_file}
exclude = [{rclone_exclude}]
args = [{rclone_arg}]

[stage.bisync]
kind = "rclone"
mode = "bisync"
source = "/home/sig/Notes"
destination = "server:notes"
config_credential = {rclone_config_credential}

[stage.repos]
kind = "gitrepos"
roots = [{gitrepos_root}]
output = {gitrepos_output}
exclude = [{gitrepos_exclude}]

[stage.files]
kind = "manifest"
sources = [{manifest_source}]
output = {manifest_output}
exclude = [{manifest_exclude}]
exclude_from = [{manifest_exclude_from}]

[stage.drill]
kind = "drill"
stage = {drill_stage}
sample = {drill_sample}
manifest = {drill_manifest}

[notify]
timeout = {notify_timeout}

[notify.webhook]
url = {webhook_url}
token_file = {token_file}

[notify.healthchecks]
url_file = {healthchecks_url_file}

[notify.ntfy]
url_credential = {ntfy_url_credential}
token_credential = {ntfy_token_credential}
priority = {ntfy_priority}
tags = [{ntfy_tag}]

[notify.command]
command = [{notify_program}, {notify_arg}]
to = {notify_to}

[metrics]
textfile = {textfile}
"#;

/// How an arbitrary string goes into a slot.
#[derive(Clone, Copy)]
enum Fill {
    /// The whole value (or key).
    Free,
    /// A fixed valid start, the arbitrary rest: paths stay absolute, URLs keep their scheme,
    /// so that the value gets past its key's own checks into the units.
    After(&'static str),
}

/// Each slot: its name, its benign value, how arbitrary strings fill it.
const SLOTS: &[(&str, &str, Fill)] = &[
    ("job_description", "Nightly backup", Fill::Free),
    ("schedule", "*-*-* 03:00:00", Fill::Free),
    ("randomized_delay", "10min", Fill::Free),
    ("user", "backup", Fill::Free),
    ("group", "backup", Fill::Free),
    ("offsite_description", "Weekly offsite", Fill::Free),
    ("image", "backup.luks", Fill::Free),
    ("store_size", "2T", Fill::Free),
    (
        "keyfile",
        "/etc/backupctl/nas.key",
        Fill::After("/etc/backupctl/"),
    ),
    ("volume", "//nas.local/backup", Fill::After("//nas.local/")),
    ("username", "sig", Fill::Free),
    (
        "store_password_file",
        "/etc/backupctl/nas-password",
        Fill::After("/etc/backupctl/"),
    ),
    ("domain", "WORKGROUP", Fill::Free),
    ("mount_option", "vers=3.0", Fill::Free),
    (
        "device",
        "UUID=1234-abcd",
        Fill::After("/dev/disk/by-label/"),
    ),
    ("store_password_credential", "vault-password", Fill::Free),
    ("stage_description", "Preflight", Fill::Free),
    ("min_free", "1G", Fill::Free),
    ("tool", "git", Fill::Free),
    ("stage_name", "notes", Fill::Free),
    (
        "exec_program",
        "/usr/local/bin/export-notes",
        Fill::After("/usr/local/bin/"),
    ),
    ("exec_arg", "--to=/data/notes", Fill::Free),
    ("working_directory", "/data", Fill::After("/data/")),
    ("writes", "/data/notes", Fill::After("/data/")),
    ("when_mounted", "/mnt/usb", Fill::After("/mnt/")),
    ("io_class", "idle", Fill::Free),
    ("env_key", "LANG", Fill::Free),
    ("env_value", "C.UTF-8", Fill::Free),
    ("rsync_source", "/home/sig/Sync/", Fill::After("/home/")),
    (
        "rsync_destination",
        "/data/backups/sync",
        Fill::After("/data/backups/"),
    ),
    ("rsync_exclude", "*.tmp", Fill::Free),
    (
        "rsync_exclude_from",
        "/etc/backupctl/excludes",
        Fill::After("/etc/backupctl/"),
    ),
    ("rsync_arg", "--bwlimit=10M", Fill::Free),
    (
        "rsync_ssh_key",
        "/etc/backupctl/id_ed25519",
        Fill::After("/etc/backupctl/"),
    ),
    ("ssh_option", "Port=2222", Fill::Free),
    ("timeout", "30min", Fill::Free),
    ("rotate_every", "168h", Fill::Free),
    (
        "snapshot_prefix",
        "/.snapshots",
        Fill::After("/.snapshots/"),
    ),
    ("snapshot_location_key", "/home", Fill::After("/home/")),
    (
        "snapshot_location_stem",
        "/home-stem",
        Fill::After("/stems/"),
    ),
    ("exec_before_arg", "/mnt/top", Fill::Free),
    ("store_destination", "etc", Fill::After("etc/")),
    (
        "restic_repository",
        "/data/restic",
        Fill::After("/data/restic/"),
    ),
    (
        "restic_password_file",
        "/etc/backupctl/restic-password",
        Fill::After("/etc/backupctl/"),
    ),
    ("restic_path", "/home", Fill::After("/home/")),
    ("restic_exclude", "/home/*/.cache", Fill::Free),
    (
        "restic_exclude_file",
        "/etc/backupctl/restic-excludes",
        Fill::After("/etc/backupctl/"),
    ),
    ("restic_tag", "nightly", Fill::Free),
    ("restic_host", "laptop", Fill::Free),
    (
        "restic_option",
        "sftp.command=ssh -p 2222 host -s sftp",
        Fill::Free,
    ),
    ("restic_backup_arg", "--one-file-system", Fill::Free),
    (
        "backend_file",
        "/etc/backupctl/s3-secret",
        Fill::After("/etc/backupctl/"),
    ),
    ("retry_delay", "1min", Fill::Free),
    ("keep_within", "30d", Fill::Free),
    (
        "restic_repository_file",
        "/etc/backupctl/b2-repository",
        Fill::After("/etc/backupctl/"),
    ),
    (
        "restic_password_credential",
        "/etc/backupctl/restic-password",
        Fill::After("/etc/credstore/"),
    ),
    (
        "backend_credential",
        "/etc/backupctl/b2-key",
        Fill::After("/etc/credstore/"),
    ),
    ("read_data_subset", "10%", Fill::Free),
    (
        "restic_repository_credential",
        "/etc/backupctl/repo",
        Fill::After("/etc/credstore/"),
    ),
    (
        "password_program",
        "/usr/bin/pass",
        Fill::After("/usr/bin/"),
    ),
    ("password_arg", "show restic", Fill::Free),
    ("pg_database", "app", Fill::Free),
    ("pg_exclude_database", "scratch", Fill::Free),
    ("pg_host", "/run/postgresql", Fill::After("/run/")),
    ("pg_username", "backup", Fill::Free),
    ("pg_maintenance_database", "postgres", Fill::Free),
    (
        "mysql_host",
        "/run/mysqld/mysqld.sock",
        Fill::After("/run/"),
    ),
    ("mysql_username", "backup", Fill::Free),
    (
        "mysql_password_file",
        "/etc/backupctl/mysql-password",
        Fill::After("/etc/backupctl/"),
    ),
    (
        "mysql_directory",
        "/var/backups/mysql",
        Fill::After("/var/backups/"),
    ),
    (
        "sqlite_database",
        "/var/lib/grafana/grafana.db",
        Fill::After("/var/lib/"),
    ),
    (
        "sqlite_directory",
        "/var/backups/sqlite",
        Fill::After("/var/backups/"),
    ),
    (
        "environment_file",
        "/etc/backupctl/b2.env",
        Fill::After("/etc/backupctl/"),
    ),
    (
        "restic_binary",
        "/usr/local/bin/restic",
        Fill::After("/usr/local/bin/"),
    ),
    ("git_repository", "/srv/git/work", Fill::After("/srv/git/")),
    ("git_source", "/srv/sync/Notes", Fill::After("/srv/sync/")),
    (
        "git_remote",
        "/srv/git/notes.git",
        Fill::After("/srv/git/remote/"),
    ),
    ("git_branch", "main", Fill::Free),
    ("git_exclude", "node_modules/", Fill::Free),
    ("max_file_size", "50M", Fill::Free),
    (
        "git_ssh_key",
        "/etc/backupctl/git_ed25519",
        Fill::After("/etc/backupctl/"),
    ),
    (
        "git_ssh_option",
        "StrictHostKeyChecking=accept-new",
        Fill::Free,
    ),
    ("rclone_source", "/data/cloud", Fill::After("/data/cloud/")),
    (
        "rclone_destination",
        "/mnt/cloud/backup",
        Fill::After("/mnt/cloud/"),
    ),
    (
        "rclone_config_file",
        "/etc/backupctl/rclone.conf",
        Fill::After("/etc/backupctl/"),
    ),
    ("rclone_exclude", "*.tmp", Fill::Free),
    ("rclone_arg", "--fast-list", Fill::Free),
    ("rclone_config_credential", "rclone-config", Fill::Free),
    ("gitrepos_root", "/home/sig", Fill::After("/home/")),
    (
        "gitrepos_output",
        "/var/lib/backupctl/repos",
        Fill::After("/var/lib/backupctl/"),
    ),
    ("gitrepos_exclude", "node_modules", Fill::Free),
    ("manifest_source", "/etc", Fill::After("/etc/")),
    (
        "manifest_output",
        "/var/lib/backupctl/files",
        Fill::After("/var/lib/backupctl/"),
    ),
    ("manifest_exclude", "*.tmp", Fill::Free),
    (
        "manifest_exclude_from",
        "/var/lib/backupctl/repos/exclude-pushed.txt",
        Fill::After("/var/lib/backupctl/"),
    ),
    ("notify_timeout", "10s", Fill::Free),
    (
        "webhook_url",
        "https://hooks.example.org/backup",
        Fill::After("https://hooks.example.org/"),
    ),
    (
        "token_file",
        "/etc/backupctl/webhook-token",
        Fill::After("/etc/backupctl/"),
    ),
    (
        "healthchecks_url_file",
        "/etc/backupctl/hc-url",
        Fill::After("/etc/backupctl/"),
    ),
    (
        "ntfy_url_credential",
        "/etc/backupctl/ntfy-url",
        Fill::After("/etc/credstore/"),
    ),
    (
        "ntfy_token_credential",
        "/etc/backupctl/ntfy-token",
        Fill::After("/etc/credstore/"),
    ),
    ("ntfy_priority", "high", Fill::Free),
    ("ntfy_tag", "floppy_disk", Fill::Free),
    ("notify_program", "/usr/bin/msmtp", Fill::After("/usr/bin/")),
    ("notify_arg", "--read-recipients", Fill::Free),
    ("notify_to", "root@example.org", Fill::Free),
    (
        "textfile",
        "/var/lib/node_exporter/backupctl.prom",
        Fill::After("/var/lib/node_exporter/"),
    ),
    ("drill_stage", "stored", Fill::Free),
    ("drill_sample", "2%", Fill::Free),
    ("drill_manifest", "files", Fill::Free),
];

/// Slots that are table keys rather than values (written as quoted keys).
const KEY_SLOTS: &[&str] = &["stage_name", "env_key", "snapshot_location_key"];

/// A TOML basic string holding exactly `text` (every non-printable character escaped).
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => quoted.push(c),
            c if u32::from(c) <= 0xFFFF => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    quoted.push('"');
    quoted
}

/// The template with every slot benign except `fuzzed`, which holds `value`.
fn config_text(fuzzed: Option<(usize, &str)>) -> String {
    let mut text = TEMPLATE.to_string();
    for (index, (name, benign, _)) in SLOTS.iter().enumerate() {
        let value = match fuzzed {
            Some((slot, value)) if slot == index => value,
            _ => benign,
        };
        text = text.replace(&format!("{{{name}}}"), &toml_string(value));
    }
    assert!(!text.contains("{job"), "a slot was not filled");
    text
}

/// The lines of the template that hold a slot, for located errors.
fn slot_lines(name: &str) -> Vec<usize> {
    TEMPLATE
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(&format!("{{{name}}}")))
        .map(|(index, _)| index + 1)
        .collect()
}

/// Where an error about a slot may point: the slot's line, or the header of its table (the
/// few keys whose values carry no position, e.g. glob patterns, are reported there).
fn error_lines(name: &str) -> Vec<usize> {
    let lines: Vec<&str> = TEMPLATE.lines().collect();
    let mut allowed = slot_lines(name);
    for line in slot_lines(name) {
        if let Some(header) = (0..line).rev().find(|&i| lines[i].starts_with('[')) {
            allowed.push(header + 1);
        }
    }
    allowed
}

/// One setting as systemd reads it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Setting {
    section: String,
    key: String,
    value: String,
}

/// Reads a unit file the way systemd's `config_parse()` does: lines end at `\n`, `\r` or
/// NUL; a line whose first non-blank character is `#` or `;` is a comment (also inside a
/// continuation); a line ending in an odd number of backslashes continues on the next one,
/// that backslash becoming a space; `[…]` starts a section; other lines are `key=value`,
/// both stripped. Anything else (a line without `=`, a setting before any section, an
/// unterminated section header) is an error.
fn read_unit(text: &str) -> Result<Vec<Setting>, String> {
    const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];
    let mut settings = Vec::new();
    let mut section: Option<String> = None;
    let mut continuation: Option<String> = None;
    let mut parse = |line: &str, section: &mut Option<String>| -> Result<(), String> {
        let line = line.trim_matches(WHITESPACE);
        if line.is_empty() {
            return Ok(());
        }
        if let Some(header) = line.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .ok_or_else(|| format!("invalid section header {line:?}"))?;
            *section = Some(name.to_string());
            return Ok(());
        }
        let Some(current) = section else {
            return Err(format!("assignment outside of a section: {line:?}"));
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("missing '=' in {line:?}"))?;
        settings.push(Setting {
            section: current.clone(),
            key: key.trim_matches(WHITESPACE).to_string(),
            value: value.trim_matches(WHITESPACE).to_string(),
        });
        Ok(())
    };
    for raw in text.split(['\n', '\r', '\0']) {
        let start = raw.trim_start_matches(WHITESPACE);
        if start.starts_with(['#', ';']) {
            continue;
        }
        let mut line = continuation.take().unwrap_or_default();
        line.push_str(raw);
        let mut escaped = false;
        for c in line.chars() {
            escaped = !escaped && c == '\\';
        }
        if escaped {
            line.pop();
            line.push(' ');
            continuation = Some(line);
            continue;
        }
        parse(&line, &mut section)?;
    }
    if let Some(line) = continuation {
        parse(&line, &mut section)?;
    }
    Ok(settings)
}

/// `%%` → `%`; any other `%` would be a specifier systemd expands.
fn without_specifier_escapes(text: &str) -> Result<String, String> {
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '%' && chars.next() != Some('%') {
            return Err(format!("a bare specifier in {text:?}"));
        }
        plain.push(c);
    }
    Ok(plain)
}

/// A file's path and the (section, key) multiset of its settings.
type Shape = (PathBuf, BTreeMap<(String, String), usize>);

/// The shape of every file, in render order.
fn shapes(files: &[UnitFile]) -> Result<Vec<Shape>, String> {
    files
        .iter()
        .map(|file| {
            let mut keys = BTreeMap::new();
            if let Content::Text(text) = &file.content {
                for setting in read_unit(text)
                    .map_err(|error| format!("{}: {error}\n{text}", file.path.display()))?
                {
                    *keys.entry((setting.section, setting.key)).or_insert(0) += 1;
                }
            }
            Ok((file.path.clone(), keys))
        })
        .collect()
}

fn options(scope: Scope, binary: &Path) -> Options {
    Options {
        scope,
        binary: binary.to_path_buf(),
    }
}

/// The value of `Description=` in `[Unit]` of the file at `path`.
fn description(files: &[UnitFile], path: &str) -> String {
    let file = files
        .iter()
        .find(|file| file.path == Path::new(path))
        .unwrap_or_else(|| panic!("no {path} was rendered"));
    let Content::Text(text) = &file.content else {
        panic!("{path} is a symlink");
    };
    read_unit(text)
        .unwrap()
        .into_iter()
        .find(|setting| setting.section == "Unit" && setting.key == "Description")
        .unwrap_or_else(|| panic!("{path} has no Description="))
        .value
}

/// What became of one case.
enum Outcome {
    Refused,
    Loaded,
}

/// Checks one case.
fn check_case(
    slot: usize,
    value: &str,
    scope: Scope,
    benign: &[Shape],
) -> Result<Outcome, TestCaseError> {
    let name = SLOTS[slot].0;
    let text = config_text(Some((slot, value)));
    let config = match config::parse(Path::new(CONFIG_PATH), &text) {
        Err(error) => {
            // Refused: at the slot's line, and the message does not spill the value's line
            // breaks into the terminal or the journal.
            prop_assert!(
                error_lines(name).contains(&error.line),
                "{name} = {value:?}: the error is at line {}, not at the slot:\n{error}",
                error.line
            );
            prop_assert!(!error.message.contains(['\n', '\r', '\0']), "{error}");
            return Ok(Outcome::Refused);
        }
        Ok(config) => config,
    };
    let files = generator::render(&config, &options(scope, Path::new("/usr/bin/backupctl")));
    let shape = shapes(&files).map_err(|error| {
        TestCaseError::fail(format!("{name} = {value:?}: unreadable unit: {error}"))
    })?;
    prop_assert_eq!(
        shape.len(),
        benign.len(),
        "{} = {:?}: another number of files",
        name,
        value
    );
    for ((path, keys), (benign_path, benign_keys)) in shape.iter().zip(benign) {
        prop_assert_eq!(
            keys,
            benign_keys,
            "{} = {:?}: {} has other keys than {} of the benign config",
            name,
            value,
            path.display(),
            benign_path.display()
        );
    }
    let read_back = |path: &str| without_specifier_escapes(&description(&files, path));
    let expected = |slot: &str| {
        if name == slot {
            value
        } else {
            benign_value_of(slot)
        }
        .trim_matches(' ')
        .to_string()
    };
    prop_assert_eq!(
        read_back("backup-job.service").map_err(TestCaseError::fail)?,
        expected("job_description")
    );
    prop_assert_eq!(
        read_back("backup-offsite.service").map_err(TestCaseError::fail)?,
        expected("offsite_description")
    );
    prop_assert_eq!(
        read_back("backup@hello.service.d/backupctl.conf").map_err(TestCaseError::fail)?,
        expected("stage_description")
    );
    Ok(Outcome::Loaded)
}

fn benign_value_of(slot: &str) -> &'static str {
    SLOTS
        .iter()
        .find(|(name, _, _)| *name == slot)
        .map(|(_, benign, _)| *benign)
        .expect("a known slot")
}

/// Arbitrary strings, weighted towards what unit files and TOML treat specially.
fn hostile_text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '\n',
        '\r',
        '\0',
        '\t',
        '\\',
        '%',
        '$',
        '"',
        '\'',
        '[',
        ']',
        '=',
        '#',
        ';',
        ' ',
        '/',
        '.',
        ':',
        '@',
        '-',
        'é',
        '日',
        '\u{7f}',
        '\u{85}',
        '\u{a0}',
        '\u{2028}',
        '\u{fdd0}',
        '\u{fffe}',
        '\u{ffff}',
        '\u{1fffe}',
        '\u{10ffff}',
        '\u{fffd}',
        '\u{1b}',
    ]);
    let plain = prop::sample::select(('a'..='z').chain('0'..='9').collect::<Vec<_>>());
    let any = any::<char>();
    let piece = prop_oneof![4 => special, 4 => plain, 1 => any];
    let text = prop::collection::vec(piece, 0..24).prop_map(|chars| chars.into_iter().collect());
    prop_oneof![
        6 => text.clone(),
        // Shapes seen in the issue.
        1 => text.clone().prop_map(|t: String| format!("{t}\\")),
        1 => text.clone().prop_map(|t: String| format!("{t}\n[Service]\nExecStartPre=+/bin/x")),
        1 => text.prop_map(|t: String| format!("x\nExecStartPre=+/usr/local/bin/{t}")),
    ]
}

fn case() -> impl Strategy<Value = (usize, String, bool)> {
    (0..SLOTS.len(), hostile_text(), any::<bool>()).prop_map(|(slot, text, user_scope)| {
        let value = match SLOTS[slot].2 {
            Fill::Free => text,
            Fill::After(prefix) => format!("{prefix}{text}"),
        };
        (slot, value, user_scope)
    })
}

#[test]
fn benign_template_loads_and_renders_readable_units() {
    let text = config_text(None);
    let config = config::parse(Path::new(CONFIG_PATH), &text).unwrap_or_else(|e| panic!("{e}"));
    let files = generator::render(
        &config,
        &options(Scope::System, Path::new("/usr/bin/backupctl")),
    );
    shapes(&files).unwrap();
    assert_eq!(description(&files, "backup-job.service"), "Nightly backup");
    // Every slot appears in the template, and the key slots are keys.
    for (name, _, _) in SLOTS {
        assert!(
            !slot_lines(name).is_empty(),
            "slot {name} is not in the template"
        );
    }
    for key in KEY_SLOTS {
        assert!(SLOTS.iter().any(|(name, _, _)| name == key));
    }
    // "Every stage kind": a kind added to the registry is added here too.
    for entry in backupctl::stages::KINDS {
        assert!(
            config
                .stages
                .iter()
                .any(|stage| stage.spec.name() == entry.name),
            "the template has no stage of kind {}",
            entry.name
        );
    }
}

#[test]
fn reader_sees_what_systemd_sees() {
    let settings = read_unit(
        "# c \\\n[Unit]\nDescription=a \\\nb\n; x\n  # y\nAfter=x.service\\\\\n[Service]\nUser=u\r\nExecStartPre=+/x\0Nice=1\n",
    )
    .unwrap();
    let keys: Vec<(&str, &str, &str)> = settings
        .iter()
        .map(|s| (s.section.as_str(), s.key.as_str(), s.value.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("Unit", "Description", "a  b"),
            ("Unit", "After", "x.service\\\\"),
            ("Service", "User", "u"),
            ("Service", "ExecStartPre", "+/x"),
            ("Service", "Nice", "1"),
        ]
    );
    assert!(read_unit("[Unit]\nDescription=a\nbroken\n").is_err());
}

#[test]
fn no_config_string_adds_a_line_key_or_section_to_a_unit() {
    let started = Instant::now();
    let benign_text = config_text(None);
    let benign_config =
        config::parse(Path::new(CONFIG_PATH), &benign_text).unwrap_or_else(|e| panic!("{e}"));
    let binary = Path::new("/usr/bin/backupctl");
    let benign_system = shapes(&generator::render(
        &benign_config,
        &options(Scope::System, binary),
    ))
    .unwrap();
    let benign_user = shapes(&generator::render(
        &benign_config,
        &options(Scope::User, binary),
    ))
    .unwrap();

    let accepted = std::cell::RefCell::new(Vec::new());
    let counts = std::cell::Cell::new((0usize, 0usize));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(), |(slot, value, user_scope)| {
        let (scope, benign) = if user_scope {
            (Scope::User, &benign_user)
        } else {
            (Scope::System, &benign_system)
        };
        let (refused, loaded) = counts.get();
        match check_case(slot, &value, scope, benign)? {
            Outcome::Refused => counts.set((refused + 1, loaded)),
            Outcome::Loaded => {
                counts.set((refused, loaded + 1));
                let mut accepted = accepted.borrow_mut();
                // One per slot first, so the sample spreads over the keys.
                let (name, benign_value, _) = SLOTS[slot];
                if accepted.len() < VERIFIED
                    && value != benign_value
                    && !accepted.iter().any(|(seen, _)| *seen == name)
                {
                    accepted.push((name, value.clone()));
                }
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let (refused, loaded) = counts.get();
    println!(
        "{} cases in {:.1?}: {refused} refused with a located error, {loaded} loaded with units of the benign shape",
        refused + loaded,
        started.elapsed()
    );
    // Both outcomes must be exercised, or the property says little.
    assert!(
        refused > CASES as usize / 10,
        "only {refused} configs refused"
    );
    assert!(loaded > CASES as usize / 20, "only {loaded} configs loaded");

    verify_sample(&accepted.into_inner());
}

/// `systemd-analyze verify` on the units of accepted configs that hold a fuzzed value.
fn verify_sample(sample: &[(&str, String)]) {
    require_tool("systemd-analyze");
    assert!(
        sample.len() >= VERIFIED / 2,
        "only {} accepted values to verify",
        sample.len()
    );
    let scratch = repo_root().join("target/tmp/unit-injection");
    let _ = std::fs::remove_dir_all(&scratch);
    for (index, (name, value)) in sample.iter().enumerate() {
        let slot = SLOTS.iter().position(|(slot, _, _)| slot == name).unwrap();
        let config =
            config::parse(Path::new(CONFIG_PATH), &config_text(Some((slot, value)))).unwrap();
        // The real binary: verify checks that ExecStart= exists and is executable.
        let files = generator::render(&config, &options(Scope::System, &backupctl_path()));
        let dir = scratch.join(index.to_string());
        generator::write::write_units(&dir, &files).unwrap();
        let units: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                (n.ends_with(".service") || n.ends_with(".timer")) && !n.ends_with("@.service")
            })
            .chain(
                std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter_map(|n| n.strip_suffix(".d").map(String::from)),
            )
            .collect();
        let output = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .args(&units)
            .current_dir(&dir)
            .env("SYSTEMD_LOG_LEVEL", "notice"));
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        let suspicious = [
            "Unknown key",
            "Unknown section",
            "Invalid section",
            "Missing '='",
            "outside of section",
            "not UTF-8 clean",
            "not normalized",
            "gnoring",
        ];
        assert!(
            output.status.success() && !suspicious.iter().any(|s| printed.contains(s)),
            "{name} = {value:?}: systemd-analyze verify {units:?} in {}:\n{printed}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The config's own path goes into every unit's header comment and `ExecStart=`.
#[test]
fn generate_refuses_a_config_path_that_would_break_a_unit_line() {
    let dir = repo_root().join("target/tmp/unit-injection-path");
    let config = dir.join("nightly\nExecStartPre=+x.toml");
    crate::util::write(&config, "[stage.hello]\nkind = \"hello\"\n");
    let output = run(crate::util::backupctl().arg("--config").arg(&config).args([
        "generate",
        "--dry-run",
        "--binary",
        "/usr/bin/backupctl",
    ]));
    let check = run(crate::util::backupctl()
        .arg("--config")
        .arg(&config)
        .arg("check"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(check.status.code(), Some(1), "check accepted it");
    assert!(
        stderr(&check).contains("a line feed (U+000A)"),
        "{}",
        stderr(&check)
    );
    assert!(
        !output.status.success(),
        "generate accepted it:\n{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("the config path")
            && stderr(&output).contains("a line feed (U+000A)"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stdout(&output).contains("ExecStartPre=+x"),
        "{}",
        stdout(&output)
    );
}

/// The binary's path goes into every `ExecStart=` too.
#[test]
fn generate_refuses_a_binary_path_ending_in_a_backslash() {
    let config = repo_root().join("tests/generate/dag-and-settings/config.toml");
    let output = run(crate::util::backupctl().arg("--config").arg(&config).args([
        "generate",
        "--dry-run",
        "--binary",
        "/usr/bin/backupctl\\",
    ]));
    assert!(
        !output.status.success(),
        "generate accepted it:\n{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("the backupctl binary path")
            && stderr(&output).contains("a backslash at its end"),
        "{}",
        stderr(&output)
    );
}
