//! `--save`: keeps a run as a dated folder of its own under `bench-results/` (or wherever the
//! caller says), with the JSON report, a Markdown summary and the SVG charts.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jiff::Timestamp;

use crate::charts;
use crate::report::Report;
use crate::summary;

/// How many folders one minute may hold before saving gives up: far beyond any real use, and a
/// bound so that a folder that cannot be created for some odd reason is not retried forever.
const MAX_PER_MINUTE: u32 = 100;

/// Writes `<under>/<UTC date and time>-rill-bench/` (e.g. `2026-11-24T1530Z-rill-bench`)
/// containing `report.json`, `README.md` (the summary, with `command_line` as the way to
/// reproduce the run) and the charts, and returns the folder.
///
/// The date and time are when the run started (`report.started_at`), or now if that does not
/// parse as RFC 3339. An existing folder is never touched: a second save within the same minute
/// goes to `...-rill-bench-2`, then `-3`, and so on. `under` is created if it does not exist.
pub fn save(report: &Report, under: &Path, command_line: &str) -> anyhow::Result<PathBuf> {
    let when = report
        .started_at
        .parse::<Timestamp>()
        .unwrap_or_else(|_| Timestamp::now());
    let dir = fresh_folder(under, &folder_name(when))?;

    let json = serde_json::to_string_pretty(report).context("serialise the report")?;
    write(&dir.join("report.json"), json + "\n")?;
    let charts = charts::write_all(report, &dir)
        .with_context(|| format!("write the charts into {}", dir.display()))?;
    write(
        &dir.join("README.md"),
        summary::markdown(report, command_line, &charts),
    )?;
    Ok(dir)
}

/// `2026-11-24T1530Z-rill-bench`: sorts by date and time, and has no `:` so that every file
/// system and archive tool takes it.
fn folder_name(when: Timestamp) -> String {
    format!("{}-rill-bench", when.strftime("%Y-%m-%dT%H%MZ"))
}

/// Creates `under/stem`, or `under/stem-2`, `-3` ... if it is taken. `create_dir` fails on an
/// existing folder, so two runs saving at once still get a folder each.
fn fresh_folder(under: &Path, stem: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(under).with_context(|| format!("create {}", under.display()))?;
    for attempt in 1..=MAX_PER_MINUTE {
        let name = if attempt == 1 {
            stem.to_owned()
        } else {
            format!("{stem}-{attempt}")
        };
        let dir = under.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
        }
    }
    anyhow::bail!(
        "{} already holds {MAX_PER_MINUTE} results folders named {stem}*",
        under.display()
    )
}

fn write(path: &Path, contents: String) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::{Ceilings, LatencyUs, Machine, ScenarioReport, TimelinePoint};

    fn entry(name: &str, mb_per_s: f64, p50: f64) -> ScenarioReport {
        let timeline = (0..10)
            .map(|i| TimelinePoint {
                t_s: f64::from(i) * 0.5,
                mb_per_s: mb_per_s * (0.9 + 0.02 * f64::from(i % 5)),
                records_per_s: mb_per_s * 1e6 / 1024.0,
            })
            .collect();
        let curve = [0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0]
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, p50 * 1.8f64.powi(i as i32)))
            .collect();
        ScenarioReport {
            name: name.to_owned(),
            record_bytes: 1024,
            records: 1 << 20,
            producers: 1,
            consumers: 1,
            partitions: 2,
            backend: "portable".to_owned(),
            elapsed_s: 5.0,
            records_per_s: mb_per_s * 1e6 / 1024.0,
            mb_per_s,
            ratio_to_disk: mb_per_s / 500.0,
            ratio_to_disk_range: vec![mb_per_s / 520.0, mb_per_s / 480.0],
            disk_ceiling_neighbours_mb_s: vec![480.0, 520.0],
            latency_us: LatencyUs {
                samples: 1000,
                p50,
                p90: p50 * 2.0,
                p99: p50 * 4.0,
                p999: p50 * 8.0,
                p9999: p50 * 16.0,
                max: p50 * 32.0,
                curve,
            },
            latency_of: "send to acknowledgement (written)".to_owned(),
            cpu_s: 2.0,
            cpu_cores: 0.4,
            cpu_s_per_gb: 4.5,
            cpu_ns_per_record: 4_600.0,
            cpu_ns_per_record_by_role: [
                ("producer".to_owned(), 3_000.0),
                ("other".to_owned(), 1_600.0),
            ]
            .into_iter()
            .collect(),
            peak_rss_mb: 120.0,
            lost_records: 0,
            duplicate_records: 0,
            rebalance_pause_ms_max: None,
            timeline,
            settings: vec![("ack".to_owned(), "written".to_owned())],
            offered_records_per_s: None,
            targets: Vec::new(),
        }
    }

    /// Two rill scenarios with timelines and latency curves, and one peer.
    pub(crate) fn sample_report() -> Report {
        Report {
            rill_version: "0.1.0".to_owned(),
            started_at: "2026-11-24T15:30:07Z".to_owned(),
            quick: true,
            machine: Machine {
                cpu_model: "Example CPU @ 3.0GHz".to_owned(),
                cores: 2,
                memory_gib: 23.4,
                kernel: "6.12.0".to_owned(),
                file_system: "ext4".to_owned(),
            },
            ceilings: Ceilings {
                disk_write_mb_s: 500.0,
                disk_write_method: "io_uring, O_DIRECT".to_owned(),
                disk_write_samples_mb_s: vec![480.0, 500.0, 510.0],
                disk_write_ways_mb_s: vec![("io_uring O_DIRECT".to_owned(), 500.0)],
                neighbour_sample_bytes_per_way: 1 << 20,
                memcpy_gb_s: 9.5,
            },
            scenarios: vec![
                entry("produce 1KiB", 400.0, 12.0),
                entry("consume 1KiB", 900.0, 3.0),
            ],
            peers: vec![entry("commitlog append 1KiB", 250.0, 20.0)],
            peer_rounds: Vec::new(),
            wire: None,
        }
    }

    #[test]
    fn saves_json_summary_and_charts() {
        let under = tempfile::tempdir().unwrap();
        let report = sample_report();
        let dir = save(
            &report,
            &under.path().join("bench-results"),
            "rill-bench --save",
        )
        .unwrap();
        assert_eq!(
            dir,
            under
                .path()
                .join("bench-results/2026-11-24T1530Z-rill-bench")
        );

        let json = std::fs::read_to_string(dir.join("report.json")).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        let names = |r: &Report| -> Vec<String> {
            r.scenarios
                .iter()
                .chain(&r.peers)
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(&back), names(&report));

        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme.contains(summary::TABLE_HEADER));
        assert!(readme.contains("rill-bench --save"));
        for name in names(&report) {
            assert!(readme.contains(&name), "README.md lacks {name}");
        }

        let charts = [
            "throughput.svg",
            "latency.svg",
            "ratio-to-disk.svg",
            "ratio-to-peers.svg",
        ];
        for chart in charts {
            assert!(
                readme.contains(&format!("]({chart})")),
                "README.md lacks {chart}"
            );
            let svg = std::fs::read_to_string(dir.join(chart)).unwrap();
            assert!(svg.starts_with("<svg"), "{chart} is not an SVG document");
            assert!(svg.contains("<text"), "{chart} has no text");
            // The peer chart has only the scenario the one peer matches.
            let expected: &[&str] = match chart {
                "ratio-to-disk.svg" => &["produce 1KiB", "consume 1KiB", "commitlog append 1KiB"],
                "ratio-to-peers.svg" => &["produce 1KiB vs commitlog append 1KiB"],
                _ => &["produce 1KiB", "consume 1KiB"],
            };
            for name in expected {
                assert!(svg.contains(name), "{chart} lacks {name}");
            }
        }
    }

    #[test]
    fn a_second_save_in_the_same_minute_gets_its_own_folder() {
        let under = tempfile::tempdir().unwrap();
        let mut report = sample_report();
        let first = save(&report, under.path(), "first").unwrap();
        report.started_at = "2026-11-24T15:30:59Z".to_owned();
        let second = save(&report, under.path(), "second").unwrap();
        assert_eq!(second, under.path().join("2026-11-24T1530Z-rill-bench-2"));
        let readme = |dir: &Path| std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(readme(&first).contains("first"));
        assert!(readme(&second).contains("second"));
    }

    #[test]
    fn an_unparseable_start_is_dated_now() {
        let under = tempfile::tempdir().unwrap();
        let mut report = sample_report();
        report.started_at = String::new();
        let before = Timestamp::now();
        let dir = save(&report, under.path(), "x").unwrap();
        let after = Timestamp::now();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name == folder_name(before) || name == folder_name(after),
            "{name}"
        );
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_it() {
        let under = tempfile::tempdir().unwrap();
        let blocker = under.path().join("bench-results");
        std::fs::write(&blocker, "").unwrap();
        let err = save(&sample_report(), &blocker, "x").unwrap_err();
        assert!(format!("{err:#}").contains("bench-results"), "{err:#}");
    }
}
