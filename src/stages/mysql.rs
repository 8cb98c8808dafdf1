//! `mysql`: consistent dumps of a MariaDB or MySQL server's databases, and their restore.
//!
//! Each database is dumped by its own `mysqldump --single-transaction` (one consistent read
//! of InnoDB tables) with its routines, triggers and events, binary columns in hex.
//! `databases = ["all"]` (the default) asks the server at run time, leaving out its system
//! schemas (`information_schema`, `performance_schema`, `sys`, and `mysql`, the grant
//! tables: name it to dump it). Where the dumps go is [`super::dump`]'s.
//!
//! The connection settings and the password reach the tools in an option file of mode 0600
//! (`--defaults-extra-file`), never argv or the environment; a unix socket with the
//! `unix_socket` plugin (the stage runs as the database user) needs no password at all.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;
use toml::Spanned;

use super::dump::{self, Destination, PrivateFile, Sink};
use super::restic;
use super::verbs::{Listing, RestoreArgs, SnapshotsArgs, Verb, VerbContext};
use super::{KindSpec, Needs, Outcome, SpecError, StageContext, StageError, StageKind};

/// The credential name of `password_credential` (`LoadCredential=`).
const PASSWORD_CREDENTIAL: &str = "mysql-password";
/// Left out of `databases = ["all"]`.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "performance_schema", "sys", "mysql"];
/// What every dump is made with (restore compares with the same).
const DUMP_OPTIONS: &[&str] = &[
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--skip-dump-date",
];

fn all() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["all".to_string()])
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `["all"]` (default): every database but the system schemas.
    #[serde(default = "all")]
    pub databases: Spanned<Vec<String>>,
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// A unix socket (e.g. "/run/mysqld/mysqld.sock") or a host name.
    pub host: Option<Spanned<String>>,
    pub port: Option<u16>,
    /// The account to connect as (default: the user the stage runs as).
    pub username: Option<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    /// Like `password_file`, loaded as a systemd credential.
    pub password_credential: Option<Spanned<PathBuf>>,
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

/// A value in an option file, quoted (the file's own escapes for `\` and `"`).
fn option_value(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An SQL identifier in backquotes.
fn identifier(text: &str) -> String {
    format!("`{}`", text.replace('`', "``"))
}

/// An SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

impl Spec {
    fn destination(&self) -> Option<Destination<'_>> {
        if let Some(dir) = &self.directory {
            return Some(Destination::Directory(dir.get_ref()));
        }
        self.repository.as_deref().map(Destination::Restic)
    }

    fn server(&self) -> dump::Server<'_> {
        dump::Server {
            host: self.host.as_ref(),
            network: dump::is_network(self.host.as_ref()),
            password_file: self.password_file.as_ref(),
            password_credential: self.password_credential.as_ref(),
            credential_name: PASSWORD_CREDENTIAL,
            scheme: "mysql",
        }
    }

    /// The option file every client tool reads first (`--defaults-extra-file`).
    fn options(&self, state_dir: &Path, stage: &str) -> Result<PrivateFile, StageError> {
        let mut text = String::from("[client]\ndefault-character-set=utf8mb4\n");
        match &self.host {
            Some(host) if !dump::is_network(self.host.as_ref()) => {
                text.push_str(&format!("socket={}\n", option_value(host.get_ref())));
            }
            Some(host) => {
                text.push_str(&format!(
                    "host={}\nprotocol=TCP\n",
                    option_value(host.get_ref())
                ));
            }
            None => {}
        }
        if let Some(port) = self.port {
            text.push_str(&format!("port={port}\n"));
        }
        if let Some(user) = &self.username {
            text.push_str(&format!("user={}\n", option_value(user)));
        }
        if let Some(password) = dump::read_password(
            self.password_file.as_ref(),
            self.password_credential.as_ref(),
            PASSWORD_CREDENTIAL,
        )? {
            text.push_str(&format!("password={}\n", option_value(&password)));
        }
        PrivateFile::create(state_dir, &format!("{stage}.my.cnf"), &text)
    }

    fn destination_or_fail(&self) -> anyhow::Result<Destination<'_>> {
        self.destination()
            .ok_or_else(|| anyhow::anyhow!("the stage's restic stage is not resolved"))
    }

    /// `restore STAGE --database NAME [--into OTHER] [--replace]`.
    fn restore(&self, ctx: &VerbContext, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
        let destination = self.destination_or_fail()?;
        let Some(wanted) = &args.database else {
            return Err(crate::exit::usage(
                "name the database to restore: --database NAME (`backupctl snapshots STAGE` lists them)",
            ));
        };
        let dumps = dump::list(destination, ctx.stage, dump::Access::command(ctx.scope))?;
        let name = if dumps.iter().any(|d| &d.name == wanted) {
            wanted.clone()
        } else {
            format!("{wanted}.sql")
        };
        let found = dump::find(&dumps, &name, &args.snapshot)?;
        if !args.target.as_os_str().is_empty() {
            std::fs::create_dir_all(&args.target)?;
            let path = args.target.join(&found.name);
            let mut write = std::process::Command::new("dd");
            write
                .arg(format!("of={}", path.display()))
                .arg("status=none");
            dump::load_into(destination, found, dump::Access::command(ctx.scope), write)?;
            crate::outln!("wrote {}", path.display())?;
            return Ok(ExitCode::SUCCESS);
        }
        let database = args
            .into
            .as_deref()
            .unwrap_or(wanted.trim_end_matches(".sql"));
        let options = self.options(&crate::paths::state_dir(ctx.scope), ctx.stage)?;
        let objects = query(
            &options.path,
            &format!(
                "SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {0}) \
                 + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = {0})",
                literal(database)
            ),
        )?;
        let count: u64 = objects.first().and_then(|n| n.parse().ok()).unwrap_or(0);
        if count > 0 && !args.replace {
            return Err(crate::exit::usage(format!(
                "database {database} exists and is not empty ({count} tables and routines); \
                 restore into another one with --into NAME, or drop and re-create it with --replace"
            )));
        }
        if count > 0 {
            query(
                &options.path,
                &format!("DROP DATABASE {}", identifier(database)),
            )?;
        }
        query(
            &options.path,
            &format!("CREATE DATABASE IF NOT EXISTS {}", identifier(database)),
        )?;
        let mut load = std::process::Command::new("mysql");
        load.arg(format!("--defaults-extra-file={}", options.path.display()))
            .arg("--binary-mode")
            .arg(format!("--database={database}"));
        dump::load_into(destination, found, dump::Access::command(ctx.scope), load)?;
        crate::outln!("restored {} into database {database}", found.name)?;
        Ok(ExitCode::SUCCESS)
    }

    fn snapshots(&self, ctx: &VerbContext, _: &SnapshotsArgs) -> anyhow::Result<Listing> {
        dump::print(&dump::list(
            self.destination_or_fail()?,
            ctx.stage,
            dump::Access::command(ctx.scope),
        )?)?;
        Ok(Listing::Done(ExitCode::SUCCESS))
    }
}

/// The rows of one statement, one line each.
fn query(options: &Path, sql: &str) -> anyhow::Result<Vec<String>> {
    query_in(options, None, sql)
}

/// The rows of one statement in `database` (none: no default database), one line each.
fn query_in(options: &Path, database: Option<&str>, sql: &str) -> anyhow::Result<Vec<String>> {
    let mut command = std::process::Command::new("mysql");
    command.arg(format!("--defaults-extra-file={}", options.display()));
    if let Some(database) = database {
        command.arg(format!("--database={database}"));
    }
    let output = command
        .args(["--batch", "--skip-column-names", "--execute"])
        .arg(sql)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run mysql: {e}"))?;
    dump::client_rows(output).map_err(|e| anyhow::anyhow!("mysql failed: {e}"))
}

/// A drill of a mysql stage: a throw-away MariaDB server in the drill's scratch directory
/// (`mariadb-install-db`, `mariadbd --skip-networking` on a socket there), the newest dump
/// of every database loaded and checked (`mariadb-check`); how long that took is logged.
/// A dump that does not load fails the drill, naming the database.
impl super::drill::Drillable for Spec {
    fn drill_needs(&self) -> Needs {
        let mut needs = dump::destination_needs(self.destination());
        needs.writes.clear();
        needs
            .tools
            .extend(["mariadb-install-db", "mariadbd", "mysql", "mysqlcheck"]);
        needs
    }

    fn drill(&self, ctx: &super::drill::DrillContext) -> Result<Outcome, StageError> {
        let destination = self
            .destination()
            .ok_or_else(|| StageError::Failed("the stage's restic stage is not resolved".into()))?;
        let target = ctx.drill.stage.get_ref();
        ctx.stage
            .report
            .status("drill: starting a throw-away MariaDB server");
        let (server, dumps) = dump::start_server_while(
            || ScratchServer::start(ctx.scratch),
            || dump::list(destination, target, dump::Access::drill(ctx.stage.scope)),
        );
        let dumps = dumps
            .map_err(|e| StageError::Failed(format!("listing the dumps of {target}: {e:#}")))?;
        let newest = dump::newest(&dumps);
        if newest.is_empty() {
            return Err(StageError::Failed(format!(
                "{target} has no dumps to drill"
            )));
        }
        let server = server?;
        let started = std::time::Instant::now();
        for found in &newest {
            let database = found.name.trim_end_matches(".sql");
            ctx.stage
                .report
                .status(&format!("drill: loading {database} of {target}"));
            let failed = |e: &dyn std::fmt::Display| {
                StageError::Failed(format!("database {database}: the dump does not load: {e}"))
            };
            server
                .sql(&format!("CREATE DATABASE {}", identifier(database)))
                .map_err(|e| failed(&e))?;
            let mut load = server.client("mysql");
            load.arg("--binary-mode")
                .arg(format!("--database={database}"));
            dump::load_into(
                destination,
                found,
                dump::Access::drill(ctx.stage.scope),
                load,
            )
            .map_err(|e| failed(&e))?;
            let output = server
                .client("mysqlcheck")
                .args(["--check", "--databases", database])
                .output()
                .map_err(|e| failed(&e))?;
            let text = String::from_utf8_lossy(&output.stdout);
            // A failed table says `error : …`; a sequence's engine only notes it cannot check.
            if !output.status.success() || text.lines().any(|l| l.starts_with("error")) {
                return Err(StageError::Failed(format!(
                    "database {database}: the restored tables fail their check: {}",
                    text.trim()
                )));
            }
            dump::check_answers(
                database,
                destination,
                &dumps,
                found,
                dump::Access::drill(ctx.stage.scope),
                |sql| server.rows(database, sql),
            )?;
        }
        let took = started.elapsed();
        tracing::info!(
            backupctl_restore_seconds = took.as_secs_f64(),
            "drill: {} database(s) of {target} loaded and checked in {}",
            newest.len(),
            crate::report::short_duration(took)
        );
        Ok(Outcome {
            warnings: Vec::new(),
            figures: crate::report::Figures {
                restore_seconds: Some(took.as_secs_f64()),
                files: Some(newest.len() as u64),
                ..crate::report::Figures::default()
            },
        })
    }
}

/// A MariaDB server of a drill, on a socket in the scratch directory; killed on drop.
struct ScratchServer {
    socket: PathBuf,
    child: std::process::Child,
    /// The socket's directory: in /tmp (the unit's own, `PrivateTmp=`), since a path in the
    /// scratch directory may pass the 107 bytes a socket's path may have.
    socket_dir: PathBuf,
}

impl ScratchServer {
    fn start(scratch: &Path) -> Result<ScratchServer, StageError> {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or_else(|| "root".to_string(), |u| u.name);
        let data = scratch.join("data");
        // The server's temporary tables and sort files go to the scratch directory, chosen
        // for its room, not to /tmp: often a small tmpfs, and shared with everyone.
        let tmp = scratch.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| StageError::io("cannot create the drill server's tmpdir", e))?;
        crate::process::Command::new("mariadb-install-db")
            .args(["--no-defaults", "--skip-test-db"])
            .arg(format!("--user={user}"))
            .arg("--auth-root-authentication-method=socket")
            .arg(format!("--auth-root-socket-user={user}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .run()?;
        let socket_dir =
            std::env::temp_dir().join(format!("backupctl-drill-{}", &super::new_id()[..12]));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&socket_dir)
                .map_err(|e| StageError::io("cannot create a socket directory in /tmp", e))?;
        }
        let socket = socket_dir.join("mysqld.sock");
        let child = std::process::Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--user={user}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", scratch.join("pid").display()))
            .arg(format!("--log-error={}", scratch.join("log").display()))
            .args(["--skip-networking", "--skip-log-bin"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| StageError::Failed(format!("cannot start mariadbd: {e}")))?;
        let server = ScratchServer {
            socket,
            child,
            socket_dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while server.sql("SELECT 1").is_err() {
            if crate::signals::stopped() {
                return Err(StageError::Interrupted);
            }
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(scratch.join("log")).unwrap_or_default();
                return Err(StageError::Failed(format!(
                    "the drill's MariaDB server did not start: {}",
                    log.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(server)
    }

    fn client(&self, tool: &str) -> std::process::Command {
        let mut command = std::process::Command::new(tool);
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--default-character-set=utf8mb4")
            .stdin(std::process::Stdio::null());
        command
    }

    /// The rows of one statement in `database`, one line each.
    fn rows(&self, database: &str, sql: &str) -> anyhow::Result<Vec<String>> {
        let output = self
            .client("mysql")
            .args(["--batch", "--skip-column-names"])
            .arg(format!("--database={database}"))
            .args(["--execute", sql])
            .output()?;
        dump::client_rows(output)
    }

    fn sql(&self, sql: &str) -> anyhow::Result<()> {
        let output = self.client("mysql").args(["--execute", sql]).output()?;
        dump::client_rows(output).map(drop)
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

impl StageKind for Spec {
    const NAME: &'static str = "mysql";
    const DRILL: Option<super::drill::Drill<Self>> = Some(super::drill::Drill::of("a mysql stage"));
    const RESTORE: Option<Verb<Self, RestoreArgs>> = Some(Self::restore);
    const SNAPSHOTS: Option<Verb<Self, SnapshotsArgs, Listing>> = Some(Self::snapshots);

    fn validate(&self) -> Result<(), SpecError> {
        dump::validate_destination(&self.directory, &self.restic)?;
        dump::validate_checks(&self.checks)?;
        dump::validate_databases(&self.databases)?;
        self.server().validate()?;
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
        let mut needs = self.server().needs(vec!["mysqldump", "mysql"]);
        needs.merge(dump::destination_needs(self.destination()));
        needs
    }

    /// `hello`: the server answers with the configured authentication (its version), and a
    /// dump tool (`mysqldump` or `mariadb-dump`) is there.
    fn server_checks(&self, state_dir: &Path, stage: &str) -> Vec<crate::preflight::Check> {
        let check = |what, ok, detail| crate::preflight::Check {
            what,
            item: stage.to_string(),
            ok,
            detail,
        };
        let connection = self
            .options(state_dir, stage)
            .map_err(|e| e.to_string())
            .and_then(|options| {
                query(
                    &options.path,
                    "SELECT CONCAT(VERSION(), ' as ', CURRENT_USER())",
                )
                .map_err(|e| format!("{e:#}"))
            });
        let mut checks = vec![match connection {
            Ok(rows) => check(
                "mysql connection",
                true,
                format!("server {}", rows.join(" ")),
            ),
            Err(error) => check("mysql connection", false, error),
        }];
        let tool = ["mysqldump", "mariadb-dump"].into_iter().find_map(|tool| {
            let output = std::process::Command::new(tool)
                .arg("--version")
                .output()
                .ok()?;
            output
                .status
                .success()
                .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        });
        checks.push(match tool {
            Some(version) => check("mysql dump tool", true, version),
            None => check(
                "mysql dump tool",
                false,
                "neither mysqldump nor mariadb-dump runs; install the client \
                 (Debian: apt install mariadb-client)"
                    .to_string(),
            ),
        });
        checks
    }

    fn run(&self, ctx: &StageContext) -> Result<Outcome, StageError> {
        let destination = self
            .destination()
            .ok_or_else(|| StageError::Failed("the stage's restic stage is not resolved".into()))?;
        let options = self.options(&ctx.state_dir, &ctx.stage.name)?;
        let defaults = format!("--defaults-extra-file={}", options.path.display());
        let databases = dump::select(self.databases.get_ref(), &self.exclude_databases, || {
            let command = crate::process::Command::new("mysql").arg(&defaults).args([
                "--batch",
                "--skip-column-names",
                "--execute",
                "SHOW DATABASES",
            ]);
            let mut names = dump::query_lines(command).map_err(|error| match error {
                StageError::Tool(tool) => {
                    StageError::Failed(format!("MySQL, listing the databases: {tool}"))
                }
                other => other,
            })?;
            names.retain(|name| !SYSTEM_SCHEMAS.contains(&name.as_str()));
            Ok(names)
        })?;
        let mut sink = Sink::open(destination, ctx, Self::NAME, &self.server().host_label())?;
        for (done, database) in databases.iter().enumerate() {
            ctx.report.status(&format!(
                "mysql: dumping {database} ({} of {})",
                done + 1,
                databases.len()
            ));
            let answers = dump::ask_checks(database, self.checks.get_ref(), |sql| {
                query_in(&options.path, Some(database), sql)
            })?;
            let mut argv = vec!["mysqldump".to_string(), defaults.clone()];
            argv.extend(DUMP_OPTIONS.iter().map(|o| o.to_string()));
            argv.push("--".into());
            argv.push(database.clone());
            let stored = sink
                .stream(&format!("{database}.sql"), &argv, &[])
                .map_err(|error| match error {
                    StageError::Interrupted => StageError::Interrupted,
                    other => StageError::Failed(format!("database {database}: {other}")),
                })?;
            let bytes = stored.bytes;
            if !answers.is_empty() {
                sink.store_answers(&format!("{database}.sql"), answers)?;
            }
            tracing::info!(
                "mysql: {database} dumped ({})",
                crate::out::human_bytes(bytes)
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

    #[test]
    fn checks_its_keys_and_quotes() {
        let spec: Spec = toml::from_str("restic = \"r\"\nhost = \"db\"\nport = 3307").unwrap();
        spec.validate().unwrap();
        assert!(spec.needs().network);
        let bad: Spec = toml::from_str("directory = \"/d\"\ndatabases = [\"all\", \"x\"]").unwrap();
        assert!(bad.validate().is_err());
        assert_eq!(option_value("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(identifier("a`b"), "`a``b`");
        assert_eq!(literal("o'k\\"), "'o''k\\\\'");
    }
}
