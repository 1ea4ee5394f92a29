//! `rill dump`, run as the built binary against the independent Kafka vectors
//! (`tests/data/kafka-batches`) and against files built here.
//!
//! The manifest labels `snappy`, `lz4` and `zstd` with those codecs although the writer stored
//! them uncompressed; only the records are compared, so that does not matter here.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rill_engine::record::{Batch, BatchBuilder, Compression, Limits};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    rill_testdata::kafka_batches()
}

fn manifest() -> serde_json::Map<String, Value> {
    let path = vectors_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    match serde_json::from_str(&text).unwrap() {
        Value::Object(map) => map,
        other => panic!("{} is not an object: {other}", path.display()),
    }
}

fn rill(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

fn dump(file: &Path) -> Output {
    rill(&["dump"], file)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The line `rill dump` must print for a manifest record: these keys, in this order, compact.
fn expected_line(record: &Value) -> String {
    let field = |name: &str| serde_json::to_string(&record[name]).unwrap();
    format!(
        "{{\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{},\"headers\":{}}}",
        field("offset"),
        field("timestamp"),
        field("key"),
        field("value"),
        field("headers"),
    )
}

/// Checks stdout against the records, parsed (for a readable failure) and then as exact text
/// (for key order and compactness).
fn assert_prints_records(name: &str, output: &Output, records: &[Value]) {
    let stdout = std::str::from_utf8(&output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        records.len(),
        "{name}: record count; stderr: {}",
        stderr(output)
    );
    for (index, (line, record)) in lines.iter().zip(records).enumerate() {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{name}: line {index} is not JSON ({e}): {line}"));
        for field in ["offset", "timestamp", "key", "value", "headers"] {
            assert_eq!(
                parsed[field], record[field],
                "{name}: record {index}, {field}"
            );
        }
        assert_eq!(*line, expected_line(record), "{name}: record {index} text");
    }
}

#[test]
fn every_vector_prints_exactly_its_manifest_records() {
    let manifest = manifest();
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "bin") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let expected = manifest
            .get(&name)
            .unwrap_or_else(|| panic!("{name}.bin has no entry in manifest.json"));
        // `corrupt_crc` has `records: null`: nothing may be printed.
        let records = expected["records"].as_array().cloned().unwrap_or_default();

        let output = dump(&path);
        assert_prints_records(&name, &output, &records);
        let broken = expected.get("expect").is_some();
        assert_eq!(
            output.status.success(),
            !broken,
            "{name}: exit status {:?}, stderr: {}",
            output.status,
            stderr(&output)
        );
        checked.push(name);
    }
    assert!(checked.len() >= 13, "only {checked:?} checked");
}

/// The vectors written by kafka-python's and aiokafka's builders (`tests/data/generated`):
/// every codec really compressed, log-append time, producer fields, concatenated batches.
#[test]
fn every_generated_vector_prints_exactly_its_manifest_records() {
    let dir = rill_testdata::generated_batches();
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    let files = manifest["files"].as_object().unwrap();
    for (name, entry) in files {
        let valid = entry["expect"] == "valid";
        let records: Vec<Value> = if valid {
            entry["batches"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|batch| batch["records"].as_array().unwrap().clone())
                .collect()
        } else {
            Vec::new()
        };
        let output = dump(&dir.join(format!("{name}.bin")));
        assert_prints_records(name, &output, &records);
        assert_eq!(
            output.status.success(),
            valid,
            "{name}: exit status {:?}, stderr: {}",
            output.status,
            stderr(&output)
        );
    }
    assert!(files.len() >= 20, "only {} generated vectors", files.len());
}

#[test]
fn corrupt_crc_prints_nothing_and_names_byte_0_and_the_crc() {
    let output = dump(&vectors_dir().join("corrupt_crc.bin"));
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = stderr(&output);
    assert!(stderr.contains("at byte 0 of"), "{stderr}");
    assert!(stderr.contains("corrupt_crc.bin"), "{stderr}");
    assert!(stderr.contains("CRC"), "{stderr}");
}

#[test]
fn torn_tail_prints_the_first_batch_then_names_where_the_second_starts() {
    let path = vectors_dir().join("torn_tail.bin");
    let bytes = std::fs::read(&path).unwrap();
    let first = Batch::parse(&bytes, &Limits::default()).unwrap();
    assert!(first.size_bytes() < bytes.len(), "the tail is not torn");

    let output = dump(&path);
    let records = manifest()["torn_tail"]["records"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(records.len(), 5);
    assert_prints_records("torn_tail", &output, &records);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(
        stderr.contains(&format!("corrupt batch at byte {} of", first.size_bytes())),
        "{stderr}"
    );
    assert!(stderr.contains("truncated"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_ends_the_dump_quietly() {
    // About 1.6 MB of output: far more than a pipe buffers, so the dump is still writing when
    // the reader leaves.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill"))
        .arg("dump")
        .arg(vectors_dir().join("large_values_none.bin"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    assert!(first_line.starts_with("{\"offset\":"), "{first_line}");
    // The reader was dropped with the BufReader: the next write gets EPIPE.
    let output = child.wait_with_output().unwrap();
    assert_eq!(stderr(&output), "");
    assert!(output.status.success(), "{:?}", output.status);
}

#[test]
fn max_batch_bytes_admits_batches_above_the_default_limit() {
    let value = vec![0x5a; 64 * 1024];
    let mut builder = BatchBuilder::new(Compression::None).base_offset(100);
    for i in 0..20i64 {
        builder.append(i, Some(b"key"), Some(&value), &[]).unwrap();
    }
    let bytes = builder.build().unwrap();
    assert!(bytes.len() > Limits::DEFAULT_MAX_BATCH_BYTES);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();

    let refused = dump(file.path());
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
    assert!(
        stderr(&refused).contains("exceeds the limit"),
        "{}",
        stderr(&refused)
    );

    let limit = (4 * 1024 * 1024).to_string();
    let admitted = rill(&["dump", "--max-batch-bytes", &limit], file.path());
    assert!(admitted.status.success(), "{}", stderr(&admitted));
    let lines: Vec<Value> = std::str::from_utf8(&admitted.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[19]["offset"], 119);
    assert_eq!(lines[19]["value"].as_str().unwrap(), hex::encode(&value));
}

#[test]
fn an_empty_file_dumps_nothing_and_succeeds() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let output = dump(file.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = dump(&dir.path().join("00000000000000000000.log"));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("00000000000000000000.log"),
        "{}",
        stderr(&output)
    );
}
