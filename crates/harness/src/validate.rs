//! The check that a report carries every field the project promises its readers, as a reader
//! gets it (parsed JSON, not our struct), and that nothing was lost or delivered twice.
//!
//! Apart from `report` (the data model) because it also knows which rows a run owes (the
//! latency-at-a-trickle rows of `trickle`), and `trickle` fills report entries.

/// Fields every scenario and peer entry must have, as the JSON names them.
const ENTRY_FIELDS: &[&str] = &[
    "name",
    "record_bytes",
    "records",
    "producers",
    "consumers",
    "partitions",
    "backend",
    "records_per_s",
    "mb_per_s",
    "ratio_to_disk",
    "latency_us",
    "cpu_s",
    "cpu_cores",
    "cpu_ns_per_record",
    "peak_rss_mb",
    "lost_records",
];
const LATENCY_FIELDS: &[&str] = &["p50", "p99", "p999", "max"];
const MACHINE_FIELDS: &[&str] = &["cpu_model", "cores", "kernel", "file_system"];
const CEILING_FIELDS: &[&str] = &["disk_write_mb_s", "memcpy_gb_s"];

/// Checks a report as a reader gets it (parsed JSON, not our struct): every promised field is
/// present, and no scenario or peer lost a record. Returns every problem found, not just the
/// first, so one CI failure tells the whole story.
pub fn problems(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    require_fields(report, "machine", MACHINE_FIELDS, &mut out);
    require_fields(report, "ceilings", CEILING_FIELDS, &mut out);
    for list in ["scenarios", "peers"] {
        match report.get(list).and_then(serde_json::Value::as_array) {
            None => out.push(format!("`{list}` is missing or not an array")),
            Some(entries) if entries.is_empty() => out.push(format!("`{list}` is empty")),
            Some(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    check_entry(list, i, entry, &mut out);
                    check_open_loop(list, i, entry, &mut out);
                }
            }
        }
    }
    check_trickle_rows(report, &mut out);
    out
}

/// Open-loop entries (`rate ...`) say what rate they offered, and each target they carry is
/// whole and agrees with the figure it bounds.
fn check_open_loop(list: &str, index: usize, entry: &serde_json::Value, out: &mut Vec<String>) {
    let name = entry
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    let here = format!("{list}[{index}] ({name})");
    if name.starts_with("rate ")
        && entry
            .get("offered_records_per_s")
            .and_then(serde_json::Value::as_f64)
            .is_none()
    {
        out.push(format!("{here}: `offered_records_per_s` is missing"));
    }
    let targets = entry
        .get("targets")
        .and_then(serde_json::Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (t, target) in targets.iter().enumerate() {
        if let Some(problem) = target_problem(entry, target) {
            out.push(format!("{here}: `targets[{t}]` {problem}"));
        }
    }
}

/// What is wrong with one target of `entry`, if anything.
fn target_problem(entry: &serde_json::Value, target: &serde_json::Value) -> Option<String> {
    let figure = target.get("figure").and_then(serde_json::Value::as_str);
    let at_most = target.get("at_most").and_then(serde_json::Value::as_f64);
    let measured = target.get("measured").and_then(serde_json::Value::as_f64);
    let met = target.get("met").and_then(serde_json::Value::as_bool);
    let (Some(figure), Some(at_most), Some(measured), Some(met)) = (figure, at_most, measured, met)
    else {
        return Some("lacks one of `figure`, `at_most`, `measured`, `met`".to_owned());
    };
    let actual = figure
        .split('.')
        .try_fold(entry, |value, key| value.get(key))
        .and_then(serde_json::Value::as_f64);
    let Some(actual) = actual else {
        return Some(format!("bounds `{figure}`, which the entry does not have"));
    };
    // JSON numbers may come back a rounding away from what was written.
    if (actual - measured).abs() > 1e-9 * actual.abs().max(1.0) {
        return Some(format!(
            "says `{figure}` measured {measured}, the entry says {actual}"
        ));
    }
    (met != (measured <= at_most))
        .then(|| format!("says met={met} for {measured} against at most {at_most}"))
}

/// A run that took the open-loop scenarios (any `rate ...` entry) has every
/// latency-at-a-trickle row of its kind (`--quick` or full).
fn check_trickle_rows(report: &serde_json::Value, out: &mut Vec<String>) {
    let names: Vec<&str> = report
        .get("scenarios")
        .and_then(serde_json::Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|entry| entry.get("name").and_then(serde_json::Value::as_str))
        .collect();
    if !names.iter().any(|name| name.starts_with("rate ")) {
        return;
    }
    let quick = report
        .get("quick")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    for row in crate::trickle::names(quick) {
        if !names.contains(&row.as_str()) {
            out.push(format!(
                "scenario `{row}` is missing (latency at a trickle)"
            ));
        }
    }
}

fn require_fields(parent: &serde_json::Value, key: &str, fields: &[&str], out: &mut Vec<String>) {
    let Some(object) = parent.get(key) else {
        out.push(format!("`{key}` is missing"));
        return;
    };
    for field in fields {
        if object.get(field).is_none_or(serde_json::Value::is_null) {
            out.push(format!("`{key}.{field}` is missing"));
        }
    }
}

fn check_entry(list: &str, index: usize, entry: &serde_json::Value, out: &mut Vec<String>) {
    let name = entry
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    let here = format!("{list}[{index}] ({name})");
    for field in ENTRY_FIELDS {
        if entry.get(field).is_none_or(serde_json::Value::is_null) {
            out.push(format!("{here}: `{field}` is missing"));
        }
    }
    if let Some(latency) = entry.get("latency_us") {
        for field in LATENCY_FIELDS {
            if latency.get(field).is_none_or(serde_json::Value::is_null) {
                out.push(format!("{here}: `latency_us.{field}` is missing"));
            }
        }
    }
    if name.starts_with("group") && entry.get("rebalance_pause_ms_max").is_none() {
        out.push(format!("{here}: `rebalance_pause_ms_max` is missing"));
    }
    match entry
        .get("lost_records")
        .and_then(serde_json::Value::as_u64)
    {
        Some(0) | None => {}
        Some(lost) => out.push(format!("{here}: lost {lost} records")),
    }
    // Only a consumer group may deliver a record twice (at least once, across a rebalance); a
    // plain consumer that does has moved its position backwards.
    match entry
        .get("duplicate_records")
        .and_then(serde_json::Value::as_u64)
    {
        Some(0) | None => {}
        Some(_) if name.starts_with("group") => {}
        Some(twice) => out.push(format!("{here}: delivered {twice} records twice")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{entry, json, report};
    use crate::report::{Report, TargetCheck};

    #[test]
    fn complete_report_has_no_problems() {
        assert_eq!(problems(&json(&report())), Vec::<String>::new());
    }

    #[test]
    fn lost_records_are_a_problem() {
        let mut r = report();
        r.scenarios[0].lost_records = 3;
        assert_eq!(
            problems(&json(&r)),
            vec!["scenarios[0] (produce): lost 3 records".to_owned()]
        );
    }

    #[test]
    fn duplicates_are_a_problem_except_in_groups() {
        let mut r = report();
        r.scenarios[0].duplicate_records = 2;
        assert_eq!(
            problems(&json(&r)),
            vec!["scenarios[0] (produce): delivered 2 records twice".to_owned()]
        );
        r.scenarios[0].name = "group 1KiB".into();
        r.scenarios[0].rebalance_pause_ms_max = Some(1.0);
        assert_eq!(problems(&json(&r)), Vec::<String>::new());
    }

    #[test]
    fn missing_fields_are_each_named() {
        let mut value = json(&report());
        value["peers"][0]
            .as_object_mut()
            .unwrap()
            .remove("peak_rss_mb");
        value["peers"][0]["latency_us"]
            .as_object_mut()
            .unwrap()
            .remove("p999");
        value["ceilings"]
            .as_object_mut()
            .unwrap()
            .remove("memcpy_gb_s");
        let found = problems(&value);
        assert_eq!(
            found,
            vec![
                "`ceilings.memcpy_gb_s` is missing".to_owned(),
                "peers[0] (fjall append): `peak_rss_mb` is missing".to_owned(),
                "peers[0] (fjall append): `latency_us.p999` is missing".to_owned(),
            ]
        );
    }

    #[test]
    fn cpu_cores_is_a_promised_field() {
        let mut value = json(&report());
        value["scenarios"][0]
            .as_object_mut()
            .unwrap()
            .remove("cpu_cores");
        assert_eq!(
            problems(&value),
            vec!["scenarios[0] (produce): `cpu_cores` is missing".to_owned()]
        );
    }

    /// A report with one rate entry, as a `--quick` run of the rate family writes it.
    fn quick_rate_report() -> Report {
        let mut r = report();
        for name in crate::trickle::names(true) {
            let mut rate = entry(&name);
            rate.offered_records_per_s = Some(10_000.0);
            rate.latency_us.p99 = 30.0;
            rate.targets = vec![TargetCheck::new("latency_us.p99", 25.0, 30.0)];
            r.scenarios.push(rate);
        }
        r
    }

    #[test]
    fn open_loop_entries_are_checked() {
        assert_eq!(problems(&json(&quick_rate_report())), Vec::<String>::new());

        let mut value = json(&quick_rate_report());
        let rate = value["scenarios"][1].as_object_mut().unwrap();
        rate.remove("offered_records_per_s");
        rate["targets"][0]["met"] = serde_json::Value::Bool(true);
        let found = problems(&value);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].ends_with("`offered_records_per_s` is missing"));
        assert!(found[1].ends_with("`targets[0]` says met=true for 30 against at most 25"));

        let mut value = json(&quick_rate_report());
        value["scenarios"][1]["targets"][0]["figure"] = "latency_us.p42".into();
        value["scenarios"][1]["latency_us"]["p99"] = 31.0.into();
        value["scenarios"][1]["targets"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"figure": "cpu_cores"}));
        let found = problems(&value);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].ends_with("bounds `latency_us.p42`, which the entry does not have"));
        assert!(found[1].ends_with("lacks one of `figure`, `at_most`, `measured`, `met`"));
    }

    #[test]
    fn a_measured_figure_must_be_the_entrys() {
        let mut value = json(&quick_rate_report());
        value["scenarios"][1]["latency_us"]["p99"] = 31.0.into();
        let found = problems(&value);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].ends_with("measured 30, the entry says 31"));
    }

    #[test]
    fn a_run_with_rate_entries_has_every_trickle_row() {
        let mut r = quick_rate_report();
        r.quick = false;
        let found = problems(&json(&r));
        let missing: Vec<String> = crate::trickle::names(false)
            .into_iter()
            .filter(|name| !crate::trickle::names(true).contains(name))
            .map(|name| format!("scenario `{name}` is missing (latency at a trickle)"))
            .collect();
        assert!(!missing.is_empty());
        assert_eq!(found, missing);
        // A run without the rate family owes none.
        assert!(problems(&json(&report())).is_empty());
    }

    #[test]
    fn group_entries_need_their_pause() {
        let mut r = report();
        r.scenarios.push(entry("group"));
        assert_eq!(
            problems(&json(&r)),
            vec!["scenarios[1] (group): `rebalance_pause_ms_max` is missing".to_owned()]
        );
        r.scenarios[1].rebalance_pause_ms_max = Some(1.5);
        assert!(problems(&json(&r)).is_empty());
    }
}
