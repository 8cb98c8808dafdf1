//! Preflight checks, one line of a table each: a tool is installed (and its version), a
//! destination is writable with enough free space, a secret file is present and not readable
//! by others. The `hello` stage runs them for a job, `backupctl hello` for the whole config,
//! and `store::preflight` adds a store's own.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::needs::Needs;
use crate::out::human_bytes;

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: &'static str,
    pub item: String,
    pub ok: bool,
    pub detail: String,
}

/// Runs every check; never stops at the first failure, so one run shows all problems.
pub fn run_checks(needs: &Needs, extra_tools: &[String], min_free: u64) -> Vec<Check> {
    let mut checks = Vec::new();
    let tools: BTreeSet<&str> = needs
        .tools
        .iter()
        .copied()
        .chain(extra_tools.iter().map(String::as_str))
        .collect();
    for tool in tools {
        checks.push(check_tool(tool));
    }
    let writes: BTreeSet<&PathBuf> = needs.writes.iter().collect();
    for path in writes {
        checks.push(check_destination(path, min_free));
    }
    let secrets: BTreeSet<&PathBuf> = needs.secrets.iter().collect();
    for path in secrets {
        checks.push(check_secret(path));
    }
    for path in needs.trusted.iter().collect::<BTreeSet<_>>() {
        checks.push(check_trusted(path));
    }
    for remote in needs.remotes.iter().collect::<BTreeSet<_>>() {
        checks.push(Check {
            what: "remote",
            item: remote.clone(),
            ok: true,
            detail: "reached by its stage (not probed here)".into(),
        });
    }
    checks
}

/// A warning for each local source that does not exist (it vanished, or is not mounted):
/// not a failure, since the other sources still get backed up, but nothing is backed up there.
pub fn missing_sources(needs: &Needs) -> Vec<String> {
    let sources: BTreeSet<&PathBuf> = needs.sources.iter().collect();
    sources
        .into_iter()
        .filter(|source| source.symlink_metadata().is_err())
        .map(|source| {
            format!(
                "source {} does not exist: nothing there is backed up (`backupctl coverage` lists what is not)",
                source.display()
            )
        })
        .collect()
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).is_file().then(|| PathBuf::from(tool));
    }
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(tool))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The file every NixOS system has (nixos-rebuild writes it); no other distribution does.
const NIXOS_MARKER: &str = "/etc/NIXOS";

/// What to do about a missing tool: on NixOS there is no `apt`, and a unit's PATH is the
/// module's (`[units] path`), so the tool's package goes into `extraPackages`.
fn install_hint(tool: &str, nixos: bool) -> String {
    if nixos {
        format!(
            "add the package that provides {tool} to services.backupctl.extraPackages \
             (NixOS), then nixos-rebuild switch"
        )
    } else {
        format!("install it (Debian: apt install {tool})")
    }
}

pub fn check_tool(tool: &str) -> Check {
    let Some(path) = find_in_path(tool) else {
        return Check {
            what: "tool",
            item: tool.into(),
            ok: false,
            detail: format!(
                "not found in PATH; {}",
                install_hint(tool, Path::new(NIXOS_MARKER).exists())
            ),
        };
    };
    // A tool given by its path (restic's `restic_binary`) answers like its name.
    let version_args: &[&str] = match tool.rsplit('/').next().unwrap_or(tool) {
        "restic" | "rclone" => &["version"],
        "ssh" => &["-V"],
        _ => &["--version"],
    };
    let version = crate::process::Command::new(&path)
        .args(version_args)
        .capture()
        .ok()
        .map(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default();
    Check {
        what: "tool",
        item: tool.into(),
        ok: true,
        detail: if version.is_empty() {
            path.display().to_string()
        } else {
            version
        },
    }
}

/// The path itself when it exists, else its nearest existing ancestor (where it will be made).
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}

fn check_destination(path: &Path, min_free: u64) -> Check {
    let item = path.display().to_string();
    let fail = |detail: String| Check {
        what: "destination",
        item: item.clone(),
        ok: false,
        detail,
    };
    let Some(existing) = existing_ancestor(path) else {
        return fail("no part of the path exists".into());
    };
    if !existing.is_dir() {
        return fail(format!("{} is not a directory", existing.display()));
    }
    let probe = existing.join(format!(".backupctl-hello-{}", std::process::id()));
    if let Err(error) = std::fs::write(&probe, b"") {
        return fail(format!(
            "not writable ({error}); check ownership and ReadWritePaths="
        ));
    }
    let _ = std::fs::remove_file(&probe);
    let free = match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => stat.blocks_available() * stat.fragment_size(),
        Err(error) => return fail(format!("cannot read free space: {error}")),
    };
    let created = if existing == path {
        ""
    } else {
        " (will be created)"
    };
    if free < min_free {
        return fail(format!(
            "only {} free, {} required (min_free){created}",
            human_bytes(free),
            human_bytes(min_free)
        ));
    }
    Check {
        what: "destination",
        item,
        ok: true,
        detail: format!("writable, {} free{created}", human_bytes(free)),
    }
}

/// A secret file, checked as the stage that reads it will check it
/// ([`crate::secret_file::check`]).
pub fn check_secret(path: &Path) -> Check {
    let item = path.display().to_string();
    match crate::secret_file::check(path) {
        Ok(mode) => Check {
            what: "secret",
            item,
            ok: true,
            detail: format!("mode {mode:04o}"),
        },
        Err(error) => Check {
            what: "secret",
            item,
            ok: false,
            detail: error.to_string(),
        },
    }
}

/// A program or list a stage uses by path, checked as the stage will check it
/// ([`crate::trust::check`], for the user this runs as).
pub fn check_trusted(path: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    let item = path.display().to_string();
    let result =
        crate::trust::check(path, "the file", crate::trust::Reader::current()).and_then(|()| {
            std::fs::metadata(path).map_err(|source| crate::trust::TrustError::Unreadable {
                what: "the file",
                path: path.to_path_buf(),
                source,
            })
        });
    match result {
        Ok(meta) => Check {
            what: "trusted",
            item,
            ok: true,
            detail: format!(
                "owner {}, mode {:04o}",
                crate::trust::user_name(meta.uid()),
                meta.mode() & 0o7777
            ),
        },
        Err(error) => Check {
            what: "trusted",
            item,
            ok: false,
            detail: error.to_string(),
        },
    }
}

/// A device or path an `io_*_bandwidth` limit names, resolved as systemd resolves it when the
/// unit starts: a block device node, or the block device behind the path's file system. When
/// that fails systemd only logs a warning and the stage runs unlimited, so `hello` says it.
pub fn check_io_limit_path(path: &Path) -> Check {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let item = path.display().to_string();
    let check = |ok: bool, detail: String| Check {
        what: "io limit",
        item: item.clone(),
        ok,
        detail,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) => {
            return check(
                false,
                format!(
                    "{error}: systemd cannot find its device and will not limit the IO; name an existing block device or path"
                ),
            );
        }
    };
    let (device, what) = if meta.file_type().is_block_device() {
        (meta.rdev(), "block device")
    } else {
        (meta.dev(), "on block device")
    };
    let (major, minor) = (libc::major(device), libc::minor(device));
    if major != 0 {
        let name = block_device_name(major, minor).unwrap_or_default();
        return check(
            true,
            format!("{what} {major}:{minor} {name}").trim_end().into(),
        );
    }
    // Major 0: an anonymous device. systemd finds the disk of a btrfs with one device itself.
    match nix::sys::statfs::statfs(path) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC => check(
            true,
            "on btrfs: systemd limits its device (a btrfs of several devices is not limited)".into(),
        ),
        _ => check(
            false,
            "on a file system without a block device (tmpfs, overlay, network): systemd cannot limit its IO; name the disk's device".into(),
        ),
    }
}

/// `sda1` for 8:1, from sysfs.
fn block_device_name(major: u32, minor: u32) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok()?;
    uevent
        .lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))
        .map(str::to_string)
}

/// On a terminal or pipe: an aligned table on stdout. Under systemd: one journal record per
/// row (with the stage's fields), failures at error priority.
pub fn print_table(checks: &[Check]) -> std::io::Result<()> {
    let under_journal =
        std::env::var_os("JOURNAL_STREAM").is_some() && !std::io::stdout().is_terminal();
    if under_journal {
        for check in checks {
            if check.ok {
                tracing::info!(
                    "{:<11} {:<30} ok    {}",
                    check.what,
                    check.item,
                    check.detail
                );
            } else {
                tracing::error!(
                    "{:<11} {:<30} FAIL  {}",
                    check.what,
                    check.item,
                    check.detail
                );
            }
        }
        return Ok(());
    }
    let width = checks
        .iter()
        .map(|c| c.item.len())
        .max()
        .unwrap_or(4)
        // A longer item overflows its column; an uncapped width past u16::MAX would panic.
        .clamp(4, 60);
    crate::outln!("{:<11} {:<width$} {:<5} DETAIL", "CHECK", "ITEM", "STATE")?;
    for check in checks {
        let state = if check.ok { "ok" } else { "FAIL" };
        crate::outln!(
            "{:<11} {:<width$} {:<5} {}",
            check.what,
            check.item,
            state,
            check.detail
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A limit systemd would drop fails; a disk passes, named.
    #[test]
    fn an_io_limit_path_passes_only_on_a_block_device() {
        let missing = check_io_limit_path(Path::new("/no/such/disk"));
        assert!(
            !missing.ok && missing.detail.contains("will not limit"),
            "{missing:?}"
        );
        // procfs has no block device, like tmpfs or overlay.
        let proc = check_io_limit_path(Path::new("/proc"));
        assert!(
            !proc.ok && proc.detail.contains("without a block device"),
            "{proc:?}"
        );
        let disk = std::fs::read_dir("/sys/dev/block")
            .expect("/sys/dev/block: this test needs sysfs")
            .flatten()
            .find_map(|entry| {
                let uevent = std::fs::read_to_string(entry.path().join("uevent")).ok()?;
                let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
                let node = PathBuf::from("/dev").join(name);
                node.exists().then_some((node, name.to_string()))
            })
            .expect("no block device node in /dev: this test needs one (a disk or loop device)");
        let check = check_io_limit_path(&disk.0);
        assert!(check.ok && check.detail.ends_with(&disk.1), "{check:?}");
    }

    #[test]
    fn a_missing_tool_on_nixos_is_added_through_extra_packages() {
        assert!(install_hint("restic", true).contains("services.backupctl.extraPackages"));
        assert!(!install_hint("restic", true).contains("apt"));
        assert_eq!(
            install_hint("restic", false),
            "install it (Debian: apt install restic)"
        );
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn flags_secrets_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "x").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let check = check_secret(&secret);
        assert!(!check.ok);
        assert!(check.detail.contains("chmod 600"), "{}", check.detail);
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_secret(&secret).ok);
        assert!(!check_secret(&dir.path().join("missing")).ok);
    }

    #[test]
    fn checks_destinations_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let later = dir.path().join("not/yet");
        let check = check_destination(&later, 1);
        assert!(check.ok, "{check:?}");
        assert!(check.detail.contains("will be created"));
        let check = check_destination(dir.path(), u64::MAX);
        assert!(!check.ok);
        assert!(check.detail.contains("min_free"));
    }

    #[test]
    fn finds_tools_and_reports_missing_ones() {
        assert!(check_tool("sh").ok);
        let missing = check_tool("backupctl-no-such-tool");
        assert!(!missing.ok);
        assert!(missing.detail.contains("not found in PATH"));
    }
}
