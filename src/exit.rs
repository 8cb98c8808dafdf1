//! Documented exit codes (also in the man page and README), and the one place that turns a
//! command's error into one of them ([`code`]).
//!
//! `backupctl stage` returns its code itself (from the stage's `StageError`); every other
//! command returns an `anyhow::Error` whose class is found by walking its chain: a class a
//! command attached ([`Classify::classify`], [`usage`]), a config error (2), a stage error
//! (its own code); anything else is a failure (1). A failure is the safe default: it never
//! tells a script "nothing ran" about something that did.

use std::fmt;

/// Success (possibly with warnings, which are in the journal and the run record).
pub const OK: u8 = 0;
/// The stage or job failed.
pub const FAILED: u8 = 1;
/// Usage or config error: nothing was run.
pub const USAGE: u8 = 2;
/// `hello`'s preflight found a problem (tool missing, destination not writable, …).
pub const PREFLIGHT: u8 = 3;
/// A failure that may pass by itself (network, lock); units may restart on it.
pub const TEMPORARY: u8 = 75;
/// Stopped by SIGTERM/SIGINT (`systemctl stop`, Ctrl-C) before it finished.
pub const INTERRUPTED: u8 = 130;

/// What kind of failure an error is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The work was tried and failed (a tool failed, a restore did not complete): 1.
    Failed,
    /// The command line or the config is wrong; nothing ran: 2.
    Usage,
    /// A preflight check found a problem: 3.
    Preflight,
    /// May pass by itself (network, a lock held by another run): 75.
    Temporary,
    /// Stopped by a signal: 130.
    Interrupted,
}

impl Class {
    pub fn code(self) -> u8 {
        match self {
            Class::Failed => FAILED,
            Class::Usage => USAGE,
            Class::Preflight => PREFLIGHT,
            Class::Temporary => TEMPORARY,
            Class::Interrupted => INTERRUPTED,
        }
    }
}

/// An error with its class attached. It shows as the error it wraps: the class decides the
/// exit code and is never part of the message.
#[derive(Debug)]
pub struct Classified {
    class: Class,
    error: anyhow::Error,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the top message: the wrapped error's causes follow through `source`.
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Classified {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        (*self.error).source()
    }
}

/// `error` with `class` attached.
pub fn classified(class: Class, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        class,
        error: error.into(),
    })
}

/// A usage error (exit 2) with this message: a misspelt name, an option that does not fit.
pub fn usage(message: impl fmt::Display) -> anyhow::Error {
    classified(Class::Usage, anyhow::anyhow!("{message}"))
}

/// Attaches a class to the error of a `Result`.
pub trait Classify<T> {
    fn classify(self, class: Class) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> Classify<T> for Result<T, E> {
    fn classify(self, class: Class) -> anyhow::Result<T> {
        self.map_err(|error| classified(class, error))
    }
}

/// The exit code of a command's error: the first class found along its chain.
pub fn code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(classified) = cause.downcast_ref::<Classified>() {
            return classified.class.code();
        }
        if cause.is::<crate::config::ConfigError>() {
            return USAGE;
        }
        if let Some(stage) = cause.downcast_ref::<crate::stages::StageError>() {
            return stage.exit_code();
        }
    }
    FAILED
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_class_is_found_under_context_and_not_shown() {
        let error = Err::<(), _>(usage("no stage `x`"))
            .context("restoring")
            .unwrap_err();
        assert_eq!(code(&error), USAGE);
        assert_eq!(format!("{error:#}"), "restoring: no stage `x`");
    }

    #[test]
    fn a_classified_error_keeps_its_causes() {
        let io = std::io::Error::other("disk on fire");
        let error = Err::<(), _>(io)
            .context("writing")
            .classify(Class::Temporary)
            .unwrap_err();
        assert_eq!(code(&error), TEMPORARY);
        assert_eq!(format!("{error:#}"), "writing: disk on fire");
    }

    #[test]
    fn unclassified_errors_are_failures() {
        assert_eq!(code(&anyhow::anyhow!("restic failed")), FAILED);
    }
}
