//! One file per subcommand.

pub mod check;
pub mod generate;
pub mod hello;
pub mod history;
pub mod internal;
pub mod logs;
pub mod mount;
pub mod notify;
pub mod restic_cli;
pub mod restore;
pub mod run;
pub mod snapshots;
pub mod stage;
pub mod status;
pub mod store;
pub mod verify;
pub mod watch;
