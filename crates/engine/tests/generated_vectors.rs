//! The record format against RecordBatch v2 files written by the batch builders of two
//! independent Kafka client libraries, kafka-python and aiokafka (`tests/data/generated`, made
//! by `tests/data/generate/generate.py`, which also read every file back through both libraries'
//! readers before writing it).
//!
//! Every header field and every record of every batch is compared with the manifest; CRC
//! validation is checked on the corrupt files and by flipping bytes of the valid ones; and the
//! manifest itself must still cover what the vectors are for (every codec from both libraries,
//! nulls, log-append time, producer fields, 1,000-record and concatenated batches), so a
//! regeneration that silently lost a case fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::collections::BTreeSet;
use std::io::Write;

use rill_engine::record::{
    Batch, BatchBuilder, Batches, Compression, HEADER_LEN, Header, Limits, RecordError,
    TimestampType,
};
use serde_json::{Value, json};

/// First byte covered by the CRC-32C (the attributes); bytes 17..21 hold the CRC itself.
const CRC_COVERED_FROM: usize = 21;
const CRC_FIELD: usize = 17;
/// Byte offsets of header fields.
const LENGTH_FIELD: usize = 8;
const LEADER_EPOCH_FIELD: usize = 12;
const ATTRIBUTES_FIELD: usize = 21;

struct Vector {
    name: String,
    bytes: Vec<u8>,
    entry: Value,
}

impl Vector {
    fn is_valid(&self) -> bool {
        self.entry["expect"] == "valid"
    }

    fn library(&self) -> &str {
        self.entry["library"].as_str().unwrap()
    }

    fn batches(&self) -> &[Value] {
        self.entry["batches"].as_array().unwrap()
    }
}

fn vectors() -> Vec<Vector> {
    let dir = rill_testdata::generated_batches();
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: Value = serde_json::from_str(&text).unwrap();
    let files = manifest["files"].as_object().unwrap();
    assert!(!files.is_empty(), "{}: no files", path.display());
    files
        .iter()
        .map(|(name, entry)| Vector {
            name: name.clone(),
            bytes: std::fs::read(dir.join(format!("{name}.bin"))).unwrap(),
            entry: entry.clone(),
        })
        .collect()
}

fn hex_or_null(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| Value::String(hex::encode(b)))
}

/// A decoded record in the manifest's shape, so the two compare as JSON values.
fn record_json(record: &rill_engine::record::Record<'_>) -> Value {
    let headers: Vec<Value> = record
        .headers()
        .map(|h| {
            json!([
                String::from_utf8(h.key.to_vec()).unwrap(),
                hex_or_null(h.value)
            ])
        })
        .collect();
    json!({
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": hex_or_null(record.key),
        "value": hex_or_null(record.value),
        "headers": headers,
    })
}

/// Every header field the manifest states, read from the batch through the engine.
fn header_json(position: u64, batch: &Batch<'_>) -> Value {
    let h = batch.header();
    let timestamp_type = match h.timestamp_type() {
        TimestampType::CreateTime => "create_time",
        TimestampType::LogAppendTime => "log_append_time",
    };
    json!({
        "position": position,
        "size": batch.size_bytes(),
        "base_offset": batch.base_offset(),
        "partition_leader_epoch": h.partition_leader_epoch.get(),
        "magic": h.magic,
        "crc": h.crc.get(),
        "attributes": h.attributes.get(),
        "codec": batch.compression().unwrap().name(),
        "timestamp_type": timestamp_type,
        "transactional": h.is_transactional(),
        "control": h.is_control(),
        "last_offset_delta": h.last_offset_delta.get(),
        "first_timestamp": h.base_timestamp.get(),
        "max_timestamp": batch.max_timestamp(),
        "producer_id": h.producer_id.get(),
        "producer_epoch": h.producer_epoch.get(),
        "base_sequence": h.base_sequence.get(),
        "record_count": batch.record_count(),
    })
}

fn without_records(batch: &Value) -> Value {
    let mut fields = batch.as_object().unwrap().clone();
    fields.remove("records");
    Value::Object(fields)
}

#[test]
fn every_generated_vector_decodes_to_its_manifest() {
    let limits = Limits::default();
    let mut batches_checked = 0;
    let mut records_checked = 0;
    for vector in vectors().iter().filter(|v| v.is_valid()) {
        let name = &vector.name;
        let expected = vector.batches();
        let mut walk = Batches::new(&vector.bytes, limits);
        let mut seen = 0;
        for (item, want) in walk.by_ref().zip(expected) {
            let (position, batch) = item.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                header_json(position, &batch),
                without_records(want),
                "{name}: batch at byte {position}"
            );
            let records = batch
                .records(&limits)
                .unwrap_or_else(|e| panic!("{name}: batch at byte {position}: {e}"));
            let want_records = want["records"].as_array().unwrap();
            let mut count = 0;
            for (index, (record, want)) in records.iter().zip(want_records).enumerate() {
                let record = record.unwrap_or_else(|e| panic!("{name}: record {index}: {e}"));
                assert_eq!(&record_json(&record), want, "{name}: record {index}");
                count += 1;
            }
            assert_eq!(
                (records.iter().count(), count),
                (want_records.len(), want_records.len()),
                "{name}: batch at byte {position}: record count"
            );
            records_checked += count;
            seen += 1;
        }
        assert_eq!(seen, expected.len(), "{name}: batch count");
        assert!(walk.next().is_none(), "{name}: bytes after the last batch");
        assert_eq!(
            walk.position(),
            vector.bytes.len(),
            "{name}: not read to its end"
        );
        batches_checked += seen;
    }
    println!("{batches_checked} batches, {records_checked} records checked");
    assert!(batches_checked >= 30 && records_checked >= 2_000);
}

#[test]
fn corrupt_vectors_fail_the_crc_and_yield_no_records() {
    let corrupt: Vec<Vector> = vectors().into_iter().filter(|v| !v.is_valid()).collect();
    let libraries: BTreeSet<&str> = corrupt.iter().map(Vector::library).collect();
    assert_eq!(libraries, BTreeSet::from(["aiokafka", "kafka-python"]));
    for vector in &corrupt {
        let name = &vector.name;
        assert_eq!(vector.entry["expect"], "crc_error", "{name}");
        let parsed = Batch::parse(&vector.bytes, &Limits::default());
        assert!(
            matches!(parsed, Err(RecordError::CrcMismatch { .. })),
            "{name}: {parsed:?}"
        );
        let mut walk = Batches::new(&vector.bytes, Limits::default());
        let first = walk.next().unwrap();
        assert!(
            matches!(first, Err(ref e) if e.position == 0 && matches!(e.source, RecordError::CrcMismatch { .. })),
            "{name}: {first:?}"
        );
        assert!(walk.next().is_none(), "{name}: read on after a CRC error");
        // Undoing the flip restores a batch the CRC accepts: the CRC caught that byte, not
        // something else about the file.
        let mut repaired = vector.bytes.clone();
        let flipped = vector.entry["flipped_byte"].as_u64().unwrap() as usize;
        repaired[flipped] ^= 0x01;
        Batch::parse(&repaired, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Positions to damage in a batch of `size` bytes: every header byte from the CRC field on,
/// then up to 256 spread over the records section (all of them in a small batch).
fn damage_positions(size: usize) -> Vec<usize> {
    let mut positions: Vec<usize> = (CRC_FIELD..HEADER_LEN.min(size)).collect();
    let body = size.saturating_sub(HEADER_LEN);
    let step = body.div_ceil(256).max(1);
    positions.extend((HEADER_LEN..size).step_by(step));
    positions.push(size - 1);
    positions
}

#[test]
fn any_flipped_bit_under_the_crc_is_caught_and_nothing_else_is() {
    let limits = Limits::default();
    let mut flips = 0;
    for vector in vectors().iter().filter(|v| v.is_valid()) {
        for item in Batches::new(&vector.bytes, limits) {
            let (position, batch) = item.unwrap();
            let bytes = batch.as_bytes();
            for at in damage_positions(bytes.len()) {
                let mut damaged = bytes.to_vec();
                damaged[at] ^= 1 << (at % 8);
                let result = Batch::parse(&damaged, &limits);
                assert!(
                    matches!(result, Err(RecordError::CrcMismatch { .. })),
                    "{} batch at {position}: flipping byte {at} gave {:?}",
                    vector.name,
                    result.map(|b| b.base_offset())
                );
                flips += 1;
            }
            // Kafka's CRC leaves out the base offset and the partition leader epoch, which the
            // broker writes after the producer computed it: changing them keeps the batch valid.
            let mut restamped = bytes.to_vec();
            restamped[7] ^= 0x01;
            restamped[LEADER_EPOCH_FIELD + 3] ^= 0x01;
            let parsed = Batch::parse(&restamped, &limits).unwrap();
            assert_eq!(parsed.base_offset(), batch.base_offset() ^ 1);
        }
    }
    assert!(flips > 5_000, "only {flips} damaged batches checked");
}

#[test]
fn vectors_cover_every_codec_and_case_from_both_libraries() {
    let mut seen: BTreeSet<(String, &str)> = BTreeSet::new();
    for vector in vectors().iter().filter(|v| v.is_valid()) {
        let library = vector.library().to_owned();
        let mut add = |case: &'static str| {
            seen.insert((library.clone(), case));
        };
        if vector.batches().len() > 1 {
            add("concatenated");
        }
        for batch in vector.batches() {
            add(match batch["codec"].as_str().unwrap() {
                "none" => "none",
                "gzip" => "gzip",
                "snappy" => "snappy",
                "lz4" => "lz4",
                "zstd" => "zstd",
                other => panic!("{}: codec {other}", vector.name),
            });
            if batch["timestamp_type"] == "log_append_time" {
                add("log append time");
            }
            if batch["transactional"] == true {
                add("transactional");
            }
            if batch["producer_id"].as_i64().unwrap() >= 0 {
                add("producer id");
            }
            if batch["record_count"].as_u64().unwrap() >= 1_000 {
                add("1,000 records");
            }
            for record in batch["records"].as_array().unwrap() {
                if record["key"].is_null() {
                    add("null key");
                }
                if record["value"].is_null() {
                    add("null value");
                }
                let headers = record["headers"].as_array().unwrap();
                if headers.iter().any(|h| h[1].is_null()) {
                    add("null header value");
                }
            }
        }
    }
    let cases = [
        "none",
        "gzip",
        "snappy",
        "lz4",
        "zstd",
        "concatenated",
        "log append time",
        "transactional",
        "producer id",
        "1,000 records",
        "null key",
        "null value",
        "null header value",
    ];
    for library in ["kafka-python", "aiokafka"] {
        for case in cases {
            assert!(
                seen.contains(&(library.to_owned(), case)),
                "no {case} vector from {library}"
            );
        }
    }
}

/// The two-member vector from the generator, by name: the bug it found stays visible.
#[test]
fn gzip_payload_of_two_members_from_python_reads_every_record() {
    let vector = vectors()
        .into_iter()
        .find(|v| v.name == "kafka_python_gzip_two_members")
        .unwrap();
    let batch = Batch::parse(&vector.bytes, &Limits::default()).unwrap();
    assert_eq!(batch.compression().unwrap(), Compression::Gzip);
    let records = batch.records(&Limits::default()).unwrap();
    let decoded: Result<Vec<_>, _> = records.iter().collect();
    assert_eq!(decoded.unwrap().len(), 60);
}

/// Re-packs `batch` (uncompressed) with its records section as `members` gzip members back to
/// back, fixing the length, the codec bits and the CRC.
fn as_gzip_members(batch: &[u8], members: usize) -> Vec<u8> {
    let payload = &batch[HEADER_LEN..];
    let mut out = batch[..HEADER_LEN].to_vec();
    for part in payload.chunks(payload.len().div_ceil(members)) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(part).unwrap();
        out.extend(encoder.finish().unwrap());
    }
    let length = i32::try_from(out.len() - 12).unwrap();
    out[LENGTH_FIELD..LENGTH_FIELD + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_FIELD], out[ATTRIBUTES_FIELD + 1]])
        | i16::from(Compression::Gzip.id());
    out[ATTRIBUTES_FIELD..ATTRIBUTES_FIELD + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    out[CRC_FIELD..CRC_FIELD + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

#[test]
fn gzip_payload_of_several_members_built_here_reads_every_record() {
    let mut builder = BatchBuilder::new(Compression::None).base_offset(20);
    for i in 0..90u32 {
        let value = format!("member test {i} {}", "abc".repeat(20));
        builder
            .append(
                5_000 + i64::from(i),
                Some(&i.to_be_bytes()),
                Some(value.as_bytes()),
                &[Header::new(b"i", None)],
            )
            .unwrap();
    }
    let plain = builder.build().unwrap();
    for members in [2, 3, 7] {
        let packed = as_gzip_members(&plain, members);
        let batch = Batch::parse(&packed, &Limits::default()).unwrap();
        assert_eq!(batch.compression().unwrap(), Compression::Gzip);
        let records = batch
            .records(&Limits::default())
            .unwrap_or_else(|e| panic!("{members} members: {e}"));
        let offsets: Vec<i64> = records.iter().map(|r| r.unwrap().offset).collect();
        assert_eq!(
            offsets,
            (20..110).collect::<Vec<i64>>(),
            "{members} members"
        );
    }
}
