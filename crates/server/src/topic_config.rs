//! Kafka's topic config names and the engine's `LogConfig`: the one table between them.
//!
//! CreateTopics reads a request's configs through it, DescribeConfigs reports a topic's values
//! through it. A key is settable when the engine has a field for it; a key whose behaviour is
//! fixed (one policy, one timestamp type) accepts only the value rill implements; any other
//! key is refused, naming it, rather than silently ignored.

use std::time::Duration;

use rill_engine::{FsyncPolicy, LogConfig};

/// Kafka's config types (DescribeConfigs v3+).
#[derive(Clone, Copy, Debug)]
pub enum Type {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// How a key relates to the engine's configuration.
enum Access {
    /// Backed by a `LogConfig` field: read it, and set it from a request's value.
    Field {
        get: fn(&LogConfig) -> String,
        set: fn(&mut LogConfig, &str) -> Result<(), String>,
    },
    /// Derived from fields the request cannot set (`get`): a request may only repeat it.
    Derived(fn(&LogConfig) -> String),
}

/// One topic config key.
struct Entry {
    name: &'static str,
    kind: Type,
    access: Access,
}

/// Every topic config this broker reports, sorted by name.
const TABLE: &[Entry] = &[
    Entry {
        name: "cleanup.policy",
        kind: Type::List,
        access: Access::Derived(|_| "delete".into()),
    },
    Entry {
        name: "compression.type",
        kind: Type::String,
        access: Access::Derived(|_| "producer".into()),
    },
    Entry {
        name: "flush.messages",
        kind: Type::Long,
        access: Access::Derived(|c| flush(c).0),
    },
    Entry {
        name: "flush.ms",
        kind: Type::Long,
        access: Access::Derived(|c| flush(c).1),
    },
    Entry {
        name: "index.interval.bytes",
        kind: Type::Int,
        access: Access::Field {
            get: |c| c.index_interval_bytes.to_string(),
            set: |c, v| {
                c.index_interval_bytes = positive(v)?;
                Ok(())
            },
        },
    },
    Entry {
        name: "max.message.bytes",
        kind: Type::Int,
        access: Access::Field {
            get: |c| c.limits.max_batch_bytes.to_string(),
            set: |c, v| {
                c.limits.max_batch_bytes = usize_of(positive(v)?)?;
                Ok(())
            },
        },
    },
    Entry {
        name: "message.timestamp.type",
        kind: Type::String,
        access: Access::Derived(|_| "CreateTime".into()),
    },
    Entry {
        name: "min.insync.replicas",
        kind: Type::Int,
        access: Access::Derived(|_| "1".into()),
    },
    Entry {
        name: "retention.bytes",
        kind: Type::Long,
        access: Access::Field {
            get: |c| c.retention_bytes.map_or("-1".into(), |b| b.to_string()),
            set: |c, v| {
                c.retention_bytes = unlimited_or_positive(v)?;
                Ok(())
            },
        },
    },
    Entry {
        name: "retention.ms",
        kind: Type::Long,
        access: Access::Field {
            get: |c| millis(c.retention_age),
            set: |c, v| {
                c.retention_age = unlimited_or_positive(v)?.map(Duration::from_millis);
                Ok(())
            },
        },
    },
    Entry {
        name: "segment.bytes",
        kind: Type::Int,
        access: Access::Field {
            get: |c| c.segment_bytes.to_string(),
            set: |c, v| {
                c.segment_bytes = positive(v)?;
                Ok(())
            },
        },
    },
    Entry {
        name: "segment.ms",
        kind: Type::Long,
        access: Access::Field {
            get: |c| millis(c.segment_age),
            set: |c, v| {
                c.segment_age = unlimited_or_positive(v)?.map(Duration::from_millis);
                Ok(())
            },
        },
    },
];

/// A config a request may not set, or a value it may not take.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    /// The Kafka config name, as the request spelled it.
    pub key: String,
    /// Why it was refused.
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config {}: {}", self.key, self.reason)
    }
}

/// `base` with each `(key, value)` applied; a null value keeps the base's.
pub fn apply<'a>(
    base: &LogConfig,
    configs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<LogConfig, Refused> {
    let mut config = base.clone();
    for (key, value) in configs {
        let refuse = |reason: String| Refused {
            key: key.to_owned(),
            reason,
        };
        let entry = TABLE
            .iter()
            .find(|e| e.name == key)
            .ok_or_else(|| refuse("unknown or not supported by this broker".into()))?;
        let Some(value) = value else { continue };
        match &entry.access {
            Access::Field { set, .. } => set(&mut config, value.trim()).map_err(refuse)?,
            Access::Derived(get) => {
                let fixed = get(&config);
                if value.trim() != fixed {
                    return Err(refuse(format!("rill supports only {fixed:?}")));
                }
            }
        }
    }
    Ok(config)
}

/// Each key's value in `config`, its type, and whether it differs from `default` (a value the
/// topic was created with rather than the broker's).
pub fn describe(
    config: &LogConfig,
    default: &LogConfig,
) -> Vec<(&'static str, String, Type, bool)> {
    TABLE
        .iter()
        .map(|entry| {
            let get = match &entry.access {
                Access::Field { get, .. } => get,
                Access::Derived(get) => get,
            };
            let value = get(config);
            let own = value != get(default);
            (entry.name, value, entry.kind, own)
        })
        .collect()
}

fn flush(config: &LogConfig) -> (String, String) {
    match config.fsync {
        FsyncPolicy::EveryAppend => ("1".to_owned(), i64::MAX.to_string()),
        FsyncPolicy::Interval(every) => (i64::MAX.to_string(), every.as_millis().to_string()),
        _ => (i64::MAX.to_string(), i64::MAX.to_string()),
    }
}

fn millis(duration: Option<Duration>) -> String {
    duration.map_or("-1".into(), |d| d.as_millis().to_string())
}

fn positive(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{value:?} is not a positive integer")),
    }
}

/// Kafka's convention: -1 means no limit.
fn unlimited_or_positive(value: &str) -> Result<Option<u64>, String> {
    if value == "-1" {
        return Ok(None);
    }
    positive(value)
        .map(Some)
        .map_err(|reason| format!("{reason} (or -1, no limit)"))
}

fn usize_of(value: u64) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("{value} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Result<LogConfig, Refused> {
        apply(
            &LogConfig::default(),
            pairs.iter().map(|(k, v)| (*k, Some(*v))),
        )
    }

    #[test]
    fn settable_keys_reach_their_fields() {
        let config = set(&[
            ("max.message.bytes", "2048"),
            ("retention.ms", "60000"),
            ("retention.bytes", "-1"),
            ("segment.bytes", "1048576"),
            ("segment.ms", "-1"),
        ])
        .unwrap();
        assert_eq!(config.limits.max_batch_bytes, 2048);
        assert_eq!(config.retention_age, Some(Duration::from_secs(60)));
        assert_eq!(config.retention_bytes, None);
        assert_eq!(config.segment_bytes, 1048576);
        assert_eq!(config.segment_age, None);
    }

    #[test]
    fn unknown_keys_and_other_fixed_values_are_refused_by_name() {
        let unknown = set(&[("segment.jitter.ms", "5")]).unwrap_err();
        assert_eq!(unknown.key, "segment.jitter.ms");
        let compact = set(&[("cleanup.policy", "compact")]).unwrap_err();
        assert_eq!(compact.key, "cleanup.policy");
        assert!(set(&[("cleanup.policy", "delete")]).is_ok());
        assert_eq!(
            set(&[("retention.ms", "soon")]).unwrap_err().key,
            "retention.ms"
        );
    }

    #[test]
    fn describe_reports_what_differs_from_the_default() {
        let default = LogConfig::default();
        let config = set(&[("max.message.bytes", "2048")]).unwrap();
        let entries = describe(&config, &default);
        let own: Vec<_> = entries.iter().filter(|e| e.3).map(|e| e.0).collect();
        assert_eq!(own, ["max.message.bytes"]);
        let names: Vec<_> = entries.iter().map(|e| e.0).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
