//! A consumer group of three members on a six-partition topic: assignment,
//! rebalances when a member leaves or goes silent, and exactly-once
//! processing when every member commits synchronously after processing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plexus_core::client::{Admin, Consumer, EmbeddedAdmin, EmbeddedConsumer};
use plexus_core::group::state::JoinRequest;
use plexus_core::{Log, TopicConfig, TopicPartition};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{earliest, open, produce};

/// What the members processed: (member, value).
type Processed = Arc<Mutex<Vec<(String, String)>>>;

/// A member that polls, "processes" (records) and commits synchronously
/// after every poll, until told to stop; then it closes (leaves the group).
fn member(log: &Log, name: &str, processed: &Processed, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    member_with(log, name, "range", processed, stop)
}

fn member_with(
    log: &Log,
    name: &str,
    strategy: &str,
    processed: &Processed,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut config = earliest("workers");
    config.client_id = name.to_owned();
    config.set("partition.assignment.strategy", strategy).expect("valid");
    config.set("max.poll.records", "7").expect("valid");
    let mut consumer = EmbeddedConsumer::new(log.clone(), config);
    let (name, processed) = (name.to_owned(), Arc::clone(processed));
    tokio::spawn(async move {
        consumer.subscribe(&["work"]).await.expect("subscribe");
        while !*stop.borrow_and_update() {
            let records = consumer.poll(Duration::from_millis(50)).await.expect("poll");
            let mut next = BTreeMap::new();
            for r in records {
                let value = String::from_utf8(r.value.unwrap_or_default().to_vec()).expect("utf8");
                processed.lock().expect("lock").push((name.clone(), value));
                next.insert(TopicPartition::new(&r.topic, r.partition), r.offset + 1);
            }
            consumer.commit_offsets(next).await.expect("a member's synchronous commit succeeds");
        }
        consumer.close().await.expect("close");
    })
}

/// Waits until the group's members and their partition counts match.
async fn await_assignment(admin: &EmbeddedAdmin, counts: &[usize]) -> BTreeMap<String, Vec<TopicPartition>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(g) = admin.describe_group("workers").await {
            let mut got: Vec<usize> = g.members.iter().map(|m| m.assignment.len()).collect();
            got.sort_unstable();
            let assigned: BTreeSet<&TopicPartition> = g.members.iter().flat_map(|m| &m.assignment).collect();
            if got == counts && g.state == "Stable" && assigned.len() == 6 {
                return g.members.into_iter().map(|m| (m.client_id, m.assignment)).collect();
            }
        }
        assert!(Instant::now() < deadline, "the group did not settle on {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn await_processed(processed: &Processed, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while processed.lock().expect("lock").len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} processed", processed.lock().expect("lock").len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_rebalance_when_one_leaves() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("work", 6, TopicConfig::default()).expect("create");
    let admin = EmbeddedAdmin::new(log.clone());
    let processed: Processed = Arc::default();
    produce(&log, "work", 300, |i| format!("key-{i}")).await;

    let (stop_all, stop) = watch::channel(false);
    let (stop_c, stop_c_rx) = watch::channel(false);
    let a = member(&log, "a", &processed, stop.clone());
    let b = member(&log, "b", &processed, stop.clone());
    let c = member(&log, "c", &processed, stop_c_rx);
    let assignment = await_assignment(&admin, &[2, 2, 2]).await;
    assert_eq!(assignment.len(), 3, "{assignment:?}");

    // C leaves while records keep coming: A and B take over its partitions.
    stop_c.send(true).expect("signal");
    c.await.expect("member c");
    let assignment = await_assignment(&admin, &[3, 3]).await;
    assert!(!assignment.contains_key("c"), "{assignment:?}");
    produce(&log, "work", 300, |i| format!("second-{i}")).await;
    await_processed(&processed, 600).await;
    stop_all.send(true).expect("signal");
    a.await.expect("member a");
    b.await.expect("member b");

    let processed = processed.lock().expect("lock").clone();
    let mut values: Vec<&String> = processed.iter().map(|(_, v)| v).collect();
    values.sort();
    let total = values.len();
    values.dedup();
    assert_eq!((total, values.len()), (600, 600), "every record processed exactly once by the group");
    let lag = admin.group_lag("workers").await.expect("lag");
    assert!(lag.partitions.iter().all(|p| p.lag == 0), "{:?}", lag.partitions);
    log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_heartbeating_loses_its_partitions() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("work", 6, TopicConfig::default()).expect("create");
    let admin = EmbeddedAdmin::new(log.clone());
    let processed: Processed = Arc::default();
    let (stop_all, stop) = watch::channel(false);
    let a = member(&log, "a", &processed, stop.clone());
    let b = member(&log, "b", &processed, stop.clone());
    await_assignment(&admin, &[3, 3]).await;

    // A third member joins through the protocol itself, takes its share,
    // then falls silent: no heartbeat, no leave.
    let coordinator = log.group_coordinator();
    let subscription = plexus_core::group::protocol::encode_subscription(&plexus_core::group::protocol::Subscription {
        topics: vec!["work".into()],
        ..Default::default()
    });
    // As a real member does, it rejoins when a rebalance starts between
    // its join and its sync (the others may rebalance twice).
    let mut member_id = None;
    let assigned: Bytes = loop {
        let joined = coordinator
            .join_group(
                "workers",
                JoinRequest {
                    member_id: member_id.clone(),
                    client_id: "silent".into(),
                    session_timeout_ms: 1500,
                    rebalance_timeout_ms: 5000,
                    protocols: vec![
                        ("range".into(), subscription.clone()),
                        ("cooperative-sticky".into(), subscription.clone()),
                    ],
                },
            )
            .await
            .expect("join");
        member_id = Some(joined.member_id.clone());
        match coordinator.sync_group("workers", &joined.member_id, joined.generation, None).await {
            Ok(assigned) => break assigned,
            Err(plexus_core::Error::Group {
                kind: plexus_core::group::GroupErrorKind::RebalanceInProgress, ..
            }) => {}
            Err(e) => panic!("sync: {e}"),
        }
    };
    let partitions = plexus_core::group::protocol::decode_assignment(&assigned).expect("assignment");
    assert_eq!(partitions.len(), 2, "the silent member got its share: {partitions:?}");
    await_assignment(&admin, &[2, 2, 2]).await;

    // Its session expires; A and B split its partitions.
    let assignment = await_assignment(&admin, &[3, 3]).await;
    assert!(!assignment.contains_key("silent"), "{assignment:?}");
    stop_all.send(true).expect("signal");
    a.await.expect("member a");
    b.await.expect("member b");
    log.close().expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_members_keep_their_partitions_when_one_joins() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("work", 6, TopicConfig::default()).expect("create");
    let admin = EmbeddedAdmin::new(log.clone());
    let processed: Processed = Arc::default();
    produce(&log, "work", 200, |i| format!("first-{i}")).await;
    let (stop_all, stop) = watch::channel(false);
    let a = member_with(&log, "a", "cooperative-sticky", &processed, stop.clone());
    let b = member_with(&log, "b", "cooperative-sticky", &processed, stop.clone());
    let before = await_assignment(&admin, &[3, 3]).await;
    let c = member_with(&log, "c", "cooperative-sticky", &processed, stop.clone());
    let after = await_assignment(&admin, &[2, 2, 2]).await;
    for name in ["a", "b"] {
        let kept: BTreeSet<_> = after[name].iter().collect();
        let had: BTreeSet<_> = before[name].iter().collect();
        assert!(kept.is_subset(&had), "{name} keeps partitions it had: {before:?} -> {after:?}");
    }
    assert_eq!(admin.describe_group("workers").await.expect("group").protocol.as_deref(), Some("cooperative-sticky"));
    produce(&log, "work", 200, |i| format!("second-{i}")).await;
    await_processed(&processed, 400).await;
    stop_all.send(true).expect("signal");
    for m in [a, b, c] {
        m.await.expect("member");
    }
    let processed = processed.lock().expect("lock").clone();
    let unique: BTreeSet<&String> = processed.iter().map(|(_, v)| v).collect();
    assert_eq!((processed.len(), unique.len()), (400, 400), "every record exactly once");
    log.close().expect("close");
}
