//! The manifest file format: one file per source tree, every entry with its metadata and,
//! for regular files, a BLAKE3 hash. Compact and deterministic: the same tree always gives
//! the same bytes (entries sorted by path bytes, no timestamps of the run itself).
//!
//! ```text
//! file    := magic root count entry* checksum
//! magic   := "BKCTLMF1"                          8 bytes, the format version is the last byte
//! root    := bytes                               the source path the manifest describes
//! count   := varint                              number of entries
//! entry   := shared:varint suffix:bytes          path = previous path[..shared] + suffix
//!            type:u8                             f d l c b p s (file, dir, symlink, char dev,
//!                                                block dev, fifo, socket), as ASCII
//!            mode:varint                         permission bits and suid/sgid/sticky (& 0o7777)
//!            uid:varint gid:varint
//!            size:varint                         st_size (0 for directories)
//!            mtime:zigzag-varint nsec:varint     seconds since the epoch, nanoseconds
//!            [target:bytes]                      symlinks only: the link target
//!            [rdev:varint]                       devices only
//!            [hash:32 bytes]                     regular files only: BLAKE3 of the contents
//! bytes   := len:varint byte*                    raw bytes, paths need not be UTF-8
//! varint  := unsigned LEB128
//! checksum:= 32 bytes                            BLAKE3 of everything before it
//! ```
//!
//! Paths are relative to the root, `/`-separated; the root itself is the entry with the
//! empty path, so its mode and owner are recorded too.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The first bytes of every manifest file.
pub const MAGIC: &[u8; 8] = b"BKCTLMF1";

/// What kind of file an entry is (`st_mode & S_IFMT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileType {
    pub fn code(self) -> u8 {
        match self {
            FileType::File => b'f',
            FileType::Dir => b'd',
            FileType::Symlink => b'l',
            FileType::CharDevice => b'c',
            FileType::BlockDevice => b'b',
            FileType::Fifo => b'p',
            FileType::Socket => b's',
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            b'f' => FileType::File,
            b'd' => FileType::Dir,
            b'l' => FileType::Symlink,
            b'c' => FileType::CharDevice,
            b'b' => FileType::BlockDevice,
            b'p' => FileType::Fifo,
            b's' => FileType::Socket,
            _ => return None,
        })
    }

    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => FileType::Dir,
            libc::S_IFLNK => FileType::Symlink,
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFSOCK => FileType::Socket,
            _ => FileType::File,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Dir => "directory",
            FileType::Symlink => "symlink",
            FileType::CharDevice => "character device",
            FileType::BlockDevice => "block device",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
        }
    }
}

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the root, `/`-separated, raw bytes; empty for the root itself.
    pub path: Vec<u8>,
    pub file_type: FileType,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Symlinks: where the link points.
    pub target: Option<Vec<u8>>,
    /// Devices: the device number.
    pub rdev: Option<u64>,
    /// Regular files: BLAKE3 of the contents.
    pub hash: Option<[u8; 32]>,
}

impl Entry {
    /// The path as an OS path (relative).
    pub fn rel_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }
}

/// A whole manifest: the root it describes and its entries, sorted by path bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub root: PathBuf,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a backupctl manifest (wrong magic bytes)")]
    Magic,
    #[error("the manifest is truncated")]
    Truncated,
    #[error("the manifest is corrupt: {0}")]
    Corrupt(&'static str),
    /// An entry that decodes but cannot be right; `entry` counts from 1 in file order, the
    /// line of `backupctl verify --manifest FILE`'s listing after its `# root` line.
    #[error("the manifest is corrupt at entry {entry} ({path}): {what}")]
    Entry {
        entry: u64,
        path: String,
        what: &'static str,
    },
    #[error("the manifest's checksum does not match: the file was damaged")]
    Checksum,
}

impl Manifest {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.root, self.entries.len(), self.entries.iter())
    }

    pub fn decode(data: &[u8]) -> Result<Manifest, FormatError> {
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            return Err(FormatError::Magic);
        }
        if data.len() < MAGIC.len() + 32 {
            return Err(FormatError::Truncated);
        }
        let (body, checksum) = data.split_at(data.len() - 32);
        if checksum_of(body).as_bytes() != checksum {
            return Err(FormatError::Checksum);
        }
        let mut reader = Reader {
            data: body,
            at: MAGIC.len(),
        };
        let root = PathBuf::from(OsStr::from_bytes(reader.bytes()?));
        let count = reader.varint()?;
        // Each entry takes at least 9 bytes: never trust a count to size an allocation.
        let mut entries = Vec::with_capacity(count.min(body.len() as u64 / 9) as usize);
        let mut previous: Vec<u8> = Vec::new();
        for _ in 0..count {
            let shared = reader.varint()? as usize;
            if shared > previous.len() {
                return Err(FormatError::Corrupt(
                    "path prefix longer than the previous path",
                ));
            }
            let mut path = previous[..shared].to_vec();
            path.extend_from_slice(reader.bytes()?);
            let file_type =
                FileType::from_code(reader.byte()?).ok_or(FormatError::Corrupt("unknown type"))?;
            let mode = reader.u32()?;
            let uid = reader.u32()?;
            let gid = reader.u32()?;
            let size = reader.varint()?;
            let mtime = unzigzag(reader.varint()?);
            let mtime_nsec = reader.u32()?;
            let mut entry = Entry {
                path,
                file_type,
                mode,
                uid,
                gid,
                size,
                mtime,
                mtime_nsec,
                target: None,
                rdev: None,
                hash: None,
            };
            match file_type {
                FileType::Symlink => entry.target = Some(reader.bytes()?.to_vec()),
                FileType::CharDevice | FileType::BlockDevice => entry.rdev = Some(reader.varint()?),
                FileType::File => {
                    let hash: [u8; 32] = reader.take(32)?.try_into().expect("32 bytes");
                    entry.hash = Some(hash);
                }
                _ => {}
            }
            check_entry(&entry, &previous, entries.is_empty()).map_err(|what| {
                FormatError::Entry {
                    entry: entries.len() as u64 + 1,
                    path: display_bytes(&entry.path),
                    what,
                }
            })?;
            previous.clone_from(&entry.path);
            entries.push(entry);
        }
        if reader.at != body.len() {
            return Err(FormatError::Corrupt("bytes after the last entry"));
        }
        Ok(Manifest { root, entries })
    }
}

/// What a decoded entry must be for a comparison to be right: the diff walks two manifests
/// in step by path, so an entry out of order would be reported missing *and* added.
fn check_entry(entry: &Entry, previous: &[u8], first: bool) -> Result<(), &'static str> {
    if first {
        if !entry.path.is_empty() || entry.file_type != FileType::Dir {
            return Err("the first entry must be the root directory (empty path)");
        }
    } else if entry.path.as_slice() <= previous {
        return Err("entries are not in path order (sorted by bytes, each path once)");
    }
    if !first
        && entry
            .path
            .split(|&b| b == b'/')
            .any(|part| matches!(part, b"" | b"." | b".."))
    {
        return Err("the path has an empty, `.` or `..` component");
    }
    if entry.path.contains(&0) {
        return Err("the path holds a NUL byte");
    }
    if entry.mode > 0o7777 {
        return Err("mode out of range (more than permission bits)");
    }
    if entry.mtime_nsec >= 1_000_000_000 {
        return Err("nanoseconds out of range");
    }
    if entry.size > i64::MAX as u64 {
        return Err("size out of range");
    }
    Ok(())
}

/// The bytes of a manifest of `root` whose `count` entries, sorted by path, are `entries`
/// (a scan hands them over where they lie, without first gathering them into one vector).
pub fn encode<'a>(root: &Path, count: usize, entries: impl Iterator<Item = &'a Entry>) -> Vec<u8> {
    // About 50 bytes an entry on average; a guess that saves most reallocations.
    let mut out = Vec::with_capacity(64 + count * 56);
    out.extend_from_slice(MAGIC);
    put_bytes(&mut out, root.as_os_str().as_bytes());
    put_varint(&mut out, count as u64);
    let mut previous: &[u8] = &[];
    let mut written = 0;
    for entry in entries {
        let shared = previous
            .iter()
            .zip(&entry.path)
            .take_while(|(a, b)| a == b)
            .count();
        put_varint(&mut out, shared as u64);
        put_bytes(&mut out, &entry.path[shared..]);
        out.push(entry.file_type.code());
        put_varint(&mut out, u64::from(entry.mode));
        put_varint(&mut out, u64::from(entry.uid));
        put_varint(&mut out, u64::from(entry.gid));
        put_varint(&mut out, entry.size);
        put_varint(&mut out, zigzag(entry.mtime));
        put_varint(&mut out, u64::from(entry.mtime_nsec));
        match entry.file_type {
            FileType::Symlink => put_bytes(&mut out, entry.target.as_deref().unwrap_or(&[])),
            FileType::CharDevice | FileType::BlockDevice => {
                put_varint(&mut out, entry.rdev.unwrap_or(0))
            }
            FileType::File => out.extend_from_slice(&entry.hash.unwrap_or([0; 32])),
            _ => {}
        }
        previous = &entry.path;
        written += 1;
    }
    assert_eq!(written, count, "the entry count written up front");
    let checksum = checksum_of(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// BLAKE3 of a whole manifest, on all cores (the same hash as `blake3::hash`, sooner: a
/// manifest of a home directory is tens of megabytes).
fn checksum_of(data: &[u8]) -> blake3::Hash {
    blake3::Hasher::new().update_rayon(data).finalize()
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(len).ok_or(FormatError::Truncated)?;
        let slice = self.data.get(self.at..end).ok_or(FormatError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, FormatError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FormatError::Corrupt("varint longer than 64 bits"))
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        u32::try_from(self.varint()?).map_err(|_| FormatError::Corrupt("value out of range"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let len = usize::try_from(self.varint()?).map_err(|_| FormatError::Truncated)?;
        self.take(len)
    }
}

/// A path for people: valid UTF-8 as is, other bytes and control characters as `\xNN`.
pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                if c == '\\' {
                    out.push_str("\\\\");
                } else {
                    out.extend(c.escape_default());
                }
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let file = |path: &[u8], hash: u8| Entry {
            path: path.to_vec(),
            file_type: FileType::File,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            size: 12,
            mtime: -5,
            mtime_nsec: 999_999_999,
            target: None,
            rdev: None,
            hash: Some([hash; 32]),
        };
        Manifest {
            root: PathBuf::from("/home/sig"),
            entries: vec![
                Entry {
                    file_type: FileType::Dir,
                    hash: None,
                    mode: 0o755,
                    ..file(b"", 0)
                },
                file(b"a/b\xffc", 1),
                file(b"a/b\xffd", 2),
                Entry {
                    file_type: FileType::Symlink,
                    target: Some(b"../x".to_vec()),
                    hash: None,
                    ..file(b"link", 0)
                },
                Entry {
                    file_type: FileType::CharDevice,
                    rdev: Some(0x0103),
                    hash: None,
                    ..file(b"null", 0)
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let manifest = sample();
        let bytes = manifest.encode();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(Manifest::decode(&bytes).unwrap(), manifest);
    }

    #[test]
    fn detects_damage() {
        let mut bytes = sample().encode();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(FormatError::Checksum)
        ));
        assert!(matches!(
            Manifest::decode(b"BKCTLMF1"),
            Err(FormatError::Truncated)
        ));
        assert!(matches!(Manifest::decode(b"nope"), Err(FormatError::Magic)));
    }

    #[test]
    fn varints_and_zigzag() {
        for value in [0u64, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut reader = Reader { data: &out, at: 0 };
            assert_eq!(reader.varint().unwrap(), value);
        }
        for value in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
    }

    #[test]
    fn displays_raw_paths() {
        assert_eq!(display_bytes(b"a/b\xffc\n"), "a/b\\xffc\\n");
        assert_eq!(display_bytes("été".as_bytes()), "été");
    }
}
