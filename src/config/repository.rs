//! `[repository.NAME]`: a restic repository declared once, which stages name
//! (`repository_name = "NAME"`, a copy stage's `from`/`to`). The table's keys and what they
//! become are the restic kind's (`stages::Repository`); here it is read and checked where
//! it stands, so an error in a repository no stage names is still reported at its line.

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::DeValue;

use super::ConfigError;
use super::source::{Source, check_name, table};
use crate::stages::Repository;

/// Builds every `[repository.NAME]`, in file order.
pub(super) fn parse_all(
    source: &Source,
    value: Spanned<DeValue>,
) -> Result<Vec<Repository>, ConfigError> {
    let message = "`repository` must hold tables, e.g. [repository.offsite]";
    let mut repositories = Vec::new();
    for (name, value) in table(source, value, message)? {
        check_name(source, &name, "repository")?;
        repositories.push(parse(source, name, value)?);
    }
    Ok(repositories)
}

/// Builds one `[repository.NAME]`.
fn parse(
    source: &Source,
    name: Spanned<String>,
    value: Spanned<DeValue>,
) -> Result<Repository, ConfigError> {
    let span = name.span();
    let mut repository = Repository::deserialize(value.into_deserializer())
        .map_err(|error| source.toml(error, Some(KEYS_HELP.into())))?;
    repository.name = name.into_inner();
    repository
        .check()
        .map_err(|error| source.spec(error, span))?;
    Ok(repository)
}

const KEYS_HELP: &str = "a repository takes location (or location_file, location_credential), \
     password_file (or password_command, password_credential), backend_files, \
     backend_credentials, options, init, restic_binary, retries, retry_delay and lock_wait; \
     see backupctl.toml(5)";

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};
    use crate::stages::StageKind;

    fn load(text: &str) -> Result<Config, ConfigError> {
        crate::config::parse(Path::new("/etc/backupctl/backup.toml"), text)
    }

    fn needs_of(config: &Config, stage: &str) -> crate::stages::Needs {
        config
            .stages
            .iter()
            .find(|s| s.name == stage)
            .unwrap()
            .spec
            .needs()
    }

    const OFFSITE: &str = r#"
[repository.offsite]
location = "rest:https://backup.example.net/host/"
password_file = "/etc/backupctl/offsite.pass"
backend_credentials = { AWS_SECRET_ACCESS_KEY = "/etc/credstore/s3-secret" }
options = ["rest.connections=2"]
retries = 5
lock_wait = "2h"
"#;

    #[test]
    fn a_stage_naming_a_repository_gets_its_keys_and_secrets() {
        let config = load(&format!(
            "{OFFSITE}\n[stage.home]\nkind = \"restic\"\nrepository_name = \"offsite\"\npaths = [\"/home\"]\n"
        ))
        .unwrap();
        let spec = config.stages[0]
            .spec
            .downcast_ref::<crate::stages::restic::Spec>()
            .unwrap();
        assert_eq!(
            spec.repository.as_ref().unwrap().get_ref(),
            "rest:https://backup.example.net/host/"
        );
        assert_eq!(spec.options, ["rest.connections=2"]);
        assert_eq!(spec.retries, Some(5));
        assert_eq!(spec.lock_wait(), Some(std::time::Duration::from_secs(7200)));
        let needs = needs_of(&config, "home");
        assert!(
            needs
                .secrets
                .contains(&"/etc/backupctl/offsite.pass".into())
        );
        assert!(
            needs
                .credentials
                .iter()
                .any(|(id, _)| id == "AWS_SECRET_ACCESS_KEY")
        );
        assert!(needs.network);
        assert_eq!(config.repositories.len(), 1);
        assert!(StageKind::validate(spec).is_ok());
    }

    #[test]
    fn a_reference_and_an_inline_key_point_at_both_lines() {
        let error = load(&format!(
            "{OFFSITE}\n[stage.home]\nkind = \"restic\"\nrepository_name = \"offsite\"\npassword_file = \"/etc/pw\"\npaths = [\"/home\"]\n"
        ))
        .unwrap_err();
        let text = error.to_string();
        assert_eq!(error.line, 13, "{text}");
        assert!(
            text.contains("`password_file` is a repository key"),
            "{text}"
        );
        assert!(
            text.contains("line 12: `repository_name = \"offsite\"`"),
            "{text}"
        );
    }

    #[test]
    fn an_error_in_a_repository_points_at_its_line_there() {
        let error = load(
            "[repository.r]\nlocation = \"/srv/r\"\npassword_file = \"relative\"\n\n[stage.s]\nkind = \"restic\"\nrepository_name = \"r\"\npaths = [\"/home\"]\n",
        )
        .unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        let error = load(
            "[repository.r]\nlocation = \"/srv/r\"\n\n[stage.s]\nkind = \"restic\"\nrepository_name = \"r\"\npaths = [\"/home\"]\n",
        )
        .unwrap_err();
        assert_eq!(error.line, 1, "{error}");
        assert!(
            error
                .message
                .contains("repository `r` needs `password_file`"),
            "{error}"
        );
        let error = load(
            "[repository.r]\nlocation = \"/srv/r\"\npasword_file = \"/p\"\n\n[stage.s]\nkind = \"hello\"\n",
        )
        .unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        let error =
            load("[stage.s]\nkind = \"restic\"\nrepository_name = \"nope\"\npaths = [\"/home\"]\n")
                .unwrap_err();
        assert!(error.message.contains("not declared"), "{error}");
    }

    #[test]
    fn defaults_fill_what_a_stage_leaves_out_and_errors_point_at_them() {
        let base = format!(
            "{OFFSITE}\n[defaults.home]\nrepository_name = \"offsite\"\nexclude = [\"*.tmp\"]\nhost = \"web1\"\nnice = 10\n"
        );
        let config = load(&format!(
            "{base}\n[stage.a]\nkind = \"restic\"\nextends = \"home\"\npaths = [\"/home\"]\n\n[stage.b]\nkind = \"restic\"\nextends = \"home\"\nhost = \"other\"\npaths = [\"/srv\"]\n"
        ))
        .unwrap();
        let spec = |i: usize| {
            config.stages[i]
                .spec
                .downcast_ref::<crate::stages::restic::Spec>()
                .unwrap()
                .clone()
        };
        assert_eq!(spec(0).host.as_deref(), Some("web1"));
        assert_eq!(spec(1).host.as_deref(), Some("other"));
        assert_eq!(spec(1).exclude, ["*.tmp"]);
        assert_eq!(config.stages[0].nice, Some(10));
        // A key the stage's kind does not take, reported at the default's line.
        let error = load(&format!(
            "{base}\n[stage.a]\nkind = \"rsync\"\nextends = \"home\"\nsources = [\"/a\"]\ndestination = \"/b\"\n"
        ))
        .unwrap_err();
        assert_eq!(error.line, 11, "{error}");
        let error = load(&format!("{base}\n[stage.a]\nkind = \"hello\"\n")).unwrap_err();
        assert!(error.message.contains("extended by no stage"), "{error}");
        let error = load(&format!(
            "{base}\n[stage.a]\nkind = \"restic\"\nextends = \"hme\"\npaths = [\"/a\"]\n"
        ))
        .unwrap_err();
        assert!(error.message.contains("not defined"), "{error}");
    }

    /// A database stage streams into a restic stage whose repository is declared: its unit
    /// needs that repository's secrets, as with inline keys.
    #[test]
    fn a_database_stage_streams_into_a_declared_repository() {
        let config = load(&format!(
            "{OFFSITE}\n[stage.home]\nkind = \"restic\"\nrepository_name = \"offsite\"\npaths = [\"/home\"]\n\n[stage.db]\nkind = \"postgresql\"\nrestic = \"home\"\n"
        ))
        .unwrap();
        let needs = needs_of(&config, "db");
        assert!(
            needs
                .secrets
                .contains(&"/etc/backupctl/offsite.pass".into()),
            "{needs:?}"
        );
        assert!(needs.network, "{needs:?}");
    }
}
