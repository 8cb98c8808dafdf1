//! Standard output for every command: `outln!`/`out!` and [`bytes`] return `io::Result`
//! instead of panicking as `println!` does when the reader went away (`backupctl check |
//! head -1`: Rust ignores SIGPIPE, so the write fails with EPIPE). That failure is marked
//! [`Closed`], and `cli::main` ends quietly with exit 0 when it finds it in an error's chain;
//! a broken pipe elsewhere (a socket, a tool's stdin) stays an error.
//!
//! Also [`human_bytes`], the one way sizes are written for people (tables, `STATUS=`).

use std::io::{self, Write};

/// The reader of our standard output is gone.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct Closed;

/// Marks a broken pipe on stdout as [`Closed`]; other errors pass unchanged.
pub fn closed(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, Closed)
    } else {
        error
    }
}

/// Whether `error` comes from a closed standard output.
pub fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<Closed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<Closed>())
    })
}

/// Writes formatted text (`out!`/`outln!`).
pub fn text(args: std::fmt::Arguments<'_>, newline: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .map_err(closed)
}

/// Writes bytes as they are (a rendered page, a buffer) and flushes them.
pub fn bytes(data: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(closed)
}

/// Flushes what is buffered; `cli::main` calls it before exiting.
pub fn flush() -> io::Result<()> {
    io::stdout().lock().flush().map_err(closed)
}

/// A buffered writer on stdout for long listings; call [`Buffered::finish`] at the end (a
/// dropped `BufWriter` loses its last write error).
pub struct Buffered(io::BufWriter<io::StdoutLock<'static>>);

impl Buffered {
    pub fn new() -> Self {
        Buffered(io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()))
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

impl Default for Buffered {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Buffered {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.write(data).map_err(closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

/// `print!` that returns `io::Result<()>`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::text(format_args!($($arg)*), false)
    };
}

/// `println!` that returns `io::Result<()>`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::text(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::out::text(format_args!($($arg)*), true)
    };
}

/// Human-readable bytes for tables and STATUS= lines, e.g. `1.5 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_closed_stdout_is_found_under_context() {
        let error = Err::<(), _>(closed(io::Error::from(io::ErrorKind::BrokenPipe)))
            .context("printing the table")
            .unwrap_err();
        assert!(is_closed(&error));
    }

    #[test]
    fn other_broken_pipes_are_errors() {
        let error = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_closed(&error));
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
