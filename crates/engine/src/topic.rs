//! Topic names and partition identities, validated by Kafka's rules.
//!
//! A topic name becomes a directory name, so validation is also what keeps a caller from
//! escaping the data directory: only `[a-zA-Z0-9._-]`, 1 to 249 characters, and never `.` or
//! `..`.

use std::fmt;
use std::sync::Arc;

/// Kafka's limit: 255 minus room for a partition suffix and a `.deleted`-style marker.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why a string is not a topic name. Converts into [`Error::InvalidTopicName`](crate::Error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name {name:?}: {reason}")]
pub struct InvalidTopicName {
    /// The name as given (cut to a bounded length).
    pub name: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

/// A topic name that passed validation. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `name` by Kafka's rules; the error says which one it breaks.
    pub fn new(name: &str) -> Result<Self, InvalidTopicName> {
        let invalid = |reason| InvalidTopicName {
            name: name.chars().take(MAX_TOPIC_NAME_LEN + 8).collect(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > MAX_TOPIC_NAME_LEN {
            return Err(invalid("longer than 249 characters"));
        }
        if name == "." || name == ".." {
            return Err(invalid("'.' and '..' are not topic names"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            ));
        }
        Ok(Self(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A topic name reads as the string it is.
impl std::ops::Deref for TopicName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by topic name can be searched with a `&str` (hashing and ordering agree).
impl std::borrow::Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for TopicName {
    type Error = InvalidTopicName;

    fn try_from(name: &str) -> Result<Self, InvalidTopicName> {
        Self::new(name)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// One partition of one topic: the unit of ordering and of storage.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: TopicName,
    /// The partition's number, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// The partition `partition` of `topic`.
    pub fn new(topic: TopicName, partition: u32) -> Self {
        Self { topic, partition }
    }

    /// The partition's directory name, `<topic>-<partition>`, as Kafka lays it out.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name back; `None` for anything that is not a partition directory.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            topic: TopicName::new(topic).ok()?,
            partition: partition.parse().ok()?,
        })
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A topic's 16-byte identity, random at creation and kept for the topic's life (Kafka's
/// topic UUID: newer Produce and Fetch versions name topics by it). Two topics created under
/// the same name at different times have different ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId([u8; 16]);

impl TopicId {
    /// The id made of these bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's bytes, in Kafka's wire order.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh random id from the operating system's generator. Never all zeros: Kafka
    /// reserves the zero UUID for "no id".
    pub(crate) fn random() -> std::io::Result<Self> {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        loop {
            std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
            if bytes != [0; 16] {
                return Ok(Self(bytes));
            }
        }
    }

    /// Parses the 32 lowercase or uppercase hex digits that [`fmt::Display`] writes.
    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }
}

/// 32 lowercase hex digits.
impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_names() {
        for name in [
            "a",
            "orders",
            "my.topic_v2-x",
            "__consumer_offsets",
            &"x".repeat(249),
        ] {
            assert!(TopicName::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_names_that_could_escape_or_break_paths() {
        for name in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a\\b",
            "a b",
            "é",
            "a\0b",
            &"x".repeat(250),
        ] {
            assert!(
                matches!(TopicName::new(name), Err(InvalidTopicName { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn topic_ids_are_random_and_round_trip_through_hex() {
        let a = TopicId::random().unwrap();
        let b = TopicId::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(TopicId::from_hex(&a.to_string()), Some(a));
        assert_eq!(TopicId::from_hex("zz"), None);
        assert_eq!(TopicId::from_hex(&"g".repeat(32)), None);
    }

    #[test]
    fn dir_names_round_trip_with_dashes_in_topics() {
        let tp = TopicPartition::new(TopicName::new("a-b-1").unwrap(), 12);
        assert_eq!(tp.dir_name(), "a-b-1-12");
        assert_eq!(TopicPartition::from_dir_name("a-b-1-12"), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("a-b-"), None);
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("..-1"), None);
    }
}
