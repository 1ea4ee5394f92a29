//! `record_roundtrip`: structured records built into a batch with any of the five codecs and
//! read back.
//!
//! Properties: building fails only for an empty batch; the batch parses (CRC included), holds
//! exactly one batch, its header carries what the builder was given, and its records read back
//! equal to what was appended; stamping another base offset keeps it valid and moves every
//! offset with it.

use arbitrary::{Arbitrary, Unstructured};

use crate::record::{Batch, BatchBuilder, Batches, Compression, Header, Limits, RecordError};
use crate::record::{MAGIC_V2, TimestampType, set_base_offset};

/// Large enough that nothing the builder writes from a fuzz input is refused.
const LIMITS: Limits = Limits {
    max_batch_bytes: 64 * 1024 * 1024,
    max_decompressed_bytes: 64 * 1024 * 1024,
};

#[derive(Debug, Arbitrary)]
pub struct RoundtripInput {
    codec: u8,
    base_offset: i64,
    restamp: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    records: Vec<RecordInput>,
}

#[derive(Debug, Arbitrary)]
struct RecordInput {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Decodes `data` the way `fuzz_target!(|input: RoundtripInput| ..)` would, so a saved input
/// replays identically in the regression test.
pub fn record_roundtrip(data: &[u8]) {
    if let Ok(input) = RoundtripInput::arbitrary_take_rest(Unstructured::new(data)) {
        check(&input);
    }
}

fn check(input: &RoundtripInput) {
    let codec = Compression::ALL[usize::from(input.codec) % Compression::ALL.len()];
    let mut builder = BatchBuilder::new(codec)
        .base_offset(input.base_offset)
        .partition_leader_epoch(input.partition_leader_epoch)
        .producer(input.producer_id, input.producer_epoch, input.base_sequence)
        .transactional(input.transactional);
    for record in &input.records {
        let headers: Vec<Header<'_>> = record
            .headers
            .iter()
            .map(|(key, value)| Header::new(key, value.as_deref()))
            .collect();
        builder
            .append(
                record.timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
                &headers,
            )
            .expect("append");
    }
    let mut bytes = match builder.build() {
        Err(RecordError::EmptyBatch) if input.records.is_empty() => return,
        other => other.expect("build"),
    };

    check_parsed(input, codec, &bytes, input.base_offset);
    set_base_offset(&mut bytes, input.restamp).expect("restamp");
    check_parsed(input, codec, &bytes, input.restamp);
}

fn check_parsed(input: &RoundtripInput, codec: Compression, bytes: &[u8], base_offset: i64) {
    let batch = Batch::parse(bytes, &LIMITS).expect("a built batch parses");
    assert_eq!(batch.size_bytes(), bytes.len());
    let mut all = Batches::new(bytes, LIMITS);
    assert!(matches!(all.next(), Some(Ok((0, _)))));
    assert!(all.next().is_none());

    let header = batch.header();
    let count = i32::try_from(input.records.len()).expect("count");
    assert_eq!(header.magic, MAGIC_V2);
    assert_eq!(batch.base_offset(), base_offset);
    assert_eq!(
        header.partition_leader_epoch.get(),
        input.partition_leader_epoch
    );
    assert_eq!(header.producer_id.get(), input.producer_id);
    assert_eq!(header.producer_epoch.get(), input.producer_epoch);
    assert_eq!(header.base_sequence.get(), input.base_sequence);
    assert_eq!(header.is_transactional(), input.transactional);
    assert!(!header.is_control());
    assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    assert_eq!(batch.compression().expect("codec"), codec);
    assert_eq!(batch.record_count(), count);
    assert_eq!(header.last_offset_delta.get(), count - 1);
    assert_eq!(
        header.base_timestamp.get(),
        input.records[0].timestamp,
        "base timestamp is the first record's"
    );
    let max = input.records.iter().map(|r| r.timestamp).max();
    assert_eq!(Some(batch.max_timestamp()), max);

    let records = batch.records(&LIMITS).expect("records");
    let mut read = 0;
    for (index, (record, expected)) in records.iter().zip(&input.records).enumerate() {
        let record = record.expect("record decodes");
        assert_eq!(record.offset, base_offset.wrapping_add(index as i64));
        assert_eq!(record.timestamp, expected.timestamp);
        assert_eq!(record.key, expected.key.as_deref());
        assert_eq!(record.value, expected.value.as_deref());
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            record.headers().map(|h| (h.key, h.value)).collect();
        let wanted: Vec<(&[u8], Option<&[u8]>)> = expected
            .headers
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        assert_eq!(headers, wanted);
        read += 1;
    }
    assert_eq!(read, input.records.len());
    assert_eq!(
        records.iter().count(),
        input.records.len(),
        "no trailing error"
    );
}
