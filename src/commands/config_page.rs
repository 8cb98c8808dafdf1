//! backupctl.toml(5): the config file's man page. Its example is `examples/full.toml`, built
//! in, which a test keeps complete (every key the loader takes), so the page cannot fall
//! behind the loader either.

/// The annotated example that shows every key.
const FULL_EXAMPLE: &str = include_str!("../../examples/full.toml");

/// The file name `man --dir` writes the page under.
pub const FILE_NAME: &str = "backupctl.toml.5";

/// The page, in roff.
pub fn render() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut page = format!(
        r#".TH BACKUPCTL.TOML 5 "" "backupctl {version}" "File Formats"
.SH NAME
backupctl.toml \- the backupctl configuration file
.SH SYNOPSIS
/etc/backupctl/config.toml
.br
$XDG_CONFIG_HOME/backupctl/config.toml (\fBbackupctl \-\-user\fR; default ~/.config)
.br
any file given with \fB\-\-config\fR or \fB$BACKUPCTL_CONFIG\fR
.SH DESCRIPTION
A TOML file that describes backup jobs. \fBbackupctl generate\fR (or the systemd generator
at boot and at \fBsystemctl daemon\-reload\fR) turns it into systemd units: a job
\fB[job]\fR or \fB[jobs.\fINAME\fB]\fR becomes \fBbackup\-\fINAME\fB.service\fR and, with a
\fBschedule\fR, \fBbackup\-\fINAME\fB.timer\fR; each stage \fB[stage.\fINAME\fB]\fR becomes
an instance \fBbackup@\fINAME\fB.service\fR of one template, ordered after its parents by a
drop\-in. Stages run in file order within their job unless \fBafter\fR says otherwise.
.PP
Every stage has a \fBkind\fR: \fBhello\fR (preflight), \fBexec\fR, \fBrsync\fR,
\fBrestic\fR, \fBcopy\fR (restic copy between two declared repositories), \fBgit\fR,
\fBrclone\fR, \fBgitrepos\fR, \fBmanifest\fR or \fBdrill\fR.
.PP
Written once, used by many stages: \fB[repository.\fINAME\fB]\fR declares a restic
repository (\fBlocation\fR or \fBlocation_file\fR/\fBlocation_credential\fR, the password,
backend keys, \fBoptions\fR, \fBinit\fR, \fBretries\fR, \fBretry_delay\fR,
\fBlock_wait\fR), which a restic stage names with \fBrepository_name\fR and a copy stage with
\fBfrom\fR and \fBto\fR; a stage that names one gives none of those keys itself.
\fB[defaults.\fINAME\fB]\fR holds any stage keys (exclude lists, host, tags, job,
limits); a stage takes them with \fBextends = "\fINAME\fB"\fR, and a key the stage sets
itself wins whole. An error in a value from either table points at its line there.
.PP
Besides the stages: \fB[store.\fINAME\fB]\fR (a LUKS2 image with btrfs inside on a NAS
share or block device), \fB[notify]\fR (failure notifications), \fB[metrics]\fR (a
Prometheus text file), \fB[coverage]\fR (what \fBbackupctl coverage\fR walks) and
\fB[units]\fR (settings of the generated units).
.PP
The file is checked whole before anything is generated or run (\fBbackupctl check\fR):
.IP \(bu 2
An unknown key is an error. Every error names the file, line and column, shows the line
and says what to do, e.g. "did you mean `schedule`?".
.IP \(bu 2
No key or string may hold a control character or end in a backslash: values become unit
lines.
.IP \(bu 2
Paths are absolute and spelled as systemd takes them (no \fB.\fR or \fB..\fR component, no
\fB//\fR). Sources, destinations, repositories and secret files may not be under /tmp or
/var/tmp (each unit gets private ones, \fBPrivateTmp=\fR) or /dev.
.IP \(bu 2
Secrets never go into the file: passwords, keys, URLs with tokens are read from files
(\fB*_file\fR, mode 0600, owned by the stage's user or root) or loaded as systemd
credentials (\fB*_credential\fR).
.IP \(bu 2
Time spans are systemd's (\fB90s\fR, \fB30min\fR, \fB1h 30min\fR); \fBschedule\fR is an
\fBOnCalendar=\fR expression, checked by systemd's rules (systemd.time(7)).
.SH EXAMPLE
Every key, with what it does (also installed as
/usr/share/doc/backupctl/examples/full.toml):
.PP
.nf
"#
    );
    page.push_str(&roff_literal(FULL_EXAMPLE));
    page.push_str(
        r#".fi
.SH FILES
.TP
/etc/backupctl/config.toml
the system's config
.TP
/var/lib/backupctl/runs.jsonl
run records (user scope: ~/.local/state/backupctl/)
.TP
/usr/share/doc/backupctl/examples/
example configs: a laptop, a server, a Raspberry Pi, restic, stores, drills
.SH SEE ALSO
\fBbackupctl\fR(1), \fBbackupctl\-check\fR(1), \fBbackupctl\-generate\fR(1),
\fBsystemd.unit\fR(5), \fBsystemd.exec\fR(5), \fBsystemd.time\fR(7), \fBrestic\fR(1),
\fBrsync\fR(1)
"#,
    );
    page
}

/// Text shown as it is between `.nf` and `.fi`: backslashes escaped, and a line that starts
/// with `.` or `'` (a roff request) guarded with `\&`.
fn roff_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line.replace('\\', "\\e").replace('-', "\\-"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_text_cannot_become_roff_requests() {
        assert_eq!(
            roff_literal(".TH x\n'x\na\\b -c\n"),
            "\\&.TH x\n\\&'x\na\\eb \\-c\n"
        );
    }

    #[test]
    fn the_page_holds_the_whole_example() {
        let page = render();
        assert!(page.starts_with(".TH BACKUPCTL.TOML 5"));
        assert!(page.contains(&roff_literal(FULL_EXAMPLE)));
        assert!(FULL_EXAMPLE.lines().count() > 200);
    }
}
