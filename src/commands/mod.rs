//! One file per subcommand.

pub mod check;
pub mod generate;
pub mod internal;
pub mod mount;
pub mod restore;
pub mod run;
pub mod snapshots;
pub mod stage;
