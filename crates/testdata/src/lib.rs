//! The one place that knows where the repository's test data lives: `tests/data/` at the
//! repository root (see its README for what each file is and where it came from).
//!
//! Tests in every crate take their paths from here rather than each spelling a relative path
//! from its own manifest directory, so the data can move without touching a test, and nothing
//! points outside the repository.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

/// `tests/data/` at the repository root.
pub fn dir() -> PathBuf {
    // This crate sits at `crates/testdata`, two levels below the root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

/// RecordBatch v2 files written by kafka-python, with their `manifest.json`.
pub fn kafka_batches() -> PathBuf {
    dir().join("kafka-batches")
}

/// RecordBatch v2 files made by `tests/data/generate` with the batch builders of kafka-python
/// and aiokafka, with their `manifest.json`.
pub fn generated_batches() -> PathBuf {
    dir().join("generated")
}

/// Keys with their Kafka murmur2 hash and default partition for several partition counts.
pub fn kafka_partitioner() -> PathBuf {
    dir().join("kafka-partitioner.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_exists_in_the_repository() {
        let root = dir()
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", dir().display()));
        assert!(root.join("README.md").is_file());
        for path in [kafka_batches(), generated_batches()] {
            assert!(path.join("manifest.json").is_file(), "{}", path.display());
        }
        assert!(kafka_partitioner().is_file());
    }
}
