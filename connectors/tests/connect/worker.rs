//! The worker's own promises: a task that panics — a bug, never bad
//! input — is a FAILED task with the panic's message in its status, not a
//! task that silently stopped while its connector still says RUNNING.

use async_trait::async_trait;
use plexus_connectors::connector::{Connector, ConnectorClass, SourceConnector, SourceOffsets, SourceTask};
use plexus_connectors::{ConnectorConfig, Result, SourceRecord, State};

use super::{Connect, until};

/// A source whose task panics on its first poll.
#[derive(Debug, serde::Deserialize)]
struct PanickingSource {}

#[typetag::deserialize(name = "PanickingSource")]
impl ConnectorClass for PanickingSource {
    fn configure(&self, _config: &ConnectorConfig) -> Result<Connector> {
        Ok(Connector::Source(Box::new(Panics)))
    }
}

struct Panics;

#[async_trait]
impl SourceConnector for Panics {
    fn task(&self, _index: usize, _count: usize) -> Result<Box<dyn SourceTask>> {
        Ok(Box::new(Panics))
    }
}

#[async_trait]
impl SourceTask for Panics {
    async fn start(&mut self, _offsets: &SourceOffsets) -> Result<()> {
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let cells: Vec<i64> = Vec::new();
        // The kind of bug this test stands for: an index out of bounds.
        let _ = cells[usize::from(cells.is_empty())];
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_panics_is_failed_with_the_message_in_its_status() {
    let connect = Connect::new();
    connect.start(r#"{"name": "boom", "config": {"connector.class": "PanickingSource"}}"#).await;
    until("the task is failed", || connect.worker.status("boom").is_ok_and(|s| s.state == State::Failed)).await;
    let status = connect.worker.status("boom").expect("status");
    let trace = status.tasks[0].trace.clone().unwrap_or_default();
    assert!(trace.starts_with("task 0 panicked: index out of bounds"), "{trace}");
    assert_eq!(status.tasks[0].state, State::Failed);
}
