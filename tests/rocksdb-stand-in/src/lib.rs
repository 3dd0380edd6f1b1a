//! An in-memory stand-in for the `rocksdb` crate, for the rate limit test
//! service (`tests/rls-server`).
//!
//! Limitador's published releases do not compile with Redis storage alone:
//! `storage/keys.rs` calls a module gated on its `disk_storage` feature, so
//! the default features must stay on, and those link RocksDB, built from C++
//! source (about ten minutes on two cores, plus libclang for bindgen). The
//! test service only ever uses Limitador's Redis storage, so this crate
//! replaces `rocksdb` through `[patch.crates-io]`: it offers the few types
//! and calls Limitador's disk storage compiles against, backed by an ordered
//! map in memory, so that disk storage would even work if something opened it.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// What RocksDB's errors say they are; Limitador tests for the transient ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Corruption,
    NotSupported,
    InvalidArgument,
    IOError,
    MergeInProgress,
    Incomplete,
    ShutdownInProgress,
    TimedOut,
    Aborted,
    Busy,
    Expired,
    TryAgain,
    CompactionTooLarge,
    ColumnFamilyDropped,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    fn new(kind: ErrorKind, message: &str) -> Self {
        Self {
            kind,
            message: message.to_string(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn into_string(self) -> String {
        self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Accepted and ignored: nothing is written to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DBCompressionType {
    None,
    Snappy,
    Zlib,
    Bz2,
    Lz4,
    Lz4hc,
    Zstd,
}

/// What a compaction filter answers. Nothing is ever compacted here, so the
/// filter is kept but never called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionDecision {
    Keep,
    Remove,
    Change(&'static [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IteratorMode<'a> {
    Start,
    End,
    From(&'a [u8], Direction),
}

/// The operands of one merge, as a merge operator sees them.
pub struct MergeOperands {
    operands: Vec<Vec<u8>>,
}

impl MergeOperands {
    pub fn len(&self) -> usize {
        self.operands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.operands.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.operands.iter().map(Vec::as_slice)
    }
}

impl<'a> IntoIterator for &'a MergeOperands {
    type Item = &'a [u8];
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Vec<u8>>, fn(&'a Vec<u8>) -> &'a [u8]>;

    fn into_iter(self) -> Self::IntoIter {
        self.operands.iter().map(Vec::as_slice)
    }
}

type MergeFn = dyn Fn(&[u8], Option<&[u8]>, &MergeOperands) -> Option<Vec<u8>> + Send + Sync;

#[derive(Clone, Default)]
pub struct Options {
    merge_operator: Option<Arc<MergeFn>>,
}

impl Options {
    pub fn set_compression_type(&mut self, _compression: DBCompressionType) {}

    pub fn set_compaction_filter<F>(&mut self, _name: &str, _filter: F)
    where
        F: FnMut(u32, &[u8], &[u8]) -> CompactionDecision + Send + 'static,
    {
    }

    pub fn set_merge_operator_associative<F>(&mut self, _name: &str, merge: F)
    where
        F: Fn(&[u8], Option<&[u8]>, &MergeOperands) -> Option<Vec<u8>> + Send + Sync + 'static,
    {
        self.merge_operator = Some(Arc::new(merge));
    }

    pub fn create_if_missing(&mut self, _create: bool) {}
}

/// Thread modes, as markers: the map is behind a mutex either way.
pub struct SingleThreaded;
pub struct MultiThreaded;

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

pub struct DBWithThreadMode<T> {
    entries: Mutex<Entries>,
    merge_operator: Option<Arc<MergeFn>>,
    mode: PhantomData<T>,
}

/// With `multi-threaded-cf`, as Limitador builds it, `DB` is multi-threaded.
pub type DB = DBWithThreadMode<MultiThreaded>;

/// Key-value pairs as RocksDB's iterators yield them.
pub type KVBytes = (Box<[u8]>, Box<[u8]>);

/// A snapshot of the entries an iteration covers, taken when it starts.
pub struct DBIterator {
    entries: std::vec::IntoIter<KVBytes>,
}

impl Iterator for DBIterator {
    type Item = Result<KVBytes, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next().map(Ok)
    }
}

impl<T> DBWithThreadMode<T> {
    /// Opens an empty in-memory database; the path is not touched.
    pub fn open<P: AsRef<Path>>(options: &Options, _path: P) -> Result<Self, Error> {
        Ok(Self {
            entries: Mutex::new(BTreeMap::new()),
            merge_operator: options.merge_operator.clone(),
            mode: PhantomData,
        })
    }

    fn entries(&self) -> Result<MutexGuard<'_, Entries>, Error> {
        self.entries
            .lock()
            .map_err(|_| Error::new(ErrorKind::Aborted, "a writer panicked"))
    }

    pub fn get<K: AsRef<[u8]>>(&self, key: K) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.entries()?.get(key.as_ref()).cloned())
    }

    pub fn put<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<(), Error> {
        self.entries()?
            .insert(key.as_ref().to_vec(), value.as_ref().to_vec());
        Ok(())
    }

    pub fn delete<K: AsRef<[u8]>>(&self, key: K) -> Result<(), Error> {
        self.entries()?.remove(key.as_ref());
        Ok(())
    }

    /// Applies the merge operator at once (RocksDB defers it to reads and
    /// compactions; the value read back is the same).
    pub fn merge<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, key: K, value: V) -> Result<(), Error> {
        let merge = self.merge_operator.as_ref().ok_or_else(|| {
            Error::new(ErrorKind::InvalidArgument, "merge without a merge operator")
        })?;
        let key = key.as_ref();
        let mut entries = self.entries()?;
        let operands = MergeOperands {
            operands: vec![value.as_ref().to_vec()],
        };
        match merge(key, entries.get(key).map(Vec::as_slice), &operands) {
            Some(merged) => {
                entries.insert(key.to_vec(), merged);
                Ok(())
            }
            None => Err(Error::new(
                ErrorKind::Corruption,
                "the merge operator failed",
            )),
        }
    }

    pub fn iterator(&self, mode: IteratorMode<'_>) -> DBIterator {
        let entries = match self.entries() {
            Ok(entries) => entries,
            Err(_) => return DBIterator::from(Vec::new()),
        };
        let pairs = |range: &mut dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>| -> Vec<KVBytes> {
            range
                .map(|(k, v)| (k.clone().into_boxed_slice(), v.clone().into_boxed_slice()))
                .collect()
        };
        DBIterator::from(match mode {
            IteratorMode::Start => pairs(&mut entries.iter()),
            IteratorMode::End => pairs(&mut entries.iter().rev()),
            IteratorMode::From(from, Direction::Forward) => {
                pairs(&mut entries.range(from.to_vec()..))
            }
            IteratorMode::From(from, Direction::Reverse) => {
                pairs(&mut entries.range(..=from.to_vec()).rev())
            }
        })
    }

    /// Like RocksDB without a prefix extractor: every entry from the prefix
    /// on, in order (callers stop when the prefix no longer matches).
    pub fn prefix_iterator<P: AsRef<[u8]>>(&self, prefix: P) -> DBIterator {
        self.iterator(IteratorMode::From(prefix.as_ref(), Direction::Forward))
    }
}

impl From<Vec<KVBytes>> for DBIterator {
    fn from(pairs: Vec<KVBytes>) -> Self {
        Self {
            entries: pairs.into_iter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_db() -> DB {
        let mut options = Options::default();
        options.set_merge_operator_associative("add", |_key, start, operands| {
            let mut total = start.map_or(0, |raw| raw[0]);
            for operand in operands {
                total += operand[0];
            }
            Some(vec![total])
        });
        DB::open(&options, "unused").unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn merges_apply_the_operator() -> Result<(), Error> {
        let db = counter_db();
        db.merge(b"k", [2])?;
        db.merge(b"k", [3])?;
        assert_eq!(db.get(b"k")?, Some(vec![5]));
        db.delete(b"k")?;
        assert_eq!(db.get(b"k")?, None);
        Ok(())
    }

    #[test]
    fn prefix_iteration_starts_at_the_prefix() -> Result<(), Error> {
        let db = counter_db();
        for key in [&b"a1"[..], b"b1", b"b2", b"c1"] {
            db.put(key, [0])?;
        }
        let keys: Vec<Box<[u8]>> = db
            .prefix_iterator(b"b")
            .map(|entry| entry.map(|(k, _)| k))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            keys,
            vec![
                b"b1".to_vec().into(),
                b"b2".to_vec().into(),
                b"c1".to_vec().into()
            ]
        );
        Ok(())
    }
}
