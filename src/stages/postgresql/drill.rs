//! A drill of a postgresql stage: a throw-away PostgreSQL server in the drill's scratch
//! directory (`initdb`, then `postgres` listening only on a unix socket there), the newest
//! roles' dump (`globals.sql`) loaded first, then the newest dump of every database, each
//! into a new database; how long the loading took is the stage's restore time. A dump that
//! does not load fails the drill, naming the database.
//!
//! `initdb` and `postgres` refuse to run as root. A drill running as root runs them as the
//! `postgres` account (the one the server packages of Debian, Fedora and NixOS create), in
//! a directory of the scratch directory it owns (in the unit's private /tmp when the scratch
//! directory is closed to it, as root's own state directory under /root is); the drill's unit gets the capabilities to
//! switch to it, hand it that directory and stop its server (CAP_SETUID, CAP_SETGID,
//! CAP_CHOWN, CAP_KILL). A drill running as another user (`user = "postgres"` on the job)
//! runs them as itself.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{Format, GLOBALS, Spec};
use crate::stages::drill::{DrillContext, Drillable};
use crate::stages::dump::{self, Destination};
use crate::stages::{Needs, Outcome, StageError};

/// The account a drill running as root runs the throw-away server as.
const SERVER_ACCOUNT: &str = "postgres";
/// The superuser `initdb` makes, as which the loading tools connect.
const SUPERUSER: &str = "postgres";
/// Where Debian keeps each major version's server programs (they are not on `PATH`).
const DEBIAN_SERVERS: &str = "/usr/lib/postgresql";
/// The longest path a unix socket may have, less a margin.
const SOCKET_PATH_MAX: usize = 100;

impl Drillable for Spec {
    fn drill_needs(&self) -> Needs {
        let mut needs = dump::destination_needs(self.destination());
        needs.writes.clear();
        // initdb and postgres are looked up at run time (Debian keeps them off PATH).
        needs.tools.extend(["pg_restore", "psql"]);
        needs
    }

    fn drill_capabilities(&self) -> Vec<&'static str> {
        vec!["CAP_CHOWN", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"]
    }

    fn drill(&self, ctx: &DrillContext) -> Result<Outcome, StageError> {
        let destination = self
            .destination()
            .ok_or_else(|| StageError::Failed("the stage's restic stage is not resolved".into()))?;
        let target = ctx.drill.stage.get_ref();
        let access = dump::Access::drill(ctx.stage.scope);
        ctx.stage
            .report
            .status("drill: starting a throw-away PostgreSQL server");
        // The server starts (initdb, postgres) while what the drill reads before loading is
        // fetched.
        let (server, fetched) = dump::start_server_while(
            || Cluster::start(ctx.scratch),
            || Fetched::from(destination, target, access),
        );
        let (fetched, server) = (fetched?, server?);
        let started = std::time::Instant::now();
        let fail = |database: &str, e: anyhow::Error| {
            let said = format!("{e:#}");
            // The owners a dump names are in globals.sql, which such a stage does not make.
            let hint = if !self.globals && said.contains("role \"") {
                " (the stage has `globals = false`: the drill's server has no roles but \
                 postgres; set `globals = true` to dump them with the databases)"
            } else {
                ""
            };
            StageError::Failed(format!(
                "database {database}: the dump does not load: {said}{hint}"
            ))
        };
        let (mut loaded, mut checked) = (0u64, 0);
        // The roles first: the databases' objects name their owners.
        if let Some(globals) = &fetched.globals {
            ctx.stage
                .report
                .status(&format!("drill: loading the roles of {target}"));
            server
                .load_globals(globals)
                .map_err(|e| fail("globals", e))?;
            loaded += 1;
        }
        for (found, answers) in fetched.databases() {
            if crate::signals::stopped() {
                return Err(StageError::Interrupted);
            }
            let Some(database) = database_of(&found.name) else {
                continue;
            };
            ctx.stage
                .report
                .status(&format!("drill: loading {database} of {target}"));
            server
                .load_database(destination, found, database, ctx, self)
                .map_err(|e| fail(database, e))?;
            checked += dump::compare_checks(database, answers.as_ref(), |query| {
                server.psql(database, query)
            })?;
            loaded += 1;
        }
        // A recovery fetches the roles before it loads them: that fetch counts, although
        // the drill made it while its server started.
        let took = started.elapsed() + fetched.globals_took;
        tracing::info!(
            backupctl_restore_seconds = took.as_secs_f64(),
            "drill: {loaded} dump(s) of {target} loaded in {}, {checked} check(s) answered as at dump time",
            crate::report::short_duration(took)
        );
        Ok(Outcome {
            warnings: Vec::new(),
            figures: crate::report::Figures {
                restore_seconds: Some(took.as_secs_f64()),
                files: Some(loaded),
                ..crate::report::Figures::default()
            },
        })
    }
}

/// What a drill reads of the destination before it loads anything: the dumps, the newest
/// roles' dump, and the answers recorded with each newest database dump.
struct Fetched {
    dumps: Vec<dump::Dump>,
    globals: Option<String>,
    /// How long fetching the roles' dump took (part of the restore time).
    globals_took: std::time::Duration,
    /// Per newest database dump (by name), the answers recorded with it.
    answers: Vec<(String, Option<dump::Answers>)>,
}

impl Fetched {
    fn from(
        destination: Destination,
        target: &str,
        access: dump::Access,
    ) -> Result<Fetched, StageError> {
        let dumps = dump::list(destination, target, access)
            .map_err(|e| StageError::Failed(format!("listing the dumps of {target}: {e:#}")))?;
        let newest = dump::newest(&dumps);
        if newest.iter().all(|d| d.name == GLOBALS) {
            return Err(StageError::Failed(format!(
                "{target} has no dumps to drill"
            )));
        }
        let fetch_started = std::time::Instant::now();
        let globals = newest
            .iter()
            .find(|d| d.name == GLOBALS)
            .map(|found| dump::read_text(destination, found, access))
            .transpose()
            .map_err(|e| {
                StageError::Failed(format!("database globals: the dump does not load: {e:#}"))
            })?;
        let globals_took = fetch_started.elapsed();
        let mut answers = Vec::new();
        for found in newest.iter().filter(|d| d.name != GLOBALS) {
            let recorded =
                dump::recorded_answers(destination, &dumps, found, access).map_err(|e| {
                    StageError::Failed(format!(
                        "database {}: {e:#}",
                        database_of(&found.name).unwrap_or(&found.name)
                    ))
                })?;
            answers.push((found.name.clone(), recorded));
        }
        Ok(Fetched {
            dumps,
            globals,
            globals_took,
            answers,
        })
    }

    /// The newest dump of each database, with the answers recorded with it.
    fn databases(&self) -> impl Iterator<Item = (&dump::Dump, &Option<dump::Answers>)> {
        dump::newest(&self.dumps)
            .into_iter()
            .filter(|d| d.name != GLOBALS)
            .filter_map(|found| {
                let (_, answers) = self.answers.iter().find(|(name, _)| *name == found.name)?;
                Some((found, answers))
            })
    }
}

/// The database a dump's file name is of (`shop.dump` → `shop`; `globals.sql` names the
/// roles); `None` for a file that is not a dump.
fn database_of(name: &str) -> Option<&str> {
    if name == GLOBALS {
        return Some("globals");
    }
    [Format::Custom, Format::Plain, Format::Directory]
        .iter()
        .find_map(|format| name.strip_suffix(&format!(".{}", format.extension())))
}

/// The directory of the newest PostgreSQL server programs: `initdb` on `PATH` (NixOS,
/// Fedora), else Debian's `/usr/lib/postgresql/MAJOR/bin`.
fn server_programs() -> Result<PathBuf, StageError> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|dir| dir.join("initdb").is_file()) {
        return Ok(dir);
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_SERVERS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin).ok_or_else(|| {
        StageError::Failed(
            "a drill of a postgresql stage needs the PostgreSQL server (initdb, postgres): \
             install it (Debian: apt install postgresql)"
                .into(),
        )
    })
}

/// The account the server runs as, when this process is root (see the module doc).
struct Account {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

impl Account {
    fn for_this_process() -> Result<Option<Account>, StageError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        match nix::unistd::User::from_name(SERVER_ACCOUNT) {
            Ok(Some(user)) => Ok(Some(Account {
                uid: user.uid,
                gid: user.gid,
            })),
            _ => Err(StageError::Failed(format!(
                "the drill runs as root, which PostgreSQL's server refuses, and there is no \
                 `{SERVER_ACCOUNT}` account to run it as: install the PostgreSQL server \
                 package (it creates the account), or run the job as another user"
            ))),
        }
    }

    fn apply(&self, command: &mut std::process::Command) {
        command.uid(self.uid.as_raw()).gid(self.gid.as_raw());
    }

    fn own(&self, path: &Path) -> Result<(), StageError> {
        nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
            StageError::Failed(format!(
                "cannot give {} to the {SERVER_ACCOUNT} account: {e}",
                path.display()
            ))
        })
    }
}

/// A throw-away server on a unix socket; stopped and its files removed on drop.
struct Cluster {
    /// `SCRATCH/pg` (or in /tmp, see `start`): `data/`, `run/` (the socket) and
    /// `tablespaces/` (see `load_globals`).
    dir: PathBuf,
    socket_dir: PathBuf,
    /// The server's output (in the scratch directory, which the drill owns).
    log: PathBuf,
    /// Where the loading tools write what they say, read back for the error.
    tool_log: PathBuf,
    account: Option<Account>,
    child: std::process::Child,
}

impl Cluster {
    fn start(scratch: &Path) -> Result<Cluster, StageError> {
        let programs = server_programs()?;
        let account = Account::for_this_process()?;
        let in_scratch = scratch.join("pg");
        let socket_fits = in_scratch.join("run/.s.PGSQL.5432").as_os_str().len() <= SOCKET_PATH_MAX;
        let reachable = account.is_none() || others_may_enter_above(scratch);
        let dir = if socket_fits && reachable {
            in_scratch
        } else {
            // The unit's own /tmp (PrivateTmp=): the scratch directory's path is too long
            // for a socket, or closed to the account (root's state directory under /root).
            // Mode 0700 (0711 for the account) as `run --here` shares /tmp.
            let dir = std::env::temp_dir().join(format!(
                "backupctl-drill-{}",
                &crate::stages::new_id()[..12]
            ));
            tracing::info!(
                "drill: the throw-away server is in {} ({} is {})",
                dir.display(),
                scratch.display(),
                if socket_fits {
                    "closed to it"
                } else {
                    "too long a path for its socket"
                }
            );
            dir
        };
        let create = |path: &Path| {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(|e| StageError::io(format!("cannot create {}", path.display()), e))
        };
        create(&dir)?;
        // The data directory, and the socket's: the account's (root may not remove what is
        // in them: the account empties them, root removes them, see Drop).
        let (data, socket_dir) = (dir.join("data"), dir.join("run"));
        create(&data)?;
        create(&socket_dir)?;
        if let Some(account) = &account {
            use std::os::unix::fs::PermissionsExt;
            // The account enters these directories, never lists them.
            for open in [scratch, &dir] {
                std::fs::set_permissions(open, std::fs::Permissions::from_mode(0o711))
                    .map_err(|e| StageError::io(format!("cannot open {}", open.display()), e))?;
            }
            account.own(&data)?;
            account.own(&socket_dir)?;
        }
        let log = scratch.join("server.log");
        let mut initdb = std::process::Command::new(programs.join("initdb"));
        initdb
            .args(["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
            .args(["--no-sync", "--no-instructions"])
            .arg(format!("--username={SUPERUSER}"))
            .arg("--pgdata")
            .arg(&data);
        run_logged(initdb, account.as_ref(), &log)
            .map_err(|e| StageError::Failed(format!("the drill's initdb failed: {e:#}")))?;
        let mut postgres = std::process::Command::new(programs.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&socket_dir)
            // Only the socket; nothing to make durable: the server is thrown away.
            .args(["-c", "listen_addresses=", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
            // Loaded as a recovery into a new server can be: with `wal_level=minimal` a
            // table made and filled in one transaction (`pg_restore --single-transaction`)
            // writes no WAL, and no checkpoint runs during the load (0.61× the restore time
            // with WAL, 1 GiB: docs/databases.md). The one transaction locks every object of
            // the database: room for 2048 locks each for the few connections it takes.
            .args(["-c", "wal_level=minimal", "-c", "max_wal_senders=0"])
            .args(["-c", "max_wal_size=10GB", "-c", "checkpoint_timeout=1h"])
            .args(["-c", "autovacuum=off", "-c", "max_connections=10"])
            .args(["-c", "max_locks_per_transaction=2048"])
            // The unit forbids writable executable memory, which the JIT needs.
            .args(["-c", "jit=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                log_file(&log)
                    .map_err(|e| StageError::io(format!("cannot create {}", log.display()), e))?,
            );
        if let Some(account) = &account {
            account.apply(&mut postgres);
        }
        let child = postgres
            .spawn()
            .map_err(|e| StageError::Failed(format!("cannot start postgres: {e}")))?;
        let mut server = Cluster {
            tool_log: scratch.join("tools.log"),
            dir,
            socket_dir,
            log,
            account,
            child,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), StageError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while self.psql("postgres", "SELECT 1").is_err() {
            if crate::signals::stopped() {
                return Err(StageError::Interrupted);
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || std::time::Instant::now() > deadline {
                return Err(StageError::Failed(format!(
                    "the drill's PostgreSQL server did not start: {}",
                    last_lines(&self.log)
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(())
    }

    /// A client tool connected to the server as its superuser.
    fn client(&self, tool: &str) -> std::process::Command {
        let mut command = std::process::Command::new(tool);
        for var in [
            "PGPASSWORD",
            "PGPASSFILE",
            "PGSERVICE",
            "PGDATABASE",
            "PGOPTIONS",
        ] {
            command.env_remove(var);
        }
        command
            .arg(format!("--host={}", self.socket_dir.display()))
            .arg(format!("--username={SUPERUSER}"))
            .arg("--no-password");
        command
    }

    /// The rows one statement returns in `database`, one line each.
    fn psql(&self, database: &str, sql: &str) -> anyhow::Result<Vec<String>> {
        let output = self
            .client("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", super::conninfo(database)))
            .arg(format!("--command={sql}"))
            .stdin(Stdio::null())
            .output()?;
        dump::client_rows(output)
    }

    /// The roles and tablespaces: `CREATE ROLE` of the superuser the server already has is
    /// the one error allowed. Each tablespace's location (a path of the production machine)
    /// is mapped to a directory of the throw-away server's own, which `CREATE TABLESPACE`
    /// wants existing, empty and the server's.
    fn load_globals(&self, globals: &str) -> anyhow::Result<()> {
        let tablespaces = self.dir.join("tablespaces");
        let (globals, moved) = relocate_tablespaces(globals, |n| tablespaces.join(n.to_string()));
        for (name, from, to) in &moved {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(to)?;
            if let Some(account) = &self.account {
                account.own(&tablespaces)?;
                account.own(to)?;
            }
            tracing::info!(
                "drill: tablespace {name} (at {from} where the dump was made) is in {}",
                to.display()
            );
        }
        let mut psql = self.client("psql");
        psql.args(["-X", "-q", "--dbname=postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log_file(&self.tool_log)?);
        let mut child = psql.spawn()?;
        let written = child
            .stdin
            .take()
            .expect("piped")
            .write_all(globals.as_bytes());
        let status = child.wait()?;
        written?;
        anyhow::ensure!(status.success(), "psql failed ({status})");
        let said = std::fs::read_to_string(&self.tool_log).unwrap_or_default();
        let errors: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
            .collect();
        anyhow::ensure!(errors.is_empty(), "{}", errors.join(" / "));
        Ok(())
    }

    /// One database's dump, into a new database of its name.
    fn load_database(
        &self,
        destination: Destination,
        found: &dump::Dump,
        database: &str,
        ctx: &DrillContext,
        spec: &Spec,
    ) -> anyhow::Result<()> {
        if database != "postgres" {
            self.psql(
                "postgres",
                &format!(
                    "CREATE DATABASE {} TEMPLATE template0",
                    super::identifier(database)
                ),
            )?;
        }
        let dbname = format!("--dbname={}", super::conninfo(database));
        let loaded = if found.name.ends_with(".sql") {
            let mut psql = self.client("psql");
            psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
                .arg(&dbname)
                .stdout(Stdio::null())
                .stderr(log_file(&self.tool_log)?);
            dump::load_into(
                destination,
                found,
                dump::Access::drill(ctx.stage.scope),
                psql,
            )
        } else {
            let mut restore = self.client("pg_restore");
            restore
                .arg("--exit-on-error")
                .arg(&dbname)
                .stdout(Stdio::null())
                .stderr(log_file(&self.tool_log)?);
            match (found.name.ends_with(".dir"), &spec.jobs) {
                (true, Some(jobs)) => {
                    restore.arg(format!("--jobs={}", jobs.get_ref()));
                }
                // One transaction: the tables it makes and fills write no WAL (see start).
                _ => {
                    restore.arg("--single-transaction");
                }
            }
            if found.name.ends_with(".dir") {
                restore.arg(&found.path);
                let status = restore.status()?;
                anyhow::ensure!(status.success(), "pg_restore failed ({status})");
                Ok(())
            } else {
                dump::load_into(
                    destination,
                    found,
                    dump::Access::drill(ctx.stage.scope),
                    restore,
                )
            }
        };
        loaded.map_err(|e| anyhow::anyhow!("{e:#}: {}", last_lines(&self.tool_log)))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster stops its backends; nothing is kept.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        let _ = self.child.wait();
        // What is in the account's directories is removed by the account (root here may
        // not), the directories themselves by root.
        let mut remove = std::process::Command::new("rm");
        remove
            .arg("-rf")
            .arg("--")
            .arg(self.dir.join("data"))
            .arg(self.dir.join("tablespaces"))
            .arg(&self.socket_dir);
        if let Some(account) = &self.account {
            account.apply(&mut remove);
        }
        let _ = remove.stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `globals` (pg_dumpall's) with each `CREATE TABLESPACE NAME OWNER ROLE LOCATION '…';`
/// pointed at `place(n)` instead (n = 1, 2…, in order), and what moved: (name, the dump's
/// location, the new one). pg_dumpall writes each on a line of its own, the location last.
fn relocate_tablespaces(
    globals: &str,
    place: impl Fn(usize) -> PathBuf,
) -> (String, Vec<(String, String, PathBuf)>) {
    let mut moved = Vec::new();
    let mut text = String::with_capacity(globals.len());
    for line in globals.split_inclusive('\n') {
        let statement = line.strip_prefix("CREATE TABLESPACE ");
        let split = statement.and_then(|rest| Some((rest, rest.rfind(" LOCATION ")?)));
        let Some((rest, at)) = split else {
            text.push_str(line);
            continue;
        };
        let name = rest.split(" OWNER ").next().unwrap_or_default().to_string();
        let from = rest[at + " LOCATION ".len()..]
            .trim_end()
            .trim_end_matches(';');
        let to = place(moved.len() + 1);
        let literal = to.display().to_string().replace('\'', "''");
        text.push_str(&format!(
            "CREATE TABLESPACE {} LOCATION '{literal}';\n",
            &rest[..at]
        ));
        moved.push((name, from.to_string(), to));
    }
    (text, moved)
}

/// Every directory above `dir` lets others search it: the server's account can reach a
/// directory in `dir` once `dir` lets it too.
fn others_may_enter_above(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors().skip(1).all(|above| {
        above
            .metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

/// A fresh file for a program's output, in the drill's own scratch directory.
fn log_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

/// Runs `command` (as `account`), its output into `log`; fails with the log's last lines.
fn run_logged(
    mut command: std::process::Command,
    account: Option<&Account>,
    log: &Path,
) -> anyhow::Result<()> {
    if let Some(account) = account {
        account.apply(&mut command);
    }
    let file = log_file(log)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", command.get_program().display()))?;
    anyhow::ensure!(status.success(), "{status}: {}", last_lines(log));
    Ok(())
}

/// The last lines a program wrote into `log`, on one line.
fn last_lines(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_database_of_a_dump() {
        assert_eq!(database_of("shop.dump"), Some("shop"));
        assert_eq!(database_of("a.b.sql"), Some("a.b"));
        assert_eq!(database_of("big.dir"), Some("big"));
        assert_eq!(database_of(GLOBALS), Some("globals"));
        assert_eq!(database_of("shop.checks.json"), None);
    }

    #[test]
    fn moves_each_tablespace_into_the_drills_directory() {
        let globals = "CREATE ROLE shop_owner;\n\
            CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';\n\
            ALTER TABLESPACE fast SET (random_page_cost='1.1');\n\
            CREATE TABLESPACE \"Old Disk\" OWNER shop_owner LOCATION '/mnt/o''brien';\n";
        let (text, moved) = relocate_tablespaces(globals, |n| PathBuf::from(format!("/d/{n}")));
        assert_eq!(
            text,
            "CREATE ROLE shop_owner;\n\
             CREATE TABLESPACE fast OWNER postgres LOCATION '/d/1';\n\
             ALTER TABLESPACE fast SET (random_page_cost='1.1');\n\
             CREATE TABLESPACE \"Old Disk\" OWNER shop_owner LOCATION '/d/2';\n"
        );
        assert_eq!(
            moved,
            [
                ("fast".into(), "'/srv/fast'".into(), PathBuf::from("/d/1")),
                (
                    "\"Old Disk\"".into(),
                    "'/mnt/o''brien'".into(),
                    PathBuf::from("/d/2")
                ),
            ]
        );
    }
}
