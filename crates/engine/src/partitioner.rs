//! Choosing the partition a produced record goes to.
//!
//! # Keyed records
//!
//! A record with a key always goes to the partition its key hashes to, whatever [`Partitioner`]
//! a producer uses. The hash is the MurmurHash2 variant of Kafka's Java client ([`murmur2`]),
//! and the partition is that hash with the sign bit cleared, modulo the partition count
//! ([`key_partition`]). This matches Kafka's Java producer bit for bit, so with the same
//! partition count every key lands on the partition it would have in Kafka: data can be
//! migrated partition by partition, and applications that rely on per-key ordering or co-located
//! state keep working. An empty key (`Some(&[])`) is a key and is hashed, as in Kafka; only
//! `None` counts as keyless.
//!
//! # Keyless records
//!
//! Records without a key have no natural home, so the [`Partitioner`] policy spreads them:
//!
//! * [`Partitioner::RoundRobin`] sends each keyless record to the next partition in turn.
//!   Load is even record by record, but consecutive records never share a batch, so batches
//!   stay small.
//! * [`Partitioner::UniformSticky`] (the default, Kafka's behaviour since KIP-480/KIP-794)
//!   sends keyless records to one partition until its batch is completed or a byte threshold
//!   has been appended there, then moves to a different, randomly chosen partition. Batches
//!   fill up, and over time every partition receives the same share.
//!
//! A [`PartitionChooser`] holds the per-producer state for one topic. It is a plain value with
//! no locks or atomics: the producer handle that owns it is its only user.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Kafka's MurmurHash2, as the Java client's `Utils.murmur2` computes it.
///
/// This is 32-bit MurmurHash2 with Kafka's fixed seed `0x9747b28c`, reading the input as
/// little-endian 32-bit words, returning the final state reinterpreted as a signed `i32` (Java
/// has no unsigned int). Keep it bit-exact: it decides which partition a key lands on.
#[must_use]
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java mixes in the array length as an `int`; a Java array can never exceed `i32::MAX`, so
    // truncation only differs from Java for inputs Java could not hash at all.
    let mut h = SEED ^ (data.len() as u32);

    let (words, tail) = data.as_chunks::<4>();
    for word in words {
        let mut k = u32::from_le_bytes(*word);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // Java's tail `switch` falls through, so a 3-byte tail mixes in all three bytes and a
    // single multiply happens after the last one; XOR is order-independent, so a loop over the
    // tail is equivalent.
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's Java producer picks for `key`:
/// `(murmur2(key) & 0x7fffffff) % num_partitions`.
///
/// Kafka clears the sign bit (its `Utils.toPositive`) rather than taking the absolute value;
/// the two disagree on every negative hash (-1 becomes `0x7fffffff`, not 1), so only masking
/// reproduces Kafka's placement.
#[must_use]
pub fn key_partition(key: &[u8], num_partitions: NonZeroU32) -> u32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % num_partitions.get()
}

/// How a producer spreads records that have no key. Keyed records always use
/// [`key_partition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioner {
    /// Each keyless record goes to the partition after the previous keyless record's.
    RoundRobin,
    /// Keyless records stick to one partition until the producer hands that partition's batch
    /// over, or until at least `sticky_bytes` of records went to it; the next keyless record
    /// then goes to a random different partition (when there is more than one).
    ///
    /// `sticky_bytes` plays the role of Kafka's `batch.size`. Zero means "switch after every
    /// appended record", which degrades to random partitioning.
    UniformSticky {
        /// Bytes appended to the sticky partition after which the next keyless record moves on.
        sticky_bytes: u64,
    },
}

impl Partitioner {
    /// Kafka's default `batch.size`, used as the default sticky threshold so batches fill to
    /// the size a Kafka producer would build.
    pub const DEFAULT_STICKY_BYTES: u64 = 16 * 1024;
}

impl Default for Partitioner {
    fn default() -> Self {
        Self::UniformSticky {
            sticky_bytes: Self::DEFAULT_STICKY_BYTES,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sticky {
    /// No keyless record has been placed yet.
    Unset,
    /// Keyless records go here; `filled` bytes have been reported for it so far.
    Current { partition: u32, filled: u64 },
    /// The partition we just left; the next keyless record picks a new one, avoiding it.
    Leaving { partition: u32 },
}

/// Per-producer, per-topic partition choice.
///
/// Keep one per topic a producer writes to: the round-robin position and the sticky partition
/// only make sense relative to one topic's partitions. The partition count is passed on every
/// call rather than stored, so a topic that grows (or a metadata refresh) needs no
/// notification; a sticky partition that no longer exists is simply replaced.
#[derive(Clone, Debug)]
pub struct PartitionChooser {
    partitioner: Partitioner,
    next_round_robin: u32,
    sticky: Sticky,
    rng: XorShift64Star,
}

impl PartitionChooser {
    /// A chooser whose sticky choices are seeded from the clock, a stack address and a
    /// process-wide counter, so that producers started together do not all pick the same
    /// partitions.
    #[must_use]
    pub fn new(partitioner: Partitioner) -> Self {
        Self::with_seed(partitioner, ambient_seed())
    }

    /// A chooser whose random choices are a pure function of `seed`, for reproducible tests
    /// and simulations.
    #[must_use]
    pub fn with_seed(partitioner: Partitioner, seed: u64) -> Self {
        Self {
            partitioner,
            next_round_robin: 0,
            sticky: Sticky::Unset,
            rng: XorShift64Star::new(seed),
        }
    }

    /// The partition for a record with `key` in a topic of `num_partitions` partitions.
    ///
    /// Keyed records always get [`key_partition`]; keyless ones follow the [`Partitioner`].
    pub fn choose(&mut self, key: Option<&[u8]>, num_partitions: NonZeroU32) -> u32 {
        if let Some(key) = key {
            return key_partition(key, num_partitions);
        }
        let n = num_partitions.get();
        match self.partitioner {
            Partitioner::RoundRobin => {
                // Reducing only when out of range (the topic shrank) keeps the cycle exact;
                // a free-running counter taken modulo `n` would skip at `u32` wrap-around.
                let partition = if self.next_round_robin < n {
                    self.next_round_robin
                } else {
                    self.next_round_robin % n
                };
                self.next_round_robin = if partition + 1 == n { 0 } else { partition + 1 };
                partition
            }
            Partitioner::UniformSticky { .. } => match self.sticky {
                Sticky::Current { partition, .. } if partition < n => partition,
                Sticky::Leaving { partition } => self.stick_to_new(Some(partition), n),
                Sticky::Current { .. } | Sticky::Unset => self.stick_to_new(None, n),
            },
        }
    }

    /// Reports that a record of `bytes` bytes was appended to `partition`.
    ///
    /// Drives the byte threshold of [`Partitioner::UniformSticky`]; bytes appended to other
    /// partitions (keyed records, say) are ignored. A no-op for other policies.
    pub fn record_appended(&mut self, partition: u32, bytes: usize) {
        let Partitioner::UniformSticky { sticky_bytes } = self.partitioner else {
            return;
        };
        if let Sticky::Current {
            partition: current,
            filled,
        } = self.sticky
            && current == partition
        {
            let filled = filled.saturating_add(bytes as u64);
            self.sticky = if filled >= sticky_bytes {
                Sticky::Leaving { partition }
            } else {
                Sticky::Current { partition, filled }
            };
        }
    }

    /// Reports that the batch being built for `partition` was closed (full, or sent because
    /// it lingered long enough).
    ///
    /// Under [`Partitioner::UniformSticky`], if that is the sticky partition the next keyless
    /// record moves to another one, so the following batch starts elsewhere. A no-op for other
    /// partitions and policies.
    pub fn batch_completed(&mut self, partition: u32) {
        if !matches!(self.partitioner, Partitioner::UniformSticky { .. }) {
            return;
        }
        if let Sticky::Current {
            partition: current, ..
        } = self.sticky
            && current == partition
        {
            self.sticky = Sticky::Leaving { partition };
        }
    }

    fn stick_to_new(&mut self, avoid: Option<u32>, n: u32) -> u32 {
        let partition = match avoid {
            // Draw from the other `n - 1` partitions and step over the avoided one, so the
            // result is uniform among the others without a retry loop.
            Some(old) if old < n && n > 1 => {
                let r = self.rng.below(n - 1);
                if r >= old { r + 1 } else { r }
            }
            _ => self.rng.below(n),
        };
        self.sticky = Sticky::Current {
            partition,
            filled: 0,
        };
        partition
    }
}

/// xorshift64*: plenty for spreading load, and it avoids pulling in a `rand` dependency.
#[derive(Clone, Debug)]
struct XorShift64Star {
    state: u64,
}

impl XorShift64Star {
    fn new(seed: u64) -> Self {
        // The all-zero state is a fixed point of xorshift; scrambling the seed first also
        // spreads nearby seeds (0, 1, 2, ...) apart.
        let state = splitmix64(seed);
        Self {
            state: if state == 0 {
                0x9e37_79b9_7f4a_7c15
            } else {
                state
            },
        }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound` (`bound` > 0). Modulo bias is below 2^-32 since `bound` fits in
    /// 32 bits, far under what load spreading can notice.
    fn below(&mut self, bound: u32) -> u32 {
        (self.next_u64() % u64::from(bound.max(1))) as u32
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn ambient_seed() -> u64 {
    // The counter separates choosers created within one clock tick on the same stack frame
    // (a loop creating producers); the clock and address separate processes.
    static CREATED: AtomicU64 = AtomicU64::new(0);
    let count = CREATED.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let addr = (&raw const local).addr() as u64;
    nanos ^ addr.rotate_left(32) ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("test partition counts are non-zero")
    }

    fn vectors() -> Vec<serde_json::Value> {
        let path = rill_testdata::kafka_partitioner();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the Kafka partitioner vectors at {}: {e}",
                path.display()
            )
        });
        let value: serde_json::Value =
            serde_json::from_str(&text).expect("kafka-partitioner.json is valid JSON");
        value
            .as_array()
            .expect("kafka-partitioner.json is an array of vectors")
            .clone()
    }

    #[test]
    fn murmur2_and_key_partition_match_kafka_vectors() {
        let vectors = vectors();
        assert!(!vectors.is_empty(), "no vectors in kafka-partitioner.json");
        let mut checked_partitions = 0;
        let mut tail_lengths = BTreeSet::new();
        for v in &vectors {
            let key_hex = v["key"].as_str().expect("key is a hex string");
            let key = hex::decode(key_hex).expect("key is valid hex");
            tail_lengths.insert(key.len() % 4);
            let expected = v["murmur2"].as_i64().expect("murmur2 is an integer");
            assert_eq!(
                i64::from(murmur2(&key)),
                expected,
                "murmur2 of key {key_hex}"
            );

            let partitions = v["partitions"]
                .as_object()
                .expect("partitions maps count to partition");
            for (count, want) in partitions {
                let count: u32 = count.parse().expect("partition count is an integer");
                let want = want.as_u64().expect("partition is an integer");
                assert_eq!(
                    u64::from(key_partition(&key, nz(count))),
                    want,
                    "key {key_hex} with {count} partitions"
                );
                for partitioner in [Partitioner::RoundRobin, Partitioner::default()] {
                    let mut chooser = PartitionChooser::with_seed(partitioner, 7);
                    assert_eq!(u64::from(chooser.choose(Some(&key), nz(count))), want);
                }
                checked_partitions += 1;
            }
        }
        assert!(checked_partitions > 0);
        // Every tail length exercises a different branch of the fallthrough.
        assert_eq!(
            tail_lengths.len(),
            4,
            "vectors should cover all tail lengths"
        );
    }

    #[test]
    fn empty_key_is_hashed_not_keyless() {
        let n = nz(1000);
        let expected = key_partition(&[], n);
        for seed in 0..20 {
            let mut chooser = PartitionChooser::with_seed(Partitioner::RoundRobin, seed);
            chooser.choose(None, n);
            assert_eq!(chooser.choose(Some(&[]), n), expected);
        }
    }

    #[test]
    fn round_robin_cycles_and_survives_resizing() {
        let mut chooser = PartitionChooser::new(Partitioner::RoundRobin);
        let seen: Vec<u32> = (0..10).map(|_| chooser.choose(None, nz(4))).collect();
        assert_eq!(seen, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
        // Keyed records do not advance the cycle.
        chooser.choose(Some(b"k"), nz(4));
        assert_eq!(chooser.choose(None, nz(4)), 2);
        // Shrinking to fewer partitions than the position stays in range.
        let p = chooser.choose(None, nz(2));
        assert!(p < 2);
        assert_eq!(chooser.choose(None, nz(2)), (p + 1) % 2);
        // Sticky signals are ignored.
        chooser.batch_completed(0);
        chooser.record_appended(0, 1 << 20);
        let seen: Vec<u32> = (0..3).map(|_| chooser.choose(None, nz(1))).collect();
        assert_eq!(seen, [0, 0, 0]);
    }

    #[test]
    fn sticky_stays_until_batch_completes_then_moves_elsewhere() {
        for seed in 0..50 {
            let mut chooser = PartitionChooser::with_seed(Partitioner::default(), seed);
            let n = nz(5);
            let first = chooser.choose(None, n);
            for _ in 0..100 {
                assert_eq!(chooser.choose(None, n), first);
            }
            // Closing some other partition's batch changes nothing.
            chooser.batch_completed((first + 1) % 5);
            assert_eq!(chooser.choose(None, n), first);

            chooser.batch_completed(first);
            let second = chooser.choose(None, n);
            assert_ne!(second, first);
            assert!(second < 5);
            assert_eq!(chooser.choose(None, n), second);
        }
    }

    #[test]
    fn sticky_moves_after_byte_threshold() {
        let mut chooser =
            PartitionChooser::with_seed(Partitioner::UniformSticky { sticky_bytes: 100 }, 1);
        let n = nz(3);
        let first = chooser.choose(None, n);
        chooser.record_appended(first, 60);
        assert_eq!(chooser.choose(None, n), first);
        // Bytes for other partitions do not fill the sticky one.
        chooser.record_appended((first + 1) % 3, 1000);
        assert_eq!(chooser.choose(None, n), first);
        chooser.record_appended(first, 40);
        let second = chooser.choose(None, n);
        assert_ne!(second, first);

        // A zero threshold moves after every record.
        let mut chooser =
            PartitionChooser::with_seed(Partitioner::UniformSticky { sticky_bytes: 0 }, 2);
        let mut previous = chooser.choose(None, n);
        for _ in 0..20 {
            chooser.record_appended(previous, 1);
            let next = chooser.choose(None, n);
            assert_ne!(next, previous);
            previous = next;
        }
    }

    #[test]
    fn sticky_with_one_partition_and_after_shrink() {
        let mut chooser = PartitionChooser::with_seed(Partitioner::default(), 3);
        for _ in 0..10 {
            assert_eq!(chooser.choose(None, nz(1)), 0);
            chooser.batch_completed(0);
        }
        // Move the sticky partition high, then shrink the topic below it.
        let mut p = chooser.choose(None, nz(1000));
        while p < 10 {
            chooser.batch_completed(p);
            p = chooser.choose(None, nz(1000));
        }
        assert!(chooser.choose(None, nz(10)) < 10);
    }

    #[test]
    fn sticky_spreads_uniformly_over_time() {
        let n = 8;
        let mut counts = [0u32; 8];
        let mut chooser = PartitionChooser::with_seed(Partitioner::default(), 42);
        for _ in 0..8000 {
            let p = chooser.choose(None, nz(n));
            counts[p as usize] += 1;
            chooser.batch_completed(p);
        }
        // Expected 1000 each; a generous band still catches a stuck or skewed generator.
        for (partition, &count) in counts.iter().enumerate() {
            assert!(
                (800..1200).contains(&count),
                "partition {partition}: {count}"
            );
        }
    }

    #[test]
    fn seeds_are_reproducible_and_ambient_seeds_differ() {
        let run = |seed| {
            let mut chooser = PartitionChooser::with_seed(Partitioner::default(), seed);
            (0..32)
                .map(|_| {
                    let p = chooser.choose(None, nz(1000));
                    chooser.batch_completed(p);
                    p
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
        assert_ne!(ambient_seed(), ambient_seed());
    }
}
