//! A shard: one thread, pinned to a core, that alone writes the partitions it owns.
//!
//! Each pass drains the rings of every owned partition (a bounded number of batches per ring,
//! so one busy producer cannot starve the others), appends the batches, then lets the fsync
//! policy sync once for all of them: group commit. Acks and watermarks are published after
//! that, and waiters are woken only if any are waiting. An idle shard polls for a short spin
//! window, then parks until a producer wakes it or a timed duty (an interval fsync, a
//! retention check) comes due.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::notify::ShardWaker;
use super::{BatchAck, EngineConfig, IoMode, PartitionEntry};
use crate::error::{Error, Result};
use crate::io::{IoBackend, PortableIo};
use crate::log::PartitionLog;
use crate::ring;
use crate::topic::TopicPartition;

/// Batches taken from one ring per pass: bounds the time a pass spends on one producer.
const MAX_BATCHES_PER_RING: usize = 64;

/// A batch on its way from a producer to the shard, with the ack that reports its fate.
#[derive(Debug)]
pub(crate) struct Request {
    pub batch: Vec<u8>,
    pub ack: Arc<BatchAck>,
    /// The producer waits for durability: sync after this pass whatever the fsync policy.
    pub sync: bool,
}

enum Command {
    AddPartition {
        log: PartitionLog,
        entry: Arc<PartitionEntry>,
    },
    AddInput {
        partition: TopicPartition,
        input: ring::Consumer<Request>,
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
        self.command(Command::AddPartition { log, entry });
    }

    pub fn add_input(&self, partition: TopicPartition, input: ring::Consumer<Request>) {
        self.command(Command::AddInput { partition, input });
    }

    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::Release);
        self.waker.wake();
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

/// Names the backend the engine will use, logging once why when it is not the best one.
pub(crate) fn choose_backend(mode: IoMode) -> &'static str {
    let forced = std::env::var("RILL_IO").is_ok_and(|v| v == "sync");
    if forced || mode == IoMode::Sync {
        log::info!("rill: portable I/O backend (pwrite/fdatasync) forced by configuration");
    }
    "portable"
}

/// A constructor of backend instances for the named backend.
pub(crate) fn backend_for(_name: &'static str) -> fn() -> Box<dyn IoBackend> {
    || Box::new(PortableIo)
}

struct Owned {
    log: PartitionLog,
    entry: Arc<PartitionEntry>,
    inputs: Vec<ring::Consumer<Request>>,
}

struct Shard {
    control: Arc<ShardControl>,
    partitions: Vec<Owned>,
    scratch: Vec<Request>,
    idle_spin: Duration,
    retention_interval: Duration,
    next_retention: Instant,
}

pub(crate) fn spawn(
    control: Arc<ShardControl>,
    core: Option<core_affinity::CoreId>,
    config: &EngineConfig,
) -> Result<JoinHandle<()>> {
    let id = control.id;
    let mut shard = Shard {
        control,
        partitions: Vec::new(),
        scratch: Vec::with_capacity(MAX_BATCHES_PER_RING),
        idle_spin: config.idle_spin,
        retention_interval: config.retention_check_interval,
        next_retention: Instant::now() + config.retention_check_interval,
    };
    std::thread::Builder::new()
        .name(format!("rill-shard-{id}"))
        .spawn(move || {
            if let Some(core) = core
                && !core_affinity::set_for_current(core)
            {
                log::warn!("rill: shard {id} could not be pinned to core {}", core.id);
            }
            shard.run();
        })
        .map_err(|source| Error::ShardStart { shard: id, source })
}

impl Shard {
    fn run(&mut self) {
        self.control.waker.bind_current_thread();
        let mut idle_since: Option<Instant> = None;
        loop {
            let stop = self.apply_commands();
            let handled = self.pass();
            self.timed_duties();
            if stop {
                self.finish();
                return;
            }
            if handled > 0 {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.idle_spin {
                std::hint::spin_loop();
                continue;
            }
            let timeout = self
                .next_deadline()
                .map(|due| due.saturating_duration_since(Instant::now()));
            let control = self.control.clone();
            let partitions = &self.partitions;
            let held = control.held.load(Ordering::Acquire);
            control.waker.park_unless(
                || {
                    control.commands_pending.load(Ordering::Acquire)
                        || (!held && has_input(partitions))
                },
                timeout,
            );
            idle_since = None;
        }
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
                Command::AddPartition { log, entry } => self.partitions.push(Owned {
                    log,
                    entry,
                    inputs: Vec::new(),
                }),
                Command::AddInput { partition, input } => {
                    match self.partitions.iter_mut().find(|p| p.entry.tp == partition) {
                        Some(owned) => owned.inputs.push(input),
                        None => {
                            log::error!("rill: shard {} does not own {partition}", self.control.id)
                        }
                    }
                }
                Command::Shutdown => stop = true,
            }
        }
        stop
    }

    /// One round over every owned partition; returns the number of batches handled.
    fn pass(&mut self) -> usize {
        if self.control.held.load(Ordering::Acquire) {
            return 0;
        }
        let Shard {
            partitions,
            scratch,
            ..
        } = self;
        let mut handled = 0;
        for owned in partitions.iter_mut() {
            let mut appended = 0;
            let mut wants_sync = false;
            for input in &mut owned.inputs {
                input.pop_into(scratch, MAX_BATCHES_PER_RING);
                for mut request in scratch.drain(..) {
                    match owned.log.append_deferred(&mut request.batch) {
                        Ok(info) => {
                            request.ack.appended(info.base_offset);
                            wants_sync |= request.sync;
                            appended += 1;
                        }
                        Err(error) => request.ack.fail(error.to_string()),
                    }
                    handled += 1;
                }
            }
            owned
                .inputs
                .retain(|input| !(input.is_abandoned() && input.is_empty()));
            if appended > 0 {
                // One sync for every batch of the pass: group commit.
                let synced = if wants_sync {
                    owned.log.flush()
                } else {
                    owned.log.sync_if_due().map(|_| ())
                };
                if let Err(error) = synced {
                    log::error!("rill: {}: sync failed: {error}", owned.entry.tp);
                }
                owned.entry.notifier.notify();
            }
        }
        handled
    }

    /// Interval fsyncs that came due while idle, and periodic retention.
    fn timed_duties(&mut self) {
        let now = Instant::now();
        for owned in &mut self.partitions {
            if owned.log.next_sync_due().is_some_and(|due| due <= now) {
                match owned.log.sync_if_due() {
                    Ok(_) => owned.entry.notifier.notify(),
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
            if self.pass() == 0 {
                break;
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
        // Dead before the last notification, so every waiter it wakes sees why.
        self.control.alive.store(false, Ordering::Release);
        for entry in entries {
            entry.notifier.notify();
        }
    }
}

fn has_input(partitions: &[Owned]) -> bool {
    partitions
        .iter()
        .any(|p| p.inputs.iter().any(|input| !input.is_empty()))
}
