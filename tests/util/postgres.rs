//! A throw-away PostgreSQL 15 server for a test: `initdb` and `postgres` as the `postgres`
//! user (the server refuses root) in a scratch directory under target/tmp, listening on a
//! unix socket there and on a loopback port; stopped and removed on drop.
//!
//! Local connections use peer authentication, and the server has a superuser role `root`,
//! so the tests (and the stage units of the user manager, which run as root) connect as
//! root without a password; TCP connections need a password (scram-sha-256).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, ok, run, stderr};

/// Where Debian's PostgreSQL 15 server programs are.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    /// The scratch directory (data, socket, log).
    pub dir: PathBuf,
    /// The unix socket's directory (`host` for libpq).
    pub socket_dir: PathBuf,
    pub port: u16,
    _scratch: tempfile::TempDir,
}

/// A command run as the `postgres` user.
fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--", program]);
    command
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with("")
    }

    /// A server started with `options` added to `postgres`' (`-c name=value …`).
    pub fn start_with(options: &str) -> Postgres {
        assert!(
            Path::new(BIN).join("initdb").is_file(),
            "this test needs PostgreSQL 15 ({BIN}/initdb): run scripts/setup-deps"
        );
        super::require_tool("psql");
        super::require_tool("runuser");
        let scratch = tempfile::Builder::new()
            .prefix("pg-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("scratch directory");
        let dir = scratch.path().to_path_buf();
        // The server runs as postgres: it must enter the directory.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ok(Command::new("chown").arg("postgres:postgres").arg(&dir));
        let data = dir.join("data");
        ok(as_postgres(&format!("{BIN}/initdb"))
            .args([
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--username=postgres",
            ])
            .args(["--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "-D"])
            .arg(&data));
        let port = free_port();
        let options = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off {options}",
            dir.display()
        );
        let output = run(as_postgres(&format!("{BIN}/pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-o", &options, "start"]));
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}\n{}",
            stderr(&output),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        let server = Postgres {
            socket_dir: dir.clone(),
            dir,
            port,
            _scratch: scratch,
        };
        ok(server
            .psql_as_postgres("postgres")
            .arg("--command=CREATE ROLE root SUPERUSER LOGIN"));
        server
    }

    fn psql_as_postgres(&self, database: &str) -> Command {
        let mut command = as_postgres("psql");
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--host={}", self.socket_dir.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--dbname={database}"));
        command
    }

    /// `psql` as root on the socket, in `database`.
    pub fn psql(&self, database: &str) -> Command {
        let mut command = Command::new("psql");
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--host={}", self.socket_dir.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--dbname={database}"))
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE");
        command
    }

    /// Runs SQL in `database`; returns what it printed (unaligned, tuples only).
    pub fn sql(&self, database: &str, sql: &str) -> String {
        ok(self.psql(database).arg(format!("--command={sql}")))
    }

    /// Runs an SQL script in `database`.
    pub fn script(&self, database: &str, script: &str) {
        let path = self.dir.join("script.sql");
        std::fs::write(&path, script).unwrap();
        ok(self.psql(database).arg("--file").arg(&path));
    }

    /// A plain-text dump of `database` without the random `\restrict` key lines of
    /// pg_dump 15.14+, so that two dumps of equal databases compare equal.
    pub fn dump(&self, database: &str) -> String {
        let text = ok(Command::new("pg_dump")
            .arg(format!("--host={}", self.socket_dir.display()))
            .arg(format!("--port={}", self.port))
            .arg("--format=plain")
            .arg(format!("--dbname={database}")));
        text.lines()
            .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// Stops the server at once (as a crash would): for the "server down" tests.
    pub fn stop(&self) {
        let _ = run(as_postgres(&format!("{BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.dir.join("data/postmaster.pid").exists() {
            self.stop();
        }
    }
}
