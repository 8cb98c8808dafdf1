//! A stage's conditions, `on_ac_power` and `skip_on_metered`: when the stage is skipped (not
//! failed) because of the machine's state. They become unit lines (`ConditionACPower=true`;
//! an `ExecCondition=` of `backupctl condition STAGE`, which asks NetworkManager) and the
//! executor checks them too, for `run --here` (see `crate::machine`).

use toml::Spanned;

use super::ConfigError;
use super::source::Source;

/// When a stage runs, besides its order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Only on mains power; on battery the stage is skipped.
    pub on_ac_power: bool,
    /// Skipped when NetworkManager says the connection is metered (or guesses so).
    pub skip_on_metered: bool,
}

impl Conditions {
    /// Checks the keys against what the stage does: `skip_on_metered` on a stage that uses
    /// no network would never change anything.
    pub(super) fn parse(
        source: &Source,
        on_ac_power: Option<bool>,
        skip_on_metered: Option<Spanned<bool>>,
        uses_network: bool,
    ) -> Result<Conditions, ConfigError> {
        if let Some(metered) = &skip_on_metered
            && *metered.get_ref()
            && !uses_network
        {
            return Err(source.error(
                metered.span(),
                "`skip_on_metered` is set on a stage that does not use the network",
                Some(
                    "remove it: only stages that reach a remote (a remote repository, an rsync \
                     or rclone remote) are held back on a metered connection"
                        .into(),
                ),
            ));
        }
        Ok(Conditions {
            on_ac_power: on_ac_power.unwrap_or(false),
            skip_on_metered: skip_on_metered.is_some_and(|m| *m.get_ref()),
        })
    }

    /// The conditions in words, for `check --verbose` and `hello`.
    pub fn describe(&self) -> Vec<&'static str> {
        let mut words = Vec::new();
        if self.on_ac_power {
            words.push("on_ac_power: skipped on battery (ConditionACPower=true)");
        }
        if self.skip_on_metered {
            words.push(
                "skip_on_metered: skipped on a metered connection (NetworkManager's Metered: yes or guessed yes)",
            );
        }
        words
    }
}

impl super::Stage {
    /// The stage's conditions and bandwidth limits, one line each, as they apply to a run
    /// starting now (`check --verbose`, `hello`).
    pub fn manners(&self) -> Vec<String> {
        let now = crate::bandwidth::now();
        let conditions = self.conditions.describe().into_iter().map(String::from);
        let limits = self.spec.bandwidth().into_iter().map(|b| b.describe(now));
        conditions.chain(limits).collect()
    }
}
