//! Servers on loopback a test starts and stops: any listening command ([`Server`]), and
//! `rclone serve restic`, the REST server restic repositories are tested against.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::require_tool;

/// A server process on loopback, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(mut command: Command, port: u16, what: &str) -> Server {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{what} did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `rclone serve restic` on `dir`.
pub fn rest_server(dir: &Path, port: u16) -> Server {
    require_tool("rclone");
    let mut command = Command::new("rclone");
    command
        .args(["serve", "restic", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(dir);
    Server::start(command, port, "rclone serve restic")
}
