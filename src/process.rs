//! The one way backupctl runs a program. The tools a stage drives (rsync, restic, …) go
//! through [`Command::run`]: output read line by line (`\r` counts as a line end, for progress
//! meters), a stop request forwarded, the exit status turned into a [`ToolError`] that names
//! the tool and the tail of what it said (stage, snapshot and store errors wrap it). Short
//! tools whose output is wanted whole (`mount`, `cryptsetup`, `btrfs`, a `--version`) go
//! through [`Command::output`] or [`Command::capture`], under the same rules.
//!
//! Every tool runs in a process group of its own (a stop request reaches ssh under rsync, a
//! command under `sh -c`) and dies with us: `PR_SET_PDEATHSIG` sends it SIGTERM when the
//! backupctl that started it ends, however it ends (`kill -9` of `run --here` included), so
//! no rsync goes on writing into a destination the next run takes over. SIGTERM rather than
//! SIGKILL: rsync removes its partial file and restic its repository lock on SIGTERM.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;

use crate::signals;

/// How many lines of a tool's stderr are kept for the error message.
const TAIL_LINES: usize = 8;

type LineHandler<'a> = Box<dyn FnMut(&str) + 'a>;

/// A tool invocation. Build it, then [`Command::run`].
pub struct Command<'a> {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    ok_codes: Vec<i32>,
    on_line: Option<LineHandler<'a>>,
    on_stderr: Option<LineHandler<'a>>,
    /// stderr lines that say nothing to a reader of the error (a Go stack trace under
    /// restic's message): still logged, but kept out of [`ToolError::Failed`]'s tail.
    noise: Option<fn(&str) -> bool>,
    /// Where the tool's stdin comes from (default: /dev/null).
    stdin: Option<Box<dyn Read + Send>>,
    /// What a stop request sends the tool's group ([`Command::stop_with`]).
    stop_signal: nix::sys::signal::Signal,
}

/// Why a tool did not finish with an accepted exit code.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} failed with exit code {code}{}", tail(.stderr))]
    Failed {
        tool: String,
        code: i32,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    #[error("{tool} was killed by signal {signal}")]
    Killed { tool: String, signal: i32 },
    #[error("cannot run {tool}: {source} (is it installed? `backupctl hello` checks)")]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {tool}: {source}")]
    Wait {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} ended without a status")]
    NoStatus { tool: String },
    /// What fed the tool's stdin failed ([`Command::stdin_from`]); the tool was stopped
    /// before it saw the end of its input.
    #[error("{tool}'s input failed: {source}")]
    Input {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// We were asked to stop (the tool got SIGTERM, or was never started).
    #[error("stopped by a signal")]
    Interrupted,
}

fn tail(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// A short tool's whole output and how it ended ([`Command::capture`]).
#[derive(Debug)]
pub struct Captured {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A tool that exited with an accepted code.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stderr_tail: String,
}

enum Line {
    Out(String),
    Err(String),
}

impl<'a> Command<'a> {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            ok_codes: vec![0],
            on_line: None,
            on_stderr: None,
            noise: None,
            stdin: None,
            stop_signal: nix::sys::signal::Signal::SIGTERM,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Removes an inherited variable (e.g. a `RESTIC_PASSWORD` from the caller's shell).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_remove.push(key.as_ref().to_os_string());
        self
    }

    pub fn envs<'b>(mut self, vars: impl IntoIterator<Item = (&'b String, &'b String)>) -> Self {
        for (key, value) in vars {
            self = self.env(key, value);
        }
        self
    }

    /// Exit codes other than 0 that still count as success (e.g. rsync's 24, vanished files).
    pub fn ok_codes(mut self, codes: &[i32]) -> Self {
        self.ok_codes.extend_from_slice(codes);
        self
    }

    /// Called for each line (or `\r`-separated update) on stdout.
    pub fn on_line(mut self, handler: impl FnMut(&str) + 'a) -> Self {
        self.on_line = Some(Box::new(handler));
        self
    }

    /// Called for each line on stderr (default: logged as a warning).
    pub fn on_stderr(mut self, handler: impl FnMut(&str) + 'a) -> Self {
        self.on_stderr = Some(Box::new(handler));
        self
    }

    /// stderr lines for which `is_noise` holds are left out of the error's tail.
    pub fn tail_skips(mut self, is_noise: fn(&str) -> bool) -> Self {
        self.noise = Some(is_noise);
        self
    }

    /// Feeds the tool's stdin from `reader` (e.g. a [`Producer`]). When a read fails (the
    /// producer failed), the tool gets SIGINT *while its stdin is still open* (restic removes
    /// its lock on SIGINT, and SIGTERM ends restic before 0.17 without its clean-up): it never
    /// sees the end of its input, so it cannot take a truncated stream for a whole one. `run`
    /// then returns [`ToolError::Input`].
    pub fn stdin_from(mut self, reader: impl Read + Send + 'static) -> Self {
        self.stdin = Some(Box::new(reader));
        self
    }

    /// The signal a stop request sends the tool (default SIGTERM). restic 0.14 removes its
    /// lock on SIGINT only: SIGTERM ends it at once and leaves the lock behind, which blocks
    /// the repository's exclusive operations for 30 minutes (the power-cut campaign, seed
    /// 2612, a shutdown during both restic stages).
    pub fn stop_with(mut self, signal: nix::sys::signal::Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    fn tool_name(&self) -> String {
        Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// The command as std spawns it: output piped, in a process group of its own, dying with
    /// us ([`die_with_us`]).
    fn std_command(&self, stdin: Stdio) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        for key in &self.env_remove {
            command.env_remove(key);
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        die_with_us(&mut command, self.stop_signal);
        command
    }

    /// Runs a short tool (`mount`, `cryptsetup`, `btrfs`, a `--version`) to its end with its
    /// output captured whole: its own process group, the death signal, its helpers waited for,
    /// as under [`Command::run`]. A stop request is *not* forwarded and does not prevent the
    /// start: these tools are short, and some undo what a stopped stage leaves (deleting its
    /// btrfs snapshot, closing a store), which must happen all the more after a stop. Its exit
    /// status is not judged here ([`Command::output`] does); stdin is /dev/null.
    pub fn capture(self) -> Result<Captured, ToolError> {
        let tool = self.tool_name();
        tracing::debug!(
            "running {tool} {}",
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut command = self.std_command(Stdio::null());
        adopt_orphans();
        let child = command.spawn().map_err(|source| ToolError::Spawn {
            tool: tool.clone(),
            source,
        })?;
        let leader = child.id() as i32;
        let output = child.wait_with_output().map_err(|source| ToolError::Wait {
            tool: tool.clone(),
            source,
        })?;
        wait_for_group(leader, &tool);
        Ok(Captured {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Starts a program the caller talks to itself: `journalctl --follow`, whose output it reads
    /// as it comes, or a notify command, whose stdin it writes. In its own process group and
    /// dying with us like every other; stderr is ours. The caller waits for it (ending early,
    /// it kills the group: [`kill_group`]).
    pub fn spawn(self, stdin: Stdio, stdout: Stdio) -> Result<std::process::Child, ToolError> {
        let tool = self.tool_name();
        let mut command = self.std_command(stdin);
        command.stdout(stdout).stderr(Stdio::inherit());
        command
            .spawn()
            .map_err(|source| ToolError::Spawn { tool, source })
    }

    /// [`Command::capture`], judged as [`Command::run`] judges: the tool's stdout when it
    /// exited with an accepted code, else the error with the last lines of its stderr.
    pub fn output(self) -> Result<String, ToolError> {
        let tool = self.tool_name();
        let ok_codes = self.ok_codes.clone();
        let captured = self.capture()?;
        let status = captured.status;
        match (status.code(), status.signal()) {
            (Some(code), _) if ok_codes.contains(&code) => Ok(captured.stdout),
            (Some(code), _) => {
                let lines: Vec<&str> = captured
                    .stderr
                    .lines()
                    .filter(|line| !line.trim().is_empty())
                    .collect();
                let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
                Err(ToolError::Failed {
                    tool,
                    code,
                    stderr: tail.join("\n"),
                })
            }
            (None, Some(signal)) => Err(ToolError::Killed { tool, signal }),
            (None, None) => Err(ToolError::NoStatus { tool }),
        }
    }

    /// Runs the tool to its end. A stop request is forwarded to it as SIGTERM and then
    /// reported as [`ToolError::Interrupted`].
    pub fn run(mut self) -> Result<Finished, ToolError> {
        let tool = self.tool_name();
        if signals::stopped() {
            return Err(ToolError::Interrupted);
        }
        let mut command = self.std_command(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        adopt_orphans();
        let mut child = command.spawn().map_err(|source| ToolError::Spawn {
            tool: tool.clone(),
            source,
        })?;
        let guard = signals::ChildGuard::stopped_by(child.id(), self.stop_signal);
        let feeder = match (self.stdin.take(), child.stdin.take()) {
            (Some(reader), Some(pipe)) => Some(feed(reader, pipe, child.id() as i32)),
            _ => None,
        };
        let (sender, lines) = mpsc::channel();
        let out = child
            .stdout
            .take()
            .map(|s| read_lines(s, sender.clone(), Line::Out));
        let err = child
            .stderr
            .take()
            .map(|s| read_lines(s, sender, Line::Err));

        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        for line in lines {
            match line {
                Line::Out(text) => {
                    if let Some(handler) = self.on_line.as_mut() {
                        handler(&text);
                    }
                }
                Line::Err(text) => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    if !self.noise.is_some_and(|is_noise| is_noise(&text)) {
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(text.clone());
                    }
                    match self.on_stderr.as_mut() {
                        Some(handler) => handler(&text),
                        None => tracing::warn!(tool = %tool, "{text}"),
                    }
                }
            }
        }
        for reader in [out, err].into_iter().flatten() {
            let _ = reader.join();
        }
        let status = child.wait().map_err(|source| ToolError::Wait {
            tool: tool.clone(),
            source,
        })?;
        wait_for_group(child.id() as i32, &tool);
        drop(guard);
        // Joined only now: on a failed input the feeder holds the tool's stdin open until here.
        if let Some(Ok(Err((source, _pipe)))) = feeder.map(std::thread::JoinHandle::join) {
            return Err(ToolError::Input { tool, source });
        }
        let stderr_tail = Vec::from(tail).join("\n");
        if signals::stopped() {
            return Err(ToolError::Interrupted);
        }
        match (status.code(), status.signal()) {
            (Some(code), _) if self.ok_codes.contains(&code) => Ok(Finished { code, stderr_tail }),
            (Some(code), _) => Err(ToolError::Failed {
                tool,
                code,
                stderr: stderr_tail,
            }),
            (None, Some(signal)) => Err(ToolError::Killed { tool, signal }),
            (None, None) => Err(ToolError::NoStatus { tool }),
        }
    }
}

/// Kills a program [`Command::spawn`] started, and whatever it started in its group.
pub fn kill_group(child: &std::process::Child) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A failed input, and the tool's stdin, kept open until the tool has ended.
type FeedError = (std::io::Error, std::process::ChildStdin);

/// Copies `reader` into the tool's stdin on its own thread (see [`Command::stdin_from`]).
fn feed(
    mut reader: Box<dyn Read + Send>,
    mut pipe: std::process::ChildStdin,
    leader: i32,
) -> std::thread::JoinHandle<Result<(), FeedError>> {
    use std::io::Write;
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(leader),
                        nix::sys::signal::Signal::SIGINT,
                    );
                    return Err((error, pipe));
                }
            };
            if pipe.write_all(&buffer[..read]).is_err() {
                // The tool stopped reading (it ended): its own status says why.
                return Ok(());
            }
        }
    })
}

/// A command whose output feeds a tool ([`Command::stdin_from`]), e.g. `pg_dump` into
/// `restic backup --stdin`. Its end of output is only an end when it exited 0: otherwise the
/// read fails with what it said on stderr. It runs in its own process group, dies with us,
/// gets our stop request, and is stopped (SIGTERM) and reaped when dropped unfinished.
pub struct Producer {
    name: String,
    child: std::process::Child,
    stdout: std::process::ChildStdout,
    stderr: Option<std::thread::JoinHandle<String>>,
    finished: bool,
    _guard: signals::ChildGuard,
}

impl Producer {
    /// Starts `argv` (stdin /dev/null, stderr lines to the journal as warnings) with `env`
    /// added to ours.
    pub fn spawn<'b>(
        argv: &[String],
        env: impl IntoIterator<Item = (&'b String, &'b String)>,
    ) -> Result<Producer, ToolError> {
        let program = argv.first().map(String::as_str).unwrap_or_default();
        let name = Path::new(program)
            .file_name()
            .map_or(program.into(), |n| n.to_string_lossy().into_owned());
        if signals::stopped() {
            return Err(ToolError::Interrupted);
        }
        let mut command = std::process::Command::new(program);
        command
            .args(&argv[1.min(argv.len())..])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_us(&mut command, nix::sys::signal::Signal::SIGTERM);
        let mut child = command.spawn().map_err(|source| ToolError::Spawn {
            tool: name.clone(),
            source,
        })?;
        let guard = signals::ChildGuard::new(child.id());
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().map(|pipe| {
            let name = name.clone();
            // The stage's journal fields (its span) on the command's lines too.
            let span = tracing::Span::current();
            std::thread::spawn(move || {
                let _entered = span.enter();
                let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    tracing::warn!("{name}: {line}");
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                Vec::from(tail).join("\n")
            })
        });
        Ok(Producer {
            name,
            child,
            stdout,
            stderr,
            finished: false,
            _guard: guard,
        })
    }
}

impl Read for Producer {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.stdout.read(buffer)?;
        if read > 0 || buffer.is_empty() || self.finished {
            return Ok(read);
        }
        // End of output: whole only if the command succeeded.
        let status = self.child.wait()?;
        wait_for_group(self.child.id() as i32, &self.name);
        self.finished = true;
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(0),
            (Some(code), _) => Err(std::io::Error::other(format!(
                "{} failed with exit code {code}{}",
                self.name,
                tail(&stderr)
            ))),
            (_, signal) => Err(std::io::Error::other(format!(
                "{} was killed by signal {}{}",
                self.name,
                signal.unwrap_or(0),
                tail(&stderr)
            ))),
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if !self.finished {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = self.child.wait();
            wait_for_group(self.child.id() as i32, &self.name);
        }
    }
}

/// How long a tool's helper processes may go on after the tool itself ended.
const GROUP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Makes us the subreaper of the tools' processes: when a tool's leader ends before its
/// helpers, they become our children, and [`wait_for_group`] can wait for them and reap them
/// (otherwise they would go to PID 1, which in a container may never reap them).
fn adopt_orphans() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
            tracing::debug!(
                "cannot become a subreaper: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// Waits until every process of the tool's group has ended. rsync's leader can exit on
/// SIGTERM while its receiver is still removing the partial file; going on then (clearing the
/// run mark, exiting, after which systemd kills what is left of the unit) would leave half a
/// file in the destination. Helpers that outlive [`GROUP_GRACE`] are killed.
fn wait_for_group(leader: i32, tool: &str) {
    use nix::errno::Errno;
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let group = nix::unistd::Pid::from_raw(-leader);
    let deadline = std::time::Instant::now() + GROUP_GRACE;
    let mut killed = false;
    loop {
        match waitpid(group, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if !killed && std::time::Instant::now() >= deadline {
                    tracing::warn!(
                        "{tool} ended but its helper processes did not within {} s: killing them",
                        GROUP_GRACE.as_secs()
                    );
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(leader),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    killed = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            // ECHILD: none left (or none we can wait for).
            Err(_) => return,
        }
    }
}

/// Puts the child in a process group of its own and has the kernel send it `signal` (its stop
/// signal: SIGTERM, restic's SIGINT) when we die. The death signal fires when the *thread* that spawned the child ends, not the
/// process: [`Command::run`] spawns and waits on the calling thread, which therefore lives at
/// least as long as the child (a panic unwinding past the wait ends the child with it, which
/// is what we want).
fn die_with_us(command: &mut std::process::Command, signal: nix::sys::signal::Signal) {
    let parent = nix::unistd::getpid();
    let signal = signal as libc::c_int;
    command.process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid) are made.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // We died before the prctl took effect: the signal will never come.
            if libc::getppid() != parent.as_raw() {
                return Err(std::io::Error::other(
                    "backupctl ended before the tool started",
                ));
            }
            Ok(())
        });
    }
}

/// Reads a pipe on its own thread, splitting on `\n` and `\r` (lossy UTF-8: tools may print
/// non-UTF-8 file names).
fn read_lines(
    pipe: impl Read + Send + 'static,
    sender: mpsc::Sender<Line>,
    wrap: fn(String) -> Line,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match read_until_either(&mut reader, &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buffer);
                    let text = text.trim_end_matches(['\n', '\r']);
                    if sender.send(wrap(text.to_string())).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Like `read_until(b'\n')` but also stops at `\r`.
fn read_until_either(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(total);
        }
        match available.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(at) => {
                buffer.extend_from_slice(&available[..=at]);
                reader.consume(at + 1);
                return Ok(total + at + 1);
            }
            None => {
                let len = available.len();
                buffer.extend_from_slice(available);
                reader.consume(len);
                total += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_only_when_the_tools_helpers_have_ended() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("helper-done");
        // The helper closes the pipes and outlives the shell, as rsync's receiver can.
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "(exec >/dev/null 2>&1; sleep 0.3; touch '{}') & exit 0",
                marker.display()
            ))
            .run()
            .unwrap();
        assert!(marker.exists(), "run() returned before the helper ended");
    }

    #[test]
    fn a_producer_feeds_the_tool_and_its_failure_stops_it_before_end_of_input() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy");
        let argv = |script: &str| vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        let env: Vec<(String, String)> = Vec::new();
        let producer =
            Producer::spawn(&argv("seq 1 100000"), env.iter().map(|(k, v)| (k, v))).unwrap();
        Command::new("/bin/sh")
            .args(["-c", &format!("cat > '{}'", copy.display())])
            .stdin_from(producer)
            .run()
            .unwrap();
        let text = std::fs::read_to_string(&copy).unwrap();
        assert_eq!(text.lines().count(), 100000);
        assert!(text.ends_with("100000\n"));

        // The consumer would mark its copy complete at end of input: it must never get there.
        let done = dir.path().join("done");
        let producer = Producer::spawn(
            &argv("seq 1 1000; echo broken >&2; exit 5"),
            env.iter().map(|(k, v)| (k, v)),
        )
        .unwrap();
        let error = Command::new("/bin/sh")
            .args([
                "-c",
                &format!("cat > /dev/null && touch '{}'", done.display()),
            ])
            .stdin_from(producer)
            .run()
            .unwrap_err();
        assert!(
            matches!(&error, ToolError::Input { source, .. }
                if source.to_string() == "sh failed with exit code 5: broken"),
            "{error}"
        );
        assert!(!done.exists(), "the consumer saw the end of a failed input");
    }

    #[test]
    fn splits_on_carriage_returns() {
        let mut lines = Vec::new();
        Command::new("/bin/sh")
            .args(["-c", "printf 'a\\rb\\nc'"])
            .on_line(|line| lines.push(line.to_string()))
            .run()
            .unwrap();
        assert_eq!(lines, ["a", "b", "c"]);
    }

    #[test]
    fn reports_failure_with_stderr_tail() {
        let error = Command::new("/bin/sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .on_stderr(|_| {})
            .run()
            .unwrap_err();
        assert_eq!(error.to_string(), "sh failed with exit code 3: boom");
    }

    #[test]
    fn accepts_listed_codes() {
        let done = Command::new("/bin/sh")
            .args(["-c", "exit 24"])
            .ok_codes(&[24])
            .run()
            .unwrap();
        assert_eq!(done.code, 24);
    }

    #[test]
    fn a_tool_runs_in_its_own_process_group() {
        let mut stat = String::new();
        Command::new("/bin/cat")
            .arg("/proc/self/stat")
            .on_line(|line| stat.push_str(line))
            .run()
            .unwrap();
        // pid (comm) state ppid pgrp …
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let (pid, pgrp): (i32, i32) = (
            stat.split(' ').next().unwrap().parse().unwrap(),
            fields[2].parse().unwrap(),
        );
        assert_eq!(pgrp, pid, "{stat}");
        assert_ne!(pgrp, nix::unistd::getpgrp().as_raw(), "{stat}");
    }

    #[test]
    fn a_short_tool_runs_in_its_own_process_group_too() {
        let stat = Command::new("/bin/cat")
            .arg("/proc/self/stat")
            .output()
            .unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        let pid: i32 = stat.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(fields[2].parse::<i32>().unwrap(), pid, "{stat}");
    }

    #[test]
    fn a_short_tool_gives_its_stdout_or_fails_with_its_last_stderr_lines() {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo noise >&2"])
            .output()
            .unwrap();
        assert_eq!(out, "out\n");
        let error = Command::new("sh")
            .args([
                "-c",
                "echo out; for i in $(seq 1 20); do echo line$i >&2; done; exit 3",
            ])
            .output()
            .unwrap_err();
        let ToolError::Failed { tool, code, stderr } = &error else {
            panic!("{error:?}");
        };
        assert_eq!((tool.as_str(), *code), ("sh", 3));
        let expected: Vec<String> = (13..=20).map(|i| format!("line{i}")).collect();
        assert_eq!(stderr, &expected.join("\n"));
        let missing = Command::new("/nonexistent/tool").output().unwrap_err();
        assert!(
            missing.to_string().contains("is it installed?"),
            "{missing}"
        );
    }

    #[test]
    fn a_tool_gets_sigterm_when_the_thread_that_started_it_ends() {
        // The death signal fires when the spawning thread ends (as when the process dies).
        let mut child = std::thread::spawn(|| {
            let mut command = std::process::Command::new("/bin/sleep");
            command.arg("60");
            die_with_us(&mut command, nix::sys::signal::Signal::SIGTERM);
            command.spawn().unwrap()
        })
        .join()
        .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    }
}
