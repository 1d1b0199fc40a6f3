//! The test suite every [`BytesStore`] implementation must pass, and the
//! window and session layouts on top of it.
//!
//! Each suite takes a function that makes a new, empty store and runs every
//! case on a store of its own:
//!
//! ```
//! use std::sync::Arc;
//! use plexus_runtime::state::{testing, InMemoryStore};
//!
//! testing::run_all_suites(&|| Arc::new(InMemoryStore::new("suite")));
//! ```
//!
//! # Panics
//!
//! The suites are meant for tests: a case that fails panics, after writing
//! the case's name to standard error.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::segments::encode_time;
use super::{
    BytesStore, Direction, Duplicates, Op, PutOutcome, SessionBytesStore, SessionKey, WindowBytesStore, WindowKey,
    WriteBatch,
};
use crate::{Error, Result};

/// Makes a new, empty store for one case.
pub type MakeStore<'a> = &'a dyn Fn() -> Arc<dyn BytesStore>;

type Case = (&'static str, fn(Arc<dyn BytesStore>));

/// Runs every suite of this module.
pub fn run_all_suites(make: MakeStore<'_>) {
    run_bytes_store_suite(make);
    run_window_store_suite(make);
    run_session_store_suite(make);
}

/// Checks the obligations of [`BytesStore`]: point reads and writes, ranges
/// with every kind of bound in both directions, `delete_range`, ordered and
/// atomic batches with their changelog offsets, snapshots, and concurrent
/// readers.
pub fn run_bytes_store_suite(make: MakeStore<'_>) {
    run(
        make,
        &[
            ("get_put_delete", get_put_delete),
            ("empty_key_and_empty_value", empty_key_and_empty_value),
            ("batch_applies_operations_in_order", batch_applies_operations_in_order),
            ("delete_range_is_half_open", delete_range_is_half_open),
            ("range_with_every_bound_in_both_directions", range_with_every_bound_in_both_directions),
            ("range_is_a_snapshot", range_is_a_snapshot),
            ("changelog_offsets_are_written_with_the_batch", changelog_offsets_are_written_with_the_batch),
            ("approximate_num_entries", approximate_num_entries),
            ("flush_keeps_everything", flush_keeps_everything),
            ("concurrent_readers_see_whole_batches", concurrent_readers_see_whole_batches),
        ],
    );
}

/// Checks [`WindowBytesStore`] on the store: fetch by key and time in both
/// directions, keys that share a prefix, overwrites, duplicates (also
/// across a restart of the window store), retention and segment expiry.
pub fn run_window_store_suite(make: MakeStore<'_>) {
    run(
        make,
        &[
            ("window_fetch_by_key_and_time", window_fetch_by_key_and_time),
            ("window_keys_sharing_a_prefix_are_kept_apart", window_keys_sharing_a_prefix_are_kept_apart),
            ("window_put_overwrites_and_none_removes", window_put_overwrites_and_none_removes),
            ("window_duplicates_are_all_kept", window_duplicates_are_all_kept),
            ("window_retention_expires_segments", window_retention_expires_segments),
            ("window_fetch_all_filters_by_time", window_fetch_all_filters_by_time),
        ],
    );
}

/// Checks [`SessionBytesStore`] on the store: `find_sessions` overlap
/// cases, keys that share a prefix, removal, retention and invalid sessions.
pub fn run_session_store_suite(make: MakeStore<'_>) {
    run(
        make,
        &[
            ("session_find_sessions_overlap", session_find_sessions_overlap),
            ("session_keys_sharing_a_prefix_are_kept_apart", session_keys_sharing_a_prefix_are_kept_apart),
            ("session_put_none_removes", session_put_none_removes),
            ("session_retention_expires_segments", session_retention_expires_segments),
            ("session_end_before_start_is_refused", session_end_before_start_is_refused),
        ],
    );
}

fn run(make: MakeStore<'_>, cases: &[Case]) {
    for (name, case) in cases {
        eprintln!("state store suite: {name}");
        case(make());
    }
}

// ---------------------------------------------------------------- helpers

/// The value of a store operation that must succeed.
fn ok<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|error| panic!("store operation failed: {error}"))
}

fn bytes(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn write(store: &dyn BytesStore, build: impl FnOnce(&mut WriteBatch)) {
    let mut batch = WriteBatch::new();
    build(&mut batch);
    ok(store.write(batch));
}

fn put(store: &dyn BytesStore, key: &[u8], value: &[u8]) {
    write(store, |b| b.put(bytes(key), bytes(value)));
}

fn get(store: &dyn BytesStore, key: &[u8]) -> Option<Vec<u8>> {
    ok(store.get(key)).map(|v| v.to_vec())
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn scan(store: &dyn BytesStore, from: Bound<&[u8]>, to: Bound<&[u8]>, direction: Direction) -> Entries {
    ok(store.range(from, to, direction)).map(ok).map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn all(store: &dyn BytesStore) -> Entries {
    scan(store, Bound::Unbounded, Bound::Unbounded, Direction::Forward)
}

fn entries(pairs: &[(&[u8], &[u8])]) -> Entries {
    pairs.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

// ------------------------------------------------------- key-value cases

fn get_put_delete(store: Arc<dyn BytesStore>) {
    let store = &*store;
    assert_eq!(get(store, b"a"), None);
    put(store, b"a", b"1");
    assert_eq!(get(store, b"a").as_deref(), Some(&b"1"[..]));
    put(store, b"a", b"2");
    assert_eq!(get(store, b"a").as_deref(), Some(&b"2"[..]));
    assert_eq!(get(store, b"ab"), None, "a get is exact, not by prefix");
    write(store, |b| b.delete("a"));
    assert_eq!(get(store, b"a"), None);
    write(store, |b| b.delete("never-there"));
    assert_eq!(all(store), Entries::new());
}

fn empty_key_and_empty_value(store: Arc<dyn BytesStore>) {
    let store = &*store;
    put(store, b"", b"empty key");
    put(store, b"k", b"");
    assert_eq!(get(store, b"").as_deref(), Some(&b"empty key"[..]));
    assert_eq!(get(store, b"k").as_deref(), Some(&b""[..]), "an empty value is a value, not an absent key");
    assert_eq!(all(store), entries(&[(b"", b"empty key"), (b"k", b"")]));
}

fn batch_applies_operations_in_order(store: Arc<dyn BytesStore>) {
    let store = &*store;
    put(store, b"b", b"old");
    put(store, b"c1", b"old");
    write(store, |b| {
        b.put("a", "1");
        b.put("a", "2");
        b.delete("b");
        b.put("b", "again");
        b.put("c", "doomed");
        b.delete_range("c", "d");
        b.put("c2", "after the range delete");
        b.delete("x");
        b.put("x", "put after delete");
    });
    assert_eq!(
        all(store),
        entries(&[(b"a", b"2"), (b"b", b"again"), (b"c2", b"after the range delete"), (b"x", b"put after delete")])
    );
    ok(store.write(WriteBatch::new()));
    assert_eq!(all(store).len(), 4, "an empty batch changes nothing");
}

fn delete_range_is_half_open(store: Arc<dyn BytesStore>) {
    let store = &*store;
    for key in [&b"a"[..], b"ab", b"ab\0", b"b", b"ba", b"c", b"\xff"] {
        put(store, key, b"v");
    }
    write(store, |b| b.delete_range("ab", "ba"));
    let keys: Vec<Vec<u8>> = all(store).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"a"[..], b"ba", b"c", b"\xff"]);
    write(store, |b| b.delete_range(Bytes::new(), Bytes::from_static(b"\xff\xff")));
    assert_eq!(all(store), Entries::new());
}

fn range_with_every_bound_in_both_directions(store: Arc<dyn BytesStore>) {
    let store = &*store;
    let keys: [&[u8]; 8] = [b"", b"a", b"a\0", b"ab", b"b", b"b\xff", b"c", b"\xff\xff"];
    let mut model = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let value = [i as u8];
        put(store, key, &value);
        model.insert(key.to_vec(), value.to_vec());
    }
    let probes: [&[u8]; 9] = [b"", b"\0", b"a", b"a\0", b"aa", b"b", b"bz", b"c", b"\xff\xff\xff"];
    let mut bounds = vec![Bound::Unbounded];
    for probe in probes {
        bounds.push(Bound::Included(probe));
        bounds.push(Bound::Excluded(probe));
    }
    for from in &bounds {
        for to in &bounds {
            let expected: Entries = model
                .iter()
                .filter(|(k, _)| RangeBounds::<[u8]>::contains(&(*from, *to), k.as_slice()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let forward = scan(store, *from, *to, Direction::Forward);
            assert_eq!(forward, expected, "range({from:?}, {to:?}) forward");
            let mut reverse = scan(store, *from, *to, Direction::Reverse);
            reverse.reverse();
            assert_eq!(reverse, expected, "range({from:?}, {to:?}) reverse");
        }
    }
}

fn range_is_a_snapshot(store: Arc<dyn BytesStore>) {
    let store = &*store;
    for key in [b"a", b"b", b"c", b"d"] {
        put(store, key, b"before");
    }
    for direction in [Direction::Forward, Direction::Reverse] {
        let mut scan = ok(store.range(Bound::Unbounded, Bound::Unbounded, direction));
        let first = ok(scan.next().expect("the store has entries"));
        write(store, |b| {
            b.put("b", "after");
            b.put("c", "after");
            b.delete("d");
            b.delete("a");
            b.put("bb", "new");
        });
        let mut seen = vec![first];
        seen.extend(scan.map(ok));
        if direction == Direction::Reverse {
            seen.reverse();
        }
        let seen: Entries = seen.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(
            seen,
            entries(&[(b"a", b"before"), (b"b", b"before"), (b"c", b"before"), (b"d", b"before")]),
            "{direction:?}"
        );
        write(store, |b| {
            b.delete("bb");
            for key in ["a", "b", "c", "d"] {
                b.put(key, "before");
            }
        });
    }
}

fn changelog_offsets_are_written_with_the_batch(store: Arc<dyn BytesStore>) {
    let store = &*store;
    assert_eq!(ok(store.changelog_offsets()), BTreeMap::new(), "a new store has no offsets");
    write(store, |b| {
        b.put("k", "v");
        b.set_changelog_offset(0, 10);
    });
    assert_eq!(ok(store.changelog_offsets()), BTreeMap::from([(0, 10)]));
    put(store, b"k2", b"v");
    assert_eq!(ok(store.changelog_offsets()), BTreeMap::from([(0, 10)]), "a batch without offsets keeps them");
    write(store, |b| {
        b.set_changelog_offset(3, 5);
        b.set_changelog_offset(-1, 7);
    });
    assert_eq!(ok(store.changelog_offsets()), BTreeMap::from([(-1, 7), (0, 10), (3, 5)]));
    write(store, |b| {
        b.delete("k");
        b.set_changelog_offset(0, 11);
        b.set_changelog_offset(0, 12);
    });
    assert_eq!(ok(store.changelog_offsets()), BTreeMap::from([(-1, 7), (0, 12), (3, 5)]));
    assert_eq!(get(store, b"k"), None);
    assert_eq!(get(store, b"k2").as_deref(), Some(&b"v"[..]));
}

fn approximate_num_entries(store: Arc<dyn BytesStore>) {
    let store = &*store;
    assert_eq!(ok(store.approximate_num_entries()), 0);
    write(store, |b| {
        for i in 0..100u32 {
            b.put(Bytes::copy_from_slice(&i.to_be_bytes()), "v");
        }
    });
    let estimate = ok(store.approximate_num_entries());
    assert!((50..=200).contains(&estimate), "estimate {estimate} for 100 entries");
}

fn flush_keeps_everything(store: Arc<dyn BytesStore>) {
    let store = &*store;
    write(store, |b| {
        b.put("k", "v");
        b.set_changelog_offset(0, 1);
    });
    ok(store.flush());
    ok(store.flush());
    assert_eq!(get(store, b"k").as_deref(), Some(&b"v"[..]));
    assert_eq!(ok(store.changelog_offsets()), BTreeMap::from([(0, 1)]));
}

/// Each batch sets `x` and `y` to the same value: a reader that saw half a
/// batch would see them differ.
fn concurrent_readers_see_whole_batches(store: Arc<dyn BytesStore>) {
    let store = &*store;
    write(store, |b| {
        b.put("x", "0000");
        b.put("y", "0000");
    });
    let done = AtomicBool::new(false);
    /// Stops the readers however the writer leaves, a panic included.
    struct StopReaders<'a>(&'a AtomicBool);
    impl Drop for StopReaders<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut reads = 0u32;
                    let mut last = Vec::new();
                    while !done.load(Ordering::Acquire) || reads == 0 {
                        let seen = all(store);
                        assert_eq!(seen.len(), 2, "{seen:?}");
                        assert_eq!(seen[0].1, seen[1].1, "x and y differ: a batch was seen in part");
                        assert!(seen[0].1 >= last, "a later read saw an older batch");
                        last = seen[0].1.clone();
                        reads += 1;
                    }
                })
            })
            .collect();
        let stop = StopReaders(&done);
        for i in 1..=300u32 {
            let value = format!("{i:04}");
            write(store, |b| {
                b.put("x", value.clone());
                b.put("y", value);
            });
        }
        drop(stop);
        for reader in readers {
            if let Err(panic) = reader.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    assert_eq!(get(store, b"x").as_deref(), Some(&b"0300"[..]));
}

// ----------------------------------------------------------- window cases

const HOUR: i64 = 3_600_000;

fn window_store(store: Arc<dyn BytesStore>, retention_ms: i64, duplicates: Duplicates) -> WindowBytesStore {
    ok(WindowBytesStore::new(store, retention_ms, duplicates))
}

fn window_put(windows: &WindowBytesStore, key: &[u8], start: i64, value: Option<&[u8]>) -> PutOutcome {
    let mut batch = WriteBatch::new();
    let outcome = ok(windows.put(key, start, value, &mut batch));
    ok(windows.write(batch));
    outcome
}

fn fetch(windows: &WindowBytesStore, key: &[u8], from: i64, to: i64, direction: Direction) -> Vec<(i64, Vec<u8>)> {
    windows.fetch(key, from, to, direction).map(ok).map(|(t, v)| (t, v.to_vec())).collect()
}

fn fetch_all(windows: &WindowBytesStore, from: i64, to: i64, direction: Direction) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
    windows.fetch_all(from, to, direction).map(ok).map(|(k, v)| (k.key.to_vec(), k.window_start, v.to_vec())).collect()
}

fn window_fetch_by_key_and_time(store: Arc<dyn BytesStore>) {
    let windows = window_store(store, HOUR, Duplicates::Overwrite);
    // Across segments (30 min each) and below zero.
    for start in [-60_000, 0, 1_000, 2_000, 1_900_000] {
        let value = format!("v{start}");
        assert_eq!(window_put(&windows, b"k", start, Some(value.as_bytes())), PutOutcome::Written);
    }
    assert_eq!(windows.observed_stream_time(), Some(1_900_000));
    let forward = fetch(&windows, b"k", i64::MIN, i64::MAX, Direction::Forward);
    let starts: Vec<i64> = forward.iter().map(|(t, _)| *t).collect();
    assert_eq!(starts, [-60_000, 0, 1_000, 2_000, 1_900_000]);
    assert_eq!(forward[2].1, b"v1000");
    let middle = fetch(&windows, b"k", 500, 2_000, Direction::Forward);
    assert_eq!(middle, [(1_000, b"v1000".to_vec()), (2_000, b"v2000".to_vec())], "both ends are included");
    let backward = fetch(&windows, b"k", 0, 1_900_000, Direction::Reverse);
    let starts: Vec<i64> = backward.iter().map(|(t, _)| *t).collect();
    assert_eq!(starts, [1_900_000, 2_000, 1_000, 0]);
    assert_eq!(fetch(&windows, b"k", 2_001, 1_899_999, Direction::Forward), []);
    assert_eq!(fetch(&windows, b"k", 2_000, 1_000, Direction::Forward), [], "from after to");
    assert_eq!(fetch(&windows, b"other", i64::MIN, i64::MAX, Direction::Forward), []);
    assert_eq!(ok(windows.fetch_window(b"k", 1_000)).as_deref(), Some(&b"v1000"[..]));
    assert_eq!(ok(windows.fetch_window(b"k", 1_001)), None);
}

fn window_keys_sharing_a_prefix_are_kept_apart(store: Arc<dyn BytesStore>) {
    let windows = window_store(store, HOUR, Duplicates::Overwrite);
    // A key whose tail looks like a window start of "a": its entries fall
    // inside the byte range of a scan for "a".
    let mut collider = b"a".to_vec();
    collider.extend_from_slice(&encode_time(1_000));
    let keys: [&[u8]; 4] = [b"a", b"ab", &collider, b""];
    for key in keys {
        for start in [0, 1_000, 2_000] {
            let _ = window_put(&windows, key, start, Some(key));
        }
    }
    for key in keys {
        let found = fetch(&windows, key, 0, 2_000, Direction::Forward);
        assert_eq!(found, [(0, key.to_vec()), (1_000, key.to_vec()), (2_000, key.to_vec())], "key {key:?}");
        let found = fetch(&windows, key, 0, 2_000, Direction::Reverse);
        assert_eq!(found.len(), 3, "key {key:?} backward");
        assert!(found.iter().all(|(_, v)| v == key), "key {key:?} backward");
    }
    assert_eq!(fetch_all(&windows, 0, 2_000, Direction::Forward).len(), 12);
}

fn window_put_overwrites_and_none_removes(store: Arc<dyn BytesStore>) {
    let windows = window_store(store, HOUR, Duplicates::Overwrite);
    let _ = window_put(&windows, b"k", 10, Some(b"1"));
    let _ = window_put(&windows, b"k", 10, Some(b"2"));
    assert_eq!(fetch(&windows, b"k", 0, 100, Direction::Forward), [(10, b"2".to_vec())]);
    assert_eq!(window_put(&windows, b"k", 10, None), PutOutcome::Written);
    assert_eq!(fetch(&windows, b"k", 0, 100, Direction::Forward), []);
}

fn window_duplicates_are_all_kept(store: Arc<dyn BytesStore>) {
    let windows = window_store(Arc::clone(&store), HOUR, Duplicates::Retain);
    let mut batch = WriteBatch::new();
    for value in [b"1", b"2"] {
        assert_eq!(ok(windows.put(b"k", 10, Some(value), &mut batch)), PutOutcome::Written);
    }
    ok(windows.write(batch));
    let _ = window_put(&windows, b"k", 10, Some(b"3"));
    let _ = window_put(&windows, b"k", 20, Some(b"other window"));
    let _ = window_put(&windows, b"k2", 10, Some(b"other key"));
    assert_eq!(window_put(&windows, b"k", 10, None), PutOutcome::Written, "a delete of a duplicate does nothing");
    let values = |windows: &WindowBytesStore| -> Vec<Vec<u8>> {
        fetch(windows, b"k", 10, 10, Direction::Forward).into_iter().map(|(_, v)| v).collect()
    };
    assert_eq!(values(&windows), [b"1", b"2", b"3"]);

    // A restart: a new window store on the same store must not reuse a
    // sequence number that is stored.
    drop(windows);
    let windows = window_store(store, HOUR, Duplicates::Retain);
    let _ = window_put(&windows, b"k", 10, Some(b"4"));
    assert_eq!(values(&windows), [b"1", b"2", b"3", b"4"]);
    let backward: Vec<Vec<u8>> =
        fetch(&windows, b"k", 10, 10, Direction::Reverse).into_iter().map(|(_, v)| v).collect();
    assert_eq!(backward, [b"4", b"3", b"2", b"1"]);
    let seqs: Vec<u32> = windows.fetch_all(10, 10, Direction::Forward).map(ok).map(|(k, _)| k.seq).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "sequence numbers are distinct within a key: {seqs:?}");
}

fn window_retention_expires_segments(store: Arc<dyn BytesStore>) {
    let windows = window_store(Arc::clone(&store), 120_000, Duplicates::Overwrite);
    assert_eq!(windows.segment_interval_ms(), 60_000);
    let _ = window_put(&windows, b"k", 0, Some(b"segment 0"));
    let _ = window_put(&windows, b"k", 70_000, Some(b"segment 1"));
    let segment_0 = |store: &dyn BytesStore| {
        let (lower, upper) = (encode_time(0), encode_time(1));
        scan(store, Bound::Included(&lower[..]), Bound::Excluded(&upper[..]), Direction::Forward).len()
    };
    assert_eq!(segment_0(&*store), 1);

    // 200 000 − 120 000 + 1 = 80 001 is the first live start: segment 0
    // (0..60 000) expires, in the same batch as the put.
    let mut batch = WriteBatch::new();
    assert_eq!(ok(windows.put(b"k", 200_000, Some(b"segment 3"), &mut batch)), PutOutcome::Written);
    assert!(matches!(batch.ops(), [Op::DeleteRange { .. }, Op::Put { .. }]), "{batch:?}");
    ok(windows.write(batch));
    assert_eq!(segment_0(&*store), 0, "the expired segment is deleted");
    assert_eq!(
        fetch(&windows, b"k", i64::MIN, i64::MAX, Direction::Forward),
        [(200_000, b"segment 3".to_vec())],
        "70 000 is in a live segment but older than the retention: not returned"
    );

    let mut batch = WriteBatch::new();
    assert_eq!(ok(windows.put(b"k", 80_000, Some(b"late"), &mut batch)), PutOutcome::Expired);
    assert!(batch.is_empty(), "an expired put adds nothing: {batch:?}");
    assert_eq!(window_put(&windows, b"k", 80_001, Some(b"just in time")), PutOutcome::Written);
    assert_eq!(
        fetch_all(&windows, i64::MIN, i64::MAX, Direction::Forward),
        [(b"k".to_vec(), 80_001, b"just in time".to_vec()), (b"k".to_vec(), 200_000, b"segment 3".to_vec())]
    );
}

fn window_fetch_all_filters_by_time(store: Arc<dyn BytesStore>) {
    let windows = window_store(store, HOUR, Duplicates::Overwrite);
    for (key, start) in [(&b"b"[..], 0), (b"a", 0), (b"a", 5_000), (b"b", 1_900_000), (b"a", 1_900_000)] {
        let _ = window_put(&windows, key, start, Some(b"v"));
    }
    let found: Vec<(Vec<u8>, i64)> =
        fetch_all(&windows, 0, 1_900_000, Direction::Forward).into_iter().map(|(k, t, _)| (k, t)).collect();
    let expected: [(&[u8], i64); 5] = [(b"a", 0), (b"a", 5_000), (b"b", 0), (b"a", 1_900_000), (b"b", 1_900_000)];
    let expected: Vec<(Vec<u8>, i64)> = expected.iter().map(|(k, t)| (k.to_vec(), *t)).collect();
    assert_eq!(found, expected, "by segment, then key, then start");
    let found: Vec<i64> =
        fetch_all(&windows, 1, 1_899_999, Direction::Forward).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(found, [5_000]);
    let mut backward: Vec<(Vec<u8>, i64)> =
        windows.all(Direction::Reverse).map(ok).map(|(k, _)| (k.key.to_vec(), k.window_start)).collect();
    backward.reverse();
    assert_eq!(backward, expected);
    let window = windows.all(Direction::Forward).map(ok).next().map(|(k, _)| k);
    assert_eq!(window, Some(WindowKey { key: bytes(b"a"), window_start: 0, seq: 0 }));
}

// ---------------------------------------------------------- session cases

fn session_store(store: Arc<dyn BytesStore>, retention_ms: i64) -> SessionBytesStore {
    ok(SessionBytesStore::new(store, retention_ms))
}

fn session_put(sessions: &SessionBytesStore, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> PutOutcome {
    let mut batch = WriteBatch::new();
    let outcome = ok(sessions.put(key, start, end, value, &mut batch));
    ok(sessions.write(batch));
    outcome
}

fn find(sessions: &SessionBytesStore, key: &[u8], earliest_end: i64, latest_start: i64) -> Vec<(i64, i64)> {
    let forward: Vec<(i64, i64)> = sessions
        .find_sessions(key, earliest_end, latest_start, Direction::Forward)
        .map(ok)
        .map(|(s, _)| (s.start, s.end))
        .collect();
    let mut backward: Vec<(i64, i64)> = sessions
        .find_sessions(key, earliest_end, latest_start, Direction::Reverse)
        .map(ok)
        .map(|(s, _)| (s.start, s.end))
        .collect();
    backward.reverse();
    assert_eq!(forward, backward, "find_sessions({key:?}, {earliest_end}, {latest_start}) backward");
    forward
}

fn session_find_sessions_overlap(store: Arc<dyn BytesStore>) {
    let sessions = session_store(store, HOUR);
    for (start, end) in [(0, 10), (20, 30), (40, 50), (45, 50), (100, 1_900_000)] {
        let _ = session_put(&sessions, b"k", start, end, Some(format!("{start}-{end}").as_bytes()));
    }
    let _ = session_put(&sessions, b"other", 15, 25, Some(b"x"));
    assert_eq!(find(&sessions, b"k", 10, 20), [(0, 10), (20, 30)], "touching at both ends counts");
    assert_eq!(find(&sessions, b"k", 11, 19), [], "a gap between sessions");
    assert_eq!(find(&sessions, b"k", 5, 5), [(0, 10)], "a point inside a session");
    assert_eq!(find(&sessions, b"k", 25, 44), [(20, 30), (40, 50)]);
    assert_eq!(find(&sessions, b"k", 50, 50), [(40, 50), (45, 50)], "same end, by start");
    assert_eq!(find(&sessions, b"k", 60, 99), []);
    assert_eq!(find(&sessions, b"k", 200, 200), [(100, 1_900_000)], "a session spanning segments");
    assert_eq!(find(&sessions, b"k", i64::MIN, i64::MAX).len(), 5);
    assert_eq!(find(&sessions, b"other", i64::MIN, i64::MAX), [(15, 25)]);
    let fetched: Vec<Bytes> = sessions.fetch(b"k", Direction::Forward).map(ok).map(|(_, v)| v).collect();
    assert_eq!(fetched, ["0-10", "20-30", "40-50", "45-50", "100-1900000"]);
    assert_eq!(ok(sessions.fetch_session(b"k", 20, 30)).as_deref(), Some(&b"20-30"[..]));
    assert_eq!(ok(sessions.fetch_session(b"k", 20, 31)), None);
}

fn session_keys_sharing_a_prefix_are_kept_apart(store: Arc<dyn BytesStore>) {
    let sessions = session_store(store, HOUR);
    let mut collider = b"a".to_vec();
    collider.extend_from_slice(&encode_time(10));
    let keys: [&[u8]; 4] = [b"a", b"ab", &collider, b""];
    for key in keys {
        let _ = session_put(&sessions, key, 0, 10, Some(key));
        let _ = session_put(&sessions, key, 5, 20, Some(key));
    }
    for key in keys {
        let found: Vec<(SessionKey, Bytes)> = sessions.fetch(key, Direction::Forward).map(ok).collect();
        assert_eq!(found.len(), 2, "key {key:?}: {found:?}");
        assert!(found.iter().all(|(s, v)| s.key == key && v == key), "key {key:?}: {found:?}");
    }
    let all: Vec<SessionKey> = sessions.fetch_all(Direction::Forward).map(ok).map(|(s, _)| s).collect();
    assert_eq!(all.len(), 8);
}

fn session_put_none_removes(store: Arc<dyn BytesStore>) {
    let sessions = session_store(store, HOUR);
    let _ = session_put(&sessions, b"k", 0, 10, Some(b"v"));
    let _ = session_put(&sessions, b"k", 0, 10, Some(b"w"));
    let _ = session_put(&sessions, b"k", 0, 20, Some(b"merged"));
    assert_eq!(session_put(&sessions, b"k", 0, 10, None), PutOutcome::Written);
    let found: Vec<(SessionKey, Bytes)> = sessions.fetch(b"k", Direction::Forward).map(ok).collect();
    assert_eq!(found, [(SessionKey { key: bytes(b"k"), start: 0, end: 20 }, bytes(b"merged"))]);
}

fn session_retention_expires_segments(store: Arc<dyn BytesStore>) {
    let sessions = session_store(Arc::clone(&store), 120_000);
    let _ = session_put(&sessions, b"k", 0, 10_000, Some(b"old"));
    let _ = session_put(&sessions, b"k", 50_000, 70_000, Some(b"ends in segment 1"));
    assert_eq!(all(&*store).len(), 2);
    let _ = session_put(&sessions, b"k", 150_000, 200_000, Some(b"new"));
    assert_eq!(all(&*store).len(), 2, "segment 0 was deleted");
    assert_eq!(find(&sessions, b"k", i64::MIN, i64::MAX), [(150_000, 200_000)]);
    assert_eq!(session_put(&sessions, b"k", 0, 80_000, Some(b"late")), PutOutcome::Expired);
    assert_eq!(session_put(&sessions, b"k", 0, 80_001, Some(b"in time")), PutOutcome::Written);
    assert_eq!(ok(sessions.fetch_session(b"k", 50_000, 70_000)), None, "expired");
    let all: Vec<(i64, i64)> = sessions.fetch_all(Direction::Forward).map(ok).map(|(s, _)| (s.start, s.end)).collect();
    assert_eq!(all, [(0, 80_001), (150_000, 200_000)]);
}

fn session_end_before_start_is_refused(store: Arc<dyn BytesStore>) {
    let sessions = session_store(store, HOUR);
    let mut batch = WriteBatch::new();
    let result = sessions.put(b"k", 10, 9, Some(b"v"), &mut batch);
    assert!(matches!(result, Err(Error::InvalidSession { start: 10, end: 9, .. })), "{result:?}");
    assert!(batch.is_empty());
    assert_eq!(session_put(&sessions, b"k", 10, 10, Some(b"one record")), PutOutcome::Written);
}
