//! The record format against RecordBatch v2 files written by an independent implementation
//! (`tests/data/kafka-batches`).
//!
//! Note: the `snappy`, `lz4` and `zstd` vectors are labelled with those codecs in the manifest,
//! but their batch attributes say "none": the writer stored them uncompressed. The tests follow
//! the bytes. Really compressed batches of every codec, from two client libraries, are in
//! `tests/data/generated` and checked by `generated_vectors.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly by design

use std::path::PathBuf;

use rill_engine::record::{Batch, BatchBuilder, Batches, Compression, Header, Limits, RecordError};
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    rill_testdata::kafka_batches()
}

fn manifest() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(vectors_dir().join("manifest.json")).unwrap();
    match serde_json::from_str(&text).unwrap() {
        Value::Object(map) => map,
        other => panic!("manifest is not an object: {other}"),
    }
}

fn read_vector(name: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(format!("{name}.bin"))).unwrap()
}

/// A record as the manifest states it, to compare against what we decode.
#[derive(Debug, PartialEq)]
struct Expected {
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

fn expected_records(entry: &Value) -> Vec<Expected> {
    let hex_or_null = |v: &Value| v.as_str().map(str::to_owned);
    entry["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Expected {
            offset: r["offset"].as_i64().unwrap(),
            timestamp: r["timestamp"].as_i64().unwrap(),
            key: hex_or_null(&r["key"]),
            value: hex_or_null(&r["value"]),
            headers: r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().to_owned(), hex_or_null(&h[1])))
                .collect(),
        })
        .collect()
}

fn decode_all(bytes: &[u8]) -> Result<(usize, Vec<Expected>), RecordError> {
    let limits = Limits::default();
    let mut batches = 0;
    let mut out = Vec::new();
    for item in Batches::new(bytes, limits) {
        let (_, batch) = item.map_err(|e| e.source)?;
        batches += 1;
        let records = batch.records(&limits)?;
        for record in records.iter() {
            let record = record?;
            out.push(Expected {
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(hex::encode),
                value: record.value.map(hex::encode),
                headers: record
                    .headers()
                    .map(|h| {
                        (
                            String::from_utf8(h.key.to_vec()).unwrap(),
                            h.value.map(hex::encode),
                        )
                    })
                    .collect(),
            });
        }
    }
    Ok((batches, out))
}

#[test]
fn every_valid_vector_decodes_to_its_manifest() {
    let mut checked = 0;
    for (name, entry) in manifest() {
        if entry.get("expect").is_some() {
            continue;
        }
        let (batches, records) =
            decode_all(&read_vector(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            batches as u64,
            entry["batches"].as_u64().unwrap(),
            "{name}: batch count"
        );
        assert_eq!(records, expected_records(&entry), "{name}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vectors checked");
}

#[test]
fn gzip_vector_is_really_compressed() {
    let bytes = read_vector("gzip");
    let batch = Batch::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(batch.compression().unwrap(), Compression::Gzip);
}

#[test]
fn corrupt_crc_gives_crc_error_and_no_records() {
    let bytes = read_vector("corrupt_crc");
    let result = Batch::parse(&bytes, &Limits::default());
    assert!(
        matches!(result, Err(RecordError::CrcMismatch { .. })),
        "{result:?}"
    );
    let mut batches = Batches::new(&bytes, Limits::default());
    let first = batches.next().unwrap();
    assert!(
        matches!(first, Err(ref e) if e.position == 0 && matches!(e.source, RecordError::CrcMismatch { .. }))
    );
    assert!(batches.next().is_none());
}

#[test]
fn torn_tail_yields_first_batch_then_truncation() {
    let bytes = read_vector("torn_tail");
    let mut batches = Batches::new(&bytes, Limits::default());
    let (position, batch) = batches.next().unwrap().unwrap();
    assert_eq!(
        (position, batch.base_offset(), batch.last_offset()),
        (0, 0, 4)
    );
    let error = batches.next().unwrap().unwrap_err();
    assert_eq!(error.position, batch.size_bytes() as u64);
    assert!(
        matches!(error.source, RecordError::Truncated { .. }),
        "{error}"
    );
    assert!(batches.next().is_none());
}

#[test]
fn idempotent_producer_fields_are_read() {
    let entry = &manifest()["idempotent_producer"];
    let bytes = read_vector("idempotent_producer");
    let batch = Batch::parse(&bytes, &Limits::default()).unwrap();
    let header = batch.header();
    assert_eq!(
        header.producer_id.get(),
        entry["producer"]["id"].as_i64().unwrap()
    );
    assert_eq!(
        i64::from(header.producer_epoch.get()),
        entry["producer"]["epoch"].as_i64().unwrap()
    );
    assert_eq!(
        i64::from(header.base_sequence.get()),
        entry["producer"]["base_sequence"].as_i64().unwrap()
    );
}

/// Our builder, fed the decoded records and the header's own fields, must give back the very
/// bytes the independent writer produced.
#[test]
fn uncompressed_vectors_reencode_byte_for_byte() {
    let limits = Limits::default();
    let mut checked = 0;
    for (name, entry) in manifest() {
        if entry.get("expect").is_some() {
            continue;
        }
        let bytes = read_vector(&name);
        for item in Batches::new(&bytes, limits) {
            let (_, batch) = item.unwrap();
            if batch.compression().unwrap() != Compression::None {
                continue;
            }
            let h = batch.header();
            let mut builder = BatchBuilder::new(Compression::None)
                .base_offset(batch.base_offset())
                .partition_leader_epoch(h.partition_leader_epoch.get())
                .producer(
                    h.producer_id.get(),
                    h.producer_epoch.get(),
                    h.base_sequence.get(),
                );
            let records = batch.records(&limits).unwrap();
            for record in records.iter() {
                let record = record.unwrap();
                let headers: Vec<Header<'_>> = record.headers().collect();
                builder
                    .append(record.timestamp, record.key, record.value, &headers)
                    .unwrap();
            }
            assert_eq!(
                builder.build().unwrap(),
                batch.as_bytes(),
                "{name} at offset {}",
                batch.base_offset()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} batches re-encoded");
}

#[test]
fn every_codec_round_trips_through_builder_and_reader() {
    let limits = Limits::default();
    for codec in Compression::ALL {
        let mut builder = BatchBuilder::new(codec);
        for i in 0..500u32 {
            let value = format!("value-{i}-{}", "x".repeat((i % 50) as usize));
            let key = (!i.is_multiple_of(3)).then(|| i.to_be_bytes());
            builder
                .append(
                    1_000 + i64::from(i % 7),
                    key.as_ref().map(|k| &k[..]),
                    Some(value.as_bytes()),
                    &[Header::new(b"n", Some(&i.to_le_bytes()))],
                )
                .unwrap();
        }
        let bytes = builder.build().unwrap();
        let batch = Batch::parse(&bytes, &limits).unwrap();
        assert_eq!(batch.compression().unwrap(), codec);
        assert_eq!(
            (
                batch.record_count(),
                batch.last_offset(),
                batch.max_timestamp()
            ),
            (500, 499, 1_006)
        );
        let records = batch.records(&limits).unwrap();
        for (i, record) in records.iter().enumerate() {
            let record = record.unwrap();
            let i = i as u32;
            assert_eq!(record.offset, i64::from(i));
            assert_eq!(record.timestamp, 1_000 + i64::from(i % 7));
            assert_eq!(
                record.key,
                (!i.is_multiple_of(3))
                    .then(|| i.to_be_bytes())
                    .as_ref()
                    .map(|k| &k[..])
            );
            let header = record.headers().next().unwrap();
            assert_eq!(header.value, Some(&i.to_le_bytes()[..]));
        }
        assert_eq!(records.iter().count(), 500);
    }
}

#[test]
fn oversized_or_lying_lengths_are_errors_not_allocations() {
    let mut builder = BatchBuilder::new(Compression::None);
    builder.append(0, None, Some(&[7u8; 4000]), &[]).unwrap();
    let bytes = builder.build().unwrap();
    let small = Limits {
        max_batch_bytes: 1024,
        ..Limits::default()
    };
    assert!(matches!(
        Batch::parse(&bytes, &small),
        Err(RecordError::BatchTooLarge { .. })
    ));

    let mut lying = bytes.clone();
    lying[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    let huge = Limits {
        max_batch_bytes: usize::MAX,
        ..Limits::default()
    };
    assert!(matches!(
        Batch::parse(&lying, &huge),
        Err(RecordError::Truncated { .. })
    ));
    lying[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(matches!(
        Batch::parse(&lying, &huge),
        Err(RecordError::InvalidLength { length: -5 })
    ));

    let mut magic = bytes.clone();
    magic[16] = 1;
    assert!(matches!(
        Batch::parse(&magic, &Limits::default()),
        Err(RecordError::UnsupportedMagic { magic: 1 })
    ));
}

#[test]
fn base_offset_can_be_restamped_without_breaking_the_crc() {
    let mut builder = BatchBuilder::new(Compression::Lz4);
    builder.append(5, Some(b"k"), Some(b"v"), &[]).unwrap();
    builder.append(6, Some(b"k"), Some(b"w"), &[]).unwrap();
    let mut bytes = builder.build().unwrap();
    rill_engine::record::set_base_offset(&mut bytes, 1_000).unwrap();
    let batch = Batch::parse(&bytes, &Limits::default()).unwrap();
    let offsets: Vec<i64> = batch
        .records(&Limits::default())
        .unwrap()
        .iter()
        .map(|r| r.unwrap().offset)
        .collect();
    assert_eq!(offsets, [1_000, 1_001]);
}
