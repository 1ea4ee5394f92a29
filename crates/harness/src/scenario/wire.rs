//! Wire scenarios: the same records through Kafka's protocol over loopback, from librdkafka
//! (through the `rdkafka` crate) to a rill server started in this process, so they stand beside
//! the in-process scenarios of the same run.
//!
//! - `wire produce`: one librdkafka producer, `acks=1` (the server acknowledges once the batch
//!   is written), as fast as the client takes records; the clock stops when the last delivery
//!   report is in and the server has shut down (every segment synced), as the in-process
//!   produce stops when its engine has.
//! - `wire consume`: one librdkafka consumer reads everything back from the start, after the
//!   segment files are evicted from the page cache (as the in-process consume).
//! - `wire e2e`: a paced producer (open loop, at the rate the caller gives: half the wire
//!   produce rate) and a consumer at once; latency from each record's scheduled send time to
//!   the consumer's poll returning it. `linger.ms=0` on this producer, since latency is the point.
//!
//! The server's start-up time and idle memory are measured on a child process ([`facts`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rill_server::{Server, ServerConfig};

use super::{Outcome, Window, named, spawn_named};
use crate::measure::{Latency, Progress};
use crate::spec::{Spec, TOPIC};
use crate::workload::{Clock, Ledger, Payload, Tally};

pub mod facts;

/// Longest the harness waits for the client to deliver or receive anything more.
const STALL: Duration = Duration::from_secs(30);
/// Every 16th record of `wire e2e` is timed, as in the in-process `e2e`.
const STAMP_EVERY: u64 = 16;

/// The client library, for the report.
pub fn client_name() -> String {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    format!("librdkafka {version} (rdkafka crate)")
}

/// A rill server on an ephemeral loopback port, in this process, on `dir`.
pub fn start_server(dir: &Path, spec: &Spec) -> anyhow::Result<Server> {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = ServerConfig::new(vec![listen]);
    config.default_partitions = spec.partitions;
    Server::open(spec.engine_config(dir), config, &[]).context("start the rill server")
}

fn bootstrap(server: &Server) -> anyhow::Result<String> {
    server
        .local_addrs()
        .first()
        .map(ToString::to_string)
        .context("the server listens nowhere")
}

/// Produce then consume over the wire, in `dir`; `between` runs between the two (the suite's
/// ceiling sample), before the page cache is emptied for the consume.
pub fn produce_then_consume(
    dir: &Path,
    spec: &Spec,
    between: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<[Outcome; 2]> {
    let server = start_server(dir, spec)?;
    let addr = bootstrap(&server)?;
    let records = match spec.amount {
        crate::spec::Amount::Records(n) => n,
        crate::spec::Amount::Duration(_) => bail!("wire produce takes a record count"),
    };
    let produce = produce(server, &addr, spec, records)?;
    between()?;
    crate::cache::evict(dir)?;
    let server = start_server(dir, spec)?;
    let addr = bootstrap(&server)?;
    let consumed = consume(&addr, spec, produce.records);
    let stopped = server.shutdown().context("stop the rill server");
    let consume = consumed?;
    stopped?;
    Ok([produce, consume])
}

/// Counts delivery reports; runs on the thread that polls the producer.
#[derive(Default)]
struct Deliveries {
    ok: AtomicU64,
    failed: AtomicU64,
    progress: Progress,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(message) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let bytes = message.payload().map_or(0, <[u8]>::len) as u64;
                self.progress.add(1, bytes);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn producer(addr: &str, linger_ms: &str) -> anyhow::Result<BaseProducer<Deliveries>> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "1")
        .set("linger.ms", linger_ms)
        .set("compression.type", "none")
        // No idempotence: rill's idempotent producer is another piece of work.
        .set("enable.idempotence", "false")
        .create_with_context(Deliveries::default())
        .context("create the librdkafka producer")
}

/// Metadata for the topic, which the server creates on first mention: the first connection
/// and the topic's creation are not in the timed span.
fn warm_up(client: &rdkafka::client::Client<impl ClientContext>) -> anyhow::Result<()> {
    client
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .context("fetch metadata for the bench topic")?;
    Ok(())
}

/// Sends one record, waiting (bounded) while librdkafka's queue is full.
fn send(producer: &BaseProducer<Deliveries>, value: &[u8]) -> anyhow::Result<()> {
    let mut record = BaseRecord::<(), [u8]>::to(TOPIC).payload(value);
    let deadline = Instant::now() + STALL;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if Instant::now() > deadline {
                    bail!("librdkafka's queue stayed full for {STALL:?}");
                }
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error).context("librdkafka refused a record"),
        }
    }
}

/// Timed, like the in-process produce, until the server has shut down (every segment synced),
/// so the two rates end at the same place: records on the disk.
fn produce(server: Server, addr: &str, spec: &Spec, records: u64) -> anyhow::Result<Outcome> {
    let producer = producer(addr, &format!("{}", spec.linger.as_secs_f64() * 1e3))?;
    warm_up(producer.client())?;
    let name = named("wire produce", spec.record_bytes);
    let window = Window::open(&name, records);
    let mut payload = Payload::new(0, spec.record_bytes);
    let end = std::thread::scope(|scope| {
        let handle = spawn_named(scope, "bench-producer-0".to_owned(), || {
            for seq in 0..records {
                send(&producer, payload.stamp(seq, 0))?;
                if seq.is_multiple_of(1024) {
                    producer.poll(Duration::ZERO);
                }
            }
            producer
                .flush(Duration::from_secs(120))
                .context("flush the librdkafka producer")?;
            Ok(Instant::now())
        })?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the wire producer thread panicked"))?
    });
    let delivered = producer.context().ok.load(Ordering::Relaxed);
    drop(producer);
    let stopped = server.shutdown().context("stop the rill server");
    let end = end.and_then(|_| stopped.map(|()| Instant::now()))?;
    let measured = window.close(end);
    Ok(Outcome {
        name,
        spec: spec.clone(),
        backend: "wire".to_owned(),
        records: delivered,
        elapsed: measured.elapsed,
        latency: Latency::new(),
        latency_of: "not measured (delivery reports arrive in batches)".to_owned(),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: records.saturating_sub(delivered),
        duplicates: 0,
        pause_max: None,
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    })
}

fn consumer(addr: &str, partitions: u32) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "rill-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("create the librdkafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let partition = i32::try_from(partition).context("partition number")?;
        assignment
            .add_partition_offset(TOPIC, partition, rdkafka::Offset::Beginning)
            .context("assign a partition")?;
    }
    consumer
        .assign(&assignment)
        .context("assign the partitions")?;
    Ok(consumer)
}

/// What a wire consumer thread saw.
struct Received {
    end_to_end: Latency,
    completed_at: Option<Instant>,
}

/// Polls until `expected` records are in the ledger, or nothing arrives for [`STALL`].
fn receive(
    consumer: &BaseConsumer,
    ledger: &Ledger,
    expected: &AtomicU64,
    clock: Clock,
    progress: &Progress,
) -> anyhow::Result<Received> {
    let mut end_to_end = Latency::new();
    let mut last_seen = Instant::now();
    loop {
        if ledger.delivered() >= expected.load(Ordering::Acquire) {
            return Ok(Received {
                end_to_end,
                completed_at: Some(Instant::now()),
            });
        }
        if last_seen.elapsed() > STALL {
            return Ok(Received {
                end_to_end,
                completed_at: None,
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.context("librdkafka consumer error")?;
        last_seen = Instant::now();
        let mut tally = Tally::default();
        let sent_ns = ledger.mark(message.payload(), &mut tally);
        ledger.add(tally);
        progress.add(1, message.payload_len() as u64);
        if let Some(sent_ns) = sent_ns.filter(|&ns| ns > 0) {
            end_to_end.record(Duration::from_nanos(clock.now_ns().saturating_sub(sent_ns)));
        }
    }
}

fn consume(addr: &str, spec: &Spec, records: u64) -> anyhow::Result<Outcome> {
    let consumer = consumer(addr, spec.partitions)?;
    let ledger = Ledger::new(&[records], spec.record_bytes);
    let name = named("wire consume", spec.record_bytes);
    let window = Window::open(&name, records);
    let expected = AtomicU64::new(records);
    let received = std::thread::scope(|scope| {
        let handle = spawn_named(scope, "bench-consumer-0".to_owned(), || {
            receive(
                &consumer,
                &ledger,
                &expected,
                Clock::start(),
                &window.progress,
            )
        })?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the wire consumer thread panicked"))?
    })?;
    let measured = window.close(received.completed_at.unwrap_or_else(Instant::now));
    Ok(Outcome {
        name,
        spec: spec.clone(),
        backend: "wire".to_owned(),
        records: ledger.delivered(),
        elapsed: measured.elapsed,
        latency: Latency::new(),
        latency_of: "not measured (librdkafka prefetches)".to_owned(),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: ledger.lost(&[records]),
        duplicates: ledger.duplicates(),
        pause_max: None,
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    })
}

/// Producer and consumer at once over the wire, the producer paced at `rate` records per
/// second for the spec's duration (or record count).
pub fn end_to_end(dir: &Path, spec: &Spec, rate: f64) -> anyhow::Result<Outcome> {
    let server = start_server(dir, spec)?;
    let addr = bootstrap(&server)?;
    let outcome = paced(&addr, spec, rate);
    let stopped = server.shutdown().context("stop the rill server");
    let outcome = outcome?;
    stopped?;
    Ok(outcome)
}

fn paced(addr: &str, spec: &Spec, rate: f64) -> anyhow::Result<Outcome> {
    let producer = producer(addr, "0")?;
    warm_up(producer.client())?;
    let consumer = consumer(addr, spec.partitions)?;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let (deadline, cap) = match spec.amount {
        crate::spec::Amount::Records(n) => (None, n),
        crate::spec::Amount::Duration(d) => (Some(d), spec.records_per_producer()),
    };
    let ledger = Ledger::new(&[cap], spec.record_bytes);
    let name = format!(
        "{} at {:.0}k/s",
        named("wire e2e", spec.record_bytes),
        rate / 1e3
    );
    let window = Window::open(&name, 0);
    let expected = AtomicU64::new(u64::MAX);
    let clock = Clock::start();
    let (sent, received) = std::thread::scope(|scope| {
        let reader = spawn_named(scope, "bench-consumer-0".to_owned(), || {
            receive(&consumer, &ledger, &expected, clock, &window.progress)
        })?;
        let start = Instant::now() + Duration::from_millis(5);
        let plan = Paced {
            start,
            interval,
            end: deadline.map(|d| start + d),
            cap,
        };
        let sent = send_paced(&producer, spec.record_bytes, &plan, clock);
        expected.store(*sent.as_ref().unwrap_or(&0), Ordering::Release);
        let received = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the wire consumer thread panicked"))?;
        anyhow::Ok((sent?, received?))
    })?;
    let measured = window.close(received.completed_at.unwrap_or_else(Instant::now));
    let mut spec = spec.clone();
    spec.rate = rate as u64;
    Ok(Outcome {
        name,
        spec,
        backend: "wire".to_owned(),
        records: ledger.delivered(),
        elapsed: measured.elapsed,
        latency: received.end_to_end,
        latency_of: "scheduled send time to a librdkafka consumer's poll returning the record"
            .to_owned(),
        cpu: measured.cpu,
        cpu_by_role: measured.cpu_by_role,
        peak_rss_mb: measured.peak_rss_mb,
        lost: ledger.lost(&[sent]),
        duplicates: ledger.duplicates(),
        pause_max: None,
        timeline: measured.timeline,
        ceiling_neighbours: (0.0, 0.0),
    })
}

/// An open-loop schedule: record `i` is due at `start + i * interval`.
struct Paced {
    start: Instant,
    interval: Duration,
    end: Option<Instant>,
    cap: u64,
}

/// Sends on the schedule from this thread (named as a producer for the CPU split); returns how
/// many were sent. Every [`STAMP_EVERY`]th record carries its scheduled time.
fn send_paced(
    producer: &BaseProducer<Deliveries>,
    record_bytes: usize,
    plan: &Paced,
    clock: Clock,
) -> anyhow::Result<u64> {
    let sending = std::thread::scope(|scope| {
        let handle = spawn_named(scope, "bench-producer-0".to_owned(), || {
            let mut payload = Payload::new(0, record_bytes);
            let mut seq = 0u64;
            while seq < plan.cap {
                let due = plan.start + plan.interval.mul_f64(seq as f64);
                if plan.end.is_some_and(|end| due >= end) {
                    break;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    // Serve delivery reports while waiting a millisecond or more; sleep
                    // through shorter waits (librdkafka rounds them to a zero-timeout poll,
                    // which would spin and take a core from the client and the server).
                    if wait >= Duration::from_millis(1) {
                        producer.poll(Duration::from_millis(1));
                    } else {
                        std::thread::sleep(wait);
                    }
                    continue;
                }
                let stamp = if seq.is_multiple_of(STAMP_EVERY) {
                    clock.at_ns(due)
                } else {
                    0
                };
                send(producer, payload.stamp(seq, stamp))?;
                seq += 1;
            }
            producer
                .flush(Duration::from_secs(60))
                .context("flush the librdkafka producer")?;
            Ok(seq)
        })?;
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the wire producer thread panicked"))?
    })?;
    Ok(sending)
}
