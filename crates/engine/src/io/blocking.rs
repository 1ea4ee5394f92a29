//! The blocking writer: the submit/complete interface of the io_uring writer, carried out
//! with one positional write (and, when asked, one `fdatasync`) per queued write through an
//! [`IoBackend`].
//!
//! # Why the same interface
//!
//! The shard's write pipeline (staging into pooled buffers, a bounded queue of writes per
//! partition, acknowledgements when a completion says so, fail-stop and the undo of a write that
//! ran out of space) is written once, against this interface. Where io_uring is missing or refused,
//! or the configuration asks for the portable backend, the pipeline runs unchanged on this writer:
//! [`BlockingWriter::submit`] performs every queued write before it returns, and the completions it
//! produced are what the next [`BlockingWriter::reap`] hands back. So both backends share every
//! state transition, and the tests of one test the other.
//!
//! # Why through an `IoBackend`
//!
//! Writes go through the backend the engine's storage supplies ([`super::PortableIo`], or the
//! storage simulator of tests, whose faults and crash model then apply to exactly the writes
//! the pipeline performs). A queued write with `sync` runs its `fdatasync` only if the write
//! succeeded; otherwise the sync is reported [`SyncOutcome::Cancelled`], as the kernel reports
//! the fdatasync linked to a failed write.
//!
//! # What it does not do
//!
//! The backend's `write_all_at` finishes a short write itself or fails, so a failed write's
//! [`Completion::written`] is 0: how much of it landed is unknown, and nothing acknowledges
//! those bytes. There is no eventfd: a write is never in flight when `submit` returns, so a
//! thread never has a completion to sleep for.
//!
//! Once the pool has grown to the load, nothing here allocates per write.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use super::IoBackend;
use super::aligned::{AlignedBuf, BLOCK};
use super::pool::{
    Completion, FileSlot, PooledBuf, QueueError, QueueErrorKind, SyncOutcome, allocate,
    next_pool_id,
};

/// A registered file: a descriptor of its own (the caller may close theirs), and whether it
/// was opened with `O_DIRECT`, so that misaligned writes are refused before the system is
/// asked.
#[derive(Debug)]
struct FileEntry {
    file: Option<File>,
    generation: u32,
    direct: bool,
}

/// One write queued and not yet performed.
#[derive(Debug)]
struct Queued {
    buf: AlignedBuf,
    index: u16,
    token: u64,
    file: FileSlot,
    position: u64,
    sync: bool,
}

/// Positional writes and `fdatasync` on the calling thread, behind the writers' common
/// interface (see the module documentation).
pub struct BlockingWriter {
    backend: Box<dyn IoBackend>,
    id: u64,
    buffer_size: usize,
    /// The most buffers the pool grows to.
    pool_limit: u16,
    /// Buffers allocated so far: indices `0..allocated`.
    allocated: u16,
    /// Idle buffers by index; `None` while lent out or queued.
    idle: Vec<Option<AlignedBuf>>,
    /// Indices of idle buffers.
    free: Vec<u16>,
    /// The most files registered at once.
    file_limit: u32,
    files: Vec<FileEntry>,
    free_files: Vec<u32>,
    queued: Vec<Queued>,
    /// Completions of performed writes, not yet reaped.
    done: Vec<Completion>,
}

impl fmt::Debug for BlockingWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingWriter")
            .field("id", &self.id)
            .field("backend", &self.backend.name())
            .field("buffer_size", &self.buffer_size)
            .field("free_buffers", &self.free_buffers())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl BlockingWriter {
    /// A writer whose pool grows to `buffers` buffers of `buffer_size` bytes (a non-zero
    /// multiple of 4096) and whose table holds `files` files, writing through `backend`.
    pub fn new(
        backend: Box<dyn IoBackend>,
        buffers: u16,
        buffer_size: usize,
        files: u32,
    ) -> io::Result<Self> {
        if buffers == 0 || files == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "need at least one buffer and one file slot",
            ));
        }
        // One buffer now, so that an unusable size shows at setup; the rest on demand.
        let first = allocate(buffer_size)?;
        let mut idle: Vec<Option<AlignedBuf>> = (0..buffers).map(|_| None).collect();
        idle[0] = Some(first);
        let slots = usize::from(buffers);
        Ok(Self {
            backend,
            id: next_pool_id(),
            buffer_size,
            pool_limit: buffers,
            allocated: 1,
            idle,
            free: {
                let mut free = Vec::with_capacity(slots);
                free.push(0);
                free
            },
            file_limit: files,
            files: Vec::new(),
            free_files: Vec::new(),
            queued: Vec::with_capacity(slots),
            done: Vec::with_capacity(slots),
        })
    }

    /// Bytes per staging buffer.
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// Buffers ready to be taken, counting those the pool may still allocate.
    #[must_use]
    pub fn free_buffers(&self) -> usize {
        self.free.len() + usize::from(self.pool_limit.saturating_sub(self.allocated))
    }

    /// Writes queued or performed and not yet reaped.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.queued.len() + self.done.len()
    }

    /// Whether writes wait to be performed or completions to be reaped.
    #[must_use]
    pub fn has_unfinished_business(&self) -> bool {
        !self.queued.is_empty() || !self.done.is_empty()
    }

    /// Keeps a descriptor of `file` in a free slot of the table. Whether it was opened with
    /// `O_DIRECT` is noted so that misaligned writes are refused early.
    pub fn register_file(&mut self, file: &impl AsFd) -> io::Result<FileSlot> {
        let file = File::from(file.as_fd().try_clone_to_owned()?);
        let direct = is_direct(&file)?;
        let index = match self.free_files.pop() {
            Some(index) => index,
            None => {
                let next = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
                if next >= self.file_limit {
                    return Err(io::Error::other("blocking writer file table is full"));
                }
                self.files.push(FileEntry {
                    file: None,
                    generation: 0,
                    direct: false,
                });
                next
            }
        };
        let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.files.get_mut(i))
        else {
            return Err(io::Error::other("blocking writer file slot out of range"));
        };
        entry.file = Some(file);
        entry.direct = direct;
        Ok(FileSlot {
            index,
            generation: entry.generation,
        })
    }

    /// Empties `slot` and closes its descriptor. Writes already queued to it are refused when
    /// performed; later ones are refused at once.
    pub fn unregister_file(&mut self, slot: FileSlot) -> io::Result<()> {
        let entry = self
            .entry_mut(slot)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file slot not registered"))?;
        entry.file = None;
        entry.generation = entry.generation.wrapping_add(1);
        self.free_files.push(slot.index);
        Ok(())
    }

    fn entry_mut(&mut self, slot: FileSlot) -> Option<&mut FileEntry> {
        let entry = self.files.get_mut(usize::try_from(slot.index).ok()?)?;
        (entry.file.is_some() && entry.generation == slot.generation).then_some(entry)
    }

    /// Lends out an empty staging buffer, or `None` when all are in use: submit and reap
    /// first. The pool grows only when every buffer it has is lent out.
    pub fn take_buffer(&mut self) -> Option<PooledBuf> {
        if self.free.is_empty() {
            self.grow();
        }
        let index = self.free.pop()?;
        let buf = self.idle.get_mut(usize::from(index))?.take()?;
        Some(PooledBuf {
            pool: self.id,
            index,
            buf,
        })
    }

    /// Adds one buffer to the pool; false at the limit or when memory is refused (the pool
    /// then stops growing and the buffers it has keep serving).
    fn grow(&mut self) -> bool {
        let index = self.allocated;
        if index >= self.pool_limit {
            return false;
        }
        let Some(slot) = self.idle.get_mut(usize::from(index)) else {
            return false;
        };
        match allocate(self.buffer_size) {
            Ok(buf) => {
                *slot = Some(buf);
                self.free.push(index);
                self.allocated += 1;
                true
            }
            Err(error) => {
                log::warn!("rill: staging pool stays at {index} buffers: {error}");
                self.pool_limit = index;
                false
            }
        }
    }

    /// Returns an unused buffer to the pool; a buffer from another writer is handed back.
    pub fn give_back(&mut self, mut buf: PooledBuf) -> Result<(), PooledBuf> {
        if buf.pool != self.id {
            return Err(buf);
        }
        let Some(idle) = self.idle.get_mut(usize::from(buf.index)) else {
            return Err(buf);
        };
        buf.buf.clear();
        *idle = Some(buf.buf);
        self.free.push(buf.index);
        Ok(())
    }

    /// Queues a write of `buf`'s bytes at `position` in `file`, followed by an `fdatasync`
    /// when `sync` is set. Nothing is written until [`Self::submit`] or [`Self::wait`].
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
        let Some(direct) = self.entry_mut(file).map(|entry| entry.direct) else {
            return refuse(QueueErrorKind::StaleFile, buf);
        };
        if buf.is_empty() {
            return refuse(QueueErrorKind::Empty, buf);
        }
        if direct && (!position.is_multiple_of(BLOCK as u64) || !buf.len().is_multiple_of(BLOCK))
        {
            return refuse(QueueErrorKind::Misaligned, buf);
        }
        if self.queued.len() >= usize::from(self.pool_limit) {
            // Every buffer of the pool is queued at most once; more means a foreign index.
            return refuse(QueueErrorKind::QueueFull, buf);
        }
        self.queued.push(Queued {
            buf: buf.buf,
            index: buf.index,
            token,
            file,
            position,
            sync,
        });
        Ok(())
    }

    /// Performs every queued write (and its sync) in queue order; returns how many. Their
    /// completions wait for [`Self::reap`], their buffers are back in the pool.
    pub fn submit(&mut self) -> io::Result<usize> {
        let count = self.queued.len();
        for mut queued in self.queued.drain(..) {
            let file = usize::try_from(queued.file.index)
                .ok()
                .and_then(|i| self.files.get(i))
                .filter(|entry| entry.generation == queued.file.generation)
                .and_then(|entry| entry.file.as_ref());
            self.done
                .push(perform(self.backend.as_mut(), file, &queued));
            queued.buf.clear();
            if let Some(idle) = self.idle.get_mut(usize::from(queued.index)) {
                *idle = Some(queued.buf);
                self.free.push(queued.index);
            }
        }
        Ok(count)
    }

    /// Collects finished writes into `out`; returns how many were added.
    pub fn reap(&mut self, out: &mut Vec<Completion>) -> usize {
        let count = self.done.len();
        out.append(&mut self.done);
        count
    }

    /// Performs what is queued and collects every completion into `out`. Never sleeps:
    /// nothing is in flight once `submit` returns, so `min_complete` is always met when
    /// anything was queued.
    pub fn wait(&mut self, _min_complete: usize, out: &mut Vec<Completion>) -> io::Result<usize> {
        self.submit()?;
        Ok(self.reap(out))
    }
}

/// Performs one queued write and, if it succeeded and a sync was asked for, the sync.
fn perform(backend: &mut dyn IoBackend, file: Option<&File>, queued: &Queued) -> Completion {
    let bytes = queued.buf.as_slice();
    let len = bytes.len();
    let result = match file {
        Some(file) => backend.write_all_at(file, queued.position, bytes),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "file slot unregistered before its write was performed",
        )),
    };
    let sync = match (&result, file, queued.sync) {
        (_, _, false) => SyncOutcome::NotRequested,
        (Ok(()), Some(file), true) => match backend.sync_data(file) {
            Ok(()) => SyncOutcome::Synced,
            Err(error) => SyncOutcome::Failed(error),
        },
        (_, _, true) => SyncOutcome::Cancelled,
    };
    let written = if result.is_ok() { len } else { 0 };
    Completion {
        token: queued.token,
        file: queued.file,
        position: queued.position,
        len,
        written,
        result: result.map(|()| len),
        sync,
    }
}

/// Whether `file` was opened with `O_DIRECT`.
fn is_direct(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor belongs to `file`, alive for the call, and F_GETFL only reads
    // its status flags.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_DIRECT != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::io::PortableIo;

    /// What the fake backend answers and what it was asked.
    #[derive(Debug, Default)]
    struct Script {
        fail_write: Option<i32>,
        fail_sync: Option<i32>,
        writes: usize,
        syncs: usize,
    }

    /// Writes for real unless the script says to fail; never syncs for real.
    #[derive(Debug)]
    struct Scripted(Arc<Mutex<Script>>);

    impl IoBackend for Scripted {
        fn write_all_at(&mut self, file: &File, position: u64, bytes: &[u8]) -> io::Result<()> {
            let mut script = self.0.lock().unwrap();
            script.writes += 1;
            match script.fail_write {
                Some(code) => Err(io::Error::from_raw_os_error(code)),
                None => PortableIo.write_all_at(file, position, bytes),
            }
        }

        fn sync_data(&mut self, _file: &File) -> io::Result<()> {
            let mut script = self.0.lock().unwrap();
            script.syncs += 1;
            script.fail_sync.map_or(Ok(()), |code| {
                Err(io::Error::from_raw_os_error(code))
            })
        }

        fn name(&self) -> &'static str {
            "scripted"
        }
    }

    fn writer(buffers: u16) -> (BlockingWriter, Arc<Mutex<Script>>, tempfile::TempDir, File) {
        let script = Arc::new(Mutex::new(Script::default()));
        let writer =
            BlockingWriter::new(Box::new(Scripted(script.clone())), buffers, BLOCK, 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("segment"))
            .unwrap();
        (writer, script, dir, file)
    }

    /// Queues `bytes` at `position` with `sync`, submits, and returns the one completion.
    fn write_once(
        writer: &mut BlockingWriter,
        slot: FileSlot,
        bytes: &[u8],
        sync: bool,
    ) -> Completion {
        let mut buf = writer.take_buffer().unwrap();
        buf.extend_from_slice(bytes).unwrap();
        writer.queue_write(slot, 0, buf, sync, 9).unwrap();
        assert_eq!(writer.in_flight(), 1, "queued, not yet performed");
        assert_eq!(writer.submit().unwrap(), 1);
        assert!(writer.has_unfinished_business(), "a completion waits to be reaped");
        let mut out = Vec::new();
        assert_eq!(writer.reap(&mut out), 1);
        assert_eq!(writer.in_flight(), 0);
        out.pop().unwrap()
    }

    #[test]
    fn a_write_with_sync_lands_and_reports_synced() {
        let (mut writer, script, _dir, file) = writer(2);
        let slot = writer.register_file(&file).unwrap();
        let done = write_once(&mut writer, slot, b"hello", true);
        assert!(done.is_success());
        assert_eq!(done.token, 9);
        assert_eq!(done.written, 5);
        assert!(matches!(done.sync, SyncOutcome::Synced));
        let mut read = [0; 5];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut read, 0).unwrap();
        assert_eq!(&read, b"hello");
        assert_eq!(script.lock().unwrap().syncs, 1);
        assert_eq!(writer.free_buffers(), 2, "the buffer went back to the pool");
    }

    /// As the kernel cancels the fdatasync linked to a failed write, the blocking writer does
    /// not run it: a sync after a failed write would call bytes durable that never landed.
    #[test]
    fn a_failed_write_cancels_its_sync() {
        let (mut writer, script, _dir, file) = writer(1);
        script.lock().unwrap().fail_write = Some(libc::ENOSPC);
        let slot = writer.register_file(&file).unwrap();
        let done = write_once(&mut writer, slot, b"lost", true);
        assert_eq!(
            done.result.as_ref().unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        assert!(matches!(done.sync, SyncOutcome::Cancelled));
        assert_eq!(done.written, 0);
        assert_eq!(script.lock().unwrap().syncs, 0, "the sync did not run");
    }

    #[test]
    fn a_failed_sync_is_reported_with_its_error() {
        let (mut writer, script, _dir, file) = writer(1);
        script.lock().unwrap().fail_sync = Some(libc::EIO);
        let slot = writer.register_file(&file).unwrap();
        let done = write_once(&mut writer, slot, b"data", true);
        assert!(done.result.is_ok());
        assert!(
            matches!(done.sync, SyncOutcome::Failed(ref e) if e.raw_os_error() == Some(libc::EIO))
        );
        assert!(!done.is_success());
        let unsynced = write_once(&mut writer, slot, b"more", false);
        assert!(matches!(unsynced.sync, SyncOutcome::NotRequested));
        assert_eq!(script.lock().unwrap().syncs, 1, "no sync was asked the second time");
    }

    /// The pool is the back-pressure: bounded, and refilled only by performed writes.
    #[test]
    fn the_pool_is_bounded_and_refilled_by_submit() {
        let (mut writer, _script, _dir, file) = writer(2);
        let slot = writer.register_file(&file).unwrap();
        let mut first = writer.take_buffer().unwrap();
        let second = writer.take_buffer().unwrap();
        assert!(writer.take_buffer().is_none(), "two buffers at most");
        writer.give_back(second).unwrap();
        first.extend_from_slice(b"x").unwrap();
        writer.queue_write(slot, 0, first, false, 1).unwrap();
        assert_eq!(writer.free_buffers(), 1, "a queued buffer is not free");
        writer.wait(1, &mut Vec::new()).unwrap();
        assert_eq!(writer.free_buffers(), 2);
    }

    #[test]
    fn stale_slots_and_foreign_buffers_are_refused_with_the_buffer() {
        let (mut writer, _script, _dir, file) = writer(1);
        let (mut other, _other_script, _other_dir, _other_file) = self::writer(1);
        let slot = writer.register_file(&file).unwrap();
        writer.unregister_file(slot).unwrap();
        let mut buf = writer.take_buffer().unwrap();
        buf.extend_from_slice(b"x").unwrap();
        let refused = writer.queue_write(slot, 0, buf, false, 1).unwrap_err();
        assert_eq!(refused.kind, QueueErrorKind::StaleFile);
        let buf = refused.into_buf();
        let reused = writer.register_file(&file).unwrap();
        assert_ne!(reused, slot, "a new generation: the old handle stays stale");
        let refused = other.queue_write(reused, 0, buf, false, 1).unwrap_err();
        assert_eq!(refused.kind, QueueErrorKind::ForeignBuffer);
        writer.give_back(refused.into_buf()).unwrap();
    }
}
