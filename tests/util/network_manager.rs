//! A private system bus and the real NetworkManager on it, for `skip_on_metered`.
//!
//! NetworkManager (Debian's `network-manager`, installed by scripts/setup-deps with its
//! service left stopped and disabled) runs as root in a network, mount and UTS namespace of
//! its own: there it sees one veth pair and nothing of the machine's network, keeps its
//! state under the test's directory (tmpfs on /run/NetworkManager, a bind mount on
//! /var/lib/NetworkManager), never touches DNS or the hostname, and owns its name on the
//! test's bus, not on the system's. /sys is remounted read-only in the namespace: that is
//! how NetworkManager tells it runs without udev, so it takes the links as they are instead
//! of waiting for udev to announce them.
//!
//! It manages `nmtest0`, whose peer `nmpeer0` (10.99.0.1, unmanaged) can serve DHCP. Its
//! `Metered` property is NetworkManager's own reading of the connection: `connection.metered`
//! yes or no as set, and otherwise its guess — "guess no" for a wired link, "guess yes" when
//! the DHCP server sends Android's `ANDROID_METERED` vendor option (dnsmasq here, as a
//! phone's hotspot does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ok, require_tool, write};

/// A dbus-daemon of type "system" on a socket in `dir`, open to everyone; killed when dropped.
pub struct PrivateBus {
    child: Child,
    pub address: String,
}

impl PrivateBus {
    pub fn start(dir: &Path) -> PrivateBus {
        require_tool("dbus-daemon");
        let socket = dir.join("system_bus_socket");
        let config = dir.join("bus.conf");
        write(
            &config,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\"\n \
                 \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>system</type><listen>unix:path={}</listen>\
                 <auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/>\
                 <allow own=\"*\"/><allow send_destination=\"*\"/><allow receive_sender=\"*\"/>\
                 </policy></busconfig>\n",
                socket.display()
            ),
        );
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateBus {
            child,
            address: format!("unix:path={}", socket.display()),
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// NetworkManager's `NMMetered` values.
pub const METERED_YES: u32 = 1;
pub const METERED_GUESS_YES: u32 = 3;
pub const METERED_GUESS_NO: u32 = 4;

/// The connection NetworkManager activates on `nmtest0`.
const CONNECTION: &str = "metered-test";

/// The real NetworkManager on `bus`, stopped when dropped.
pub struct NetworkManager {
    child: Child,
    dir: PathBuf,
    bus: String,
    dhcp_server: Option<Child>,
}

impl NetworkManager {
    /// Starts it with its one connection metered (`connection.metered = yes`, a static
    /// address) and waits until it says so.
    pub fn start(dir: &Path, bus: &PrivateBus) -> NetworkManager {
        for tool in [
            "NetworkManager",
            "nmcli",
            "busctl",
            "unshare",
            "nsenter",
            "ip",
        ] {
            require_tool(tool);
        }
        assert!(
            unsafe { libc::geteuid() } == 0,
            "this test runs NetworkManager, which needs root (network namespaces, links)"
        );
        for sub in ["connections", "lib", "conf.d", "system-conf.d"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        write(
            &dir.join("NetworkManager.conf"),
            format!(
                "[main]\nplugins=keyfile\ndns=none\nrc-manager=unmanaged\nauth-polkit=false\n\
                 no-auto-default=*\ndhcp=internal\nhostname-mode=none\n\
                 [keyfile]\npath={}\nunmanaged-devices=interface-name:nmpeer0\n\
                 [connectivity]\nenabled=false\n",
                dir.join("connections").display()
            ),
        );
        let profile = dir.join("connections/metered-test.nmconnection");
        write(
            &profile,
            format!(
                "[connection]\nid={CONNECTION}\ntype=ethernet\ninterface-name=nmtest0\n\
                 metered=1\nautoconnect=true\n[ipv4]\nmethod=manual\n\
                 address1=10.99.0.2/24,10.99.0.1\n[ipv6]\nmethod=disabled\n"
            ),
        );
        // NetworkManager ignores a profile others may read.
        std::fs::set_permissions(
            &profile,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        // The host's /run/NetworkManager may not exist where the service never ran; the
        // tmpfs mounted over it is the namespace's own.
        std::fs::create_dir_all("/run/NetworkManager").unwrap();
        let d = dir.display();
        let script = format!(
            "set -e; mount -t tmpfs tmpfs /run/NetworkManager; \
             mount --bind {d}/lib /var/lib/NetworkManager; mount -t sysfs -o ro sysfs /sys; \
             ip link set lo up; ip link add nmtest0 type veth peer name nmpeer0; \
             ip addr add 10.99.0.1/24 dev nmpeer0; ip link set nmpeer0 up; \
             exec NetworkManager --debug --config={d}/NetworkManager.conf \
             --config-dir={d}/conf.d --system-config-dir={d}/system-conf.d \
             --intern-config={d}/lib/intern.conf --state-file={d}/lib/state \
             --pid-file=/run/NetworkManager/pid"
        );
        let log = std::fs::File::create(dir.join("NetworkManager.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--net", "--mount", "--uts", "--propagation", "private"])
            .args(["sh", "-c", &script])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare starts NetworkManager");
        let manager = NetworkManager {
            child,
            dir: dir.to_path_buf(),
            bus: bus.address.clone(),
            dhcp_server: None,
        };
        manager.wait_for(METERED_YES);
        manager
    }

    /// `connection.metered = unknown` with the static address: NetworkManager guesses, and
    /// for a wired link it guesses no.
    pub fn guess_on_a_wired_link(&self) {
        self.nmcli(&[
            "connection",
            "modify",
            CONNECTION,
            "connection.metered",
            "unknown",
        ]);
        self.nmcli(&["connection", "up", CONNECTION]);
        self.wait_for(METERED_GUESS_NO);
    }

    /// `connection.metered = unknown` with an address from a DHCP server that sends
    /// `ANDROID_METERED`, as a phone's hotspot does: NetworkManager guesses yes.
    pub fn guess_behind_a_phone(&mut self) {
        require_tool("dnsmasq");
        let leases = self.dir.join("dnsmasq.leases");
        let server = Command::new("nsenter")
            .arg(format!("--target={}", self.child.id()))
            .args([
                "--net",
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
            ])
            .args(["--interface=nmpeer0", "--bind-interfaces"])
            .args(["--dhcp-range=10.99.0.50,10.99.0.60,1h"])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg("--dhcp-option-force=43,ANDROID_METERED")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("dnsmasq starts");
        self.dhcp_server = Some(server);
        self.nmcli(&[
            "connection",
            "modify",
            CONNECTION,
            "connection.metered",
            "unknown",
            "ipv4.method",
            "auto",
            "ipv4.addresses",
            "",
            "ipv4.gateway",
            "",
        ]);
        self.nmcli(&["connection", "up", CONNECTION]);
        self.wait_for(METERED_GUESS_YES);
    }

    fn nmcli(&self, args: &[&str]) {
        ok(Command::new("nmcli")
            .args(["--wait", "20"])
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus));
    }

    /// Its `Metered` property, read with systemd's `busctl` (not the code under test).
    fn metered(&self) -> Option<u32> {
        let output = Command::new("busctl")
            .arg(format!("--address={}", self.bus))
            .args([
                "get-property",
                "org.freedesktop.NetworkManager",
                "/org/freedesktop/NetworkManager",
                "org.freedesktop.NetworkManager",
                "Metered",
            ])
            .output()
            .ok()?;
        // "u 1"
        let text = String::from_utf8_lossy(&output.stdout);
        text.trim().strip_prefix("u ")?.parse().ok()
    }

    fn wait_for(&self, metered: u32) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.metered();
            if now == Some(metered) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "NetworkManager's Metered is {now:?}, not {metered}, after 60 s; its log:\n{}",
                std::fs::read_to_string(self.dir.join("NetworkManager.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NetworkManager {
    fn drop(&mut self) {
        if let Some(server) = &mut self.dhcp_server {
            let _ = server.kill();
            let _ = server.wait();
        }
        // Its namespaces, veth pair and mounts go with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
