//! `[notify.command]`: a program (sendmail, msmtp, a script) that gets the message on stdin.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::ChannelSpec;
use crate::config::ConfigError;
use crate::config::load::Source;

#[derive(Debug, Clone, PartialEq)]
pub struct CommandChannel {
    /// argv; the message goes to its stdin, never into argv.
    pub command: Vec<String>,
    /// Adds a `To:` header to the message (for `sendmail -t` and the like).
    pub to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    command: Spanned<Vec<String>>,
    to: Option<String>,
}

impl ChannelSpec for CommandChannel {
    const NAME: &'static str = "command";
    type Raw = RawCommand;

    fn parse(source: &Source, _table: Range<usize>, raw: RawCommand) -> Result<Self, ConfigError> {
        let argv = raw.command;
        match argv.get_ref().first() {
            Some(program) if Path::new(program).is_absolute() => Ok(CommandChannel {
                command: argv.into_inner(),
                to: raw.to,
            }),
            _ => Err(source.error(
                argv.span(),
                "the notification command must start with an absolute path",
                Some("e.g. command = [\"/usr/bin/msmtp\", \"--read-recipients\"]; the message goes to its stdin".into()),
            )),
        }
    }
}
