//! Database stages against real servers started by the tests (`util::postgres`,
//! `util::mariadb`) and real sqlite3 files: each database holds several tables, non-ASCII
//! text, binary data, NULLs, a view, a function, a sequence or auto-increment and a role.
//! A backup is restored into a new database and compared with its source through a dump of
//! both with the same options. Failure modes: server down, wrong password, the dump cut by
//! SIGTERM (no snapshot, no stale lock).

use std::path::Path;
use std::process::Command;

use crate::util::installed::{Installed, last_run_record, wait_until_idle};
use crate::util::mariadb::Mariadb;
use crate::util::postgres::Postgres;
use crate::util::{
    backupctl_in, ok, require_tool, run, stderr, stdout, systemctl_user, tempdir, write_config,
    write_secret,
};

const PASSWORD: &str = "restic-test-password";

/// A PostgreSQL database with every kind of thing a dump must carry.
const SHOP: &str = r#"
CREATE ROLE shop_owner LOGIN PASSWORD 'owner secret';
CREATE DATABASE shop OWNER shop_owner;
\connect shop
SET ROLE shop_owner;
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    photo bytea,
    note text
);
INSERT INTO customers (name, photo, note) VALUES
    ('Zoë Ångström 🚀', '\x00ff10fe'::bytea, NULL),
    ('Иван Петров', NULL, 'тест ✓'),
    ('李小龍', decode(repeat('00ff', 512), 'hex'), E'tab\there\nnewline');
CREATE SEQUENCE invoice_numbers START 1000;
SELECT nextval('invoice_numbers'), nextval('invoice_numbers');
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer int REFERENCES customers,
    total numeric(10, 2),
    placed timestamptz
);
INSERT INTO orders (customer, total, placed)
    SELECT 1 + i % 3, i * 1.25, '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 hour'
    FROM generate_series(1, 500) AS i;
INSERT INTO orders (customer, total, placed) VALUES (2, NULL, NULL);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE FUNCTION customer_total(c int) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT sum(total) FROM orders WHERE customer = c $$;
"#;

fn postgres_with_shop() -> Postgres {
    let server = Postgres::start();
    server.script("postgres", SHOP);
    server
}

fn init_repository(path: &Path, password_file: &Path) {
    require_tool("restic");
    write_secret(password_file, PASSWORD);
    ok(Command::new("restic")
        .args(["init", "--quiet", "--repo"])
        .arg(path)
        .arg("--password-file")
        .arg(password_file));
}

/// The restic snapshots of the repository, as JSON.
fn snapshots(repo: &Path, password_file: &Path) -> Vec<serde_json::Value> {
    let text = ok(Command::new("restic")
        .args(["snapshots", "--json", "--repo"])
        .arg(repo)
        .arg("--password-file")
        .arg(password_file));
    serde_json::from_str(&text).unwrap()
}

/// A config with a restic stage `repo` (the repository, no backup of its own run here) and
/// the database stage `TABLE`.
fn restic_config(root: &Path, database_stage: &str) -> String {
    format!(
        "[stage.repo]\nkind = \"restic\"\nrepository = \"@ROOT@/repo\"\n\
         password_file = \"@ROOT@/restic-password\"\noperation = \"check\"\n\n\
         {database_stage}"
    )
    .replace("@ROOT@", &root.display().to_string())
}

#[test]
fn postgresql_dumps_stream_into_restic_and_restore_into_a_new_database() {
    let server = postgres_with_shop();
    let dir = tempdir();
    let root = dir.path();
    init_repository(&root.join("repo"), &root.join("restic-password"));
    let stage = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\nrestic = \"repo\"\n\
         exclude_databases = [\"postgres\"]\n",
        server.socket_dir.display(),
        server.port
    );
    write_config(root, &restic_config(root, &stage));
    ok(backupctl_in(root).args(["stage", "pg"]));

    let found = snapshots(&root.join("repo"), &root.join("restic-password"));
    let mut paths: Vec<String> = found
        .iter()
        .map(|s| s["paths"][0].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    let host = nix_hostname();
    assert_eq!(
        paths,
        [
            format!("/postgresql/{host}/globals.sql"),
            format!("/postgresql/{host}/shop.dump")
        ]
    );
    assert!(
        found.iter().all(|s| s["tags"][0] == "backupctl:pg"),
        "{found:?}"
    );

    let listing = ok(backupctl_in(root).args(["snapshots", "pg"]));
    assert!(listing.contains("shop.dump"), "{listing}");
    assert!(listing.contains("globals.sql"), "{listing}");

    ok(backupctl_in(root).args(["restore", "pg", "--database", "shop", "--into", "shop_copy"]));
    assert_eq!(server.dump("shop_copy"), server.dump("shop"));
    assert_eq!(
        server.sql("shop_copy", "SELECT name FROM customers WHERE id = 1"),
        "Zoë Ångström 🚀\n"
    );

    // Into a database that holds something: refused, then replaced on request.
    let refused = run(backupctl_in(root).args([
        "restore",
        "pg",
        "--database",
        "shop",
        "--into",
        "shop_copy",
    ]));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--replace"),
        "{}",
        stderr(&refused)
    );
    server.sql("shop_copy", "DELETE FROM orders WHERE id > 10");
    ok(backupctl_in(root).args([
        "restore",
        "pg",
        "--database",
        "shop",
        "--into",
        "shop_copy",
        "--replace",
    ]));
    assert_eq!(server.dump("shop_copy"), server.dump("shop"));

    // The roles' dump, fetched as a file for a full-server recovery.
    ok(backupctl_in(root)
        .args(["restore", "pg", "--database", "globals.sql", "--target"])
        .arg(root.join("fetched")));
    let globals = std::fs::read_to_string(root.join("fetched/globals.sql")).unwrap();
    assert!(globals.contains("CREATE ROLE shop_owner;"), "{globals}");
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn postgresql_dumps_into_a_directory_keep_the_last_good_one_when_the_server_is_down() {
    let server = postgres_with_shop();
    let dir = tempdir();
    let root = dir.path();
    let stage = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\n\
         directory = \"@ROOT@/dumps\"\nformat = \"directory\"\njobs = 2\n",
        server.socket_dir.display(),
        server.port
    );
    write_config(root, &stage);
    ok(backupctl_in(root).args(["stage", "pg"]));
    let dumps = root.join("dumps");
    assert!(dumps.join("shop.dir/toc.dat").is_file());
    assert!(dumps.join("postgres.dir/toc.dat").is_file());
    assert!(dumps.join("globals.sql").is_file());
    ok(backupctl_in(root).args(["restore", "pg", "--database", "shop", "--into", "shop_copy"]));
    assert_eq!(server.dump("shop_copy"), server.dump("shop"));

    let before = std::fs::read(dumps.join("shop.dir/toc.dat")).unwrap();
    server.stop();
    let failed = run(backupctl_in(root).args(["stage", "pg"]));
    assert!(!failed.status.success());
    let said = format!("{}{}", stdout(&failed), stderr(&failed));
    assert!(said.contains("listing the databases"), "{said}");
    assert!(
        said.contains("No such file or directory") || said.contains("connection"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(dumps.join("shop.dir/toc.dat")).unwrap(),
        before
    );
    let left: Vec<String> = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "partial dumps left: {left:?}");
}

#[test]
fn postgresql_over_tcp_takes_its_password_from_a_file_and_names_a_wrong_one() {
    let server = postgres_with_shop();
    server.sql(
        "postgres",
        "CREATE ROLE backup LOGIN PASSWORD 'right: \\pass' IN ROLE pg_read_all_data",
    );
    let dir = tempdir();
    let root = dir.path();
    write_secret(&root.join("pg-password"), "right: \\pass\n");
    let stage = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"backup\"\n\
         password_file = \"@ROOT@/pg-password\"\ndatabases = [\"shop\"]\nglobals = false\n\
         directory = \"@ROOT@/dumps\"\nformat = \"plain\"\n",
        server.port
    );
    write_config(root, &stage);
    ok(backupctl_in(root).args(["stage", "pg"]));
    let text = std::fs::read_to_string(root.join("dumps/shop.sql")).unwrap();
    assert!(text.contains("Zoë Ångström 🚀"));
    // No passfile left behind.
    let secrets = root.join("state/backupctl/secrets");
    let left: Vec<_> = std::fs::read_dir(&secrets)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert_eq!(left, [0], "passfile left in {}", secrets.display());

    write_secret(&root.join("pg-password"), "wrong\n");
    let failed = run(backupctl_in(root).args(["stage", "pg"]));
    assert!(!failed.status.success());
    let said = format!("{}{}", stdout(&failed), stderr(&failed));
    assert!(said.contains("database shop"), "{said}");
    assert!(said.contains("password authentication failed"), "{said}");
    assert!(!said.contains("wrong"), "the password leaked: {said}");
    assert_eq!(
        std::fs::read_to_string(root.join("dumps/shop.sql")).unwrap(),
        text
    );
}

/// Under the real user manager: the stage's unit reaches the server's socket from its
/// sandbox, streams into restic, and a SIGTERM mid-dump leaves no snapshot and no lock.
#[test]
fn postgresql_stage_under_systemd_streams_and_a_stop_mid_dump_leaves_no_snapshot() {
    let server = postgres_with_shop();
    // Big enough that the dump is still running when the stop comes.
    server.script(
        "postgres",
        "CREATE DATABASE big;\n\\connect big\n\
         CREATE TABLE blobs AS SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 30) AS data \
         FROM generate_series(1, 400000) AS i;\n",
    );
    let stage = format!(
        "[job]\n\n[stage.repo]\nkind = \"restic\"\nrepository = \"@ROOT@/repo\"\n\
         password_file = \"@ROOT@/restic-password\"\noperation = \"check\"\n\n\
         [stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\nrestic = \"repo\"\n\
         databases = [\"shop\"]\nafter = []\n",
        server.socket_dir.display(),
        server.port
    );
    let job = Installed::new("postgresql", &stage);
    init_repository(&job.path("repo"), &job.path("restic-password"));
    ok(systemctl_user().args(["start", "backup@pg.service"]));
    wait_until_idle();
    let record = last_run_record("pg");
    assert_eq!(record["result"], "success", "{record}");
    let found = snapshots(&job.path("repo"), &job.path("restic-password"));
    assert_eq!(found.len(), 2, "{found:?}");
    ok(&mut job.backupctl(&["restore", "pg", "--database", "shop", "--into", "shop_copy"]));
    assert_eq!(server.dump("shop_copy"), server.dump("shop"));

    // Now the big one, stopped while pg_dump streams.
    let config = std::fs::read_to_string(&job.config).unwrap().replace(
        "databases = [\"shop\"]",
        "databases = [\"big\"]\nformat = \"plain\"\nglobals = false",
    );
    std::fs::write(&job.config, config).unwrap();
    ok(systemctl_user().args(["start", "--no-block", "backup@pg.service"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = job.show("backup@pg.service", "StatusText");
        if status.contains("dumping big") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dump never started: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Stop once restic holds its lock: it is then past its start-up and must remove the lock
    // itself. (Stopped earlier, on a loaded machine, it may die before it handles signals,
    // and the lock is the next run's to clear: a different case.)
    let locks = job.path("repo/locks");
    while std::fs::read_dir(&locks).map_or(0, |dir| dir.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "restic never took its lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    ok(systemctl_user().args(["stop", "backup@pg.service"]));
    wait_until_idle();
    let record = last_run_record("pg");
    assert_ne!(record["result"], "success", "{record}");
    let after = snapshots(&job.path("repo"), &job.path("restic-password"));
    assert_eq!(after.len(), 2, "a snapshot of a cut dump: {after:?}");
    // restic may leave its lock when the stream is cut under a stop (it did in every run on
    // the merged code, though not on the branch alone: open work). What must hold either
    // way: the run marker survives an interrupted restic, so the next run removes the stale
    // lock (`restic unlock`), succeeds, and leaves no lock behind.
    let config = std::fs::read_to_string(&job.config)
        .unwrap()
        .replace("databases = [\"big\"]", "databases = [\"shop\"]");
    std::fs::write(&job.config, config).unwrap();
    ok(systemctl_user().args(["start", "backup@pg.service"]));
    wait_until_idle();
    let record = last_run_record("pg");
    assert_eq!(record["result"], "success", "{record}");
    let locks = std::fs::read_dir(job.path("repo/locks")).unwrap().count();
    assert_eq!(locks, 0, "a stale lock is left in the repository");
    let after = snapshots(&job.path("repo"), &job.path("restic-password"));
    assert_eq!(after.len(), 3, "{after:?}");
}

/// An SQLite database with what a copy must carry (SQLite has no functions or roles).
const NOTES: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body BLOB, tag TEXT);
INSERT INTO notes (title, body, tag) VALUES ('Zoë 🚀 日本語', x'00ff10fe', NULL), ('plain', NULL, 'x');
CREATE TABLE tags (name TEXT PRIMARY KEY, weight REAL);
INSERT INTO tags VALUES ('x', 1.5), ('ü', NULL);
CREATE VIEW tagged AS SELECT * FROM notes WHERE tag IS NOT NULL;
CREATE TRIGGER stamp AFTER INSERT ON notes BEGIN UPDATE tags SET weight = weight + 1 WHERE name = NEW.tag; END;
";

fn sqlite_dump(path: &Path) -> String {
    ok(Command::new("sqlite3").arg(path).arg(".dump"))
}

#[test]
fn sqlite_copies_go_into_restic_and_a_directory_and_restore_equal() {
    require_tool("sqlite3");
    let dir = tempdir();
    let root = dir.path();
    let db = root.join("app/notes.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    ok(Command::new("sqlite3").arg(&db).arg(NOTES));
    init_repository(&root.join("repo"), &root.join("restic-password"));
    // The writer keeps the database open (and its WAL) while the copies are made.
    let mut writer = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stages = "[stage.notes]\nkind = \"sqlite\"\ndatabases = [\"@ROOT@/app/notes.db\"]\nrestic = \"repo\"\n\n\
                  [stage.local]\nkind = \"sqlite\"\ndatabases = [\"@ROOT@/app/notes.db\"]\ndirectory = \"@ROOT@/copies\"\n";
    write_config(root, &restic_config(root, stages));
    ok(backupctl_in(root).args(["stage", "notes"]));
    ok(backupctl_in(root).args(["stage", "local"]));
    let _ = writer.kill();
    let _ = writer.wait();
    assert_eq!(sqlite_dump(&root.join("copies/notes.db")), sqlite_dump(&db));

    let restored = root.join("restored/notes.db");
    ok(backupctl_in(root)
        .args(["restore", "notes", "--database", "notes.db", "--into"])
        .arg(&restored));
    assert_eq!(sqlite_dump(&restored), sqlite_dump(&db));
    let again = run(backupctl_in(root)
        .args(["restore", "notes", "--database", "notes.db", "--into"])
        .arg(&restored));
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("--replace"));
    let listing = ok(backupctl_in(root).args(["snapshots", "notes"]));
    assert!(listing.contains("notes.db"), "{listing}");
}

/// A MariaDB database with every kind of thing a dump must carry.
const STORE: &str = "
CREATE USER 'store_owner'@'localhost' IDENTIFIED BY 'owner secret';
CREATE DATABASE store CHARACTER SET utf8mb4;
GRANT ALL ON store.* TO 'store_owner'@'localhost';
USE store;
CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, photo BLOB, note TEXT) ENGINE=InnoDB;
INSERT INTO customers (name, photo, note) VALUES ('Zoë Ångström 🚀', x'00ff10fe', NULL), ('Иван', NULL, 'тест ✓'), ('李小龍', REPEAT(x'00ff', 512), 'tab\there');
CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT, total DECIMAL(10,2), FOREIGN KEY (customer) REFERENCES customers(id)) ENGINE=InnoDB;
INSERT INTO orders (customer, total) SELECT 1 + seq % 3, seq * 1.25 FROM seq_1_to_500;
INSERT INTO orders (customer, total) VALUES (2, NULL);
CREATE SEQUENCE invoice_numbers START WITH 1000;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE FUNCTION customer_total(c INT) RETURNS DECIMAL(12,2) READS SQL DATA RETURN (SELECT SUM(total) FROM orders WHERE customer = c);
CREATE TRIGGER no_negative BEFORE INSERT ON orders FOR EACH ROW SET NEW.total = GREATEST(NEW.total, 0);
";

#[test]
fn mysql_dumps_stream_into_restic_and_restore_into_a_new_database() {
    let mut server = Mariadb::start();
    server.sql("mysql", STORE);
    let dir = tempdir();
    let root = dir.path();
    init_repository(&root.join("repo"), &root.join("restic-password"));
    let stage = format!(
        "[stage.db]\nkind = \"mysql\"\nhost = \"{}\"\nrestic = \"repo\"\n",
        server.socket.display()
    );
    write_config(root, &restic_config(root, &stage));
    ok(backupctl_in(root).args(["stage", "db"]));
    let found = snapshots(&root.join("repo"), &root.join("restic-password"));
    let paths: Vec<&str> = found
        .iter()
        .map(|s| s["paths"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [format!("/mysql/{}/store.sql", nix_hostname())],
        "system schemas are left out"
    );

    ok(backupctl_in(root).args([
        "restore",
        "db",
        "--database",
        "store",
        "--into",
        "store_copy",
    ]));
    assert_same_dump(
        &server.dump("store_copy").replace("store_copy", "store"),
        &server.dump("store"),
    );
    assert_eq!(
        server.sql("store_copy", "SELECT name FROM customers WHERE id = 1"),
        "Zoë Ångström 🚀\n"
    );
    let refused = run(backupctl_in(root).args([
        "restore",
        "db",
        "--database",
        "store",
        "--into",
        "store_copy",
    ]));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    ok(backupctl_in(root).args([
        "restore",
        "db",
        "--database",
        "store",
        "--into",
        "store_copy",
        "--replace",
    ]));
    assert_same_dump(
        &server.dump("store_copy").replace("store_copy", "store"),
        &server.dump("store"),
    );

    // Over TCP with a wrong password: the error says so, the password is nowhere.
    server.sql("mysql", "CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY 'right'; GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON *.* TO 'backup'@'127.0.0.1';");
    write_secret(&root.join("db-password"), "wrong-secret\n");
    let tcp = format!(
        "[stage.db]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"backup\"\n\
         password_file = \"@ROOT@/db-password\"\ndirectory = \"@ROOT@/dumps\"\n",
        server.port
    );
    write_config(root, &tcp);
    let failed = run(backupctl_in(root).args(["stage", "db"]));
    assert!(!failed.status.success());
    let said = format!("{}{}", stdout(&failed), stderr(&failed));
    assert!(said.contains("Access denied"), "{said}");
    assert!(!said.contains("wrong-secret"), "{said}");
    write_secret(&root.join("db-password"), "right\n");
    ok(backupctl_in(root).args(["stage", "db"]));
    assert!(
        std::fs::read_to_string(root.join("dumps/store.sql"))
            .unwrap()
            .contains("Zoë Ångström 🚀")
    );

    // Server down: a clear failure, the last good dump kept.
    server.stop();
    let down = run(backupctl_in(root).args(["stage", "db"]));
    assert!(!down.status.success());
    let said = format!("{}{}", stdout(&down), stderr(&down));
    assert!(said.contains("listing the databases"), "{said}");
    assert!(root.join("dumps/store.sql").is_file());
}

/// Two dumps are equal; on a difference, the first differing line (dumps are long).
#[track_caller]
fn assert_same_dump(restored: &str, source: &str) {
    if let Some((i, (a, b))) = restored
        .lines()
        .zip(source.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!(
            "the restored dump differs at line {}:\n  restored: {a}\n  source:   {b}",
            i + 1
        );
    }
    assert_eq!(
        restored.lines().count(),
        source.lines().count(),
        "dumps differ in length"
    );
}

/// A database stage on a socket keeps the sandbox's exposure low (issue: ≤ 2.0), and one
/// over TCP opens only the network.
#[test]
fn a_postgresql_stage_on_a_socket_scores_at_most_2_in_systemd_analyze_security() {
    require_tool("systemd-analyze");
    let dir = tempdir();
    let root = dir.path();
    let config = write_config(
        root,
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"/run/postgresql\"\ndirectory = \"@ROOT@/dumps\"\n\n\
         [stage.remote]\nkind = \"postgresql\"\nhost = \"db.example.org\"\n\
         password_credential = \"@ROOT@/pg-password\"\ndirectory = \"@ROOT@/remote\"\n",
    );
    let units = root.join("units");
    ok(crate::util::backupctl()
        .arg("--config")
        .arg(&config)
        .args(["generate", "--output"])
        .arg(&units));
    let score = crate::util::exposure_score(&units, "pg");
    assert!(score <= 2.0, "exposure {score}");
    let socket = std::fs::read_to_string(units.join("backup@pg.service.d/backupctl.conf")).unwrap();
    assert!(!socket.contains("PrivateNetwork=no"), "{socket}");
    let tcp =
        std::fs::read_to_string(units.join("backup@remote.service.d/backupctl.conf")).unwrap();
    assert!(tcp.contains("PrivateNetwork=no"), "{tcp}");
    assert!(tcp.contains("LoadCredential=postgresql-password:"), "{tcp}");
}

/// The drill of a database stage loads its newest copy and checks it: it passes on an
/// intact copy and fails, naming the database, on a corrupted one.
#[test]
fn a_drill_of_an_sqlite_stage_passes_on_an_intact_copy_and_names_a_corrupted_one() {
    require_tool("sqlite3");
    let dir = tempdir();
    let root = dir.path();
    let db = root.join("app/notes.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    ok(Command::new("sqlite3").arg(&db).arg(NOTES));
    ok(Command::new("sqlite3").arg(&db).arg(
        "CREATE TABLE filler (x BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) \
         INSERT INTO filler SELECT randomblob(300) FROM n;",
    ));
    write_config(
        root,
        "[stage.local]\nkind = \"sqlite\"\ndatabases = [\"@ROOT@/app/notes.db\"]\ndirectory = \"@ROOT@/copies\"\n\
         checks = [\"SELECT count(*) FROM notes\", \"SELECT title FROM notes ORDER BY id\"]\n\n\
         [stage.drill]\nkind = \"drill\"\nstage = \"local\"\n",
    );
    ok(backupctl_in(root).args(["stage", "local"]));
    ok(backupctl_in(root).args(["stage", "drill"]));
    assert_checks_compared(&root.join("copies/notes.db.checks.json"), "2", &|| {
        said_by(run(backupctl_in(root).args(["stage", "drill"])))
    });

    let copy = root.join("copies/notes.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    assert!(bytes.len() > 3 * 4096, "{} bytes", bytes.len());
    for byte in &mut bytes[4096..3 * 4096] {
        *byte = 0x5a;
    }
    std::fs::write(&copy, bytes).unwrap();
    let failed = run(backupctl_in(root).args(["stage", "drill"]));
    assert!(
        !failed.status.success(),
        "the drill passed a corrupted copy"
    );
    let said = format!("{}{}", stdout(&failed), stderr(&failed));
    assert!(said.contains("database notes.db"), "{said}");
}

/// The drill of a mysql stage loads the newest dumps into a throw-away MariaDB server: it
/// passes on intact dumps and fails, naming the database, on a cut one.
#[test]
fn a_drill_of_a_mysql_stage_loads_the_dumps_into_a_throw_away_server() {
    let server = Mariadb::start();
    server.sql("mysql", STORE);
    let dir = tempdir();
    let root = dir.path();
    let stage = format!(
        "[stage.db]\nkind = \"mysql\"\nhost = \"{}\"\ndirectory = \"@ROOT@/dumps\"\n\
         checks = [\"SELECT count(*) FROM orders\", \"SELECT name FROM customers ORDER BY id\"]\n\n\
         [stage.drill]\nkind = \"drill\"\nstage = \"db\"\n",
        server.socket.display()
    );
    write_config(root, &stage);
    ok(backupctl_in(root).args(["stage", "db"]));
    ok(backupctl_in(root).args(["stage", "drill"]));
    assert_checks_compared(&root.join("dumps/store.sql.checks.json"), "501", &|| {
        said_by(run(backupctl_in(root).args(["stage", "drill"])))
    });

    let dump = root.join("dumps/store.sql");
    let text = std::fs::read_to_string(&dump).unwrap();
    let cut = text
        .find("INSERT INTO `orders`")
        .expect("orders are dumped")
        + 40;
    std::fs::write(&dump, &text[..cut]).unwrap();
    let failed = run(backupctl_in(root).args(["stage", "drill"]));
    assert!(!failed.status.success(), "the drill passed a cut dump");
    let said = format!("{}{}", stdout(&failed), stderr(&failed));
    assert!(said.contains("database store"), "{said}");
}

/// The drill of a postgresql stage, under the real user manager (its units run as root, so
/// the throw-away server runs as the `postgres` account): the roles' dump and the newest
/// dump of each database load into a fresh server; a cut dump fails the drill, naming the
/// database.
#[test]
fn a_drill_of_a_postgresql_stage_loads_the_dumps_into_a_throw_away_server() {
    let server = postgres_with_shop();
    let config = format!(
        "[metrics]\ntextfile = \"@ROOT@/textfile/backupctl.prom\"\n\n[job]\n\n\
         [stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\n\
         directory = \"@ROOT@/dumps\"\nafter = []\ndatabases = [\"shop\"]\n\
         checks = [\"SELECT count(*) FROM orders\", \"SELECT name FROM customers ORDER BY id\", \
         \"SELECT total FROM orders ORDER BY id DESC LIMIT 2\"]\n\n\
         [stage.drill]\nkind = \"drill\"\nstage = \"pg\"\nafter = []\n",
        server.socket_dir.display(),
        server.port
    );
    // The last check answers a NULL (an empty line from psql) among its rows: the drill
    // must read it as the dump time did.
    let job = Installed::new("pgdrill", &config);
    std::fs::create_dir_all(job.path("textfile")).unwrap();
    ok(systemctl_user().args(["start", "backup@pg.service"]));
    wait_until_idle();
    assert_eq!(last_run_record("pg")["result"], "success");
    ok(systemctl_user().args(["start", "backup@drill.service"]));
    wait_until_idle();
    let record = last_run_record("drill");
    assert_eq!(record["result"], "success", "{record}");
    // globals.sql and shop.dump.
    assert_eq!(record["figures"]["files"], 2, "{record}");
    assert_restore_time_reported(&job, &record);

    assert_checks_compared(&job.path("dumps/shop.dump.checks.json"), "501", &|| {
        let _ = run(systemctl_user().args(["start", "backup@drill.service"]));
        wait_until_idle();
        let record = last_run_record("drill");
        (record["result"] == "success", record.to_string())
    });

    let dump = job.path("dumps/shop.dump");
    let bytes = std::fs::read(&dump).unwrap();
    std::fs::write(&dump, &bytes[..bytes.len() / 2]).unwrap();
    let _ = run(systemctl_user().args(["start", "backup@drill.service"]));
    wait_until_idle();
    let record = last_run_record("drill");
    assert_ne!(
        record["result"], "success",
        "the drill passed a cut dump: {record}"
    );
    let error = record["error"].as_str().unwrap_or_default();
    assert!(error.contains("database shop"), "{record}");
    assert!(error.contains("does not load"), "{record}");
}

/// The drill loads a dump in one transaction (no WAL for the tables it makes), which locks
/// every table it makes until the end: 8000 tables are more than a server with default
/// settings has room for (64 locks per connection × 112 = 7168: "out of shared memory"),
/// and the drill's server takes them. The dumped server needs the room too (pg_dump locks
/// every table it dumps).
#[test]
fn a_drill_loads_a_database_of_more_tables_than_a_default_server_locks_at_once() {
    let server = Postgres::start_with("-c max_locks_per_transaction=256");
    server.script(
        "postgres",
        "CREATE DATABASE many;
",
    );
    server.script(
        "many",
        "DO $$ BEGIN FOR i IN 1..8000 LOOP \
         EXECUTE format('CREATE TABLE t%s (i int PRIMARY KEY)', i); END LOOP; END $$;\n\
         INSERT INTO t8000 VALUES (8000);\n",
    );
    let config = format!(
        "[job]\n\n\
         [stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\n\
         directory = \"@ROOT@/dumps\"\nafter = []\ndatabases = [\"many\"]\n\
         checks = [\"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'\", \
         \"SELECT i FROM t8000\"]\n\n\
         [stage.drill]\nkind = \"drill\"\nstage = \"pg\"\nafter = []\n",
        server.socket_dir.display(),
        server.port
    );
    let _job = Installed::new("pgmany", &config);
    ok(systemctl_user().args(["start", "backup@pg.service"]));
    wait_until_idle();
    let record = last_run_record("pg");
    assert_eq!(record["result"], "success", "{record}");
    let _ = run(systemctl_user().args(["start", "backup@drill.service"]));
    wait_until_idle();
    let record = last_run_record("drill");
    assert_eq!(record["result"], "success", "{record}");
}

/// A tablespace of the dumped server (with a table in it): globals.sql names its location,
/// a path of that machine, which the drill maps into its own directory; the drill passes
/// (the table's rows and tablespace answer as at dump time), and a restore into a new
/// database on the server compares equal.
#[test]
fn a_drill_maps_the_servers_tablespaces_into_its_own_directory() {
    let server = postgres_with_shop();
    let location = server.dir.join("fast-disk");
    std::fs::create_dir(&location).unwrap();
    ok(Command::new("chown")
        .arg("postgres:postgres")
        .arg(&location));
    server.script(
        "postgres",
        &format!(
            "CREATE TABLESPACE fast OWNER shop_owner LOCATION '{}';\n",
            location.display()
        ),
    );
    server.script(
        "shop",
        "SET ROLE shop_owner;\n\
         CREATE TABLE archive (id int PRIMARY KEY, note text) TABLESPACE fast;\n\
         INSERT INTO archive SELECT i, 'année ' || i FROM generate_series(1, 300) AS i;\n",
    );
    let config = format!(
        "[job]\n\n\
         [stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\n\
         directory = \"@ROOT@/dumps\"\nafter = []\ndatabases = [\"shop\"]\n\
         checks = [\"SELECT count(*) FROM archive\", \
         \"SELECT tablespace FROM pg_tables WHERE tablename = 'archive'\"]\n\n\
         [stage.drill]\nkind = \"drill\"\nstage = \"pg\"\nafter = []\n",
        server.socket_dir.display(),
        server.port
    );
    let job = Installed::new("pgtablespace", &config);
    ok(systemctl_user().args(["start", "backup@pg.service"]));
    wait_until_idle();
    assert_eq!(last_run_record("pg")["result"], "success");
    let globals = std::fs::read_to_string(job.path("dumps/globals.sql")).unwrap();
    assert!(
        globals.contains(&format!("LOCATION '{}'", location.display())),
        "{globals}"
    );
    let answers = std::fs::read_to_string(job.path("dumps/shop.dump.checks.json")).unwrap();
    assert!(answers.contains("\"fast\""), "{answers}");

    let _ = run(systemctl_user().args(["start", "backup@drill.service"]));
    wait_until_idle();
    let record = last_run_record("drill");
    assert_eq!(record["result"], "success", "{record}");
    assert_eq!(record["figures"]["files"], 2, "{record}");
    let run_id = record["run"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let journal = ok(Command::new("journalctl").args([
            "-o",
            "cat",
            "--no-pager",
            &format!("BACKUPCTL_RUN={run_id}"),
        ]));
        if journal.contains("drill: tablespace fast (at ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the drill did not say where it put tablespace fast: {journal}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    ok(&mut job.backupctl(&["restore", "pg", "--database", "shop", "--into", "shop_copy"]));
    assert_eq!(server.dump("shop_copy"), server.dump("shop"));
    assert_eq!(
        server.sql(
            "shop_copy",
            "SELECT tablespace FROM pg_tables WHERE tablename = 'archive'"
        ),
        "fast\n"
    );
}

/// Under the real user manager, a drill of a postgresql stage that streams into restic
/// (`restic = "repo"`): the drill's unit reaches the repository, loads the newest dumps and
/// reports the restore time; with the pack that holds shop.dump's data damaged in the
/// repository, it fails naming the database.
#[test]
fn a_drill_of_a_postgresql_stage_streaming_into_restic_loads_the_repositorys_dumps() {
    let server = postgres_with_shop();
    let config = format!(
        "[metrics]\ntextfile = \"@ROOT@/textfile/backupctl.prom\"\n\n[job]\n\n\
         [stage.repo]\nkind = \"restic\"\nrepository = \"@ROOT@/repo\"\n\
         password_file = \"@ROOT@/restic-password\"\noperation = \"check\"\n\n\
         [stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\nrestic = \"repo\"\n\
         databases = [\"shop\"]\nafter = []\n\n\
         [stage.drill]\nkind = \"drill\"\nstage = \"pg\"\nafter = []\n",
        server.socket_dir.display(),
        server.port
    );
    let job = Installed::new("pgresticdrill", &config);
    std::fs::create_dir_all(job.path("textfile")).unwrap();
    let (repo, password) = (job.path("repo"), job.path("restic-password"));
    init_repository(&repo, &password);
    ok(systemctl_user().args(["start", "backup@pg.service"]));
    wait_until_idle();
    assert_eq!(last_run_record("pg")["result"], "success");
    ok(systemctl_user().args(["start", "backup@drill.service"]));
    wait_until_idle();
    let record = last_run_record("drill");
    assert_eq!(record["result"], "success", "{record}");
    // globals.sql and shop.dump, from the repository.
    assert_eq!(record["figures"]["files"], 2, "{record}");
    assert_restore_time_reported(&job, &record);

    damage_pack_of(&repo, &password, "shop.dump");
    let _ = run(systemctl_user().args(["start", "backup@drill.service"]));
    wait_until_idle();
    let record = last_run_record("drill");
    assert_ne!(
        record["result"], "success",
        "the drill passed a damaged dump: {record}"
    );
    let error = record["error"].as_str().unwrap_or_default();
    assert!(error.contains("database shop"), "{record}");
    assert!(error.contains("does not load"), "{record}");
    assert!(error.contains("restic dump of"), "{record}");
}

/// restic's answer to `args` in the repository, as JSON.
fn restic_json(repo: &Path, password_file: &Path, args: &[&str]) -> serde_json::Value {
    let text = ok(Command::new("restic")
        .args(args)
        .arg("--repo")
        .arg(repo)
        .arg("--password-file")
        .arg(password_file));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("restic {args:?}: {e}: {text}"))
}

/// Flips bytes in the middle of the pack file that holds the first data blob of the newest
/// snapshot of the dump `name`: restic then refuses it (its MAC does not match).
fn damage_pack_of(repo: &Path, password_file: &Path, name: &str) {
    let snapshots = snapshots(repo, password_file);
    let snapshot = snapshots
        .iter()
        .rev()
        .find(|s| {
            s["paths"][0]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{name}"))
        })
        .unwrap_or_else(|| panic!("no snapshot of {name}: {snapshots:?}"));
    // The snapshot's tree: /postgresql/HOST/NAME, a directory per level.
    let mut tree = snapshot["tree"].as_str().unwrap().to_string();
    let blob = loop {
        let nodes = restic_json(repo, password_file, &["cat", "blob", &tree]);
        let node = &nodes["nodes"][0];
        match node["subtree"].as_str() {
            Some(subtree) => tree = subtree.to_string(),
            None => break node["content"][0].as_str().unwrap().to_string(),
        }
    };
    let indexes = ok(Command::new("restic")
        .args(["list", "index", "--repo"])
        .arg(repo)
        .arg("--password-file")
        .arg(password_file));
    let pack = indexes
        .lines()
        .find_map(|index| {
            let index = restic_json(repo, password_file, &["cat", "index", index]);
            index["packs"].as_array().unwrap().iter().find_map(|pack| {
                let blobs = pack["blobs"].as_array().unwrap();
                blobs
                    .iter()
                    .any(|b| b["id"] == blob.as_str())
                    .then(|| pack["id"].as_str().unwrap().to_string())
            })
        })
        .unwrap_or_else(|| panic!("no pack holds blob {blob}"));
    let path = repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle - 8..middle + 8] {
        *byte ^= 0xff;
    }
    std::fs::write(&path, bytes).unwrap();
}

/// A drill of a stage with `globals = false` whose dump names an owner the throw-away server
/// lacks: `pg_restore --exit-on-error` stops at the first statement, megabytes before the
/// end of the dump `restic dump` streams. The drill fails, naming the database, the role and
/// the key to set, instead of waiting forever on restic blocked on a full pipe.
#[test]
fn a_drill_whose_pg_restore_stops_early_fails_instead_of_waiting_on_restic() {
    let server = postgres_with_shop();
    server.script(
        "shop",
        "SET ROLE shop_owner;\n\
         CREATE TABLE filler AS SELECT i, md5(i::text) || md5((i * 7)::text) AS data \
         FROM generate_series(1, 100000) AS i;\n",
    );
    let dir = tempdir();
    let root = dir.path();
    init_repository(&root.join("repo"), &root.join("restic-password"));
    let stage = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\nrestic = \"repo\"\n\
         databases = [\"shop\"]\nglobals = false\n\n\
         [stage.drill]\nkind = \"drill\"\nstage = \"pg\"\n",
        server.socket_dir.display(),
        server.port
    );
    write_config(root, &restic_config(root, &stage));
    ok(backupctl_in(root).args(["stage", "pg"]));
    let mut drill = backupctl_in(root)
        .args(["stage", "drill"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while drill.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = drill.kill();
            panic!("the drill still runs after 5 minutes: it waits on restic dump");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (passed, said) = said_by(drill.wait_with_output().unwrap());
    assert!(
        !passed,
        "the drill loaded a dump whose owner is missing: {said}"
    );
    assert!(
        said.contains("database shop: the dump does not load"),
        "{said}"
    );
    assert!(
        said.contains("role \"shop_owner\" does not exist"),
        "{said}"
    );
    assert!(said.contains("globals = true"), "{said}");
}

/// A drill compares the `checks` answers recorded with the dump (`answers`, whose first
/// check answered `first`) with the restored database's: with the record altered, `drill`
/// fails naming both answers; with the record put back, it passes.
#[track_caller]
fn assert_checks_compared(answers: &Path, first: &str, drill: &dyn Fn() -> (bool, String)) {
    let recorded = std::fs::read_to_string(answers).unwrap();
    let record: serde_json::Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(record["checks"][0]["answer"][0], first, "{recorded}");
    let altered = recorded.replacen(&format!("\"{first}\""), "\"12345\"", 1);
    std::fs::write(answers, &altered).unwrap();
    let (passed, said) = drill();
    assert!(!passed, "the drill ignored its checks: {said}");
    assert!(said.contains("answered 12345 at dump time"), "{said}");
    assert!(
        said.contains(&format!("{first} after the restore")),
        "{said}"
    );
    std::fs::write(answers, &recorded).unwrap();
    let (passed, said) = drill();
    assert!(passed, "the drill fails with its record put back: {said}");
}

/// Whether a command succeeded, and all it said.
fn said_by(output: std::process::Output) -> (bool, String) {
    let said = format!("{}{}", stdout(&output), stderr(&output));
    (output.status.success(), said)
}

/// The drill's restore time (the recovery time) is in its run record, `status` (text and
/// JSON, on the drilled stage's row), the metrics file and the journal.
#[track_caller]
fn assert_restore_time_reported(job: &Installed, record: &serde_json::Value) {
    let seconds = record["figures"]["restore_seconds"].as_f64();
    assert!(seconds.is_some_and(|s| s > 0.0), "{record}");
    let status = job.status_json();
    let drilled = find_object(&status, &|o| o.get("name").is_some_and(|n| n == "pg"))
        .unwrap_or_else(|| panic!("no stage pg in {status}"));
    assert_eq!(
        drilled["last_drill"]["restore_seconds"].as_f64(),
        seconds,
        "{drilled}"
    );
    let text = ok(&mut job.backupctl(&["status"]));
    assert!(text.contains("restored in "), "{text}");
    let metrics = std::fs::read_to_string(job.path("textfile/backupctl.prom")).unwrap();
    assert!(
        metrics.contains("# HELP backupctl_stage_last_restore_seconds "),
        "{metrics}"
    );
    let value: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "backupctl_stage_last_restore_seconds{backup_job=\"job\",stage=\"drill\"} ",
            )
        })
        .unwrap_or_else(|| panic!("no restore time of the drill in {metrics}"))
        .parse()
        .unwrap();
    assert_eq!(Some(value), seconds);
    let run = record["run"].as_str().unwrap();
    // journald may write the record a moment after the unit ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let journal = ok(Command::new("journalctl").args([
            "-o",
            "json",
            "--no-pager",
            &format!("BACKUPCTL_RUN={run}"),
        ]));
        if journal.contains("\"BACKUPCTL_RESTORE_SECONDS\":\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no restore time in the drill's journal: {journal}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The first JSON object in `value` (depth first) that `matches`.
fn find_object<'v>(
    value: &'v serde_json::Value,
    matches: &dyn Fn(&serde_json::Map<String, serde_json::Value>) -> bool,
) -> Option<&'v serde_json::Value> {
    match value {
        serde_json::Value::Object(map) if matches(map) => Some(value),
        serde_json::Value::Object(map) => map.values().find_map(|v| find_object(v, matches)),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_object(v, matches)),
        _ => None,
    }
}

/// `hello` connects to each database stage's server with its configured authentication and
/// compares pg_dump's version with the server's; a wrong password fails its line, unprinted.
#[test]
fn hello_checks_the_database_servers_and_the_dump_tools() {
    let pg = postgres_with_shop();
    pg.sql(
        "postgres",
        "CREATE ROLE backup LOGIN PASSWORD 'right' IN ROLE pg_read_all_data",
    );
    let maria = Mariadb::start();
    let dir = tempdir();
    let root = dir.path();
    write_secret(&root.join("pg-password"), "wrong-pg-secret\n");
    let config = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\ndirectory = \"@ROOT@/pg\"\n\n\
         [stage.tcp]\nkind = \"postgresql\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"backup\"\n\
         password_file = \"@ROOT@/pg-password\"\ndirectory = \"@ROOT@/tcp\"\n\n\
         [stage.db]\nkind = \"mysql\"\nhost = \"{}\"\ndirectory = \"@ROOT@/my\"\n",
        pg.socket_dir.display(),
        pg.port,
        pg.port,
        maria.socket.display()
    );
    write_config(root, &config);
    let (passed, said) = said_by(run(backupctl_in(root).arg("hello")));
    assert!(!passed, "hello passed a wrong password: {said}");
    let line = |what: &str, stage: &str| {
        let found = line_of(&said, what, stage);
        assert!(!found.is_empty(), "no `{what}` line of {stage}: {said}");
        found
    };
    let pg_line = line("postgresql connection", "pg");
    assert!(pg_line.contains("server 15."), "{pg_line}");
    assert!(pg_line.contains("as role root"), "{pg_line}");
    let dump_line = line("postgresql pg_dump", "pg");
    assert!(dump_line.contains("can dump server 15."), "{dump_line}");
    let tcp_line = line("postgresql connection", "tcp");
    assert!(
        tcp_line.contains("password authentication failed"),
        "{tcp_line}"
    );
    assert!(
        !said.contains("wrong-pg-secret"),
        "the password leaked: {said}"
    );
    let my_line = line("mysql connection", "db");
    assert!(my_line.contains("MariaDB"), "{my_line}");
    let tool_line = line("mysql dump tool", "db");
    assert!(tool_line.contains("Ver"), "{tool_line}");

    write_secret(&root.join("pg-password"), "right\n");
    let (passed, said) = said_by(run(backupctl_in(root).arg("hello")));
    assert!(passed, "{said}");
    assert!(
        line_of(&said, "postgresql connection", "tcp").contains("as role backup"),
        "{said}"
    );
}

/// The line of `hello`'s table checking `what` of `stage` ("" when there is none).
fn line_of(said: &str, what: &str, stage: &str) -> String {
    said.lines()
        .find(|l| l.contains(what) && l.split_whitespace().any(|w| w == stage))
        .unwrap_or_default()
        .to_string()
}

/// A database dropped while its dump runs (`DROP DATABASE … WITH (FORCE)` ends pg_dump's
/// connection): the stage fails naming it, and no partial dump is left or stored.
#[test]
fn a_database_dropped_while_its_dump_runs_fails_the_stage_and_stores_nothing() {
    let server = postgres_with_shop();
    server.script(
        "postgres",
        "CREATE DATABASE big;\n\\connect big\n\
         CREATE TABLE blobs AS SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 30) AS data \
         FROM generate_series(1, 400000) AS i;\n",
    );
    let dir = tempdir();
    let root = dir.path();
    let stage = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\ndatabases = [\"big\"]\n\
         globals = false\nformat = \"plain\"\ndirectory = \"@ROOT@/dumps\"\n",
        server.socket_dir.display(),
        server.port
    );
    write_config(root, &stage);
    let child = backupctl_in(root)
        .args(["stage", "pg"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server
        .sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'big' AND application_name = 'pg_dump'",
        )
        .trim()
        == "0"
    {
        assert!(std::time::Instant::now() < deadline, "pg_dump never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    server.sql("postgres", "DROP DATABASE big WITH (FORCE)");
    let (passed, said) = said_by(child.wait_with_output().unwrap());
    assert!(
        !passed,
        "the stage passed a dump cut by DROP DATABASE: {said}"
    );
    assert!(said.contains("database big"), "{said}");
    let left: Vec<String> = std::fs::read_dir(root.join("dumps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "a cut dump was kept: {left:?}");
}

/// The directory destination fills up mid-dump (a 4 MiB tmpfs mounted in the test's
/// directory, outside /tmp): the stage fails saying so, the last good dump stays whole and
/// no partial one is left.
#[test]
fn a_full_disk_while_writing_a_directory_dump_keeps_the_last_good_dump() {
    require_tool("mount");
    let server = postgres_with_shop();
    let dir = tempdir();
    let root = dir.path();
    let small = root.join("small");
    std::fs::create_dir_all(&small).unwrap();
    ok(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs"])
        .arg(&small));
    struct Unmount<'p>(&'p Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let stage = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\ndatabases = [\"shop\"]\n\
         globals = false\nformat = \"plain\"\ndirectory = \"{}\"\n",
        server.socket_dir.display(),
        server.port,
        small.display()
    );
    write_config(root, &stage);
    ok(backupctl_in(root).args(["stage", "pg"]));
    let good = std::fs::read(small.join("shop.sql")).unwrap();
    // Incompressible rows, more than the file system holds.
    server.sql(
        "shop",
        "CREATE TABLE filler AS SELECT i, md5(random()::text) || md5(random()::text) AS data \
         FROM generate_series(1, 100000) AS i",
    );
    let (passed, said) = said_by(run(backupctl_in(root).args(["stage", "pg"])));
    assert!(!passed, "the stage passed a dump that did not fit: {said}");
    assert!(said.contains("database shop"), "{said}");
    assert!(said.contains("No space left on device"), "{said}");
    assert_eq!(std::fs::read(small.join("shop.sql")).unwrap(), good);
    let names: Vec<String> = std::fs::read_dir(&small)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["shop.sql"], "a partial dump was left");
}

/// The server down while the dump streams into restic: pg_dump's failure (its exit code)
/// fails the stage, and restic, cut before the end of its input, makes no snapshot.
#[test]
fn a_postgresql_server_down_fails_the_stream_with_the_tools_exit_code_and_no_snapshot() {
    let server = postgres_with_shop();
    let dir = tempdir();
    let root = dir.path();
    init_repository(&root.join("repo"), &root.join("restic-password"));
    let stage = format!(
        "[stage.pg]\nkind = \"postgresql\"\nhost = \"{}\"\nport = {}\nrestic = \"repo\"\n\
         databases = [\"shop\"]\nglobals = false\n",
        server.socket_dir.display(),
        server.port
    );
    write_config(root, &restic_config(root, &stage));
    server.stop();
    let (passed, said) = said_by(run(backupctl_in(root).args(["stage", "pg"])));
    assert!(!passed, "{said}");
    assert!(said.contains("database shop"), "{said}");
    assert!(said.contains("pg_dump"), "{said}");
    assert!(said.contains("pg_dump failed with exit code 1"), "{said}");
    assert!(said.contains("no snapshot made"), "{said}");
    let found = snapshots(&root.join("repo"), &root.join("restic-password"));
    assert!(found.is_empty(), "a snapshot of a failed dump: {found:?}");
}
