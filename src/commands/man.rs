//! `man`: the man pages, rendered by clap_mangen from the same definitions as `--help`.
//! backupctl(1) lists its subcommands as `backupctl-NAME(1)`; `--dir` writes those pages too,
//! so that every reference resolves and every subcommand's options are documented.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// The command the pages are made from (`cli::command()`, handed in: the pages come from
/// the same definitions as `--help`). clap's `help` subcommand gets no page (it only
/// repeats `--help`), so backupctl(1) does not name one either.
fn man_command(command: clap::Command) -> clap::Command {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    command
}

/// The page of `command`. Its footer names backupctl and its version: clap_mangen would
/// put the subcommand's bare name there (subcommands have no version).
fn man_page(command: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(command.clone())
        .source(format!("backupctl {}", env!("CARGO_PKG_VERSION")))
}

/// `man`: backupctl(1) on stdout (what scripts and older installs read).
pub fn print(command: clap::Command) -> anyhow::Result<ExitCode> {
    let mut page = Vec::new();
    man_page(&man_command(command)).render(&mut page)?;
    crate::out::bytes(&page).context("cannot write the man page to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `man --dir DIR`: backupctl.1 and one page per visible subcommand, nested ones included
/// (`store init` → backupctl-store-init.1, the name backupctl-store(1) refers to), and the
/// config file's page backupctl.toml.5. Each file is replaced whole; nothing else in DIR is
/// touched.
pub fn write_dir(command: clap::Command, dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_pages(&man_command(command), dir)?;
    let path = dir.join(super::config_page::FILE_NAME);
    crate::paths::write_atomically(
        &path,
        super::config_page::render().as_bytes(),
        crate::paths::Fsync::No,
        None,
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `command` and of its visible subcommands, as `clap_mangen::generate_to`
/// does, but each file atomically.
fn write_pages(command: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let man = man_page(command);
    let mut page = Vec::new();
    man.render(&mut page)?;
    let path = dir.join(man.get_filename());
    crate::paths::write_atomically(&path, &page, crate::paths::Fsync::No, None)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    Ok(())
}
