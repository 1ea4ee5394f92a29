//! One record inside a batch (its fields, viewed in place).

use super::error::RecordError;
use super::varint::{get_varint, get_varlong};

/// A record header: a name (a UTF-8 string in Kafka, kept as bytes here) and a nullable value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's name.
    pub key: &'a [u8],
    /// The header's value; `None` is Kafka's null.
    pub value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// A header named `key` with `value`.
    pub fn new(key: &'a [u8], value: Option<&'a [u8]>) -> Self {
        Self { key, value }
    }
}

/// A decoded record. Key, value and headers borrow the batch's bytes (or, for a compressed
/// batch, its decompressed payload): nothing is copied.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch: the producer's create time, or the log append time
    /// when the batch says so.
    pub timestamp: i64,
    /// The key; `None` is Kafka's null.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is Kafka's null (a tombstone).
    pub value: Option<&'a [u8]>,
    headers: Headers<'a>,
}

impl<'a> Record<'a> {
    /// The record's headers, in order.
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }
}

/// The headers of one record, already validated when the record was read.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a> {
    raw: &'a [u8],
    remaining: u32,
}

impl<'a> Headers<'a> {
    /// Headers not yet iterated.
    pub fn len(&self) -> usize {
        self.remaining as usize
    }

    /// Whether every header has been iterated (or there were none).
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // Parsing cannot fail here: `parse_headers` walked these exact bytes when the record was
        // read. Ending the iteration is the harmless answer if that ever stopped being true.
        let header = parse_header(&mut self.raw).ok()?;
        self.remaining -= 1;
        Some(header)
    }
}

/// The frame a record is decoded against: where its batch starts in offsets and in time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordBase {
    pub offset: i64,
    pub timestamp: i64,
    /// Set for LogAppendTime batches, whose records all carry the batch's max timestamp.
    pub log_append_time: Option<i64>,
}

/// Reads one length-prefixed record from the front of `input`, advancing it.
pub(crate) fn parse_record<'a>(
    input: &mut &'a [u8],
    index: u32,
    base: &RecordBase,
) -> Result<(Record<'a>, i32), RecordError> {
    let invalid = |reason| RecordError::InvalidRecord { index, reason };
    let length = get_varint(input)?;
    let length = usize::try_from(length).map_err(|_| invalid("negative record length"))?;
    if length > input.len() {
        return Err(invalid("record length runs past the end of the batch"));
    }
    let (mut body, rest) = input.split_at(length);
    *input = rest;

    let (_attributes, tail) = body.split_first().ok_or_else(|| invalid("empty record"))?;
    body = tail;
    let timestamp_delta = get_varlong(&mut body)?;
    let offset_delta = get_varint(&mut body)?;
    let key = parse_field(&mut body).map_err(|_| invalid("bad key length"))?;
    let value = parse_field(&mut body).map_err(|_| invalid("bad value length"))?;
    let header_count = get_varint(&mut body)?;
    let header_count = u32::try_from(header_count).map_err(|_| invalid("negative header count"))?;
    let headers_raw = body;
    for _ in 0..header_count {
        parse_header(&mut body).map_err(|_| invalid("bad header"))?;
    }
    if !body.is_empty() {
        return Err(invalid("bytes left over after the headers"));
    }
    let record = Record {
        offset: base.offset.wrapping_add(i64::from(offset_delta)),
        timestamp: base
            .log_append_time
            .unwrap_or_else(|| base.timestamp.wrapping_add(timestamp_delta)),
        key,
        value,
        headers: Headers {
            raw: headers_raw,
            remaining: header_count,
        },
    };
    Ok((record, offset_delta))
}

fn parse_header<'a>(input: &mut &'a [u8]) -> Result<Header<'a>, RecordError> {
    let key = parse_field(input)?.ok_or(RecordError::InvalidRecord {
        index: 0,
        reason: "null header key",
    })?;
    let value = parse_field(input)?;
    Ok(Header { key, value })
}

/// A varint length (-1 for null) followed by that many bytes.
fn parse_field<'a>(input: &mut &'a [u8]) -> Result<Option<&'a [u8]>, RecordError> {
    let len = get_varint(input)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| RecordError::MalformedVarint)?;
    if len > input.len() {
        return Err(RecordError::Truncated {
            needed: len,
            available: input.len(),
        });
    }
    let (field, rest) = input.split_at(len);
    *input = rest;
    Ok(Some(field))
}
