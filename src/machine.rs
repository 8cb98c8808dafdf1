//! The state of the machine that decides whether a stage runs now (`on_ac_power`,
//! `skip_on_metered`): on mains power, on a metered connection. Under systemd the units ask
//! too (`ConditionACPower=`, an `ExecCondition=` that asks NetworkManager); the executor
//! asks again so that `run --here` follows the same rules, and so that the run record can
//! say when NetworkManager could not be asked.

use std::path::Path;
use std::time::Duration;

/// Whether the machine runs on mains power, decided as systemd decides `ConditionACPower=`
/// (`on_ac_power()` in systemd 252): a power supply of type `Mains` that is online means yes;
/// one that is offline (and none online) means no; no `Mains` supply at all (a desktop, a
/// VM) means yes. Supplies whose `scope` is `Device` (a mouse's battery) are ignored.
pub fn on_ac_power() -> bool {
    on_ac_power_in(Path::new("/sys/class/power_supply"))
}

fn on_ac_power_in(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    let read = |path: &Path, name: &str| {
        std::fs::read_to_string(path.join(name))
            .map(|text| text.trim().to_string())
            .unwrap_or_default()
    };
    let mut found_offline = false;
    for entry in entries.flatten() {
        let supply = entry.path();
        if read(&supply, "scope") == "Device" || read(&supply, "type") != "Mains" {
            continue;
        }
        if read(&supply, "online") == "1" {
            return true;
        }
        found_offline = true;
    }
    !found_offline
}

/// What NetworkManager says of the connection (its `Metered` property, the `NMMetered`
/// enum), or that it could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metered {
    Unknown,
    Yes,
    No,
    GuessYes,
    GuessNo,
    /// NetworkManager is not on the system bus (or the bus is not there): why.
    Absent(String),
}

impl Metered {
    fn from_nm(value: u32) -> Metered {
        match value {
            1 => Metered::Yes,
            2 => Metered::No,
            3 => Metered::GuessYes,
            4 => Metered::GuessNo,
            _ => Metered::Unknown,
        }
    }

    /// Metered, or guessed so: a stage with `skip_on_metered` does not run.
    pub fn skips(&self) -> bool {
        matches!(self, Metered::Yes | Metered::GuessYes)
    }
}

/// A condition check must never hold a backup up for long on a stuck bus.
const BUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks NetworkManager on the system bus (`$DBUS_SYSTEM_BUS_ADDRESS`, else the standard
/// socket; tests point the variable at a private bus) whether the primary connection is
/// metered.
pub fn metered() -> Metered {
    let answer: zbus::Result<u32> = zbus::block_on(async {
        let connection = zbus::connection::Builder::system()
            .method_timeout(BUS_TIMEOUT)
            .build()
            .await?;
        let reply = connection
            .call_method(
                Some("org.freedesktop.NetworkManager"),
                "/org/freedesktop/NetworkManager",
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.freedesktop.NetworkManager", "Metered"),
            )
            .await?;
        let value: zbus::OwnedVariant = reply.body().deserialize()?;
        u32::try_from(&*value)
    });
    match answer {
        Ok(value) => Metered::from_nm(value),
        Err(error) => Metered::Absent(error.to_string()),
    }
}

/// When this boot began (`btime` of `/proc/stat`): what a lock or a process of an earlier boot
/// (a power cut, a crash) left is older, and no live process owns it, whatever PID it names.
pub fn boot_time() -> Option<jiff::Timestamp> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let seconds = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    jiff::Timestamp::from_second(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(dir: &Path, name: &str, kind: &str, online: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("type"), format!("{kind}\n")).unwrap();
        std::fs::write(path.join("online"), format!("{online}\n")).unwrap();
    }

    #[test]
    fn ac_power_as_systemd_decides_it() {
        let dir = tempfile::tempdir().unwrap();
        // No supply at all (a VM, a desktop): on AC.
        assert!(on_ac_power_in(dir.path()));
        assert!(on_ac_power_in(&dir.path().join("missing")));
        supply(dir.path(), "BAT0", "Battery", "0");
        assert!(on_ac_power_in(dir.path()));
        supply(dir.path(), "AC", "Mains", "0");
        assert!(!on_ac_power_in(dir.path()));
        supply(dir.path(), "AC2", "Mains", "1");
        assert!(on_ac_power_in(dir.path()));
    }

    #[test]
    fn metered_and_guessed_metered_skip() {
        let skips: Vec<bool> = (0..5).map(|v| Metered::from_nm(v).skips()).collect();
        assert_eq!(skips, [false, true, false, true, false]);
        assert!(!Metered::Absent("no bus".into()).skips());
    }
}
