//! The replication connection (the `pgwire-replication` crate: sqlx does
//! not speak PostgreSQL's streaming replication protocol, and this crate
//! is a small, tokio-based, pure-Rust client of it with bounded buffers,
//! keepalive replies and standby status updates that report only what its
//! caller says is durable).
//!
//! Two uses: creating a slot that exports its snapshot (on a session that
//! does nothing else until the snapshot is imported elsewhere), and
//! streaming a slot's changes with `START_REPLICATION … (proto_version
//! '1', publication_names …)`. Protocol version 1 sends each transaction
//! whole, at its commit, in commit order: the server spills a large one to
//! disk (`logical_decoding_work_mem`), and the task writes it to the log in
//! batches as it arrives, so it never sits whole in memory on either side,
//! and nothing uncommitted ever reaches the log (version 2's streaming of
//! in-progress transactions would need them held until their commit or
//! abort).

use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig};

use super::super::{Database, quote};
use crate::error::{Error, Result};

/// What the session reads values in: the text forms `parse_text` reads.
const SESSION_OPTIONS: &str =
    "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

/// How long a slot held by another session is waited for before that
/// session, if it is this connector's own (a killed process's backend the
/// server has not yet noticed is gone), is ended.
const OWN_HOLDER_GRACE: Duration = Duration::from_secs(5);
/// How long a slot held by some other client is waited for.
const OTHER_HOLDER_WAIT: Duration = Duration::from_secs(30);

fn config(db: &Database, slot: &str, publication: &str) -> ReplicationConfig {
    let (host, port, user, password, database) = db.endpoint();
    ReplicationConfig::new(host, user, password, database, slot, publication)
        .with_port(port)
        .with_application_name(db.application_name())
        .with_options(SESSION_OPTIONS)
        .with_status_interval(Duration::from_millis(500))
}

/// A slot made with its snapshot exported: the snapshot stays importable
/// (`SET TRANSACTION SNAPSHOT`) while this lives.
pub(super) struct Exported {
    /// The slot's consistent point: the snapshot sees every transaction
    /// that committed before it, the slot streams those after.
    pub(super) lsn: u64,
    /// The snapshot's name.
    pub(super) name: String,
    _session: ReplicationClient,
}

/// Creates a logical slot for `pgoutput`: exporting its snapshot when
/// `export` (the session stays open in the result until it is dropped),
/// `temporary` ones live only as long as that session.
pub(super) async fn create_slot(
    db: &Database,
    slot: &str,
    publication: &str,
    export: bool,
    temporary: bool,
) -> Result<(u64, Option<Exported>)> {
    let fail = |doing: &str, e: pgwire_replication::PgWireError| {
        Error::connector(db.connector(), format!("{doing} replication slot {slot}: {e}"))
    };
    let mut session =
        ReplicationClient::connect_gated(config(db, slot, publication)).await.map_err(|e| fail("connecting for", e))?;
    let sql = format!(
        "CREATE_REPLICATION_SLOT {} {}LOGICAL pgoutput {}",
        quote(slot),
        if temporary { "TEMPORARY " } else { "" },
        if export { "EXPORT_SNAPSHOT" } else { "NOEXPORT_SNAPSHOT" }
    );
    let rows = session.simple_query(&sql).await.map_err(|e| fail("creating", e))?;
    let cell = |i: usize| {
        rows.first().and_then(|r| r.get(i)).and_then(Option::as_ref).map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let lsn = cell(1)
        .and_then(|t| Lsn::parse(&t).ok())
        .ok_or_else(|| Error::connector(db.connector(), format!("CREATE_REPLICATION_SLOT {slot} gave no LSN")))?
        .as_u64();
    tracing::info!(connector = %db.connector(), %slot, lsn = %Lsn::from_u64(lsn), temporary, "created the replication slot");
    if !export {
        return Ok((lsn, None));
    }
    let name = cell(2).ok_or_else(|| {
        Error::connector(db.connector(), format!("CREATE_REPLICATION_SLOT {slot} exported no snapshot"))
    })?;
    Ok((lsn, Some(Exported { lsn, name, _session: session })))
}

/// Streams `slot` from its confirmed position. A slot still held by a
/// session this connector had before (a killed process's) is waited for
/// briefly, then that session is ended; one held by another client is
/// waited for, then refused with who holds it.
pub(super) async fn start(
    db: &Database,
    catalog: &mut sqlx::PgConnection,
    slot: &str,
    publication: &str,
) -> Result<ReplicationClient> {
    let started = Instant::now();
    loop {
        let mut client = ReplicationClient::connect(config(db, slot, publication))
            .await
            .map_err(|e| Error::connector(db.connector(), format!("streaming replication slot {slot}: {e}")))?;
        let error = match client.wait_started().await {
            Ok(()) => return Ok(client),
            Err(e) => e.to_string(),
        };
        if !error.contains("is active for PID") {
            return Err(Error::connector(db.connector(), format!("streaming replication slot {slot}: {error}")));
        }
        let holder: Option<(i32, String)> = sqlx::query_as(
            "SELECT s.active_pid, coalesce(a.application_name, '') FROM pg_replication_slots s \
             LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1 AND s.active_pid IS NOT NULL",
        )
        .bind(slot)
        .fetch_optional(&mut *catalog)
        .await
        .map_err(|e| db.error("reading who holds the replication slot", &e))?;
        let waited = started.elapsed();
        match holder {
            None => {}
            Some((pid, application)) if application == db.application_name() && waited >= OWN_HOLDER_GRACE => {
                tracing::warn!(connector = %db.connector(), %slot, pid, "ending the backend of this connector's earlier run, which still holds the slot");
                sqlx::query("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .execute(&mut *catalog)
                    .await
                    .map_err(|e| db.error(&format!("ending backend {pid}, which holds replication slot {slot}"), &e))?;
            }
            Some((pid, application)) if application != db.application_name() && waited >= OTHER_HOLDER_WAIT => {
                return Err(Error::connector(
                    db.connector(),
                    format!(
                        "replication slot {slot} is held by backend {pid} ({application:?}) of another client; stop it, \
                         or give this connector its own slot.name"
                    ),
                ));
            }
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
