//! Storage tests: one partition's log on the real file system and on the
//! fault-injecting in-memory one.

mod model;

use std::path::Path;
use std::sync::Arc;

use plexus_core::record::{ProducerStamp, Record, decode_records, encode_batch};
use plexus_core::storage::{FileStorage, MemStorage, OpenOptions, PartitionLog, Storage};
use plexus_core::{TopicConfig, TopicPartition};

pub(crate) fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

pub(crate) fn small_config(segment_bytes: i32) -> Arc<TopicConfig> {
    let mut c = TopicConfig::default();
    c.set("segment.bytes", &segment_bytes.to_string()).expect("valid");
    c.set("index.interval.bytes", "256").expect("valid");
    Arc::new(c)
}

pub(crate) fn open(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    config: Arc<TopicConfig>,
    rp: Option<i64>,
    clean: bool,
) -> PartitionLog {
    if let Some(parent) = dir.parent() {
        storage.create_dir_all(parent).expect("parent");
        storage.sync_dir(Path::new("/")).expect("sync root");
    }
    let options = OpenOptions { recovery_point: rp, clean_shutdown: clean, leader_epoch: 0 };
    PartitionLog::open(Arc::clone(storage), dir, tp(), config, options, 0).expect("open")
}

pub(crate) fn append(log: &mut PartitionLog, values: &[String], ts: i64) -> i64 {
    let records: Vec<Record> = values.iter().map(|v| Record::with_key(v.clone(), v.clone()).timestamp(ts)).collect();
    let mut batch = encode_batch(&records, ProducerStamp::NONE, ts);
    log.append(&mut batch, ts).expect("append").base_offset
}

pub(crate) fn read_all(log: &PartitionLog) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let result = log.plan_read(offset).expect("plan").read(1 << 16).expect("read");
        assert!(!result.bytes.is_empty(), "no progress at offset {offset}");
        for r in decode_records("t", 0, result.bytes, offset).expect("decode") {
            out.push((r.offset, String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"<null>")).into_owned()));
        }
        offset = result.next_offset;
    }
    out
}

fn values(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("value-{i:05}")).collect()
}

#[test]
fn appends_read_back_in_order_across_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let mut log = open(&storage, dir.path(), small_config(1024), None, false);
    for i in 0..100 {
        assert_eq!(append(&mut log, &values(i * 3..i * 3 + 3), 1000 + i as i64), i as i64 * 3);
    }
    log.flush(0).expect("flush");
    assert!(log.segment_count() > 5, "segments rolled at 1 KiB: {}", log.segment_count());
    let all = read_all(&log);
    assert_eq!(all.len(), 300);
    assert!(all.iter().enumerate().all(|(i, (o, v))| *o == i as i64 && *v == format!("value-{i:05}")));
    // Reads from the middle of a batch start at that offset.
    let from_mid = log.plan_read(151).expect("plan").read(100).expect("read");
    let recs = decode_records("t", 0, from_mid.bytes, 151).expect("decode");
    assert_eq!(recs[0].offset, 151);
}

#[test]
fn finds_offsets_by_timestamp() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let mut log = open(&storage, dir.path(), small_config(2048), None, false);
    for i in 0..50 {
        append(&mut log, &values(i * 2..i * 2 + 2), 10_000 + 100 * i as i64);
    }
    log.flush(0).expect("flush");
    assert_eq!(log.offset_for_timestamp(0).expect("ok"), Some(0));
    assert_eq!(log.offset_for_timestamp(10_000 + 100 * 20).expect("ok"), Some(40));
    assert_eq!(log.offset_for_timestamp(10_000 + 100 * 20 + 1).expect("ok"), Some(42));
    assert_eq!(log.offset_for_timestamp(99_999).expect("ok"), None);
}

#[test]
fn clean_reopen_scans_nothing_and_keeps_offsets() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let mut log = open(&storage, dir.path(), small_config(1024), None, false);
    for i in 0..40 {
        append(&mut log, &values(i..i + 1), i as i64);
    }
    log.close(0).expect("close");
    let end = log.log_end_offset();
    drop(log);
    let log = open(&storage, dir.path(), small_config(1024), Some(end), true);
    assert_eq!(log.log_end_offset(), 40);
    assert_eq!(read_all(&log).len(), 40);
    let mut log = log;
    assert_eq!(append(&mut log, &values(0..1), 0), 40);
}

#[test]
fn torn_tail_is_truncated_and_acknowledged_data_kept() {
    let storage = MemStorage::new(7);
    let dyn_storage: Arc<dyn Storage> = Arc::new(storage.clone());
    let dir = Path::new("/data/t-0");
    let mut log = open(&dyn_storage, dir, small_config(4096), None, false);
    for i in 0..20 {
        append(&mut log, &values(i..i + 1), i as i64);
    }
    log.flush(0).expect("flush");
    let durable = log.log_end_offset();
    for i in 20..30 {
        append(&mut log, &values(i..i + 1), i as i64);
    }
    drop(log);
    storage.crash(plexus_core::storage::memory::CrashFaults { torn_garbage: true, ..Default::default() });
    let log = open(&dyn_storage, dir, small_config(4096), Some(durable), false);
    assert!(log.corruption().is_none());
    let all = read_all(&log);
    assert!(all.len() >= 20 && all.len() <= 30, "{}", all.len());
    assert!(all.iter().enumerate().all(|(i, (o, _))| *o == i as i64));
}

#[test]
fn a_flipped_bit_below_the_recovery_point_is_reported_not_truncated() {
    let storage = MemStorage::new(3);
    let dyn_storage: Arc<dyn Storage> = Arc::new(storage.clone());
    let dir = Path::new("/data/t-0");
    let mut log = open(&dyn_storage, dir, small_config(1 << 20), None, false);
    for i in 0..20 {
        append(&mut log, &values(i..i + 1), i as i64);
    }
    log.flush(0).expect("flush");
    drop(log);
    let seg = Path::new("/data/t-0/00000000000000000000.log");
    let len = storage.read_file(seg).expect("segment").len() as u64;
    storage.flip_bit(seg, len / 2, 3).expect("flip");
    let log = open(&dyn_storage, dir, small_config(1 << 20), Some(20), false);
    let corruption = log.corruption().expect("corruption reported").clone();
    assert!(corruption.offset < 20 && corruption.offset > 0, "{corruption:?}");
    assert_eq!(storage.read_file(seg).expect("kept").len() as u64, len, "nothing truncated");
    let good = read_all(&log);
    assert_eq!(good.len() as i64, corruption.offset, "serves everything before the damage");
    let err = log.plan_read(corruption.offset).expect_err("refuses past it");
    assert!(err.to_string().contains("00000000000000000000.log at byte"), "{err}");
}

#[test]
fn retention_by_bytes_and_time_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let mut config = TopicConfig::clone(&small_config(1024));
    config.set("retention.bytes", "3000").expect("valid");
    let mut log = open(&storage, dir.path(), Arc::new(config), None, false);
    for i in 0..100 {
        append(&mut log, &values(i..i + 1), i as i64);
    }
    log.flush(0).expect("flush");
    let deleted = log.apply_retention(1_000).expect("retention");
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 3000 + 1024, "{}", log.size_bytes());
    let all = read_all(&log);
    assert_eq!(all.last().map(|r| r.0), Some(99));
    assert_eq!(all[0].0, log.log_start_offset());

    let mut config = TopicConfig::clone(&small_config(1024));
    config.set("retention.ms", "50").expect("valid");
    log.set_config(Arc::new(config));
    log.apply_retention(10_000).expect("retention");
    assert_eq!(log.log_start_offset(), 100, "everything expired");
    assert_eq!(log.log_end_offset(), 100);
}

#[test]
fn compaction_keeps_the_latest_value_per_key_and_expires_tombstones() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage: Arc<dyn Storage> = Arc::new(FileStorage);
    let mut config = TopicConfig::clone(&small_config(1024));
    config.set("cleanup.policy", "compact").expect("valid");
    config.set("delete.retention.ms", "1000").expect("valid");
    let log = open(&storage, dir.path(), Arc::new(config), None, false);
    let log = std::sync::Mutex::new(log);
    let put = |key: &str, value: Option<&str>, ts: i64| {
        let r = Record {
            key: Some(key.to_owned().into()),
            value: value.map(|v| v.to_owned().into()),
            headers: vec![],
            timestamp: Some(ts),
        };
        let mut batch = encode_batch(&[r], ProducerStamp::NONE, ts);
        log.lock().expect("lock").append(&mut batch, ts).expect("append");
    };
    for round in 0..20 {
        for k in 0..5 {
            put(&format!("k{k}"), Some(&format!("v{round}-{k}")), 100);
        }
    }
    put("k0", None, 5_000); // tombstone, recent
    put("k1", None, 100); // tombstone, old
    for i in 0..30 {
        put("filler", Some(&format!("f{i}")), 100); // pushes the above out of the active segment
    }
    log.lock().expect("lock").flush(0).expect("flush");
    let stats = plexus_core::storage::cleaner::clean_partition(&log, 5_500).expect("clean");
    assert!(stats.records_removed > 90, "{stats:?}");
    let log = log.into_inner().expect("lock");
    let all = read_all(&log);
    let values_of = |k: &str| all.iter().filter(|(_, v)| v.ends_with(&format!("-{}", &k[1..]))).count();
    assert_eq!(values_of("k2"), 1, "one value left for k2: {all:?}");
    assert!(all.iter().any(|(_, v)| v == "v19-2"));
    assert!(all.iter().any(|(_, v)| v == "<null>"), "recent tombstone kept: {all:?}");
    assert_eq!(all.iter().filter(|(_, v)| v == "<null>").count(), 1, "old tombstone dropped: {all:?}");
    assert!(!all.iter().any(|(_, v)| v.starts_with("v19-0") || v.starts_with("v19-1")), "deleted keys gone: {all:?}");
    let offsets: Vec<i64> = all.iter().map(|r| r.0).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets still increase");
}
