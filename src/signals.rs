//! SIGTERM/SIGINT handling: `systemctl stop` (or Ctrl-C) sets a stop flag that stages poll,
//! and is forwarded to the tools we run, so that they end cleanly before we do. A hangup
//! (SIGHUP from the kernel: the terminal of `run --here` closed) stops too; a SIGHUP that a
//! process sent does not (see [`is_a_probe`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::{Cause, Origin};

static STOPPED: AtomicBool = AtomicBool::new(false);
/// The running tools (the leaders of their process groups) and the signal that stops each.
static CHILDREN: Mutex<Vec<(i32, Signal)>> = Mutex::new(Vec::new());

/// Starts the handler thread. Call once, early in `main`, before starting any tool.
pub fn install() -> std::io::Result<()> {
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for origin in signals.forever() {
                if is_a_probe(&origin) {
                    tracing::info!(
                        signal = origin.signal,
                        "SIGHUP from process {} ignored: restic sends it to the PID of a \
                         lock of this host to see whether the lock's process lives, and after \
                         a reboot that PID may be ours",
                        origin.process.map_or(0, |p| p.pid)
                    );
                    continue;
                }
                tracing::warn!(
                    signal = origin.signal,
                    "stop requested, ending the running tool"
                );
                request_stop();
            }
        })?;
    Ok(())
}

/// A SIGHUP sent by a process, not by the kernel for a closed terminal. restic tells whether
/// the process of a lock of this host lives by sending SIGHUP to the lock's PID
/// (`processExists`, restic 0.14 and later): after a power cut that PID belongs to whatever
/// process took it in this boot — another stage's backupctl, found by the power-cut
/// campaign (seed 1207, cut 6), which then stopped as if `systemctl stop` had asked.
fn is_a_probe(origin: &Origin) -> bool {
    origin.signal == SIGHUP && matches!(origin.cause, Cause::Sent(_))
}

/// Asks the running stage to stop, as a signal would (also used by the D-Bus `Stop` method).
/// The signal goes to each tool's process group (`crate::process` starts every tool as the
/// leader of its own): ssh under rsync, a command under `sh -c` stop too.
pub fn request_stop() {
    STOPPED.store(true, Ordering::SeqCst);
    for &(pid, signal) in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        terminate(pid, signal);
    }
}

/// `signal` to the group `pid` leads, or to `pid` alone when it leads none.
fn terminate(pid: i32, signal: Signal) {
    if kill(Pid::from_raw(-pid), signal).is_err() {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// True once a stop was requested.
pub fn stopped() -> bool {
    STOPPED.load(Ordering::SeqCst)
}

/// Registers a running child so a stop request reaches it; unregisters on drop.
pub struct ChildGuard(i32);

impl ChildGuard {
    /// A child that a stop request ends with SIGTERM.
    pub fn new(pid: u32) -> Self {
        ChildGuard::stopped_by(pid, Signal::SIGTERM)
    }

    /// A child that a stop request ends with `signal` (restic: SIGINT, see
    /// [`crate::process::Command::stop_with`]).
    pub fn stopped_by(pid: u32, signal: Signal) -> Self {
        let pid = pid as i32;
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pid, signal));
        // A stop that arrived while the child was being spawned must still reach it.
        if stopped() {
            terminate(pid, signal);
        }
        ChildGuard(pid)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&(pid, _)| pid != self.0);
    }
}
