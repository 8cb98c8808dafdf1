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
//!
//! Records are in the path order of the run that wrote them, which is the order the next run
//! asks in: a lookup compares the record at a cursor and moves on ([`Lookup`]), with no
//! table to build and no hashing per file. Only a file not found where expected (a new,
//! moved or deleted file) makes a lookup build an index by (device, inode), once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

const MAGIC: &[u8; 8] = b"BKCTLMC1";
const RECORD: usize = 80;
/// The bytes of a record that must match: everything but the hash.
const KEY: usize = 48;
/// Records a lookup skips forward before it consults the index (files deleted since).
const LOOK_AHEAD: usize = 8;

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

impl Stat {
    /// The record's first bytes, as stored.
    fn key(&self) -> [u8; KEY] {
        let mut key = [0u8; KEY];
        key[0..8].copy_from_slice(&self.dev.to_le_bytes());
        key[8..16].copy_from_slice(&self.ino.to_le_bytes());
        key[16..24].copy_from_slice(&self.size.to_le_bytes());
        key[24..32].copy_from_slice(&self.mtime.to_le_bytes());
        key[32..36].copy_from_slice(&self.mtime_nsec.to_le_bytes());
        key[36..44].copy_from_slice(&self.ctime.to_le_bytes());
        key[44..48].copy_from_slice(&self.ctime_nsec.to_le_bytes());
        key
    }
}

/// Hashes of the last run: the file as read (checksum verified), records in path order.
#[derive(Debug, Default)]
pub struct Cache {
    data: Vec<u8>,
    /// Record number by (device, inode), built by the first lookup that needs it.
    index: OnceLock<HashMap<[u8; 16], usize>>,
}

impl Cache {
    /// Reads a cache file; anything unreadable gives an empty cache (every file is hashed).
    pub fn load(path: &Path) -> Cache {
        let Ok(data) = std::fs::read(path) else {
            return Cache::default();
        };
        Self::decode(data).unwrap_or_else(|| {
            tracing::warn!(
                "the hash cache {} is damaged; hashing every file",
                path.display()
            );
            Cache::default()
        })
    }

    /// A cache from a file's bytes; an empty cache when they are damaged.
    pub fn from_bytes(data: Vec<u8>) -> Cache {
        Self::decode(data).unwrap_or_default()
    }

    fn decode(data: Vec<u8>) -> Option<Cache> {
        let body_len = data.len().checked_sub(32)?;
        let (body, checksum) = data.split_at(body_len);
        if !body.starts_with(MAGIC)
            || !(body.len() - MAGIC.len()).is_multiple_of(RECORD)
            || checksum_of(body).as_bytes() != checksum
        {
            return None;
        }
        Some(Cache {
            data,
            index: OnceLock::new(),
        })
    }

    fn records(&self) -> &[u8] {
        match self.data.len() {
            0 => &[],
            len => &self.data[MAGIC.len()..len - 32],
        }
    }

    fn record(&self, number: usize) -> Option<&[u8]> {
        self.records().get(number * RECORD..(number + 1) * RECORD)
    }

    /// Lookups in path order, starting at the first record.
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup {
            cache: self,
            cursor: 0,
        }
    }

    /// Whether [`encode`] would give this very file (an unchanged tree): then it need not be
    /// encoded nor written. Compares record by record, without building the new file.
    pub fn is_encoding_of<'a>(
        &self,
        records: impl Iterator<Item = (&'a Stat, &'a [u8; 32])>,
        run_started: i64,
    ) -> bool {
        let mut old = self.records().chunks_exact(RECORD);
        let same = records
            .filter(|(stat, _)| trusted(stat, run_started))
            .all(|(stat, hash)| {
                old.next()
                    .is_some_and(|record| record[..KEY] == stat.key() && &record[KEY..] == hash)
            });
        same && old.next().is_none() && !self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records().len() / RECORD
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn index(&self) -> &HashMap<[u8; 16], usize> {
        self.index.get_or_init(|| {
            self.records()
                .chunks_exact(RECORD)
                .enumerate()
                .map(|(number, record)| (record[..16].try_into().expect("16 bytes"), number))
                .collect()
        })
    }
}

/// A cursor over the cache for lookups in path order.
pub struct Lookup<'a> {
    cache: &'a Cache,
    cursor: usize,
}

impl Lookup<'_> {
    /// The cached hash, if the file is exactly as it was when hashed.
    pub fn get(&mut self, stat: &Stat) -> Option<[u8; 32]> {
        let key = stat.key();
        let same_file = |number: usize| {
            self.cache
                .record(number)
                .is_some_and(|record| record[..16] == key[..16])
        };
        let number = (self.cursor..self.cursor + LOOK_AHEAD)
            .find(|&number| same_file(number))
            .or_else(|| self.cache.index().get(&key[..16]).copied())?;
        self.cursor = number + 1;
        let record = self.cache.record(number)?;
        (record[..KEY] == key).then(|| record[KEY..].try_into().expect("32 bytes"))
    }
}

/// Whether a file's hash may be kept: not changed within [`RACY_SECONDS`] of the run.
fn trusted(stat: &Stat, run_started: i64) -> bool {
    stat.mtime < run_started - RACY_SECONDS && stat.ctime < run_started - RACY_SECONDS
}

/// A checksum of the whole file; on all cores, as caches of millions of files are large.
fn checksum_of(data: &[u8]) -> blake3::Hash {
    blake3::Hasher::new().update_rayon(data).finalize()
}

/// The cache a run leaves behind: the files it saw, in path order, minus those changed too
/// recently to trust.
pub fn encode<'a>(
    records: impl Iterator<Item = (&'a Stat, &'a [u8; 32])>,
    run_started: i64,
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(MAGIC.len() + records.size_hint().1.unwrap_or(0) * RECORD + 32);
    out.extend_from_slice(MAGIC);
    for (stat, hash) in records.filter(|(stat, _)| trusted(stat, run_started)) {
        out.extend_from_slice(&stat.key());
        out.extend_from_slice(hash);
    }
    let checksum = checksum_of(&out);
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

    fn cache_of(records: &[(Stat, [u8; 32])], run_started: i64) -> Vec<u8> {
        encode(records.iter().map(|(s, h)| (s, h)), run_started)
    }

    #[test]
    fn reuses_only_exact_matches_and_skips_racy_files() {
        let records = [(stat(1, 100), [1; 32]), (stat(2, 999), [2; 32])];
        let cache = Cache::decode(cache_of(&records, 1000)).unwrap();
        let unchanged = |records: &[(Stat, [u8; 32])]| {
            cache.is_encoding_of(records.iter().map(|(s, h)| (s, h)), 1000)
        };
        assert!(unchanged(&records));
        assert!(unchanged(&records[..1]), "the racy file was never cached");
        assert!(!unchanged(&[(stat(1, 100), [9; 32])]));
        assert!(!unchanged(&[]));
        assert_eq!(cache.lookup().get(&stat(1, 100)), Some([1; 32]));
        // Changed within RACY_SECONDS of the run: not cached.
        assert_eq!(cache.lookup().get(&stat(2, 999)), None);
        // Any field changed: a miss.
        assert_eq!(
            cache.lookup().get(&Stat {
                size: 11,
                ..stat(1, 100)
            }),
            None
        );
        assert_eq!(
            cache.lookup().get(&Stat {
                ctime_nsec: 7,
                ..stat(1, 100)
            }),
            None
        );
        assert_eq!(
            cache.lookup().get(&Stat {
                dev: 8,
                ..stat(1, 100)
            }),
            None
        );
    }

    #[test]
    fn finds_records_out_of_order() {
        let records: Vec<(Stat, [u8; 32])> = (0..100)
            .map(|ino| (stat(ino, 100), [ino as u8; 32]))
            .collect();
        let cache = Cache::decode(cache_of(&records, 1000)).unwrap();
        let mut lookup = cache.lookup();
        // In order, with gaps (deleted files), new files, and a file moved back to the start.
        assert_eq!(lookup.get(&stat(0, 100)), Some([0; 32]));
        assert_eq!(lookup.get(&stat(3, 100)), Some([3; 32]));
        assert_eq!(lookup.get(&stat(1000, 100)), None);
        assert_eq!(lookup.get(&stat(50, 100)), Some([50; 32]));
        assert_eq!(lookup.get(&stat(51, 100)), Some([51; 32]));
        assert_eq!(lookup.get(&stat(1, 100)), Some([1; 32]));
        assert_eq!(lookup.get(&stat(2, 101)), None);
        assert_eq!(lookup.get(&stat(99, 100)), Some([99; 32]));
        assert_eq!(lookup.get(&stat(100, 100)), None);
    }

    #[test]
    fn damaged_cache_is_rejected() {
        let mut bytes = cache_of(&[(stat(1, 100), [1; 32])], 1000);
        bytes[20] ^= 1;
        assert!(Cache::decode(bytes).is_none());
        assert!(Cache::decode(b"BKCTLMC1".to_vec()).is_none());
    }
}
