//! A shard: one thread, pinned to a core, that alone writes the partitions it owns.
//!
//! Each pass drains the rings of every owned partition (a bounded number of batches per ring,
//! so one busy producer cannot starve the others) and stages the batches into the partition's
//! buffer (offsets are assigned there); then every open buffer is queued as one write, with a
//! linked fdatasync when the fsync policy or a producer waiting for durability asks for one
//! (group commit), and one `submit` sends them all. Acks and watermarks are published when a
//! write's completion is applied, and waiters are woken only if any are waiting.
//!
//! There is one pipeline whichever backend runs (see `engine::direct`): the shard's writer is
//! the io_uring one, whose completions arrive later, or the blocking one (the portable
//! backend), which performs the writes inside `submit`, so their completions are applied in the
//! same pass. Fail-stop, the undo of a write refused for lack of space, rolls and interval
//! syncs are thus the same code on both.
//!
//! An idle shard polls for a short spin window, adapted to the load, then parks until a
//! producer wakes it or a timed duty (an interval fsync, a retention check) comes due. With
//! io_uring writes in flight it sleeps on an eventfd that the kernel rings on each completion
//! and producers ring when they hand it work; the blocking writer has nothing in flight once a
//! pass is over, so the shard parks as when idle.
//!
//! A segment roll never makes the shard wait for the disk: the old segment's fsyncs run on the
//! shard's sealer thread (see `log::roll`), which wakes the shard when it is done; so do
//! interval fsyncs that no write carries. Nor does one partition's write: a partition keeps
//! several writes queued (see `engine::direct`; on io_uring they are in flight together, the
//! blocking writer finishes them inside the pass), and one that must roll while writes of its
//! old segment are in flight, whose queue of writes is full, or that finds the pool empty parks
//! the batches that arrive, in order; the shard serves its other partitions until a completion
//! lets them go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::direct::{DirectIo, MAX_WRITES, PartitionIo, partition_of};
use super::notify::{MAX_NAP, ShardWaker, next_spin};
use super::{BatchAck, EngineConfig, IoMode, PartitionEntry};
use crate::error::{Error, Result};
use crate::io::Storage;
use crate::io::pool::Completion;
use crate::log::{Origin, PartitionLog, Sealer};
use crate::recycle::BatchBuf;
use crate::ring;
use crate::topic::TopicPartition;

/// Idle rounds between two looks at the clock during the spin window.
const SPIN_BATCH: u64 = 64;

/// Batches taken from one ring per pass: bounds the time a pass spends on one producer.
const MAX_BATCHES_PER_RING: usize = 64;

/// A batch on its way from a producer to the shard, with the ack that reports its fate.
#[derive(Debug)]
pub(crate) struct Request {
    /// The encoded batch; its memory goes back to the producer when the engine drops it.
    pub batch: BatchBuf,
    pub ack: Arc<BatchAck>,
    /// The producer waits for durability: sync after this pass whatever the fsync policy.
    pub sync: bool,
    /// Who encoded the batch: [`Origin::Builder`] only when it comes straight from this
    /// process's `BatchBuilder` (its CRC is not recomputed); anything else is checked fully.
    pub origin: Origin,
}

enum Command {
    AddPartition {
        log: Box<PartitionLog>,
        entry: Arc<PartitionEntry>,
    },
    AddInput {
        partition: TopicPartition,
        input: ring::Consumer<Request>,
    },
    /// Close and forget the partition (its topic is deleted); the outcome goes to `done`.
    RemovePartition {
        partition: TopicPartition,
        done: std::sync::mpsc::Sender<Result<()>>,
    },
    Shutdown,
}

/// The part of a shard other threads talk to: its command queue (control path) and its waker.
#[derive(Debug)]
pub(crate) struct ShardControl {
    id: usize,
    waker: ShardWaker,
    commands: Mutex<Vec<CommandBox>>,
    commands_pending: AtomicBool,
    alive: AtomicBool,
    /// While set the shard leaves its rings alone (tests use it to fill rings on purpose).
    held: AtomicBool,
    close_error: Mutex<Option<Error>>,
}

/// `Command` holds a `PartitionLog`, which is not `Debug`-friendly; this keeps `ShardControl`
/// printable.
struct CommandBox(Command);

impl std::fmt::Debug for CommandBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Command::AddPartition { .. } => "AddPartition",
            Command::AddInput { .. } => "AddInput",
            Command::RemovePartition { .. } => "RemovePartition",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl ShardControl {
    pub fn new(id: usize) -> Self {
        Self {
            id,
            waker: ShardWaker::default(),
            commands: Mutex::new(Vec::new()),
            commands_pending: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            held: AtomicBool::new(false),
            close_error: Mutex::new(None),
        }
    }

    /// False once the shard has closed its partitions and exited.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Wakes the shard if it parked: producers call this after pushing a batch.
    pub fn wake(&self) {
        self.waker.wake();
    }

    pub fn add_partition(&self, log: PartitionLog, entry: Arc<PartitionEntry>) {
        self.command(Command::AddPartition {
            log: Box::new(log),
            entry,
        });
    }

    pub fn add_input(&self, partition: TopicPartition, input: ring::Consumer<Request>) {
        self.command(Command::AddInput { partition, input });
    }

    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::Release);
        self.waker.wake();
    }

    /// Asks the shard to close and forget `partition`; the receiver gets the outcome.
    pub fn remove_partition(
        &self,
        partition: TopicPartition,
    ) -> std::sync::mpsc::Receiver<Result<()>> {
        let (done, outcome) = std::sync::mpsc::channel();
        self.command(Command::RemovePartition { partition, done });
        outcome
    }

    pub fn request_shutdown(&self) {
        self.command(Command::Shutdown);
    }

    pub fn take_close_error(&self) -> Option<Error> {
        self.close_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn command(&self, command: Command) {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(CommandBox(command));
        self.commands_pending.store(true, Ordering::Release);
        self.waker.wake();
    }
}

pub(crate) const URING: &str = "io_uring";
pub(crate) const PORTABLE: &str = "portable";

/// Names the backend the engine will use, logging once why when it is not the best one.
pub(crate) fn choose_backend(mode: IoMode, max_batch_bytes: usize) -> &'static str {
    if mode == IoMode::Sync {
        log::info!("rill: portable I/O backend (pwrite/fdatasync) forced by configuration");
        return PORTABLE;
    }
    match DirectIo::probe(max_batch_bytes, None) {
        Ok(_) => URING,
        Err(why) => {
            log::warn!("rill: {why}; using the portable I/O backend (pwrite/fdatasync)");
            PORTABLE
        }
    }
}

struct Owned {
    log: PartitionLog,
    entry: Arc<PartitionEntry>,
    inputs: Vec<ring::Consumer<Request>>,
    /// The partition's side of the shard's write pipeline; `None` only when its segment could
    /// not be opened for the shard's writer (the log is then stopped with the reason).
    io: Option<PartitionIo>,
    /// Batches taken from the rings that wait, in order, for the partition's writes of its old
    /// segment to complete before it rolls; the shard serves other partitions meanwhile.
    parked: Vec<Request>,
}

/// Whether a partition can take a batch now.
enum Room {
    Ready,
    /// Not before some of its writes (or, the pool being empty, some write of the shard)
    /// complete: it must roll first and writes of its old segment are in flight, its queue
    /// of writes is at its bound, the pool is empty, or a write ran out of space and the
    /// staging is undone once none is in flight. Its batches park, in order; a completion
    /// wakes the shard.
    AfterWrites,
}

struct Shard {
    control: Arc<ShardControl>,
    partitions: Vec<Owned>,
    /// The shard's writer and buffer pool: every partition writes through it.
    direct: DirectIo,
    /// Completions reaped and not yet applied.
    stashed: Vec<Completion>,
    /// Open segments with O_DIRECT (else writes go through the page cache).
    direct_io: bool,
    /// The storage simulator of tests, if any.
    storage: Option<Arc<dyn Storage>>,
    /// The thread that seals rolled segments, so that a roll's fsyncs never stall the shard
    /// (`None` if it could not start: rolls then run on the shard thread).
    sealer: Option<(Sealer, JoinHandle<()>)>,
    scratch: Vec<Request>,
    /// The configured spin window: the most an idle shard polls before it sleeps.
    idle_spin: Duration,
    /// The spin window in use, adapted to the load: see [`Shard::adapt_spin`].
    spin: Duration,
    retention_interval: Duration,
    next_retention: Instant,
}

pub(crate) fn spawn(
    control: Arc<ShardControl>,
    core: Option<core_affinity::CoreId>,
    config: &EngineConfig,
    backend: &'static str,
) -> Result<JoinHandle<()>> {
    let id = control.id;
    #[cfg(test)]
    if let Some(error) = start_hook::check(&control) {
        return Err(error);
    }
    let use_uring = backend == URING;
    let max_batch_bytes = config.log.limits.max_batch_bytes;
    let storage = config.storage.clone();
    let direct_io = config.direct_io != super::DirectIo::Off;
    let idle_spin = config.idle_spin;
    let retention_interval = config.retention_check_interval;
    // The blocking writer is made here, so that a shard that cannot have one fails to start
    // with the reason; the io_uring backend replaces it on the shard's thread.
    let blocking = open_blocking(max_batch_bytes, storage.as_ref())
        .map_err(|source| Error::ShardStart { shard: id, source })?;
    std::thread::Builder::new()
        .name(format!("rill-shard-{id}"))
        .spawn(move || {
            if let Some(core) = core
                && !core_affinity::set_for_current(core)
            {
                log::warn!("rill: shard {id} could not be pinned to core {}", core.id);
            }
            // A ring is made on the shard's own thread: it is this thread's alone.
            let direct = if use_uring {
                match DirectIo::probe(max_batch_bytes, storage.clone()) {
                    Ok(ring) => ring,
                    Err(why) => {
                        log::warn!("rill: shard {id}: {why}; writing with the portable backend");
                        blocking
                    }
                }
            } else {
                blocking
            };
            let mut shard = Shard {
                control,
                partitions: Vec::new(),
                direct,
                stashed: Vec::new(),
                direct_io,
                storage,
                sealer: None,
                scratch: Vec::with_capacity(MAX_BATCHES_PER_RING),
                idle_spin,
                spin: idle_spin,
                retention_interval,
                next_retention: Instant::now() + retention_interval,
            };
            shard.run();
        })
        .map_err(|source| Error::ShardStart { shard: id, source })
}

/// The blocking writer (the portable backend): it writes through the storage's backend (the
/// simulator's in tests), else the portable one.
fn open_blocking(
    max_batch_bytes: usize,
    storage: Option<&Arc<dyn Storage>>,
) -> std::io::Result<DirectIo> {
    let backend = storage.map_or_else(
        || Box::new(crate::io::PortableIo) as Box<dyn crate::io::IoBackend>,
        |storage| storage.backend(),
    );
    DirectIo::blocking(max_batch_bytes, backend)
}

impl Shard {
    fn run(&mut self) {
        self.control.waker.bind_current_thread();
        let control = self.control.clone();
        match Sealer::spawn(
            format!("rill-seal-{}", self.control.id),
            self.storage.clone(),
            Box::new(move || control.wake()),
        ) {
            Ok(sealer) => self.sealer = Some(sealer),
            Err(error) => log::warn!(
                "rill: shard {}: no sealer thread ({error}); segment rolls block the shard",
                self.control.id
            ),
        }
        if let Some(doorbell) = self.direct.doorbell() {
            self.control.waker.bind_doorbell(doorbell);
        }
        let mut idle_since: Option<Instant> = None;
        let mut idle_rounds: u64 = 0;
        loop {
            let stop = self.apply_commands();
            let handled = self.pass();
            if handled > 0 || idle_rounds.is_multiple_of(SPIN_BATCH) {
                self.timed_duties();
            }
            if stop {
                self.finish();
                return;
            }
            if handled > 0 {
                idle_since = None;
                idle_rounds = 0;
                continue;
            }
            if self.io_pending() {
                // Writes in flight: sleep in the kernel until one completes or a producer
                // hands over work, not on the park.
                self.sleep_until_completion_or_work();
                continue;
            }
            // The spin window is checked against the clock only every SPIN_BATCH rounds:
            // reading it on every round was a tenth of a busy shard's time.
            idle_rounds += 1;
            if !idle_rounds.is_multiple_of(SPIN_BATCH) {
                std::hint::spin_loop();
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.spin {
                continue;
            }
            let timeout = self
                .next_deadline()
                .map(|due| due.saturating_duration_since(Instant::now()));
            let control = self.control.clone();
            let partitions = &self.partitions;
            // Everything the sleep decision reads is read inside the closure, after the shard
            // announced it is going to sleep; a flag read before that could be stale.
            let parked_at = Instant::now();
            control.waker.park_unless(
                || {
                    control.commands_pending.load(Ordering::Acquire)
                        || rolls_ready(partitions)
                        || (!control.held.load(Ordering::Acquire) && has_input(partitions))
                },
                timeout,
            );
            self.adapt_spin(parked_at.elapsed());
            idle_since = None;
        }
    }

    /// Adapts the spin window to the gaps between batches, from how long the last park lasted:
    /// woken within the configured window, a longer spin would have caught the batch without
    /// the two system calls of a park and a wake, so the window doubles (up to the configured
    /// one); woken later, the spin was wasted, so it halves (down to none). A trickle thus
    /// parks at once and costs no CPU between batches, while a steady stream of close batches
    /// is caught spinning.
    fn adapt_spin(&mut self, parked: Duration) {
        self.spin = next_spin(self.spin, self.idle_spin, parked);
    }

    /// Applies queued commands; returns true when asked to shut down.
    fn apply_commands(&mut self) -> bool {
        if !self.control.commands_pending.swap(false, Ordering::AcqRel) {
            return false;
        }
        let commands = std::mem::take(
            &mut *self
                .control
                .commands
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut stop = false;
        for CommandBox(command) in commands {
            match command {
                Command::AddPartition { mut log, entry } => {
                    if let Some((sealer, _)) = &self.sealer {
                        log.set_sealer(sealer.clone());
                    }
                    let token = self.partitions.len() as u64;
                    let io = open_io(&mut self.direct, &mut log, token, self.direct_io);
                    self.partitions.push(Owned {
                        log: *log,
                        entry,
                        inputs: Vec::new(),
                        io,
                        parked: Vec::new(),
                    });
                }
                Command::AddInput { partition, input } => {
                    match self.partitions.iter_mut().find(|p| p.entry.tp == partition) {
                        Some(owned) => owned.inputs.push(input),
                        None => {
                            log::error!("rill: shard {} does not own {partition}", self.control.id)
                        }
                    }
                }
                Command::RemovePartition { partition, done } => {
                    // The engine waits with a bound; if it gave up, nobody reads this.
                    let _ = done.send(self.remove_partition(&partition));
                }
                Command::Shutdown => stop = true,
            }
        }
        stop
    }

    /// Closes and forgets a partition of a deleted topic: batches still in its rings fail,
    /// writes in flight complete first, and the partitions after it in the list re-register
    /// with the writer under their new index (completions are routed by index).
    fn remove_partition(&mut self, partition: &TopicPartition) -> Result<()> {
        let Some(index) = self
            .partitions
            .iter()
            .position(|owned| &owned.entry.tp == partition)
        else {
            return Ok(());
        };
        for later in index..self.partitions.len() {
            self.settle_partition(later)?;
        }
        let mut owned = self.partitions.remove(index);
        // One error for every batch the deletion fails, shared.
        let gone = Arc::new(owned.entry.gone());
        for request in owned.parked.drain(..) {
            request.ack.fail(gone.clone());
        }
        for input in &mut owned.inputs {
            input.pop_into(&mut self.scratch, usize::MAX);
            for request in self.scratch.drain(..) {
                request.ack.fail(gone.clone());
            }
        }
        if let Some(io) = owned.io.take() {
            io.release(&mut self.direct);
        }
        for (later, moved) in self.partitions.iter_mut().enumerate().skip(index) {
            let Some(old) = moved.io.take() else { continue };
            old.release(&mut self.direct);
            moved.io = open_io(
                &mut self.direct,
                &mut moved.log,
                later as u64,
                self.direct_io,
            );
        }
        owned.entry.notify();
        owned.log.close()
    }

    /// One round over every owned partition; returns the number of batches handled.
    fn pass(&mut self) -> usize {
        // Before the hold check: a held shard still applies what its sealer finished (else
        // its idle check would find that outcome waiting on every round).
        self.apply_rolls();
        if self.control.held.load(Ordering::Acquire) {
            return 0;
        }
        let mut handled = 0;
        let write_through = self.direct.writes_inside_submit();
        for index in 0..self.partitions.len() {
            let drained = self.drain(index);
            if write_through && drained > 0 {
                self.write_through(index);
            }
            handled += drained;
        }
        // Nothing staged, nothing waiting to go out, nothing in flight: no system call.
        let open_buffers = self
            .partitions
            .iter()
            .any(|owned| owned.io.as_ref().is_some_and(PartitionIo::has_open_buffer));
        let direct = &mut self.direct;
        if handled > 0 || open_buffers || direct.in_flight() > 0 {
            for owned in &mut self.partitions {
                if let Some(io) = owned.io.as_mut()
                    && io.send(direct, &mut owned.log).is_err()
                {
                    // The partition stopped and its batches failed with the reason.
                    owned.entry.notify();
                }
            }
            if let Err(error) = direct.submit() {
                log::error!("rill: {} submit failed: {error}", direct.backend_name());
            }
            let ready = direct.reap();
            self.stashed.extend(ready);
        }
        self.apply_completions();
        handled
    }

    /// With the blocking writer, writes (and syncs) what the partition just staged and applies
    /// the completions at once, before the next partition's drain: its acknowledgements then
    /// wait for its own sync only, not for every partition's of the pass, and the next
    /// partition takes what arrived meanwhile into its own write (one write and one sync per
    /// partition per pass, as the portable backend always did). Bounded: each round sends a
    /// write the last completion let go, at most the partition's queue.
    fn write_through(&mut self, index: usize) {
        for _ in 0..=MAX_WRITES {
            let owned = &mut self.partitions[index];
            let Some(io) = owned.io.as_mut() else {
                return;
            };
            match io.send(&mut self.direct, &mut owned.log) {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    // The partition stopped and its batches failed with the reason.
                    owned.entry.notify();
                    return;
                }
            }
            if let Err(error) = self.direct.submit() {
                log::error!(
                    "rill: {} submit failed: {error}",
                    self.direct.backend_name()
                );
            }
            let ready = self.direct.reap();
            self.stashed.extend(ready);
            self.apply_completions_of(index);
        }
    }

    /// Applies the stashed completions of partition `index` (the others stay stashed for the
    /// pass's `apply_completions`).
    fn apply_completions_of(&mut self, index: usize) {
        let Shard {
            partitions,
            direct,
            stashed,
            ..
        } = self;
        let owned = &mut partitions[index];
        // In order: a partition's completions are few (one per write of its queue).
        let mut at = 0;
        while at < stashed.len() {
            if usize::try_from(partition_of(stashed[at].token)).ok() != Some(index) {
                at += 1;
                continue;
            }
            apply_completion(owned, direct, stashed.remove(at));
        }
    }

    /// Stages batches into the partition's buffer; the pass queues it afterwards. Batches
    /// parked behind a roll go first; while any stay parked, the rings wait.
    fn drain(&mut self, index: usize) -> usize {
        let mut requests = std::mem::take(&mut self.scratch);
        requests.append(&mut self.partitions[index].parked);
        let mut handled = self.stage_requests(index, &mut requests);
        let owned = &self.partitions[index];
        if owned.parked.is_empty() && owned.entry.parked.load(Ordering::Relaxed) {
            // Cleared before the rings are read: a producer that still saw the flag skipped
            // waking the shard, and its batch is found below (see `wake_shard`).
            owned.entry.parked.store(false, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        for input_index in 0..self.partitions[index].inputs.len() {
            if !self.partitions[index].parked.is_empty() {
                break;
            }
            self.partitions[index].inputs[input_index]
                .pop_into(&mut requests, MAX_BATCHES_PER_RING);
            handled += self.stage_requests(index, &mut requests);
        }
        self.scratch = requests;
        let owned = &mut self.partitions[index];
        owned
            .inputs
            .retain(|input| !(input.is_abandoned() && input.is_empty()));
        if handled > 0 {
            // Offsets were assigned (appended acks) or batches refused: waiters look now.
            owned.entry.notify();
        }
        handled
    }

    /// Stages `requests` in order, emptying the list; those that must wait for the partition's
    /// roll are parked, in order. Returns how many were handled (staged or refused).
    fn stage_requests(&mut self, index: usize, requests: &mut Vec<Request>) -> usize {
        let always_sync =
            self.partitions[index].log.config().fsync == crate::log::FsyncPolicy::EveryAppend;
        let mut handled = 0;
        let mut pending = requests.drain(..);
        while let Some(request) = pending.next() {
            match self.make_room(index, request.batch.len()) {
                Ok(Room::Ready) => {}
                Ok(Room::AfterWrites) => {
                    let owned = &mut self.partitions[index];
                    owned.entry.parked.store(true, Ordering::Relaxed);
                    let parked = &mut owned.parked;
                    parked.push(request);
                    parked.extend(pending);
                    return handled;
                }
                Err(error) => {
                    handled += 1;
                    request.ack.fail(Arc::new(error));
                    continue;
                }
            }
            handled += 1;
            let owned = &mut self.partitions[index];
            let Some(io) = owned.io.as_mut() else {
                // Its segment could not be opened for the writer: the log says why.
                let error = owned.log.poison().map_or_else(
                    || Error::Invariant {
                        what: format!("{} has no writer", owned.entry.tp),
                    },
                    |poison| poison.error(&owned.entry.tp),
                );
                request.ack.fail(Arc::new(error));
                continue;
            };
            let Request {
                mut batch,
                ack,
                sync,
                origin,
            } = request;
            match owned.log.stage(&mut batch, origin) {
                Ok(staged) if staged.duplicate => {
                    ack.appended(staged.base_offset);
                    if sync && owned.log.durable_offset() < staged.next_offset {
                        sync_written(owned, &ack);
                    }
                }
                Ok(staged) => {
                    ack.appended(staged.base_offset);
                    let end = staged.position + staged.len;
                    let sync = sync || always_sync;
                    let copied = if owned.log.tails_when_staged() {
                        // Visible now: the bytes are copied for the write, the batch
                        // itself goes to the tail before the write is even queued.
                        let copied = io.stage_copy(&batch, end, ack.clone(), sync);
                        if copied {
                            owned.log.publish_staged(batch, &staged);
                        }
                        copied
                    } else {
                        io.stage(batch, end, ack.clone(), sync)
                    };
                    if !copied {
                        // make_room guaranteed space; losing it is a bug. The batch has
                        // its offset but no bytes anywhere, so the partition stops: its
                        // offset is never handed out again and nothing after it published.
                        let error = owned.log.poison_with(
                            crate::log::StorageOp::Stage,
                            owned.log.active_path().to_owned(),
                            &std::io::Error::other("the staging buffer had no room"),
                        );
                        ack.fail_with(&error);
                        io.fail_all(&error);
                    }
                }
                Err(error) => ack.fail(Arc::new(error)),
            }
        }
        handled
    }

    /// Gets the partition a buffer with room for `len` more bytes, rolling its segment first
    /// when the batch would not fit. Never waits for the disk: a full buffer is sealed into
    /// the partition's queue of writes and a new one starts; when the queue is at its bound,
    /// the pool is empty, or a roll must wait for writes of the old segment (its open buffer
    /// is sent now), the answer is [`Room::AfterWrites`] and the shard goes on with other
    /// partitions. The roll itself does not wait for the disk (see `log::roll`). Never stages
    /// anything.
    fn make_room(&mut self, index: usize, len: usize) -> Result<Room> {
        if self.partitions[index]
            .io
            .as_ref()
            .is_some_and(PartitionIo::waits_for_writes)
        {
            return Ok(Room::AfterWrites);
        }
        let needs_roll = self.partitions[index].log.needs_roll(len as u64);
        if needs_roll {
            // Staged batches or writes queued (a fresh O_DIRECT buffer holding only the
            // re-written tail block carries nothing, and is released by the roll).
            let busy = self.partitions[index]
                .io
                .as_ref()
                .is_some_and(PartitionIo::is_busy);
            if busy {
                self.send_open_buffer(index)?;
                return Ok(Room::AfterWrites);
            }
            let owned = &mut self.partitions[index];
            owned.log.roll_now()?;
            if let Some(old) = owned.io.take() {
                old.release(&mut self.direct);
            }
            owned.io = open_io(
                &mut self.direct,
                &mut owned.log,
                index as u64,
                self.direct_io,
            );
            if owned.io.is_none() {
                return Err(owned.log.poison().map_or_else(
                    || Error::Invariant {
                        what: format!("{} has no writer", owned.entry.tp),
                    },
                    |poison| poison.error(&owned.entry.tp),
                ));
            }
        }
        // Bounded: at most one seal and one new buffer before there is room; the pool being
        // empty ends the loop at once.
        for _ in 0..4 {
            let owned = &mut self.partitions[index];
            let direct = &mut self.direct;
            let Some(io) = owned.io.as_mut() else {
                return Ok(Room::Ready);
            };
            if io.has_room(len) {
                return Ok(Room::Ready);
            }
            if io.has_open_buffer() {
                // Full: sealed into the queue, queued when its turn comes (the pass submits).
                if !io.seal(direct, &mut owned.log)? {
                    return Ok(Room::AfterWrites);
                }
                io.queue_ready(direct, &mut owned.log)?;
                continue;
            }
            if io.start_buffer(direct) {
                continue;
            }
            // The pool is empty: every buffer is queued or staged. Send what is staged, so
            // buffers come back, and wait for a completion with the batches parked.
            for owned in &mut self.partitions {
                if let Some(io) = owned.io.as_mut() {
                    // A refusal stops that partition and fails its batches; this one waits on.
                    let _ = io.send(direct, &mut owned.log);
                }
            }
            if let Err(error) = direct.submit() {
                log::error!("rill: {} submit failed: {error}", direct.backend_name());
            }
            // In flight (io_uring), or done and not yet reaped (the blocking writer wrote them
            // inside `submit`; its `in_flight` counts them): either way the pass applies
            // completions, buffers come back, and the parked batches go next.
            if direct.in_flight() > 0 {
                return Ok(Room::AfterWrites);
            }
            break;
        }
        Err(Error::Invariant {
            what: "no staging buffer became free".into(),
        })
    }

    /// Sends everything the partition has staged and waits until all of it is written and
    /// applied (close, removal). Bounded: a write that never completes is an error.
    fn settle_partition(&mut self, index: usize) -> Result<()> {
        for _ in 0..100_000 {
            let busy = self.partitions[index]
                .io
                .as_ref()
                .is_some_and(PartitionIo::is_busy);
            if !busy {
                return Ok(());
            }
            self.send_open_buffer(index)?;
            if self.direct.in_flight() == 0 {
                // Only completions a test storage holds back: asked again after a pause.
                std::thread::sleep(Duration::from_millis(1));
            }
            self.wait_for_completion();
        }
        Err(Error::Invariant {
            what: "a write never completed".into(),
        })
    }

    /// Seals the partition's open buffer into its queue of writes (even with writes in
    /// flight), queues what may go, and submits.
    fn send_open_buffer(&mut self, index: usize) -> Result<()> {
        let owned = &mut self.partitions[index];
        let direct = &mut self.direct;
        let Some(io) = owned.io.as_mut() else {
            return Ok(());
        };
        io.seal(direct, &mut owned.log)?;
        io.queue_ready(direct, &mut owned.log)?;
        direct
            .submit()
            .map_err(|e| Error::io("submit", direct.backend_name(), e))?;
        Ok(())
    }

    /// Writes in flight (or, in tests, completions held back): the shard sleeps in the
    /// kernel, bounded, rather than parking.
    fn io_pending(&self) -> bool {
        self.direct.in_flight() > 0
            || self
                .partitions
                .iter()
                .any(|owned| owned.io.as_ref().is_some_and(PartitionIo::has_held))
    }

    /// Blocks in the kernel for at least one completion, then applies every completion known.
    fn wait_for_completion(&mut self) {
        let direct = &mut self.direct;
        if direct.in_flight() > 0 {
            let name = direct.backend_name();
            match direct.wait_one() {
                Ok(done) => self.stashed.extend(done),
                Err(error) => log::error!("rill: {name} wait failed: {error}"),
            }
        }
        self.apply_completions();
    }

    /// Sleeps on the doorbell until a write completes or a producer rings, then applies what
    /// completed; without a doorbell, sleeps in the ring until a completion.
    fn sleep_until_completion_or_work(&mut self) {
        let timeout = self
            .next_deadline()
            .map_or(MAX_NAP, |due| due.saturating_duration_since(Instant::now()))
            .min(MAX_NAP);
        let direct = &mut self.direct;
        let control = self.control.clone();
        let partitions = &self.partitions;
        let slept = control.waker.sleep_in_kernel_unless(
            || {
                direct.has_unfinished_business()
                    || control.commands_pending.load(Ordering::Acquire)
                    || rolls_ready(partitions)
                    || (!control.held.load(Ordering::Acquire) && has_input(partitions))
            },
            timeout,
        );
        if !slept {
            self.wait_for_completion();
            return;
        }
        if direct.has_unfinished_business() {
            if let Err(error) = direct.submit() {
                log::error!("rill: {} submit failed: {error}", direct.backend_name());
            }
            let ready = direct.reap();
            self.stashed.extend(ready);
        }
        self.apply_completions();
    }

    /// Publishes what completed writes carried, in each partition's order, then queues the
    /// writes those completions let go (and the open buffers of partitions left with nothing
    /// queued), and submits them.
    fn apply_completions(&mut self) {
        let direct = &mut self.direct;
        // Drained, not taken: the list keeps its memory for the next completions.
        for done in self.stashed.drain(..) {
            let Some(owned) = usize::try_from(partition_of(done.token))
                .ok()
                .and_then(|i| self.partitions.get_mut(i))
            else {
                continue;
            };
            apply_completion(owned, direct, done);
        }
        let mut sent = false;
        for owned in &mut self.partitions {
            let Some(io) = owned.io.as_mut().filter(|io| io.is_busy()) else {
                continue;
            };
            if io.has_held() {
                let written_before = owned.entry.reader.written_offset();
                if let Some(error) = io.poll_held(direct, &mut owned.log) {
                    log::debug!("rill: {}: write failed: {error}", owned.entry.tp);
                }
                notify_completion(owned, written_before);
            }
            let Some(io) = owned.io.as_mut() else {
                continue;
            };
            match io.send(direct, &mut owned.log) {
                Ok(queued) => sent |= queued,
                // The partition stopped and its batches failed with the reason.
                Err(_) => owned.entry.notify(),
            }
        }
        if sent && let Err(error) = direct.submit() {
            log::error!("rill: io_uring submit failed: {error}");
        }
    }

    /// Applies the roll jobs the sealer finished: durable watermarks move (tickets waiting for
    /// durability wake), or a failed roll stops its partition.
    fn apply_rolls(&mut self) {
        for owned in &mut self.partitions {
            if owned.log.rolls_ready() && owned.log.apply_rolls() {
                if let Some(error) = owned.log.poison().map(|p| p.error(&owned.entry.tp))
                    && let Some(io) = owned.io.as_mut()
                {
                    io.fail_all(&error);
                }
                owned.entry.notify();
            }
        }
    }

    /// Interval fsyncs that came due while idle, and periodic retention.
    fn timed_duties(&mut self) {
        let now = Instant::now();
        for owned in &mut self.partitions {
            if owned.log.next_sync_due().is_some_and(|due| due <= now) {
                // A partition with batches about to go out syncs with them: the fdatasync is
                // linked to that write (io_uring: the shard does not block on it).
                if let Some(io) = owned.io.as_mut()
                    && io.has_open_buffer()
                {
                    io.sync_next_write();
                    continue;
                }
                // Queued to the sealer thread: the durable watermark moves (and waiters wake)
                // when the shard applies its outcome.
                match owned.log.queue_sync_if_due() {
                    Ok(()) => owned.entry.notify(),
                    Err(error) => log::error!("rill: {}: sync failed: {error}", owned.entry.tp),
                }
            }
        }
        if now >= self.next_retention {
            self.next_retention = now + self.retention_interval;
            for owned in &mut self.partitions {
                if let Err(error) = owned.log.enforce_retention() {
                    log::error!("rill: {}: retention failed: {error}", owned.entry.tp);
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.partitions
            .iter()
            .filter_map(|owned| owned.log.next_sync_due())
            .chain(std::iter::once(self.next_retention))
            .min()
    }

    /// Appends everything the rings still hold, then closes every partition cleanly.
    fn finish(&mut self) {
        self.control.held.store(false, Ordering::Release);
        // Sends that passed the engine's open check just before shutdown may still arrive;
        // they are few, so this ends, but it is bounded anyway.
        for _ in 0..1_000 {
            if self.pass() == 0 && !self.io_pending() {
                break;
            }
            if self.io_pending() {
                self.wait_for_completion();
            }
        }
        for index in 0..self.partitions.len() {
            if let Err(error) = self.settle_partition(index) {
                log::error!(
                    "rill: {}: final writes failed: {error}",
                    self.partitions[index].entry.tp
                );
            }
        }
        for owned in &mut self.partitions {
            if let Some(io) = owned.io.take() {
                io.release(&mut self.direct);
            }
        }
        let mut entries = Vec::with_capacity(self.partitions.len());
        for owned in self.partitions.drain(..) {
            if let Err(error) = owned.log.close() {
                log::error!("rill: {}: close failed: {error}", owned.entry.tp);
                let mut slot = self
                    .control
                    .close_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                slot.get_or_insert(error);
            }
            entries.push(owned.entry);
        }
        if let Some((sealer, thread)) = self.sealer.take() {
            // Every log closed, so every roll job finished: the thread has nothing left.
            sealer.stop();
            if thread.join().is_err() {
                log::error!(
                    "rill: shard {}: the sealer thread panicked",
                    self.control.id
                );
            }
        }
        // Dead before the last notification, so every waiter it wakes sees why.
        self.control.alive.store(false, Ordering::Release);
        for entry in entries {
            entry.notify();
        }
    }
}

/// Opens the log's active segment for the shard's writer. A segment that cannot be opened
/// stops the partition, with the reason: there is no other way for its batches to be written.
fn open_io(
    direct: &mut DirectIo,
    log: &mut PartitionLog,
    token: u64,
    direct_io: bool,
) -> Option<PartitionIo> {
    match PartitionIo::open(direct, log, token, direct_io) {
        Ok(io) => Some(io),
        Err(error) => {
            let path = log.active_path().to_owned();
            let stopped = log.poison_with(crate::log::StorageOp::OpenForWriter, path, &error);
            log::error!("rill: {}: {stopped}", log.partition());
            None
        }
    }
}

/// Makes what is written durable for a retried batch that waits for durability: with the
/// partition's next write if one is open (the sync is linked to it), else now.
fn sync_written(owned: &mut Owned, ack: &BatchAck) {
    if let Some(io) = owned.io.as_mut()
        && io.has_open_buffer()
    {
        io.sync_next_write();
        return;
    }
    if let Err(error) = owned.log.flush() {
        ack.fail(Arc::new(error));
    }
}

/// Applies one completion of the partition's writes and wakes whoever it concerns.
fn apply_completion(owned: &mut Owned, direct: &mut DirectIo, done: Completion) {
    let Some(io) = owned.io.as_mut() else {
        return;
    };
    let written_before = owned.entry.reader.written_offset();
    if let Some(error) = io.complete(direct, &mut owned.log, done) {
        log::debug!("rill: {}: write failed: {error}", owned.entry.tp);
    }
    notify_completion(owned, written_before);
}

/// Wakes who waits on `owned` after completions were applied to it.
fn notify_completion(owned: &Owned, written_before: i64) {
    if owned.log.completion_news_for_readers(written_before) {
        owned.entry.notify();
    } else {
        // Under `Appended` consumers saw these batches when they were staged: only tickets
        // (and consumers of this partition alone) are woken, not the topic's.
        owned.entry.notifier.notify();
    }
}

/// Whether a sealer finished a roll job that the shard has not applied yet.
fn rolls_ready(partitions: &[Owned]) -> bool {
    partitions.iter().any(|p| p.log.rolls_ready())
}

/// Whether a ring holds batches the shard would take now: a partition with parked batches
/// takes none from its rings until a completion (which wakes the shard) lets them go.
fn has_input(partitions: &[Owned]) -> bool {
    partitions
        .iter()
        .any(|p| p.parked.is_empty() && p.inputs.iter().any(|input| !input.is_empty()))
}

#[cfg(test)]
mod spin_tests {
    use super::next_spin;
    use std::time::Duration;

    /// A trickle (every park outlasts the window) shrinks the spin to nothing; batches that
    /// come right after a park grow it back, never past the configured window.
    #[test]
    fn the_spin_window_follows_the_gaps_between_batches() {
        let configured = Duration::from_micros(50);
        let mut spin = configured;
        for _ in 0..40 {
            spin = next_spin(spin, configured, Duration::from_micros(100));
        }
        assert_eq!(spin, Duration::ZERO, "a trickle parks at once");
        spin = next_spin(spin, configured, Duration::from_micros(5));
        assert!(spin > Duration::ZERO, "a quick wake starts spinning again");
        for _ in 0..10 {
            spin = next_spin(spin, configured, Duration::from_micros(5));
        }
        assert_eq!(spin, configured, "and grows up to the configured window");
    }
}

/// Lets unit tests make starting a given shard fail, and see which shards were started.
#[cfg(test)]
pub(crate) mod start_hook {
    use std::cell::{Cell, RefCell};
    use std::sync::{Arc, Weak};

    use super::ShardControl;
    use crate::error::Error;

    thread_local! {
        static FAIL_AT: Cell<Option<usize>> = const { Cell::new(None) };
        static STARTED: RefCell<Vec<Weak<ShardControl>>> = const { RefCell::new(Vec::new()) };
    }

    /// Starting shard `id` fails (on this thread) from now on.
    pub fn fail_at(id: usize) {
        FAIL_AT.with(|f| f.set(Some(id)));
    }

    /// The shards started on this thread, alive or not.
    pub fn started() -> Vec<Weak<ShardControl>> {
        STARTED.with(|s| s.borrow().clone())
    }

    pub(super) fn check(control: &Arc<ShardControl>) -> Option<Error> {
        if FAIL_AT.with(Cell::get) == Some(control.id) {
            return Some(Error::ShardStart {
                shard: control.id,
                source: std::io::Error::other("start refused by the test"),
            });
        }
        STARTED.with(|s| s.borrow_mut().push(Arc::downgrade(control)));
        None
    }
}
