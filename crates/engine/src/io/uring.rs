//! The io_uring writer: batched, asynchronous positional writes from a bounded pool of aligned
//! staging buffers, each optionally followed by a linked `fdatasync`.
//!
//! # Who drives it
//!
//! A shard thread owns one [`UringWriter`] and many partitions. It takes a buffer from the
//! pool, stages Kafka batches in it, queues the buffer as a write with a token of its choosing,
//! calls [`UringWriter::submit`] once for everything it queued, and later collects
//! [`Completion`]s with [`UringWriter::reap`] or [`UringWriter::wait`]. Completions arrive in
//! whatever order the kernel finishes them; putting acknowledgements back in offset order per
//! partition is the shard's job, which is what the token is for.
//!
//! # Why registered buffers and files
//!
//! A plain write makes the kernel look up the file descriptor and pin the user pages on every
//! call. Registering each buffer of the pool once (into a sparse table as the pool grows, or
//! all at setup on kernels without sparse tables) pins its pages for the life of the ring, and registering files into a table (`IORING_REGISTER_FILES`, sparse so that
//! segments can come and go) replaces the descriptor lookup and its reference counting by an
//! index. Both are per-write costs that a log writing hundreds of thousands of batches a second
//! would otherwise pay each time. Where buffer registration is refused (typically
//! `RLIMIT_MEMLOCK` for an unprivileged user) the writer can fall back to unregistered
//! `IORING_OP_WRITE` with the same buffers; see [`BufferRegistration`].
//!
//! Because the pool is bounded, it is also the back-pressure: when every buffer is in flight
//! [`UringWriter::take_buffer`] returns `None` and the caller must reap completions before
//! staging more. The pool starts with one buffer and grows, one buffer at a time, only when
//! every buffer it has is lent out: registered buffers are pinned memory, and an idle server
//! should not hold a pool sized for its busiest moment. Once grown, nothing here allocates
//! per write.
//!
//! # Why a linked fdatasync gives group commit
//!
//! A write queued with `sync = true` is submitted as two entries, the write flagged
//! `IOSQE_IO_LINK` and an `IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC` after it. The kernel
//! starts the sync only after the write completed successfully, so its success means exactly
//! "these bytes are durable", without a round trip to user space in between. Everything the
//! shard staged into the buffer since the last flush, from any number of producers, becomes
//! durable with that one sync: that is group commit. If the write fails, the kernel does not run
//! the sync and completes it with `-ECANCELED`, reported as [`SyncOutcome::Cancelled`].
//!
//! # Why aligned buffers and a re-written tail block for `O_DIRECT`
//!
//! With `O_DIRECT` the data goes from the registered buffer to the device without a copy into
//! the page cache, but memory, position and length must all be multiples of the block size.
//! A log's end is rarely aligned, so [`DirectAppender`] plans each write to start at the end
//! rounded down to a block and to begin with a copy of the bytes already in that partial block
//! (the appender keeps it), then pads the end with zeros to a whole block. The zeros past the
//! logical end are what a preallocated segment holds anyway, and recovery reads a zero tail as
//! the end of the log. Re-writing the partial block cannot lose acknowledged bytes even if the
//! write is torn by a crash: every sector of that block holds the same prefix bytes in the old
//! and the new version, so whichever sectors reach the disk, the prefix is intact.
//!
//! Two writes touching the same block must not be in flight together (the older one could land
//! last and put zeros back over newer bytes), so a write that re-writes the block a previous
//! write ended in names that write in [`DirectWrite::after`] and must be queued only once that
//! one has completed. Writes whose end is block-aligned (a full buffer) impose no such wait,
//! so a busy partition still pipelines.
//!
//! # Errors
//!
//! - Setting up the ring, probing opcodes and registering buffers and files report which step
//!   failed in a [`UringUnavailable`], so the engine can log one line and use the portable
//!   backend instead.
//! - A write the kernel rejects or fails (`EBADF` on a read-only file, `ENOSPC`, `EIO`, a
//!   misaligned direct write's `EINVAL`) comes back as a [`Completion`] whose `result` holds the
//!   error; its buffer returns to the pool as usual. Nothing here panics on a kernel result.
//! - A short write (fewer bytes than asked, which a regular file does only at a limit such as
//!   the maximum file size or a full disk) is resubmitted for the remainder, with its linked
//!   sync, up to [`MAX_WRITE_ATTEMPTS`] times; the remainder is queued while reaping and goes to
//!   the kernel with the next `submit` or `wait`. If the retry fails the completion carries the
//!   error and `written` says how many bytes did land. A write that makes no progress at all is
//!   reported as `WriteZero` rather than retried.
//! - Requests this module can refuse before the kernel sees them (a buffer from another ring,
//!   a file slot that was unregistered, an empty or misaligned direct write, a full submission
//!   queue) return a [`QueueError`] that hands the buffer back.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use io_uring::squeue;
use io_uring::types::{Fixed, FsyncFlags};
use io_uring::{IoUring, Probe, opcode};

use super::aligned::{AlignedBuf, BLOCK, BufferFull, align_down};
use super::pool::{allocate, next_pool_id};
pub use super::pool::{
    Completion, FileSlot, PooledBuf, QueueError, QueueErrorKind, SyncOutcome,
};

/// How many times one queued write is submitted before a short write is reported as an error.
pub const MAX_WRITE_ATTEMPTS: u8 = 4;

/// Whether to register the buffer pool with the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferRegistration {
    /// Fail setup if the buffers cannot be registered.
    Require,
    /// Register if possible; otherwise use unregistered writes and say why in
    /// [`UringWriter::registration_error`].
    #[default]
    Prefer,
    /// Do not register; every write is `IORING_OP_WRITE`.
    Off,
}

/// Sizes of a [`UringWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringConfig {
    /// Submission queue entries (the kernel rounds up to a power of two). A synced write uses two.
    pub entries: u32,
    /// Staging buffers in the pool: the most writes that can be in flight at once.
    pub buffers: u16,
    /// Bytes per staging buffer: a non-zero multiple of 4096, at most 1 GiB.
    pub buffer_size: usize,
    /// Slots in the registered file table: the most files registered at once.
    pub files: u32,
    /// Whether to register the buffers.
    pub registration: BufferRegistration,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 256,
            buffers: 16,
            buffer_size: 512 * 1024,
            files: 64,
            registration: BufferRegistration::Prefer,
        }
    }
}

/// The setup step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    /// The configuration itself is unusable.
    Config,
    /// `io_uring_setup` (kernel without io_uring, or a sandbox that forbids it).
    CreateRing,
    /// Asking the kernel which opcodes it supports.
    Probe,
    /// A needed opcode is missing.
    Opcodes,
    /// Allocating the staging buffers.
    AllocateBuffers,
    /// Registering the staging buffers.
    RegisterBuffers,
    /// Registering the (initially empty) file table.
    RegisterFiles,
}

impl fmt::Display for SetupStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "checking the configuration",
            Self::CreateRing => "creating the ring (io_uring_setup)",
            Self::Probe => "probing supported opcodes",
            Self::Opcodes => "checking required opcodes",
            Self::AllocateBuffers => "allocating staging buffers",
            Self::RegisterBuffers => "registering staging buffers",
            Self::RegisterFiles => "registering the file table",
        })
    }
}

/// io_uring cannot be used: which step failed and the system's reason.
#[derive(Debug, thiserror::Error)]
#[error("io_uring unavailable: {step} failed: {source}")]
pub struct UringUnavailable {
    /// What was being attempted.
    pub step: SetupStep,
    /// Why it failed.
    #[source]
    pub source: io::Error,
}

impl UringUnavailable {
    fn new(step: SetupStep, source: io::Error) -> Self {
        Self { step, source }
    }
}


/// The low bit of `user_data`: which of a pair's entries completed. The rest is the buffer
/// index, which identifies the operation because a buffer serves one operation at a time.
const KIND_SYNC: u64 = 1;

fn user_data(index: u16, sync: bool) -> u64 {
    (u64::from(index) << 1) | u64::from(sync)
}

/// One queued write, owning its buffer until every entry of its current attempt completed.
#[derive(Debug)]
struct Op {
    buf: AlignedBuf,
    token: u64,
    file: FileSlot,
    position: u64,
    sync: bool,
    /// The file is open with `O_DIRECT`: a resubmission must start on a block boundary.
    direct: bool,
    written: usize,
    attempts: u8,
    write_res: Option<i32>,
    sync_res: Option<i32>,
}

/// What a CQE did to its operation.
#[derive(Debug)]
enum Step {
    /// More CQEs of this attempt are due.
    Pending,
    /// The remainder of a short write must be submitted again.
    Resubmit,
    /// The operation is over.
    Done(Completion),
}

impl Op {
    fn len(&self) -> usize {
        self.buf.len()
    }

    /// Records one CQE and decides what follows. Kept free of the ring so that every kernel
    /// answer, including the rare ones, can be tested directly.
    fn on_cqe(&mut self, is_sync: bool, res: i32) -> Step {
        if is_sync {
            self.sync_res = Some(res);
        } else {
            self.write_res = Some(res);
        }
        let Some(write) = self.write_res else {
            return Step::Pending;
        };
        if self.sync && self.sync_res.is_none() {
            return Step::Pending;
        }
        let remaining = self.len() - self.written;
        let result = match usize::try_from(write) {
            Err(_) => Err(io::Error::from_raw_os_error(-write)),
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "io_uring write made no progress",
            )),
            Ok(n) if n >= remaining => {
                self.written = self.len();
                Ok(self.written)
            }
            Ok(n) => {
                self.written += n;
                if self.direct {
                    // The rest goes out from the block the short write ended in: an O_DIRECT
                    // write at an unaligned position would be refused (EINVAL), and the buffer
                    // still holds that block's bytes.
                    self.written = usize::try_from(align_down(self.written as u64)).unwrap_or(0);
                }
                if self.attempts < MAX_WRITE_ATTEMPTS {
                    self.write_res = None;
                    self.sync_res = None;
                    return Step::Resubmit;
                }
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short writes: {} of {} bytes", self.written, self.len()),
                ))
            }
        };
        Step::Done(self.finish(result))
    }

    fn finish(&self, result: io::Result<usize>) -> Completion {
        let sync = match (self.sync, self.sync_res) {
            (false, _) => SyncOutcome::NotRequested,
            (true, Some(0..)) => SyncOutcome::Synced,
            (true, Some(e)) if -e == libc::ECANCELED => SyncOutcome::Cancelled,
            (true, Some(e)) => SyncOutcome::Failed(io::Error::from_raw_os_error(-e)),
            (true, None) => SyncOutcome::Cancelled,
        };
        Completion {
            token: self.token,
            file: self.file,
            position: self.position,
            len: self.len(),
            written: self.written,
            result,
            sync,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FileEntry {
    generation: u32,
    registered: bool,
    direct: bool,
}

/// Bookkeeping apart from the ring, so that reaping can borrow both at once.
#[derive(Debug)]
struct Ops {
    /// Idle buffers by index; `None` while lent out or in flight.
    idle: Vec<Option<AlignedBuf>>,
    /// Indices of idle buffers.
    free: Vec<u16>,
    /// Queued operations by buffer index.
    ops: Vec<Option<Op>>,
    /// Operations whose short write awaits resubmission.
    resubmit: Vec<u16>,
    /// CQEs the kernel still owes for entries pushed into the submission queue.
    expected_cqes: usize,
    /// Operations queued and not yet completed.
    in_flight: usize,
}

impl Ops {
    /// Handles one CQE; returns whether it finished an operation.
    fn complete(&mut self, user_data: u64, res: i32, out: &mut Vec<Completion>) -> bool {
        let is_sync = user_data & KIND_SYNC != 0;
        let Some(slot) = usize::try_from(user_data >> 1)
            .ok()
            .and_then(|i| self.ops.get_mut(i))
        else {
            log::warn!("io_uring: completion for unknown request {user_data:#x}");
            return false;
        };
        let Some(op) = slot.as_mut() else {
            log::warn!("io_uring: completion for idle buffer {user_data:#x}");
            return false;
        };
        self.expected_cqes = self.expected_cqes.saturating_sub(1);
        match op.on_cqe(is_sync, res) {
            Step::Pending => false,
            Step::Resubmit => {
                if let Ok(index) = u16::try_from(user_data >> 1) {
                    self.resubmit.push(index);
                }
                false
            }
            Step::Done(completion) => {
                out.push(completion);
                if let Some(mut op) = slot.take() {
                    op.buf.clear();
                    let index = user_data >> 1;
                    if let (Some(idle), Ok(index)) = (
                        usize::try_from(index)
                            .ok()
                            .and_then(|i| self.idle.get_mut(i)),
                        u16::try_from(index),
                    ) {
                        *idle = Some(op.buf);
                        self.free.push(index);
                    }
                }
                self.in_flight -= 1;
                true
            }
        }
    }
}

/// An io_uring with a registered pool of staging buffers and a registered file table.
///
/// Not thread-safe by design (one per shard), but `Send` so that it can be built before the
/// shard thread starts.
pub struct UringWriter {
    // Declared first so that it is dropped first: the ring must be gone before the buffers it
    // registered are freed.
    ring: IoUring,
    id: u64,
    registration: Registration,
    registration_error: Option<io::Error>,
    buffer_size: usize,
    /// The most buffers the pool grows to.
    pool_limit: u16,
    /// Buffers allocated so far: indices `0..allocated`. An index is never reused, so a
    /// buffer dropped by a caller leaves its registration pointing at nothing we write from.
    allocated: u16,
    ops: Ops,
    files: Vec<FileEntry>,
    free_files: Vec<u32>,
    /// Test hook: rewrites each CQE's result before the state machine consumes it.
    filter: Option<ResultFilter>,
}

/// Rewrites the result of a CQE (of the write queued with `token`; `is_sync` for its linked
/// fdatasync) before the operation consumes it: how the storage simulator of tests injects
/// errors and short writes into exactly the path real kernel answers take.
pub type ResultFilter = Box<dyn FnMut(u64, bool, i32) -> i32 + Send>;

impl fmt::Debug for UringWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringWriter")
            .field("id", &self.id)
            .field("fixed", &self.fixed_buffers())
            .field("buffer_size", &self.buffer_size)
            .field("free_buffers", &self.ops.free.len())
            .field("in_flight", &self.ops.in_flight)
            .finish_non_exhaustive()
    }
}

/// How the staging buffers are registered with the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registration {
    /// Not at all: writes are `IORING_OP_WRITE`.
    None,
    /// A sparse table sized for the whole pool, each buffer registered as it is allocated
    /// (5.13+), so registration does not pin memory the load never needed.
    Sparse,
    /// Older kernels: the whole pool allocated and registered at setup.
    Whole,
}


fn iovec_of(buf: &AlignedBuf) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.capacity(),
    }
}

/// Registers the pool: a sparse table with the buffers allocated so far in it, or, where the
/// kernel has no sparse tables, every buffer of the pool allocated and registered at once.
fn register_pool(
    ring: &IoUring,
    idle: &mut [Option<AlignedBuf>],
    buffer_size: usize,
) -> io::Result<Registration> {
    let limit = u32::try_from(idle.len()).unwrap_or(u32::MAX);
    let iovecs = |idle: &[Option<AlignedBuf>]| -> Vec<libc::iovec> {
        idle.iter().flatten().map(iovec_of).collect()
    };
    if ring.submitter().register_buffers_sparse(limit).is_ok() {
        // SAFETY: every iovec describes a live allocation owned by `idle`, which moves into
        // the writer; the allocations are never reallocated and are freed only after the
        // ring (declared first) is dropped, or when a caller drops a lent-out `PooledBuf`,
        // whose index is then never named in a write again. The kernel pins the pages.
        unsafe { ring.submitter().register_buffers_update(0, &iovecs(idle), None)? };
        return Ok(Registration::Sparse);
    }
    for slot in idle.iter_mut().filter(|slot| slot.is_none()) {
        *slot = Some(allocate(buffer_size)?);
    }
    // SAFETY: as above, for every buffer of the pool.
    unsafe { ring.submitter().register_buffers(&iovecs(idle))? };
    Ok(Registration::Whole)
}

fn build_ring(entries: u32, cq_entries: u32) -> io::Result<IoUring> {
    // SUBMIT_ALL keeps one rejected entry from stalling the rest of a batch (5.18+); older
    // kernels refuse the flag with EINVAL, and then the plain ring is still correct.
    let with_flags = IoUring::builder()
        .setup_cqsize(cq_entries)
        .setup_submit_all()
        .build(entries);
    match with_flags {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            IoUring::builder().setup_cqsize(cq_entries).build(entries)
        }
        other => other,
    }
}

impl UringWriter {
    /// Sets up a ring per `config`, checks the opcodes it needs and registers the buffer pool
    /// and an empty file table.
    pub fn probe(config: UringConfig) -> Result<Self, UringUnavailable> {
        let invalid = |why: &str| {
            UringUnavailable::new(
                SetupStep::Config,
                io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()),
            )
        };
        if config.entries < 2 {
            return Err(invalid("need at least 2 submission entries"));
        }
        if config.buffers == 0 || config.files == 0 {
            return Err(invalid("need at least one buffer and one file slot"));
        }
        if config.buffer_size > 1 << 30 {
            return Err(invalid("buffers are limited to 1 GiB"));
        }
        let cq_entries = config
            .entries
            .max(u32::from(config.buffers))
            .saturating_mul(2);
        let ring = build_ring(config.entries, cq_entries)
            .map_err(|e| UringUnavailable::new(SetupStep::CreateRing, e))?;

        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| UringUnavailable::new(SetupStep::Probe, e))?;
        let missing = |name: &str| {
            UringUnavailable::new(
                SetupStep::Opcodes,
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel does not support {name}"),
                ),
            )
        };
        if !probe.is_supported(opcode::Fsync::CODE) {
            return Err(missing("IORING_OP_FSYNC"));
        }
        let has_write = probe.is_supported(opcode::Write::CODE);
        let has_write_fixed = probe.is_supported(opcode::WriteFixed::CODE);
        if !has_write && !has_write_fixed {
            return Err(missing("IORING_OP_WRITE or IORING_OP_WRITE_FIXED"));
        }

        let mut idle: Vec<Option<AlignedBuf>> = (0..config.buffers).map(|_| None).collect();
        // One buffer now, so that an allocation failure shows at setup; the rest on demand.
        idle[0] = Some(
            allocate(config.buffer_size)
                .map_err(|e| UringUnavailable::new(SetupStep::AllocateBuffers, e))?,
        );
        let mut registration_error = None;
        let registration = match config.registration {
            BufferRegistration::Off => Registration::None,
            _ if !has_write_fixed => {
                registration_error = Some(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the kernel does not support IORING_OP_WRITE_FIXED",
                ));
                Registration::None
            }
            _ => match register_pool(&ring, &mut idle, config.buffer_size) {
                Ok(registration) => registration,
                Err(e) => {
                    if config.registration == BufferRegistration::Require {
                        return Err(UringUnavailable::new(SetupStep::RegisterBuffers, e));
                    }
                    log::info!(
                        "io_uring: registering buffers failed ({e}); using unregistered writes"
                    );
                    registration_error = Some(e);
                    Registration::None
                }
            },
        };
        if registration == Registration::None && !has_write {
            return Err(missing("IORING_OP_WRITE (buffers are not registered)"));
        }

        let sparse = ring.submitter().register_files_sparse(config.files);
        if let Err(e) = sparse {
            // Sparse registration arrived in 5.19; before that a table of -1 placeholders
            // does the same job.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(UringUnavailable::new(SetupStep::RegisterFiles, e));
            }
            let placeholders = vec![-1; usize::try_from(config.files).unwrap_or(0)];
            ring.submitter()
                .register_files(&placeholders)
                .map_err(|e| UringUnavailable::new(SetupStep::RegisterFiles, e))?;
        }

        let buffers = usize::from(config.buffers);
        let allocated = idle.iter().filter(|buf| buf.is_some()).count();
        Ok(Self {
            ring,
            id: next_pool_id(),
            registration,
            registration_error,
            buffer_size: config.buffer_size,
            pool_limit: config.buffers,
            allocated: u16::try_from(allocated).unwrap_or(config.buffers),
            ops: Ops {
                idle,
                free: (0..u16::try_from(allocated).unwrap_or(0)).rev().collect(),
                ops: (0..buffers).map(|_| None).collect(),
                resubmit: Vec::with_capacity(buffers),
                expected_cqes: 0,
                in_flight: 0,
            },
            files: vec![
                FileEntry {
                    generation: 0,
                    registered: false,
                    direct: false,
                };
                usize::try_from(config.files).unwrap_or(0)
            ],
            free_files: (0..config.files).rev().collect(),
            filter: None,
        })
    }

    /// Passes every CQE result through `filter` from now on (fault injection in tests).
    #[doc(hidden)]
    pub fn set_result_filter(&mut self, filter: ResultFilter) {
        self.filter = Some(filter);
    }

    /// Whether writes use registered buffers (`IORING_OP_WRITE_FIXED`).
    #[must_use]
    pub fn fixed_buffers(&self) -> bool {
        self.registration != Registration::None
    }

    /// Why buffer registration was given up, when [`BufferRegistration::Prefer`] fell back.
    #[must_use]
    pub fn registration_error(&self) -> Option<&io::Error> {
        self.registration_error.as_ref()
    }

    /// Bytes per staging buffer.
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// Buffers ready to be taken, counting those the pool may still allocate.
    #[must_use]
    pub fn free_buffers(&self) -> usize {
        self.ops.free.len() + usize::from(self.pool_limit - self.allocated)
    }

    /// Buffers allocated so far (the pool grows on demand up to its configured size).
    #[must_use]
    pub fn allocated_buffers(&self) -> usize {
        usize::from(self.allocated)
    }

    /// Adds one buffer to the pool, registered like the others; false when the pool is at its
    /// limit or the buffer cannot be had (then the pool stops growing: the buffers it has
    /// keep serving, and a full pool is the usual back-pressure).
    fn grow(&mut self) -> bool {
        if self.allocated >= self.pool_limit {
            return false;
        }
        let index = self.allocated;
        let grown = allocate(self.buffer_size).and_then(|buf| {
            if self.registration == Registration::Sparse {
                let iovec = iovec_of(&buf);
                // SAFETY: the iovec describes the live allocation `buf`, which moves into
                // `idle` below and is freed only after the ring (declared first) is dropped,
                // or when a caller drops it as a lent-out `PooledBuf`; its index is never
                // handed out again, so no write names freed memory, and the kernel pins the
                // pages it registered.
                unsafe {
                    self.ring
                        .submitter()
                        .register_buffers_update(u32::from(index), &[iovec], None)?;
                }
            }
            Ok(buf)
        });
        match grown {
            Ok(buf) => {
                self.ops.idle[usize::from(index)] = Some(buf);
                self.ops.free.push(index);
                self.allocated += 1;
                true
            }
            Err(e) => {
                log::warn!(
                    "io_uring: staging pool stays at {} buffers: {e}",
                    self.allocated
                );
                self.pool_limit = self.allocated;
                false
            }
        }
    }

    /// Writes queued and not yet reaped.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.ops.in_flight
    }

    /// Puts `file` into a free slot of the registered table.
    ///
    /// The kernel takes its own reference to the open file, so the slot stays valid even if the
    /// caller closes its descriptor; [`Self::unregister_file`] drops that reference. Whether the
    /// file was opened with `O_DIRECT` is noted so that misaligned writes are refused early.
    pub fn register_file(&mut self, file: &impl AsFd) -> io::Result<FileSlot> {
        let fd = file.as_fd().as_raw_fd();
        let Some(index) = self.free_files.pop() else {
            return Err(io::Error::other("io_uring file table is full"));
        };
        // SAFETY: `fd` comes from a live `BorrowedFd`, and F_GETFL only reads its status flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            self.free_files.push(index);
            return Err(io::Error::last_os_error());
        }
        if let Err(e) = self.ring.submitter().register_files_update(index, &[fd]) {
            self.free_files.push(index);
            return Err(e);
        }
        let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.files.get_mut(i))
        else {
            return Err(io::Error::other("io_uring file slot out of range"));
        };
        entry.registered = true;
        entry.direct = flags & libc::O_DIRECT != 0;
        Ok(FileSlot {
            index,
            generation: entry.generation,
        })
    }

    /// Empties `slot`. Writes already queued to it still complete; later ones are refused.
    pub fn unregister_file(&mut self, slot: FileSlot) -> io::Result<()> {
        self.file_entry(slot)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file slot not registered"))?;
        self.ring
            .submitter()
            .register_files_update(slot.index, &[-1])?;
        if let Some(entry) = usize::try_from(slot.index)
            .ok()
            .and_then(|i| self.files.get_mut(i))
        {
            entry.registered = false;
            entry.generation = entry.generation.wrapping_add(1);
            self.free_files.push(slot.index);
        }
        Ok(())
    }

    fn file_entry(&self, slot: FileSlot) -> Option<FileEntry> {
        let entry = *self.files.get(usize::try_from(slot.index).ok()?)?;
        (entry.registered && entry.generation == slot.generation).then_some(entry)
    }

    /// Lends out an empty staging buffer, or `None` when all are in use: reap completions
    /// first. The pool grows (allocating and registering a buffer) only when every buffer it
    /// has is lent out, up to its configured size, so a quiet engine keeps only the few
    /// buffers its load needed.
    pub fn take_buffer(&mut self) -> Option<PooledBuf> {
        if self.ops.free.is_empty() {
            self.grow();
        }
        let index = self.ops.free.pop()?;
        let buf = self.ops.idle.get_mut(usize::from(index))?.take()?;
        Some(PooledBuf {
            pool: self.id,
            index,
            buf,
        })
    }

    /// Returns an unused buffer to the pool; a buffer from another writer is handed back.
    pub fn give_back(&mut self, mut buf: PooledBuf) -> Result<(), PooledBuf> {
        if buf.pool != self.id {
            return Err(buf);
        }
        let Some(idle) = self.ops.idle.get_mut(usize::from(buf.index)) else {
            return Err(buf);
        };
        buf.buf.clear();
        *idle = Some(buf.buf);
        self.ops.free.push(buf.index);
        Ok(())
    }

    /// Queues a write of `buf`'s bytes at `position` in `file`, followed by a linked
    /// `fdatasync` when `sync` is set. Nothing reaches the kernel until [`Self::submit`] or
    /// [`Self::wait`], so any number of writes go in one system call.
    ///
    /// If the submission queue has no room, this submits what is queued once and retries; if
    /// that does not make room the write is refused with [`QueueErrorKind::QueueFull`].
    pub fn queue_write(
        &mut self,
        file: FileSlot,
        position: u64,
        buf: PooledBuf,
        sync: bool,
        token: u64,
    ) -> Result<(), QueueError> {
        let refuse = |kind, buf| Err(QueueError { kind, buf });
        if buf.pool != self.id {
            return refuse(QueueErrorKind::ForeignBuffer, buf);
        }
        let Some(entry) = self.file_entry(file) else {
            return refuse(QueueErrorKind::StaleFile, buf);
        };
        if buf.is_empty() {
            return refuse(QueueErrorKind::Empty, buf);
        }
        if entry.direct
            && (!position.is_multiple_of(BLOCK as u64) || !buf.len().is_multiple_of(BLOCK))
        {
            return refuse(QueueErrorKind::Misaligned, buf);
        }
        let index = buf.index;
        let Some(slot) = self.ops.ops.get_mut(usize::from(index)) else {
            return refuse(QueueErrorKind::ForeignBuffer, buf);
        };
        let op = Op {
            buf: buf.buf,
            token,
            file,
            position,
            sync,
            direct: entry.direct,
            written: 0,
            attempts: 1,
            write_res: None,
            sync_res: None,
        };
        let (entries, count) = attempt_entries(&op, index, self.registration != Registration::None);
        // SAFETY: the entries point into `op.buf`'s heap allocation, which stays where it is
        // when `op` moves into the operation table just below. The table owns it until every
        // CQE of the attempt has been reaped (`Ops::complete` releases it only then), and
        // nobody can write to it meanwhile: the caller gave up its `PooledBuf`. `Drop` waits
        // for outstanding CQEs, and leaks the buffers if it cannot. If the push fails nothing
        // was queued and the buffer goes back to the caller. For WRITE_FIXED, `index` is the
        // registered buffer that contains the range.
        if !unsafe { push_entries(&mut self.ring, &entries[..count]) } {
            return refuse(
                QueueErrorKind::QueueFull,
                PooledBuf {
                    pool: self.id,
                    index,
                    buf: op.buf,
                },
            );
        }
        *slot = Some(op);
        self.ops.expected_cqes += count;
        self.ops.in_flight += 1;
        Ok(())
    }

    /// Queues the remainder of operation `index` after a short write; false if no room.
    fn resubmit(&mut self, index: u16) -> bool {
        let Some(op) = self
            .ops
            .ops
            .get_mut(usize::from(index))
            .and_then(Option::as_mut)
        else {
            // Nothing to resubmit, so nothing to retry either.
            return true;
        };
        let (entries, count) = attempt_entries(op, index, self.registration != Registration::None);
        // SAFETY: as in `queue_write`: the operation table owns `op.buf` until every CQE of
        // this attempt has been reaped; the previous attempt's CQEs have all arrived, so the
        // kernel holds no other reference to it.
        if !unsafe { push_entries(&mut self.ring, &entries[..count]) } {
            return false;
        }
        op.attempts += 1;
        self.ops.expected_cqes += count;
        true
    }

    /// Pushes the remainders of short writes found while reaping.
    fn flush_resubmits(&mut self) {
        while let Some(&index) = self.ops.resubmit.last() {
            if !self.resubmit(index) {
                // Still no room: the next submit or wait tries again.
                return;
            }
            self.ops.resubmit.pop();
        }
    }

    /// Sends every queued entry to the kernel in one `io_uring_enter`; returns how many.
    ///
    /// `EBUSY` means the completion queue is backed up: reap, then submit again.
    pub fn submit(&mut self) -> io::Result<usize> {
        self.flush_resubmits();
        submit_retrying(&self.ring, 0)
    }

    /// Has the kernel signal `eventfd` whenever it posts a completion, so that a thread can
    /// sleep on that descriptor (beside others' wakeups) instead of in `io_uring_enter`.
    pub fn register_eventfd(&self, eventfd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.ring.submitter().register_eventfd(eventfd.as_raw_fd())
    }

    /// Whether completions wait to be reaped, or entries (resubmissions) to be submitted:
    /// either way a sleep on the eventfd would wait for nothing.
    pub fn has_unfinished_business(&mut self) -> bool {
        !self.ring.completion().is_empty()
            || !self.ring.submission().is_empty()
            || !self.ops.resubmit.is_empty()
    }

    /// Collects finished writes into `out` without blocking; returns how many were added.
    /// Their buffers are back in the pool.
    pub fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        let mut done = 0;
        for cqe in self.ring.completion() {
            let user_data = cqe.user_data();
            let res = match self.filter.as_mut() {
                Some(filter) => {
                    let token = usize::try_from(user_data >> 1)
                        .ok()
                        .and_then(|i| self.ops.ops.get(i))
                        .and_then(Option::as_ref)
                        .map_or(u64::MAX, |op| op.token);
                    filter(token, user_data & KIND_SYNC != 0, cqe.result())
                }
                None => cqe.result(),
            };
            if self.ops.complete(user_data, res, out) {
                done += 1;
            }
        }
        if !self.ops.resubmit.is_empty() {
            self.flush_resubmits();
        }
        done
    }

    /// Submits what is queued and blocks until at least `min_complete` writes have finished
    /// (fewer if fewer are in flight), collecting them into `out`. Sleeps in the kernel; never
    /// spins.
    pub fn wait(&mut self, min_complete: usize, out: &mut Vec<Completion>) -> io::Result<usize> {
        self.flush_resubmits();
        let mut done = self.reap(out);
        if done >= min_complete || self.ops.in_flight == 0 {
            if !self.ring.submission().is_empty() {
                submit_retrying(&self.ring, 0)?;
            }
            return Ok(done);
        }
        while done < min_complete && self.ops.in_flight > 0 {
            if self.ops.expected_cqes == 0 && !self.ops.resubmit.is_empty() {
                // Operations are waiting for room that only a submit can make.
                submit_retrying(&self.ring, 0)?;
                self.flush_resubmits();
            }
            if self.ops.expected_cqes == 0 {
                // Nothing the kernel could complete: waiting would never return.
                return Err(io::Error::other(
                    "io_uring writes in flight but none submitted",
                ));
            }
            match submit_retrying(&self.ring, 1) {
                Ok(_) => {}
                // The completion queue is backed up; reaping below makes room.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            done += self.reap(out);
        }
        Ok(done)
    }
}

/// The entries of `op`'s next attempt and how many of them to push: the write of the bytes not
/// yet written, then, when asked for, the fdatasync linked to it.
fn attempt_entries(op: &Op, index: u16, fixed: bool) -> ([squeue::Entry; 2], usize) {
    let remainder = op.buf.as_slice().get(op.written..).unwrap_or_default();
    // Buffers are at most 1 GiB (checked in `probe`), so the length fits.
    let len = u32::try_from(remainder.len()).unwrap_or(u32::MAX);
    let position = op.position + op.written as u64;
    let fd = Fixed(op.file.index);
    let write = if fixed {
        opcode::WriteFixed::new(fd, remainder.as_ptr(), len, index)
            .offset(position)
            .build()
    } else {
        opcode::Write::new(fd, remainder.as_ptr(), len)
            .offset(position)
            .build()
    }
    .user_data(user_data(index, false));
    let sync = opcode::Fsync::new(fd)
        .flags(FsyncFlags::DATASYNC)
        .build()
        .user_data(user_data(index, true));
    if op.sync {
        ([write.flags(squeue::Flags::IO_LINK), sync], 2)
    } else {
        ([write, sync], 1)
    }
}

/// Pushes `entries` all together (a linked pair must not be split across submissions),
/// submitting what is queued once if there is no room. Returns whether they were pushed.
///
/// # Safety
///
/// Every buffer the entries point to must stay allocated, and unwritten by anyone, until the
/// CQEs of all of them have been reaped.
unsafe fn push_entries(ring: &mut IoUring, entries: &[squeue::Entry]) -> bool {
    for round in 0..2 {
        // SAFETY: the caller vouches for the buffers; registered file slots are checked by
        // the kernel itself, so a wrong slot is an error CQE, not unsafety.
        if unsafe { ring.submission().push_multiple(entries) }.is_ok() {
            return true;
        }
        if round == 0 && submit_retrying(ring, 0).is_err() {
            return false;
        }
    }
    false
}

/// `io_uring_enter`, retried a few times on `EINTR`.
fn submit_retrying(ring: &IoUring, want: usize) -> io::Result<usize> {
    let mut tries = 0;
    loop {
        match ring.submit_and_wait(want) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < 8 => tries += 1,
            other => return other,
        }
    }
}

impl Drop for UringWriter {
    fn drop(&mut self) {
        // The kernel may still read the buffers of writes in flight; they must outlive it.
        let mut sink = Vec::new();
        self.ops.resubmit.clear();
        while self.ops.expected_cqes > 0 {
            match submit_retrying(&self.ring, 1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => {
                    log::error!("io_uring: cannot drain writes on close: {e}");
                    break;
                }
            }
            for cqe in self.ring.completion() {
                self.ops.complete(cqe.user_data(), cqe.result(), &mut sink);
            }
            self.ops.resubmit.clear();
            sink.clear();
        }
        if self.ops.expected_cqes > 0 {
            // Leaking is the only safe option for memory the kernel may still read.
            for op in self.ops.ops.iter_mut().filter_map(Option::take) {
                std::mem::forget(op.buf);
            }
        }
    }
}

/// Why an `O_DIRECT` write could not be planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The tail handed to [`DirectAppender::new`] is not `end % 4096` bytes long.
    #[error("tail of {got} bytes given for a log ending {expected} bytes into its last block")]
    TailLength {
        /// `end % 4096`.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The buffer does not start with the partial block [`DirectAppender::begin`] put there.
    #[error("buffer does not start with the log's partial tail block")]
    TailMismatch,
    /// The buffer holds nothing past the tail.
    #[error("no new bytes to write")]
    Empty,
}

/// A planned `O_DIRECT` write: queue the buffer at `position`; it is already padded to `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectWrite {
    /// Block-aligned file position of the buffer's first byte.
    pub position: u64,
    /// Block-aligned length, padding included.
    pub len: usize,
    /// The log's logical end once this write lands.
    pub end: u64,
    /// This write's number, counting from 0 per appender.
    pub seq: u64,
    /// The write whose last block this one re-writes: it must have completed before this one
    /// is queued.
    pub after: Option<u64>,
}

/// Plans block-aligned appends to an `O_DIRECT` file whose logical end may fall mid-block.
///
/// It keeps a copy of the bytes between the last block boundary and the logical end, so that
/// each write can start on the boundary and re-write them. Its state advances when a write is
/// planned, not when it completes: if a planned write fails or is not queued, build a new
/// appender from what is known to be on disk (the segment's published size and bytes).
#[derive(Debug, Clone)]
pub struct DirectAppender {
    end: u64,
    tail: Box<[u8]>,
    next_seq: u64,
    /// The last planned write, if it ended mid-block.
    open_block: Option<u64>,
}

impl DirectAppender {
    /// An appender for a file whose logical end is `end`, with `tail` the file's bytes from
    /// `end` rounded down to a block up to `end` (empty when `end` is aligned).
    pub fn new(end: u64, tail: &[u8]) -> Result<Self, PlanError> {
        let expected = usize::try_from(end - align_down(end)).unwrap_or(0);
        if tail.len() != expected {
            return Err(PlanError::TailLength {
                expected,
                got: tail.len(),
            });
        }
        let mut copy = vec![0; BLOCK].into_boxed_slice();
        copy[..expected].copy_from_slice(tail);
        Ok(Self {
            end,
            tail: copy,
            next_seq: 0,
            open_block: None,
        })
    }

    /// The logical end after every planned write.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The bytes of the partial last block.
    #[must_use]
    pub fn tail(&self) -> &[u8] {
        let len = usize::try_from(self.end - align_down(self.end)).unwrap_or(0);
        &self.tail[..len]
    }

    /// Empties `buf` and starts it with the partial last block; stage new bytes after it.
    pub fn begin(&self, buf: &mut PooledBuf) -> Result<(), BufferFull> {
        buf.clear();
        buf.extend_from_slice(self.tail())
    }

    /// Pads `buf` (begun with [`Self::begin`], then filled) to a whole block and plans its
    /// write.
    pub fn seal(&mut self, buf: &mut PooledBuf) -> Result<DirectWrite, PlanError> {
        let tail_len = self.tail().len();
        if buf.as_slice().get(..tail_len) != Some(self.tail()) {
            return Err(PlanError::TailMismatch);
        }
        let data_len = buf.len();
        if data_len == tail_len {
            return Err(PlanError::Empty);
        }
        let position = align_down(self.end);
        let end = position + data_len as u64;
        let len = buf.pad_to_block();
        let new_tail_start = usize::try_from(align_down(end) - position).unwrap_or(data_len);
        let new_tail = buf
            .as_slice()
            .get(new_tail_start..data_len)
            .unwrap_or_default();
        self.tail[..new_tail.len()].copy_from_slice(new_tail);
        let seq = self.next_seq;
        let planned = DirectWrite {
            position,
            len,
            end,
            seq,
            after: self.open_block,
        };
        self.end = end;
        self.next_seq += 1;
        self.open_block = (!new_tail.is_empty()).then_some(seq);
        Ok(planned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(len: usize, sync: bool) -> Op {
        let mut buf = AlignedBuf::new(BLOCK).unwrap();
        buf.extend_from_slice(&vec![1; len]).unwrap();
        Op {
            buf,
            token: 7,
            file: FileSlot {
                index: 0,
                generation: 0,
            },
            position: 0,
            sync,
            direct: false,
            written: 0,
            attempts: 1,
            write_res: None,
            sync_res: None,
        }
    }

    #[test]
    fn full_write_with_sync_completes_after_both() {
        let mut op = op(100, true);
        assert!(matches!(op.on_cqe(false, 100), Step::Pending));
        let Step::Done(c) = op.on_cqe(true, 0) else {
            panic!("expected done")
        };
        assert!(c.is_success());
        assert_eq!(c.result.unwrap(), 100);
        assert!(matches!(c.sync, SyncOutcome::Synced));
    }

    #[test]
    fn sync_cqe_before_write_cqe_is_handled() {
        let mut op = op(100, true);
        assert!(matches!(op.on_cqe(true, 0), Step::Pending));
        assert!(matches!(op.on_cqe(false, 100), Step::Done(_)));
    }

    #[test]
    fn failed_write_cancels_sync() {
        let mut op = op(100, true);
        op.on_cqe(false, -libc::EBADF);
        let Step::Done(c) = op.on_cqe(true, -libc::ECANCELED) else {
            panic!("expected done")
        };
        assert_eq!(c.result.unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert!(matches!(c.sync, SyncOutcome::Cancelled));
        assert_eq!(c.written, 0);
    }

    #[test]
    fn short_write_resubmits_then_completes() {
        let mut op = op(100, true);
        op.on_cqe(false, 60);
        assert!(matches!(op.on_cqe(true, -libc::ECANCELED), Step::Resubmit));
        assert_eq!(op.written, 60);
        op.attempts += 1;
        op.on_cqe(false, 40);
        let Step::Done(c) = op.on_cqe(true, 0) else {
            panic!("expected done")
        };
        assert_eq!(c.result.unwrap(), 100);
        assert_eq!(c.written, 100);
        assert!(matches!(c.sync, SyncOutcome::Synced));
    }

    /// Found by the storage simulator: the remainder of a short O_DIRECT write was resubmitted
    /// at an unaligned position, which the kernel refuses with EINVAL.
    #[test]
    fn a_short_direct_write_resumes_on_a_block_boundary() {
        let mut op = op(BLOCK, false);
        op.direct = true;
        assert!(matches!(op.on_cqe(false, 100), Step::Resubmit));
        assert_eq!(op.written, 0, "resumes at the block's start, not byte 100");
        op.attempts += 1;
        let Step::Done(c) = op.on_cqe(false, BLOCK as i32) else {
            panic!("expected done")
        };
        assert_eq!(c.result.unwrap(), BLOCK);
    }

    #[test]
    fn short_writes_give_up_after_max_attempts() {
        let mut op = op(100, false);
        for _ in 1..MAX_WRITE_ATTEMPTS {
            assert!(matches!(op.on_cqe(false, 1), Step::Resubmit));
            op.attempts += 1;
        }
        let Step::Done(c) = op.on_cqe(false, 1) else {
            panic!("expected done")
        };
        assert_eq!(c.written, usize::from(MAX_WRITE_ATTEMPTS));
        assert_eq!(c.result.unwrap_err().kind(), io::ErrorKind::WriteZero);
        assert!(matches!(c.sync, SyncOutcome::NotRequested));
    }

    #[test]
    fn zero_progress_is_an_error() {
        let mut op = op(100, false);
        let Step::Done(c) = op.on_cqe(false, 0) else {
            panic!("expected done")
        };
        assert_eq!(c.result.unwrap_err().kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn sync_failure_is_reported() {
        let mut op = op(100, true);
        op.on_cqe(false, 100);
        let Step::Done(c) = op.on_cqe(true, -libc::EIO) else {
            panic!("expected done")
        };
        assert!(c.result.is_ok());
        assert!(
            matches!(c.sync, SyncOutcome::Failed(ref e) if e.raw_os_error() == Some(libc::EIO))
        );
        assert!(!c.is_success());
    }

    #[test]
    fn appender_rejects_wrong_tail_length() {
        assert_eq!(
            DirectAppender::new(10, b"abc").err(),
            Some(PlanError::TailLength {
                expected: 10,
                got: 3
            })
        );
        assert!(DirectAppender::new(8192, b"").is_ok());
    }
}
