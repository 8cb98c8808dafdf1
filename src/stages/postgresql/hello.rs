//! `backupctl hello`'s checks of a postgresql stage's server: it answers with the
//! configured authentication (a wrong password says so, never what it is), and `pg_dump` is
//! of the server's major version or newer (an older one refuses to dump it).

use std::path::Path;

use super::Spec;
use crate::preflight::Check;

impl Spec {
    pub(super) fn hello_checks(&self, state_dir: &Path, stage: &str) -> Vec<Check> {
        let connection = match self.connect(state_dir, stage) {
            Ok(connection) => connection,
            Err(error) => return vec![failed("postgresql connection", stage, error.to_string())],
        };
        let server = connection.query(
            self.maintenance_database(),
            "SELECT current_setting('server_version_num') || ' ' || current_user",
        );
        let (version_num, role) = match server {
            Ok(rows) => {
                let row = rows.first().cloned().unwrap_or_default();
                let (num, role) = row.split_once(' ').unwrap_or((&row, ""));
                (num.to_string(), role.to_string())
            }
            Err(error) => {
                let said = error.to_string();
                let last = said.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                return vec![failed("postgresql connection", stage, last.to_string())];
            }
        };
        let mut checks = vec![Check {
            what: "postgresql connection",
            item: stage.to_string(),
            ok: true,
            detail: format!("server {} as role {role}", version_text(&version_num)),
        }];
        let pg_dump = std::process::Command::new("pg_dump")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        checks.push(match pg_dump {
            Ok(version) => match can_dump(&version, &version_num) {
                Ok(detail) => Check {
                    what: "postgresql pg_dump",
                    item: stage.to_string(),
                    ok: true,
                    detail,
                },
                Err(detail) => failed("postgresql pg_dump", stage, detail),
            },
            Err(error) => failed(
                "postgresql pg_dump",
                stage,
                format!("cannot run pg_dump: {error}"),
            ),
        });
        checks
    }
}

fn failed(what: &'static str, stage: &str, detail: String) -> Check {
    Check {
        what,
        item: stage.to_string(),
        ok: false,
        detail,
    }
}

/// `150014` → `15.14`.
fn version_text(num: &str) -> String {
    match num.parse::<u32>() {
        Ok(n) => format!("{}.{}", n / 10000, n % 10000),
        Err(_) => num.to_string(),
    }
}

/// Whether `pg_dump --version` (`pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)`) can
/// dump a server of `server_version_num` (`150014`): its major version must be the
/// server's or newer.
fn can_dump(pg_dump_version: &str, server_version_num: &str) -> Result<String, String> {
    let dump_major: Option<u32> = pg_dump_version
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.parse().ok());
    let server_major = server_version_num.parse::<u32>().ok().map(|n| n / 10000);
    match (dump_major, server_major) {
        (Some(dump), Some(server)) if dump >= server => Ok(format!(
            "{pg_dump_version} can dump server {}",
            version_text(server_version_num)
        )),
        (Some(_), Some(server)) => Err(format!(
            "{pg_dump_version} is older than the server ({server}): pg_dump refuses to dump a \
             newer server; install the PostgreSQL {server} client (Debian: postgresql-client-{server})"
        )),
        _ => Err(format!(
            "cannot compare versions: pg_dump says {pg_dump_version:?}, the server {server_version_num:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12 ships only PostgreSQL 15, so an older pg_dump than the server cannot be
    /// set up here: the comparison is tested on the strings real tools print (pg_dump 15.14
    /// of Debian 12, 14.9 of Debian 11's postgresql-client-14, 16.4 upstream; the servers'
    /// `server_version_num`).
    #[test]
    fn pg_dump_must_be_of_the_servers_major_version_or_newer() {
        let debian12 = "pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)";
        assert!(can_dump(debian12, "150014").is_ok());
        assert!(can_dump(debian12, "140009").is_ok());
        let older = can_dump(
            "pg_dump (PostgreSQL) 14.9 (Debian 14.9-1.pgdg110+1)",
            "150014",
        )
        .unwrap_err();
        assert!(older.contains("older than the server (15)"), "{older}");
        assert!(older.contains("postgresql-client-15"), "{older}");
        assert!(can_dump("pg_dump (PostgreSQL) 16.4", "160004").is_ok());
        assert!(can_dump("pg_dump (PostgreSQL) 15.14", "160004").is_err());
        assert!(can_dump("pg_dump: command not found", "150014").is_err());
        assert_eq!(version_text("150014"), "15.14");
    }
}
