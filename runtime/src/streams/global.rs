//! The global thread: keeps each global store equal to the latest record
//! per key of all partitions of its topic. `Streams::start` waits until
//! every global store has caught up with its topic's end (so that the first
//! task sees the whole table), then the thread follows the topics until
//! shutdown. Each write batch carries the offsets it reaches, so a restart
//! resumes where the store is.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use plexus_core::TopicPartition;
use plexus_core::client::{ConsumerConfig, SeekTo};

use super::Shared;
use crate::error::{Error, Result};
use crate::state::{BytesStore, InMemoryStore, RocksDbStore, WriteBatch};
use crate::task::OpenStores;

/// Opens the global stores of the topology (RocksDB under
/// `<state.dir>/<application.id>/global`, or memory).
pub(super) fn open(shared: &Shared) -> Result<OpenStores> {
    let dir = shared.config.state_dir.join(&shared.config.application_id).join("global");
    shared
        .topology
        .global_stores()
        .iter()
        .map(|g| {
            let store: Arc<dyn BytesStore> = if g.store.is_persistent() {
                Arc::new(RocksDbStore::open(&dir, g.store.name(), &shared.memory)?)
            } else {
                Arc::new(InMemoryStore::new(g.store.name()))
            };
            Ok((g.store.clone(), store))
        })
        .collect()
}

/// Runs the global thread: catches up (then sends on `ready`), follows
/// until shutdown.
pub(super) fn run(shared: &Arc<Shared>, stores: &OpenStores, ready: std::sync::mpsc::Sender<Result<()>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(Error::Io { store: "global".into(), path: std::path::PathBuf::new(), source: e }));
            return;
        }
    };
    let result = runtime.block_on(follow(shared, stores, &ready));
    if let Err(e) = result {
        // Before `ready`: start() reports it; after: the application fails.
        if let Err(std::sync::mpsc::SendError(Err(e))) = ready.send(Err(e)) {
            shared.fail(e);
        }
    }
}

async fn follow(shared: &Shared, stores: &OpenStores, ready: &std::sync::mpsc::Sender<Result<()>>) -> Result<()> {
    let admin = shared.clients.admin();
    let mut cc = ConsumerConfig::without_group();
    cc.set("max.poll.records", "10000").map_err(|e| Error::Log(e.into()))?;
    let mut consumer = shared.clients.consumer(cc).map_err(Error::Log)?;
    let globals = shared.topology.global_stores();
    let mut partitions = Vec::new();
    for g in globals {
        let d = admin.describe_topic(&g.topic).await.map_err(|e| {
            Error::Topology(format!("global table topic {:?} cannot be read ({e}); create it first", g.topic))
        })?;
        partitions
            .extend((0..i32::try_from(d.partitions.len()).unwrap_or(0)).map(|p| TopicPartition::new(&g.topic, p)));
    }
    consumer.assign(&partitions).await.map_err(Error::Log)?;
    // Where each partition ends now, and where its store stands.
    let mut ends = Vec::new();
    for tp in &partitions {
        consumer.seek(tp, SeekTo::End).await.map_err(Error::Log)?;
        ends.push((tp.clone(), consumer.position(tp).unwrap_or(0)));
        let store = store_of(globals, stores, &tp.topic)?;
        let from = store.changelog_offsets()?.get(&tp.partition).copied().unwrap_or(0);
        consumer.seek(tp, SeekTo::Offset(from)).await.map_err(Error::Log)?;
    }
    let mut caught_up = false;
    while !shared.shutdown.load(Ordering::Acquire) {
        if !caught_up && ends.iter().all(|(tp, end)| consumer.position(tp).unwrap_or(0) >= *end) {
            caught_up = true;
            let _ = ready.send(Ok(()));
        }
        let records = consumer.poll(Duration::from_millis(100)).await.map_err(Error::Log)?;
        for g in globals {
            let store = store_of(globals, stores, &g.topic)?;
            let mut batch = WriteBatch::new();
            for r in records.iter().filter(|r| r.topic == g.topic) {
                if let Some(k) = &r.key {
                    match &r.value {
                        Some(v) => batch.put(k.clone(), v.clone()),
                        None => batch.delete(k.clone()),
                    }
                }
            }
            for tp in partitions.iter().filter(|tp| tp.topic == g.topic) {
                if let Some(p) = consumer.position(tp) {
                    batch.set_changelog_offset(tp.partition, p);
                }
            }
            if !batch.is_empty() {
                shared.metrics.records_restored.fetch_add(batch.len() as u64, Ordering::Relaxed);
                store.write(batch)?;
            }
        }
    }
    if !caught_up {
        let _ = ready.send(Ok(()));
    }
    Ok(())
}

fn store_of<'a>(
    globals: &[crate::topology::GlobalStore],
    stores: &'a OpenStores,
    topic: &str,
) -> Result<&'a Arc<dyn BytesStore>> {
    let name = globals.iter().find(|g| g.topic == topic).map(|g| g.store.name());
    stores
        .iter()
        .find(|(spec, _)| Some(spec.name()) == name)
        .map(|(_, s)| s)
        .ok_or_else(|| Error::Topology(format!("no global store for topic {topic:?}")))
}
