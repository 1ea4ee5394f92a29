//! The table a person reads at the end of a run.

use crate::report::{Report, ScenarioReport};

pub fn print(report: &Report) {
    let c = &report.ceilings;
    println!();
    println!(
        "disk ceiling {:.0} MB/s ({}; samples {})",
        c.disk_write_mb_s,
        c.disk_write_method,
        c.disk_write_samples_mb_s
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (way, mb_s) in &c.disk_write_ways_mb_s {
        println!("  {mb_s:>8.0} MB/s  {way}");
    }
    println!("memcpy {:.1} GB/s", c.memcpy_gb_s);
    println!();
    header();
    for row in &report.scenarios {
        line(row);
    }
    open_loop(report);
    if !report.peers.is_empty() {
        println!();
        header();
        for row in &report.peers {
            line(row);
        }
    }
    if !report.peer_rounds.is_empty() {
        println!();
        println!(
            "rill over each peer, in rounds (median [lowest, highest]; MB/s above 1 and CPU/GB below 1 favour rill):"
        );
        for c in &report.peer_rounds {
            let span = |r: &[f64]| match r {
                [low, high] => format!("[{low:.2}, {high:.2}]"),
                _ => String::new(),
            };
            println!(
                "  {:<10} {:<6} {:>5} B  MB/s {:.2} {}  CPU-s/GB {:.2} {}  ({} rounds)",
                c.peer,
                c.phase,
                c.record_bytes,
                c.rill_over_peer_mb_s_median,
                span(&c.rill_over_peer_mb_s_range),
                c.rill_over_peer_cpu_per_gb_median,
                span(&c.rill_over_peer_cpu_per_gb_range),
                c.rill_over_peer_mb_s.len()
            );
        }
    }
    if let Some(wire) = &report.wire {
        wire_section(wire);
    }
    println!();
    println!("CPU per record by thread role (ns; `other`: main thread, meter, threads not named):");
    for row in &report.scenarios {
        let roles: Vec<String> = row
            .cpu_ns_per_record_by_role
            .iter()
            .filter(|(_, ns)| **ns > 0.0)
            .map(|(role, ns)| format!("{role} {ns:.0}"))
            .collect();
        println!("  {:<24} {}", row.name, roles.join(", "));
    }
    println!();
    println!(
        "%disk is against the mean of the ceiling samples taken right before and after the \
         scenario (range: against the faster and the slower one); peers against the run's ceiling."
    );
    println!(
        "MB/s counts record values (1 MB = 10^6 bytes). Latency (µs) is what each scenario \
         names in the JSON report: acknowledgement for produce, send to consumer for e2e and \
         rate, one poll for consume, the gap between deliveries for group."
    );
    if report.quick {
        println!("--quick: every scenario ran for a few seconds; do not quote these figures.");
    }
}

fn header() {
    println!(
        "{:<24} {:<9} {:>10} {:>12} {:>8} {:>6} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8} {:>5}",
        "scenario",
        "backend",
        "records",
        "records/s",
        "MB/s",
        "%disk",
        "range",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU-s/GB",
        "CPU ns/r",
        "lost"
    );
}

fn line(row: &ScenarioReport) {
    let pause = row
        .rebalance_pause_ms_max
        .map(|ms| format!("  longest partition pause {ms:.1} ms"))
        .unwrap_or_default();
    let range = match row.ratio_to_disk_range.as_slice() {
        [low, high] => format!("{:.0}-{:.0}%", 100.0 * low, 100.0 * high),
        _ => "-".to_owned(),
    };
    println!(
        "{:<24} {:<9} {:>10} {:>12.0} {:>8.0} {:>5.0}% {:>11} {:>9.0} {:>9.0} {:>9.0} {:>8.2} {:>8.0} {:>5}{pause}",
        row.name,
        row.backend,
        row.records,
        row.records_per_s,
        row.mb_per_s,
        100.0 * row.ratio_to_disk,
        range,
        row.latency_us.p50,
        row.latency_us.p99,
        row.latency_us.p999,
        row.cpu_s_per_gb,
        row.cpu_ns_per_record,
        row.lost_records,
    );
}

/// The open-loop rows (latency at a trickle and the other fixed rates): CPU as a share of one
/// core, and each target of the project's beside the figure it bounds.
fn open_loop(report: &Report) {
    let rows: Vec<(&ScenarioReport, f64)> = report
        .scenarios
        .iter()
        .filter_map(|row| row.offered_records_per_s.map(|offered| (row, offered)))
        .collect();
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "open loop (latency from the scheduled send time; CPU of every thread over wall time):"
    );
    println!(
        "{:<36} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>8} {:>9}  targets",
        "scenario",
        "offered/s",
        "records/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "CPU %1c",
        "CPU ns/r"
    );
    for (row, offered) in rows {
        let l = &row.latency_us;
        let targets: Vec<String> = row
            .targets
            .iter()
            .map(|t| {
                let verdict = if t.met { "met" } else { "MISSED" };
                format!("{} <= {} {verdict}", t.figure, t.at_most)
            })
            .collect();
        println!(
            "{:<36} {:>10.0} {:>10.0} {:>8.1} {:>8.1} {:>9.1} {:>9.1} {:>8.1} {:>9.0}  {}",
            row.name,
            offered,
            row.records_per_s,
            l.p50,
            l.p99,
            l.p999,
            l.max,
            100.0 * row.cpu_cores,
            row.cpu_ns_per_record,
            targets.join(", ")
        );
    }
}

fn wire_section(wire: &crate::report::WireReport) {
    let server = &wire.server;
    println!();
    println!(
        "wire ({}): produce {:.2}x and consume {:.2}x the in-process rate of this run; \
         e2e offered {:.0} records/s (half the wire produce rate)",
        wire.client,
        wire.produce_ratio_to_in_process,
        wire.consume_ratio_to_in_process,
        wire.e2e_offered_per_s
    );
    let mappings: Vec<String> = server
        .idle_rss_by_mapping_mb
        .iter()
        .take(3)
        .map(|(name, mb)| format!("{name} {mb:.1}"))
        .collect();
    println!(
        "server (child process): first connection answered {:.1} ms after spawn; idle RSS \
         {:.1} MB ({} MB), {} threads, {:.1} ms CPU in 1 s idle",
        server.startup_ms,
        server.idle_rss_mb,
        mappings.join(", "),
        server.idle_threads,
        server.idle_cpu_ms
    );
}
