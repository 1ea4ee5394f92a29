//! The in-memory tail: the newest written batches of a partition (under `Visibility::Appended`,
//! the newest staged ones, published before their write completes), kept in memory for the
//! consumers that keep up.
//!
//! With O_DIRECT writes nothing written stays in the page cache, so a consumer reading the
//! newest records through the segment's map would fault every page back in from the disk it was
//! just written to. Instead, each completed write publishes the batches it carried, one chunk
//! per batch. The chunk is the producer's own batch buffer, moved rather than copied: the shard
//! copies each batch once, into the aligned staging buffer, and the tail keeps the original.
//! Readers whose offset falls in a chunk view it in place; older offsets are read from the
//! segments as before.
//!
//! The chunks sit in a fixed ring of slots, each an `Arc<TailChunk>` held as a raw pointer. The
//! single writer fills the slot after the newest and moves `head`, and evicts from `first`;
//! publishing a chunk allocates nothing and copies no list (a list copied per publication
//! cost one allocation and a reference count per chunk held). A reader clones the `Arc` out of
//! a slot while counted in `readers` and pinned with `crossbeam-epoch`; the writer's own
//! reference to a chunk it takes out is dropped at once when no reader is counted, else only
//! once no reader can still be looking at the slot (through the epoch), so a reader
//! holding a chunk keeps it alive after eviction; the last owner's drop sends the buffer back
//! to its producer for reuse. A reader racing the writer may miss a chunk that is in memory:
//! it then reads the segment, as for any offset older than the tail.
//!
//! The bound is on memory, not on batch bytes: a chunk costs its buffer's capacity, which for
//! a batch handed over half full (a linger, a flush) is more than its length. The slot count
//! bounds the chunks too, so very small batches keep fewer bytes than the bound.

use crate::sync::{Arc, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence};

use crossbeam_epoch::{self as epoch, Guard};

use super::segment::Segment;
use crate::recycle::BatchBuf;

/// Chunks the tail holds at most: enough for the default memory bound in batches of 4 KiB,
/// at 8 bytes of slot per chunk. Under loom, two, so that a model's few pushes wrap the ring
/// and refill a slot a reader may still be looking at.
const SLOTS: usize = if cfg!(loom) { 2 } else { 1024 };

/// One written batch, in memory.
#[derive(Debug)]
pub(crate) struct TailChunk {
    /// The segment the bytes were written to, for naming the file in errors.
    pub segment: std::sync::Arc<Segment>,
    /// File position of `bytes[0]` in that segment.
    pub position: u64,
    pub base_offset: i64,
    pub next_offset: i64,
    pub bytes: BatchBuf,
}

/// The newest chunks of a partition, oldest first: the slots of indexes `first..head`
/// (taken modulo `SLOTS`).
#[derive(Debug)]
pub(crate) struct Tail {
    /// Each slot is null or an `Arc::into_raw` of the chunk it holds.
    slots: Box<[AtomicPtr<TailChunk>]>,
    /// Index of the oldest chunk held.
    first: AtomicU64,
    /// Index after the newest chunk held.
    head: AtomicU64,
    /// Capacity of the buffers held, against `max_bytes`: read and written by the writer only.
    bytes: AtomicUsize,
    /// Readers between their first load of a slot and their clone of its chunk. When none is,
    /// the writer drops a chunk it took out at once instead of through the epoch collector,
    /// whose deferred drops come in bursts of its bag size, so the buffer goes home while its
    /// producer can still reuse it (in bursts, most overflowed the producer's recycler).
    readers: AtomicUsize,
    /// A chunk's allocation kept from an eviction for the next push (null or an
    /// `Arc::into_raw` that nothing else holds, its buffer already sent home): with one
    /// eviction per push in steady state, a chunk then costs no allocation. Writer only.
    spare: AtomicPtr<TailChunk>,
    max_bytes: usize,
}

impl Tail {
    pub fn new(max_bytes: usize) -> Self {
        let slots = match max_bytes {
            0 => 0,
            _ => SLOTS,
        };
        Self {
            slots: (0..slots)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            first: AtomicU64::new(0),
            head: AtomicU64::new(0),
            bytes: AtomicUsize::new(0),
            readers: AtomicUsize::new(0),
            spare: AtomicPtr::new(std::ptr::null_mut()),
            max_bytes,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Pins this thread and counts it among the readers until the guard drops.
    fn enter(&self) -> Reading<'_> {
        let guard = epoch::pin();
        self.readers.fetch_add(1, Ordering::SeqCst);
        // Orders the count before the loads of slots that follow (see `take`).
        fence(Ordering::SeqCst);
        Reading {
            readers: &self.readers,
            guard,
        }
    }

    fn slot(&self, index: u64) -> &AtomicPtr<TailChunk> {
        &self.slots[(index % self.slots.len() as u64) as usize]
    }

    /// The chunk in the slot of `index`, if any; valid while `_guard` is pinned.
    fn chunk_at<'g>(&self, index: u64, _guard: &'g Guard) -> Option<&'g TailChunk> {
        let chunk = self.slot(index).load(Ordering::Acquire);
        // SAFETY: a non-null slot holds an `Arc::into_raw` whose reference the writer drops,
        // after taking it out of the slot, either at once when no reader is counted (so none
        // loaded it) or through `defer_unchecked`, after every thread pinned when it could
        // still be loaded: this one is counted and pinned until `_guard` drops.
        unsafe { chunk.as_ref() }
    }

    /// The chunk holding `offset`, if it is still in memory.
    pub fn find(&self, offset: i64) -> Option<Arc<TailChunk>> {
        if !self.is_enabled() {
            return None;
        }
        let reading = self.enter();
        let guard = &reading.guard;
        let first = self.first.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        // The last chunk whose base is at or before `offset`; a slot emptied or refilled
        // meanwhile ends the search (the caller reads the segment instead).
        let (mut low, mut high) = (first, head);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.chunk_at(middle, guard)?.base_offset <= offset {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let index = low.checked_sub(1).filter(|&index| index >= first)?;
        let pointer = self.slot(index).load(Ordering::Acquire);
        // SAFETY: as in `chunk_at`: the writer's reference keeps the chunk alive while this
        // thread is counted and pinned, so taking a reference of our own is sound.
        let chunk = unsafe { pointer.as_ref() }?;
        if chunk.base_offset > offset || offset >= chunk.next_offset {
            return None;
        }
        // SAFETY: `pointer` came from `Arc::into_raw` and its count is at least the writer's
        // reference (see above); the new count is ours, owned by the `from_raw` below.
        unsafe {
            Arc::increment_strong_count(pointer);
            Some(Arc::from_raw(pointer))
        }
    }

    /// The first offset the tail holds, if it holds any.
    pub fn oldest_base(&self) -> Option<i64> {
        if !self.is_enabled() {
            return None;
        }
        let reading = self.enter();
        let first = self.first.load(Ordering::Acquire);
        if first >= self.head.load(Ordering::Acquire) {
            return None;
        }
        self.chunk_at(first, &reading.guard)
            .map(|chunk| chunk.base_offset)
    }

    /// Publishes chunks that follow each other (called by the writer only), evicting the
    /// oldest beyond the bound.
    pub fn extend(&self, new: impl IntoIterator<Item = TailChunk>) {
        if !self.is_enabled() {
            return;
        }
        let guard = epoch::pin();
        for chunk in new {
            self.push(chunk, &guard);
        }
    }

    /// Adds one chunk after the newest (a chunk that does not follow it replaces them all),
    /// then evicts the oldest until the bound holds (the newest always stays).
    fn push(&self, chunk: TailChunk, guard: &Guard) {
        let mut first = self.first.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Relaxed);
        let continues = head == first
            || self
                .chunk_at(head - 1, guard)
                .is_none_or(|last| last.next_offset == chunk.base_offset);
        if !continues {
            first = self.evict_while(first, head, guard, |_, _| true);
        }
        let slots = self.slots.len() as u64;
        first = self.evict_while(first, head, guard, |first, _| head - first >= slots);
        let capacity = chunk.bytes.capacity();
        let raw = Arc::into_raw(self.allocate(chunk)).cast_mut();
        self.slot(head).store(raw, Ordering::Release);
        let head = head + 1;
        self.head.store(head, Ordering::Release);
        let total = self.bytes.load(Ordering::Relaxed) + capacity;
        self.bytes.store(total, Ordering::Relaxed);
        let max_bytes = self.max_bytes;
        self.evict_while(first, head, guard, |first, bytes| {
            first + 1 < head && bytes > max_bytes
        });
    }

    /// Evicts the oldest chunk while `more(first, bytes held)` says so; returns the new
    /// `first`.
    fn evict_while(
        &self,
        mut first: u64,
        head: u64,
        guard: &Guard,
        more: impl Fn(u64, usize) -> bool,
    ) -> u64 {
        while first < head && more(first, self.bytes.load(Ordering::Relaxed)) {
            // `first` moves before the slot empties, so no reader starts a search on it.
            self.first.store(first + 1, Ordering::Release);
            self.take(first, guard);
            first += 1;
        }
        first
    }

    /// Empties the slot of `index` and drops the writer's reference once no reader can be
    /// looking at it.
    fn take(&self, index: u64, guard: &Guard) {
        let raw = self.slot(index).swap(std::ptr::null_mut(), Ordering::AcqRel);
        if raw.is_null() {
            return;
        }
        // SAFETY: only the writer frees chunks, and it is this thread.
        let capacity = unsafe { &*raw }.bytes.capacity();
        let total = self.bytes.load(Ordering::Relaxed).saturating_sub(capacity);
        self.bytes.store(total, Ordering::Relaxed);
        // Pairs with the fence in `enter`: a reader not counted here loads the slot after the
        // swap, so it cannot see `raw`; one that was counted and is done has its own
        // reference already (its count's decrement is a release, read here with acquire).
        fence(Ordering::SeqCst);
        if self.readers.load(Ordering::Acquire) == 0 {
            // SAFETY: no reader can still load `raw` (above); the pointer came from
            // `Arc::into_raw` and this is the writer's reference, taken back once.
            self.keep_spare(unsafe { Arc::from_raw(raw) });
            return;
        }
        let raw = SendPointer(raw);
        // SAFETY: the slot no longer holds `raw`; readers pinned before the swap may still
        // clone it, and the deferred drop runs only after all of them unpinned. The pointer
        // came from `Arc::into_raw` and this is the writer's reference, dropped once.
        unsafe {
            guard.defer_unchecked(move || drop(Arc::from_raw(raw.into_inner())));
        }
    }

    /// `chunk` in the spare allocation if there is one, else in a new one.
    fn allocate(&self, chunk: TailChunk) -> Arc<TailChunk> {
        let spare = self.spare.swap(std::ptr::null_mut(), Ordering::Relaxed);
        if spare.is_null() {
            return Arc::new(chunk);
        }
        // SAFETY: a non-null spare is an `Arc::into_raw` owned by the spare slot alone (see
        // `keep_spare`); the swap took it out, so this is its only reference.
        let mut spare = unsafe { Arc::from_raw(spare) };
        match Arc::get_mut(&mut spare) {
            Some(slot) => {
                *slot = chunk;
                spare
            }
            None => Arc::new(chunk),
        }
    }

    /// Sends an evicted chunk's buffer home at once and keeps its allocation for the next
    /// push, when nothing else holds the chunk and no spare is kept yet; else lets it go.
    fn keep_spare(&self, mut chunk: Arc<TailChunk>) {
        let Some(unique) = Arc::get_mut(&mut chunk) else {
            return;
        };
        drop(std::mem::take(&mut unique.bytes));
        if self.spare.load(Ordering::Relaxed).is_null() {
            let raw = Arc::into_raw(chunk).cast_mut();
            self.spare.store(raw, Ordering::Relaxed);
        }
    }

    /// Drops every chunk at or after `offset` (called by the writer only, when batches that
    /// were published at staging are undone).
    pub fn truncate_from(&self, offset: i64) {
        if !self.is_enabled() {
            return;
        }
        let guard = epoch::pin();
        let first = self.first.load(Ordering::Relaxed);
        let mut head = self.head.load(Ordering::Relaxed);
        while head > first
            && self
                .chunk_at(head - 1, &guard)
                .is_some_and(|last| last.next_offset > offset)
        {
            head -= 1;
            // `head` moves before the slot empties, so no reader starts a search on it.
            self.head.store(head, Ordering::Release);
            self.take(head, &guard);
        }
    }
}

/// A reader inside the tail: pinned, and counted in `readers` until dropped.
struct Reading<'a> {
    readers: &'a AtomicUsize,
    guard: Guard,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.readers.fetch_sub(1, Ordering::Release);
    }
}

/// A chunk pointer handed to the epoch collector, which may run the drop on any thread.
struct SendPointer(*const TailChunk);

impl SendPointer {
    /// The pointer. A method, so that a closure captures the whole wrapper (which is `Send`)
    /// rather than its field.
    fn into_inner(self) -> *const TailChunk {
        self.0
    }
}

// SAFETY: the pointer stands for an `Arc<TailChunk>`, which is `Send` (its fields are).
unsafe impl Send for SendPointer {}

impl Drop for Tail {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut().chain([&mut self.spare]) {
            let raw = slot.swap(std::ptr::null_mut(), Ordering::Relaxed);
            if !raw.is_null() {
                // SAFETY: `&mut self` in drop: no reader can be pinned on this tail any more,
                // and the slot's reference (from `Arc::into_raw`) is dropped once, here.
                drop(unsafe { Arc::from_raw(raw) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::log::segment::Room;
    use crate::recycle::Recycler;

    fn chunk(segment: &Arc<Segment>, base: i64, next: i64, capacity: usize) -> TailChunk {
        TailChunk {
            segment: segment.clone(),
            position: 0,
            base_offset: base,
            next_offset: next,
            bytes: BatchBuf::new(Vec::with_capacity(capacity), Recycler::new(1)),
        }
    }

    fn segment() -> (tempfile::TempDir, Arc<Segment>) {
        let dir = tempfile::tempdir().unwrap();
        let segment = Segment::create(dir.path(), 0, 4096, 4096, Room::Sparse).unwrap();
        (dir, Arc::new(segment))
    }

    #[test]
    fn finds_held_offsets_and_evicts_the_oldest_beyond_the_bound() {
        let (_dir, segment) = segment();
        let tail = Tail::new(3 * 100);
        tail.extend((0..5).map(|i| chunk(&segment, i * 10, i * 10 + 10, 100)));
        assert_eq!(tail.oldest_base(), Some(20), "two chunks over the bound were evicted");
        assert!(tail.find(19).is_none());
        assert_eq!(tail.find(20).unwrap().base_offset, 20);
        assert_eq!(tail.find(49).unwrap().base_offset, 40);
        assert!(tail.find(50).is_none());
    }

    #[test]
    fn a_chunk_that_does_not_follow_replaces_the_rest() {
        let (_dir, segment) = segment();
        let tail = Tail::new(1 << 20);
        tail.extend((0..3).map(|i| chunk(&segment, i * 10, i * 10 + 10, 100)));
        tail.extend([chunk(&segment, 100, 110, 100)]);
        assert_eq!(tail.oldest_base(), Some(100));
        assert!(tail.find(5).is_none());
    }

    #[test]
    fn the_slots_wrap_and_bound_the_chunk_count() {
        let (_dir, segment) = segment();
        let tail = Tail::new(1 << 30);
        let count = SLOTS as i64 * 3 + 7;
        for i in 0..count {
            tail.extend([chunk(&segment, i, i + 1, 1)]);
        }
        assert_eq!(tail.oldest_base(), Some(count - SLOTS as i64));
        for offset in [count - SLOTS as i64, count - 2, count - 1] {
            assert_eq!(tail.find(offset).unwrap().base_offset, offset);
        }
        assert!(tail.find(count - SLOTS as i64 - 1).is_none());
    }

    #[test]
    fn truncation_drops_the_newest_and_a_held_chunk_outlives_eviction() {
        let (_dir, segment) = segment();
        let home = Recycler::new(8);
        let tail = Tail::new(1 << 20);
        tail.extend((0..4).map(|i| TailChunk {
            bytes: BatchBuf::new(vec![i as u8; 10], home.clone()),
            ..chunk(&segment, i * 10, i * 10 + 10, 0)
        }));
        let held = tail.find(35).unwrap();
        tail.truncate_from(20);
        assert!(tail.find(20).is_none() && tail.find(35).is_none());
        assert_eq!(tail.find(15).unwrap().base_offset, 10);
        assert_eq!(held.bytes[0], 3, "a reader's chunk stays valid after it left the tail");
        drop(held);
        drop(tail);
        // Every buffer went home once nothing held it (the epoch collector may run late, so
        // only the one this thread dropped last is certain).
        assert!(home.take().is_some());
    }
}

/// Model checks of the tail's reclamation: loom explores every interleaving (and memory
/// ordering outcome) of one writer pushing, evicting and truncating against readers in `find`
/// and `oldest_base`.
///
/// What is checked: the ring's indexes, slots, reader count, spare and fences are loom atomics,
/// the chunks are loom `Arc`s, and crossbeam-epoch runs on loom's primitives, so
/// - a reader cloning a chunk the writer already freed fails loom's `Arc::from_raw` (the
///   allocation is no longer registered), and a chunk never freed fails loom's leak check;
/// - a chunk `find` hands out must hold the offset asked for, and its bytes (a pattern of its
///   base offset and generation) must be intact when found and still intact after the writer
///   evicted it and reused spare allocations: the spare must never be memory a reader holds;
/// - no buffer reaches its recycler twice. Buffers whose chunk went through the epoch are
///   dropped when loom tears the collector down after each run, so "every buffer comes home"
///   is checked only as loom's leak check on the chunks' `Arc`s.
///
/// What is not: a plain read of a chunk's fields through a dangling pointer (the binary
/// search's `base_offset` loads) is not itself flagged; it is caught only through the clone
/// that follows or through a wrong or torn chunk. The ring has two slots under loom (see
/// `SLOTS`), so wrap-around is covered, but only a few pushes per run.
///
/// Run with (both cfgs: the second puts crossbeam-epoch on loom too):
/// `RUSTFLAGS="--cfg loom --cfg crossbeam_loom" LOOM_MAX_PREEMPTIONS=3 \`
/// `cargo test --release -p rill-engine --lib loom_tail` (about a minute per model).
#[cfg(all(test, loom))]
mod loom_model {
    #![allow(clippy::unwrap_used)]

    use loom::thread;

    use super::*;
    use crate::log::segment::Room;
    use crate::recycle::Recycler;

    /// Bytes of each chunk: the same capacity for all, so a bound of N chunks is exact.
    const LEN: usize = 4;

    /// A chunk of the one offset `base`, whose bytes name `base` and `generation` (a
    /// truncated offset written again is a new generation).
    fn chunk(
        segment: &std::sync::Arc<Segment>,
        home: &std::sync::Arc<Recycler>,
        base: i64,
        generation: u8,
    ) -> TailChunk {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.extend_from_slice(&[base as u8, generation, base as u8, generation]);
        TailChunk {
            segment: segment.clone(),
            position: u64::from(generation),
            base_offset: base,
            next_offset: base + 1,
            bytes: BatchBuf::new(bytes, home.clone()),
        }
    }

    /// Asserts that `chunk` is whole: one offset, and bytes that match its fields.
    fn assert_intact(chunk: &TailChunk) {
        assert_eq!(chunk.next_offset, chunk.base_offset + 1, "torn chunk");
        let generation = chunk.position as u8;
        let base = chunk.base_offset as u8;
        let expected = [base, generation, base, generation];
        assert_eq!(&chunk.bytes[..], &expected, "chunk bytes overwritten");
    }

    /// Finds `offset` and checks that what came back is the chunk of that offset, whole.
    fn find_checked(tail: &Tail, offset: i64) -> Option<Arc<TailChunk>> {
        let chunk = tail.find(offset)?;
        assert_eq!(chunk.base_offset, offset, "find handed out a chunk of another offset");
        assert_intact(&chunk);
        Some(chunk)
    }

    /// A model's body: the tail, the segment its chunks name, their buffers' home.
    type Scenario = fn(&Arc<Tail>, &std::sync::Arc<Segment>, &std::sync::Arc<Recycler>);

    /// Runs `scenario` under loom with a fresh tail holding at most `chunks` chunks, then,
    /// once every thread is done and the tail is dropped, checks that no more than `pushed`
    /// buffers came home.
    fn model(chunks: usize, pushed: usize, scenario: Scenario) {
        model_with(loom::model::Builder::new(), chunks, pushed, scenario);
    }

    /// As `model`, with the given loom settings.
    fn model_with(builder: loom::model::Builder, chunks: usize, pushed: usize, scenario: Scenario) {
        let dir = tempfile::tempdir().unwrap();
        let segment = std::sync::Arc::new(Segment::create(dir.path(), 0, 4096, 4096, Room::Sparse).unwrap());
        builder.check(move || {
            let home = Recycler::new(pushed + 1);
            let tail = Arc::new(Tail::new(chunks * LEN));
            scenario(&tail, &segment, &home);
            drop(tail);
            // Deferred drops still in the epoch collector run when loom drops it, after this
            // closure: loom's leak check then catches a chunk never dropped; here, only a
            // buffer returned twice can show.
            let home_count = std::iter::from_fn(|| home.take()).count();
            assert!(home_count <= pushed, "buffers returned twice");
        });
    }

    /// One chunk held at a time: each push evicts the previous chunk, and the third push
    /// reuses the spare allocation the first eviction kept (when no reader was counted).
    /// The reader asks for offsets as they come and go and holds what it found until the
    /// writer is done.
    #[test]
    fn loom_tail_reader_against_push_and_evict() {
        model(1, 3, |tail, segment, home| {
            tail.extend([chunk(segment, home, 0, 0)]);
            let writer = {
                let (tail, segment, home) = (tail.clone(), segment.clone(), home.clone());
                thread::spawn(move || {
                    tail.extend([chunk(&segment, &home, 1, 0)]);
                    tail.extend([chunk(&segment, &home, 2, 0)]);
                })
            };
            let held: Vec<_> = [0, 1]
                .into_iter()
                .filter_map(|offset| find_checked(tail, offset))
                .collect();
            writer.join().unwrap();
            held.iter().for_each(|chunk| assert_intact(chunk));
            assert_eq!(tail.oldest_base(), Some(2));
        });
    }

    /// Two chunks held; the writer truncates the newest and writes its offset again (a new
    /// generation), wrapping the two-slot ring, while a reader looks for that offset and for
    /// the oldest.
    #[test]
    fn loom_tail_reader_against_truncate_and_rewrite() {
        model(2, 4, |tail, segment, home| {
            tail.extend([chunk(segment, home, 0, 0), chunk(segment, home, 1, 0)]);
            let writer = {
                let (tail, segment, home) = (tail.clone(), segment.clone(), home.clone());
                thread::spawn(move || {
                    tail.truncate_from(1);
                    tail.extend([chunk(&segment, &home, 1, 1), chunk(&segment, &home, 2, 1)]);
                })
            };
            // Racing the writer, `oldest_base` may load a stale `first` (0) whose slot the
            // writer already refilled after the wrap (with offset 2), and so answer with a newer
            // base than the oldest: never a freed or torn chunk, but not the oldest either. Its
            // one caller is the writer itself, which cannot race its own pushes.
            let oldest = tail.oldest_base();
            assert!(matches!(oldest, None | Some(0..=2)), "oldest base {oldest:?}");
            let held = find_checked(tail, 1);
            writer.join().unwrap();
            if let Some(chunk) = held {
                assert_intact(&chunk);
            }
            let now = find_checked(tail, 1).unwrap();
            assert_eq!(now.position, 1, "the rewritten offset must be the new generation");
        });
    }

    /// Two readers at once (the reader count above one) against one push that evicts the
    /// chunk one of them asks for. A single push, and a preemption bound of 2: at 3 the two
    /// readers' epoch pins make this model run for more than three minutes; at 2 it takes
    /// about two and a half on two busy cores.
    #[test]
    fn loom_tail_two_readers_against_evict() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        model_with(builder, 1, 2, |tail, segment, home| {
            tail.extend([chunk(segment, home, 0, 0)]);
            let reader = {
                let tail = tail.clone();
                thread::spawn(move || find_checked(&tail, 0).inspect(|chunk| assert_intact(chunk)))
            };
            let writer = {
                let (tail, segment, home) = (tail.clone(), segment.clone(), home.clone());
                thread::spawn(move || tail.extend([chunk(&segment, &home, 1, 0)]))
            };
            let held = find_checked(tail, 1);
            writer.join().unwrap();
            if let Some(chunk) = reader.join().unwrap() {
                assert_intact(&chunk);
            }
            if let Some(chunk) = held {
                assert_intact(&chunk);
            }
        });
    }
}
