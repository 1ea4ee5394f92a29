//! The machine-readable report: what `--json` writes and `--save` keeps (the check that a
//! report carries every promised field is `validate`).
//!
//! Field names carry their units (`mb_per_s`, `latency_us`, `cpu_s`) so that a reader of the
//! JSON never has to guess. 1 MB = 10^6 bytes; MB/s counts record values only.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub rill_version: String,
    /// When the run started, UTC, RFC 3339.
    pub started_at: String,
    /// `--quick` runs are for CI: a few seconds each, not figures to quote.
    pub quick: bool,
    pub machine: Machine,
    pub ceilings: Ceilings,
    pub scenarios: Vec<ScenarioReport>,
    pub peers: Vec<ScenarioReport>,
    /// Each peer phase against rill's in the same rounds: median ratio and range.
    #[serde(default)]
    pub peer_rounds: Vec<PeerComparison>,
    /// The wire scenarios' comparison and the server's footprint; absent when rill-bench was
    /// built without the `wire` feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<WireReport>,
}

/// One peer phase against rill's matching phase, over every round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerComparison {
    pub peer: String,
    /// `append` (against rill's produce) or `read` (against rill's consume).
    pub phase: String,
    pub record_bytes: usize,
    pub records: u64,
    /// rill's MB/s over the peer's, one per round: above 1, rill is faster.
    pub rill_over_peer_mb_s: Vec<f64>,
    pub rill_over_peer_mb_s_median: f64,
    /// [lowest, highest] of the rounds.
    pub rill_over_peer_mb_s_range: Vec<f64>,
    /// rill's CPU-seconds per GB over the peer's, one per round: below 1, rill spends less.
    pub rill_over_peer_cpu_per_gb: Vec<f64>,
    pub rill_over_peer_cpu_per_gb_median: f64,
    pub rill_over_peer_cpu_per_gb_range: Vec<f64>,
}

/// The wire scenarios beside the in-process ones of the same run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WireReport {
    /// The client library that drove the wire scenarios.
    pub client: String,
    /// Wire produce records/s over the in-process produce of the same record size.
    pub produce_ratio_to_in_process: f64,
    /// Wire consume records/s over the in-process consume of the same record size.
    pub consume_ratio_to_in_process: f64,
    /// The rate the wire end-to-end scenario offered: half the wire produce rate.
    pub e2e_offered_per_s: f64,
    pub server: ServerFacts,
}

/// The server process alone (a child started for the purpose).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerFacts {
    /// From spawning the server to the answer to an ApiVersions request on its first
    /// connection, empty data directory.
    pub startup_ms: f64,
    /// Resident set after a second idle with a client connected.
    pub idle_rss_mb: f64,
    /// The largest resident mappings then: (mapping, MB).
    pub idle_rss_by_mapping_mb: Vec<(String, f64)>,
    pub idle_threads: usize,
    /// CPU the server spent in one idle second (after a second's settling), milliseconds.
    pub idle_cpu_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// The file system the data directory is on (type as the kernel names it, e.g. `ext4`).
    pub file_system: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ceilings {
    /// The best of several ways of writing sequentially (O_DIRECT at several sizes and
    /// depths, buffered with one fdatasync), median of the run's opening samples. Scenarios are
    /// divided by their own neighbouring samples instead; peers by this.
    pub disk_write_mb_s: f64,
    /// The way that won the median sample.
    pub disk_write_method: String,
    pub disk_write_samples_mb_s: Vec<f64>,
    /// Every way of the last opening sample and its MB/s.
    #[serde(default)]
    pub disk_write_ways_mb_s: Vec<(String, f64)>,
    /// Bytes each way writes in the samples taken between scenarios.
    #[serde(default)]
    pub neighbour_sample_bytes_per_way: u64,
    /// Copying a buffer much larger than the caches, median of the samples.
    pub memcpy_gb_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub record_bytes: usize,
    pub records: u64,
    pub producers: usize,
    pub consumers: usize,
    pub partitions: u32,
    /// The backend the engine actually used after any fallback (`io_uring`, `portable`), or
    /// the peer's own storage for peers.
    pub backend: String,
    pub elapsed_s: f64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    /// `mb_per_s` over the disk ceiling: the mean of the two samples taken right before and
    /// right after this scenario (`disk_ceiling_neighbours_mb_s`) where there are some, else
    /// the run's ceiling (peers).
    pub ratio_to_disk: f64,
    /// [against the faster neighbour, against the slower one]: how much the disk moved.
    #[serde(default)]
    pub ratio_to_disk_range: Vec<f64>,
    /// The ceiling sampled right before and right after the scenario, MB/s.
    #[serde(default)]
    pub disk_ceiling_neighbours_mb_s: Vec<f64>,
    pub latency_us: LatencyUs,
    /// What the latency measures, e.g. "send to acknowledgement (written)".
    pub latency_of: String,
    /// Process CPU time (user + system, every thread) during the scenario.
    pub cpu_s: f64,
    /// `cpu_s` over `elapsed_s`: how many cores the process kept busy on average (0.1 is a
    /// tenth of one core).
    #[serde(default)]
    pub cpu_cores: f64,
    pub cpu_s_per_gb: f64,
    /// `cpu_s` per record (per record delivered, for reading scenarios), in nanoseconds.
    pub cpu_ns_per_record: f64,
    /// `cpu_ns_per_record` split by the role of the thread that spent it (`producer`,
    /// `consumer`, `shard`, `server`, `client`, and `other` for the rest: the main thread,
    /// the meter, threads not ours). Empty for peers, whose threads are not ours.
    #[serde(default)]
    pub cpu_ns_per_record_by_role: std::collections::BTreeMap<String, f64>,
    /// Peak resident set during the scenario (reset before it where the kernel allows).
    pub peak_rss_mb: f64,
    /// Records produced but never consumed (or read back wrong). Anything but 0 fails the run.
    pub lost_records: u64,
    /// Records delivered more than once (allowed for consumer groups: at least once; anything
    /// but 0 elsewhere fails `validate`).
    pub duplicate_records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance_pause_ms_max: Option<f64>,
    /// Throughput over time, one point per sampling interval.
    pub timeline: Vec<TimelinePoint>,
    /// Settings that matter for reading the figures (ack level, batch size, ...).
    pub settings: Vec<(String, String)>,
    /// Open-loop scenarios (`rate ...`): the records per second they were asked to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_records_per_s: Option<f64>,
    /// The project's targets for this configuration beside the measured figures; empty where
    /// the project sets none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetCheck>,
}

/// One target against one figure of the same entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// The figure as the entry's JSON names it: `latency_us.p50`, `latency_us.p99`,
    /// `latency_us.p999` or `cpu_cores`.
    pub figure: String,
    /// The target: the figure must be at most this (in the figure's own unit).
    pub at_most: f64,
    pub measured: f64,
    pub met: bool,
}

impl TargetCheck {
    /// The figure checked against the bound; a figure that is not a number misses.
    pub fn new(figure: &str, at_most: f64, measured: f64) -> Self {
        Self {
            figure: figure.to_owned(),
            at_most,
            measured,
            met: measured <= at_most,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LatencyUs {
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    /// (percentile, microseconds) pairs for plotting the whole distribution.
    pub curve: Vec<(f64, f64)>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub mb_per_s: f64,
    pub records_per_s: f64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(name: &str) -> ScenarioReport {
        ScenarioReport {
            name: name.to_owned(),
            record_bytes: 100,
            records: 10,
            producers: 1,
            consumers: 1,
            partitions: 1,
            backend: "portable".to_owned(),
            elapsed_s: 1.0,
            records_per_s: 10.0,
            mb_per_s: 0.001,
            ratio_to_disk: 0.0,
            ratio_to_disk_range: Vec::new(),
            disk_ceiling_neighbours_mb_s: Vec::new(),
            latency_us: LatencyUs::default(),
            latency_of: String::new(),
            cpu_s: 0.1,
            cpu_cores: 0.1,
            cpu_s_per_gb: 100.0,
            cpu_ns_per_record: 10_000.0,
            cpu_ns_per_record_by_role: Default::default(),
            peak_rss_mb: 10.0,
            lost_records: 0,
            duplicate_records: 0,
            rebalance_pause_ms_max: None,
            timeline: Vec::new(),
            settings: Vec::new(),
            offered_records_per_s: None,
            targets: Vec::new(),
        }
    }

    pub(crate) fn report() -> Report {
        Report {
            rill_version: "0".to_owned(),
            started_at: String::new(),
            quick: true,
            machine: Machine {
                cpu_model: "cpu".to_owned(),
                cores: 2,
                memory_gib: 1.0,
                kernel: "6".to_owned(),
                file_system: "ext4".to_owned(),
            },
            ceilings: Ceilings {
                disk_write_mb_s: 1.0,
                disk_write_method: String::new(),
                disk_write_samples_mb_s: vec![1.0],
                disk_write_ways_mb_s: Vec::new(),
                neighbour_sample_bytes_per_way: 0,
                memcpy_gb_s: 1.0,
            },
            scenarios: vec![entry("produce")],
            peers: vec![entry("fjall append")],
            peer_rounds: Vec::new(),
            wire: None,
        }
    }

    pub(crate) fn json(report: &Report) -> serde_json::Value {
        serde_json::to_value(report).unwrap()
    }
}
