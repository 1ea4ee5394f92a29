//! Encoding records into a RecordBatch v2.

use zerocopy::FromBytes;

use super::compression::{self, Compression};
use super::error::RecordError;
use super::fields::Header;
use super::header::{self, BatchHeader, CRC_START, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};

/// Kafka's "no producer" sentinels, written when the batch is not idempotent.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

/// Accumulates records and encodes them as one batch, byte for byte as Kafka would.
///
/// Records are encoded as they are appended, straight after a reserved header, so building an
/// uncompressed batch is one pass and no copy; a compressed batch is compressed once at the end.
///
/// ```
/// use rill_engine::record::{Batch, BatchBuilder, Compression, Header, Limits};
///
/// let mut builder = BatchBuilder::new(Compression::None);
/// builder.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[Header::new(b"h", Some(b"v"))])?;
/// let bytes = builder.build()?;
///
/// let batch = Batch::parse(&bytes, &Limits::default())?;
/// let records = batch.records(&Limits::default())?;
/// let record = records.iter().next().unwrap()?;
/// assert_eq!(record.value, Some(&b"value"[..]));
/// # Ok::<(), rill_engine::record::RecordError>(())
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    compression: Compression,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 16 * 1024)
    }

    /// A builder whose buffer holds `bytes` of records before it grows.
    pub fn with_capacity(compression: Compression, bytes: usize) -> Self {
        Self::with_buffer(compression, Vec::new(), bytes)
    }

    /// As [`BatchBuilder::with_capacity`], encoding into `buf` (emptied first): a writer that
    /// builds batch after batch hands back the memory of an old one, which is already mapped,
    /// instead of having fresh memory faulted in for every batch.
    pub fn with_buffer(compression: Compression, mut buf: Vec<u8>, bytes: usize) -> Self {
        buf.clear();
        buf.reserve(HEADER_LEN + bytes);
        buf.resize(HEADER_LEN, 0);
        Self {
            buf,
            compression,
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
            base_timestamp: 0,
            max_timestamp: 0,
            record_count: 0,
        }
    }

    /// The base offset written into the header; the log overwrites it on append.
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Marks the batch as written by an idempotent producer.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Encoded size so far, before compression: an upper bound a producer can batch by.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends one record; its offset delta is its position in the batch.
    ///
    /// The first record's timestamp becomes the batch's base timestamp; later ones may be
    /// earlier or later (the delta is signed), as in Kafka.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<(), RecordError> {
        let index = self.record_count;
        let too_big = || RecordError::InvalidRecord {
            index: index as u32,
            reason: "field longer than i32::MAX bytes",
        };
        if index == i32::MAX {
            return Err(RecordError::InvalidRecord {
                index: index as u32,
                reason: "batch already holds i32::MAX records",
            });
        }
        if index == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let key_len = field_len(key).ok_or_else(too_big)?;
        let value_len = field_len(value).ok_or_else(too_big)?;
        let header_count = i32::try_from(headers.len()).map_err(|_| too_big())?;

        let mut body_len = 1 + varlong_len(timestamp_delta) + varint_len(index);
        body_len += varint_len(key_len) + key.map_or(0, <[u8]>::len);
        body_len += varint_len(value_len) + value.map_or(0, <[u8]>::len);
        body_len += varint_len(header_count);
        for header in headers {
            let name_len = i32::try_from(header.key.len()).map_err(|_| too_big())?;
            let value_len = field_len(header.value).ok_or_else(too_big)?;
            body_len += varint_len(name_len) + header.key.len();
            body_len += varint_len(value_len) + header.value.map_or(0, <[u8]>::len);
        }
        let body_len = i32::try_from(body_len).map_err(|_| too_big())?;

        self.buf.reserve(varint_len(body_len) + body_len as usize);
        put_varint(&mut self.buf, body_len);
        self.buf.push(0); // record attributes: unused in v2
        put_varlong(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, index);
        put_field(&mut self.buf, key_len, key);
        put_field(&mut self.buf, value_len, value);
        put_varint(&mut self.buf, header_count);
        for header in headers {
            put_varint(&mut self.buf, header.key.len() as i32);
            self.buf.extend_from_slice(header.key);
            put_field(
                &mut self.buf,
                field_len(header.value).unwrap_or(-1),
                header.value,
            );
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.record_count += 1;
        Ok(())
    }

    /// Encodes the batch: compresses if asked, fills in the header and the CRC.
    pub fn build(mut self) -> Result<Vec<u8>, RecordError> {
        if self.record_count == 0 {
            return Err(RecordError::EmptyBatch);
        }
        let mut out = match self.compression {
            Compression::None => std::mem::take(&mut self.buf),
            codec => {
                let mut out = Vec::with_capacity(HEADER_LEN + self.buf.len() / 2);
                out.resize(HEADER_LEN, 0);
                compression::compress(codec, &self.buf[HEADER_LEN..], &mut out)?;
                out
            }
        };
        self.fill_header(&mut out)?;
        Ok(out)
    }

    fn fill_header(&self, out: &mut [u8]) -> Result<(), RecordError> {
        let size = out.len();
        let batch_length =
            i32::try_from(size - LOG_OVERHEAD).map_err(|_| RecordError::BatchTooLarge {
                size,
                max: i32::MAX as usize,
            })?;
        let (header, _) =
            BatchHeader::mut_from_prefix(out).map_err(|_| RecordError::Truncated {
                needed: HEADER_LEN,
                available: size,
            })?;
        header.base_offset.set(self.base_offset);
        header.batch_length.set(batch_length);
        header
            .partition_leader_epoch
            .set(self.partition_leader_epoch);
        header.magic = MAGIC_V2;
        header
            .attributes
            .set(header::attributes(self.compression, self.transactional));
        header.last_offset_delta.set(self.record_count - 1);
        header.base_timestamp.set(self.base_timestamp);
        header.max_timestamp.set(self.max_timestamp);
        header.producer_id.set(self.producer_id);
        header.producer_epoch.set(self.producer_epoch);
        header.base_sequence.set(self.base_sequence);
        header.record_count.set(self.record_count);
        let crc = crc32c::crc32c(&out[CRC_START..]);
        let (header, _) =
            BatchHeader::mut_from_prefix(out).map_err(|_| RecordError::Truncated {
                needed: HEADER_LEN,
                available: size,
            })?;
        header.crc.set(crc);
        Ok(())
    }
}

/// Kafka's length prefix of a nullable field: -1 for null.
fn field_len(field: Option<&[u8]>) -> Option<i32> {
    match field {
        None => Some(-1),
        Some(bytes) => i32::try_from(bytes.len()).ok(),
    }
}

fn put_field(out: &mut Vec<u8>, len: i32, field: Option<&[u8]>) {
    put_varint(out, len);
    if let Some(bytes) = field {
        out.extend_from_slice(bytes);
    }
}
