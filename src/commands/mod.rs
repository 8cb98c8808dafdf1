//! One file per subcommand. Each `run` takes the resolved [`Context`] (scope, config path,
//! the config on first use) and its own `Args`, which `cli` puts into its clap enum.

pub mod check;
pub mod config_page;
mod context;
pub mod coverage;
pub mod generate;
pub mod hello;
pub mod history;
pub mod internal;
pub mod logs;
pub mod man;
pub mod mount;
pub mod notify;
pub mod restore;
pub mod run;
pub mod snapshots;
pub mod stage;
pub mod status;
pub mod store;
pub mod verify;
pub mod watch;

pub use self::context::{Context, unsupported};
