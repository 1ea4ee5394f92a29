//! Rolling a segment without making the writer wait for the disk.
//!
//! A roll has a quick part and a slow part. The quick part runs on the writer's thread at
//! once: the next segment is created and published, and appends go on into it. The slow part
//! — the old segment's final sync, its truncation and sync, its two index files, the
//! checkpoint that moves the recovery point past it (with its directory sync), the producer
//! snapshot — is about six fsyncs. It is a queued operation: a [`RollJob`] handed to the
//! shard's [`Sealer`] thread, which runs the jobs in order and hands back a [`RollOutcome`]
//! for each; the writer applies outcomes when it next looks. A log without a sealer (one
//! opened outside an engine) runs the same job synchronously, behind the same interface.
//!
//! An interval sync (`FsyncPolicy::Interval`) that comes due while no write is about to carry
//! it is the same kind of queued operation ([`SyncJob`]): the durable watermark moves to what
//! was written when it was queued, once the shard applies its outcome.
//!
//! What may not change while a roll is pending is what durability means. Until its job has
//! completed, the old segment's bytes are not known to be on disk and the new segment's
//! directory entry is not either, so the durable watermark is held below the new segment's
//! base however many syncs of the new segment succeed meanwhile (see
//! [`PartitionLog::publish_durable`](super::PartitionLog)). A roll job that fails poisons the
//! partition as a failed sync does. Once a partition has failed, its later roll jobs are not
//! run: a checkpoint written by one would move the recovery point past the segment whose
//! sync failed.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::checkpoint::PendingCheckpoint;
use super::poison::StorageOp;
use super::segment::{Reserved, Segment};
use crate::error::Error;
use crate::io::{IoBackend, PortableIo, Storage};

/// The longest a writer waits for its pending rolls (closing, or stopping after a failure):
/// a roll is a handful of file-system calls, so this is reached only on a hung disk.
const ROLL_WAIT: Duration = Duration::from_secs(60);

/// The slow part of one roll: everything that makes the old segment final on disk. The
/// files it writes had their space reserved by the quick part, so a full disk stops the roll
/// on the writer's thread, before any byte of the new segment is written, where it is undone
/// and fails the append with `StorageFull` like a write that found no room. (A file system
/// that cannot reserve leaves its full disk to this part, where it stops the partition.)
pub(crate) struct RollJob {
    pub dir: PathBuf,
    pub old: Arc<Segment>,
    /// The old segment's index files, reserved.
    pub indexes: [Reserved; 2],
    /// The checkpoint to write once the old segment is sealed: its recovery point is the new
    /// segment's base.
    pub checkpoint: PendingCheckpoint,
    /// The producer state as of the new base, and its reserved file (none if reserving it
    /// failed: a missing snapshot only makes the next open scan more).
    pub snapshot: Option<(Reserved, Vec<u8>)>,
    pub rolls: Arc<Rolls>,
}

/// An interval sync of the active segment, queued like a roll so that it does not block the
/// shard either.
pub(crate) struct SyncJob {
    pub segment: Arc<Segment>,
    /// The written watermark when the job was queued: what the sync covers.
    pub covers: i64,
    pub rolls: Arc<Rolls>,
}

/// A job of the sealer thread.
pub(crate) enum Job {
    Roll(Box<RollJob>),
    Sync(SyncJob),
}

/// What a finished job was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobKind {
    Roll,
    Sync,
}

/// How a job ended.
#[derive(Debug)]
pub(crate) struct RollOutcome {
    pub kind: JobKind,
    /// For a roll, the base offset of the segment it started: everything below it is durable
    /// once the roll succeeded. For a sync, the offset it covered.
    pub new_base: i64,
    pub failure: Option<RollFailure>,
}

/// The step of a roll job that failed.
#[derive(Debug)]
pub(crate) struct RollFailure {
    pub op: StorageOp,
    pub path: PathBuf,
    pub source: io::Error,
}

impl RollFailure {
    fn of(op: StorageOp, path: PathBuf, error: Error) -> Self {
        let source = match error {
            Error::Io { source, .. } => source,
            Error::StorageFull { .. } => io::Error::from_raw_os_error(libc::ENOSPC),
            other => io::Error::other(other.to_string()),
        };
        Self { op, path, source }
    }
}

impl RollJob {
    /// Runs the job with `backend` for the data sync (the same path every other sync of the
    /// partition takes, so a storage simulator sees it).
    fn run(self, backend: &mut dyn IoBackend) -> RollOutcome {
        let rolls = self.rolls.clone();
        let new_base = self.checkpoint.checkpoint().recovery_point;
        let failure = if rolls.failed.load(Ordering::Acquire) {
            Some(abandoned(&self.old))
        } else {
            let Self {
                dir,
                old,
                indexes,
                checkpoint,
                snapshot,
                ..
            } = self;
            seal(backend, &old, indexes)
                .and_then(|()| {
                    checkpoint
                        .finish()
                        .map_err(|error| RollFailure::of(StorageOp::Checkpoint, dir.clone(), error))
                })
                .map(|()| store_snapshot(&dir, snapshot))
                .err()
        };
        if failure.is_some() {
            rolls.failed.store(true, Ordering::Release);
        }
        RollOutcome {
            kind: JobKind::Roll,
            new_base,
            failure,
        }
    }
}

impl SyncJob {
    fn run(self, backend: &mut dyn IoBackend) -> RollOutcome {
        let failure = if self.rolls.failed.load(Ordering::Acquire) {
            Some(abandoned(&self.segment))
        } else {
            backend
                .sync_data(self.segment.file())
                .err()
                .map(|source| RollFailure {
                    op: StorageOp::Sync,
                    path: self.segment.path().to_owned(),
                    source,
                })
        };
        if failure.is_some() {
            self.rolls.failed.store(true, Ordering::Release);
        }
        RollOutcome {
            kind: JobKind::Sync,
            new_base: self.covers,
            failure,
        }
    }
}

impl Job {
    fn rolls(&self) -> Arc<Rolls> {
        match self {
            Self::Roll(job) => job.rolls.clone(),
            Self::Sync(job) => job.rolls.clone(),
        }
    }

    fn run(self, backend: &mut dyn IoBackend) -> RollOutcome {
        match self {
            Self::Roll(job) => job.run(backend),
            Self::Sync(job) => job.run(backend),
        }
    }
}

/// The outcome of a job not run because the partition had failed.
fn abandoned(segment: &Segment) -> RollFailure {
    RollFailure {
        op: StorageOp::Abandoned,
        path: segment.path().to_owned(),
        source: io::Error::other("an earlier write, sync or roll of the partition failed"),
    }
}

/// Syncs the old segment's data through `backend` (the path every other sync of the
/// partition takes, so a storage simulator sees it), then its length and index files.
fn seal(backend: &mut dyn IoBackend, old: &Segment, indexes: [Reserved; 2]) -> Result<(), RollFailure> {
    let path = old.path().to_owned();
    backend.sync_data(old.file()).map_err(|source| RollFailure {
        op: StorageOp::Sync,
        path: path.clone(),
        source,
    })?;
    old.finish_seal(indexes)
        .map_err(|error| RollFailure::of(StorageOp::Roll, path, error))
}

/// Writes the producer snapshot, if one was reserved. A failure costs only a longer scan on
/// the next open, not the partition.
fn store_snapshot(dir: &Path, snapshot: Option<(Reserved, Vec<u8>)>) {
    let Some((file, bytes)) = snapshot else {
        return;
    };
    let stored = file
        .finish(&bytes)
        .and_then(|()| super::producers::prune_snapshots(dir));
    if let Err(error) = stored {
        log::warn!(
            "{}: producer snapshot not written ({error}); the next open scans more",
            dir.display()
        );
    }
}

/// One partition's rolls in progress: filled by the sealer, emptied by the writer.
#[derive(Debug)]
pub(crate) struct Rolls {
    done: Mutex<Progress>,
    ready: AtomicBool,
    changed: Condvar,
    /// Set once the partition failed: jobs not yet run are abandoned.
    failed: AtomicBool,
    /// The recovery point of the last checkpoint a job wrote.
    checkpointed: AtomicI64,
}

#[derive(Debug, Default)]
struct Progress {
    outcomes: VecDeque<RollOutcome>,
    queued: u64,
    finished: u64,
}

impl Default for Rolls {
    fn default() -> Self {
        Self {
            done: Mutex::default(),
            ready: AtomicBool::new(false),
            changed: Condvar::new(),
            failed: AtomicBool::new(false),
            checkpointed: AtomicI64::new(i64::MIN),
        }
    }
}

impl Rolls {
    fn queued(&self) {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queued += 1;
    }

    fn finish(&self, outcome: RollOutcome) {
        if outcome.failure.is_none() && outcome.kind == JobKind::Roll {
            self.checkpointed
                .fetch_max(outcome.new_base, Ordering::AcqRel);
        }
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        done.outcomes.push_back(outcome);
        done.finished += 1;
        self.ready.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    /// The recovery point the last successful job checkpointed (`i64::MIN` if none did).
    pub fn checkpointed(&self) -> i64 {
        self.checkpointed.load(Ordering::Acquire)
    }

    /// Whether outcomes wait to be applied: one atomic load, for the shard's idle checks.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Takes the outcomes that arrived, oldest first.
    pub fn take(&self, into: &mut Vec<RollOutcome>) {
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        self.ready.store(false, Ordering::Release);
        into.extend(done.outcomes.drain(..));
    }

    /// Stops the jobs not yet started (the partition failed).
    pub fn abandon(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Waits until every job queued has finished, for at most [`ROLL_WAIT`]; false if some
    /// did not.
    pub fn wait_idle(&self) -> bool {
        let deadline = Instant::now() + ROLL_WAIT;
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        while done.finished < done.queued {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .changed
                .wait_timeout(done, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// Where a partition's roll jobs run: on a shard's sealer thread, or right away on the
/// writer's own thread.
#[derive(Debug, Default)]
pub(crate) enum RollRunner {
    /// No sealer: the job runs synchronously, with the log's own backend.
    #[default]
    Inline,
    Sealer(Sealer),
}

/// The handle of a sealer thread: sends it roll jobs. Cheap to clone, one per partition.
#[derive(Clone, Debug)]
pub(crate) struct Sealer {
    jobs: mpsc::Sender<SealerMessage>,
}

enum SealerMessage {
    Job(Job),
    Stop,
}

impl std::fmt::Debug for SealerMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Job(_) => "Job",
            Self::Stop => "Stop",
        })
    }
}

impl Sealer {
    /// Starts a sealer thread named `name`. Its data syncs go through `storage`'s backend when
    /// given (the storage simulator), else the portable one; after each job it calls `wake`,
    /// so the writer applies the outcome without polling for it.
    pub fn spawn(
        name: String,
        storage: Option<Arc<dyn Storage>>,
        wake: Box<dyn Fn() + Send>,
    ) -> io::Result<(Self, JoinHandle<()>)> {
        let (jobs, inbox) = mpsc::channel();
        let mut backend: Box<dyn IoBackend> = match storage {
            Some(storage) => storage.backend(),
            None => Box::new(PortableIo),
        };
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // `recv` ends when every handle is gone, or on `Stop`: the thread never outlives
            // its shard.
            while let Ok(SealerMessage::Job(job)) = inbox.recv() {
                let rolls = job.rolls();
                rolls.finish(job.run(backend.as_mut()));
                wake();
            }
        })?;
        Ok((Self { jobs }, thread))
    }

    /// Asks the thread to stop after the jobs already sent.
    pub fn stop(&self) {
        let _ = self.jobs.send(SealerMessage::Stop);
    }
}

impl RollRunner {
    /// Queues `job`, or runs it now with `backend` when there is no sealer (or it stopped).
    pub fn run(&self, job: Job, backend: &mut dyn IoBackend) {
        job.rolls().queued();
        let job = match self {
            Self::Sealer(sealer) => match sealer.jobs.send(SealerMessage::Job(job)) {
                Ok(()) => return,
                Err(mpsc::SendError(SealerMessage::Job(job))) => job,
                Err(mpsc::SendError(SealerMessage::Stop)) => return,
            },
            Self::Inline => job,
        };
        let rolls = job.rolls();
        rolls.finish(job.run(backend));
    }

    /// Whether jobs run on a sealer thread (else synchronously, on the caller's).
    pub fn is_queued(&self) -> bool {
        matches!(self, Self::Sealer(_))
    }
}
