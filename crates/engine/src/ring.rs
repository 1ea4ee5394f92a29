//! Bounded single-producer single-consumer ring: the hand-off between a network thread and the
//! shard thread that owns a partition.
//!
//! [`channel`] returns a [`Producer`] and a [`Consumer`]. Each handle is `Send` but not `Clone`,
//! so the type system guarantees that exactly one thread pushes and exactly one thread pops,
//! which is what lets every operation be wait-free: no compare-and-swap, no retry loop, no
//! spinning. A full or empty ring is reported immediately ([`PushError::Full`] hands the value
//! back, [`PopError::Empty`]); waiting for space or for data is left to a layer above.
//!
//! # Capacity
//!
//! The requested capacity is rounded **up** to the next power of two (and at least 1), so the
//! slot of a position is `position & mask` instead of a division. [`Producer::capacity`] reports
//! the real figure. Every slot is usable: there is no sacrificed "gap" slot, because fullness is
//! told apart from emptiness by comparing unbounded positions, not wrapped indices.
//!
//! # Design
//!
//! The shared state is two monotonically increasing positions, `head` (next item the consumer
//! will take) and `tail` (one past the last item the producer has published), plus the slot
//! array. Positions count items forever and wrap at `usize::MAX`; `tail - head` (wrapping) is the
//! number of items in flight and never exceeds the capacity, which is at most `2^(BITS-1)`, so
//! wrapping never makes a full ring look empty.
//!
//! **Each side keeps its own position in a plain field.** Only the producer writes `tail` and
//! only the consumer writes `head`, so neither ever needs to read back its own atomic; the
//! atomic exists purely to tell the *other* side.
//!
//! **Each side caches the other side's position.** The positions only grow, so a stale copy is
//! always conservative: a stale `head` under-estimates free space, a stale `tail` under-estimates
//! available items. (The producer stores its copy as `head + capacity`, the first position it
//! may not fill, so its fast path is a single comparison.) The handle trusts its cached copy
//! while it says the operation can proceed and reloads the shared atomic only when the cache
//! says "full" (producer) or "not enough items" (consumer). A push therefore reads the consumer's cache line only when its
//! cached view of the free space runs out, and a pop reads the producer's line only when its
//! cached view of the available items runs out; one such read typically covers many items, so
//! the costly cross-core transfer is amortised instead of paid per item.
//!
//! **`head` and `tail` live on separate 128-byte-aligned blocks.** They are written by different
//! cores; if they shared a line, every store by one side would invalidate the other side's copy
//! (false sharing) even though neither reads the other's field on the fast path. 128 rather
//! than 64 bytes because x86 cores prefetch cache lines in adjacent pairs and several ARM cores
//! have 128-byte lines; the rarely written fields (slot pointer, abandonment flag, the `Arc`
//! counters) sit on lines of their own for the same reason.
//!
//! **Chunks cost one acquire and one release.** A single push or pop costs one release store
//! and, only when the cache runs out, one acquire load; [`Producer::push_slice`],
//! [`Producer::push_iter`], [`Consumer::pop_slice`], [`Consumer::pop_into`] and
//! [`Consumer::pop_iter`] work out how many
//! items fit (reloading the peer's position at most once), move them all, then publish the new
//! position with a single store. A shard thread that drains everything available in one call pays
//! one cross-core round trip per batch, not per item.
//!
//! # Memory orderings
//!
//! The protocol is two independent message-passing pairs, so acquire/release is sufficient and
//! `SeqCst` would buy nothing:
//!
//! * The producer writes a slot, then stores `tail` with `Release`. The consumer loads `tail`
//!   with `Acquire` before reading any slot below it. The write therefore happens-before the
//!   read: the consumer never sees a stale or half-written value.
//! * The consumer moves a value out of a slot, then stores `head` with `Release`. The producer
//!   loads `head` with `Acquire` before writing any slot below `head + capacity`. The move-out
//!   therefore happens-before the overwrite: a slot is never reused while it is still being read.
//! * A handle's drop stores its final position and *then* sets the abandonment flag, both
//!   `Release`; [`Consumer::is_abandoned`] / [`Producer::is_abandoned`] load the flag with
//!   `Acquire`. Seeing `true` thus guarantees the peer's final position is visible too: once the
//!   consumer has seen its producer go, the next pops return every item ever pushed and then
//!   [`PopError::Empty`] for good.
//!
//! Relaxed would not do for the positions: without the release/acquire edge the compiler or CPU
//! may let the slot write become visible after the position that announces it.
//!
//! # Dropping
//!
//! Items still in the ring when both handles are gone are dropped with the ring. A
//! [`PopIter`] that is leaked with [`std::mem::forget`] cannot cause a double drop: the
//! consumer claims the whole chunk when the iterator is made and takes back the un-yielded part
//! only when the iterator is dropped, so a leaked iterator leaks its remaining items instead
//! (and the consumer publishes its position again when it is itself dropped). Until the consumer
//! next publishes its position, the slots of a leaked chunk also stay unavailable to the
//! producer; leaking is safe, not free.
//!
//! # Example
//!
//! ```
//! use rill_engine::ring::{self, PopError, PushError};
//!
//! let (mut tx, mut rx) = ring::channel::<u64>(3);
//! assert_eq!(tx.capacity(), 4); // rounded up to a power of two
//!
//! std::thread::scope(|s| {
//!     s.spawn(move || {
//!         let mut next = 0;
//!         while next < 1_000 {
//!             match tx.push(next) {
//!                 Ok(()) => next += 1,
//!                 // A real caller would park here; the ring itself never waits.
//!                 Err(PushError::Full(_)) => std::thread::yield_now(),
//!             }
//!         }
//!         // Dropping `tx` tells the consumer no more items will come.
//!     });
//!
//!     let mut sum = 0;
//!     let mut batch = Vec::with_capacity(64);
//!     loop {
//!         // Check abandonment before popping: if the producer was already gone, this pop is
//!         // guaranteed to see everything it pushed.
//!         let done = rx.is_abandoned();
//!         batch.clear();
//!         if rx.pop_into(&mut batch, 64) == 0 {
//!             if done {
//!                 break;
//!             }
//!             std::thread::yield_now();
//!         }
//!         sum += batch.iter().sum::<u64>();
//!     }
//!     assert_eq!(sum, 999 * 1_000 / 2);
//!     assert_eq!(rx.pop(), Err(PopError::Empty));
//! });
//! ```

use std::fmt;
use std::iter::FusedIterator;
use std::mem::MaybeUninit;
use std::ops::Deref;

use crate::sync::{Arc, AtomicBool, AtomicUsize, Ordering, UnsafeCell};

/// The largest capacity [`channel`] will produce. Beyond half the position space, `tail - head`
/// could no longer tell a full ring from an empty one after wrapping.
pub const MAX_CAPACITY: usize = 1 << (usize::BITS - 1);

/// Creates a ring holding at least `capacity` items and returns its two ends.
///
/// `capacity` is rounded up to a power of two (a request of 0 gives 1) and clamped to
/// [`MAX_CAPACITY`].
///
/// # Panics
///
/// Like `Vec::with_capacity`, panics or aborts if the slot array cannot be allocated.
#[must_use]
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(MAX_CAPACITY);
    let slots: Box<[Slot<T>]> = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(0)),
        tail: CachePadded(AtomicUsize::new(0)),
        abandoned: AtomicBool::new(false),
        slots,
    });
    let mask = capacity - 1;
    let producer = Producer {
        shared: Arc::clone(&shared),
        tail: 0,
        limit: capacity,
        mask,
    };
    let consumer = Consumer {
        shared,
        head: 0,
        cached_tail: 0,
        mask,
    };
    (producer, consumer)
}

/// Returned by [`Producer::push`] when the ring has no free slot; carries the rejected value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PushError<T> {
    /// Every slot holds an item the consumer has not taken yet.
    #[error("ring is full")]
    Full(T),
}

impl<T> PushError<T> {
    /// Gives back the value that could not be pushed.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(value) => value,
        }
    }
}

// Hand-written so that `PushError<T>` is `Debug` (and thus an `Error`) for every `T`: the
// caller wants to know the ring was full, and a payload may be large or not `Debug` at all.
impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
        }
    }
}

/// Returned by [`Consumer::pop`] when there is nothing to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PopError {
    /// The producer has not published any item the consumer has not taken yet.
    #[error("ring is empty")]
    Empty,
}

/// The pushing end of a ring. See the [module documentation](self).
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Authoritative position of the next slot to fill; mirrored to `shared.tail` on publish.
    tail: usize,
    /// Last `shared.head` observed plus the capacity: the producer may fill positions up to
    /// (excluding) this one. Never ahead of the real bound, because `head` only grows.
    limit: usize,
    /// `capacity - 1`, kept here so the hot path does not chase the `Arc` for it.
    mask: usize,
}

/// The popping end of a ring. See the [module documentation](self).
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Authoritative position of the next item to take; mirrored to `shared.head` on publish.
    head: usize,
    /// Last `shared.tail` observed; never ahead of the real one.
    cached_tail: usize,
    /// `capacity - 1`, kept here so the hot path does not chase the `Arc` for it.
    mask: usize,
}

// SAFETY: a `Producer` is the only handle that writes slots and `tail`; it reaches the slots
// only through the acquire/release protocol described in the module docs, which hands each slot
// to exactly one thread at a time. Moving the handle to another thread moves `T` values into the
// ring from there and (via the consumer) out on another thread, which is sound for `T: Send`.
// `T: Sync` is not needed because no `&T` is ever shared between the two threads.
unsafe impl<T: Send> Send for Producer<T> {}

// SAFETY: the mirror image of the `Producer` argument: the consumer alone reads slots below
// `tail` and alone writes `head`, and the values it takes out were moved in by another thread,
// which `T: Send` permits. The consumer may also drop the ring, and with it leftover items, on
// its own thread; that too only requires `T: Send`.
unsafe impl<T: Send> Send for Consumer<T> {}

type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// Aligns (and so pads) its content to a block of its own. See the module docs for why 128.
#[cfg_attr(
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "powerpc64"
    ),
    repr(align(128))
)]
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "powerpc64"
    )),
    repr(align(64))
)]
struct CachePadded<T>(T);

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// `repr(C)` pins the field order so that the two hot positions come first, each on its own
/// padded block, and the read-mostly fields share the block after them.
#[repr(C)]
struct Shared<T> {
    /// Written only by the consumer (release), read by the producer (acquire).
    head: CachePadded<AtomicUsize>,
    /// Written only by the producer (release), read by the consumer (acquire).
    tail: CachePadded<AtomicUsize>,
    /// Set by whichever handle is dropped first, after it published its final position.
    abandoned: AtomicBool,
    /// `capacity` slots; the slot of position `p` is `p & (capacity - 1)`. A slot holds an
    /// initialised value exactly when its position is in `head..tail`.
    slots: Box<[Slot<T>]>,
}

impl<T> Shared<T> {
    /// The slot of `position`.
    #[inline(always)]
    fn slot(&self, position: usize, mask: usize) -> &Slot<T> {
        slot_at(&self.slots, position, mask)
    }

    /// The ring's slots for the `count` positions from `start`, as at most two contiguous runs
    /// (the second is empty unless the range wraps past the end of the array).
    #[inline(always)]
    fn runs(&self, start: usize, count: usize, mask: usize) -> (&[Slot<T>], &[Slot<T>]) {
        let first_index = start & mask;
        let first_len = count.min(self.slots.len() - first_index);
        // SAFETY: callers pass `count <= capacity = slots.len()`. `first_index < len` (see
        // `slot_at`), and `first_len <= len - first_index`, so the first run is in bounds; the
        // second starts at 0 and has `count - first_len <= len` elements.
        unsafe {
            (
                self.slots
                    .get_unchecked(first_index..first_index + first_len),
                self.slots.get_unchecked(..count - first_len),
            )
        }
    }
}

/// The slot of `position` in a ring's slot array.
#[inline(always)]
fn slot_at<T>(slots: &[Slot<T>], position: usize, mask: usize) -> &Slot<T> {
    // SAFETY: `mask` is always `slots.len() - 1` (every handle and iterator copies it from the
    // length at construction) and `slots.len()` is a power of two, so `position & mask` is in
    // bounds.
    unsafe { slots.get_unchecked(position & mask) }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if !std::mem::needs_drop::<T>() {
            return;
        }
        // Both handles published their final positions before releasing their `Arc`, and the
        // last `Arc` drop synchronises with the others, so these loads see the final values.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let mask = self.slots.len() - 1;
        let mut position = head;
        while position != tail {
            self.slot(position, mask).with_mut(|slot| {
                // SAFETY: positions in `head..tail` hold initialised values nobody has taken,
                // and with both handles gone nothing else can touch the slot.
                unsafe { (*slot).assume_init_drop() }
            });
            position = position.wrapping_add(1);
        }
    }
}

/// Moves `src[..cells.len()]` into `cells`.
///
/// # Safety
///
/// `src` must be valid for reading `cells.len()` values; the cells must be free (the caller owns
/// them under the ring protocol); the caller takes over the ownership question of the values
/// read from `src` (for `T: Copy` there is none).
#[cfg(not(loom))]
#[inline(always)]
unsafe fn copy_in<T>(cells: &[Slot<T>], src: *const T) {
    let dst = crate::sync::cells_as_mut_ptr(cells).cast::<T>();
    // SAFETY: `dst` is valid for `cells.len()` writes (see `cells_as_mut_ptr`), `src` for as
    // many reads by the caller's contract, and the regions cannot overlap because `cells` is
    // inside the ring's allocation, which the caller's source is not part of.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, cells.len()) }
}

/// Loom variant of [`copy_in`]: one tracked access per cell so the checker sees every write.
///
/// # Safety
///
/// As for the non-loom variant.
#[cfg(loom)]
unsafe fn copy_in<T>(cells: &[Slot<T>], src: *const T) {
    for (i, cell) in cells.iter().enumerate() {
        cell.with_mut(|slot| {
            // SAFETY: `i < cells.len()`, so the caller's contract makes `src.add(i)` readable,
            // and the caller owns this free cell.
            unsafe { (*slot).write(src.add(i).read()) };
        });
    }
}

/// Moves the values of `cells` out to `dst[..cells.len()]`, leaving the cells logically free.
///
/// # Safety
///
/// `dst` must be valid for writing `cells.len()` values, and every cell must hold an
/// initialised value that the caller owns under the ring protocol; afterwards the caller must
/// treat the cells as uninitialised.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn copy_out<T>(cells: &[Slot<T>], dst: *mut T) {
    let src = crate::sync::cells_as_mut_ptr(cells)
        .cast::<T>()
        .cast_const();
    // SAFETY: `src` covers `cells.len()` initialised values (caller's contract), `dst` is valid
    // for that many writes, and `dst` lies outside the ring's allocation.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, cells.len()) }
}

/// Loom variant of [`copy_out`]: one tracked access per cell.
///
/// # Safety
///
/// As for the non-loom variant.
#[cfg(loom)]
unsafe fn copy_out<T>(cells: &[Slot<T>], dst: *mut T) {
    for (i, cell) in cells.iter().enumerate() {
        cell.with(|slot| {
            // SAFETY: the caller owns this initialised cell and `dst.add(i)` is writable.
            unsafe { dst.add(i).write((*slot).assume_init_read()) };
        });
    }
}

impl<T> Producer<T> {
    /// Number of slots in the ring (the requested capacity rounded up to a power of two).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Number of items that could be pushed right now without blocking. A snapshot: it can only
    /// grow until this producer pushes again.
    #[must_use]
    pub fn free_slots(&self) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        self.capacity() - self.tail.wrapping_sub(head)
    }

    /// Whether the consumer has been dropped. Items pushed from now on will never be taken
    /// (they are dropped with the ring).
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Acquire)
    }

    /// Appends one item.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] with `value` if every slot is occupied.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        if self.tail == self.limit && self.refresh_limit() == 0 {
            return Err(PushError::Full(value));
        }
        self.shared.slot(self.tail, self.mask).with_mut(|slot| {
            // SAFETY: `tail < limit = head + capacity` for a `head` obtained by an acquire load
            // (in `refresh_limit`), so the slot at `tail` is free: the consumer has moved its
            // previous value out (or it never had one), and that acquire load ordered the move
            // before this write. The consumer will not read the slot until the release store
            // below.
            unsafe { (*slot).write(value) };
        });
        self.tail = self.tail.wrapping_add(1);
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Copies as many items from the front of `items` as fit, publishes them at once, and
    /// returns how many were copied (0 if the ring is full).
    #[inline]
    pub fn push_slice(&mut self, items: &[T]) -> usize
    where
        T: Copy,
    {
        let count = self.reserve(items.len()).min(items.len());
        if count == 0 {
            return 0;
        }
        let (first, second) = self.shared.runs(self.tail, count, self.mask);
        // SAFETY: `count <= reserve(..)` free slots starting at `tail`, so both runs are free
        // cells owned by the producer; `items` holds at least `count = first.len() +
        // second.len()` values, and `T: Copy` means reading them leaves `items` intact.
        unsafe {
            copy_in(first, items.as_ptr());
            // Most chunks do not wrap; skipping the empty run saves a call into `memcpy`.
            if !second.is_empty() {
                copy_in(second, items.as_ptr().add(first.len()));
            }
        }
        self.tail = self.tail.wrapping_add(count);
        self.shared.tail.store(self.tail, Ordering::Release);
        count
    }

    /// Moves items from `items` into the ring until it is full or the iterator ends, publishes
    /// them at once, and returns how many were pushed.
    ///
    /// The iterator is never advanced past what fits, so passing `iter.by_ref()` (or `&mut
    /// iter`) keeps the remaining items in `iter` for a later call. The iterator's `size_hint`
    /// only decides whether the consumer's position is worth reloading; a wrong hint costs
    /// throughput, never correctness.
    ///
    /// If the iterator panics, the items it had already yielded stay in the ring and are
    /// published by the next push or when the producer is dropped.
    pub fn push_iter<I: IntoIterator<Item = T>>(&mut self, items: I) -> usize {
        let items = items.into_iter();
        let wanted = items.size_hint().1.unwrap_or(usize::MAX);
        let free = self.reserve(wanted);
        let start = self.tail;
        for value in items.take(free) {
            self.shared.slot(self.tail, self.mask).with_mut(|slot| {
                // SAFETY: fewer than `free` items have been written since `start`, so this
                // slot is among those `reserve` found free (see `push`).
                unsafe { (*slot).write(value) };
            });
            // Advanced per item, not once at the end, so a panicking iterator cannot make us
            // forget a written slot (which would then be overwritten without being dropped).
            self.tail = self.tail.wrapping_add(1);
        }
        let pushed = self.tail.wrapping_sub(start);
        if pushed != 0 {
            self.shared.tail.store(self.tail, Ordering::Release);
        }
        pushed
    }

    /// Number of free slots, reloading the consumer's position only if the cached one shows
    /// fewer than `wanted` (capped at the capacity).
    #[inline(always)]
    fn reserve(&mut self, wanted: usize) -> usize {
        let free = self.limit.wrapping_sub(self.tail);
        if free >= wanted.min(self.capacity()) {
            return free;
        }
        self.refresh_limit()
    }

    /// Reloads the consumer's position and returns the free slots it implies.
    #[inline(always)]
    fn refresh_limit(&mut self) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        self.limit = head.wrapping_add(self.capacity());
        self.limit.wrapping_sub(self.tail)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Republished in case a panicking `push_iter` left written items unannounced; then the
        // flag, after the position, so that whoever sees the flag also sees the final `tail`.
        self.shared.tail.store(self.tail, Ordering::Release);
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail", &self.tail)
            .field("abandoned", &self.is_abandoned())
            .finish_non_exhaustive()
    }
}

impl<T> Consumer<T> {
    /// Number of slots in the ring (the requested capacity rounded up to a power of two).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Number of items available right now. A snapshot: it can only grow until this consumer
    /// pops again.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// Whether no item is available right now.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer has been dropped, so no further items will arrive.
    ///
    /// When this returns `true`, every item the producer ever pushed is already visible: pops
    /// made after this call drain them and then report [`PopError::Empty`] for good. (Checking
    /// in the other order, pop-then-flag, can miss items pushed between the two.)
    #[must_use]
    pub fn is_abandoned(&self) -> bool {
        self.shared.abandoned.load(Ordering::Acquire)
    }

    /// Takes the oldest item.
    ///
    /// # Errors
    ///
    /// [`PopError::Empty`] if the producer has published nothing that was not taken yet.
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        if self.available(1) == 0 {
            return Err(PopError::Empty);
        }
        let value = self.shared.slot(self.head, self.mask).with(|slot| {
            // SAFETY: `available` saw `tail > head` with an acquire load that synchronises
            // with the producer's release store, so the slot at `head` holds a fully written
            // value, and the producer will not touch it until we publish a `head` past it.
            unsafe { (*slot).assume_init_read() }
        });
        self.head = self.head.wrapping_add(1);
        self.shared.head.store(self.head, Ordering::Release);
        Ok(value)
    }

    /// Copies the oldest items into the front of `out` (as many as are available, at most
    /// `out.len()`), publishes the new position once, and returns how many were copied.
    ///
    /// The `Copy` counterpart of [`Producer::push_slice`], for a consumer that reuses a fixed
    /// buffer; [`Consumer::pop_into`] does the same for any `T` into a `Vec`.
    #[inline]
    pub fn pop_slice(&mut self, out: &mut [T]) -> usize
    where
        T: Copy,
    {
        let count = self.available(out.len()).min(out.len());
        if count == 0 {
            return 0;
        }
        let (first, second) = self.shared.runs(self.head, count, self.mask);
        let dst = out.as_mut_ptr();
        // SAFETY: `count` items starting at `head` are published and owned by the consumer
        // (see `pop`); `out` has room for `count = first.len() + second.len()` values. The
        // old contents of `out` need no drop because `T: Copy`, and advancing `head` below
        // frees the slots, whose values were copied rather than moved but are `Copy` too.
        unsafe {
            copy_out(first, dst);
            if !second.is_empty() {
                copy_out(second, dst.add(first.len()));
            }
        }
        self.head = self.head.wrapping_add(count);
        self.shared.head.store(self.head, Ordering::Release);
        count
    }

    /// Moves up to `max` of the oldest items to the end of `out` with one bulk copy, publishes
    /// the new position once, and returns how many were moved (0 if the ring is empty).
    #[inline]
    pub fn pop_into(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        let count = self.available(max).min(max);
        if count == 0 {
            return 0;
        }
        out.reserve(count);
        let (first, second) = self.shared.runs(self.head, count, self.mask);
        let dst = out.spare_capacity_mut().as_mut_ptr().cast::<T>();
        // SAFETY: `count` items starting at `head` are published (see `pop`) and owned by the
        // consumer; `reserve` made room for `count` more elements in `out`, and `first.len() +
        // second.len() == count`, so both copies stay inside the spare capacity. After the
        // copies the values belong to `out` (hence `set_len`), and advancing `head` past them
        // makes the ring treat their slots as free, so nothing is dropped twice.
        unsafe {
            copy_out(first, dst);
            if !second.is_empty() {
                copy_out(second, dst.add(first.len()));
            }
            out.set_len(out.len() + count);
        }
        self.head = self.head.wrapping_add(count);
        self.shared.head.store(self.head, Ordering::Release);
        count
    }

    /// Borrows up to `max` of the oldest items as an iterator that moves them out one by one.
    ///
    /// The number of items is fixed when the iterator is created (one acquire load at most);
    /// the consumed ones are released to the producer with a single store when the iterator is
    /// dropped. Items the iterator did not yield stay in the ring for the next call.
    ///
    /// Leaking the iterator (`mem::forget`) leaks the items it had not yielded yet: they are
    /// never returned nor dropped. That is the price of not writing the consumer's position
    /// on every item.
    #[inline]
    pub fn pop_iter(&mut self, max: usize) -> PopIter<'_, T> {
        let count = self.available(max).min(max);
        let start = self.head;
        let end = start.wrapping_add(count);
        // Claim the whole chunk up front; `PopIter::drop` gives back what it did not yield.
        // If the iterator is leaked instead, the claimed items can never be read twice.
        self.head = end;
        PopIter {
            slots: &self.shared.slots,
            mask: self.mask,
            shared_head: &self.shared.head,
            consumer_head: &mut self.head,
            position: start,
            start,
            end,
        }
    }

    /// Number of available items, reloading the producer's position only if the cached one
    /// shows fewer than `wanted`.
    #[inline(always)]
    fn available(&mut self, wanted: usize) -> usize {
        let available = self.cached_tail.wrapping_sub(self.head);
        if available >= wanted {
            return available;
        }
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        self.cached_tail.wrapping_sub(self.head)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // A leaked `PopIter` advanced `head` without publishing it; the ring's drop must not
        // see those claimed slots as still holding values. Flag last, as for `Producer`.
        self.shared.head.store(self.head, Ordering::Release);
        self.shared.abandoned.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("abandoned", &self.is_abandoned())
            .finish_non_exhaustive()
    }
}

/// Iterator returned by [`Consumer::pop_iter`]; see there.
pub struct PopIter<'a, T> {
    /// The ring's slots and mask, copied out of the consumer so that a loop over the iterator
    /// keeps them in registers instead of reloading them through the `Arc` for every item.
    slots: &'a [Slot<T>],
    mask: usize,
    /// Where the consumer publishes its position to the producer.
    shared_head: &'a AtomicUsize,
    /// The consumer's own position, set to `end` while the iterator lives and to `position`
    /// when it is dropped.
    consumer_head: &'a mut usize,
    /// Next position to yield.
    position: usize,
    /// First position of the chunk, to know whether anything needs publishing.
    start: usize,
    /// One past the last position of the chunk.
    end: usize,
}

impl<T> Iterator for PopIter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.position == self.end {
            return None;
        }
        let value = slot_at(self.slots, self.position, self.mask).with(|slot| {
            // SAFETY: `start <= position < end <= tail` as observed by the acquire load in
            // `Consumer::available`, so the slot holds a published value. The consumer claimed
            // `start..end` when this iterator was made and the iterator yields each position
            // once, so nobody else reads or overwrites it.
            unsafe { (*slot).assume_init_read() }
        });
        self.position = self.position.wrapping_add(1);
        Some(value)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.end.wrapping_sub(self.position);
        (remaining, Some(remaining))
    }
}

impl<T> ExactSizeIterator for PopIter<'_, T> {}

impl<T> FusedIterator for PopIter<'_, T> {}

impl<T> Drop for PopIter<'_, T> {
    fn drop(&mut self) {
        // Un-yielded items go back to the consumer; yielded ones go to the producer.
        *self.consumer_head = self.position;
        if self.position != self.start {
            self.shared_head.store(self.position, Ordering::Release);
        }
    }
}

impl<T> fmt::Debug for PopIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PopIter")
            .field("remaining", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;

    #[test]
    fn capacity_rounds_up_to_power_of_two() {
        assert_eq!(channel::<u8>(0).0.capacity(), 1);
        assert_eq!(channel::<u8>(1).0.capacity(), 1);
        assert_eq!(channel::<u8>(3).0.capacity(), 4);
        assert_eq!(channel::<u8>(64).1.capacity(), 64);
        assert_eq!(channel::<u8>(65).1.capacity(), 128);
    }

    #[test]
    fn head_and_tail_are_on_separate_blocks() {
        let shared = Shared::<u8> {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            abandoned: AtomicBool::new(false),
            slots: Box::new([]),
        };
        let head = std::ptr::from_ref(&shared.head).addr();
        let tail = std::ptr::from_ref(&shared.tail).addr();
        let abandoned = std::ptr::from_ref(&shared.abandoned).addr();
        let align = std::mem::align_of::<CachePadded<AtomicUsize>>();
        assert!(align >= 64);
        assert_eq!(head % align, 0);
        assert_eq!(tail - head, align);
        assert!(abandoned - tail >= align);
    }

    #[test]
    fn push_pop_fifo_and_full_empty() {
        let (mut p, mut c) = channel(4);
        assert_eq!(c.pop(), Err(PopError::Empty));
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(99), Err(PushError::Full(99)));
        assert_eq!(p.free_slots(), 0);
        assert_eq!(c.len(), 4);
        for i in 0..4 {
            assert_eq!(c.pop(), Ok(i));
        }
        assert!(c.is_empty());
        assert_eq!(c.pop(), Err(PopError::Empty));
        assert_eq!(p.free_slots(), 4);
    }

    #[test]
    fn wraps_around_many_laps() {
        let (mut p, mut c) = channel(2);
        for i in 0..1_000u32 {
            p.push(i).unwrap();
            if i % 2 == 1 {
                assert_eq!(c.pop(), Ok(i - 1));
                assert_eq!(c.pop(), Ok(i));
            }
        }
        assert!(c.is_empty());
    }

    #[test]
    fn positions_wrap_past_usize_max() {
        let (mut p, mut c) = channel(4);
        let start = usize::MAX - 5;
        // Start both sides near the top of the position space to cross the wrap.
        p.tail = start;
        p.limit = start.wrapping_add(4);
        c.head = start;
        c.cached_tail = start;
        p.shared.head.store(start, Ordering::Relaxed);
        p.shared.tail.store(start, Ordering::Relaxed);
        for i in 0..20 {
            assert_eq!(p.push_slice(&[i, i + 100]), 2);
            assert_eq!(p.push(i + 200), Ok(()));
            assert_eq!(p.push(0), Ok(()));
            assert_eq!(p.push(0), Err(PushError::Full(0)));
            let mut out = Vec::new();
            assert_eq!(c.pop_into(&mut out, 3), 3);
            assert_eq!(out, [i, i + 100, i + 200]);
            assert_eq!(c.pop(), Ok(0));
        }
    }

    #[test]
    fn push_slice_partial_and_wrapping() {
        let (mut p, mut c) = channel(8);
        assert_eq!(p.push_slice(&[1, 2, 3, 4, 5, 6]), 6);
        assert_eq!(c.pop(), Ok(1));
        assert_eq!(c.pop(), Ok(2));
        assert_eq!(c.pop(), Ok(3));
        // 5 free, wrapping past the end of the array.
        assert_eq!(p.push_slice(&[7, 8, 9, 10, 11, 12, 13]), 5);
        assert_eq!(p.push_slice(&[14]), 0);
        let mut out = vec![0];
        assert_eq!(c.pop_into(&mut out, 100), 8);
        assert_eq!(out, [0, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(c.pop_into(&mut out, 100), 0);
    }

    #[test]
    fn pop_slice_fills_a_reused_buffer() {
        let (mut p, mut c) = channel(4);
        let mut buf = [0u32; 3];
        assert_eq!(c.pop_slice(&mut buf), 0);
        assert_eq!(p.push_slice(&[1, 2, 3, 4]), 4);
        assert_eq!(c.pop_slice(&mut buf), 3);
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(p.push_slice(&[5, 6]), 2);
        // Wraps: 4 sits at the end of the array, 5 and 6 at its start.
        assert_eq!(c.pop_slice(&mut buf), 3);
        assert_eq!(buf, [4, 5, 6]);
        assert_eq!(c.pop_slice(&mut []), 0);
    }

    #[test]
    fn push_iter_keeps_the_rest_of_a_borrowed_iterator() {
        let (mut p, mut c) = channel(4);
        let mut source = (0..10).map(|i| i.to_string());
        assert_eq!(p.push_iter(source.by_ref()), 4);
        assert_eq!(p.push_iter(source.by_ref()), 0);
        assert_eq!(c.pop().as_deref(), Ok("0"));
        assert_eq!(p.push_iter(&mut source), 1);
        assert_eq!(source.next().as_deref(), Some("5"));
        let got: Vec<String> = c.pop_iter(usize::MAX).collect();
        assert_eq!(got, ["1", "2", "3", "4"]);
        // An iterator whose size hint understates what it has still fills the ring.
        let lying = (10..20).map(|i| i.to_string()).filter(|_| true);
        assert_eq!(p.push_iter(lying), 4);
    }

    #[test]
    fn pop_iter_leaves_unconsumed_items() {
        let (mut p, mut c) = channel(8);
        p.push_slice(&[1, 2, 3, 4, 5]);
        {
            let mut it = c.pop_iter(4);
            assert_eq!(it.len(), 4);
            assert_eq!(it.next(), Some(1));
            assert_eq!(it.next(), Some(2));
            assert_eq!(it.len(), 2);
        }
        assert_eq!(p.free_slots(), 5);
        assert_eq!(c.pop_iter(10).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(c.pop_iter(10).next(), None);
    }

    #[test]
    fn forgotten_pop_iter_does_not_double_drop() {
        let drops = Arc::new(StdAtomicUsize::new(0));
        struct D(Arc<StdAtomicUsize>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (mut p, mut c) = channel(4);
        for _ in 0..4 {
            assert!(p.push(D(drops.clone())).is_ok());
        }
        let mut it = c.pop_iter(3);
        let first = it.next();
        std::mem::forget(it);
        drop(first);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        // The two claimed but unyielded items are gone for good; the fourth is still there.
        drop(c.pop().unwrap());
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        assert!(p.push(D(drops.clone())).is_ok());
        drop(c);
        drop(p);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn drop_releases_remaining_items() {
        let drops = Arc::new(StdAtomicUsize::new(0));
        struct D(Arc<StdAtomicUsize>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (mut p, mut c) = channel(8);
        for _ in 0..6 {
            assert!(p.push(D(drops.clone())).is_ok());
        }
        drop(c.pop());
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        drop(p);
        assert!(c.is_abandoned());
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        drop(c);
        assert_eq!(drops.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn abandonment_is_seen_by_both_sides() {
        let (p, c) = channel::<u8>(2);
        assert!(!p.is_abandoned() && !c.is_abandoned());
        drop(c);
        assert!(p.is_abandoned());
        let (mut p, c) = channel::<u8>(2);
        p.push(1).unwrap();
        drop(p);
        assert!(c.is_abandoned());
    }

    #[test]
    fn zero_sized_items() {
        let (mut p, mut c) = channel::<()>(2);
        assert_eq!(p.push_iter(std::iter::repeat(())), 2);
        assert_eq!(p.push(()), Err(PushError::Full(())));
        assert_eq!(c.pop_iter(5).count(), 2);
    }

    #[test]
    fn errors_display_and_hand_back_the_value() {
        let err = PushError::Full(vec![1, 2]);
        assert_eq!(err.to_string(), "ring is full");
        assert_eq!(format!("{err:?}"), "Full(..)");
        assert_eq!(err.into_inner(), [1, 2]);
        assert_eq!(PopError::Empty.to_string(), "ring is empty");
        let _: &dyn std::error::Error = &PushError::Full(());
        let _: &dyn std::error::Error = &PopError::Empty;
    }

    /// A million items through a small ring between two threads, mixing single and chunked
    /// operations on both sides, checked by count, order and checksum.
    #[test]
    fn stress_million_items_two_threads() {
        const N: u64 = 1_000_000;
        let (mut p, mut c) = channel::<u64>(64);
        let producer = std::thread::spawn(move || {
            let mut next = 0u64;
            let mut buf = Vec::with_capacity(37);
            while next < N {
                match next % 3 {
                    0 => {
                        if p.push(next).is_ok() {
                            next += 1;
                        }
                    }
                    1 => {
                        buf.clear();
                        buf.extend(next..(next + 37).min(N));
                        next += p.push_slice(&buf) as u64;
                    }
                    _ => {
                        let end = (next + 23).min(N);
                        let mut it = next..end;
                        next += p.push_iter(&mut it) as u64;
                    }
                }
                std::hint::spin_loop();
            }
        });
        let mut expected = 0u64;
        let mut sum = 0u64;
        let mut out = Vec::with_capacity(64);
        let mut round = 0u32;
        while expected < N {
            round = round.wrapping_add(1);
            match round % 3 {
                0 => {
                    if let Ok(v) = c.pop() {
                        assert_eq!(v, expected);
                        expected += 1;
                        sum = sum.wrapping_add(v);
                    }
                }
                1 => {
                    out.clear();
                    c.pop_into(&mut out, 50);
                    for &v in &out {
                        assert_eq!(v, expected);
                        expected += 1;
                        sum = sum.wrapping_add(v);
                    }
                }
                _ => {
                    for v in c.pop_iter(19) {
                        assert_eq!(v, expected);
                        expected += 1;
                        sum = sum.wrapping_add(v);
                    }
                }
            }
        }
        producer.join().unwrap();
        assert!(c.is_abandoned());
        assert_eq!(c.pop(), Err(PopError::Empty));
        assert_eq!(sum, N * (N - 1) / 2);
    }
}
