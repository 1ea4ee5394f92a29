//! The per-topic metadata file: a topic's id and, when it has one, its own configuration.
//!
//! `<data dir>/<topic>.topic` is a short text file, one `key value` pair a line, ended by a
//! CRC-32C of every byte before the `crc32c` line:
//!
//! ```text
//! rill-topic 1
//! id 5f0c8a1e9d2b4c7e8a3f6b1d2c4e9f07
//! partitions 3
//! config own                  (or `config default`: the engine's default, whatever it is)
//! segment_bytes 268435456
//! segment_age_ns 604800000000000          (`none` when unset)
//! retention_bytes none
//! retention_age_ns 604800000000000
//! index_interval_bytes 4096
//! fsync never                 (or `every_append`, or `interval_ns 5000000`)
//! visibility written          (or `appended`, `durable`)
//! tail_bytes 4194304
//! max_batch_bytes 1048576
//! max_decompressed_bytes 67108864
//! producer_id_expiration_ns 86400000000000
//! preallocate 1               (or 0)
//! crc32c 0a1b2c3d
//! ```
//!
//! Topics that follow the engine's default stop at the `config default` line. The file is
//! replaced atomically (written beside, synced, renamed, directory synced), so a crash leaves
//! the old file or the new one. A file that fails its checksum or does not parse refuses to
//! open with [`Error::CorruptFile`]: guessing a topic's retention could delete data.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::log::{FsyncPolicy, LogConfig, Visibility};
use crate::record::Limits;
use crate::topic::{TopicId, TopicName};

const MAGIC: &str = "rill-topic 1";

/// What the metadata file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    pub id: TopicId,
    pub partitions: u32,
    /// The topic's own configuration; `None` follows the engine's default.
    pub config: Option<LogConfig>,
}

/// The metadata file of `topic` in the data directory `root`.
pub(crate) fn path(root: &Path, topic: &TopicName) -> PathBuf {
    root.join(format!("{topic}.topic"))
}

/// Reads the topic's metadata; `None` when the file does not exist (a data directory from
/// before the file existed).
pub(crate) fn read(root: &Path, topic: &TopicName) -> Result<Option<TopicMeta>> {
    let path = path(root, topic);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("read topic metadata", &path, error)),
    };
    decode(&text)
        .map(Some)
        .map_err(|reason| Error::CorruptFile { path, reason })
}

/// Replaces the topic's metadata file atomically and durably.
pub(crate) fn write(root: &Path, topic: &TopicName, meta: &TopicMeta) -> Result<()> {
    let path = path(root, topic);
    let temporary = root.join(format!("{topic}.topic.tmp"));
    let mut file = fs::File::create(&temporary).context("create topic metadata", &temporary)?;
    file.write_all(encode(meta).as_bytes())
        .and_then(|()| file.sync_all())
        .context("write topic metadata", &temporary)?;
    fs::rename(&temporary, &path).context("rename topic metadata", &path)?;
    fs::File::open(root)
        .and_then(|dir| dir.sync_all())
        .context("sync data directory", root)
}

fn encode(meta: &TopicMeta) -> String {
    let mut text = format!("{MAGIC}\nid {}\npartitions {}\n", meta.id, meta.partitions);
    match &meta.config {
        None => text.push_str("config default\n"),
        Some(config) => {
            text.push_str("config own\n");
            encode_config(&mut text, config);
        }
    }
    let crc = crc32c::crc32c(text.as_bytes());
    let _ = writeln!(text, "crc32c {crc:08x}");
    text
}

fn encode_config(text: &mut String, config: &LogConfig) {
    let nanos = |d: Option<Duration>| d.map_or("none".to_string(), |d| d.as_nanos().to_string());
    let bytes = |b: Option<u64>| b.map_or("none".to_string(), |b| b.to_string());
    let fsync = match config.fsync {
        FsyncPolicy::Never => "never".to_string(),
        FsyncPolicy::EveryAppend => "every_append".to_string(),
        FsyncPolicy::Interval(every) => format!("interval_ns {}", every.as_nanos()),
    };
    let visibility = match config.visibility {
        Visibility::Appended => "appended",
        Visibility::Written => "written",
        Visibility::Durable => "durable",
    };
    let _ = write!(
        text,
        "segment_bytes {}\nsegment_age_ns {}\nretention_bytes {}\nretention_age_ns {}\n\
         index_interval_bytes {}\nfsync {fsync}\nvisibility {visibility}\ntail_bytes {}\n\
         max_batch_bytes {}\nmax_decompressed_bytes {}\nproducer_id_expiration_ns {}\n\
         preallocate {}\n",
        config.segment_bytes,
        nanos(config.segment_age),
        bytes(config.retention_bytes),
        nanos(config.retention_age),
        config.index_interval_bytes,
        config.tail_bytes,
        config.limits.max_batch_bytes,
        config.limits.max_decompressed_bytes,
        config.producer_id_expiration.as_nanos(),
        u8::from(config.preallocate),
    );
}

fn decode(text: &str) -> std::result::Result<TopicMeta, String> {
    let body_end = text
        .rfind("crc32c ")
        .ok_or_else(|| "no crc32c line".to_string())?;
    let (body, crc_line) = text.split_at(body_end);
    let stored = u32::from_str_radix(crc_line["crc32c ".len()..].trim_end(), 16)
        .map_err(|_| "unreadable crc32c".to_string())?;
    let computed = crc32c::crc32c(body.as_bytes());
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        ));
    }
    let mut fields = Fields(body.lines());
    if fields.0.next() != Some(MAGIC) {
        return Err(format!("not a rill topic file (expected {MAGIC:?} first)"));
    }
    let id = TopicId::from_hex(fields.value("id")?).ok_or("id is not 32 hex digits")?;
    let partitions = number(fields.value("partitions")?)?;
    let config = match fields.value("config")? {
        "default" => None,
        "own" => Some(decode_config(&mut fields)?),
        other => return Err(format!("config {other:?} is neither default nor own")),
    };
    Ok(TopicMeta {
        id,
        partitions,
        config,
    })
}

fn decode_config(fields: &mut Fields<'_>) -> std::result::Result<LogConfig, String> {
    let segment_bytes = number(fields.value("segment_bytes")?)?;
    let segment_age = optional(fields.value("segment_age_ns")?)?.map(Duration::from_nanos);
    let retention_bytes = optional(fields.value("retention_bytes")?)?;
    let retention_age = optional(fields.value("retention_age_ns")?)?.map(Duration::from_nanos);
    let index_interval_bytes = number(fields.value("index_interval_bytes")?)?;
    let fsync = match fields.value("fsync")? {
        "never" => FsyncPolicy::Never,
        "every_append" => FsyncPolicy::EveryAppend,
        other => match other.strip_prefix("interval_ns ") {
            Some(nanos) => FsyncPolicy::Interval(Duration::from_nanos(number(nanos)?)),
            None => return Err(format!("unknown fsync policy {other:?}")),
        },
    };
    let visibility = match fields.value("visibility")? {
        "appended" => Visibility::Appended,
        "written" => Visibility::Written,
        "durable" => Visibility::Durable,
        other => return Err(format!("unknown visibility {other:?}")),
    };
    Ok(LogConfig {
        segment_bytes,
        segment_age,
        retention_bytes,
        retention_age,
        index_interval_bytes,
        fsync,
        visibility,
        tail_bytes: number(fields.value("tail_bytes")?)?,
        limits: Limits {
            max_batch_bytes: number(fields.value("max_batch_bytes")?)?,
            max_decompressed_bytes: number(fields.value("max_decompressed_bytes")?)?,
        },
        // Files written before idempotent producers lack the line: they get the default.
        producer_id_expiration: match fields.0.next() {
            None => LogConfig::default().producer_id_expiration,
            Some(line) => match line.strip_prefix("producer_id_expiration_ns ") {
                Some(nanos) => Duration::from_nanos(number(nanos)?),
                None => return Err(format!("unexpected line {line:?}")),
            },
        },
        // Files written before preallocation lack the line: they get the default.
        preallocate: match fields.0.next() {
            None => LogConfig::default().preallocate,
            Some("preallocate 1") => true,
            Some("preallocate 0") => false,
            Some(line) => return Err(format!("unexpected line {line:?}")),
        },
    })
}

/// The lines of a file, read in their fixed order.
struct Fields<'a>(std::str::Lines<'a>);

impl<'a> Fields<'a> {
    fn value(&mut self, key: &str) -> std::result::Result<&'a str, String> {
        self.0
            .next()
            .and_then(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .ok_or_else(|| format!("expected a {key:?} line"))
    }
}

fn number<T: std::str::FromStr>(text: &str) -> std::result::Result<T, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

fn optional(text: &str) -> std::result::Result<Option<u64>, String> {
    match text {
        "none" => Ok(None),
        text => number(text).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(config: Option<LogConfig>) -> TopicMeta {
        TopicMeta {
            id: TopicId::from_bytes([7; 16]),
            partitions: 3,
            config,
        }
    }

    #[test]
    fn round_trips_default_and_own_configurations() {
        let own = LogConfig {
            segment_bytes: 8 << 20,
            segment_age: None,
            retention_bytes: Some(1 << 30),
            retention_age: Some(Duration::from_millis(1_500)),
            fsync: FsyncPolicy::Interval(Duration::from_micros(250)),
            visibility: Visibility::Durable,
            tail_bytes: 0,
            preallocate: !LogConfig::default().preallocate,
            ..LogConfig::default()
        };
        for meta in [meta(None), meta(Some(own))] {
            assert_eq!(decode(&encode(&meta)), Ok(meta));
        }
    }

    /// A file written before the `preallocate` line existed opens with the default.
    #[test]
    fn a_file_without_the_preallocate_line_gets_the_default() {
        let own = LogConfig {
            preallocate: !LogConfig::default().preallocate,
            ..LogConfig::default()
        };
        let text = encode(&meta(Some(own)));
        let body_end = text.rfind("crc32c ").unwrap();
        let body: String = text[..body_end]
            .lines()
            .filter(|line| !line.starts_with("preallocate "))
            .map(|line| format!("{line}\n"))
            .collect();
        let older = format!("{body}crc32c {:08x}\n", crc32c::crc32c(body.as_bytes()));
        let decoded = decode(&older).unwrap();
        assert_eq!(
            decoded.config.map(|c| c.preallocate),
            Some(LogConfig::default().preallocate)
        );
    }

    #[test]
    fn refuses_a_flipped_byte_or_a_truncated_file() {
        let text = encode(&meta(Some(LogConfig::default())));
        let flipped = text.replacen("partitions 3", "partitions 4", 1);
        assert!(decode(&flipped).unwrap_err().contains("checksum"));
        let truncated = &text[..text.len() / 2];
        assert!(decode(truncated).is_err());
        assert!(decode("").is_err());
    }
}
