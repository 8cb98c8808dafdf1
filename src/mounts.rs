//! The mounts of this process's namespace, read from `/proc/self/mountinfo`: the one parser
//! that the executor (`when_mounted`) and the stores use.
//!
//! The kernel writes paths as raw bytes with space, tab, newline and backslash escaped as
//! `\ooo` (octal); everything else, non-ASCII and non-UTF-8 bytes included, is left as it is.
//! So the fields are decoded on bytes and become `OsString`s, never lossy UTF-8: a mount
//! point named `/mnt/Sicherung für Ölberg` or one that is not valid UTF-8 compares equal to
//! its path.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo: what is mounted where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount source (field after the filesystem type): a device, `//host/share`, ….
    pub source: OsString,
    /// The mount point.
    pub target: PathBuf,
}

/// The current mounts; none when mountinfo cannot be read.
pub fn read() -> Vec<Mount> {
    std::fs::read("/proc/self/mountinfo")
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// True when `path` (as written, not resolved) is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    read().iter().any(|mount| mount.target == path)
}

/// Parses the text of a mountinfo file. Lines it cannot read are skipped.
pub fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&byte| byte == b'\n')
        .filter_map(parse_line)
        .collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: the
/// fifth field is the mount point; after the ` - ` that ends the optional fields come the
/// type and the source.
fn parse_line(line: &[u8]) -> Option<Mount> {
    let target = line.split(|&byte| byte == b' ').nth(4)?;
    let separator = line.windows(3).position(|window| window == b" - ")?;
    let source = line[separator + 3..].split(|&byte| byte == b' ').nth(1)?;
    Some(Mount {
        source: OsString::from_vec(unescape(source)),
        target: PathBuf::from(OsString::from_vec(unescape(target))),
    })
}

/// Decodes the `\ooo` escapes of a field; a backslash not followed by three octal digits
/// stays as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(byte) = field
                .get(i + 1..i + 4)
                .filter(|code| code.iter().all(|digit| (b'0'..=b'7').contains(digit)))
                .and_then(|code| u8::from_str_radix(std::str::from_utf8(code).ok()?, 8).ok())
        {
            bytes.push(byte);
            i += 4;
        } else {
            bytes.push(field[i]);
            i += 1;
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_fields() {
        assert_eq!(unescape(br"/mnt/with\040space"), b"/mnt/with space");
        assert_eq!(unescape(br"/end\134"), b"/end\\");
        assert_eq!(unescape(br"/not\08x"), br"/not\08x");
        assert_eq!(unescape(b"/plain"), b"/plain");
    }

    #[test]
    fn non_ascii_and_non_utf8_paths_round_trip() {
        let mut text = b"36 35 98:0 / /mnt/Sicherung\\040f\xc3\xbcr\\040\xc3\x96lberg rw,noatime shared:1 - btrfs /dev/mapper/backupctl-nas rw\n".to_vec();
        text.extend_from_slice(b"37 35 0:44 / /mnt/raw\xff rw - cifs //nas/b\\303\\244ckup rw\n");
        let mounts = parse(&text);
        assert_eq!(
            mounts,
            vec![
                Mount {
                    source: "/dev/mapper/backupctl-nas".into(),
                    target: "/mnt/Sicherung für Ölberg".into(),
                },
                Mount {
                    source: "//nas/bäckup".into(),
                    target: PathBuf::from(OsString::from_vec(b"/mnt/raw\xff".to_vec())),
                },
            ]
        );
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()));
    }
}
