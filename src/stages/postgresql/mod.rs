//! `postgresql`: consistent dumps of a PostgreSQL server's databases, and their restore.
//!
//! Each database is dumped by its own `pg_dump` (one transaction, one snapshot of that
//! database), the roles and tablespaces by `pg_dumpall --globals-only` (`globals.sql`).
//! `databases = ["all"]` (the default) asks the server at run time for the databases that
//! accept connections and are not templates. Where the dumps go is [`super::dump`]'s: a
//! restic repository (streamed, no temporary copy) or a directory (replaced atomically).
//!
//! The connection is libpq's: a unix socket with peer authentication (the job runs as
//! `user = "postgres"`) or host/port with a password, which reaches the tools through a
//! passfile of mode 0600 (`PGPASSFILE`), never argv or the environment.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use toml::Spanned;

mod drill;
mod hello;

use super::dump::{self, Destination, PrivateFile, Sink};
use super::restic;
use super::verbs::{Listing, RestoreArgs, SnapshotsArgs, Verb, VerbContext};
use super::{KindSpec, Needs, Outcome, SpecError, StageContext, StageError, StageKind};
use crate::paths::Scope;
use crate::process::Command;

/// The credential name of `password_credential` (`LoadCredential=`).
const PASSWORD_CREDENTIAL: &str = "postgresql-password";
/// The dump of the roles and tablespaces.
const GLOBALS: &str = "globals.sql";

/// `pg_dump --format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Compressed, restored by `pg_restore` (objects selectable, parallel restore).
    #[default]
    Custom,
    /// SQL text, loaded by `psql`.
    Plain,
    /// A directory of files, dumped and restored with `jobs` in parallel; `directory` only.
    Directory,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Custom => "dump",
            Format::Plain => "sql",
            Format::Directory => "dir",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Format::Custom => "--format=custom",
            Format::Plain => "--format=plain",
            Format::Directory => "--format=directory",
        }
    }
}

fn all() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["all".to_string()])
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `["all"]` (default): every database that accepts connections, but templates.
    #[serde(default = "all")]
    pub databases: Spanned<Vec<String>>,
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// A socket directory (e.g. "/run/postgresql") or a host name; libpq's default when absent.
    pub host: Option<Spanned<String>>,
    pub port: Option<u16>,
    /// The role to connect as (default: the user the stage runs as).
    pub username: Option<String>,
    /// The database the list of databases is asked from (default "postgres").
    pub maintenance_database: Option<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    /// Like `password_file`, loaded as a systemd credential.
    pub password_credential: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub format: Format,
    /// Parallel jobs of the directory format.
    pub jobs: Option<Spanned<u32>>,
    /// Also dump the roles and tablespaces (`pg_dumpall --globals-only`, needs a superuser).
    #[serde(default = "yes")]
    pub globals: bool,
    /// Queries whose answers at dump time are recorded with the dump; a drill asks the
    /// restored database again and compares.
    #[serde(default = "dump::no_checks")]
    pub checks: Spanned<Vec<String>>,
    /// Write the dumps into this directory (a later stage copies it).
    pub directory: Option<Spanned<PathBuf>>,
    /// Stream the dumps into the repository of this restic stage.
    pub restic: Option<Spanned<String>>,
    /// The restic stage `restic` names, once resolved.
    #[serde(skip)]
    pub repository: Option<Box<restic::Spec>>,
}

impl Spec {
    fn destination(&self) -> Option<Destination<'_>> {
        if let Some(dir) = &self.directory {
            return Some(Destination::Directory(dir.get_ref()));
        }
        self.repository.as_deref().map(Destination::Restic)
    }

    fn require_destination(&self) -> anyhow::Result<Destination<'_>> {
        self.destination()
            .ok_or_else(|| anyhow::anyhow!("the stage's restic stage is not resolved"))
    }

    /// A TCP connection (not a socket directory, not libpq's default socket).
    fn server(&self) -> dump::Server<'_> {
        dump::Server {
            host: self.host.as_ref(),
            network: dump::is_network(self.host.as_ref()),
            password_file: self.password_file.as_ref(),
            password_credential: self.password_credential.as_ref(),
            credential_name: PASSWORD_CREDENTIAL,
            scheme: "postgresql",
        }
    }

    fn maintenance_database(&self) -> &str {
        self.maintenance_database.as_deref().unwrap_or("postgres")
    }

    /// The connection, with a passfile in `state_dir` when there is a password.
    fn connect(&self, state_dir: &Path, stage: &str) -> Result<Connection, StageError> {
        let password = dump::read_password(
            self.password_file.as_ref(),
            self.password_credential.as_ref(),
            PASSWORD_CREDENTIAL,
        )?;
        let passfile = match password {
            Some(password) => Some(PrivateFile::create(
                state_dir,
                &format!("{stage}.pgpass"),
                &format!("*:*:*:*:{}\n", passfile_field(&password)),
            )?),
            None => None,
        };
        let mut args = vec!["--no-password".to_string()];
        if let Some(host) = &self.host {
            args.push(format!("--host={}", host.get_ref()));
        }
        if let Some(port) = self.port {
            args.push(format!("--port={port}"));
        }
        if let Some(user) = &self.username {
            args.push(format!("--username={user}"));
        }
        Ok(Connection { args, passfile })
    }

    fn dump_name(&self, database: &str) -> String {
        format!("{database}.{}", self.format.extension())
    }

    /// `restore STAGE --database NAME`.
    fn restore(&self, ctx: &VerbContext, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
        let destination = self.require_destination()?;
        let Some(wanted) = &args.database else {
            return Err(crate::exit::usage(
                "name the database to restore: --database NAME (`backupctl snapshots STAGE` lists them)",
            ));
        };
        let dumps = dump::list(destination, ctx.stage, dump::Access::command(ctx.scope))?;
        let name = if dumps.iter().any(|d| &d.name == wanted) {
            wanted.clone()
        } else {
            self.dump_name(wanted)
        };
        let found = dump::find(&dumps, &name, &args.snapshot)?;
        if !args.target.as_os_str().is_empty() {
            return fetch_into(destination, found, ctx.scope, &args.target);
        }
        if name == GLOBALS {
            return Err(crate::exit::usage(
                "the roles and tablespaces (globals.sql) are written with --target DIR and \
                 loaded with psql by hand (docs/databases.md)",
            ));
        }
        let database = args.into.as_deref().unwrap_or(wanted);
        let connection = self.connect(&crate::paths::state_dir(ctx.scope), ctx.stage)?;
        self.prepare_target(&connection, database, args.replace)?;
        let mut load = match found.path.extension().and_then(|e| e.to_str()) {
            Some("sql") => {
                let mut psql = connection.std_command("psql");
                psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
                    .arg(format!("--dbname={}", conninfo(database)))
                    .stdout(std::process::Stdio::null());
                psql
            }
            Some("dir") => {
                let mut restore = connection.std_command("pg_restore");
                restore
                    .arg("--exit-on-error")
                    .arg(format!("--dbname={}", conninfo(database)));
                if let Some(jobs) = &self.jobs {
                    restore.arg(format!("--jobs={}", jobs.get_ref()));
                }
                restore.arg(&found.path);
                let status = restore.status()?;
                anyhow::ensure!(status.success(), "pg_restore failed ({status})");
                println!("restored {} into database {database}", found.name);
                return Ok(ExitCode::SUCCESS);
            }
            _ => {
                let mut restore = connection.std_command("pg_restore");
                restore
                    .arg("--exit-on-error")
                    .arg(format!("--dbname={}", conninfo(database)));
                restore
            }
        };
        load.stderr(std::process::Stdio::inherit());
        dump::load_into(destination, found, dump::Access::command(ctx.scope), load)?;
        crate::outln!("restored {} into database {database}", found.name)?;
        Ok(ExitCode::SUCCESS)
    }

    /// Creates `database` when missing; refuses one that holds anything unless `replace`,
    /// which drops and re-creates it.
    fn prepare_target(
        &self,
        connection: &Connection,
        database: &str,
        replace: bool,
    ) -> anyhow::Result<()> {
        let maintenance = self.maintenance_database();
        let exists = connection.query(
            maintenance,
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                literal(database)
            ),
        )?;
        if !exists.is_empty() {
            let objects = connection.query(
                database,
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
            )?;
            let count: u64 = objects.first().and_then(|n| n.parse().ok()).unwrap_or(0);
            if count == 0 {
                return Ok(());
            }
            if !replace {
                return Err(crate::exit::usage(format!(
                    "database {database} exists and is not empty ({count} relations); restore \
                     into another one with --into NAME, or drop and re-create it with --replace"
                )));
            }
            connection.query(
                maintenance,
                &format!("DROP DATABASE {} WITH (FORCE)", identifier(database)),
            )?;
        }
        connection.query(
            maintenance,
            &format!(
                "CREATE DATABASE {} TEMPLATE template0",
                identifier(database)
            ),
        )?;
        Ok(())
    }

    /// `snapshots STAGE`: the dumps, per database.
    fn snapshots(&self, ctx: &VerbContext, args: &SnapshotsArgs) -> anyhow::Result<Listing> {
        let dumps = dump::list(
            self.require_destination()?,
            ctx.stage,
            dump::Access::command(ctx.scope),
        )?;
        if args.json {
            let rows: Vec<serde_json::Value> = dumps
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "name": d.name, "time": d.time, "snapshot": d.snapshot, "path": d.path,
                    })
                })
                .collect();
            crate::outln!("{}", serde_json::Value::Array(rows))?;
        } else {
            dump::print(&dumps)?;
        }
        Ok(Listing::Done(ExitCode::SUCCESS))
    }

    fn discover(&self, connection: &Connection) -> Result<Vec<String>, StageError> {
        let command = connection
            .command("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", conninfo(self.maintenance_database())))
            .arg("--command=SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1");
        dump::query_lines(command)
            .map_err(|error| connection_failed("listing the databases", error))
    }
}

/// A failed client tool, said as what it was doing.
fn connection_failed(what: &str, error: StageError) -> StageError {
    match error {
        StageError::Tool(tool) => StageError::Failed(format!("PostgreSQL, {what}: {tool}")),
        other => other,
    }
}

/// How the client tools reach the server.
struct Connection {
    /// `--host`, `--port`, `--username`, `--no-password`.
    args: Vec<String>,
    passfile: Option<PrivateFile>,
}

impl Connection {
    fn env(&self) -> Vec<(String, String)> {
        // The passfile's *name*; libpq reads the password from it.
        match &self.passfile {
            Some(file) => vec![(
                "PGPASSFILE".to_string(),
                file.path.to_string_lossy().into_owned(),
            )],
            None => Vec::new(),
        }
    }

    fn command<'a>(&self, tool: &str) -> Command<'a> {
        let mut command = Command::new(tool);
        // A caller's libpq variables would point the tools elsewhere.
        for var in ["PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGDATABASE"] {
            command = command.env_remove(var);
        }
        for (key, value) in self.env() {
            command = command.env(key, value);
        }
        command.args(&self.args)
    }

    fn std_command(&self, tool: &str) -> std::process::Command {
        let mut command = std::process::Command::new(tool);
        for var in ["PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGDATABASE"] {
            command.env_remove(var);
        }
        command.envs(self.env()).args(&self.args);
        command
    }

    /// The rows of one SQL statement in `database`, one line each.
    fn query(&self, database: &str, sql: &str) -> anyhow::Result<Vec<String>> {
        let output = self
            .std_command("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", conninfo(database)))
            .arg(format!("--command={sql}"))
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run psql: {e}"))?;
        let rows = dump::client_rows(output)
            .map_err(|e| anyhow::anyhow!("psql failed in database {database}: {e}"))?;
        Ok(rows.into_iter().filter(|l| !l.is_empty()).collect())
    }
}

/// A libpq connection string naming only the database: a name holding `=` is then not
/// taken for a connection string itself.
fn conninfo(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// A field of a passfile line (`:` and `\` escaped).
fn passfile_field(text: &str) -> String {
    text.replace('\\', "\\\\").replace(':', "\\:")
}

/// An SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An SQL identifier, quoted.
fn identifier(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `--target DIR`: the dump file written into DIR, for loading by hand.
fn fetch_into(
    destination: Destination,
    found: &dump::Dump,
    scope: Scope,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(&found.name);
    if found.path.is_dir() {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&found.path)
            .arg(&path)
            .status()?;
        anyhow::ensure!(status.success(), "cp failed ({status})");
    } else {
        let mut cat = std::process::Command::new("dd");
        cat.arg(format!("of={}", path.display()))
            .arg("status=none")
            .stdout(std::process::Stdio::null());
        dump::load_into(destination, found, dump::Access::command(scope), cat)?;
    }
    crate::outln!("wrote {}", path.display())?;
    Ok(ExitCode::SUCCESS)
}

impl StageKind for Spec {
    const NAME: &'static str = "postgresql";
    const DRILL: Option<super::drill::Drill<Self>> =
        Some(super::drill::Drill::of("a postgresql stage"));
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(Self::restore);
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = Some(Self::snapshots);

    fn validate(&self) -> Result<(), SpecError> {
        dump::validate_destination(&self.directory, &self.restic)?;
        dump::validate_checks(&self.checks)?;
        dump::validate_databases(&self.databases)?;
        self.server().validate()?;
        if let Some(host) = &self.host
            && host.get_ref().starts_with('/')
        {
            super::require_normalized(host.span(), host.get_ref(), "host")?;
        }
        if self.format == Format::Directory && self.restic.is_some() {
            return Err(SpecError::invalid(
                self.restic.as_ref().map(Spanned::span),
                "`format = \"directory\"` writes a directory, which cannot be streamed into restic",
                "use format = \"custom\" with `restic`, or `directory` as the destination",
            ));
        }
        if let Some(jobs) = &self.jobs
            && (self.format != Format::Directory || *jobs.get_ref() == 0)
        {
            return Err(SpecError::invalid(
                Some(jobs.span()),
                "`jobs` is for `format = \"directory\"`, at least 1",
                "pg_dump runs in parallel only with the directory format",
            ));
        }
        Ok(())
    }

    fn resolve(&mut self, stages: &[(String, KindSpec)]) -> Result<(), SpecError> {
        self.repository = dump::resolve_restic(self.restic.as_ref(), stages)?;
        Ok(())
    }

    fn repositories(&self) -> Vec<crate::repo_lock::RepositoryUse> {
        dump::repositories(self.destination())
    }

    fn needs(&self) -> Needs {
        let mut needs = self.server().needs(vec!["pg_dump", "psql"]);
        if self.globals {
            needs.tools.push("pg_dumpall");
        }
        needs.merge(dump::destination_needs(self.destination()));
        needs
    }

    fn server_checks(&self, state_dir: &Path, stage: &str) -> Vec<crate::preflight::Check> {
        self.hello_checks(state_dir, stage)
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let destination = self
            .destination()
            .ok_or_else(|| StageError::Failed("the stage's restic stage is not resolved".into()))?;
        let connection = self.connect(&ctx.state_dir, &ctx.stage.name)?;
        let databases = dump::select(self.databases.get_ref(), &self.exclude_databases, || {
            self.discover(&connection)
        })?;
        if self.globals && databases.iter().any(|db| self.dump_name(db) == GLOBALS) {
            return Err(StageError::Failed(format!(
                "a database's dump would be called {GLOBALS}, like the roles' dump; use another format or set globals = false"
            )));
        }
        let mut sink = Sink::open(destination, ctx, Self::NAME, &self.server().host_label())?;
        let env = connection.env();
        if self.globals {
            ctx.report
                .status("postgresql: dumping roles and tablespaces");
            let mut argv = vec!["pg_dumpall".to_string(), "--globals-only".to_string()];
            argv.extend(connection.args.iter().cloned());
            argv.push(format!("--database={}", self.maintenance_database()));
            sink.stream(GLOBALS, &argv, &env)?;
        }
        for (done, database) in databases.iter().enumerate() {
            ctx.report.status(&format!(
                "postgresql: dumping {database} ({} of {})",
                done + 1,
                databases.len()
            ));
            let name = self.dump_name(database);
            let answers = dump::ask_checks(database, self.checks.get_ref(), |query| {
                connection.query(database, query)
            })?;
            let mut argv = vec!["pg_dump".to_string(), self.format.flag().to_string()];
            argv.extend(connection.args.iter().cloned());
            argv.push(format!("--dbname={}", conninfo(database)));
            let stored = if self.format == Format::Directory {
                if let Some(jobs) = &self.jobs {
                    argv.push(format!("--jobs={}", jobs.get_ref()));
                }
                sink.write_with(&name, |path| {
                    let mut command = Command::new(&argv[0])
                        .args(&argv[1..])
                        .arg(format!("--file={}", path.display()))
                        .on_line(|line| ctx.log_output(line));
                    for (key, value) in &env {
                        command = command.env(key, value);
                    }
                    command.run()?;
                    Ok(())
                })
            } else {
                sink.stream(&name, &argv, &env)
            };
            let stored = stored.map_err(|error| match error {
                StageError::Interrupted => StageError::Interrupted,
                other => StageError::Failed(format!("database {database}: {other}")),
            })?;
            let (bytes, snapshot) = (stored.bytes, stored.snapshot.clone());
            if !answers.is_empty() {
                sink.store_answers(&name, answers)?;
            }
            tracing::info!(
                "postgresql: {database} dumped ({}){}",
                crate::out::human_bytes(bytes),
                snapshot
                    .as_deref()
                    .map(|id| format!(" into snapshot {}", &id[..id.len().min(8)]))
                    .unwrap_or_default()
            );
        }
        Ok(Outcome {
            warnings: Vec::new(),
            figures: sink.figures(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<Spec, String> {
        let spec: Spec = toml::from_str(text).map_err(|e| e.to_string())?;
        match spec.validate() {
            Ok(()) => Ok(spec),
            Err(SpecError::Invalid { message, .. } | SpecError::Conflict { message, .. }) => {
                Err(message)
            }
            Err(SpecError::Toml(error)) => Err(error.to_string()),
        }
    }

    #[test]
    fn checks_its_keys() {
        let ok = spec("directory = \"/var/backups/pg\"").unwrap();
        assert_eq!(ok.databases.get_ref(), &["all"]);
        assert_eq!(ok.needs().writes, [PathBuf::from("/var/backups/pg")]);
        assert!(!ok.needs().network);
        for (text, expected) in [
            ("", "needs `directory` or `restic`"),
            ("directory = \"/d\"\nrestic = \"r\"", "only one of"),
            ("directory = \"d\"", "absolute"),
            ("directory = \"/d\"\ndatabases = []", "is empty"),
            (
                "directory = \"/d\"\ndatabases = [\"all\", \"x\"]",
                "besides names",
            ),
            (
                "restic = \"r\"\nformat = \"directory\"",
                "cannot be streamed",
            ),
            (
                "directory = \"/d\"\njobs = 4",
                "is for `format = \"directory\"",
            ),
            ("directory = \"/d\"\ncolour = 1", "unknown field"),
        ] {
            let error = spec(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let tcp =
            spec("directory = \"/d\"\nhost = \"db.example\"\npassword_credential = \"/etc/pw\"")
                .unwrap();
        assert!(tcp.needs().network);
        assert_eq!(
            tcp.needs().credentials,
            [("postgresql-password".to_string(), PathBuf::from("/etc/pw"))]
        );
    }

    #[test]
    fn quotes_names_for_libpq_and_sql() {
        assert_eq!(conninfo("a b'c\\"), "dbname='a b\\'c\\\\'");
        assert_eq!(passfile_field("p:w\\"), "p\\:w\\\\");
        assert_eq!(literal("o'k"), "'o''k'");
        assert_eq!(identifier("a\"b"), "\"a\"\"b\"");
    }
}
