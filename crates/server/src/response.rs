//! Encoding responses, and writing them with fetched batches spliced in place.
//!
//! A Fetch response carries batches that live in segment maps or the engine's in-memory tail.
//! They reach the encoder as `Bytes` that borrow that memory (no copy), and the encoder's output
//! buffer, `SpliceBuf`, recognises them by address when the encoder writes them: instead of
//! copying, it notes where they go. The response then leaves with one vectored write: the
//! encoded fields from the buffer, the batches from where they already are. Each fetched byte
//! is copied once, by the kernel, from the mapped or tail memory into the socket.

use std::io::{self, IoSlice, Write};

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use crate::error::ConnectionError;

/// An encoded response: its fields, and the borrowed batches to splice between them.
#[derive(Debug, Default)]
pub struct Encoded {
    head: BytesMut,
    /// (position in `head`, bytes inserted there), in order.
    splices: Vec<(usize, Bytes)>,
}

impl Encoded {
    /// Bytes on the wire after the 4-byte size.
    pub fn len(&self) -> usize {
        self.head.len() + self.splices.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The response as one contiguous buffer (tests and the client use it; the server writes
    /// with [`Encoded::write_to`]).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        let mut at = 0;
        for (position, bytes) in &self.splices {
            out.extend_from_slice(&self.head[at..*position]);
            out.extend_from_slice(bytes);
            at = *position;
        }
        out.extend_from_slice(&self.head[at..]);
        out
    }

    /// Writes the size prefix and the response with as few system calls as the socket allows.
    pub fn write_to(&self, writer: &mut impl Write) -> io::Result<()> {
        let size = i32::try_from(self.len())
            .map_err(|_| io::Error::other("response larger than 2 GiB"))?
            .to_be_bytes();
        let mut slices = Vec::with_capacity(2 + 2 * self.splices.len());
        slices.push(IoSlice::new(&size));
        let mut at = 0;
        for (position, bytes) in &self.splices {
            slices.push(IoSlice::new(&self.head[at..*position]));
            slices.push(IoSlice::new(bytes));
            at = *position;
        }
        slices.push(IoSlice::new(&self.head[at..]));
        slices.retain(|slice| !slice.is_empty());
        let mut remaining: &mut [IoSlice<'_>] = &mut slices;
        while !remaining.is_empty() {
            match writer.write_vectored(remaining) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut remaining, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Borrowed bytes that a message field holds: the encoder sees `field`, the socket gets
/// `parts` in its place, which together are exactly as long.
///
/// One part is its own field. Several parts (batches from separate buffers, such as the
/// in-memory tail's chunks) stand behind a placeholder of their total length from
/// `placeholder`: the encoder only needs its length and address, and never reads it.
#[derive(Clone, Debug)]
pub struct Splice {
    pub field: Bytes,
    pub parts: Vec<Bytes>,
}

impl Splice {
    /// A field made of `parts`, laid end to end; `None` if they are too long to stand behind
    /// one placeholder.
    pub fn of(parts: Vec<Bytes>) -> Option<Splice> {
        let field = match parts.as_slice() {
            [one] => one.clone(),
            _ => placeholder(parts.iter().map(Bytes::len).sum())?,
        };
        Some(Splice { field, parts })
    }
}

/// Longest placeholder: the most bytes of several parts one field may hold.
pub const MAX_PLACEHOLDER: usize = 64 * 1024 * 1024;

/// A field-sized stand-in whose bytes nobody reads. It views one zeroed allocation made once;
/// its pages are never written, so they cost address space, not memory.
fn placeholder(len: usize) -> Option<Bytes> {
    static ZEROS: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let zeros = ZEROS.get_or_init(|| Bytes::from(vec![0u8; MAX_PLACEHOLDER]));
    (len <= zeros.len()).then(|| zeros.slice(..len))
}

/// Encodes `header` and `body` at `version`; the fields of `borrowed` that the encoder writes
/// are spliced, not copied (see the module documentation).
pub fn encode<T: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &T,
    borrowed: &[Splice],
) -> Result<Encoded, ConnectionError> {
    let mut buf = SpliceBuf {
        out: Encoded::default(),
        expected: borrowed.iter().filter(|s| !s.field.is_empty()).peekable(),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let failed = |e: anyhow::Error| ConnectionError::Encode {
        reason: e.to_string(),
    };
    header
        .encode(&mut buf, T::header_version(version))
        .map_err(failed)?;
    body.encode(&mut buf, version).map_err(failed)?;
    Ok(buf.out)
}

/// The output buffer of [`encode`]: a `BytesMut` that splices, rather than copies, the
/// expected borrowed batches.
struct SpliceBuf<'a, I: Iterator<Item = &'a Splice>> {
    out: Encoded,
    expected: std::iter::Peekable<I>,
}

// SAFETY: every method that hands out or advances over uninitialised memory delegates to the
// inner `BytesMut`, whose own `BufMut` implementation upholds the trait's contract;
// `put_slice` either delegates too or writes nothing to the buffer.
unsafe impl<'a, I: Iterator<Item = &'a Splice>> BufMut for SpliceBuf<'a, I> {
    fn remaining_mut(&self) -> usize {
        self.out.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of the chunk `chunk_mut` returned, which
        // is the inner buffer's chunk: exactly what the inner `advance_mut` requires.
        unsafe { self.out.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.out.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let next = self
            .expected
            .peek()
            .is_some_and(|s| s.field.as_ptr() == src.as_ptr() && s.field.len() == src.len());
        if next && let Some(splice) = self.expected.next() {
            let at = self.out.head.len();
            for part in &splice.parts {
                self.out.splices.push((at, part.clone()));
            }
        } else {
            self.out.head.put_slice(src);
        }
    }
}

impl<'a, I: Iterator<Item = &'a Splice>> ByteBufMut for SpliceBuf<'a, I> {
    fn offset(&self) -> usize {
        self.out.head.len()
    }

    fn seek(&mut self, offset: usize) {
        self.out.head.resize(offset, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        &mut self.out.head[r]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    #[test]
    fn spliced_batches_are_not_copied_and_the_bytes_match_a_plain_encoding() {
        let batch = Bytes::from(vec![7u8; 300]);
        let response = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    PartitionData::default().with_records(Some(batch.clone())),
                ]),
        ]);
        let splice = Splice::of(vec![batch.clone()]).unwrap();
        let spliced = encode(9, 11, &response, &[splice]).unwrap();
        assert_eq!(spliced.splices.len(), 1);
        assert!(spliced.head.len() < 300, "the batch is not in the buffer");
        let plain = encode(9, 11, &response, &[]).unwrap();
        assert!(plain.splices.is_empty());
        assert_eq!(spliced.to_vec(), plain.to_vec());
        let mut written = Vec::new();
        spliced.write_to(&mut written).unwrap();
        assert_eq!(&written[..4], &(plain.len() as i32).to_be_bytes());
        let mut body = Bytes::from(written[4..].to_vec());
        let header = ResponseHeader::decode(&mut body, 0).unwrap();
        assert_eq!(header.correlation_id, 9);
        let back = FetchResponse::decode(&mut body, 11).unwrap();
        assert_eq!(
            back.responses[0].partitions[0].records.as_ref(),
            Some(&batch)
        );
    }
}

#[cfg(test)]
mod placeholder_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    #[test]
    fn several_parts_are_sent_in_place_of_their_placeholder() {
        let parts = vec![Bytes::from(vec![1u8; 10]), Bytes::from(vec![2u8; 5])];
        let splice = Splice::of(parts).unwrap();
        let response = FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    PartitionData::default().with_records(Some(splice.field.clone())),
                    PartitionData::default().with_partition_index(1),
                ]),
        ]);
        let encoded = encode(1, 12, &response, &[splice]).unwrap();
        let mut body = Bytes::from(encoded.to_vec());
        ResponseHeader::decode(&mut body, 1).unwrap();
        let back = FetchResponse::decode(&mut body, 12).unwrap();
        let records = back.responses[0].partitions[0].records.clone().unwrap();
        assert_eq!(
            &records[..],
            &[[1u8; 10].as_slice(), [2u8; 5].as_slice()].concat()[..]
        );
        assert!(Splice::of(vec![Bytes::new(); 2]).is_some());
    }
}
