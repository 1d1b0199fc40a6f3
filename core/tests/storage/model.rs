//! Model-based property test of one partition's log on [`MemStorage`].
//!
//! Random sequences of [`Op`]s run against a [`PartitionLog`]; after each,
//! the whole log, up to its end, is read back and compared with a [`Model`]
//! of what may be in it. The storage's crash seed is part of the generated
//! input, so every case is reproducible and shrinks.
//!
//! # The model
//!
//! Every record appended and not yet seen gone, by offset (key, unique value
//! `v<n>` or a tombstone, timestamp); the log end; `durable`, the end of what
//! a flush acknowledged; `checkpoint`, the recovery point the test last wrote
//! as the checkpoint file would (it may lag, never lead, what was flushed);
//! where batches start and end. A record may be missing only if removable:
//! below the log start after retention, or, at a compaction, superseded by a
//! newer acknowledged record of its key or a tombstone older than
//! `delete.retention.ms`. A record seen gone is forgotten and must not return.
//!
//! # Checked after every operation
//!
//! Each record read is the model's at its offset (key, value, timestamp);
//! offsets strictly increase; every record not removable is read. `log start
//! <= high watermark <= log end`; the high watermark and recovery point equal
//! `durable`; nothing is visible past the high watermark; the log start never
//! moves back, and retention moves it to a batch boundary at most the high
//! watermark. A compaction's `records_removed` counts the records that went.
//!
//! # Fault rules after a crash
//!
//! A crash drops unsynced bytes (maybe tearing the kept tail) and directory
//! changes, and may flip a bit in the synced part of a `.log` file; the log
//! is reopened from the checkpoint.
//!
//! - No flip: no corruption; the log ends at a batch boundary between
//!   `durable` and the model's end, so only unacknowledged batches are lost,
//!   as a suffix. The model forgets it (offsets are reused); the survivors,
//!   which recovery syncs, are durable.
//! - A flip recovery reports ([`PartitionLog::corruption`]): everything below
//!   it is served right; reads there and appends fail; the case ends.
//! - A flip it does not report: only data at or past the checkpoint may be
//!   lost (a flip in the unchecked tail is a torn write, as in Kafka) and
//!   what is read must be right. In a segment below the recovery point (not
//!   scanned on open) a read reaching the flipped batch must fail, on its CRC
//!   or on a header that does not fit its neighbours; what was read before
//!   is right, and the case ends. A flipped leader epoch (outside the CRC,
//!   unchecked) changes nothing. Otherwise the case goes on.
//! - One flip goes unseen, a limitation of Kafka's format (see the module
//!   docs of `partition_log`): a flip in a base offset (outside the CRC)
//!   that leaves the batch's offsets between its neighbours' (the previous
//!   batch's last offset, or the segment's base; the next batch's base, or
//!   the next segment's), in a segment other than the last (whose offsets
//!   recovery requires contiguous). Only a gap that compaction left makes
//!   room for it. The model moves the batch's records to the new offsets,
//!   where the log must serve them, and the case goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use plexus_core::TopicConfig;
use plexus_core::record::{ProducerStamp, Record, decode_records, encode_batch};
use plexus_core::storage::cleaner::clean_partition;
use plexus_core::storage::memory::{BitFlip, CrashFaults};
use plexus_core::storage::{MemStorage, OpenOptions, PartitionLog, Storage};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const DIR: &str = "/data/t-0";
/// Clock advance per append, in ms.
const TICK: i64 = 10;
const DELETE_RETENTION_MS: i64 = 100;

type TestResult<T> = Result<T, TestCaseError>;
/// Where a read failed, and why.
type ReadError = (i64, String);

/// One step of a case: `Append` one batch, a record per key id (bit `i` of
/// `tombstones` makes record `i` a tombstone; compacted topics only);
/// `Flush`, with `checkpoint` also recording the recovery point; `Roll`;
/// advance the clock and apply `Retention` (delete policy) or `Compact`;
/// `Crash` and reopen from the checkpoint; close and `CleanRestart`.
#[derive(Debug, Clone)]
enum Op {
    Append { keys: Vec<u8>, tombstones: u8 },
    Flush { checkpoint: bool },
    Roll,
    Retention { advance: i64 },
    Compact { advance: i64 },
    Crash { torn_garbage: bool, flip: bool },
    CleanRestart,
}

fn op(compact: bool) -> impl Strategy<Value = Op> {
    let tombstones = if compact { prop_oneof![3 => Just(0u8), 1 => any::<u8>()].boxed() } else { Just(0u8).boxed() };
    let append = (prop::collection::vec(0u8..8, 1..=5), tombstones)
        .prop_map(|(keys, tombstones)| Op::Append { keys, tombstones });
    let maintain =
        (0i64..300).prop_map(move |advance| if compact { Op::Compact { advance } } else { Op::Retention { advance } });
    let crash =
        (any::<bool>(), prop::bool::weighted(0.3)).prop_map(|(torn_garbage, flip)| Op::Crash { torn_garbage, flip });
    prop_oneof![
        8 => append,
        3 => any::<bool>().prop_map(|checkpoint| Op::Flush { checkpoint }),
        1 => Just(Op::Roll),
        2 => maintain,
        2 => crash,
        1 => Just(Op::CleanRestart),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    key: String,
    value: Option<String>,
    ts: i64,
    /// Compaction may have removed it.
    removable: bool,
}

#[derive(Debug, Default)]
struct Model {
    /// The records that may be in the log, by offset.
    recs: BTreeMap<i64, Rec>,
    /// Where a batch may start or end: where the log may end after a crash
    /// and retention may move its start.
    boundaries: BTreeSet<i64>,
    end: i64,
    /// Everything below is acknowledged: fsynced.
    durable: i64,
    /// The recovery point last checkpointed.
    checkpoint: i64,
    /// The log start last seen.
    log_start: i64,
}

impl Model {
    fn is_boundary(&self, offset: i64) -> bool {
        offset == self.end || self.boundaries.contains(&offset)
    }

    /// Forgets everything from `to` on (a lost suffix); the rest is durable.
    fn truncate(&mut self, to: i64) {
        self.recs.split_off(&to);
        self.boundaries.split_off(&to);
        (self.end, self.durable, self.checkpoint) = (to, to, self.checkpoint.min(to));
    }

    /// Moves the records of a batch whose base offset a flip changed.
    fn shift(&mut self, shift: Shift) {
        let moved: Vec<_> = self.recs.range(shift.from.0..=shift.from.1).map(|(o, _)| *o).collect();
        let by = shift.to - shift.from.0;
        let recs: Vec<_> = moved.iter().filter_map(|o| self.recs.remove(o).map(|r| (o + by, r))).collect();
        self.recs.extend(recs);
        self.boundaries.extend([shift.to, shift.from.1 + by + 1]);
    }

    /// Marks what a compaction at `now` may remove: acknowledged records
    /// superseded by a newer acknowledged one, and expired tombstones.
    fn mark_compactable(&mut self, now: i64) {
        let mut newer = BTreeSet::new();
        for (offset, rec) in self.recs.range_mut(..self.durable).rev() {
            // The cleaner rewrites batches: one may now start or end here.
            self.boundaries.extend([*offset, offset + 1]);
            let superseded = !newer.insert(rec.key.clone());
            rec.removable |= superseded || (rec.value.is_none() && rec.ts < now - DELETE_RETENTION_MS);
        }
    }
}

fn text(b: Option<Bytes>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads every record from the log start up to `limit` (past the high
/// watermark too) until a read returns nothing; also returns the offset and
/// message of the error that stopped it, if one did.
fn read_upto(log: &PartitionLog, limit: i64) -> (Vec<(i64, Rec)>, Option<ReadError>) {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < limit {
        let result = match log.plan_read_upto(offset, limit).and_then(|plan| plan.read(1 << 16)) {
            Ok(result) if result.bytes.is_empty() || result.next_offset <= offset => break,
            Ok(result) => result,
            Err(e) => return (out, Some((offset, e.to_string()))),
        };
        match decode_records("t", 0, result.bytes, offset) {
            Ok(records) => out.extend(records.into_iter().map(|r| {
                let key = text(r.key).unwrap_or_default();
                (r.offset, Rec { key, value: text(r.value), ts: r.timestamp, removable: false })
            })),
            Err(e) => return (out, Some((offset, e))),
        }
        offset = result.next_offset;
    }
    (out, None)
}

/// Checks that what was read is the model's at those offsets, in strictly
/// increasing order from `start`, and that every record of the model below
/// `upto` that was not read is removable. Returns the offsets read.
fn compare(model: &Model, got: &[(i64, Rec)], start: i64, upto: i64, when: &str) -> TestResult<BTreeSet<i64>> {
    let mut read = BTreeSet::new();
    for (offset, g) in got {
        let last = read.last().copied();
        prop_assert!(last.is_none_or(|p| *offset > p), "{when}: offset {offset} read after offset {last:?}");
        prop_assert!(start <= *offset && *offset < model.end, "{when}: offset {offset} read, outside the log");
        let want = model.recs.get(offset);
        let same = want.is_some_and(|w| (&w.key, &w.value, w.ts) == (&g.key, &g.value, g.ts));
        prop_assert!(
            same,
            "{when}: offset {offset} read as {}={:?} at {}, the model has {want:?}",
            g.key,
            g.value,
            g.ts
        );
        read.insert(*offset);
    }
    if let Some((offset, r)) = model.recs.range(..upto).find(|(o, r)| !read.contains(o) && !r.removable) {
        let why = format!("durable below {}, checkpoint {}", model.durable, model.checkpoint);
        prop_assert!(false, "{when}: record {offset} ({}={:?}) is missing ({why})", r.key, r.value);
    }
    Ok(read)
}

/// The steady-state check; forgets the records found gone.
fn check(log: &PartitionLog, model: &mut Model) -> TestResult<()> {
    let (start, hw, end) = (log.log_start_offset(), log.high_watermark(), log.log_end_offset());
    prop_assert!(log.corruption().is_none(), "unexpected corruption: {:?}", log.corruption());
    prop_assert!(start <= hw && hw <= end, "log start {start}, high watermark {hw}, log end {end}");
    prop_assert_eq!(end, model.end, "log end");
    prop_assert_eq!(hw, model.durable, "high watermark");
    prop_assert_eq!(log.recovery_point(), model.durable, "recovery point");
    prop_assert!(start >= model.log_start, "log start moved back from {} to {start}", model.log_start);
    model.log_start = start;
    let (got, error) = read_upto(log, end);
    prop_assert!(error.is_none(), "reading failed: {error:?}");
    let read = compare(model, &got, start, end, "reading the log")?;
    model.recs.retain(|offset, _| read.contains(offset));
    if hw < end {
        let past = log.plan_read(hw).and_then(|plan| plan.read(1 << 16));
        prop_assert!(past.is_ok_and(|r| r.bytes.is_empty()), "data visible past the high watermark {hw}");
    }
    Ok(())
}

/// Where the batches of a segment file start (a damaged length ends it).
fn batch_starts(data: &[u8]) -> Vec<usize> {
    let (mut starts, mut at) = (Vec::new(), 0);
    while at + 12 <= data.len() {
        starts.push(at);
        let length = i32::from_be_bytes([data[at + 8], data[at + 9], data[at + 10], data[at + 11]]);
        let Ok(length) = usize::try_from(length) else { break };
        at += 12 + length;
    }
    starts
}

/// The header field of a batch that a flip hit, if any.
fn header_field(storage: &MemStorage, flip: &BitFlip) -> Option<&'static str> {
    let at = usize::try_from(flip.position).ok()?;
    let start = batch_starts(&storage.read_file(&flip.path)?).into_iter().take_while(|s| *s <= at).last()?;
    match at - start {
        0..8 => Some("base offset"),
        8..12 => Some("length"),
        12..16 => Some("leader epoch"),
        16 => Some("magic"),
        23..27 => Some("last offset delta"),
        _ => None,
    }
}

/// The `.log` files and their content.
fn log_files(storage: &MemStorage) -> BTreeMap<PathBuf, Vec<u8>> {
    let logs = storage.file_names().into_iter().filter(|p| p.extension().is_some_and(|e| e == "log"));
    logs.filter_map(|p| Some((p.clone(), storage.read_file(&p)?))).collect()
}

/// A batch moved to other offsets by a flip in its base offset.
#[derive(Debug, Clone, Copy)]
struct Shift {
    /// The batch's offsets before the flip.
    from: (i64, i64),
    /// Its base offset after.
    to: i64,
}

/// The shift a flip in a base offset made, if the batch's new offsets still
/// lie between its neighbours' (the previous batch's last offset or the
/// segment's base, the next batch's base or the next segment's), in a
/// segment other than the last (whose offsets recovery requires
/// contiguous): the format cannot tell such a batch from a compacted one.
fn order_keeping_shift(before: &BTreeMap<PathBuf, Vec<u8>>, storage: &MemStorage, flip: &BitFlip) -> Option<Shift> {
    let offsets = |data: &[u8], at: usize| {
        let base = i64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?);
        let delta = i32::from_be_bytes(data.get(at + 23..at + 27)?.try_into().ok()?);
        Some((base, base + i64::from(delta)))
    };
    let segment_base = |p: &Path| p.file_stem()?.to_str()?.parse::<i64>().ok();
    if header_field(storage, flip) != Some("base offset") {
        return None;
    }
    let data = storage.read_file(&flip.path)?;
    let starts = batch_starts(&data);
    let i = starts.iter().rposition(|s| *s as u64 <= flip.position)?;
    let (from, to) = (offsets(before.get(&flip.path)?, starts[i])?, offsets(&data, starts[i])?);
    let base = segment_base(&flip.path)?;
    let next_segment = log_files(storage).keys().filter_map(|p| segment_base(p)).find(|b| *b > base)?;
    let low = match i {
        0 => base - 1,
        _ => offsets(&data, starts[i - 1])?.1,
    };
    let high = starts.get(i + 1).and_then(|s| offsets(&data, *s)).map_or(next_segment, |o| o.0);
    (low < to.0 && to.1 < high).then_some(Shift { from, to: to.0 })
}

fn fail(what: &str, e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{what} failed: {e}"))
}

fn reopen(storage: &Arc<dyn Storage>, config: &Arc<TopicConfig>, rp: i64, clean: bool) -> TestResult<PartitionLog> {
    let options = OpenOptions { recovery_point: Some(rp), clean_shutdown: clean, leader_epoch: 0 };
    PartitionLog::open(Arc::clone(storage), Path::new(DIR), super::tp(), Arc::clone(config), options, 0)
        .map_err(|e| fail(&format!("reopening with recovery point {rp} (clean: {clean})"), e))
}

/// Segments of 1 KiB; retention of 3000 bytes or 500 ms, or compaction.
fn config(compact: bool) -> Arc<TopicConfig> {
    let mut c = TopicConfig::clone(&super::small_config(1024));
    let delete_retention = DELETE_RETENTION_MS.to_string();
    let settings = if compact {
        [
            ("cleanup.policy", "compact"),
            ("delete.retention.ms", delete_retention.as_str()),
            ("min.cleanable.dirty.ratio", "0.0"),
        ]
    } else {
        [("cleanup.policy", "delete"), ("retention.bytes", "3000"), ("retention.ms", "500")]
    };
    for (key, value) in settings {
        c.set(key, value).expect("valid setting");
    }
    Arc::new(c)
}

/// One case: the storage, the log under test and its model.
struct Case {
    storage: MemStorage,
    dyn_storage: Arc<dyn Storage>,
    config: Arc<TopicConfig>,
    /// In a mutex only because the cleaner takes it so.
    log: Mutex<PartitionLog>,
    model: Model,
    clock: i64,
    seq: u64,
}

fn get(log: &mut Mutex<PartitionLog>) -> &mut PartitionLog {
    log.get_mut().unwrap_or_else(PoisonError::into_inner)
}

impl Case {
    fn new(seed: u64, compact: bool) -> Self {
        let config = config(compact);
        let (storage, dyn_storage, log) = fresh(seed, &config);
        Self { storage, dyn_storage, config, log: Mutex::new(log), model: Model::default(), clock: 0, seq: 0 }
    }

    /// Runs one operation and checks the log; returns whether the case goes on.
    fn step(&mut self, op: &Op) -> TestResult<bool> {
        let (log, model) = (get(&mut self.log), &mut self.model);
        match op {
            Op::Append { keys, tombstones } => {
                self.clock += TICK;
                let base = model.end;
                model.boundaries.insert(base);
                let mut records = Vec::new();
                for (i, id) in keys.iter().enumerate() {
                    self.seq += 1;
                    let (key, tombstone) = (format!("k{id}"), tombstones & (1 << i) != 0);
                    let value = (!tombstone).then(|| format!("v{}", self.seq));
                    records.push(match &value {
                        Some(v) => Record::with_key(key.clone(), v.clone()).timestamp(self.clock),
                        None => Record::tombstone(key.clone()).timestamp(self.clock),
                    });
                    model.recs.insert(model.end, Rec { key, value, ts: self.clock, removable: false });
                    model.end += 1;
                }
                let mut batch = encode_batch(&records, ProducerStamp::NONE, self.clock);
                let info = log.append(&mut batch, self.clock).map_err(|e| fail("append", e))?;
                prop_assert_eq!((info.base_offset, info.last_offset), (base, model.end - 1), "appended offsets");
            }
            Op::Flush { checkpoint } => {
                let hw = log.flush(self.clock).map_err(|e| fail("flush", e))?;
                prop_assert_eq!(hw, model.end, "high watermark after a flush");
                model.durable = model.end;
                if *checkpoint {
                    model.checkpoint = log.recovery_point();
                }
            }
            Op::Roll => log.roll().map_err(|e| fail("roll", e))?,
            Op::Retention { advance } => {
                self.clock += advance;
                let before = log.log_start_offset();
                let deleted = log.apply_retention(self.clock).map_err(|e| fail("retention", e))?;
                let after = log.log_start_offset();
                let moved = format!("{deleted} segments deleted, log start {before} to {after}");
                prop_assert!(after >= before && (deleted > 0) == (after > before), "{moved}");
                prop_assert!(after <= log.high_watermark(), "{moved}, past the high watermark");
                prop_assert!(model.is_boundary(after), "{moved}, inside a batch");
                model.recs = model.recs.split_off(&after);
                model.boundaries = model.boundaries.split_off(&after);
            }
            Op::Compact { advance } => {
                self.clock += advance;
                model.mark_compactable(self.clock);
                let before = model.recs.len();
                let stats = clean_partition(&self.log, self.clock).map_err(|e| fail("compaction", e))?;
                check(get(&mut self.log), model)?;
                let removed = (before - model.recs.len()) as u64;
                prop_assert_eq!(stats.records_removed, removed, "records removed by compaction: {:?}", stats);
            }
            Op::Crash { torn_garbage, flip } => {
                let (torn_garbage, bit_flips) = (*torn_garbage, u32::from(*flip));
                let before = log_files(&self.storage);
                // The old log is dropped without a close once replaced; its
                // handles are stale after the crash anyway.
                let flips =
                    self.storage.crash(CrashFaults { torn_garbage, bit_flips, flip_suffixes: vec![".log".into()] });
                for shift in flips.iter().filter_map(|f| order_keeping_shift(&before, &self.storage, f)) {
                    model.shift(shift);
                }
                let fields: Vec<_> = flips.iter().filter_map(|f| header_field(&self.storage, f)).collect();
                return self
                    .recover(&flips)
                    .map_err(|e| TestCaseError::fail(format!("{e} (flips: {flips:?} in {fields:?})")));
            }
            Op::CleanRestart => {
                log.close(self.clock).map_err(|e| fail("close", e))?;
                let end = log.log_end_offset();
                self.log = Mutex::new(reopen(&self.dyn_storage, &self.config, end, true)?);
                (model.durable, model.checkpoint) = (model.end, end);
            }
        }
        check(get(&mut self.log), &mut self.model)?;
        Ok(true)
    }

    /// Reopens after a crash and applies the fault rules of the module docs.
    fn recover(&mut self, flips: &[BitFlip]) -> TestResult<bool> {
        let model = &mut self.model;
        self.log = Mutex::new(reopen(&self.dyn_storage, &self.config, model.checkpoint, false)?);
        let log = get(&mut self.log);
        let end = log.log_end_offset();
        if let Some(c) = log.corruption().cloned() {
            prop_assert!(!flips.is_empty(), "corruption reported without a bit flip: {c:?}");
            prop_assert!(end <= c.offset && c.offset <= model.end, "log end {end}, model end {}: {c:?}", model.end);
            let (got, error) = read_upto(log, c.offset);
            prop_assert!(error.is_none(), "reading below the corruption at {} failed: {error:?}", c.offset);
            compare(model, &got, log.log_start_offset(), c.offset, "below a reported corruption")?;
            prop_assert!(log.plan_read(c.offset).is_err(), "reading at the corruption offset {} succeeds", c.offset);
            let mut batch = encode_batch(&[Record::with_key("k0", "after")], ProducerStamp::NONE, 0);
            prop_assert!(log.append(&mut batch, 0).is_err(), "appending to a corrupt log succeeds: {c:?}");
            return Ok(false);
        }
        // Without a flip every acknowledged batch survives; with an
        // unreported one, every batch below the checkpoint.
        let keep = if flips.is_empty() { model.durable } else { model.checkpoint };
        prop_assert!(end >= keep, "recovered log ends at {end}, below {keep}");
        prop_assert!(end <= model.end, "recovered log ends at {end}, past the {} appended", model.end);
        prop_assert!(model.is_boundary(end), "recovered log ends at {end}, inside a batch");
        model.truncate(end);
        if !flips.is_empty()
            && let (got, Some((at, _))) = read_upto(log, end)
        {
            // A read error reports the damage: what lies past it may be unreadable.
            compare(model, &got, log.log_start_offset(), at, "before a read error after a bit flip")?;
            return Ok(false);
        }
        check(log, model)?;
        Ok(true)
    }
}

fn run(seed: u64, ops: &[Op], compact: bool) -> TestResult<()> {
    let mut case = Case::new(seed, compact);
    for (i, op) in ops.iter().enumerate() {
        match case.step(op) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                let m = &case.model;
                let state = format!("end {}, durable {}, checkpoint {}", m.end, m.durable, m.checkpoint);
                return Err(TestCaseError::fail(format!("op {i} ({op:?}): {e}; model: {state}")));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn delete_policy_log_matches_the_model(seed in any::<u64>(), ops in prop::collection::vec(op(false), 1..60)) {
        run(seed, &ops, false)?;
    }

    #[test]
    fn compact_policy_log_matches_the_model(seed in any::<u64>(), ops in prop::collection::vec(op(true), 1..60)) {
        run(seed, &ops, true)?;
    }
}

// The storage bugs this model found, deterministically.

/// A fresh log on a storage seeded with `seed`.
fn fresh(seed: u64, config: &Arc<TopicConfig>) -> (MemStorage, Arc<dyn Storage>, PartitionLog) {
    let storage = MemStorage::new(seed);
    let dyn_storage: Arc<dyn Storage> = Arc::new(storage.clone());
    let log = super::open(&dyn_storage, Path::new(DIR), Arc::clone(config), None, false);
    (storage, dyn_storage, log)
}

#[test]
fn damaged_batch_headers_are_reported() {
    let config = super::small_config(1024);
    let (storage, dyn_storage, mut log) = fresh(1, &config);
    for i in 0..3 {
        super::append(&mut log, &[format!("v{i}")], i); // 72-byte batches in segment 0
    }
    log.roll().expect("roll");
    super::append(&mut log, &["v3".into()], 3); // segment 3: the last batch
    log.flush(3).expect("flush");
    drop(log);
    let segment = |base: i64| format!("{DIR}/{base:020}.log");
    // Segment 0 lies below the recovery point's segment: not scanned on open, read with checks.
    let flips = [("magic", 16, 5), ("raised base offset", 5, 2), ("length", 10, 4), ("last offset delta", 26, 4)];
    for (field, byte, bit) in flips.into_iter().chain([("lowered base offset", 79, 0)]) {
        storage.flip_bit(Path::new(&segment(0)), byte, bit).expect("flip");
        let log = reopen(&dyn_storage, &config, 4, false).expect("reopen");
        let (got, error) = read_upto(&log, 4);
        let offsets: Vec<_> = got.iter().map(|(o, _)| *o).collect();
        assert!(error.is_some() && offsets.len() < 4, "a flipped {field} bit: read {offsets:?}, no error");
        storage.flip_bit(Path::new(&segment(0)), byte, bit).expect("flip back");
    }
    // A raised base offset in the last batch, below the recovery point: found on open.
    storage.flip_bit(Path::new(&segment(3)), 5, 2).expect("flip");
    let log = reopen(&dyn_storage, &config, 4, false).expect("reopen");
    let end = log.log_end_offset();
    assert!(log.corruption().is_some() || end == 4, "unreported; log end {end}, reads {:?}", super::read_all(&log));
}

#[test]
fn lost_unsynced_appends_leave_no_hole() {
    let config = super::small_config(1024);
    for seed in 0..1000 {
        let (storage, dyn_storage, mut log) = fresh(seed, &config);
        super::append(&mut log, &["v0".into()], 0);
        log.roll().expect("roll");
        drop(log);
        storage.crash(CrashFaults::default());
        let log = reopen(&dyn_storage, &config, 0, false).expect("reopen");
        let (end, held) = (log.log_end_offset(), read_upto(&log, 1).0.len());
        assert_eq!(end, held as i64, "seed {seed}: the log ends at {end} but holds {held} records");
    }
}

#[test]
fn compacted_segments_survive_crashes() {
    let config = config(true);
    for seed in 0..1000 {
        let (storage, dyn_storage, mut log) = fresh(seed, &config);
        for (ts, key) in [(0, "a"), (1, "b"), (2, "b")] {
            super::append(&mut log, &[key.into()], ts); // offsets 0 and 2 stay
        }
        log.roll().expect("roll");
        super::append(&mut log, &["c".into()], 3);
        log.flush(3).expect("flush");
        clean_partition(&Mutex::new(log), 10).expect("clean"); // segment 0, below the recovery point
        for crash in 0..4 {
            storage.crash(CrashFaults { torn_garbage: true, ..CrashFaults::default() });
            let log = reopen(&dyn_storage, &config, 4, false).expect("reopen");
            let offsets: Vec<i64> = read_upto(&log, 4).0.iter().map(|(o, _)| *o).collect();
            assert_eq!(offsets, [0, 2, 3], "seed {seed}, crash {crash}");
        }
    }
}

/// Where the batches of a segment file start, and the file's path.
fn starts_of(storage: &MemStorage, base: i64) -> (PathBuf, Vec<u64>) {
    let path = PathBuf::from(format!("{DIR}/{base:020}.log"));
    let starts = batch_starts(&storage.read_file(&path).expect("segment"));
    (path, starts.into_iter().map(|s| s as u64).collect())
}

/// Checks that a read up to `limit` fails before reading anything but the
/// right records (value `v<offset>`) at their offsets.
fn assert_read_fails(log: &PartitionLog, limit: i64, what: &str) {
    let (got, error) = read_upto(log, limit);
    let wrong: Vec<_> = got.iter().filter(|(o, r)| r.value.as_deref() != Some(format!("v{o}").as_str())).collect();
    assert!(error.is_some() && wrong.is_empty(), "{what}: read {got:?}, error {error:?}");
}

#[test]
fn reads_below_a_corruption_cross_a_compacted_tail() {
    let config = config(true);
    let (storage, dyn_storage, mut log) = fresh(1, &config);
    super::append(&mut log, &["a".into(), "b".into()], 0); // segment 0: one batch, offsets 0 and 1
    log.roll().expect("roll");
    super::append(&mut log, &["b".into()], 1); // segment 2: offsets 2 and 3
    super::append(&mut log, &["c".into()], 2);
    log.roll().expect("roll");
    super::append(&mut log, &["d".into()], 3); // segment 4
    log.flush(3).expect("flush");
    clean_partition(&Mutex::new(log), 10).expect("clean"); // offset 1 goes: segment 0 ends at 0
    let (path, starts) = starts_of(&storage, 2);
    storage.flip_bit(&path, starts[0] + 40, 0).expect("flip"); // a CRC failure at segment 2's base
    let log = reopen(&dyn_storage, &config, 3, false).expect("reopen");
    let corruption = log.corruption().expect("corruption reported");
    assert_eq!(corruption.offset, 2, "{corruption:?}");
    let (got, error) = read_upto(&log, 2);
    let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!((offsets, error), (vec![0], None), "offset 1, in the gap below the corruption, reads as nothing");
}

#[test]
fn a_compacted_segment_cut_by_recovery_does_not_become_the_active_one() {
    let config = config(true);
    let (storage, dyn_storage, mut log) = fresh(1, &config);
    super::append(&mut log, &["a".into(), "a".into()], 0); // offsets 0 and 1, in one batch
    super::append(&mut log, &["b".into()], 1);
    log.flush(1).expect("flush");
    log.roll().expect("roll");
    clean_partition(&Mutex::new(log), 10).expect("clean"); // offset 0 goes: segment 0 starts at 1
    let (path, starts) = starts_of(&storage, 0);
    storage.flip_bit(&path, starts[1] + 40, 0).expect("flip"); // offset 2, past the recovery point 0
    let log = reopen(&dyn_storage, &config, 0, false).expect("reopen");
    assert_eq!((log.log_end_offset(), log.corruption()), (2, None), "offset 2 cut as a torn tail");
    drop(log);
    for rp in [0, 2] {
        let log = reopen(&dyn_storage, &config, rp, false).expect("reopen");
        let offsets: Vec<i64> = read_upto(&log, 2).0.iter().map(|(o, _)| *o).collect();
        let state = (log.log_end_offset(), log.corruption(), offsets);
        assert_eq!(state, (2, None, vec![1]), "recovering again from {rp}");
    }
}

#[test]
fn damaged_last_offset_deltas_do_not_hide_records() {
    let config = super::small_config(1024);
    let (storage, dyn_storage, mut log) = fresh(1, &config);
    for (ts, values) in [vec!["v0"], vec!["v1", "v2", "v3"], vec!["v4", "v5"]].into_iter().enumerate() {
        super::append(&mut log, &values.into_iter().map(String::from).collect::<Vec<_>>(), ts as i64);
    }
    log.roll().expect("roll"); // segment 0 lies below the recovery point's segment: not scanned on open
    super::append(&mut log, &["v6".into()], 3);
    log.flush(3).expect("flush");
    drop(log);
    let (path, starts) = starts_of(&storage, 0);
    // The first batch ends at offset -2^31; the second at 1, not 3; the last at 4, not 5.
    let flips = [("negative", 0, 23, 7, 0), ("lowered", 1, 26, 1, 2), ("lowered last", 2, 26, 0, 5)];
    for (field, batch, byte, bit, from) in flips {
        storage.flip_bit(&path, starts[batch] + byte, bit).expect("flip");
        let log = reopen(&dyn_storage, &config, 7, false).expect("reopen");
        let read = log.plan_read(from).and_then(|plan| plan.read(1 << 16));
        assert!(read.is_err(), "a {field} last offset delta: reading {from} gives {read:?}");
        assert_read_fails(&log, 7, field);
        storage.flip_bit(&path, starts[batch] + byte, bit).expect("flip back");
    }
}

#[test]
fn a_raised_base_offset_is_found_before_the_read_limit() {
    let config = super::small_config(1024);
    let (storage, dyn_storage, mut log) = fresh(1, &config);
    for (ts, values) in [vec!["v0"], vec!["v1"], vec!["v2", "v3"]].into_iter().enumerate() {
        super::append(&mut log, &values.into_iter().map(String::from).collect::<Vec<_>>(), ts as i64);
    }
    log.roll().expect("roll"); // segment 0 lies below the recovery point's segment: not scanned on open
    log.flush(3).expect("flush");
    drop(log);
    let (path, starts) = starts_of(&storage, 0);
    storage.flip_bit(&path, starts[1] + 7, 1).expect("flip"); // offset 1 becomes 3, the last below the log end
    let log = reopen(&dyn_storage, &config, 4, false).expect("reopen");
    assert_read_fails(&log, 4, "a raised base offset");
}
