//! Documented exit codes, listed once in [`CODES`] (`--help`, and so the man page, print that list;
//! a test holds the README to it), and the class a command attaches to an error to choose one of
//! them ([`Classify::classify`], [`usage`]).
//!
//! `backupctl stage` returns its code itself (from the stage's `StageError`); every other
//! command returns an `anyhow::Error` whose code `cli::exit_code` finds by walking its chain:
//! a class a command attached, a config error (2), a stage error (its own code); anything else
//! is a failure (1). A failure is the safe default: it never tells a script "nothing ran"
//! about something that did. The walk lives in `cli`, not here, so that this module stays
//! below config and stages, which use its codes.

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

/// A documented exit code and what it means, as `--help`, the man page and the README say it.
pub struct Documented {
    pub code: u8,
    pub meaning: &'static str,
}

/// Every exit code backupctl returns, the one list: `cli` builds the `--help` text (and so the
/// man page) from it, and a test checks that the README's paragraph says the same.
pub const CODES: &[Documented] = &[
    Documented {
        code: OK,
        meaning: "ok (maybe with warnings; also when the reader of the output went away, as \
                  with `| head`)",
    },
    Documented {
        code: FAILED,
        meaning: "failed: the work was tried and failed (a stage or job; a tool such as restic \
                  or git under `restore`, `snapshots`, `mount`, `history`; differences under \
                  `verify`; `check`: invalid config; something not backed up under `coverage`)",
    },
    Documented {
        code: USAGE,
        meaning: "usage or config error, nothing ran (an invalid config, a misspelt job, stage \
                  or store name, an option that does not fit the stage, an unreadable `verify` \
                  manifest)",
    },
    Documented {
        code: PREFLIGHT,
        meaning: "the `hello` preflight found a problem",
    },
    Documented {
        code: TEMPORARY,
        meaning: "a temporary failure that may pass (network, the stage is already \
                  running, or its repository stayed locked past `lock_wait`)",
    },
    Documented {
        code: INTERRUPTED,
        meaning: "stopped by SIGTERM/SIGINT (`systemctl stop`, Ctrl-C)",
    },
];

/// The list as one sentence: `0 ok (…); 1 failed: …; …; 130 stopped by …`.
pub fn summary() -> String {
    CODES
        .iter()
        .map(|documented| format!("{} {}", documented.code, documented.meaning))
        .collect::<Vec<_>>()
        .join("; ")
}

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

/// The class a command attached to this error ([`classified`]), if any. Only this one
/// error, not its causes: `cli::exit_code` walks the chain, because it also knows the config
/// and stage errors that carry a code of their own.
pub fn class_of(error: &(dyn std::error::Error + 'static)) -> Option<Class> {
    error
        .downcast_ref::<Classified>()
        .map(|classified| classified.class)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_documented_once() {
        let classes = [
            Class::Failed,
            Class::Usage,
            Class::Preflight,
            Class::Temporary,
            Class::Interrupted,
        ];
        for code in std::iter::once(OK).chain(classes.map(Class::code)) {
            let documented = CODES.iter().filter(|d| d.code == code).count();
            assert_eq!(
                documented, 1,
                "exit code {code} is documented {documented} times"
            );
        }
        assert_eq!(
            CODES.len(),
            classes.len() + 1,
            "a code in CODES no class returns"
        );
    }

    /// The README's paragraph is written by hand (wrapped as prose), so it is compared with
    /// the list with runs of whitespace made one space.
    #[test]
    fn the_readme_lists_the_codes_as_this_module_does() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("**Exit codes**: ")
            .expect("README has an **Exit codes** paragraph");
        let paragraph = readme[start..].split("\n\n").next().unwrap();
        let paragraph = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        let expected = format!("**Exit codes**: {}.", summary());
        assert!(
            paragraph.starts_with(&expected),
            "README's exit codes differ from src/exit.rs's CODES; write them as\n{expected}\n\
             README has\n{paragraph}"
        );
    }

    #[test]
    fn the_class_is_attached_but_not_shown() {
        let error = usage("no stage `x`");
        assert_eq!(class_of(error.as_ref()), Some(Class::Usage));
        assert_eq!(format!("{error:#}"), "no stage `x`");
    }

    #[test]
    fn a_classified_error_keeps_its_causes() {
        let io = std::io::Error::other("disk on fire");
        let error = Err::<(), _>(anyhow::Error::new(io).context("writing"))
            .classify(Class::Temporary)
            .unwrap_err();
        assert_eq!(class_of(error.as_ref()), Some(Class::Temporary));
        assert_eq!(format!("{error:#}"), "writing: disk on fire");
    }
}
