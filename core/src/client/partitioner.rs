//! The producer's default partitioner, bit-for-bit compatible with Apache Kafka's.
//!
//! A record with a key goes to `to_positive(murmur2(key)) % num_partitions`, as in Kafka's
//! `BuiltInPartitioner.partitionForKey` (and the older `DefaultPartitioner`), with
//! [`murmur2`] being Kafka's `org.apache.kafka.common.utils.Utils.murmur2` and
//! [`to_positive`] its `Utils.toPositive`. Matching Kafka exactly matters: a record keyed by a
//! Java (or librdkafka `murmur2`) producer and one keyed by Plexus land on the same partition,
//! so per-key ordering holds across clients.
//!
//! A record without a key is placed by [`StickyPartitioner`], a simple form of Kafka's sticky
//! partitioning (KIP-480, `StickyPartitionCache`): it keeps sending to one partition of a
//! topic until the producer reports that the batch for it was completed, then moves to
//! another partition. This fills fewer, larger batches than round-robin per record. (Kafka 3.3's
//! `BuiltInPartitioner`, KIP-794, refines this: it switches after a batch's worth of bytes and
//! favours partitions on less loaded brokers; this keeps KIP-480's simpler rule.)

use std::collections::HashMap;

/// Kafka's 32-bit murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
///
/// This is MurmurHash2 with seed `0x9747b28c`, read little-endian four bytes at a time, with
/// Java's wrapping `int` arithmetic and unsigned (`>>>`) shifts, and returns the same `int` as
/// the Java method for every input.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    // 'm' and 'r' are MurmurHash2's mixing constants.
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java uses `data.length` (an `int`); arrays there never exceed `i32::MAX` bytes, and for
    // longer slices the truncating cast keeps the low 32 bits, as Java's `int` would.
    let length = data.len() as u32;
    let mut h = SEED ^ length;

    let (words, tail) = data.as_chunks::<4>();
    for word in words {
        // Java adds the four masked bytes; they do not overlap, so that is a little-endian read.
        let mut k = u32::from_le_bytes(*word);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The last few bytes. Java's `switch (length % 4)` falls through: case 3 also runs the
    // code of cases 2 and 1, and case 2 that of case 1.
    if let Some(&b) = tail.get(2) {
        h ^= u32::from(b) << 16;
    }
    if let Some(&b) = tail.get(1) {
        h ^= u32::from(b) << 8;
    }
    if let Some(&b) = tail.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;

    // Reinterpret the bits as Java's signed `int`.
    h.cast_signed()
}

/// Kafka's `Utils.toPositive`: clears the sign bit (`n & 0x7fffffff`).
///
/// This is not the absolute value: `to_positive(-1)` is `i32::MAX`. Kafka relies on this exact
/// mapping, so it must not change.
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition of a record with this (serialized) key, as Kafka's
/// `BuiltInPartitioner.partitionForKey`: `to_positive(murmur2(key)) % num_partitions`.
///
/// # Panics
///
/// If `num_partitions` is not positive (a topic always has at least one partition).
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    assert!(num_partitions > 0, "a topic has at least one partition, got {num_partitions}");
    to_positive(murmur2(key)) % num_partitions
}

/// Chooses partitions for records without a key, sticking to one partition per topic until a
/// batch for it is completed (Kafka's KIP-480 sticky partitioning, after `StickyPartitionCache`).
///
/// [`partition`](Self::partition) returns the topic's current sticky partition, choosing one at
/// random the first time. When the producer completes a batch it calls
/// [`on_new_batch`](Self::on_new_batch) with the batch's partition; if that is still the sticky
/// partition, a new one is chosen at random among the *other* partitions (when there are
/// several), so that the next batch fills elsewhere. Over time the records spread over all the
/// topic's partitions.
///
/// Choices are random but deterministic for a given seed.
#[derive(Debug, Clone)]
pub struct StickyPartitioner {
    rng: XorShift64,
    sticky: HashMap<String, i32>,
}

impl StickyPartitioner {
    /// A sticky partitioner whose random choices are determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: XorShift64::new(seed), sticky: HashMap::new() }
    }

    /// The partition for the next record without a key in `topic`, which has `num_partitions`
    /// partitions: the current sticky partition, or a new random one if there is none yet (or
    /// if it is out of range for `num_partitions`).
    ///
    /// # Panics
    ///
    /// If `num_partitions` is not positive.
    pub fn partition(&mut self, topic: &str, num_partitions: i32) -> i32 {
        assert!(num_partitions > 0, "a topic has at least one partition, got {num_partitions}");
        match self.sticky.get(topic) {
            Some(&current) if current < num_partitions => current,
            _ => self.choose(topic, num_partitions, None),
        }
    }

    /// Tells the partitioner that a batch for partition `prev` of `topic` was completed.
    ///
    /// If `prev` is the topic's sticky partition (or the topic has none yet), the partitioner
    /// switches to another partition, chosen at random among those other than `prev` when the
    /// topic has more than one. As in Kafka, a call for a partition that is no longer the sticky
    /// one changes nothing: another batch already caused the switch.
    ///
    /// # Panics
    ///
    /// If `num_partitions` is not positive.
    pub fn on_new_batch(&mut self, topic: &str, num_partitions: i32, prev: i32) {
        assert!(num_partitions > 0, "a topic has at least one partition, got {num_partitions}");
        match self.sticky.get(topic) {
            Some(&current) if current != prev && current < num_partitions => {}
            _ => {
                self.choose(topic, num_partitions, Some(prev));
            }
        }
    }

    /// Picks and records a new sticky partition for `topic`, different from `avoid` when there
    /// is another partition to pick. `num_partitions` is positive (checked by the callers).
    fn choose(&mut self, topic: &str, num_partitions: i32, avoid: Option<i32>) -> i32 {
        let chosen = match avoid {
            Some(old) if (0..num_partitions).contains(&old) && num_partitions > 1 => {
                // Uniform among the `num_partitions - 1` others: draw an index among them and
                // skip over `old`.
                let pick = self.rng.below(num_partitions - 1);
                if pick >= old { pick + 1 } else { pick }
            }
            _ => self.rng.below(num_partitions),
        };
        self.sticky.insert(topic.to_owned(), chosen);
        chosen
    }
}

/// A tiny xorshift64* generator.
///
/// The library uses only std, which has no seedable random generator; this one is a few lines,
/// deterministic for a seed (which makes tests reproducible), and its quality is ample for
/// spreading batches over partitions. It is not meant to be unpredictable.
#[derive(Debug, Clone)]
struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // Scramble the seed with a SplitMix64 step so that nearby seeds give unrelated
        // sequences; xorshift needs a non-zero state, so map 0 to a fixed odd constant.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Self { state: if z == 0 { 0x2545_f491_4f6c_dd1d } else { z } }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound`; `bound` must be positive.
    fn below(&mut self, bound: i32) -> i32 {
        let bound = u64::from(bound.unsigned_abs());
        // Multiply-shift maps the 64 random bits onto `0..bound` (Lemire's method, without the
        // rejection step: the bias is below 2^-32 for any `i32` bound).
        let scaled = (u128::from(self.next_u64()) * u128::from(bound)) >> 64;
        // `scaled < bound <= i32::MAX`, so the conversion cannot fail.
        i32::try_from(scaled).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Vectors from Apache Kafka's `UtilsTest.testMurmur2`
    /// (`clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java`).
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            // Kafka writes this one as `new byte[] {'a', 'b', 'c'}`.
            (b"abc", 479_470_107),
        ];
        for &(input, expected) in cases {
            assert_eq!(murmur2(input), expected, "murmur2({:?})", String::from_utf8_lossy(input));
        }
    }

    /// Vectors from librdkafka's `unittest_murmur2` (`src/rdmurmur2.c`), whose expected values
    /// are the Java client's `Utils.murmur2` results as 32-bit patterns. The suffixes of "1234"
    /// and of the long string cover every tail length (0 to 3 bytes).
    #[test]
    fn murmur2_matches_librdkafka_unittest() {
        let short: &[u8] = b"1234";
        let long: &[u8] = b"PreAmbleWillBeRemoved,ThePrePartThatIs";
        let cases: &[(&[u8], u32)] = &[
            (b"kafka", 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (short, 0x9fc9_7b14),
            (&short[1..], 0xe7c0_09ca),
            (&short[2..], 0x8739_30da),
            (&short[3..], 0x5a4b_5ca1),
            (long, 0x7842_4f1c),
            (&long[1..], 0x4a62_b377),
            (&long[2..], 0xe0e4_e09e),
            (&long[3..], 0x62b8_b43f),
            (b"", 0x106e_08d9),
        ];
        for &(input, expected) in cases {
            assert_eq!(murmur2(input), expected.cast_signed(), "murmur2({:?})", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(0), 0);
        assert_eq!(to_positive(42), 42);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-973_932_308), -973_932_308 & 0x7fff_ffff);
    }

    /// Expected partitions from librdkafka's `tests/0048-partitioner.c`
    /// (`do_test_partitioners`, partitioner "murmur2"): the constants there are
    /// `toPositive(Utils.murmur2(key))` printed by its Java helper `tests/java/Murmur2Cli.java`,
    /// and the test checks `constant % partition_cnt` for 17 partitions (7 in quick mode).
    #[test]
    fn partition_for_key_matches_librdkafka_partitioner_test() {
        let cases: &[(&[u8], i32)] = &[
            (b"", 0x106e_08d9),
            (&b"123456"[1..], 0x058d_780f),
            (b"this is another string with more length to it perhaps", 0x4f77_03da),
            (b"hejsan", 0x5ec1_9395),
        ];
        for &(key, positive_hash) in cases {
            assert_eq!(to_positive(murmur2(key)), positive_hash);
            for partitions in [17, 7, 1] {
                assert_eq!(partition_for_key(key, partitions), positive_hash % partitions);
            }
        }
        // Spelled out for 17 partitions, the librdkafka test's topic.
        assert_eq!(partition_for_key(b"", 17), 0x106e_08d9 % 17);
        assert_eq!(partition_for_key(b"hejsan", 17), 0x5ec1_9395 % 17);
    }

    #[test]
    fn partition_for_key_uses_to_positive_not_abs() {
        // murmur2("21") is negative; Kafka masks the sign bit rather than negating.
        let hash = murmur2(b"21");
        assert!(hash < 0);
        assert_eq!(partition_for_key(b"21", 10), (hash & 0x7fff_ffff) % 10);
    }

    #[test]
    #[should_panic(expected = "at least one partition")]
    fn partition_for_key_rejects_zero_partitions() {
        let _ = partition_for_key(b"k", 0);
    }

    #[test]
    fn sticky_partitioner_sticks_until_a_batch_completes() {
        let mut p = StickyPartitioner::new(7);
        let first = p.partition("t", 8);
        assert!((0..8).contains(&first));
        for _ in 0..100 {
            assert_eq!(p.partition("t", 8), first);
        }
        // A completed batch on another partition does not move it.
        p.on_new_batch("t", 8, (first + 1) % 8);
        assert_eq!(p.partition("t", 8), first);
    }

    #[test]
    fn sticky_partitioner_moves_to_another_partition_after_a_batch() {
        let mut p = StickyPartitioner::new(11);
        let mut current = p.partition("t", 4);
        for _ in 0..200 {
            p.on_new_batch("t", 4, current);
            let next = p.partition("t", 4);
            assert_ne!(next, current, "must leave the partition whose batch completed");
            assert!((0..4).contains(&next));
            current = next;
        }
    }

    #[test]
    fn sticky_partitioner_spreads_over_all_partitions() {
        let mut p = StickyPartitioner::new(3);
        let mut seen = BTreeSet::new();
        let mut counts = [0_u32; 10];
        for _ in 0..2_000 {
            let part = p.partition("t", 10);
            seen.insert(part);
            counts[usize::try_from(part).unwrap_or(0)] += 1;
            p.on_new_batch("t", 10, part);
        }
        assert_eq!(seen.len(), 10, "visited {seen:?}");
        // Roughly uniform: each partition gets about 200 batches.
        assert!(counts.iter().all(|&c| (100..300).contains(&c)), "{counts:?}");
    }

    #[test]
    fn sticky_partitioner_single_partition_and_per_topic_state() {
        let mut p = StickyPartitioner::new(5);
        assert_eq!(p.partition("one", 1), 0);
        p.on_new_batch("one", 1, 0);
        assert_eq!(p.partition("one", 1), 0);

        let a = p.partition("a", 16);
        let b = p.partition("b", 16);
        p.on_new_batch("b", 16, b);
        assert_eq!(p.partition("a", 16), a, "topic a is unaffected by b's batch");
    }

    #[test]
    fn sticky_partitioner_rechooses_when_partition_count_shrinks() {
        let mut p = StickyPartitioner::new(1);
        // Move on until the sticky partition is 2 or more, then ask with only 2 partitions.
        let mut part = p.partition("t", 100);
        while part < 2 {
            p.on_new_batch("t", 100, part);
            part = p.partition("t", 100);
        }
        assert!((0..2).contains(&p.partition("t", 2)));
    }

    #[test]
    fn sticky_partitioner_is_deterministic_for_a_seed() {
        let run = |seed| {
            let mut p = StickyPartitioner::new(seed);
            (0..50)
                .map(|_| {
                    let part = p.partition("t", 12);
                    p.on_new_batch("t", 12, part);
                    part
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
