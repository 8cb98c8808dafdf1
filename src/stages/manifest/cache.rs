//! The incremental hash cache: a file whose device, inode, size, mtime and ctime are all
//! unchanged since the last run keeps its hash, so an unchanged tree costs a walk, not a read.
//!
//! ctime is in the key because it cannot be set from user space: a file rewritten and then
//! given its old mtime back (`touch -r`, `rsync -t`) still gets a new ctime.
//!
//! A file changed within [`RACY_SECONDS`] of the run that hashed it is not cached: a write in
//! the same timestamp tick after we read it would leave every field of the key unchanged
//! (git's "racy clean" problem).
//!
//! File: `BKCTLMC1`, then fixed 80-byte records (dev, ino, size: u64; mtime: i64,
//! mtime_nsec: u32, ctime: i64, ctime_nsec: u32; hash: 32 bytes; little-endian), then a
//! BLAKE3 of everything before. A damaged or missing cache is an empty cache.

use std::collections::HashMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"BKCTLMC1";
const RECORD: usize = 80;

/// Files changed less than this many seconds before the run started are hashed every time.
pub const RACY_SECONDS: i64 = 2;

/// What must be unchanged for a hash to be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
}

/// Hashes of the last run, by (device, inode).
#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<(u64, u64), (Stat, [u8; 32])>,
}

impl Cache {
    /// Reads a cache file; anything unreadable gives an empty cache (every file is hashed).
    pub fn load(path: &Path) -> Cache {
        let Ok(data) = std::fs::read(path) else {
            return Cache::default();
        };
        Self::decode(&data).unwrap_or_else(|| {
            tracing::warn!(
                "the hash cache {} is damaged; hashing every file",
                path.display()
            );
            Cache::default()
        })
    }

    fn decode(data: &[u8]) -> Option<Cache> {
        let body_len = data.len().checked_sub(32)?;
        let (body, checksum) = data.split_at(body_len);
        if !body.starts_with(MAGIC)
            || blake3::hash(body).as_bytes() != checksum
            || !(body.len() - MAGIC.len()).is_multiple_of(RECORD)
        {
            return None;
        }
        let mut entries = HashMap::with_capacity((body.len() - MAGIC.len()) / RECORD);
        for record in body[MAGIC.len()..].chunks_exact(RECORD) {
            let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap());
            let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().unwrap());
            let stat = Stat {
                dev: u64_at(0),
                ino: u64_at(8),
                size: u64_at(16),
                mtime: u64_at(24) as i64,
                mtime_nsec: u32_at(32),
                ctime: u64_at(36) as i64,
                ctime_nsec: u32_at(44),
            };
            let hash: [u8; 32] = record[48..80].try_into().unwrap();
            entries.insert((stat.dev, stat.ino), (stat, hash));
        }
        Some(Cache { entries })
    }

    /// The cached hash, if the file is exactly as it was when hashed.
    pub fn get(&self, stat: &Stat) -> Option<[u8; 32]> {
        self.entries
            .get(&(stat.dev, stat.ino))
            .filter(|(cached, _)| cached == stat)
            .map(|(_, hash)| *hash)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The cache a run leaves behind: the files it saw, minus those changed too recently to trust.
pub fn encode(records: &[(Stat, [u8; 32])], run_started: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + records.len() * RECORD + 32);
    out.extend_from_slice(MAGIC);
    let trusted = |stat: &Stat| {
        stat.mtime < run_started - RACY_SECONDS && stat.ctime < run_started - RACY_SECONDS
    };
    for (stat, hash) in records.iter().filter(|(stat, _)| trusted(stat)) {
        out.extend_from_slice(&stat.dev.to_le_bytes());
        out.extend_from_slice(&stat.ino.to_le_bytes());
        out.extend_from_slice(&stat.size.to_le_bytes());
        out.extend_from_slice(&stat.mtime.to_le_bytes());
        out.extend_from_slice(&stat.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&stat.ctime.to_le_bytes());
        out.extend_from_slice(&stat.ctime_nsec.to_le_bytes());
        out.extend_from_slice(hash);
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ino: u64, mtime: i64) -> Stat {
        Stat {
            dev: 7,
            ino,
            size: 10,
            mtime,
            mtime_nsec: 5,
            ctime: mtime,
            ctime_nsec: 6,
        }
    }

    #[test]
    fn reuses_only_exact_matches_and_skips_racy_files() {
        let bytes = encode(&[(stat(1, 100), [1; 32]), (stat(2, 999), [2; 32])], 1000);
        let cache = Cache::decode(&bytes).unwrap();
        assert_eq!(cache.get(&stat(1, 100)), Some([1; 32]));
        // Changed within RACY_SECONDS of the run: not cached.
        assert_eq!(cache.get(&stat(2, 999)), None);
        // Any field changed: a miss.
        assert_eq!(
            cache.get(&Stat {
                size: 11,
                ..stat(1, 100)
            }),
            None
        );
        assert_eq!(
            cache.get(&Stat {
                ctime_nsec: 7,
                ..stat(1, 100)
            }),
            None
        );
    }

    #[test]
    fn damaged_cache_is_rejected() {
        let mut bytes = encode(&[(stat(1, 100), [1; 32])], 1000);
        bytes[20] ^= 1;
        assert!(Cache::decode(&bytes).is_none());
    }
}
