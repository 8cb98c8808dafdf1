//! `backupctl store init-key|init|open|close NAME`: set up a store, and the start/stop of
//! `backup-store@NAME.service`.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::commands::Context;
use crate::config::{Config, Store};
use crate::exit::{Class, Classify};
use crate::outln;
use crate::store::{self, Access, init, luks};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Create the store's random key file (mode 0400); refuses to overwrite one.
    InitKey { name: String },
    /// Create the encrypted image on the remote (size, LUKS2, btrfs); refuses to touch an
    /// existing image.
    Init {
        name: String,
        /// cryptsetup's --pbkdf (e.g. pbkdf2); default: cryptsetup's (argon2id).
        #[arg(long, hide = true)]
        pbkdf: Option<String>,
        /// cryptsetup's --pbkdf-force-iterations; only for tests (weakens the key slot).
        #[arg(long, hide = true)]
        pbkdf_force_iterations: Option<u32>,
    },
    /// Open the store and mount it at /run/backupctl/store/NAME (ExecStart= of its unit).
    Open { name: String },
    /// Close what `open` opened (ExecStop= of its unit).
    Close { name: String },
}

/// The store NAME of the config, or a usage error listing the stores there are.
pub fn find<'a>(config: &'a Config, name: &str) -> anyhow::Result<&'a Store> {
    config
        .store(name)
        .with_context(|| {
            let names: Vec<&str> = config.stores.iter().map(|s| s.name.as_str()).collect();
            if names.is_empty() {
                format!(
                    "{} defines no stores; add a [store.{name}] table",
                    config.file.display()
                )
            } else {
                format!(
                    "no store `{name}` in {}; its stores are: {}",
                    config.file.display(),
                    names.join(", ")
                )
            }
        })
        .classify(Class::Usage)
}

pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    match &args.verb {
        Verb::InitKey { name } => {
            let store = find(config, name)?;
            init::init_key(store)?;
            outln!(
                "created the key {} (mode 0400). Keep a copy somewhere safe, away from the NAS: without it the store cannot be read.",
                store.keyfile.display()
            )?;
        }
        Verb::Init {
            name,
            pbkdf,
            pbkdf_force_iterations,
        } => {
            let store = find(config, name)?;
            let kdf = luks::Kdf {
                pbkdf: pbkdf.clone(),
                iterations: *pbkdf_force_iterations,
            };
            init::init_store(store, &kdf)?;
            outln!(
                "created the encrypted image {} on the remote (LUKS2, btrfs inside)",
                store.image
            )?;
        }
        Verb::Open { name } => {
            let store = find(config, name)?;
            store::open(store, &store.mount_point(), Access::ReadWrite)?;
            tracing::info!("store {name} open at {}", store.mount_point().display());
        }
        Verb::Close { name } => {
            let store = find(config, name)?;
            store::close(store, Some(&[store.mount_point()]))?;
            tracing::info!("store {name} closed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses early, with a useful message, what only root can do.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(crate::exit::usage(format_args!(
            "{what} needs root (mount, cryptsetup): run it with sudo"
        )));
    }
    Ok(())
}
