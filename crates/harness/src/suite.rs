//! The default suite: ceilings first, then every scenario, each in a fresh directory that is
//! removed after it, so one scenario's files never slow the next.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::ceiling;
use crate::measure::Latency;
use crate::peers::{self, PeerPhase, PeerWorkload};
use crate::report::{Ceilings, Report, ScenarioReport};
use crate::scenario::{self, Outcome};
use crate::spec::{Amount, Knobs, Spec};
use crate::trickle::{self, OpenLoop, Pace};
use crate::workdir::in_dir;
use rill_engine::AckLevel;

/// One scenario family, for running a subcommand alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    Throughput,
    E2e,
    Durable,
    Group,
    Rate,
    Peers,
    Wire,
}

pub struct Plan {
    pub only: Option<Only>,
    pub quick: bool,
    pub knobs: Knobs,
}

impl Plan {
    fn wants(&self, family: Only) -> bool {
        self.only.is_none_or(|only| only == family)
    }

    /// Scales the full suite's amounts down for `--quick`.
    fn records(&self, full: u64) -> Amount {
        Amount::Records(if self.quick {
            (full / 16).max(1000)
        } else {
            full
        })
    }

    fn seconds(&self, full: f64) -> Amount {
        Amount::Duration(Duration::from_secs_f64(if self.quick {
            full / 6.0
        } else {
            full
        }))
    }

    /// (record bytes, records): 1 GiB of each suite size, or of the one size asked for.
    fn volumes(&self) -> Vec<(usize, u64)> {
        let sizes = match self.knobs.record_bytes {
            Some(bytes) => vec![bytes],
            None => RECORD_SIZES.to_vec(),
        };
        sizes
            .into_iter()
            .map(|bytes| (bytes, GIB / bytes.max(1) as u64))
            .collect()
    }

    fn spec(&self, record_bytes: usize, amount: Amount, tune: impl FnOnce(&mut Spec)) -> Spec {
        let mut spec = Spec::new(record_bytes, amount);
        tune(&mut spec);
        self.knobs.apply(&mut spec);
        spec
    }
}

const GIB: u64 = 1 << 30;
/// Record sizes of the throughput and end-to-end scenarios and of the peers, each run with
/// 1 GiB of values.
const RECORD_SIZES: [usize; 2] = [1024, 100];

pub fn run(root: &Path, plan: &Plan) -> anyhow::Result<Report> {
    let started_at = jiff::Timestamp::now().to_string();
    let machine = crate::machine::describe(root);
    eprintln!(
        "rill-bench: {} ({} cores), {} on {}",
        machine.cpu_model, machine.cores, machine.file_system, machine.kernel
    );
    let ceilings = measure_ceilings(root, plan.quick)?;
    eprintln!(
        "ceilings: disk {:.0} MB/s ({}), memcpy {:.1} GB/s",
        ceilings.disk_write_mb_s, ceilings.disk_write_method, ceilings.memcpy_gb_s
    );
    let mut pairing = Pairing {
        root,
        bytes_per_way: ceilings.neighbour_sample_bytes_per_way,
        last: ceilings.disk_write_mb_s,
    };
    let (mut outcomes, open_loops) = run_scenarios(root, plan, &mut pairing)?;
    let wire = if plan.wants(Only::Wire) {
        run_wire(root, plan, &mut pairing, &mut outcomes)?
    } else {
        None
    };
    let (peers, peer_rounds) = if plan.wants(Only::Peers) {
        run_peers(root, plan, &outcomes, ceilings.disk_write_mb_s)?
    } else {
        (Vec::new(), Vec::new())
    };
    let scenarios = outcomes
        .iter()
        .map(|o| {
            let mut entry = o.report(ceilings.disk_write_mb_s);
            if let Some(open_loop) = open_loops.iter().find(|l| l.name == entry.name) {
                open_loop.annotate(&mut entry);
            }
            entry
        })
        .collect();
    Ok(Report {
        rill_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        quick: plan.quick,
        machine,
        ceilings,
        scenarios,
        peers,
        peer_rounds,
        wire,
    })
}

/// Wire produce and consume (1 KiB records, a quarter of the in-process volume), the server's
/// start-up and idle footprint, and end to end at half the wire produce rate; the comparison
/// is against the in-process scenarios already in `outcomes`.
#[cfg(feature = "wire")]
fn run_wire(
    root: &Path,
    plan: &Plan,
    pairing: &mut Pairing,
    outcomes: &mut Vec<Outcome>,
) -> anyhow::Result<Option<crate::report::WireReport>> {
    use scenario::wire;
    let bytes = plan.knobs.record_bytes.unwrap_or(1024);
    let spec = plan.spec(bytes, plan.records(GIB / 4 / bytes.max(1) as u64), |_| {});
    let [produce, consume] = in_dir(&root.join("wire-throughput"), |dir| {
        let mut middle = (0.0, 0.0);
        let [mut produce, mut consume] = wire::produce_then_consume(dir, &spec, &mut || {
            middle = pairing.advance()?;
            Ok(())
        })?;
        produce.ceiling_neighbours = middle;
        consume.ceiling_neighbours = pairing.advance()?;
        Ok([produce, consume])
    })?;
    let server = in_dir(&root.join("wire-server"), wire::facts::measure)?;
    let rate = produce.records_per_s() / 2.0;
    let e2e_spec = plan.spec(bytes, plan.seconds(5.0), |_| {});
    let e2e = pairing.around(|| {
        in_dir(&root.join("wire-e2e"), |dir| {
            wire::end_to_end(dir, &e2e_spec, rate)
        })
    })?;
    let in_process = |what: &str| {
        let name = scenario::named(what, bytes);
        outcomes
            .iter()
            .find(|o| o.name == name)
            .map_or(0.0, Outcome::records_per_s)
    };
    let report = crate::report::WireReport {
        client: wire::client_name(),
        produce_ratio_to_in_process: scenario::ratio(
            produce.records_per_s(),
            in_process("produce"),
        ),
        consume_ratio_to_in_process: scenario::ratio(
            consume.records_per_s(),
            in_process("consume"),
        ),
        e2e_offered_per_s: rate,
        server,
    };
    outcomes.extend([produce, consume, e2e]);
    Ok(Some(report))
}

/// Built without the `wire` feature: the report says so instead of carrying wire figures.
#[cfg(not(feature = "wire"))]
fn run_wire(
    _: &Path,
    _: &Plan,
    _: &mut Pairing,
    _: &mut Vec<Outcome>,
) -> anyhow::Result<Option<crate::report::WireReport>> {
    eprintln!(
        "wire scenarios skipped: rill-bench was built without the `wire` feature \
         (cargo run --release -p rill-harness --features wire)"
    );
    Ok(None)
}

fn measure_ceilings(root: &Path, quick: bool) -> anyhow::Result<Ceilings> {
    let bytes = if quick { 32 << 20 } else { 256 << 20 };
    let disk = ceiling::disk(root, bytes, 3).context("measure the disk ceiling")?;
    Ok(Ceilings {
        disk_write_mb_s: disk.median_mb_s(),
        disk_write_method: disk.method.clone(),
        disk_write_samples_mb_s: disk.samples_mb_s.clone(),
        disk_write_ways_mb_s: disk.ways.clone(),
        neighbour_sample_bytes_per_way: if quick { 8 << 20 } else { 128 << 20 },
        memcpy_gb_s: ceiling::memcpy_gb_s(5),
    })
}

/// The disk ceiling sampled between scenarios: the sample after one scenario is the sample
/// before the next, so every scenario has a neighbour on each side, seconds away.
pub(crate) struct Pairing<'a> {
    root: &'a Path,
    bytes_per_way: u64,
    /// The latest sample, MB/s.
    last: f64,
}

impl Pairing<'_> {
    /// Samples the ceiling now; returns (the previous sample, this one).
    fn advance(&mut self) -> anyhow::Result<(f64, f64)> {
        let before = self.last;
        let now = ceiling::sample(self.root, self.bytes_per_way)
            .context("sample the disk ceiling between scenarios")?;
        self.last = now.mb_s;
        Ok((before, now.mb_s))
    }

    /// Runs one scenario and gives it its neighbouring samples.
    fn around(&mut self, run: impl FnOnce() -> anyhow::Result<Outcome>) -> anyhow::Result<Outcome> {
        let mut outcome = run()?;
        outcome.ceiling_neighbours = self.advance()?;
        Ok(outcome)
    }
}

/// Every scenario the plan wants, and what is known of the open-loop ones beyond their outcome.
fn run_scenarios(
    root: &Path,
    plan: &Plan,
    pairing: &mut Pairing,
) -> anyhow::Result<(Vec<Outcome>, Vec<OpenLoop>)> {
    let mut out = Vec::new();
    let mut open_loops = Vec::new();
    let mut step = 0;
    let mut fresh = || {
        step += 1;
        root.join(format!("scenario-{step}"))
    };
    if plan.wants(Only::Throughput) {
        for (bytes, records) in plan.volumes() {
            let spec = plan.spec(bytes, plan.records(records), |_| {});
            out.extend(in_dir(&fresh(), |dir| {
                paired_throughput(dir, &spec, pairing)
            })?);
        }
    }
    if plan.wants(Only::E2e) {
        for (bytes, records) in plan.volumes() {
            let spec = plan.spec(bytes, plan.records(records), |_| {});
            out.push(
                pairing.around(|| in_dir(&fresh(), |dir| scenario::e2e::end_to_end(dir, &spec)))?,
            );
        }
    }
    if plan.wants(Only::Durable) {
        for producers in [1, 8] {
            let spec = plan.spec(1024, plan.seconds(3.0), |s| s.producers = producers);
            out.push(
                pairing
                    .around(|| in_dir(&fresh(), |dir| scenario::durable::durable(dir, &spec)))?,
            );
        }
    }
    if plan.wants(Only::Group) {
        let spec = plan.spec(1024, plan.records(GIB / 2 / 1024), |s| s.partitions = 8);
        out.push(pairing.around(|| in_dir(&fresh(), |dir| scenario::group::group(dir, &spec)))?);
    }
    if plan.wants(Only::Rate) {
        // Small batches and a short linger: at a fixed, modest rate, latency is the point.
        let spec = plan.spec(1024, plan.seconds(5.0), |s| {
            s.batch_bytes = 16 * 1024;
            s.linger = Duration::from_millis(1);
        });
        let outcome = pairing.around(|| in_dir(&fresh(), |dir| scenario::e2e::rate(dir, &spec)))?;
        open_loops.push(OpenLoop {
            name: outcome.name.clone(),
            offered_per_s: spec.rate,
            rate_from: None,
            targets: &[],
        });
        out.push(outcome);
        open_loops.extend(run_trickle(plan, pairing, &mut out, &mut fresh)?);
    }
    Ok((out, open_loops))
}

/// The latency-at-a-trickle rows (see [`crate::trickle`]), each in a fresh directory with the
/// disk ceiling sampled after it. The half-maximum rows take the maximum from the run's
/// `produce 100B`, which runs here (with its consume) when the plan left it out.
fn run_trickle(
    plan: &Plan,
    pairing: &mut Pairing,
    out: &mut Vec<Outcome>,
    fresh: &mut dyn FnMut() -> PathBuf,
) -> anyhow::Result<Vec<OpenLoop>> {
    let mut open_loops = Vec::new();
    let mut max = None;
    for row in trickle::rows(plan.quick) {
        let (per_s, rate_from) = match row.pace {
            Pace::PerSecond(per_s) => (per_s, None),
            Pace::HalfMax => {
                let max_per_s = match max {
                    Some(known) => known,
                    None => *max.insert(max_rate(plan, pairing, out, fresh)?),
                };
                let from = format!(
                    "half the maximum sustainable rate: {} delivered {max_per_s:.0} records/s \
                     in this run",
                    produce_100b()
                );
                (trickle::half(max_per_s), Some(from))
            }
        };
        let mut spec = Spec::new(trickle::RECORD_BYTES, plan.seconds(row.seconds()));
        plan.knobs.apply(&mut spec);
        row.define(&mut spec, per_s);
        let name = row.name();
        let outcome =
            pairing.around(|| in_dir(&fresh(), |dir| scenario::e2e::rate_as(dir, &spec, &name)))?;
        out.push(outcome);
        open_loops.push(OpenLoop {
            name,
            offered_per_s: spec.rate,
            rate_from,
            targets: row.targets,
        });
    }
    Ok(open_loops)
}

/// The produce scenario whose rate the half-maximum rows halve.
fn produce_100b() -> String {
    scenario::named("produce", trickle::RECORD_BYTES)
}

/// Records per second of the run's `produce 100B`; runs it (and its consume, as the suite
/// does) first if the plan did not.
fn max_rate(
    plan: &Plan,
    pairing: &mut Pairing,
    out: &mut Vec<Outcome>,
    fresh: &mut dyn FnMut() -> PathBuf,
) -> anyhow::Result<f64> {
    let name = produce_100b();
    if let Some(produce) = out.iter().find(|o| o.name == name) {
        return Ok(produce.records_per_s());
    }
    eprintln!("{name} runs first: the half-maximum rows offer half its rate");
    let bytes = trickle::RECORD_BYTES;
    let mut spec = plan.spec(bytes, plan.records(GIB / bytes as u64), |_| {});
    spec.record_bytes = bytes;
    let [produce, consume] = in_dir(&fresh(), |dir| paired_throughput(dir, &spec, pairing))?;
    let per_s = produce.records_per_s();
    out.extend([produce, consume]);
    Ok(per_s)
}

/// Produce then consume, with a ceiling sample between them (taken before the page cache is
/// emptied for the consume, so it does not warm anything the consume reads).
fn paired_throughput(
    dir: &Path,
    spec: &Spec,
    pairing: &mut Pairing,
) -> anyhow::Result<[Outcome; 2]> {
    let mut middle = (0.0, 0.0);
    let [mut produce, mut consume] =
        scenario::throughput::produce_then_consume(dir, spec, &mut || {
            middle = pairing.advance()?;
            Ok(())
        })?;
    produce.ceiling_neighbours = middle;
    consume.ceiling_neighbours = pairing.advance()?;
    Ok([produce, consume])
}

/// The peers on the produce/consume workloads, alternating with rill in rounds (see
/// [`crate::rounds`]): a quarter of the suite's volume per run (at least what `--quick` runs),
/// the same record sizes, matched durability. The entries kept for the table are the peers'
/// phases of the last round.
fn run_peers(
    root: &Path,
    plan: &Plan,
    outcomes: &[Outcome],
    disk_mb_s: f64,
) -> anyhow::Result<(Vec<ScenarioReport>, Vec<crate::report::PeerComparison>)> {
    let mut out = Vec::new();
    let mut comparisons = Vec::new();
    let rounds = if plan.quick { 2 } else { PEER_ROUNDS };
    for (bytes, full) in plan.volumes() {
        let spec = plan.spec(bytes, plan.records(full / 4), |_| {});
        let records = match spec.amount {
            Amount::Records(n) => n,
            Amount::Duration(_) => outcomes
                .iter()
                .find(|o| o.name == scenario::named("produce", spec.record_bytes))
                .map_or(full, |o| o.records),
        };
        let mut spec = spec;
        spec.amount = Amount::Records(records);
        let work = PeerWorkload {
            record_bytes: spec.record_bytes,
            records,
            durable: spec.ack == AckLevel::Durable,
        };
        let (compared, last) = crate::rounds::run(root, &spec, &work, rounds)?;
        comparisons.extend(compared);
        out.extend(last.into_iter().map(|p| peer_report(p, &work, disk_mb_s)));
    }
    Ok((out, comparisons))
}

/// Rounds of rill and the peers in the full suite.
const PEER_ROUNDS: usize = 3;

fn peer_report(phase: PeerPhase, work: &PeerWorkload, disk_mb_s: f64) -> ScenarioReport {
    let appending = phase.phase == "append";
    let gb = phase.bytes as f64 / 1e9;
    let mb_per_s = phase.mb_per_s();
    ScenarioReport {
        name: scenario::named(
            &format!("{} {}", phase.peer, phase.phase),
            work.record_bytes,
        ),
        record_bytes: work.record_bytes,
        records: phase.records,
        producers: usize::from(appending),
        consumers: usize::from(!appending),
        partitions: 1,
        backend: phase.peer.to_owned(),
        elapsed_s: phase.elapsed.as_secs_f64(),
        records_per_s: phase.records_per_s(),
        mb_per_s,
        ratio_to_disk: if disk_mb_s > 0.0 {
            mb_per_s / disk_mb_s
        } else {
            0.0
        },
        ratio_to_disk_range: Vec::new(),
        disk_ceiling_neighbours_mb_s: Vec::new(),
        latency_us: Latency::from(phase.latency_ns).summary(),
        latency_of: if appending {
            "one append call (a batch of about 256 KiB)".to_owned()
        } else {
            "one read call (about 1 MiB)".to_owned()
        },
        cpu_s: phase.cpu.as_secs_f64(),
        cpu_cores: scenario::ratio(phase.cpu.as_secs_f64(), phase.elapsed.as_secs_f64()),
        cpu_s_per_gb: if gb > 0.0 {
            phase.cpu.as_secs_f64() / gb
        } else {
            0.0
        },
        cpu_ns_per_record: if phase.records > 0 {
            phase.cpu.as_nanos() as f64 / phase.records as f64
        } else {
            0.0
        },
        cpu_ns_per_record_by_role: Default::default(),
        peak_rss_mb: phase.peak_rss_mb,
        lost_records: phase.lost_records,
        duplicate_records: 0,
        rebalance_pause_ms_max: None,
        timeline: Vec::new(),
        settings: vec![
            ("durable".to_owned(), work.durable.to_string()),
            ("batch_bytes".to_owned(), peers::BATCH_BYTES.to_string()),
        ],
        offered_records_per_s: None,
        targets: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate family of a full plan, shrunk to a few thousand records a row: every
    /// trickle row runs in order, after the `produce 100B` the half-maximum rows need.
    #[test]
    fn rate_family_runs_every_trickle_row_with_its_rate() {
        let root = tempfile::tempdir().unwrap();
        let plan = Plan {
            only: Some(Only::Rate),
            quick: false,
            knobs: Knobs {
                records: Some(2_000),
                no_pin: true,
                shards: Some(1),
                ..Knobs::default()
            },
        };
        let mut pairing = Pairing {
            root: root.path(),
            bytes_per_way: 1 << 20,
            last: 0.0,
        };
        let (outcomes, open_loops) = run_scenarios(root.path(), &plan, &mut pairing).unwrap();
        let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        let mut expected = vec!["rate 100k/s 1KiB"];
        let trickle_names = trickle::names(false);
        expected.extend(trickle_names[..4].iter().map(String::as_str));
        expected.extend(["produce 100B", "consume 100B"]);
        expected.extend(trickle_names[4..].iter().map(String::as_str));
        assert_eq!(names, expected);
        assert!(outcomes.iter().all(|o| o.lost == 0));

        let produced = outcomes[5].records_per_s();
        let offered: Vec<u64> = open_loops.iter().map(|l| l.offered_per_s).collect();
        let half = trickle::half(produced);
        assert_eq!(
            offered,
            [100_000, 10_000, 10_000, 10_000, 10_000, half, half]
        );
        assert!(open_loops[..5].iter().all(|l| l.rate_from.is_none()));
        assert!(open_loops[5..].iter().all(|l| {
            l.rate_from
                .as_ref()
                .is_some_and(|f| f.contains("produce 100B"))
        }));
        let appended = &outcomes[4];
        assert_eq!(appended.spec.record_bytes, trickle::RECORD_BYTES);
        assert_eq!(appended.spec.linger, Duration::ZERO);
        assert_eq!(
            appended.spec.visibility,
            rill_engine::log::Visibility::Appended
        );
        assert_eq!(
            outcomes[8].spec.direct_io,
            rill_engine::DirectIo::Off,
            "written buffered"
        );
        assert_eq!(
            outcomes[7].spec.direct_io,
            rill_engine::DirectIo::On,
            "appended, O_DIRECT"
        );
        assert!(
            outcomes[7].spec.linger > Duration::ZERO,
            "half-max rows batch"
        );
    }

    #[test]
    fn quick_rate_family_runs_one_short_trickle_row() {
        let root = tempfile::tempdir().unwrap();
        let plan = Plan {
            only: Some(Only::Rate),
            quick: true,
            knobs: Knobs {
                records: Some(1_000),
                no_pin: true,
                shards: Some(1),
                ..Knobs::default()
            },
        };
        let mut pairing = Pairing {
            root: root.path(),
            bytes_per_way: 1 << 20,
            last: 0.0,
        };
        let (outcomes, open_loops) = run_scenarios(root.path(), &plan, &mut pairing).unwrap();
        let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["rate 100k/s 1KiB", "rate 10k/s 100B appended"]);
        assert_eq!(open_loops.len(), 2);
        assert_eq!(open_loops[1].targets.len(), 4);
    }
}
