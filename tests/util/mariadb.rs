//! A throw-away MariaDB server for a test: `mariadb-install-db` and `mariadbd --no-defaults`
//! in a scratch directory under target/tmp, on a unix socket there and a loopback port;
//! killed and removed on drop. root connects on the socket through the `unix_socket` plugin
//! (no password), as the stage units of the user manager (root) do.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, ok};

pub struct Mariadb {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    child: Option<Child>,
    _scratch: tempfile::TempDir,
}

impl Mariadb {
    pub fn start() -> Mariadb {
        super::require_tool("mariadb-install-db");
        super::require_tool("mariadb");
        assert!(
            std::path::Path::new("/usr/sbin/mariadbd").is_file(),
            "this test needs mariadbd: run scripts/setup-deps"
        );
        let scratch = tempfile::Builder::new()
            .prefix("mariadb-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("scratch directory");
        let dir = scratch.path().to_path_buf();
        let data = dir.join("data");
        // Its own tmpdir: in the shared /tmp a bootstrap once lost its temporary tables
        // while other tests ran ("Could not remove temporary table … error: 2").
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        ok(Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .args(["--auth-root-authentication-method=socket"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display())));
        let socket = dir.join("mysqld.sock");
        let port = free_port();
        let child = Command::new("/usr/sbin/mariadbd")
            .args(["--no-defaults", "--user=root"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("log").display()))
            .args(["--innodb-flush-log-at-trx-commit=0", "--skip-log-bin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let server = Mariadb {
            dir,
            socket,
            port,
            child: Some(child),
            _scratch: scratch,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server
            .client()
            .args(["-e", "SELECT 1"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not come up: {}",
                std::fs::read_to_string(server.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `mariadb` as root on the socket, utf8mb4.
    pub fn client(&self) -> Command {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args([
                "--default-character-set=utf8mb4",
                "--batch",
                "--skip-column-names",
            ]);
        command
    }

    /// Runs SQL (several statements allowed); returns what it printed.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        ok(self
            .client()
            .arg(format!("--database={database}"))
            .args(["-e", sql]))
    }

    /// A dump of `database` with the stage's options, for comparing two databases.
    pub fn dump(&self, database: &str) -> String {
        ok(Command::new("mariadb-dump")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args([
                "--default-character-set=utf8mb4",
                "--single-transaction",
                "--routines",
            ])
            .args([
                "--triggers",
                "--events",
                "--hex-blob",
                "--skip-dump-date",
                database,
            ]))
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
    }
}
