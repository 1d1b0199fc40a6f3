//! Standby replicas (`num.standby.replicas`): copies of other instances'
//! stateful tasks, kept up to date from their changelogs, so that a task
//! that moves here restores only the tail its standby had not yet read.
//!
//! Placement is computed by every instance alike from the group's
//! description: the members' client ids carry their process ids
//! (`<application.id>-<process id>-StreamThread-N-consumer`), their
//! assignments say which process runs which task, and a task's standbys
//! are the next `num.standby.replicas` processes after its owner in
//! process-id order (never the owner). A standby is dropped as soon as the
//! group gives its task to this process, and the stream thread that builds
//! the active task waits for the standby's RocksDB lock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use plexus_core::TopicPartition;
use plexus_core::client::{Admin, ConsumerConfig, SeekTo};

use super::Shared;
use crate::error::{Error, Result};
use crate::processor::TaskId;
use crate::state::{BytesStore, WriteBatch};
use crate::topology::StoreBuilder;

/// How often the placement is recomputed.
const REPLAN: Duration = Duration::from_millis(200);

/// The standby thread's body: runs until shutdown; a failure fails the application.
pub(super) fn run(shared: &Arc<Shared>) {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io { store: "standby".into(), path: std::path::PathBuf::new(), source: e })
        .and_then(|rt| rt.block_on(follow(shared)));
    if let Err(e) = result {
        shared.fail(e);
    }
}

/// The logged stores of each sub-topology.
fn logged_stores(shared: &Shared) -> BTreeMap<u32, Vec<StoreBuilder>> {
    let topology = &shared.topology;
    let mut out: BTreeMap<u32, Vec<StoreBuilder>> = BTreeMap::new();
    for (id, members) in topology.subtopologies().iter().enumerate() {
        for spec in topology.stores.iter().filter(|s| s.logging) {
            if members.iter().any(|&i| topology.nodes[i].stores.contains(&spec.name)) {
                out.entry(u32::try_from(id).unwrap_or(u32::MAX)).or_default().push(spec.clone());
            }
        }
    }
    out
}

/// The stateful tasks this process should keep standbys of now.
async fn placement(
    shared: &Shared,
    admin: &dyn Admin,
    stateful: &BTreeMap<u32, Vec<StoreBuilder>>,
) -> Result<BTreeSet<TaskId>> {
    let app = &shared.config.application_id;
    let group = admin.describe_group(app).await.map_err(Error::Log)?;
    let readers = shared.topology.readers();
    let mut owners: BTreeMap<TaskId, String> = BTreeMap::new();
    let mut processes = BTreeSet::new();
    for m in &group.members {
        let Some(pid) = m.client_id.strip_prefix(&format!("{app}-")).and_then(|r| r.split("-StreamThread-").next())
        else {
            continue;
        };
        processes.insert(pid.to_owned());
        for tp in &m.assignment {
            if let Some(&subtopology) = readers.get(&tp.topic).filter(|s| stateful.contains_key(s)) {
                owners.insert(TaskId { subtopology, partition: tp.partition }, pid.to_owned());
            }
        }
    }
    let processes: Vec<String> = processes.into_iter().collect();
    let me = &shared.process_id;
    let n = shared.config.num_standby_replicas;
    let mut wanted = BTreeSet::new();
    for (task, owner) in &owners {
        let Some(at) = processes.iter().position(|p| p == owner) else { continue };
        let standbys = (1..=n.min(processes.len().saturating_sub(1))).map(|j| &processes[(at + j) % processes.len()]);
        if owner != me && standbys.into_iter().any(|p| p == me) {
            wanted.insert(*task);
        }
    }
    Ok(wanted)
}

async fn follow(shared: &Shared) -> Result<()> {
    let stateful = logged_stores(shared);
    let admin = shared.clients.admin();
    let mut cc = ConsumerConfig::without_group();
    cc.set("isolation.level", "read_committed").map_err(|e| Error::Log(e.into()))?;
    cc.set("max.poll.records", "10000").map_err(|e| Error::Log(e.into()))?;
    let mut consumer = shared.clients.consumer(cc).map_err(Error::Log)?;
    let app = shared.config.application_id.clone();
    // Each standby task's stores (opened as the task's own would be).
    let mut standbys: BTreeMap<TaskId, crate::task::OpenStores> = BTreeMap::new();
    let mut last_plan: Option<Instant> = None;
    while !shared.shutdown.load(Ordering::Acquire) {
        if last_plan.is_none_or(|t| t.elapsed() >= REPLAN) {
            last_plan = Some(Instant::now());
            let wanted = match placement(shared, &*admin, &stateful).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!(error = %e, "standby placement unavailable; retrying");
                    continue;
                }
            };
            let before: BTreeSet<TaskId> = standbys.keys().copied().collect();
            // Closing a standby releases its RocksDB lock for the active task.
            standbys.retain(|id, _| wanted.contains(id));
            let new: Vec<TaskId> = wanted.iter().filter(|id| !standbys.contains_key(id)).copied().collect();
            for id in &new {
                let dir = shared.config.task_dir(*id).join("rocksdb");
                let mut stores = Vec::new();
                for spec in stateful.get(&id.subtopology).into_iter().flatten() {
                    let store: Arc<dyn BytesStore> = if spec.is_persistent() {
                        match crate::state::RocksDbStore::open(&dir, spec.name(), &shared.memory) {
                            Ok(s) => Arc::new(s),
                            // Still held by the active task this process is closing.
                            Err(Error::Open { .. }) => break,
                            Err(e) => return Err(e),
                        }
                    } else {
                        Arc::new(crate::state::InMemoryStore::new(spec.name()))
                    };
                    stores.push((spec.clone(), store));
                }
                if stores.len() == stateful.get(&id.subtopology).map_or(0, Vec::len) {
                    standbys.insert(*id, stores);
                }
            }
            let now: BTreeSet<TaskId> = standbys.keys().copied().collect();
            if now != before {
                tracing::info!(standbys = ?now, "standby tasks");
                let mut tps = Vec::new();
                for (id, stores) in &standbys {
                    for (spec, _) in stores {
                        tps.push(TopicPartition::new(spec.changelog_topic(&app), id.partition));
                    }
                }
                consumer.assign(&tps).await.map_err(Error::Log)?;
                for (id, stores) in &standbys {
                    for (spec, store) in stores {
                        let tp = TopicPartition::new(spec.changelog_topic(&app), id.partition);
                        let from = store.changelog_offsets()?.get(&id.partition).copied().unwrap_or(0);
                        consumer.seek(&tp, SeekTo::Offset(from)).await.map_err(Error::Log)?;
                    }
                }
            }
        }
        if standbys.is_empty() {
            tokio::time::sleep(REPLAN).await;
            continue;
        }
        let records = consumer.poll(Duration::from_millis(100)).await.map_err(Error::Log)?;
        let mut batches: BTreeMap<(String, i32), WriteBatch> = BTreeMap::new();
        for r in records {
            let batch = batches.entry((r.topic.clone(), r.partition)).or_default();
            if let Some(k) = r.key {
                match r.value {
                    Some(v) => batch.put(k, v),
                    None => batch.delete(k),
                }
            }
        }
        for ((topic, partition), mut batch) in batches {
            let applied = batch.len() as u64;
            let Some((_, store)) = standbys
                .iter()
                .filter(|(id, _)| id.partition == partition)
                .flat_map(|(_, stores)| stores.iter())
                .find(|(spec, _)| spec.changelog_topic(&app) == topic)
            else {
                continue;
            };
            let tp = TopicPartition::new(topic, partition);
            if let Some(next) = consumer.position(&tp) {
                batch.set_changelog_offset(partition, next);
            }
            store.write(batch)?;
            shared.metrics.records_standby.fetch_add(applied, Ordering::Relaxed);
        }
    }
    Ok(())
}
