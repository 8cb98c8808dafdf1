//! One file per subcommand.

pub mod check;
pub mod generate;
pub mod internal;
pub mod run;
pub mod stage;
pub mod verify;
