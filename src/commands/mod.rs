//! One file per subcommand.

pub mod check;
pub mod generate;
pub mod history;
pub mod internal;
pub mod restore;
pub mod run;
pub mod stage;
