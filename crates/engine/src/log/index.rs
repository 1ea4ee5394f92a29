//! Sparse offset and time indexes of a segment.
//!
//! The active segment's indexes grow while consumers search them, so entries live in an
//! append-only array with one writer and lock-free readers: chunks are allocated on first use
//! and published through a `OnceLock`, and the entry count is published with a release store
//! after the entry's words are written. A reader that loads the count with acquire therefore
//! sees every entry below it complete. The array's capacity is fixed at creation (a segment's
//! size divided by the index interval), so it is bounded; a full index simply stops growing,
//! which only makes lookups scan a little further.
//!
//! On disk the files keep Kafka's layouts: `.index` holds (relative offset u32, position u32)
//! and `.timeindex` holds (timestamp i64, relative offset u32), all big-endian.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const CHUNK_ENTRIES: usize = 512;

/// A block of entries, allocated when the first entry lands in it.
type Chunk<const W: usize> = Box<[[AtomicU64; W]]>;

/// Fixed-capacity, append-only array of `W`-word entries: one writer, any number of readers.
#[derive(Debug)]
struct EntryArray<const W: usize> {
    chunks: Box<[OnceLock<Chunk<W>>]>,
    len: AtomicUsize,
    capacity: usize,
}

impl<const W: usize> EntryArray<W> {
    fn with_capacity(capacity: usize) -> Self {
        let chunk_count = capacity.div_ceil(CHUNK_ENTRIES);
        Self {
            chunks: (0..chunk_count).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            capacity: chunk_count * CHUNK_ENTRIES,
        }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Appends an entry; returns false when the array is full.
    ///
    /// Only the segment's single writer calls this, so `len` cannot move under it.
    fn push(&self, entry: [u64; W]) -> bool {
        let index = self.len.load(Ordering::Relaxed);
        if index >= self.capacity {
            return false;
        }
        let Some(slot) = self.chunks.get(index / CHUNK_ENTRIES) else {
            return false;
        };
        let chunk = slot.get_or_init(|| {
            (0..CHUNK_ENTRIES)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect()
        });
        for (word, value) in chunk[index % CHUNK_ENTRIES].iter().zip(entry) {
            word.store(value, Ordering::Relaxed);
        }
        // Publishes the words above: readers acquire `len` before reading an entry.
        self.len.store(index + 1, Ordering::Release);
        true
    }

    /// Entry `index`, if it has been published.
    fn get(&self, index: usize) -> Option<[u64; W]> {
        if index >= self.len() {
            return None;
        }
        let chunk = self.chunks.get(index / CHUNK_ENTRIES)?.get()?;
        let words = &chunk[index % CHUNK_ENTRIES];
        Some(std::array::from_fn(|i| words[i].load(Ordering::Relaxed)))
    }

    /// Index of the last entry for which `is_at_or_before` holds, given entries sorted so the
    /// predicate is true for a prefix.
    fn floor(&self, is_at_or_before: impl Fn([u64; W]) -> bool) -> Option<usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.get(mid) {
                Some(entry) if is_at_or_before(entry) => low = mid + 1,
                _ => high = mid,
            }
        }
        low.checked_sub(1)
    }
}

fn pack(relative_offset: u32, position: u32) -> u64 {
    (u64::from(relative_offset) << 32) | u64::from(position)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// Where a batch starts: its offset relative to the segment's base, and its byte position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Maps offsets to byte positions, one entry per index interval of log bytes.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    entries: EntryArray<1>,
}

impl OffsetIndex {
    pub const ENTRY_BYTES: usize = 8;

    pub fn with_capacity(entries: usize) -> Self {
        Self {
            entries: EntryArray::with_capacity(entries.max(1)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&self, entry: IndexEntry) -> bool {
        self.entries
            .push([pack(entry.relative_offset, entry.position)])
    }

    pub fn get(&self, index: usize) -> Option<IndexEntry> {
        self.entries.get(index).map(|[word]| {
            let (relative_offset, position) = unpack(word);
            IndexEntry {
                relative_offset,
                position,
            }
        })
    }

    pub fn last(&self) -> Option<IndexEntry> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The last entry at or before `relative_offset`: where a scan for it may start.
    pub fn floor(&self, relative_offset: u32) -> Option<IndexEntry> {
        let found = self
            .entries
            .floor(|[word]| unpack(word).0 <= relative_offset)?;
        self.get(found)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * Self::ENTRY_BYTES);
        for entry in (0..self.len()).filter_map(|i| self.get(i)) {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// Decodes an index file, or `None` if its shape is wrong; the caller still checks the
    /// entries against the log before trusting them. `capacity` is the room the segment needs
    /// for entries it will still get (the active segment keeps indexing after it is loaded).
    pub fn from_bytes(bytes: &[u8], capacity: usize) -> Option<Self> {
        if !bytes.len().is_multiple_of(Self::ENTRY_BYTES) {
            return None;
        }
        let index = Self::with_capacity(capacity.max(bytes.len() / Self::ENTRY_BYTES));
        for chunk in bytes.chunks_exact(Self::ENTRY_BYTES) {
            let (relative, position) = chunk.split_at(4);
            index.push(IndexEntry {
                relative_offset: u32::from_be_bytes(relative.try_into().ok()?),
                position: u32::from_be_bytes(position.try_into().ok()?),
            });
        }
        Some(index)
    }
}

/// One time-index entry: every batch up to and including the one at `position` has a max
/// timestamp of at most `max_timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub max_timestamp: i64,
    pub relative_offset: u32,
    pub position: u32,
}

/// Maps timestamps to positions; entries are added only when the running max timestamp grows,
/// so they are sorted by timestamp and a binary search applies.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    entries: EntryArray<2>,
}

impl TimeIndex {
    pub const ENTRY_BYTES: usize = 12;

    pub fn with_capacity(entries: usize) -> Self {
        Self {
            entries: EntryArray::with_capacity(entries.max(1)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&self, entry: TimeEntry) -> bool {
        self.entries.push([
            entry.max_timestamp as u64,
            pack(entry.relative_offset, entry.position),
        ])
    }

    pub fn get(&self, index: usize) -> Option<TimeEntry> {
        self.entries.get(index).map(|[timestamp, word]| {
            let (relative_offset, position) = unpack(word);
            TimeEntry {
                max_timestamp: timestamp as i64,
                relative_offset,
                position,
            }
        })
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// The last entry whose batches are all older than `timestamp`: a scan for the first batch
    /// at or after `timestamp` may start at its position.
    pub fn last_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let found = self.entries.floor(|[ts, _]| (ts as i64) < timestamp)?;
        self.get(found)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * Self::ENTRY_BYTES);
        for entry in (0..self.len()).filter_map(|i| self.get(i)) {
            out.extend_from_slice(&entry.max_timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Decodes a time-index file, taking each entry's position from the offset index.
    ///
    /// The writer adds a time entry only together with an offset entry for the same batch, so
    /// an entry whose offset has no offset entry, or entries out of order, mean a damaged file:
    /// `None`, and the caller rebuilds both from the log.
    pub fn from_bytes(bytes: &[u8], offsets: &OffsetIndex, capacity: usize) -> Option<Self> {
        if !bytes.len().is_multiple_of(Self::ENTRY_BYTES) {
            return None;
        }
        let index = Self::with_capacity(capacity.max(bytes.len() / Self::ENTRY_BYTES));
        let mut previous: Option<(i64, u32)> = None;
        for chunk in bytes.chunks_exact(Self::ENTRY_BYTES) {
            let (timestamp, relative) = chunk.split_at(8);
            let max_timestamp = i64::from_be_bytes(timestamp.try_into().ok()?);
            let relative_offset = u32::from_be_bytes(relative.try_into().ok()?);
            if previous.is_some_and(|(ts, rel)| max_timestamp <= ts || relative_offset <= rel) {
                return None;
            }
            previous = Some((max_timestamp, relative_offset));
            let entry = offsets.floor(relative_offset)?;
            if entry.relative_offset != relative_offset {
                return None;
            }
            let position = entry.position;
            index.push(TimeEntry {
                max_timestamp,
                relative_offset,
                position,
            });
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_finds_the_entry_at_or_before() {
        let index = OffsetIndex::with_capacity(2000);
        for i in 0..1500u32 {
            assert!(index.push(IndexEntry {
                relative_offset: i * 10,
                position: i * 100,
            }));
        }
        assert_eq!(index.floor(0).map(|e| e.position), Some(0));
        assert_eq!(index.floor(9).map(|e| e.position), Some(0));
        assert_eq!(index.floor(10).map(|e| e.position), Some(100));
        assert_eq!(index.floor(14_999).map(|e| e.position), Some(149_900));
        let round_trip = OffsetIndex::from_bytes(&index.to_bytes(), 0).unwrap();
        assert_eq!(round_trip.len(), 1500);
        assert_eq!(round_trip.last(), index.last());
    }

    #[test]
    fn a_loaded_index_keeps_room_to_grow() {
        // The active segment goes on indexing after a clean open; an index sized to its file
        // would fill at the next chunk boundary and leave later lookups to long scans.
        let loaded = OffsetIndex::from_bytes(&[0; 8], 2000).unwrap();
        let pushed = (1..1500u32)
            .filter(|&i| {
                loaded.push(IndexEntry {
                    relative_offset: i,
                    position: i,
                })
            })
            .count();
        assert_eq!(pushed, 1499);
    }

    #[test]
    fn full_index_refuses_without_panicking() {
        let index = OffsetIndex::with_capacity(1);
        let pushed = (0..CHUNK_ENTRIES as u32 + 5)
            .filter(|&i| {
                index.push(IndexEntry {
                    relative_offset: i,
                    position: i,
                })
            })
            .count();
        assert_eq!(pushed, CHUNK_ENTRIES);
    }

    #[test]
    fn time_index_searches_by_timestamp() {
        let offsets = OffsetIndex::with_capacity(10);
        let times = TimeIndex::with_capacity(10);
        for i in 0..5u32 {
            offsets.push(IndexEntry {
                relative_offset: i * 10,
                position: i * 1000,
            });
            times.push(TimeEntry {
                max_timestamp: 100 + i64::from(i) * 10,
                relative_offset: i * 10,
                position: i * 1000,
            });
        }
        assert_eq!(times.last_before(100), None);
        assert_eq!(times.last_before(101).map(|e| e.position), Some(0));
        assert_eq!(times.last_before(125).map(|e| e.position), Some(2000));
        let loaded = TimeIndex::from_bytes(&times.to_bytes(), &offsets, 0).unwrap();
        assert_eq!(loaded.last(), times.last());
    }

    #[test]
    fn concurrent_readers_see_only_complete_entries() {
        let index = std::sync::Arc::new(OffsetIndex::with_capacity(100_000));
        let reader = {
            let index = index.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let len = index.len();
                    for i in 0..len {
                        let entry = index.get(i).unwrap();
                        assert_eq!(entry.position, entry.relative_offset * 2);
                    }
                }
            })
        };
        for i in 0..100_000u32 {
            index.push(IndexEntry {
                relative_offset: i,
                position: i * 2,
            });
        }
        reader.join().unwrap();
    }
}
