//! The Markdown summary `--save` writes as the results folder's README: what a person reads
//! first, with `report.json` beside it for every figure.

use std::fmt::Write as _;

use crate::figures::short;
use crate::report::{Report, ScenarioReport, TargetCheck};

/// One chart written by [`charts::write_all`](crate::charts::write_all), for the summary to
/// link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartFile {
    /// The file name inside the results folder, e.g. `throughput.svg`.
    pub file_name: String,
    pub title: String,
}

/// The headline table's header row, as it appears in the summary.
pub const TABLE_HEADER: &str = "| scenario | record bytes | records/s | MB/s | % of disk ceiling \
     | p50 µs | p99 µs | p99.9 µs | CPU-s per GB | CPU ns per record | peak RSS MB \
     | ceiling before, after MB/s | lost |";

/// What an entry does to the log, so rill's scenarios can be set beside peers doing the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    Read,
}

/// rill's scenarios are named by what they do first: "produce ...", "consume ...".
fn rill_kind(name: &str) -> Option<Kind> {
    if name.starts_with("produce") {
        Some(Kind::Write)
    } else if name.starts_with("consume") {
        Some(Kind::Read)
    } else {
        None
    }
}

/// Peers are named `"<engine> append <size>"` or `"<engine> read <size>"`: the operation is a
/// word of the name (its last word, or the one before the size).
fn peer_kind(name: &str) -> Option<Kind> {
    name.split_whitespace().find_map(|word| match word {
        "append" => Some(Kind::Write),
        "read" => Some(Kind::Read),
        _ => None,
    })
}

/// A rill scenario and a peer that did the same thing (write or read) with records of the
/// same size.
#[derive(Clone, Copy, Debug)]
pub struct PeerPair<'a> {
    pub rill: &'a ScenarioReport,
    pub peer: &'a ScenarioReport,
}

impl PeerPair<'_> {
    /// rill's MB/s over the peer's (records/s gives the same ratio at the same record size);
    /// `None` when either figure is not a finite number or the peer's is not positive.
    pub fn ratio(&self) -> Option<f64> {
        let ratio = self.rill.mb_per_s / self.peer.mb_per_s;
        (self.peer.mb_per_s > 0.0 && ratio.is_finite()).then_some(ratio)
    }
}

/// Every rill produce/consume scenario beside every peer append/read at its record size, in
/// the order of the scenarios, then of the peers.
pub fn peer_pairs(report: &Report) -> Vec<PeerPair<'_>> {
    let mut pairs = Vec::new();
    for rill in &report.scenarios {
        let Some(kind) = rill_kind(&rill.name) else {
            continue;
        };
        for peer in &report.peers {
            if peer.record_bytes == rill.record_bytes && peer_kind(&peer.name) == Some(kind) {
                pairs.push(PeerPair { rill, peer });
            }
        }
    }
    pairs
}

/// The Markdown summary: machine, ceilings, a headline table of scenarios and peers, rill
/// against each peer at the same record size, the setup of each entry, links to the charts and
/// the command line that reproduces the run.
pub fn markdown(report: &Report, command_line: &str, charts: &[ChartFile]) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored for that reason only.
    let _ = write_markdown(&mut out, report, command_line, charts);
    out
}

fn write_markdown(
    out: &mut String,
    report: &Report,
    command_line: &str,
    charts: &[ChartFile],
) -> std::fmt::Result {
    writeln!(out, "# rill-bench results")?;
    writeln!(out)?;
    write!(out, "rill {}", text(&report.rill_version))?;
    if !report.started_at.is_empty() {
        write!(out, ", run started {} (UTC)", text(&report.started_at))?;
    }
    writeln!(
        out,
        ". Every figure was measured in this run, on this machine."
    )?;
    if report.quick {
        writeln!(out)?;
        writeln!(
            out,
            "> **Quick run** (`--quick`): a few seconds per scenario, for CI. Not figures to quote."
        )?;
    }
    let losers: Vec<String> = report
        .scenarios
        .iter()
        .chain(&report.peers)
        .filter(|entry| entry.lost_records > 0)
        .map(|entry| format!("{} ({})", text(&entry.name), entry.lost_records))
        .collect();
    if !losers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "> **Records were lost** in: {}. A run that loses a record has failed.",
            losers.join(", ")
        )?;
    }

    machine(out, report)?;
    ceilings(out, report)?;
    headline(out, report)?;
    open_loop(out, report)?;
    roles(out, report)?;
    peers(out, report)?;
    rounds(out, report)?;
    wire(out, report)?;
    setup(out, report)?;

    if !charts.is_empty() {
        writeln!(out)?;
        writeln!(out, "## Charts")?;
        for chart in charts {
            writeln!(out)?;
            writeln!(out, "### {}", text(&chart.title))?;
            writeln!(out)?;
            writeln!(
                out,
                "![{}]({})",
                text(&chart.title).replace(']', "\\]"),
                chart.file_name.replace(' ', "%20")
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "Latency curves put each percentile on a \"nines\" axis (0, 90, 99, 99.9 ...), where \
             the maximum cannot sit: `report.json` has it as `latency_us.max`."
        )?;
    }

    writeln!(out)?;
    writeln!(out, "## How to reproduce")?;
    writeln!(out)?;
    writeln!(
        out,
        "Check out rill {} and run, from the repository's root:",
        text(&report.rill_version)
    )?;
    writeln!(out)?;
    let fence = "`".repeat(longest_run(command_line, '`').max(2) + 1);
    writeln!(out, "{fence}sh")?;
    writeln!(out, "{command_line}")?;
    writeln!(out, "{fence}")?;
    writeln!(out)?;
    writeln!(
        out,
        "`report.json` beside this file holds every figure, including the throughput timelines \
         and whole latency distributions the charts are drawn from."
    )?;
    Ok(())
}

fn machine(out: &mut String, report: &Report) -> std::fmt::Result {
    let m = &report.machine;
    writeln!(out)?;
    writeln!(out, "## Machine")?;
    writeln!(out)?;
    writeln!(out, "| | |")?;
    writeln!(out, "|---|---|")?;
    writeln!(out, "| CPU | {}, {} cores |", cell(&m.cpu_model), m.cores)?;
    writeln!(out, "| Memory | {} GiB |", short(m.memory_gib))?;
    writeln!(out, "| Kernel | {} |", cell(&m.kernel))?;
    writeln!(out, "| File system | {} |", cell(&m.file_system))
}

fn ceilings(out: &mut String, report: &Report) -> std::fmt::Result {
    let c = &report.ceilings;
    writeln!(out)?;
    writeln!(out, "## Ceilings")?;
    writeln!(out)?;
    writeln!(out, "| ceiling | value | how |")?;
    writeln!(out, "|---|--:|---|")?;
    let samples: Vec<String> = c
        .disk_write_samples_mb_s
        .iter()
        .map(|s| short(*s))
        .collect();
    let how = if samples.is_empty() {
        cell(&c.disk_write_method)
    } else {
        format!(
            "{}; median of {} samples: {} MB/s",
            cell(&c.disk_write_method),
            samples.len(),
            samples.join(", ")
        )
    };
    writeln!(
        out,
        "| Disk, sequential writes, best of several ways | {} MB/s | {how} |",
        short(c.disk_write_mb_s)
    )?;
    writeln!(
        out,
        "| Memory copy | {} GB/s | a buffer much larger than the caches, median |",
        short(c.memcpy_gb_s)
    )
}

fn headline(out: &mut String, report: &Report) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Results")?;
    writeln!(out)?;
    writeln!(
        out,
        "MB/s counts record values only (1 MB = 10^6 bytes); % of disk ceiling is that over the \
         mean of the ceiling samples taken right before and after the scenario (listed), and \
         over the run's ceiling above for peers. Peers (other engines run the same way on the \
         same machine) are in italics."
    )?;
    writeln!(out)?;
    writeln!(out, "{TABLE_HEADER}")?;
    writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    let rows = report
        .scenarios
        .iter()
        .map(|s| (s, false))
        .chain(report.peers.iter().map(|p| (p, true)));
    for (entry, is_peer) in rows {
        let name = if is_peer {
            format!("*{}*", cell(&entry.name))
        } else {
            cell(&entry.name)
        };
        let lost = if entry.lost_records > 0 {
            format!("**{}**", entry.lost_records)
        } else {
            "0".to_owned()
        };
        let latency = &entry.latency_us;
        let (p50, p99, p999) = if latency.samples > 0 {
            (short(latency.p50), short(latency.p99), short(latency.p999))
        } else {
            ("–".to_owned(), "–".to_owned(), "–".to_owned())
        };
        let neighbours: Vec<String> = entry
            .disk_ceiling_neighbours_mb_s
            .iter()
            .map(|v| short(*v))
            .collect();
        let neighbours = if neighbours.is_empty() {
            "run's".to_owned()
        } else {
            neighbours.join(", ")
        };
        writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {p50} | {p99} | {p999} | {} | {} | {} | {neighbours} | {lost} |",
            entry.record_bytes,
            grouped(entry.records_per_s),
            short(entry.mb_per_s),
            short(100.0 * entry.ratio_to_disk),
            short(entry.cpu_s_per_gb),
            short(entry.cpu_ns_per_record),
            short(entry.peak_rss_mb),
        )?;
    }
    Ok(())
}

/// The header row of the open-loop table, as it appears in the summary.
pub const OPEN_LOOP_HEADER: &str = "| scenario | offered records/s | delivered records/s | p50 µs \
     | p99 µs | p99.9 µs | max µs | CPU, % of one core | CPU ns per record | targets |";

/// Every open-loop entry (`offered_records_per_s` set): the latency-at-a-trickle rows and the
/// other fixed rates, with CPU as a share of one core and the targets beside the figures.
fn open_loop(out: &mut String, report: &Report) -> std::fmt::Result {
    let entries: Vec<(&ScenarioReport, f64)> = report
        .scenarios
        .iter()
        .filter_map(|e| e.offered_records_per_s.map(|offered| (e, offered)))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "## Latency at a trickle, and at fixed rates")?;
    writeln!(out)?;
    writeln!(
        out,
        "Open loop: records offered at a fixed rate, latency from each record's *scheduled* send \
         time to a consumer's poll returning it. CPU is the whole process's (every thread: the \
         engine's and the harness's producer, consumer and meter) over the scenario's wall \
         time. Targets are the project's for that configuration; rows without one are there \
         to compare with. The settings of each row are under \"Setup of each entry\"."
    )?;
    writeln!(out)?;
    writeln!(out, "{OPEN_LOOP_HEADER}")?;
    writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|")?;
    for (entry, offered) in entries {
        let latency = &entry.latency_us;
        let us = |v: f64| {
            if latency.samples > 0 {
                short(v)
            } else {
                "–".to_owned()
            }
        };
        let targets: Vec<String> = entry.targets.iter().map(target).collect();
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&entry.name),
            grouped(offered),
            grouped(entry.records_per_s),
            us(latency.p50),
            us(latency.p99),
            us(latency.p999),
            us(latency.max),
            short(100.0 * entry.cpu_cores),
            short(entry.cpu_ns_per_record),
            if targets.is_empty() {
                "–".to_owned()
            } else {
                targets.join("; ")
            },
        )?;
    }
    Ok(())
}

/// One target for a table cell: `p99 ≤ 25 µs: missed (31.2)`.
fn target(check: &TargetCheck) -> String {
    let (bound, measured) = match check.figure.as_str() {
        "cpu_cores" => (
            format!("CPU ≤ {}% of a core", short(100.0 * check.at_most)),
            format!("{}%", short(100.0 * check.measured)),
        ),
        figure => {
            let percentile = match figure.trim_start_matches("latency_us.") {
                "p999" => "p99.9",
                other => other,
            };
            (
                format!("{percentile} ≤ {} µs", short(check.at_most)),
                short(check.measured),
            )
        }
    };
    let verdict = if check.met { "met" } else { "**missed**" };
    format!("{} {verdict} ({measured})", cell(&bound))
}

fn peers(out: &mut String, report: &Report) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "## rill against its peers")?;
    writeln!(out)?;
    let pairs = peer_pairs(report);
    if pairs.is_empty() {
        writeln!(
            out,
            "No peer ran at the record size of a rill produce or consume scenario."
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "rill's produce (or consume) beside each peer's append (or read) with records of the \
         same size. Above 1, rill moved more data per second."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| rill | peer | record bytes | rill MB/s | peer MB/s | rill ÷ peer | rill p99 µs | peer p99 µs |"
    )?;
    writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|")?;
    for pair in pairs {
        let ratio = pair
            .ratio()
            .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}"));
        let p99 = |entry: &ScenarioReport| {
            if entry.latency_us.samples > 0 {
                short(entry.latency_us.p99)
            } else {
                "–".to_owned()
            }
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {ratio} | {} | {} |",
            cell(&pair.rill.name),
            cell(&pair.peer.name),
            pair.rill.record_bytes,
            short(pair.rill.mb_per_s),
            short(pair.peer.mb_per_s),
            p99(pair.rill),
            p99(pair.peer),
        )?;
    }
    Ok(())
}

fn roles(out: &mut String, report: &Report) -> std::fmt::Result {
    const ROLES: [&str; 7] = [
        "producer",
        "consumer",
        "shard",
        "server",
        "client",
        "io_worker",
        "other",
    ];
    writeln!(out)?;
    writeln!(out, "## CPU per record, by thread role")?;
    writeln!(out)?;
    writeln!(
        out,
        "Nanoseconds of CPU per record, from the kernel's per-thread accounting; a thread's role \
         comes from its name (shards `rill-shard-N`, server `rill-conn-*`, librdkafka `rdk:*`). \
         `other` is the rest of the process (main thread, meter, the last interval of threads \
         that ended early). CPU time moves far less than wall time on a shared machine."
    )?;
    writeln!(out)?;
    writeln!(out, "| scenario | all | {} |", ROLES.join(" | "))?;
    writeln!(out, "|---|--:|{}", "--:|".repeat(ROLES.len()))?;
    for entry in &report.scenarios {
        let cells: Vec<String> = ROLES
            .iter()
            .map(|role| {
                entry
                    .cpu_ns_per_record_by_role
                    .get(*role)
                    .map_or_else(|| "–".to_owned(), |ns| short(*ns))
            })
            .collect();
        writeln!(
            out,
            "| {} | {} | {} |",
            cell(&entry.name),
            short(entry.cpu_ns_per_record),
            cells.join(" | ")
        )?;
    }
    Ok(())
}

fn rounds(out: &mut String, report: &Report) -> std::fmt::Result {
    if report.peer_rounds.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "## rill against its peers, in alternating rounds")?;
    writeln!(out)?;
    writeln!(
        out,
        "Each round ran rill's produce-then-consume and each peer's append-then-read on the \
         same records, one after another (order rotated per round). Ratios are rill's over the \
         peer's of the same round: MB/s above 1 and CPU-seconds per GB below 1 favour rill."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| peer | phase | record bytes | records | rounds | MB/s ratio, median | range | CPU/GB ratio, median | range |"
    )?;
    writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|")?;
    let span = |r: &[f64]| match r {
        [low, high] => format!("{low:.2}–{high:.2}"),
        _ => "–".to_owned(),
    };
    for c in &report.peer_rounds {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {} | {:.2} | {} |",
            cell(&c.peer),
            cell(&c.phase),
            c.record_bytes,
            grouped(c.records as f64),
            c.rill_over_peer_mb_s.len(),
            c.rill_over_peer_mb_s_median,
            span(&c.rill_over_peer_mb_s_range),
            c.rill_over_peer_cpu_per_gb_median,
            span(&c.rill_over_peer_cpu_per_gb_range),
        )?;
    }
    Ok(())
}

fn wire(out: &mut String, report: &Report) -> std::fmt::Result {
    let Some(wire) = &report.wire else {
        return Ok(());
    };
    let server = &wire.server;
    writeln!(out)?;
    writeln!(out, "## Over the wire")?;
    writeln!(out)?;
    writeln!(
        out,
        "{} against a rill server in the harness's process over loopback (`wire` rows above).",
        text(&wire.client)
    )?;
    writeln!(out)?;
    writeln!(out, "| figure | value |")?;
    writeln!(out, "|---|--:|")?;
    writeln!(
        out,
        "| wire produce ÷ in-process produce (records/s, same run) | {:.2} |",
        wire.produce_ratio_to_in_process
    )?;
    writeln!(
        out,
        "| wire consume ÷ in-process consume (records/s, same run) | {:.2} |",
        wire.consume_ratio_to_in_process
    )?;
    writeln!(
        out,
        "| wire e2e offered rate (half the wire produce rate) | {} records/s |",
        grouped(wire.e2e_offered_per_s)
    )?;
    writeln!(
        out,
        "| server start-up: spawn to the first request answered | {} ms |",
        short(server.startup_ms)
    )?;
    writeln!(
        out,
        "| server idle RSS (one client connected) | {} MB |",
        short(server.idle_rss_mb)
    )?;
    writeln!(out, "| server threads, idle | {} |", server.idle_threads)?;
    writeln!(
        out,
        "| server CPU in one idle second | {} ms |",
        short(server.idle_cpu_ms)
    )?;
    let mappings: Vec<String> = server
        .idle_rss_by_mapping_mb
        .iter()
        .map(|(name, mb)| format!("{} {} MB", cell(name), short(*mb)))
        .collect();
    writeln!(
        out,
        "| largest resident mappings, idle | {} |",
        mappings.join(", ")
    )
}

fn setup(out: &mut String, report: &Report) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Setup of each entry")?;
    writeln!(out)?;
    writeln!(
        out,
        "| entry | backend | producers | consumers | partitions | records | seconds | duplicates \
         | rebalance pause max ms | latency measures | settings |"
    )?;
    writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|")?;
    for entry in report.scenarios.iter().chain(&report.peers) {
        let settings: Vec<String> = entry
            .settings
            .iter()
            .map(|(key, value)| format!("{}={}", cell(key), cell(value)))
            .collect();
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&entry.name),
            cell(&entry.backend),
            entry.producers,
            entry.consumers,
            entry.partitions,
            entry.records,
            short(entry.elapsed_s),
            entry.duplicate_records,
            entry.rebalance_pause_ms_max.map_or_else(String::new, short),
            cell(&entry.latency_of),
            settings.join(", "),
        )?;
    }
    Ok(())
}

/// Text from the report, kept on one line.
fn text(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text from the report for a table cell: one line, with `|` escaped so it stays one cell.
fn cell(value: &str) -> String {
    text(value).replace('|', "\\|")
}

/// A large count with thousands separated: 1234567.8 → "1,234,568".
fn grouped(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if v.is_sign_negative() && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// The longest run of `c` in `s`, to choose a code fence the command line cannot close.
fn longest_run(s: &str, c: char) -> usize {
    s.split(|other| other != c).map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::save::tests::sample_report;

    #[test]
    fn pairs_match_kind_and_record_size() {
        let mut report = sample_report();
        let mut read = report.peers[0].clone();
        read.name = "commitlog read 1KiB".to_owned();
        let mut other_size = report.peers[0].clone();
        other_size.record_bytes = 100;
        report.peers.push(read);
        report.peers.push(other_size);
        let pairs: Vec<(&str, &str)> = peer_pairs(&report)
            .iter()
            .map(|p| (p.rill.name.as_str(), p.peer.name.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("produce 1KiB", "commitlog append 1KiB"),
                ("consume 1KiB", "commitlog read 1KiB"),
            ]
        );
    }

    #[test]
    fn ratio_needs_a_positive_peer() {
        let report = sample_report();
        let pair = PeerPair {
            rill: &report.scenarios[0],
            peer: &report.peers[0],
        };
        assert_eq!(pair.ratio(), Some(400.0 / 250.0));
        let mut idle = report.peers[0].clone();
        idle.mb_per_s = 0.0;
        let pair = PeerPair {
            rill: &report.scenarios[0],
            peer: &idle,
        };
        assert_eq!(pair.ratio(), None);
    }

    #[test]
    fn summary_has_every_section() {
        let mut report = sample_report();
        report.scenarios[1].lost_records = 2;
        report.scenarios[1].name = "consume | odd".to_owned();
        let charts = [ChartFile {
            file_name: "throughput.svg".to_owned(),
            title: "Throughput over time".to_owned(),
        }];
        let md = markdown(&report, "cargo run -p rill-harness -- --save", &charts);
        assert!(md.contains(TABLE_HEADER));
        assert!(md.contains("| produce 1KiB | 1024 | 390,625 | 400 | 80.0 |"));
        assert!(md.contains("consume \\| odd"));
        assert!(md.contains("*commitlog append 1KiB*"));
        assert!(md.contains("| produce 1KiB | commitlog append 1KiB | 1024 | 400 | 250 | 1.60 |"));
        assert!(md.contains("**Records were lost** in: consume | odd (2)"));
        assert!(md.contains("![Throughput over time](throughput.svg)"));
        assert!(md.contains("```sh\ncargo run -p rill-harness -- --save\n```"));
    }

    #[test]
    fn open_loop_rows_show_cpu_as_a_share_of_a_core_and_their_targets() {
        let mut report = sample_report();
        assert!(!markdown(&report, "x", &[]).contains(OPEN_LOOP_HEADER));
        let mut row = report.scenarios[0].clone();
        row.name = "rate 10k/s 100B appended".to_owned();
        row.offered_records_per_s = Some(10_000.0);
        row.records_per_s = 9_990.0;
        row.latency_us.p50 = 4.0;
        row.latency_us.p99 = 31.2;
        row.latency_us.p999 = 80.0;
        row.latency_us.max = 900.0;
        row.cpu_cores = 0.254;
        row.cpu_ns_per_record = 25_400.0;
        row.targets = vec![
            TargetCheck::new("latency_us.p999", 100.0, 80.0),
            TargetCheck::new("cpu_cores", 0.1, 0.254),
        ];
        report.scenarios.push(row);
        let md = markdown(&report, "x", &[]);
        assert!(md.contains(OPEN_LOOP_HEADER));
        assert!(md.contains(
            "| rate 10k/s 100B appended | 10,000 | 9,990 | 4.00 | 31.2 | 80.0 | 900 | 25.4 | 25400 \
             | p99.9 ≤ 100 µs met (80.0); CPU ≤ 10.0% of a core **missed** (25.4%) |"
        ));
        let section = md
            .split("## Latency at a trickle")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        assert!(
            !section.contains("produce 1KiB"),
            "closed-loop rows stay out"
        );
    }

    #[test]
    fn numbers_that_are_not_there_say_so() {
        assert_eq!(grouped(1_234_567.8), "1,234,568");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(f64::NAN), "n/a");
        let mut report = sample_report();
        report.scenarios[0].mb_per_s = f64::NAN;
        report.scenarios[0].latency_us.samples = 0;
        let md = markdown(&report, "x", &[]);
        assert!(md.contains("| produce 1KiB | 1024 | 390,625 | n/a | 80.0 | – | – | – |"));
        assert!(!md.contains("## Charts"));
    }

    #[test]
    fn fence_outlasts_backticks() {
        assert_eq!(longest_run("a ``` b ` c", '`'), 3);
        let md = markdown(&sample_report(), "echo ```", &[]);
        assert!(md.contains("````sh\necho ```\n````"));
    }
}
