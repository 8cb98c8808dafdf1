//! Escaping values for unit files (systemd.unit(5), systemd.service(5)): `%` starts a
//! specifier, `$` an environment expansion in `Exec*=`, and spaces separate words in list
//! settings. Every value that comes from the config passes through here.

/// A plain value (descriptions, single paths in `Condition*=`): `%` → `%%`.
pub fn value(text: &str) -> String {
    text.replace('%', "%%")
}

/// One word of a space-separated list (`ReadWritePaths=`, …): `%` escaped, and quoted with
/// C-style escapes when it holds whitespace, quotes or backslashes.
pub fn word(text: &str) -> String {
    let escaped = value(text);
    if !escaped.is_empty()
        && !escaped.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        return escaped;
    }
    let mut quoted = String::with_capacity(escaped.len() + 2);
    quoted.push('"');
    for c in escaped.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// One argument in `ExecStart=`: like [`word`], and `$` → `$$` so it is not expanded.
pub fn exec_arg(text: &str) -> String {
    word(&text.replace('$', "$$"))
}

/// `Environment=` assignment, always quoted: `"KEY=value"`.
pub fn environment(key: &str, value: &str) -> String {
    let assignment = format!("{key}={value}");
    let quoted = word(&assignment);
    if quoted.starts_with('"') {
        quoted
    } else {
        format!("\"{quoted}\"")
    }
}

/// A string as a unit name's instance, as `systemd-escape` writes it: `/` → `-`, bytes other
/// than ASCII letters, digits, `:`, `_` and `.` (and a leading `.`) → `\xNN`. The unit reads it
/// back unescaped with `%I`. Used for the notifier's instance, which is a unit name itself
/// (`backup@copy.service` → `backup\x40copy.service`).
pub fn unit_instance(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'/' => escaped.push('-'),
            b'.' if index == 0 => escaped.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => {
                escaped.push(byte as char)
            }
            _ => escaped.push_str(&format!("\\x{byte:02x}")),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specifiers() {
        assert_eq!(value("100% sure"), "100%% sure");
        assert_eq!(word("/data/50%"), "/data/50%%");
    }

    #[test]
    fn quotes_words_with_spaces_and_quotes() {
        assert_eq!(word("/home/sig/My Files"), "\"/home/sig/My Files\"");
        assert_eq!(word("a\"b"), "\"a\\\"b\"");
        assert_eq!(word("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(word(""), "\"\"");
    }

    #[test]
    fn escapes_exec_arguments() {
        assert_eq!(exec_arg("$HOME/x"), "$$HOME/x");
        assert_eq!(
            exec_arg("/etc/backupctl/config.toml"),
            "/etc/backupctl/config.toml"
        );
    }

    #[test]
    fn escapes_unit_instances_like_systemd_escape() {
        // `systemd-escape 'backup@my-stage.service'`
        assert_eq!(
            unit_instance("backup@my-stage.service"),
            "backup\\x40my\\x2dstage.service"
        );
        assert_eq!(
            unit_instance("backup-job.service"),
            "backup\\x2djob.service"
        );
        assert_eq!(unit_instance(".a/b"), "\\x2ea-b");
    }

    #[test]
    fn quotes_environment() {
        assert_eq!(environment("A", "b"), "\"A=b\"");
        assert_eq!(environment("A", "b c%"), "\"A=b c%%\"");
    }
}
