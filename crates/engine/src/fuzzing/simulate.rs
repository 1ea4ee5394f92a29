//! `storage_faults`: seeded schedules of produce, consume, roll, retention, reopen and crash
//! against an engine writing through the storage simulator ([`SimStorage`]), checked after
//! every step.
//!
//! Properties:
//! - every record acknowledged as durable is present and intact after any crash or reopen;
//! - every record acknowledged as written is readable, intact, while the engine runs and after
//!   a clean reopen (so no ticket resolved `Ok` for a record whose write failed);
//! - a consumer reading from the start sees dense offsets, each once;
//! - every ticket resolves (its wait is bounded) and a failure is a typed error;
//! - nothing panics.
//!
//! A schedule is a seed (the faults and the sizes) and a list of step bytes: the test derives
//! the bytes from the seed, the fuzz target takes them from its input.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::recover::ScratchDir;
use super::storage::{FaultCounts, FaultRates, SimRng, SimStorage};
use crate::consumer::{ConsumerConfig, StartFrom};
use crate::engine::{AckLevel, Engine, EngineConfig, IoMode};
use crate::error::Error;
use crate::log::{FsyncPolicy, LogConfig};
use crate::producer::{ProducerConfig, ProducerRecord};
use crate::record::Limits;

const TOPIC: &str = "sim";
const PARTITIONS: u32 = 2;
/// How long one ticket may take before the wait counts as unbounded.
const TICKET_BOUND: Duration = Duration::from_secs(10);

/// Which write path the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimBackend {
    Portable,
    Uring,
}

impl SimBackend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Uring => "uring",
        }
    }
}

/// What one schedule did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimOutcome {
    pub steps: u64,
    pub acked_durable: u64,
    pub acked_written: u64,
    pub failed_tickets: u64,
    pub faults: FaultCounts,
    /// Whether io_uring could not be set up, so the schedule ran on the portable path.
    pub fell_back: bool,
}

/// One acknowledged record, as the checks expect to find it.
#[derive(Clone, Debug)]
struct Acked {
    value: Vec<u8>,
    durable: bool,
}

struct Run {
    seed: u64,
    backend: SimBackend,
    dir: ScratchDir,
    sim: Arc<SimStorage>,
    rates: FaultRates,
    fsync: FsyncPolicy,
    engine: Option<Engine>,
    /// Acknowledged records per partition, by offset.
    acked: Vec<BTreeMap<i64, Acked>>,
    next_seq: u64,
    outcome: SimOutcome,
}

/// The fault rates a seed's schedule runs with: calm, write faults, sync faults, or all.
pub fn rates_for(seed: u64) -> FaultRates {
    match seed % 4 {
        0 => FaultRates {
            slow: 20,
            ..FaultRates::default()
        },
        1 => FaultRates {
            write_eio: 15,
            write_enospc: 30,
            torn_write: 15,
            short_write: 60,
            ..FaultRates::default()
        },
        2 => FaultRates {
            sync_eio: 40,
            sync_enospc: 20,
            ..FaultRates::default()
        },
        _ => FaultRates {
            write_eio: 10,
            write_enospc: 15,
            sync_eio: 15,
            sync_enospc: 10,
            torn_write: 10,
            short_write: 40,
            slow: 20,
        },
    }
}

/// Runs the schedule of `seed`: its steps derived from the seed itself.
pub fn run_seed(seed: u64, backend: SimBackend) -> Result<SimOutcome, String> {
    let mut rng = SimRng::new(seed ^ 0x5151_5151);
    let count = 8 + rng.below(24) as usize;
    let steps: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
    run_steps(seed, backend, &steps)
}

/// The fuzz target: a seed, a backend bit and step bytes from the input; panics on a broken
/// property.
pub fn storage_faults(data: &[u8]) {
    let Some((head, steps)) = data.split_first_chunk::<8>() else {
        return;
    };
    let seed = u64::from_le_bytes(*head);
    let backend = if seed & 1 << 63 != 0 {
        SimBackend::Uring
    } else {
        SimBackend::Portable
    };
    let steps = &steps[..steps.len().min(64)];
    if let Err(violation) = run_steps(seed, backend, steps) {
        panic!(
            "storage_faults seed {seed:#x} ({}): {violation}",
            backend.name()
        );
    }
}

/// Runs `steps` under the faults of `seed`, then a final crash and clean reopen, checking
/// every property after each step. `Err` says which property broke, and where.
pub fn run_steps(seed: u64, backend: SimBackend, steps: &[u8]) -> Result<SimOutcome, String> {
    let rates = rates_for(seed);
    let sim = SimStorage::new(seed, rates);
    let mut run = Run {
        seed,
        backend,
        dir: scratch_dir(seed, backend),
        sim,
        rates,
        fsync: if seed & 4 == 0 {
            FsyncPolicy::Never
        } else {
            FsyncPolicy::EveryAppend
        },
        engine: None,
        acked: vec![BTreeMap::new(); PARTITIONS as usize],
        next_seq: 0,
        outcome: SimOutcome::default(),
    };
    run.open()?;
    for (index, &step) in steps.iter().enumerate() {
        run.step(step)
            .map_err(|violation| format!("step {index} (op byte {step:#04x}): {violation}"))?;
        run.outcome.steps += 1;
    }
    run.crash().map_err(|v| format!("final crash: {v}"))?;
    run.reopen().map_err(|v| format!("final reopen: {v}"))?;
    if let Some(engine) = run.engine.take() {
        let _ = engine.shutdown();
    }
    run.outcome.faults = run.sim.counts();
    Ok(run.outcome)
}

impl Run {
    fn config(&self) -> EngineConfig {
        EngineConfig {
            shards: 1,
            pin_shards: false,
            io: match self.backend {
                SimBackend::Portable => IoMode::Sync,
                SimBackend::Uring => IoMode::Auto,
            },
            idle_spin: Duration::from_micros(20),
            retention_check_interval: Duration::from_millis(2),
            log: LogConfig {
                segment_bytes: 48 * 1024,
                segment_age: None,
                retention_bytes: Some(160 * 1024),
                retention_age: None,
                index_interval_bytes: 1024,
                fsync: self.fsync,
                tail_bytes: 16 * 1024,
                limits: Limits {
                    max_batch_bytes: 16 * 1024,
                    ..Limits::default()
                },
                ..LogConfig::default()
            },
            storage: Some(self.sim.as_storage()),
            ..EngineConfig::new(self.dir.path())
        }
    }

    fn open(&mut self) -> Result<(), String> {
        let engine = Engine::open(self.config()).map_err(|e| format!("open: {e}"))?;
        if self.backend == SimBackend::Uring && engine.backend() != "io_uring" {
            self.outcome.fell_back = true;
        }
        engine
            .create_topic(TOPIC, PARTITIONS)
            .map_err(|e| format!("create topic: {e}"))?;
        self.engine = Some(engine);
        Ok(())
    }

    fn engine(&self) -> Result<&Engine, String> {
        self.engine.as_ref().ok_or_else(|| "no engine".to_owned())
    }

    fn step(&mut self, op: u8) -> Result<(), String> {
        let level = match (op >> 4) % 3 {
            0 => AckLevel::Appended,
            1 => AckLevel::Written,
            _ => AckLevel::Durable,
        };
        match op % 16 {
            0..=6 => self.produce(
                &[u32::from(op >> 6) % PARTITIONS],
                1 + (op as usize >> 3) % 12,
                level,
            ),
            7 | 8 => self.check_readable(),
            9 => self.reopen(),
            10 => self.crash().and_then(|()| self.reopen()),
            11 => self.produce(&[0, 1], 30, AckLevel::Written),
            12 => {
                // A calm spell: partitions that were not stopped make progress.
                self.sim.set_rates(FaultRates::default());
                self.produce(&[0, 1], 4, AckLevel::Durable)?;
                self.sim.set_rates(self.rates);
                Ok(())
            }
            _ => self.produce(&[0, 1], 1 + (op as usize >> 4), level),
        }
    }

    fn value(&mut self) -> Vec<u8> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let len = 16 + (seq.wrapping_mul(2_654_435_761) % 700) as usize;
        let mut value = format!("{:x}/{seq}/", self.seed).into_bytes();
        value.resize(len, (seq % 251) as u8);
        value
    }

    /// Sends `count` records to each of `partitions`, then waits (bounded) on every ticket.
    fn produce(&mut self, partitions: &[u32], count: usize, level: AckLevel) -> Result<(), String> {
        let mut values = Vec::new();
        for _ in 0..count {
            for &partition in partitions {
                values.push((partition, self.value()));
            }
        }
        let mut sent = Vec::new();
        let mut refused = Vec::new();
        {
            let engine = self.engine()?;
            let config = ProducerConfig {
                ack: level,
                batch_bytes: 4 * 1024,
                linger: Duration::from_secs(60),
                send_timeout: Some(Duration::from_secs(5)),
                ..ProducerConfig::default()
            };
            let mut producer = engine
                .producer_with(TOPIC, config)
                .map_err(|e| format!("producer: {e}"))?;
            // The shard takes the step's batches all at once, so how they group into writes
            // does not depend on thread timing: a seed replays the same operations.
            engine.hold_shards(true);
            for (partition, value) in values {
                let record = ProducerRecord {
                    partition: Some(partition),
                    ..ProducerRecord::new(None, &value)
                };
                match producer.send(record) {
                    Ok(sent_record) => sent.push((partition, value, sent_record.into_ticket())),
                    Err(error) => refused.push(error),
                }
            }
            // Dropping hands every open batch over without waiting; the waits below are bounded.
            drop(producer);
            engine.hold_shards(false);
        }
        for error in refused {
            check_typed(&error)?;
            self.outcome.failed_tickets += 1;
        }
        for (partition, value, ticket) in sent {
            match ticket.wait_timeout(TICKET_BOUND) {
                Ok(Some(offset)) => {
                    if level == AckLevel::Appended {
                        continue;
                    }
                    let durable = level == AckLevel::Durable;
                    if durable {
                        self.outcome.acked_durable += 1;
                    } else {
                        self.outcome.acked_written += 1;
                    }
                    let label = label_of(&value);
                    let previous =
                        self.acked[partition as usize].insert(offset, Acked { value, durable });
                    if let Some(previous) = previous {
                        return Err(format!(
                            "offset {partition}/{offset} acknowledged twice: to {} ({}), then to {label} ({level:?})",
                            label_of(&previous.value),
                            if previous.durable {
                                "durable"
                            } else {
                                "written"
                            },
                        ));
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "a ticket of partition {partition} did not resolve within {TICKET_BOUND:?}"
                    ));
                }
                Err(error) => {
                    check_typed(&error)?;
                    self.outcome.failed_tickets += 1;
                }
            }
        }
        Ok(())
    }

    /// Reads every partition from its start: offsets dense, every acknowledged record there.
    fn check_readable(&self) -> Result<(), String> {
        let (starts, read) = read_all(self.engine()?)?;
        for (partition, records) in read.iter().enumerate() {
            for (offset, acked) in &self.acked[partition] {
                if *offset < starts[partition] {
                    continue; // removed by retention
                }
                match records.get(offset) {
                    Some(found) if *found == acked.value => {}
                    Some(_) => {
                        return Err(format!(
                            "acknowledged {partition}/{offset} reads back different bytes"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "acknowledged {partition}/{offset} ({}) is not readable",
                            if acked.durable { "durable" } else { "written" }
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A clean stop and a fresh open: every acknowledged record must be back.
    fn reopen(&mut self) -> Result<(), String> {
        if let Some(engine) = self.engine.take() {
            // A stopped partition makes shutdown report its failure; that is expected here.
            let _ = engine.shutdown();
        }
        self.sim.forget_files();
        self.open()?;
        self.check_after_restart(false)
    }

    /// The process dies: unsynced bytes are torn, failed syncs' ranges lost.
    fn crash(&mut self) -> Result<(), String> {
        self.sim.crash();
        if let Some(engine) = self.engine.take() {
            let _ = engine.shutdown();
        }
        self.sim
            .restart()
            .map_err(|e| format!("tearing files: {e}"))?;
        self.open()?;
        self.check_after_restart(true)
    }

    /// After a restart: durable records (and, without a crash, written ones) present and
    /// intact; what a crash took back is forgotten, what survived counts as durable now.
    fn check_after_restart(&mut self, crashed: bool) -> Result<(), String> {
        let (starts, read) = read_all(self.engine()?)?;
        let failed_syncs = self.sim.take_failed_syncs();
        for (partition, records) in read.iter().enumerate() {
            let acked = &mut self.acked[partition];
            // After a failed sync the reopen cuts the log at the last good sync: a crash, for
            // this partition.
            let crashed = crashed || failed_syncs.contains(&format!("{TOPIC}-{partition}"));
            let mut lost = Vec::new();
            for (offset, record) in acked.iter_mut() {
                if *offset < starts[partition] {
                    continue; // removed by retention
                }
                match records.get(offset) {
                    Some(found) if *found == record.value => record.durable = true,
                    Some(_) => {
                        return Err(format!(
                            "acknowledged {partition}/{offset} came back with different bytes"
                        ));
                    }
                    None if record.durable || !crashed => {
                        return Err(format!(
                            "acknowledged {partition}/{offset} ({}) lost after a {}",
                            if record.durable { "durable" } else { "written" },
                            if crashed { "crash" } else { "clean reopen" }
                        ));
                    }
                    None => lost.push(*offset),
                }
            }
            for offset in lost {
                acked.remove(&offset);
            }
        }
        Ok(())
    }
}

/// A record's value as a message names it: its seed and sequence number.
fn label_of(value: &[u8]) -> String {
    let end = value.iter().rposition(|&b| b == b'/').unwrap_or(0);
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// Every failure a ticket or send reports must be one of the engine's typed errors for a
/// failed write, never an internal one.
fn check_typed(error: &Error) -> Result<(), String> {
    match error {
        Error::Invariant { .. } => Err(format!("an internal error reached a ticket: {error}")),
        Error::PartitionFailed(failure) if failure.source.raw_os_error().is_none() => Err(format!(
            "a stopped partition's error names no OS error: {error}"
        )),
        _ => Ok(()),
    }
}

/// Every partition's start offset and records, read from its start, checking dense offsets.
type Contents = (Vec<i64>, Vec<BTreeMap<i64, Vec<u8>>>);

fn read_all(engine: &Engine) -> Result<Contents, String> {
    let config = ConsumerConfig {
        start: StartFrom::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = engine
        .consumer_with(TOPIC, config)
        .map_err(|e| format!("consumer: {e}"))?;
    consumer.assign_all().map_err(|e| format!("assign: {e}"))?;
    let starts: Vec<i64> = (0..PARTITIONS)
        .map(|p| consumer.position(p).unwrap_or(0))
        .collect();
    let mut read = vec![BTreeMap::new(); PARTITIONS as usize];
    let mut next: Vec<Option<i64>> = vec![None; PARTITIONS as usize];
    let mut broken = None;
    for _ in 0..100_000 {
        let polled = consumer
            .poll(Duration::from_millis(1))
            .map_err(|e| format!("poll: {e}"))?;
        if polled.is_empty() {
            break;
        }
        polled
            .for_each_record(|partition, record| {
                let index = partition as usize;
                if let Some(expected) = next[index]
                    && record.offset != expected
                    && broken.is_none()
                {
                    broken = Some(format!(
                        "partition {partition}: offset {} follows {}",
                        record.offset,
                        expected - 1
                    ));
                }
                next[index] = Some(record.offset + 1);
                let value = record.value.unwrap_or_default().to_vec();
                read[index].insert(record.offset, value);
            })
            .map_err(|e| format!("decode: {e}"))?;
    }
    for (partition, records) in read.iter().enumerate() {
        if let Some(first) = records.keys().next()
            && *first != starts[partition]
        {
            // Retention may run between the assignment and the first read; only a gap above
            // the log's start is a hole.
            let start = consumer_start(engine, partition as u32)?;
            if *first != start {
                return Err(format!(
                    "partition {partition}: first offset read {first}, log starts at {start}"
                ));
            }
        }
    }
    match broken {
        Some(why) => Err(why),
        None => Ok((starts, read)),
    }
}

/// Where a schedule's data lives: a RAM disk when there is one (syncs of the engine's own
/// metadata files then cost nothing), except for one io_uring schedule in sixteen, which runs on
/// the temporary directory's file system so that `O_DIRECT` (refused by tmpfs) is covered.
fn scratch_dir(seed: u64, backend: SimBackend) -> ScratchDir {
    let shm = Path::new("/dev/shm");
    let direct_io_run = backend == SimBackend::Uring && seed % 16 == 3;
    if !direct_io_run && shm.is_dir() {
        ScratchDir::new_in(shm)
    } else {
        ScratchDir::new()
    }
}

/// Where a fresh consumer of `partition` starts reading.
fn consumer_start(engine: &Engine, partition: u32) -> Result<i64, String> {
    let config = ConsumerConfig {
        start: StartFrom::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = engine
        .consumer_with(TOPIC, config)
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .assign([partition])
        .map_err(|e| format!("assign: {e}"))?;
    Ok(consumer.position(partition).unwrap_or(0))
}

/// Where a failing schedule is replayed from: one command line.
pub fn replay_command(seed: u64, backend: SimBackend) -> String {
    format!(
        "RILL_SIM_SEED={seed:#x} RILL_SIM_BACKEND={} cargo test -p rill-engine --test storage_sim -- replay --nocapture",
        backend.name()
    )
}
