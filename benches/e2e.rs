//! The engine end to end against the disk it writes to, in one run:
//!
//! - `a-ceiling`: the raw ceiling, io_uring `O_DIRECT` 1 MiB writes, several in flight, ending
//!   with one `fdatasync` (the loop of the `disk` bench, shared through `support/ceiling.rs`);
//! - `b-append-1KiB`: producers send 1 KiB records (ack `Written`, default batching) into a
//!   topic with one partition per shard; timed until every producer's `flush` returns;
//! - `c-produce-consume-1KiB`: the same while a consumer reads the topic; timed until the
//!   consumer has seen every record;
//! - `d-produce-consume-100B`: as (c) with 100-byte records, in records per second.
//!
//! Every engine iteration opens a fresh engine in a fresh directory and shuts it down and
//! removes the directory afterwards, untimed; the shutdown syncs, so (b) also reports the rate
//! through that sync ("until close"), the figure that compares with (a) byte for byte: (a) ends
//! with an `fdatasync`, while `flush` at ack `Written` only waits for the page cache.
//!
//! Criterion reports each case; a summary printed at the end adds what criterion cannot: the
//! ratios (b)/(a) and (c)/(a) in MB/s, (d) in records/s, the engine's I/O backend, and where
//! the CPU went: run time per record of each thread role (from the kernel's per-thread
//! accounting), how busy the whole machine was, and the rate that CPU cost allows if the engine
//! had every core to itself ("cap"). On a small shared machine, where shards, producers and the
//! consumer compete with other tenants for the same cores, the cost per record is the steadier
//! figure; the rates move with the neighbours' load.
//!
//! Files go to a temporary directory under `RILL_BENCH_DIR` (default: the system temporary
//! directory), which should be on the disk under test. `RILL_E2E_PRODUCERS` sets the number of
//! producer threads (default: one per shard), `RILL_E2E_PARTITIONS` the topic's partitions
//! (default: one per shard); `RILL_E2E_DIRECT_IO=0` makes the engine write
//! through the page cache instead of with `O_DIRECT` (`EngineConfig::direct_io`).

#[cfg(target_os = "linux")]
#[path = "support/ceiling.rs"]
mod ceiling;

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    use criterion::{Criterion, SamplingMode, Throughput};
    use rill::{ConsumerConfig, Seek, StartFrom};
    use rill::{DirectIo, Engine, EngineConfig};
    use rill::{ProducerConfig, ProducerRecord};

    use crate::ceiling::{self, CHUNK};

    const TOPIC: &str = "e2e";
    /// Payload per iteration of the 1 KiB cases and of the ceiling: large enough that start-up
    /// and the last partial batch are noise, small enough that the page cache never reaches its
    /// dirty limit within one iteration.
    const BYTES_PER_ITER: u64 = 256 << 20;
    const LARGE: usize = 1024;
    const SMALL: usize = 100;
    const SMALL_RECORDS: u64 = 2_000_000;
    /// A consumer that sees nothing new for this long has lost records.
    const STALL: Duration = Duration::from_secs(30);

    /// One timed iteration.
    #[derive(Clone, Copy, Debug, Default)]
    struct Sample {
        records: u64,
        payload: u64,
        /// Bytes of segment files after the close: payload plus batch and record framing.
        on_disk: u64,
        elapsed: Duration,
        /// From the start until the engine's shutdown (and its sync) returned.
        until_close: Duration,
        cpu: Cpu,
    }

    /// Run time on a CPU during the timed part, per thread role.
    #[derive(Clone, Copy, Debug, Default)]
    struct Cpu {
        producers: Duration,
        shards: Duration,
        consumer: Duration,
        /// Fraction of the machine's CPU time (all cores, all processes) not idle.
        machine_busy: f64,
    }

    struct Case {
        /// The letter the summary's ratios refer to.
        key: char,
        name: &'static str,
        samples: Vec<Sample>,
    }

    /// What the engine chose for itself, for the summary.
    #[derive(Clone, Copy)]
    struct EngineInfo {
        backend: &'static str,
        shards: usize,
    }

    #[derive(Clone, Copy)]
    struct Workload {
        record_bytes: usize,
        records: u64,
        consume: bool,
    }

    /// Nanoseconds this thread has run, as the scheduler accounts it.
    fn thread_run_time() -> Duration {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map_or(Duration::ZERO, Duration::from_nanos)
    }

    /// Run time of each of this process's shard threads, by thread id.
    fn shard_run_times() -> HashMap<String, u64> {
        let mut out = HashMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for task in tasks.flatten() {
            let path = task.path();
            let is_shard = std::fs::read_to_string(path.join("comm"))
                .is_ok_and(|comm| comm.starts_with("rill-shard"));
            let run = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            if let (true, Some(run)) = (is_shard, run) {
                out.insert(task.file_name().to_string_lossy().into_owned(), run);
            }
        }
        out
    }

    /// (busy, total) jiffies of the whole machine; idle and iowait count as not busy.
    fn machine_jiffies() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().next() else {
            return (0, 0);
        };
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        (total - idle, total)
    }

    fn segment_bytes(dir: &Path) -> u64 {
        let mut total = 0;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                total += segment_bytes(&path);
            } else if path.extension().is_some_and(|e| e == "log") {
                total += entry.metadata().map_or(0, |m| m.len());
            }
        }
        total
    }

    fn producer_threads(shards: usize) -> usize {
        std::env::var("RILL_E2E_PRODUCERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(shards)
    }

    fn partition_count(shards: usize) -> usize {
        std::env::var("RILL_E2E_PARTITIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(shards)
    }

    /// Whether the engine writes with `O_DIRECT` (the default) or through the page cache.
    fn direct_io() -> bool {
        std::env::var("RILL_E2E_DIRECT_IO").map_or(true, |v| v != "0")
    }

    /// Panics unless the topic's partitions end, in sum, exactly at `records`: offsets are
    /// dense from 0, so a lost or duplicated batch shows here even where no consumer counted.
    fn check_end_offsets(engine: &Engine, records: u64) {
        let mut probe = engine
            .consumer(TOPIC)
            .unwrap_or_else(|e| panic!("consumer: {e}"));
        probe.assign_all().unwrap_or_else(|e| panic!("assign: {e}"));
        let end: i64 = (0..probe.partitions())
            .map(|p| {
                probe
                    .seek(p, Seek::Latest)
                    .unwrap_or_else(|e| panic!("seek: {e}"))
            })
            .sum();
        assert_eq!(
            end, records as i64,
            "the log holds {end} records, {records} were sent"
        );
    }

    /// Opens a fresh engine, runs the workload, shuts down and removes everything.
    fn engine_iteration(work: Workload, info: &mut Option<EngineInfo>) -> Sample {
        let base = ceiling::bench_dir();
        let dir = tempfile::tempdir_in(&base)
            .unwrap_or_else(|e| panic!("temp dir in {}: {e}", base.display()));
        let engine = Engine::open(EngineConfig {
            direct_io: if direct_io() {
                DirectIo::On
            } else {
                DirectIo::Off
            },
            ..EngineConfig::new(dir.path())
        })
        .unwrap_or_else(|e| panic!("open engine: {e}"));
        let partitions = partition_count(engine.shard_count());
        *info = Some(EngineInfo {
            backend: engine.backend(),
            shards: engine.shard_count(),
        });
        engine
            .create_topic(TOPIC, partitions as u32)
            .unwrap_or_else(|e| panic!("create topic: {e}"));
        let threads = producer_threads(partitions);
        let producers: Vec<_> = (0..threads)
            .map(|_| {
                engine
                    .producer_with(TOPIC, ProducerConfig::default())
                    .unwrap_or_else(|e| panic!("producer: {e}"))
            })
            .collect();
        let mut consumer = engine
            .consumer_with(
                TOPIC,
                ConsumerConfig {
                    start: StartFrom::Earliest,
                    ..ConsumerConfig::default()
                },
            )
            .unwrap_or_else(|e| panic!("consumer: {e}"));
        consumer
            .assign_all()
            .unwrap_or_else(|e| panic!("assign: {e}"));

        let go = Barrier::new(threads + 1 + usize::from(work.consume));
        let (started, done, cpu, shard_run) = std::thread::scope(|scope| {
            let go = &go;
            let mut handles = Vec::new();
            for (id, mut producer) in producers.into_iter().enumerate() {
                // Each producer owns the partitions congruent to its id, so producers never
                // share a partition's batch and every partition gets traffic.
                let mine: Vec<u32> = (0..partitions as u32)
                    .filter(|p| *p as usize % threads == id)
                    .collect();
                let mine = if mine.is_empty() {
                    vec![(id % partitions) as u32]
                } else {
                    mine
                };
                let count = work.records / threads as u64
                    + u64::from((id as u64) < work.records % threads as u64);
                let handle = std::thread::Builder::new()
                    .name(format!("e2e-producer-{id}"))
                    .spawn_scoped(scope, move || {
                        let value: Vec<u8> = (0..work.record_bytes).map(|i| i as u8).collect();
                        go.wait();
                        let cpu_start = thread_run_time();
                        for i in 0..count {
                            let record = ProducerRecord {
                                partition: Some(mine[i as usize % mine.len()]),
                                ..ProducerRecord::new(None, &value)
                            };
                            producer
                                .send(record)
                                .unwrap_or_else(|e| panic!("send: {e}"));
                        }
                        producer.flush().unwrap_or_else(|e| panic!("flush: {e}"));
                        (Instant::now(), thread_run_time() - cpu_start)
                    })
                    .unwrap_or_else(|e| panic!("spawn producer: {e}"));
                handles.push(handle);
            }
            let reader = work.consume.then(|| {
                std::thread::Builder::new()
                    .name("e2e-consumer".into())
                    .spawn_scoped(scope, move || {
                        go.wait();
                        let cpu_start = thread_run_time();
                        let mut seen = 0u64;
                        let mut progress = Instant::now();
                        while seen < work.records {
                            let polled = consumer
                                .poll(Duration::from_millis(100))
                                .unwrap_or_else(|e| panic!("poll: {e}"));
                            let got = polled
                                .for_each_record(|_, record| {
                                    let len = record.value.map_or(0, <[u8]>::len);
                                    assert_eq!(len, work.record_bytes, "record mangled");
                                })
                                .unwrap_or_else(|e| panic!("read: {e}"));
                            if got > 0 {
                                seen += got;
                                progress = Instant::now();
                            } else if progress.elapsed() > STALL {
                                panic!("consumer saw {seen} of {} records: lost", work.records);
                            }
                        }
                        assert_eq!(seen, work.records, "consumer saw records never sent");
                        (Instant::now(), thread_run_time() - cpu_start)
                    })
                    .unwrap_or_else(|e| panic!("spawn consumer: {e}"))
            });
            let shards_before = shard_run_times();
            let jiffies_before = machine_jiffies();
            go.wait();
            let started = Instant::now();
            let mut cpu = Cpu::default();
            let mut done = started;
            for handle in handles {
                let (finished, run) = handle.join().unwrap_or_else(|_| panic!("producer died"));
                done = done.max(finished);
                cpu.producers += run;
            }
            if let Some(reader) = reader {
                let (finished, run) = reader.join().unwrap_or_else(|_| panic!("consumer died"));
                done = finished;
                cpu.consumer = run;
            }
            let jiffies_after = machine_jiffies();
            let shards_after = shard_run_times();
            let shard_ns: u64 = shards_after
                .iter()
                .filter_map(|(tid, after)| Some(after - shards_before.get(tid)?))
                .sum();
            let busy = jiffies_after.0.saturating_sub(jiffies_before.0);
            let total = jiffies_after.1.saturating_sub(jiffies_before.1);
            cpu.machine_busy = if total > 0 {
                busy as f64 / total as f64
            } else {
                0.0
            };
            (started, done, cpu, Duration::from_nanos(shard_ns))
        });
        check_end_offsets(&engine, work.records);
        engine
            .shutdown()
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
        let until_close = started.elapsed();
        let on_disk = segment_bytes(dir.path());
        drop(dir);
        Sample {
            records: work.records,
            payload: work.records * work.record_bytes as u64,
            on_disk,
            elapsed: done - started,
            until_close,
            cpu: Cpu {
                shards: shard_run,
                ..cpu
            },
        }
    }

    fn e2e(c: &mut Criterion) -> (Vec<Case>, Option<EngineInfo>) {
        let mut cases = Vec::new();
        let mut info = None;
        let base = ceiling::bench_dir();
        eprintln!("e2e bench: writing under {}", base.display());
        let mut group = c.benchmark_group("e2e");
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(10));
        // An iteration is hundreds of milliseconds: criterion's linear ramp would need minutes.
        group.sampling_mode(SamplingMode::Flat);

        match ceiling::writer() {
            Ok(mut w) => {
                let dir = tempfile::tempdir_in(&base)
                    .unwrap_or_else(|e| panic!("temp dir in {}: {e}", base.display()));
                let file = ceiling::open(&dir.path().join("ceiling"), true);
                let chunks = BYTES_PER_ITER / CHUNK as u64;
                let mut samples = Vec::new();
                group.throughput(Throughput::Bytes(BYTES_PER_ITER));
                group.bench_function("a-ceiling-uring-direct-1MiB", |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let elapsed = ceiling::uring_loop(
                                &mut w,
                                &file,
                                chunks,
                                ceiling::FileState::Sparse,
                            );
                            samples.push(Sample {
                                payload: BYTES_PER_ITER,
                                on_disk: BYTES_PER_ITER,
                                elapsed,
                                until_close: elapsed,
                                ..Sample::default()
                            });
                            total += elapsed;
                        }
                        total
                    });
                });
                cases.push(Case {
                    key: 'a',
                    name: "a ceiling: uring O_DIRECT 1 MiB",
                    samples,
                });
            }
            Err(e) => eprintln!("e2e bench: SKIPPED the io_uring ceiling: {e}"),
        }

        let large = BYTES_PER_ITER / LARGE as u64;
        let engine_cases = [
            (
                'b',
                "b-append-1KiB",
                "b append 1 KiB (until flush)",
                Workload {
                    record_bytes: LARGE,
                    records: large,
                    consume: false,
                },
            ),
            (
                'c',
                "c-produce-consume-1KiB",
                "c produce+consume 1 KiB",
                Workload {
                    record_bytes: LARGE,
                    records: large,
                    consume: true,
                },
            ),
            (
                'd',
                "d-produce-consume-100B",
                "d produce+consume 100 B",
                Workload {
                    record_bytes: SMALL,
                    records: SMALL_RECORDS,
                    consume: true,
                },
            ),
        ];
        for (key, id, name, work) in engine_cases {
            group.throughput(if work.record_bytes == SMALL {
                Throughput::Elements(work.records)
            } else {
                Throughput::Bytes(work.records * work.record_bytes as u64)
            });
            let mut samples = Vec::new();
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let sample = engine_iteration(work, &mut info);
                        total += sample.elapsed;
                        samples.push(sample);
                    }
                    total
                });
            });
            cases.push(Case { key, name, samples });
        }
        group.finish();
        (cases, info)
    }

    fn median(mut values: Vec<f64>) -> f64 {
        if values.is_empty() {
            return f64::NAN;
        }
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }

    fn mb_per_s(s: &Sample, time: Duration) -> f64 {
        s.payload as f64 / time.as_secs_f64() / 1e6
    }

    fn report(cases: &[Case], info: Option<EngineInfo>) {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!();
        match info {
            Some(info) => println!(
                "e2e summary: engine backend {}{}, {} shards, {} producer thread(s), {cores} cores; \
                 medians over iterations",
                info.backend,
                if direct_io() { "" } else { " (page cache)" },
                info.shards,
                producer_threads(info.shards)
            ),
            None => println!("e2e summary: the engine did not run"),
        }
        println!(
            "{:<32} {:>5} {:>7} {:>7} {:>9} {:>22} {:>10} {:>5}",
            "case",
            "iters",
            "MB/s",
            "Mrec/s",
            "disk MB/s",
            "CPU ns/rec prod/shd/cons",
            "cap Mrec/s",
            "busy%"
        );
        let mut mb_rates = HashMap::new();
        let mut rec_rates = HashMap::new();
        for case in cases.iter().filter(|c| !c.samples.is_empty()) {
            let s = &case.samples;
            let rate = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
            let mbs = rate(|x| mb_per_s(x, x.elapsed));
            let disk = rate(|x| x.on_disk as f64 / x.elapsed.as_secs_f64() / 1e6);
            mb_rates.insert(case.key, mbs);
            let records: u64 = s.iter().map(|x| x.records).sum();
            if records == 0 {
                println!(
                    "{:<32} {:>5} {:>7.0} {:>7} {:>9.0}",
                    case.name,
                    s.len(),
                    mbs,
                    "-",
                    disk
                );
                continue;
            }
            let recs = rate(|x| x.records as f64 / x.elapsed.as_secs_f64() / 1e6);
            rec_rates.insert(case.key, recs);
            let per_record = |f: fn(&Cpu) -> Duration| {
                s.iter().map(|x| f(&x.cpu).as_nanos() as f64).sum::<f64>() / records as f64
            };
            let (producer, shard, consumer) = (
                per_record(|c| c.producers),
                per_record(|c| c.shards),
                per_record(|c| c.consumer),
            );
            // The rate the engine's own CPU cost would allow with every core to itself and
            // perfect overlap: separates the engine's cost from other tenants of the machine.
            let cap = cores as f64 * 1e3 / (producer + shard + consumer);
            let busy = 100.0 * median(s.iter().map(|x| x.cpu.machine_busy).collect());
            println!(
                "{:<32} {:>5} {:>7.0} {:>7.2} {:>9.0} {:>22} {:>10.2} {:>5.0}",
                case.name,
                s.len(),
                mbs,
                recs,
                disk,
                format!("{producer:.0}/{shard:.0}/{consumer:.0}"),
                cap,
                busy
            );
            if case.key == 'b' {
                let closed = rate(|x| mb_per_s(x, x.until_close));
                println!(
                    "{:<32} {:>5} {:>7.0}",
                    "b until close (synced)",
                    s.len(),
                    closed
                );
                // 'B': (b) through the sync, the figure comparable with (a) byte for byte.
                mb_rates.insert('B', closed);
            }
        }
        let ratio = |case: char| match (mb_rates.get(&'a'), mb_rates.get(&case)) {
            (Some(ceiling), Some(rate)) => format!("{:.2}", rate / ceiling),
            _ => "n/a".into(),
        };
        println!(
            "ratios in MB/s: (b)/(a) = {} (target >= 0.80; until close: {}), \
             (c)/(a) = {} (target >= 0.70)",
            ratio('b'),
            ratio('B'),
            ratio('c')
        );
        if let Some(recs) = rec_rates.get(&'d') {
            println!("(d) = {recs:.2} M records/s end to end (target >= 5)");
        }
    }

    pub fn main() {
        let mut c = Criterion::default().configure_from_args();
        let (cases, info) = e2e(&mut c);
        c.final_summary();
        report(&cases, info);
    }
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("e2e bench: the io_uring ceiling and the thread accounting are Linux-only");
}
