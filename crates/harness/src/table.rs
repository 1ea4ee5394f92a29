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
    println!("memcpy {:.1} GB/s", c.memcpy_gb_s);
    println!();
    header();
    for row in &report.scenarios {
        line(row);
    }
    if !report.peers.is_empty() {
        println!();
        header();
        for row in &report.peers {
            line(row);
        }
    }
    println!();
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
        "{:<24} {:<9} {:>10} {:>12} {:>8} {:>6} {:>9} {:>9} {:>9} {:>8} {:>5}",
        "scenario",
        "backend",
        "records",
        "records/s",
        "MB/s",
        "%disk",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "CPU-s/GB",
        "lost"
    );
}

fn line(row: &ScenarioReport) {
    let pause = row
        .rebalance_pause_ms_max
        .map(|ms| format!("  longest partition pause {ms:.1} ms"))
        .unwrap_or_default();
    println!(
        "{:<24} {:<9} {:>10} {:>12.0} {:>8.0} {:>5.0}% {:>9.0} {:>9.0} {:>9.0} {:>8.2} {:>5}{pause}",
        row.name,
        row.backend,
        row.records,
        row.records_per_s,
        row.mb_per_s,
        100.0 * row.ratio_to_disk,
        row.latency_us.p50,
        row.latency_us.p99,
        row.latency_us.p999,
        row.cpu_s_per_gb,
        row.lost_records,
    );
}
