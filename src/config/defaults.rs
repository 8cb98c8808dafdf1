//! `[defaults.NAME]`: stage keys written once, which a stage takes with `extends = "NAME"`.
//!
//! The model is the simplest that removes the repetition: a defaults table holds any keys a
//! stage may hold (its kind's and every stage's), a stage extends at most one, and a key the
//! stage sets itself wins, whole (lists are not joined). The keys are copied into the stage's
//! table *with their positions*, so a bad value is reported at its line in the defaults table,
//! and a key the stage's kind does not take is reported there too. Defaults do not extend
//! other defaults.

use std::ops::Range;

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::source::{Source, check_name, table};

/// The key a stage names its defaults with.
pub(super) const EXTENDS: &str = "extends";

/// The config's `[defaults.NAME]` tables, by name, with the span of the name.
#[derive(Default)]
pub(super) struct Defaults<'i> {
    tables: IndexMap<String, (Range<usize>, DeTable<'i>)>,
    used: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl<'i> Defaults<'i> {
    /// Adds every `[defaults.NAME]` of the `defaults` table.
    pub(super) fn add_all(
        &mut self,
        source: &Source,
        value: Spanned<DeValue<'i>>,
    ) -> Result<(), ConfigError> {
        let message = "`defaults` must hold tables, e.g. [defaults.home]";
        for (name, value) in table(source, value, message)? {
            check_name(source, &name, "defaults")?;
            self.add(source, name, value)?;
        }
        Ok(())
    }

    /// Adds one `[defaults.NAME]`.
    fn add(
        &mut self,
        source: &Source,
        name: Spanned<String>,
        value: Spanned<DeValue<'i>>,
    ) -> Result<(), ConfigError> {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            return Err(source.error(
                span,
                format!("defaults `{}` must be a table", name.get_ref()),
                Some(format!(
                    "write it as [defaults.{}] followed by stage keys",
                    name.get_ref()
                )),
            ));
        };
        if let Some((key, _)) = table.get_key_value(EXTENDS) {
            return Err(source.error(
                key.span(),
                "defaults cannot extend other defaults",
                Some("write the keys here, or let the stage extend the other defaults".into()),
            ));
        }
        self.tables
            .insert(name.get_ref().clone(), (name.span(), table));
        Ok(())
    }

    /// Takes `extends` out of a stage's table and adds the keys of the defaults it names
    /// that the stage does not set itself.
    pub(super) fn apply(
        &self,
        source: &Source,
        value: &mut Spanned<DeValue<'i>>,
    ) -> Result<(), ConfigError> {
        let DeValue::Table(table) = value.get_mut() else {
            return Ok(()); // the stage parser reports a stage that is not a table
        };
        let Some(extends) = table.remove(EXTENDS) else {
            return Ok(());
        };
        let Some(name) = extends.get_ref().as_str() else {
            return Err(source.error(
                extends.span(),
                "`extends` must be a string, the name of a [defaults.NAME] table",
                Some("e.g. extends = \"home\"".into()),
            ));
        };
        let Some((_, defaults)) = self.tables.get(name) else {
            let known: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            return Err(source.error(
                extends.span(),
                format!("`extends` names defaults `{name}`, which are not defined"),
                Some(if known.is_empty() {
                    format!("define them as [defaults.{name}] with the keys stages share")
                } else {
                    format!("defined defaults: {}", known.join(", "))
                }),
            ));
        };
        self.used.borrow_mut().insert(name.to_string());
        for (key, value) in defaults {
            if !table.contains_key(key.get_ref().as_ref()) {
                table.insert(key.clone(), value.clone());
            }
        }
        Ok(())
    }

    /// Every defaults table is extended by a stage: one that is not was most likely meant to
    /// be (a misspelt `extends` is reported at the stage; this is the other half).
    pub(super) fn check_used(&self, source: &Source) -> Result<(), ConfigError> {
        let used = self.used.borrow();
        match self.tables.iter().find(|(name, _)| !used.contains(*name)) {
            Some((name, (span, _))) => Err(source.error(
                span.clone(),
                format!("defaults `{name}` are extended by no stage"),
                Some(format!(
                    "add `extends = \"{name}\"` to the stages they are for, or remove them"
                )),
            )),
            None => Ok(()),
        }
    }
}
