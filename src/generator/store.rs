//! Units of the encrypted stores: the template `backup-store@.service` (start opens the
//! store, stop closes it) and one drop-in per store with what its remote needs (network,
//! the CIFS password as a systemd credential).
//!
//! Stages that write into a store get `Wants=` + `After=` on its instance and assert its
//! mount point (see `stage_drop_in`); with `StopWhenUnneeded=yes` systemd opens the store for the first such
//! stage and closes it when the last one is done, also when a run is stopped midway.

use std::fmt::Write as _;

use super::{Options, escape, exec_line, header};
use crate::config::Config;
use crate::config::store::{Password, Remote, Store};

/// Mounting and device-mapper work must happen in the host's mount namespace, where the
/// stages will see it: so no `ProtectSystem=`, `PrivateTmp=`, `PrivateDevices=` or anything
/// else that gives the unit a namespace of its own. What it may do is bounded by its
/// capabilities instead: mount (CAP_SYS_ADMIN), lock key memory (CAP_IPC_LOCK), manage
/// the files of the remote and the store.
const CAPABILITIES: &str = "CAP_SYS_ADMIN CAP_IPC_LOCK CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_CHOWN CAP_FOWNER CAP_MKNOD CAP_SYS_RESOURCE";

pub fn template(config: &Config, options: &Options) -> String {
    let mut unit = header(config);
    unit.push_str(
        "\n[Unit]\n\
         Description=backupctl store %i\n\
         Documentation=man:backupctl(1)\n\
         # Opened for the stages that require it, closed when the last of them is done.\n\
         StopWhenUnneeded=yes\n\
         \n[Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n",
    );
    let _ = writeln!(
        unit,
        "ExecStart={}",
        exec_line(config, options, &["store", "open", "%i"])
    );
    let _ = writeln!(
        unit,
        "ExecStop={}",
        exec_line(config, options, &["store", "close", "%i"])
    );
    super::search_path(&mut unit, config);
    unit.push_str(
        "TimeoutStartSec=10min\n\
         TimeoutStopSec=10min\n\
         # No mount namespace (see the generator's docs): bounded by capabilities instead.\n",
    );
    let _ = writeln!(unit, "CapabilityBoundingSet={CAPABILITIES}");
    unit.push_str(
        "NoNewPrivileges=yes\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         RestrictNamespaces=yes\n\
         SystemCallArchitectures=native\n\
         UMask=0077\n",
    );
    unit
}

pub fn drop_in(config: &Config, store: &Store) -> String {
    let mut unit = header(config);
    unit.push_str("\n[Unit]\n");
    let what = match &store.remote {
        Remote::Cifs { volume, .. } => format!("on {volume}"),
        Remote::Block { device } => format!("on {device}"),
    };
    let _ = writeln!(
        unit,
        "Description={}",
        escape::value(&format!("backupctl store {} ({what})", store.name))
    );
    match &store.remote {
        Remote::Cifs { password, .. } => {
            unit.push_str("Wants=network-online.target\nAfter=network-online.target\n");
            unit.push_str("\n[Service]\n");
            let id = store
                .credential_id()
                .expect("CIFS stores have a credential");
            match password {
                // systemd copies the file into the unit's private credentials directory.
                Password::File(path) => {
                    let _ = writeln!(
                        unit,
                        "LoadCredential={id}:{}",
                        escape::value(&path.to_string_lossy())
                    );
                }
                // Found in /etc/credstore/ and friends by systemd itself.
                Password::Credential(_) => {
                    let _ = writeln!(unit, "LoadCredential={id}");
                }
            }
            unit.push_str("RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6\n");
        }
        Remote::Block { .. } => {
            unit.push_str("\n[Service]\nRestrictAddressFamilies=AF_UNIX AF_NETLINK\n");
        }
    }
    unit
}
