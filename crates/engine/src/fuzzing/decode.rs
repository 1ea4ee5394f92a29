//! `batch_decode`: arbitrary bytes read as batches laid end to end, as a segment or a
//! producer's request would present them.
//!
//! Properties:
//! - nothing panics, and every error is a typed [`RecordError`](crate::record::RecordError);
//! - [`Batches`] yields batches contiguously from byte 0 and reports its first failure at the
//!   end of the last good batch;
//! - decoding one batch never makes a single allocation larger than the limits allow (see
//!   [`allowed_allocation`]);
//! - accepted records are consistent with their header: offsets inside the batch's range and
//!   increasing, the declared count, LogAppendTime applied, headers as counted;
//! - a *canonical* uncompressed batch re-encodes with [`BatchBuilder`] to the same bytes.

use super::alloc::{largest_allocation_during, tracking_installed};
use crate::record::varint::{get_varint, get_varlong, varint_len, varlong_len};
use crate::record::{
    Batch, BatchBuilder, Batches, Compression, HEADER_LEN, Header, Limits, Record, TimestampType,
};

/// Small limits, so the fuzzer reaches them with inputs of a few kilobytes.
pub const DECODE_LIMITS: Limits = Limits {
    max_batch_bytes: 64 * 1024,
    max_decompressed_bytes: 1024 * 1024,
};

/// Fixed working buffers below any limit: flate2's inflate state with its 32 KiB window, the
/// 16 KiB a zstd stream reader stages input in, and `read_to_end`'s probe buffers.
const SLACK: usize = 128 * 1024;

/// lz4_flex's frame decoder reserves its buffers from the block size the frame header declares
/// (up to 4 MiB; twice that plus a 64 KiB window for linked blocks), not from the output
/// bound. That is a constant ceiling, the same for a 20-byte frame and a full one, so it is
/// allowed on top of the limit-proportional bound rather than counted as the input's doing.
const LZ4_FRAME_BUFFERS: usize = 2 * 4 * 1024 * 1024 + 64 * 1024;

/// Kafka's transactional attribute bit: the only attribute [`BatchBuilder`] can set besides
/// the codec.
const TRANSACTIONAL_BIT: i16 = 1 << 4;

/// Largest single allocation decoding a batch of `codec` may make: a bounded read into a
/// growing `Vec` can reserve up to twice the bound before it stops, plus fixed buffers.
fn allowed_allocation(codec: Option<Compression>, limits: &Limits) -> usize {
    let codec_buffers = match codec {
        Some(Compression::Lz4) => LZ4_FRAME_BUFFERS,
        _ => 0,
    };
    2 * limits.max_decompressed_bytes + SLACK + codec_buffers
}

pub fn batch_decode(data: &[u8]) {
    assert!(
        tracking_installed(),
        "install fuzzing::TrackingAlloc as the #[global_allocator] of this binary"
    );
    let limits = DECODE_LIMITS;
    let mut batches = Batches::new(data, limits);
    let mut end = 0;
    for item in &mut batches {
        match item {
            Ok((position, batch)) => {
                assert_eq!(position, end as u64, "batches must be contiguous");
                let size = batch.size_bytes();
                assert!(
                    size <= limits.max_batch_bytes,
                    "batch of {size} bytes accepted"
                );
                assert_eq!(batch.as_bytes(), &data[end..end + size]);
                end += size;
                check_batch(&batch, &limits);
            }
            Err(invalid) => {
                assert_eq!(invalid.position, end as u64, "failure reported elsewhere");
            }
        }
    }
    assert_eq!(batches.position(), end);
}

fn check_batch(batch: &Batch<'_>, limits: &Limits) {
    let codec = batch.compression().ok();
    let (decoded, largest) = largest_allocation_during(|| {
        let records = batch.records(limits)?;
        let count = records.iter().try_fold(0usize, |n, r| r.map(|_| n + 1))?;
        Ok::<_, crate::record::RecordError>((records, count))
    });
    let allowed = allowed_allocation(codec, limits);
    assert!(
        largest <= allowed,
        "decoding a {} byte {codec:?} batch allocated {largest} bytes at once (allowed {allowed})",
        batch.size_bytes()
    );
    let Ok((records, count)) = decoded else {
        return;
    };
    let header = batch.header();
    assert_eq!(count, records.declared_len(), "record count");
    let mut list: Vec<Record<'_>> = Vec::with_capacity(count);
    let mut previous_delta = None;
    for record in records.iter() {
        let record = record.expect("a second pass decodes like the first");
        let delta = record.offset.wrapping_sub(batch.base_offset());
        assert!(
            (0..=i64::from(header.last_offset_delta.get())).contains(&delta),
            "record offset delta {delta} outside the batch"
        );
        assert!(
            previous_delta.is_none_or(|p| delta > p),
            "offsets must increase"
        );
        previous_delta = Some(delta);
        if header.timestamp_type() == TimestampType::LogAppendTime {
            assert_eq!(record.timestamp, batch.max_timestamp());
        }
        assert_eq!(record.headers().count(), record.headers().len());
        list.push(record);
    }
    if codec == Some(Compression::None) && is_canonical(batch, &list) {
        let rebuilt = rebuild(batch, &list);
        assert!(
            rebuilt == batch.as_bytes(),
            "canonical batch re-encodes differently:\n  read  {:02x?}\n  built {:02x?}",
            batch.as_bytes(),
            rebuilt
        );
    }
}

/// Whether the builder must reproduce `batch` byte for byte.
///
/// The reader rightly accepts batches the builder never writes, all of them legal Kafka:
/// over-long (non-minimal) varints, which Kafka's Java reader accepts too; a nonzero record
/// attributes byte, unused in v2 and ignored; offset deltas with gaps and a last offset delta
/// past the last record, which compaction leaves; LogAppendTime, control and other attribute
/// bits; a first record whose timestamp is not the base timestamp, or a max timestamp that is
/// not the records' maximum (the broker may rewrite them); and empty batches, which compaction
/// keeps for producer state. None of those carry information the builder's inputs can express,
/// so byte equality is required only when none of them is present.
fn is_canonical(batch: &Batch<'_>, records: &[Record<'_>]) -> bool {
    let header = batch.header();
    let attributes = header.attributes.get();
    let count = header.record_count.get();
    let (Some(first), Some(max)) = (records.first(), records.iter().map(|r| r.timestamp).max())
    else {
        return false;
    };
    attributes & !TRANSACTIONAL_BIT == 0
        && header.last_offset_delta.get() == count - 1
        && first.timestamp == header.base_timestamp.get()
        && max == batch.max_timestamp()
        && records_are_minimal(&batch.as_bytes()[HEADER_LEN..], count)
}

/// Walks records that the reader already accepted, checking that each varint is minimal, that
/// attributes are zero and that offset deltas are dense.
fn records_are_minimal(mut rest: &[u8], count: i32) -> bool {
    fn varint(input: &mut &[u8]) -> Option<i32> {
        let before = input.len();
        let value = get_varint(input).ok()?;
        (before - input.len() == varint_len(value)).then_some(value)
    }
    fn varlong(input: &mut &[u8]) -> Option<i64> {
        let before = input.len();
        let value = get_varlong(input).ok()?;
        (before - input.len() == varlong_len(value)).then_some(value)
    }
    fn field(input: &mut &[u8]) -> Option<()> {
        let len = varint(input)?;
        if len >= 0 {
            *input = input.get(usize::try_from(len).ok()?..)?;
        }
        Some(())
    }
    fn record(input: &mut &[u8], index: i32) -> Option<()> {
        let len = usize::try_from(varint(input)?).ok()?;
        let mut body = input.get(..len)?;
        *input = &input[len..];
        let (&attributes, tail) = body.split_first()?;
        body = tail;
        varlong(&mut body)?;
        let delta = varint(&mut body)?;
        field(&mut body)?;
        field(&mut body)?;
        for _ in 0..varint(&mut body)? {
            field(&mut body)?;
            field(&mut body)?;
        }
        (attributes == 0 && delta == index && body.is_empty()).then_some(())
    }
    (0..count).all(|index| record(&mut rest, index).is_some()) && rest.is_empty()
}

fn rebuild(batch: &Batch<'_>, records: &[Record<'_>]) -> Vec<u8> {
    let header = batch.header();
    let mut builder = BatchBuilder::new(Compression::None)
        .base_offset(batch.base_offset())
        .partition_leader_epoch(header.partition_leader_epoch.get())
        .producer(
            header.producer_id.get(),
            header.producer_epoch.get(),
            header.base_sequence.get(),
        )
        .transactional(header.is_transactional());
    for record in records {
        let headers: Vec<Header<'_>> = record.headers().collect();
        builder
            .append(record.timestamp, record.key, record.value, &headers)
            .expect("a record that was read can be written");
    }
    builder.build().expect("a non-empty batch builds")
}
