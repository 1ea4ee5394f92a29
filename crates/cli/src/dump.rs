//! `rill dump FILE`: every record of a file of RecordBatch v2 batches, one JSON object a line,
//! in the spirit of Kafka's `kafka-dump-log`.
//!
//! Output is a stream (`jq`, `grep`, `head`), so each record is written as soon as it is decoded
//! and nothing is collected. A corrupt batch ends the dump: what came before it is still printed,
//! then the error names the batch's byte position so the file can be inspected or cut there.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use memmap2::Mmap;
use rill_engine::record::{Batches, Limits, Record, RecordError};

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// A segment file, or any file of RecordBatch v2 batches laid end to end.
    pub file: PathBuf,

    /// Largest batch accepted, header included. Raise it for files written by a broker with a
    /// larger `max.message.bytes`.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::DEFAULT_MAX_BATCH_BYTES)]
    pub max_batch_bytes: usize,
}

pub fn run(args: &DumpArgs) -> anyhow::Result<()> {
    let input =
        Input::open(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let limits = Limits {
        max_batch_bytes: args.max_batch_bytes,
        // Someone who admits bigger batches expects bigger payloads too; never let the
        // decompression bound be the tighter of the two.
        max_decompressed_bytes: Limits::DEFAULT_MAX_DECOMPRESSED_BYTES.max(args.max_batch_bytes),
    };

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let result = dump(input.bytes(), &limits, &mut out);
    // The records before a corrupt batch are part of the answer: they go out before the error.
    out.flush()?;
    match result {
        Ok(_) => Ok(()),
        Err(DumpError::Io(error)) => Err(error.into()),
        Err(DumpError::Corrupt { position, source }) => Err(anyhow::anyhow!(
            "corrupt batch at byte {position} of {}: {source}",
            args.file.display()
        )),
    }
}

/// The file's bytes: mapped when it is a regular file, so a multi-gigabyte segment costs no heap
/// and no copy; read into memory otherwise (a pipe such as `/dev/stdin` cannot be mapped).
enum Input {
    Mapped(Mmap),
    Read(Vec<u8>),
}

impl Input {
    fn open(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        if !file.metadata()?.is_file() {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            return Ok(Input::Read(bytes));
        }
        // SAFETY: the map is only read, and only by this process. The hazard `Mmap::map` warns of
        // is another process changing the file while it is mapped. Logs are append-only: a
        // segment still being written grows past the length mapped here, which is never read, and
        // bytes already written are not rewritten in place. Were the file truncated or rewritten
        // anyway (recovery cutting a torn tail under a running dump), this read-only process
        // could die of SIGBUS or print garbage; the bytes are checked as untrusted input (lengths,
        // CRC) either way, so that cannot reach outside the map.
        let map = unsafe { Mmap::map(&file)? };
        #[cfg(unix)]
        {
            // Only a hint for read-ahead; a dump is correct without it.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
        Ok(Input::Mapped(map))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Input::Mapped(map) => map,
            Input::Read(bytes) => bytes,
        }
    }
}

#[derive(Debug)]
enum DumpError {
    /// The batch starting at `position` (or one of its records) is invalid.
    Corrupt {
        position: u64,
        source: RecordError,
    },
    Io(io::Error),
}

/// Writes every record of `bytes` to `out` as JSON lines; returns how many were written.
fn dump(bytes: &[u8], limits: &Limits, out: &mut impl Write) -> Result<u64, DumpError> {
    let mut written = 0;
    for item in Batches::new(bytes, *limits) {
        let (position, batch) = item.map_err(|invalid| DumpError::Corrupt {
            position: invalid.position,
            source: invalid.source,
        })?;
        let corrupt = move |source| DumpError::Corrupt { position, source };
        let records = batch.records(limits).map_err(corrupt)?;
        for record in records.iter() {
            write_record(out, None, &record.map_err(corrupt)?).map_err(DumpError::Io)?;
            written += 1;
        }
    }
    Ok(written)
}

/// `{"offset":..,"timestamp":..,"key":HEX|null,"value":HEX|null,"headers":[[NAME,HEX|null],..]}`,
/// led by `"partition":N,` when the record's partition is known (`rill consume`), so one format
/// serves a segment file and a whole topic alike.
///
/// Written by hand rather than through a serialized struct: numbers and hex never need escaping,
/// and this loop is the whole cost of dumping a big segment. Header names, the only free text,
/// go through `serde_json` for escaping.
pub fn write_record(
    out: &mut impl Write,
    partition: Option<u32>,
    record: &Record<'_>,
) -> io::Result<()> {
    out.write_all(b"{")?;
    if let Some(partition) = partition {
        write!(out, "\"partition\":{partition},")?;
    }
    write!(
        out,
        "\"offset\":{},\"timestamp\":{},\"key\":",
        record.offset, record.timestamp
    )?;
    write_hex_or_null(out, record.key)?;
    out.write_all(b",\"value\":")?;
    write_hex_or_null(out, record.value)?;
    out.write_all(b",\"headers\":[")?;
    for (i, header) in record.headers().enumerate() {
        out.write_all(if i == 0 { b"[" } else { b",[" })?;
        // Kafka header names are UTF-8 strings; a foreign file may break that, and a readable
        // approximation beats refusing to dump it.
        serde_json::to_writer(&mut *out, &String::from_utf8_lossy(header.key))?;
        out.write_all(b",")?;
        write_hex_or_null(out, header.value)?;
        out.write_all(b"]")?;
    }
    out.write_all(b"]}\n")
}

fn write_hex_or_null(out: &mut impl Write, field: Option<&[u8]>) -> io::Result<()> {
    const CHUNK: usize = 4096;
    let Some(bytes) = field else {
        return out.write_all(b"null");
    };
    let mut buf = [0u8; 2 * CHUNK];
    out.write_all(b"\"")?;
    for chunk in bytes.chunks(CHUNK) {
        let hex = &mut buf[..2 * chunk.len()];
        hex::encode_to_slice(chunk, hex).map_err(io::Error::other)?;
        out.write_all(hex)?;
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use rill_engine::record::{BatchBuilder, Compression, Header};

    use super::*;

    fn dump_to_string(bytes: &[u8]) -> (String, Result<u64, DumpError>) {
        let mut out = Vec::new();
        let result = dump(bytes, &Limits::default(), &mut out);
        (String::from_utf8(out).unwrap(), result)
    }

    #[test]
    fn header_names_are_escaped_and_lossy_and_nulls_are_null() {
        let mut builder = BatchBuilder::new(Compression::None).base_offset(7);
        builder
            .append(
                -3,
                None,
                Some(&[0x00, 0xff, 0x10]),
                &[
                    Header::new(b"quote\"back\\slash\nnl", Some(b"")),
                    Header::new(b"bad\xffutf8", None),
                ],
            )
            .unwrap();
        let (text, result) = dump_to_string(&builder.build().unwrap());
        assert_eq!(result.unwrap(), 1);
        assert_eq!(
            text,
            "{\"offset\":7,\"timestamp\":-3,\"key\":null,\"value\":\"00ff10\",\"headers\":\
             [[\"quote\\\"back\\\\slash\\nnl\",\"\"],[\"bad\u{fffd}utf8\",null]]}\n"
        );
    }

    #[test]
    fn values_longer_than_one_hex_chunk_are_whole() {
        let value: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(0, Some(b"k"), Some(&value), &[]).unwrap();
        let (text, _) = dump_to_string(&builder.build().unwrap());
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["value"].as_str().unwrap(), hex::encode(&value));
    }

    #[test]
    fn a_bad_record_keeps_the_records_before_it() {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.append(0, Some(b"a"), Some(b"1"), &[]).unwrap();
        builder.append(0, Some(b"b"), Some(b"2"), &[]).unwrap();
        let mut first = builder.build().unwrap();
        let second = first.clone();
        // Claim one record more than the payload holds; keep the CRC right so only the record
        // walk can notice.
        let count = 57..61;
        first[count.clone()].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&first[21..]);
        first[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut bytes = second;
        let position = bytes.len() as u64;
        bytes.extend_from_slice(&first);

        let (text, result) = dump_to_string(&bytes);
        assert_eq!(text.lines().count(), 4, "{text}");
        match result {
            Err(DumpError::Corrupt {
                position: at,
                source: RecordError::RecordCountMismatch { .. },
            }) => assert_eq!(at, position),
            other => panic!("{other:?}"),
        }
    }
}
