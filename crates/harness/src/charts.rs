//! The SVG charts `--save` keeps beside the report: throughput over time, latency percentile
//! curves, and each entry's ratio to the disk ceiling and to its peer.
//!
//! Charts are drawn into a string first and then written in one go, so a drawing error never
//! leaves half an SVG behind, and every error names the chart's file. Points that are not
//! finite (or not positive on a log axis) are left out rather than drawn; a chart with nothing
//! to show is not written at all, and the summary links only the charts that were.
//!
//! Text is left to the SVG viewer (`<text>` elements with a generic font family), so drawing
//! needs no font files and the crate builds with the Rust toolchain alone.

use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::figures::short;
use crate::report::Report;
use crate::summary::{self, ChartFile, PeerPair};

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const WIDTH: u32 = 1000;
/// The height of a line chart's plot, below its title and legend.
const HEIGHT: u32 = 520;
const FONT: &str = "sans-serif";

/// Ten colours that stay apart from each other (the Tableau 10 set); scenario `i` gets colour
/// `i % 10` in every chart, so a scenario keeps its colour from one chart to the next.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const RILL_COLOUR: RGBColor = PALETTE[0];
const PEER_COLOUR: RGBColor = PALETTE[7];

/// Writes the SVG charts into `dir`: throughput over time (one line per scenario, MB/s against
/// seconds), latency percentile curves (percentile on a "nines" axis, µs on a log axis, one
/// line per scenario), a bar chart of every scenario's and peer's ratio to the disk ceiling
/// with the ceiling drawn at 1.0, and, when some peer ran at the size of a rill produce or
/// consume scenario, a bar chart of rill's throughput divided by that peer's.
///
/// Returns the charts written, in that order; a chart with no data to draw is skipped.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<ChartFile>> {
    let charts = [
        ("throughput.svg", "Throughput over time", throughput(report)),
        ("latency.svg", "Latency percentiles", latency(report)),
        (
            "ratio-to-disk.svg",
            "Ratio to the disk ceiling",
            ratio_to_disk(report),
        ),
        (
            "ratio-to-peers.svg",
            "rill throughput ÷ peer throughput",
            ratio_to_peers(report),
        ),
    ];
    let mut written = Vec::new();
    for (file_name, title, svg) in charts {
        let Some(svg) = svg.with_context(|| format!("draw {file_name}"))? else {
            continue;
        };
        let path = dir.join(file_name);
        std::fs::write(&path, svg).with_context(|| format!("write {}", path.display()))?;
        written.push(ChartFile {
            file_name: file_name.to_owned(),
            title: title.to_owned(),
        });
    }
    Ok(written)
}

/// How a legend entry shows what it stands for.
#[derive(Clone, Copy)]
enum Swatch {
    Line,
    Dashed,
    Box,
}

/// One entry of a chart's legend.
struct Key {
    label: String,
    colour: RGBColor,
    swatch: Swatch,
}

const TITLE_HEIGHT: u32 = 40;
const KEY_ROW: u32 = 22;
const MARGIN: u32 = 16;

/// Where each key goes in the legend strip under the title: left to right, wrapping to a new
/// row when the next one would not fit. Widths are estimated (the viewer picks the font).
fn key_layout(keys: &[Key], width: u32) -> (Vec<(i32, i32)>, u32) {
    let mut places = Vec::with_capacity(keys.len());
    let (mut x, mut row) = (MARGIN, 0u32);
    for key in keys {
        let key_width = 30 + 8 * key.label.chars().count() as u32;
        if x > MARGIN && x + key_width > width - MARGIN {
            x = MARGIN;
            row += 1;
        }
        places.push((x as i32, (row * KEY_ROW + KEY_ROW / 2) as i32));
        x += key_width;
    }
    let height = if keys.is_empty() {
        0
    } else {
        (row + 1) * KEY_ROW + 6
    };
    (places, height)
}

fn draw_keys(area: &Area<'_>, keys: &[Key], places: &[(i32, i32)]) -> anyhow::Result<()> {
    let style = TextStyle::from((FONT, 14).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (key, &(x, y)) in keys.iter().zip(places) {
        let colour = key.colour;
        match key.swatch {
            Swatch::Line => area.draw(&PathElement::new(
                vec![(x, y), (x + 22, y)],
                colour.stroke_width(3),
            ))?,
            Swatch::Dashed => {
                for dash in [x, x + 9, x + 18] {
                    area.draw(&PathElement::new(
                        vec![(dash, y), (dash + 5, y)],
                        colour.stroke_width(2),
                    ))?;
                }
            }
            Swatch::Box => area.draw(&Rectangle::new(
                [(x + 4, y - 7), (x + 18, y + 7)],
                colour.filled(),
            ))?,
        }
        area.draw(&Text::new(key.label.clone(), (x + 28, y), style.clone()))?;
    }
    Ok(())
}

/// Draws a titled chart on a fresh white SVG canvas and returns the document. The legend sits
/// in a strip of its own under the title, so it never hides a line or a bar; `draw` gets the
/// area below it, `plot_height` pixels tall.
fn render(
    plot_height: u32,
    title: &str,
    keys: &[Key],
    draw: impl FnOnce(&Area<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let (places, keys_height) = key_layout(keys, WIDTH);
    let height = TITLE_HEIGHT + keys_height + plot_height;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (head, plot) = root.split_vertically(TITLE_HEIGHT + keys_height);
        let (title_area, keys_area) = head.split_vertically(TITLE_HEIGHT);
        title_area.draw(&Text::new(
            title.to_owned(),
            ((WIDTH / 2) as i32, (TITLE_HEIGHT / 2 + 4) as i32),
            TextStyle::from((FONT, 22).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        draw_keys(&keys_area, keys, &places)?;
        draw(&plot)?;
        root.present()?;
    }
    Ok(svg)
}

fn colour(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// One scenario's line, in the scenario's colour.
struct Line<'a> {
    name: &'a str,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The lines of a chart; `None` when no scenario has a point to draw.
struct Lines<'a> {
    lines: Vec<Line<'a>>,
}

impl<'a> Lines<'a> {
    fn new(lines: Vec<Line<'a>>) -> Option<Self> {
        let lines: Vec<_> = lines
            .into_iter()
            .filter(|line| !line.points.is_empty())
            .collect();
        (!lines.is_empty()).then_some(Self { lines })
    }

    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.lines
            .iter()
            .flat_map(|line| line.points.iter().copied())
    }

    fn keys(&self) -> Vec<Key> {
        self.lines
            .iter()
            .map(|line| Key {
                label: line.name.to_owned(),
                colour: line.colour,
                swatch: Swatch::Line,
            })
            .collect()
    }

    /// Draws each line; a line of one point gets a dot so that it shows.
    fn draw<X, Y>(
        &self,
        chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    ) -> anyhow::Result<()>
    where
        X: Ranged<ValueType = f64>,
        Y: Ranged<ValueType = f64>,
    {
        for line in &self.lines {
            chart.draw_series(LineSeries::new(
                line.points.iter().copied(),
                line.colour.stroke_width(2),
            ))?;
            if let [point] = line.points.as_slice() {
                chart.draw_series(std::iter::once(Circle::new(
                    *point,
                    3,
                    line.colour.filled(),
                )))?;
            }
        }
        Ok(())
    }
}

/// MB/s against seconds since the scenario started, one line per scenario.
fn throughput(report: &Report) -> anyhow::Result<Option<String>> {
    let lines = report
        .scenarios
        .iter()
        .enumerate()
        .map(|(i, scenario)| {
            let points = scenario
                .timeline
                .iter()
                .map(|point| (point.t_s, point.mb_per_s))
                .filter(|&(t, mb)| plottable(t) && plottable(mb))
                .collect();
            Line {
                name: &scenario.name,
                colour: colour(i),
                points,
            }
        })
        .collect();
    let Some(lines) = Lines::new(lines) else {
        return Ok(None);
    };
    let (x_lo, x_hi, y_lo, y_hi) = lines.points().fold(
        (0.0f64, 0.0f64, 0.0f64, 0.0f64),
        |(x_lo, x_hi, y_lo, y_hi), (x, y)| (x_lo.min(x), x_hi.max(x), y_lo.min(y), y_hi.max(y)),
    );
    let x_hi = if x_hi > x_lo { x_hi } else { x_lo + 1.0 };
    let y_hi = if y_hi > y_lo { y_hi * 1.1 } else { y_lo + 1.0 };
    render(HEIGHT, "Throughput over time", &lines.keys(), |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(MARGIN)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the scenario started")
            .y_desc("MB/s (record values, 1 MB = 10^6 bytes)")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(BLACK.mix(0.04))
            .x_label_formatter(&|x| axis(*x))
            .y_label_formatter(&|y| axis(*y))
            .draw()?;
        lines.draw(&mut chart)
    })
    .map(Some)
}

/// Where a percentile sits on the "nines" axis: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3, ...
/// `None` for 100 (the maximum, infinitely far out) and anything outside `[0, 100)`.
fn nines(percentile: f64) -> Option<f64> {
    (0.0..100.0)
        .contains(&percentile)
        .then(|| (-(1.0 - percentile / 100.0).log10()).max(0.0))
}

/// The percentile at `n` on the nines axis, written as people write it: 0, 90, 99, 99.9 ...
fn percentile_label(n: f64) -> String {
    let percentile = 100.0 * (1.0 - 10f64.powf(-n));
    let decimals = (n.ceil() as i64 - 2).clamp(0, 12) as usize;
    trim_zeros(format!("{percentile:.decimals$}"))
}

/// The latency distribution of each scenario: percentile on the nines axis, µs on a log axis.
/// The 100th percentile (the maximum) cannot sit on that axis; the report has it.
fn latency(report: &Report) -> anyhow::Result<Option<String>> {
    let lines = report
        .scenarios
        .iter()
        .enumerate()
        .map(|(i, scenario)| {
            let points = scenario
                .latency_us
                .curve
                .iter()
                .filter(|&&(_, us)| plottable(us) && us >= 1e-6)
                .filter_map(|&(percentile, us)| Some((nines(percentile)?, us)))
                .collect();
            Line {
                name: &scenario.name,
                colour: colour(i),
                points,
            }
        })
        .collect();
    let Some(lines) = Lines::new(lines) else {
        return Ok(None);
    };
    let (x_hi, y_lo, y_hi) = lines.points().fold(
        (0.0f64, f64::MAX, f64::MIN_POSITIVE),
        |(x_hi, y_lo, y_hi), (x, y)| (x_hi.max(x), y_lo.min(y), y_hi.max(y)),
    );
    let x_hi = x_hi.ceil().max(1.0);
    // Keep at least a factor of ten in view so that a flat curve still shows where it sits.
    let (y_lo, y_hi) = (y_lo / 1.5, (y_hi * 1.5).max(y_lo * 10.0));
    render(HEIGHT, "Latency percentiles", &lines.keys(), |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(MARGIN)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..x_hi, (y_lo..y_hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile (each step one more nine)")
            .y_desc("latency, µs (log scale)")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(BLACK.mix(0.04))
            // One label per nine: 0, 90, 99, 99.9 ...
            .x_labels(x_hi as usize + 1)
            .x_label_formatter(&|n| percentile_label(*n))
            .y_label_formatter(&|y| axis(*y))
            .draw()?;
        lines.draw(&mut chart)
    })
    .map(Some)
}

/// One horizontal bar; `group` indexes the chart's groups (and so gives its colour).
struct Bar {
    label: String,
    value: f64,
    group: usize,
}

struct BarChart<'a> {
    title: &'a str,
    x_desc: &'a str,
    bars: Vec<Bar>,
    groups: Vec<(&'a str, RGBColor)>,
    /// Where the dashed reference line goes, and its legend entry.
    reference: (f64, String),
}

/// Every scenario's and peer's MB/s over the disk ceiling, the ceiling at 1.0.
fn ratio_to_disk(report: &Report) -> anyhow::Result<Option<String>> {
    let scenarios = report.scenarios.iter().map(|s| (s, 0));
    let peers = report.peers.iter().map(|p| (p, 1));
    let bars: Vec<Bar> = scenarios
        .chain(peers)
        .map(|(entry, group)| Bar {
            label: entry.name.clone(),
            value: entry.ratio_to_disk,
            group,
        })
        .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    let ceiling = report.ceilings.disk_write_mb_s;
    let reference = if ceiling.is_finite() {
        format!("disk ceiling ({} MB/s)", short(ceiling))
    } else {
        "disk ceiling".to_owned()
    };
    let mut groups = vec![("rill", RILL_COLOUR)];
    if !report.peers.is_empty() {
        groups.push(("peer", PEER_COLOUR));
    }
    bar_chart(BarChart {
        title: "Ratio to the disk ceiling",
        x_desc: "MB/s ÷ the disk's sequential-write MB/s",
        bars,
        groups,
        reference: (1.0, reference),
    })
    .map(Some)
}

/// rill's produce/consume MB/s over the matching peer's append/read MB/s, parity at 1.0.
fn ratio_to_peers(report: &Report) -> anyhow::Result<Option<String>> {
    let bars: Vec<Bar> = summary::peer_pairs(report)
        .iter()
        .map(|pair: &PeerPair<'_>| Bar {
            label: format!("{} vs {}", pair.rill.name, pair.peer.name),
            value: pair.ratio().unwrap_or(f64::NAN),
            group: 0,
        })
        .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    bar_chart(BarChart {
        title: "rill throughput ÷ peer throughput (same record size)",
        x_desc: "rill MB/s ÷ peer MB/s (above 1: rill is faster)",
        bars,
        groups: vec![("rill ÷ peer", RILL_COLOUR)],
        reference: (1.0, "parity".to_owned()),
    })
    .map(Some)
}

fn bar_chart(spec: BarChart<'_>) -> anyhow::Result<String> {
    let n = spec.bars.len();
    if n == 0 {
        anyhow::bail!("a bar chart needs at least one bar");
    }
    let plot_height = 80 + 36 * n as u32;
    let longest = spec
        .bars
        .iter()
        .map(|bar| bar.label.chars().count())
        .max()
        .unwrap_or(0);
    let label_area = (longest as u32 * 7 + 16).clamp(80, 480);
    let top = spec
        .bars
        .iter()
        .map(|bar| bar.value)
        .filter(|&v| plottable(v))
        .fold(spec.reference.0, f64::max);
    // Room to the right of the longest bar for its value.
    let x_hi = if top > 0.0 { top * 1.15 } else { 1.0 };
    let gap = x_hi * 0.005;
    // Bar `k` sits in row `n - 1 - k`, so that the first bar is at the top.
    let row = |k: usize| n - 1 - k;
    let mut keys: Vec<Key> = spec
        .groups
        .iter()
        .map(|&(label, colour)| Key {
            label: label.to_owned(),
            colour,
            swatch: Swatch::Box,
        })
        .collect();
    keys.push(Key {
        label: spec.reference.1.clone(),
        colour: BLACK,
        swatch: Swatch::Dashed,
    });
    render(plot_height, spec.title, &keys, |area| {
        // Rows are one unit of a plain numeric axis: bar `k` fills most of row `row(k)`.
        let rows = n as f64;
        let mut chart = ChartBuilder::on(area)
            .margin(MARGIN)
            .x_label_area_size(48)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..x_hi, 0.0..rows)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(spec.x_desc)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| axis(*x))
            .draw()?;
        // The bars' names, right-aligned against the axis, drawn here rather than as axis
        // labels so that each sits exactly at the middle of its bar.
        let name_style = TextStyle::from((FONT, 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Right, VPos::Center));
        let (base_x, base_y) = area.get_base_pixel();
        for (k, bar) in spec.bars.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(0.0, row(k) as f64 + 0.5));
            area.draw(&Text::new(
                bar.label.clone(),
                (x - 8 - base_x, y - base_y),
                name_style.clone(),
            ))?;
        }
        chart.draw_series(
            spec.bars
                .iter()
                .enumerate()
                .filter(|(_, bar)| plottable(bar.value))
                .map(|(k, bar)| {
                    let colour = spec.groups.get(bar.group).map_or(BLACK, |g| g.1);
                    let y = row(k) as f64;
                    Rectangle::new(
                        [(0.0, y + 0.18), (bar.value.max(0.0), y + 0.82)],
                        colour.filled(),
                    )
                }),
        )?;
        let value_style = TextStyle::from((FONT, 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(spec.bars.iter().enumerate().map(|(k, bar)| {
            let (x, text) = if plottable(bar.value) {
                (bar.value.max(0.0), format!("{:.2}", bar.value))
            } else {
                (0.0, "n/a".to_owned())
            };
            Text::new(text, (x + gap, row(k) as f64 + 0.5), value_style.clone())
        }))?;
        let at = spec.reference.0;
        chart.draw_series(DashedLineSeries::new(
            [(at, 0.0), (at, rows)],
            8,
            5,
            BLACK.stroke_width(2),
        ))?;
        Ok(())
    })
}

/// Whether a value can go on an axis: finite, and small enough for the tick arithmetic (a
/// figure past 10^15 is a broken measurement, not one to draw).
fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() < 1e15
}

/// An axis label: like [`short`], without trailing zeros (0.5, not 0.500).
fn axis(v: f64) -> String {
    trim_zeros(short(v))
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TimelinePoint;
    use crate::save::tests::sample_report;

    #[test]
    fn nines_axis_places_percentiles() {
        assert_eq!(nines(0.0), Some(0.0));
        assert!((nines(90.0).unwrap() - 1.0).abs() < 1e-9);
        assert!((nines(99.9).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), None);
        assert_eq!(nines(f64::NAN), None);
        assert_eq!(nines(-1.0), None);
        let labels: Vec<String> = (0..5).map(|n| percentile_label(f64::from(n))).collect();
        assert_eq!(labels, ["0", "90", "99", "99.9", "99.99"]);
    }

    #[test]
    fn axis_numbers() {
        assert_eq!(axis(0.5), "0.5");
        assert_eq!(axis(10.0), "10");
        assert_eq!(axis(1234.0), "1234");
    }

    #[test]
    fn empty_data_draws_only_what_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = sample_report();
        report.peers.clear();
        for scenario in &mut report.scenarios {
            scenario.timeline.clear();
            scenario.latency_us.curve = vec![(100.0, 5.0), (50.0, 0.0), (f64::NAN, 3.0)];
        }
        let charts = write_all(&report, dir.path()).unwrap();
        let names: Vec<&str> = charts.iter().map(|c| c.file_name.as_str()).collect();
        assert_eq!(names, ["ratio-to-disk.svg"]);

        report.scenarios.clear();
        assert!(write_all(&report, dir.path()).unwrap().is_empty());
    }

    #[test]
    fn odd_values_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = sample_report();
        let first = &mut report.scenarios[0];
        first.timeline = vec![TimelinePoint {
            t_s: f64::NAN,
            mb_per_s: 1.0,
            records_per_s: 1.0,
        }];
        first.timeline.push(TimelinePoint {
            t_s: 0.0,
            mb_per_s: 0.0,
            records_per_s: 0.0,
        });
        first.latency_us.curve = vec![(0.0, 7.0)];
        first.ratio_to_disk = f64::INFINITY;
        report.scenarios[1].ratio_to_disk = 1e300;
        report.scenarios[1].latency_us.curve = vec![(50.0, f64::MAX), (90.0, 1e-300)];
        report.peers[0].mb_per_s = 0.0;
        report.peers[0].ratio_to_disk = f64::NAN;
        report.ceilings.disk_write_mb_s = f64::NAN;
        let charts = write_all(&report, dir.path()).unwrap();
        assert_eq!(charts.len(), 4);
        for chart in charts {
            let svg = std::fs::read_to_string(dir.path().join(&chart.file_name)).unwrap();
            assert!(!svg.contains("NaN"), "{}", chart.file_name);
            assert!(!svg.contains("inf"), "{}", chart.file_name);
        }
    }
}
