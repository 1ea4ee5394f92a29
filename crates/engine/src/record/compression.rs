//! The five codecs of Kafka's attributes bits 0..2, with a bound on what decompression may
//! allocate.

use std::fmt;
use std::io::{self, Read, Write};

use super::error::RecordError;

/// Compression codec of a batch's records section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records stored as they are.
    #[default]
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy in the xerial framing that Kafka's Java client writes; raw snappy is also read.
    Snappy,
    /// The LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Every codec, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec's id in a batch's attributes (bits 0..2).
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with this attributes id; [`RecordError::UnknownCompression`] for others.
    pub fn from_id(id: u8) -> Result<Self, RecordError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return Err(RecordError::UnknownCompression { id }),
        })
    }

    /// The codec's name as Kafka's configuration spells it (`none`, `gzip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = RecordError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name() == name)
            .ok_or(RecordError::UnknownCompression { id: u8::MAX })
    }
}

/// The xerial snappy stream header: magic, then version 1 and minimum compatible version 1.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed bytes per xerial block; the Java client's default.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// Compresses `input`, appending the result to `out`.
pub(crate) fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let wrap = |source: io::Error| RecordError::Compress { codec, source };
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder.write_all(input).map_err(wrap)?;
            encoder.finish().map_err(wrap)?;
        }
        Compression::Snappy => compress_xerial(input, out).map_err(wrap)?,
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(out);
            encoder.write_all(input).map_err(wrap)?;
            encoder.finish().map_err(|e| wrap(io::Error::other(e)))?;
        }
        Compression::Zstd => {
            let compressed =
                zstd::bulk::compress(input, zstd::DEFAULT_COMPRESSION_LEVEL).map_err(wrap)?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

fn compress_xerial(input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in input.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(block).map_err(io::Error::other)?;
        let len = u32::try_from(compressed.len()).map_err(io::Error::other)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(())
}

/// Decompresses `input` into a new buffer of at most `max_bytes`.
///
/// The bound is enforced while reading, so a small payload that claims (or expands to) a huge
/// size fails with [`RecordError::DecompressedTooLarge`] instead of allocating it.
pub(crate) fn decompress(
    codec: Compression,
    input: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, RecordError> {
    let wrap = |source: io::Error| RecordError::Decompress { codec, source };
    match codec {
        Compression::None => read_bounded(input, max_bytes, wrap),
        // Every member: a gzip stream may be several members back to back (RFC 1952 section
        // 2.2), and Kafka's Java client and kafka-python read them all.
        Compression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(input), max_bytes, wrap)
        }
        Compression::Snappy => decompress_snappy(input, max_bytes),
        Compression::Lz4 => {
            read_bounded(lz4_flex::frame::FrameDecoder::new(input), max_bytes, wrap)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(wrap)?;
            read_bounded(decoder, max_bytes, wrap)
        }
    }
}

fn read_bounded<R: Read>(
    reader: R,
    max_bytes: usize,
    wrap: impl Fn(io::Error) -> RecordError,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader.take(limit).read_to_end(&mut out).map_err(wrap)?;
    if out.len() > max_bytes {
        return Err(RecordError::DecompressedTooLarge { max: max_bytes });
    }
    Ok(out)
}

fn decompress_snappy(input: &[u8], max_bytes: usize) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    if input.starts_with(&XERIAL_MAGIC) {
        let mut rest = input
            .get(XERIAL_HEADER_LEN..)
            .ok_or_else(|| snappy_error("truncated xerial header"))?;
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| snappy_error("truncated xerial block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            let block = tail
                .get(..len)
                .ok_or_else(|| snappy_error("truncated xerial block"))?;
            decompress_raw_snappy(block, max_bytes, &mut out)?;
            rest = &tail[len..];
        }
    } else {
        decompress_raw_snappy(input, max_bytes, &mut out)?;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared size against the bound first.
fn decompress_raw_snappy(
    block: &[u8],
    max_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let wrap = |e: snap::Error| RecordError::Decompress {
        codec: Compression::Snappy,
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    };
    let len = snap::raw::decompress_len(block).map_err(wrap)?;
    if out.len().saturating_add(len) > max_bytes {
        return Err(RecordError::DecompressedTooLarge { max: max_bytes });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(wrap)?;
    out.truncate(start + written);
    Ok(())
}

fn snappy_error(reason: &'static str) -> RecordError {
    RecordError::Decompress {
        codec: Compression::Snappy,
        source: io::Error::new(io::ErrorKind::InvalidData, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let input = sample();
        for codec in Compression::ALL {
            let mut packed = Vec::new();
            compress(codec, &input, &mut packed).unwrap();
            let unpacked = decompress(codec, &packed, input.len()).unwrap();
            assert_eq!(unpacked, input, "{codec}");
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let input = vec![0u8; 1 << 20];
        for codec in Compression::ALL {
            let mut packed = Vec::new();
            compress(codec, &input, &mut packed).unwrap();
            let result = decompress(codec, &packed, 4096);
            assert!(
                matches!(result, Err(RecordError::DecompressedTooLarge { max: 4096 })),
                "{codec}: {:?}",
                result.map(|v| v.len())
            );
        }
    }

    #[test]
    fn gzip_reads_every_member() {
        let input = sample();
        let mut packed = Vec::new();
        for part in input.chunks(input.len() / 3 + 1) {
            compress(Compression::Gzip, part, &mut packed).unwrap();
        }
        let unpacked = decompress(Compression::Gzip, &packed, input.len()).unwrap();
        assert_eq!(unpacked.len(), input.len());
        assert_eq!(unpacked, input);
        // The bound counts all members together, not each on its own.
        let result = decompress(Compression::Gzip, &packed, input.len() - 1);
        assert!(
            matches!(result, Err(RecordError::DecompressedTooLarge { .. })),
            "{:?}",
            result.map(|v| v.len())
        );
    }

    #[test]
    fn xerial_framing_has_java_header() {
        let mut packed = Vec::new();
        compress(Compression::Snappy, b"hello hello hello", &mut packed).unwrap();
        assert_eq!(&packed[..8], &XERIAL_MAGIC);
        assert_eq!(&packed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(b"raw snappy block")
            .unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1024).unwrap(),
            b"raw snappy block"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in Compression::ALL {
            let _ = decompress(codec, &[0x82, 0x53, 0xff, 0x00, 0x01, 0x02], 1024);
        }
    }
}
