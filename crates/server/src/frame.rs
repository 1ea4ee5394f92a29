//! Kafka's framing: a 4-byte big-endian size, then that many bytes of request.
//!
//! The size is checked against the server's limit before a byte of the body is allocated, so
//! a peer claiming gigabytes costs nothing but the 4 bytes it sent.

use std::io::{self, Read};

use crate::error::ConnectionError;

/// The fixed part of every request header: api key (2), version (2), correlation id (4).
pub(crate) const MIN_REQUEST_BYTES: usize = 8;

/// Reads one request frame. `Ok(None)` when the peer closed the connection between requests.
pub(crate) fn read_frame(
    reader: &mut impl Read,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, ConnectionError> {
    let mut size = [0u8; 4];
    match read_full(reader, &mut size)? {
        0 => return Ok(None),
        4 => {}
        _ => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
    }
    let claimed = i32::from_be_bytes(size);
    let len = usize::try_from(claimed)
        .ok()
        .filter(|len| (MIN_REQUEST_BYTES..=max_bytes).contains(len))
        .ok_or(ConnectionError::FrameSize {
            claimed: i64::from(claimed),
            min: MIN_REQUEST_BYTES,
            max: max_bytes,
        })?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_huge_claim_is_refused_before_reading_the_body() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        let error = read_frame(&mut input, 100 << 20).unwrap_err();
        assert!(
            matches!(error, ConnectionError::FrameSize { claimed, .. } if claimed == i64::from(i32::MAX))
        );
        assert_eq!(input, &[1, 2, 3], "no byte of the body was read");
    }

    #[test]
    fn negative_and_tiny_sizes_are_refused() {
        for size in [-1i32, 0, 7] {
            let bytes = size.to_be_bytes();
            let mut input: &[u8] = &bytes;
            assert!(matches!(
                read_frame(&mut input, 1024),
                Err(ConnectionError::FrameSize { .. })
            ));
        }
    }

    #[test]
    fn clean_end_between_frames_and_torn_frames() {
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 1024).unwrap().is_none());
        let mut torn: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut torn, 1024),
            Err(ConnectionError::Io(_))
        ));
        let mut short_body: &[u8] = &[0, 0, 0, 9, 1, 2];
        assert!(matches!(
            read_frame(&mut short_body, 1024),
            Err(ConnectionError::Io(_))
        ));
        let mut whole: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(
            read_frame(&mut whole, 1024).unwrap().unwrap(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }
}
