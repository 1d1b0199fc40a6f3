//! `PostgresCdcSource`: every insert, update and delete of the captured
//! tables as a change event, from PostgreSQL's logical decoding with the
//! built-in `pgoutput` plugin over the streaming replication protocol,
//! with Debezium's keys and event shape.
//!
//! On start the connector makes sure of its publication
//! (`publication.name`, created `FOR ALL TABLES` or for the included
//! tables per `publication.autocreate.mode`) and its replication slot
//! (`slot.name`, default `plexus_<connector>`). A new slot exports its
//! snapshot, and the snapshot (`snapshot.mode` `initial`) reads every
//! row of every captured table as a read event (`op: "r"`) at exactly the
//! point the slot streams from ([`snapshot`]): no row is both read and
//! streamed. A snapshot cut short by a crash continues where it stopped.
//!
//! Then it streams ([`stream`]): each transaction's changes as events —
//! `op` `c`, `u` or `d` with `before`, `after`, `source` (`lsn`, `txId`,
//! `table`, `ts_ms`, …) and `ts_ms` — keyed by the table's primary key, to
//! the topic `<topic.prefix>.<schema>.<table>` ([`relation`]). A delete
//! is followed by a tombstone (`tombstones.on.delete`); an update that
//! changes the key is a delete of the old key (and its tombstone) and a
//! create of the new one. A large transaction goes to the log in batches
//! (`max.batch.size` changes) as it arrives.
//!
//! The offsets say where the log stands: the commit LSN of the last
//! transaction in it, how many of its changes when only part is, and the
//! snapshot's progress until the stream is past it ([`CdcOffset`]). The
//! slot is confirmed (a standby status update) only up to transactions
//! whose changes are all in the log; after a crash the server sends again
//! what came after, and what the offsets cover is skipped. With
//! `heartbeat.interval.ms` a heartbeat record goes to
//! `__debezium-heartbeat.<topic.prefix>` and the slot moves on while the
//! captured tables are quiet, so the server can recycle its WAL.
//!
//! Without `table.include.list` every table is captured but the sinks'
//! own: the offsets table and the tables `PostgresSink`s write (noted in
//! `plexus_connect_sink_tables`), so a copy in the same database is not
//! captured again. Arrays are lists (`array.handling.mode=list`); one a
//! list cannot hold (a lower bound other than 1, more dimensions than the
//! column declares) goes to the error handler, or, with
//! `array.handling.mode=string`, every array travels as PostgreSQL's
//! literal for it, exactly.
//!
//! An update that leaves a large (TOASTed) value unchanged does not carry
//! it: with `REPLICA IDENTITY FULL` it is taken from the old row;
//! otherwise it is read from the table by key (its value now, which a
//! later change of it then follows).

mod relation;
mod snapshot;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::{DataType, Field, Fields};
use async_trait::async_trait;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use sqlx::postgres::PgConnection;

use super::pgoutput::{Cell, Message, Op, PG_EPOCH_US};
use super::types::{ArrayMode, Kind, parse_row};
use super::{Column, Database, SINK_OFFSETS_TABLE, SINK_TABLES, Table, list_tables, quote, sink_tables};
use crate::connector::{SourceConnector, SourceOffsets, SourceTask};
use crate::data::Value;
use crate::error::{Error, Result};
use crate::record::{ConnectRecord, SourceRecord};
use relation::{Events, Relation, Source, now_ms};
use snapshot::Progress;

/// `snapshot.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot when the slot is new, then stream (the default).
    Initial,
    /// Only stream (Debezium's `no_data`, formerly `never`).
    #[serde(alias = "never")]
    NoData,
    /// Snapshot on every start, then stream.
    Always,
}

/// `publication.autocreate.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicationMode {
    /// `CREATE PUBLICATION … FOR ALL TABLES` if it is missing (the default).
    AllTables,
    /// The publication must exist.
    Disabled,
    /// `CREATE PUBLICATION … FOR TABLE` the included tables.
    Filtered,
}

/// `PostgresCdcSource`'s own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCdcConfig {
    /// `connection.url`.
    #[serde(rename = "connection.url")]
    pub url: String,
    /// `connection.user`.
    #[serde(rename = "connection.user", alias = "database.user", default)]
    pub user: Option<String>,
    /// `connection.password`.
    #[serde(rename = "connection.password", alias = "database.password", default)]
    pub password: Option<String>,
    /// `topic.prefix`: topics are `<prefix>.<schema>.<table>`.
    #[serde(rename = "topic.prefix")]
    pub topic_prefix: String,
    /// `slot.name` (default `plexus_<connector name>`: a slot is the
    /// server's, shared by all its databases, so one per connector).
    #[serde(rename = "slot.name", default)]
    pub slot: String,
    /// `publication.name` (default `plexus_publication`).
    #[serde(rename = "publication.name", default = "default_publication")]
    pub publication: String,
    /// `publication.autocreate.mode`.
    #[serde(rename = "publication.autocreate.mode", default = "default_publication_mode")]
    pub publication_mode: PublicationMode,
    /// `plugin.name`: only `pgoutput`.
    #[serde(rename = "plugin.name", default = "default_plugin")]
    pub plugin: String,
    /// `snapshot.mode`.
    #[serde(rename = "snapshot.mode", default = "default_snapshot")]
    pub snapshot_mode: SnapshotMode,
    /// `table.include.list`: regular expressions matching `schema.table`.
    #[serde(rename = "table.include.list", default, deserialize_with = "crate::config::comma_list")]
    pub include: Vec<String>,
    /// `table.exclude.list`.
    #[serde(rename = "table.exclude.list", default, deserialize_with = "crate::config::comma_list")]
    pub exclude: Vec<String>,
    /// `tombstones.on.delete` (default true).
    #[serde(rename = "tombstones.on.delete", default = "yes", deserialize_with = "crate::config::from_str")]
    pub tombstones: bool,
    /// `heartbeat.interval.ms` (0: none).
    #[serde(rename = "heartbeat.interval.ms", default, deserialize_with = "crate::config::from_str")]
    pub heartbeat_ms: u64,
    /// `poll.interval.ms`: the wait when there are no changes (default 500).
    #[serde(rename = "poll.interval.ms", default = "default_poll", deserialize_with = "crate::config::from_str")]
    pub poll_interval_ms: u64,
    /// `max.batch.size`: changes (or snapshot rows) read per poll; a larger
    /// transaction goes to the log in several (default 2048).
    #[serde(rename = "max.batch.size", default = "default_batch", deserialize_with = "crate::config::from_str")]
    pub max_batch: usize,
    /// `array.handling.mode`: `list` (the default) or `string`.
    #[serde(rename = "array.handling.mode", default)]
    pub array_mode: ArrayMode,
}

fn default_publication() -> String {
    "plexus_publication".into()
}
fn default_publication_mode() -> PublicationMode {
    PublicationMode::AllTables
}
fn default_plugin() -> String {
    "pgoutput".into()
}
fn default_snapshot() -> SnapshotMode {
    SnapshotMode::Initial
}
fn yes() -> bool {
    true
}
fn default_poll() -> u64 {
    500
}
fn default_batch() -> usize {
    2048
}

/// `plexus_<connector>`, lower-case, other characters as `_`, cut to
/// PostgreSQL's 63 bytes.
fn default_slot(connector: &str) -> String {
    let mut slot: String = format!("plexus_{connector}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    slot.truncate(63);
    slot
}

/// The configured connector.
#[derive(Debug)]
pub struct PostgresCdcConnector {
    name: String,
    config: PostgresCdcConfig,
    db: Database,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl PostgresCdcConnector {
    pub(crate) fn new(name: &str, mut config: PostgresCdcConfig) -> Result<Self> {
        let err = |key: &str, reason: String| Error::config(name, key, reason);
        if config.slot.is_empty() {
            config.slot = default_slot(name);
        }
        let db = Database::new(name, &config.url, config.user.as_deref(), config.password.as_deref())?;
        if config.plugin != "pgoutput" {
            return Err(err("plugin.name", format!("{:?}: Plexus decodes the built-in pgoutput only", config.plugin)));
        }
        if config.topic_prefix.trim().is_empty() {
            return Err(err("topic.prefix", "empty; it names the topics (<prefix>.<schema>.<table>)".into()));
        }
        let ident = Regex::new("^[a-z_][a-z0-9_]*$").map_err(|e| err("slot.name", e.to_string()))?;
        if !ident.is_match(&config.slot) {
            return Err(err(
                "slot.name",
                format!("{:?}: a slot name is lower-case letters, digits and underscores", config.slot),
            ));
        }
        let patterns = |key: &str, list: &[String]| -> Result<Vec<Regex>> {
            list.iter()
                .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| err(key, format!("{p:?}: {e}"))))
                .collect()
        };
        let include = patterns("table.include.list", &config.include)?;
        let exclude = patterns("table.exclude.list", &config.exclude)?;
        if config.max_batch == 0 {
            return Err(err("max.batch.size", "must be at least 1".into()));
        }
        Ok(Self { name: name.to_owned(), config, db, include, exclude })
    }
}

#[async_trait]
impl SourceConnector for PostgresCdcConnector {
    async fn validate(&self) -> Result<()> {
        let mut conn = self.db.connect().await?;
        let level: String = sqlx::query_scalar("SHOW wal_level")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.db.error("reading wal_level", &e))?;
        if level != "logical" {
            return Err(Error::connector(
                &self.name,
                format!("the server's wal_level is {level}; logical decoding needs wal_level=logical (and a restart)"),
            ));
        }
        Ok(())
    }

    /// One task: a slot has one reader.
    fn task_count(&self, _tasks_max: usize) -> usize {
        1
    }

    fn task(&self, _index: usize, _count: usize) -> Result<Box<dyn SourceTask>> {
        Ok(Box::new(CdcTask {
            connector: self.name.clone(),
            config: self.config.clone(),
            db: self.db.clone(),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            conn: None,
            events: Events {
                prefix: self.config.topic_prefix.clone(),
                database: String::new(),
                tombstones: self.config.tombstones,
                partition: Arc::new(json!({ "server": self.config.topic_prefix })),
            },
            types: HashMap::new(),
            relations: HashMap::new(),
            at: CdcOffset::default(),
            resume: (0, None),
            snapshot: None,
            stream: None,
            tx: None,
            idle_end: 0,
            confirmed: 0,
            last_heartbeat: Instant::now(),
            copies: std::collections::HashSet::new(),
        }))
    }
}

/// Where the log stands, as the connector's offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CdcOffset {
    /// The commit LSN of the last transaction whose changes are in the log
    /// (all of them, or `changes` of them).
    #[serde(default)]
    lsn: u64,
    /// How many of that transaction's changes are in the log, while it is
    /// written in parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changes: Option<u64>,
    /// Where the slot may be confirmed once this is in the log.
    #[serde(default)]
    end: u64,
    /// The snapshot's progress, until the stream is past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<Progress>,
}

/// The transaction being streamed.
struct Tx {
    final_lsn: u64,
    xid: u32,
    ts_ms: i64,
    /// Its changes seen so far.
    changes: u64,
    /// How many of its first changes are in the log already.
    skip: u64,
}

struct CdcTask {
    connector: String,
    config: PostgresCdcConfig,
    db: Database,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// For the catalog (and values a change does not carry).
    conn: Option<PgConnection>,
    events: Events,
    /// Type OID → name.
    types: HashMap<u32, String>,
    /// Relation OID → the table, `None` for one not captured.
    relations: HashMap<u32, Option<Arc<Relation>>>,
    /// Where the log stands once what was polled is committed.
    at: CdcOffset,
    /// Where the log stood at the start: (commit LSN, changes of it).
    resume: (u64, Option<u64>),
    snapshot: Option<snapshot::Reader>,
    stream: Option<ReplicationClient>,
    tx: Option<Tx>,
    /// The server's WAL end from its last keepalive between transactions:
    /// everything before it that we are sent has been.
    idle_end: u64,
    /// The position last reported to the server.
    confirmed: u64,
    last_heartbeat: Instant,
    /// Tables Plexus's sinks write (`schema.table`).
    copies: std::collections::HashSet<String>,
}

impl CdcTask {
    async fn conn(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            self.conn = Some(self.db.connect().await?);
        }
        self.conn.as_mut().ok_or_else(|| Error::connector(&self.connector, "no connection"))
    }

    /// Whether a table is captured: the include list's (all, without
    /// one, but the tables Plexus's sinks keep and write), less the
    /// exclude list's.
    fn captured(&self, schema: &str, table: &str) -> bool {
        if table == SINK_OFFSETS_TABLE || table == SINK_TABLES {
            return false;
        }
        let name = format!("{schema}.{table}");
        let included = if self.include.is_empty() {
            !self.copies.contains(&name)
        } else {
            self.include.iter().any(|r| r.is_match(&name))
        };
        included && !self.exclude.iter().any(|r| r.is_match(&name))
    }

    /// Reads which tables Plexus's sinks write here (see [`captured`](Self::captured)).
    async fn refresh_copies(&mut self) -> Result<()> {
        if !self.include.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let conn = self.conn().await?;
        let copies = sink_tables(conn).await.map_err(|e| db.error("reading the tables sinks write", &e))?;
        self.copies = copies.into_iter().collect();
        Ok(())
    }

    /// The tables to snapshot (and to publish, in `filtered` mode).
    async fn tables(&mut self) -> Result<Vec<Table>> {
        let db = self.db.clone();
        let conn = self.conn().await?;
        let mut tables = list_tables(conn).await.map_err(|e| db.error("listing tables", &e))?;
        tables.retain(|t| self.captured(t.schema.as_deref().unwrap_or("public"), &t.name));
        Ok(tables)
    }

    /// Makes sure of the publication; whether the slot exists.
    async fn prepare(&mut self) -> Result<bool> {
        let (db, slot, publication, mode) =
            (self.db.clone(), self.config.slot.clone(), self.config.publication.clone(), self.config.publication_mode);
        let tables = if mode == PublicationMode::Filtered { self.tables().await? } else { Vec::new() };
        let conn = self.conn().await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(&publication)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db.error("reading the publications", &e))?;
        if !exists {
            let sql = match mode {
                PublicationMode::Disabled => {
                    return Err(Error::config(
                        &db.connector,
                        "publication.name",
                        format!(
                            "publication {publication:?} does not exist and publication.autocreate.mode=disabled; \
                             CREATE PUBLICATION it first"
                        ),
                    ));
                }
                PublicationMode::AllTables => format!("CREATE PUBLICATION {} FOR ALL TABLES", quote(&publication)),
                PublicationMode::Filtered => {
                    if tables.is_empty() {
                        return Err(Error::config(
                            &db.connector,
                            "table.include.list",
                            "matches no table, so there is nothing to publish",
                        ));
                    }
                    let list: Vec<String> = tables.iter().map(Table::quoted).collect();
                    format!("CREATE PUBLICATION {} FOR TABLE {}", quote(&publication), list.join(", "))
                }
            };
            let exists = "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)";
            super::create_once(conn, Some((exists, &publication)), &sql)
                .await
                .map_err(|e| db.error(&format!("creating publication {publication}"), &e))?;
            tracing::info!(connector = %db.connector, %publication, "created the publication");
        }
        let database: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db.error("reading the database name", &e))?;
        let slot_exists = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)")
            .bind(&slot)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db.error("reading the replication slots", &e))?;
        self.events.database = database;
        Ok(slot_exists)
    }

    /// Starts reading the snapshot `exported` describes.
    async fn begin_snapshot(&mut self, exported: stream::Exported, progress: Progress) -> Result<()> {
        let tables = self.tables().await?;
        let reader = snapshot::Reader::open(
            &self.db,
            &exported.name,
            exported.lsn,
            tables,
            &progress,
            self.config.max_batch,
            self.config.array_mode,
        )
        .await?;
        // Imported: the exporting session may end (a temporary slot with it).
        drop(exported);
        self.at.snapshot = Some(progress);
        self.snapshot = Some(reader);
        Ok(())
    }

    /// The next rows of the snapshot as read events; `None` once it is done.
    async fn snapshot_rows(&mut self) -> Result<Option<Vec<SourceRecord>>> {
        let Some(reader) = self.snapshot.as_mut() else { return Ok(None) };
        let mut progress = self.at.snapshot.take().unwrap_or_default();
        let next = reader.next(&self.db, &self.config.topic_prefix, &mut progress).await;
        let lsn = reader.lsn;
        self.at.snapshot = Some(progress);
        let Some(chunk) = next? else {
            self.snapshot = None;
            return Ok(None);
        };
        let mut out = Vec::with_capacity(chunk.rows.len());
        let count = chunk.rows.len();
        for (i, row) in chunk.rows.into_iter().enumerate() {
            let (values, failure) = parse_row(&chunk.relation.columns, row.iter().map(Option::as_deref));
            let failure = failure.map(|(i, e)| format!("column {:?}: {e}", chunk.relation.columns[i].name));
            let last = chunk.last && i + 1 == count;
            let source = Source { lsn, tx: None, ts_ms: now_ms(), snapshot: if last { "last" } else { "true" } };
            let mut events = self.events.records(&chunk.relation, Op::Read, None, Some(values), &source);
            if let Some(reason) = failure {
                for e in &mut events {
                    e.failure = Some(reason.clone());
                }
            }
            out.extend(events);
        }
        Ok(Some(out))
    }

    /// The relation a `pgoutput` description names, made once per change
    /// of it: kinds and key from the catalog, which knows what pgoutput
    /// does not say (a domain's base type, an array's dimensions).
    async fn relation(
        &mut self,
        oid: u32,
        schema: String,
        name: String,
        described: Vec<(u8, String, u32, i32)>,
    ) -> Result<()> {
        if !self.relations.contains_key(&oid) {
            // A table seen first: a sink may have begun writing it since.
            self.refresh_copies().await?;
        }
        if !self.captured(&schema, &name) {
            self.relations.insert(oid, None);
            return Ok(());
        }
        if self
            .relations
            .get(&oid)
            .and_then(Option::as_ref)
            .is_some_and(|r| r.described == described && r.schema == schema && r.name == name)
        {
            return Ok(());
        }
        let table = Table { schema: Some(schema.clone()), name: name.clone() };
        let db = self.db.clone();
        let (prefix, arrays) = (self.config.topic_prefix.clone(), self.config.array_mode);
        let conn = self.conn().await?;
        let catalog = relation::describe(conn, &prefix, &table, arrays)
            .await
            .map_err(|e| db.error(&format!("reading table {table}"), &e))?;
        let mut columns = Vec::with_capacity(described.len());
        for (_, col, type_oid, typmod) in &described {
            let kind = match catalog.columns.iter().find(|c| c.name == *col) {
                Some(c) => c.kind.clone(),
                None => {
                    let mut kind = Kind::of(&self.type_name(*type_oid).await?, *typmod);
                    kind.apply_array_mode(arrays);
                    kind
                }
            };
            columns.push(Column { name: col.clone(), kind, nullable: true });
        }
        // The key is the primary key (pgoutput's flags mark the replica
        // identity: every column under REPLICA IDENTITY FULL).
        let key_order = catalog
            .key_order
            .iter()
            .filter_map(|&i| columns.iter().position(|c| c.name == catalog.columns[i].name))
            .collect();
        let mut relation = Relation::new(&prefix, schema, name, columns, key_order, catalog.key_types.clone());
        relation.described = described;
        self.relations.insert(oid, Some(Arc::new(relation)));
        Ok(())
    }

    async fn type_name(&mut self, oid: u32) -> Result<String> {
        if let Some(name) = self.types.get(&oid) {
            return Ok(name.clone());
        }
        let db = self.db.clone();
        let conn = self.conn().await?;
        let name: String = sqlx::query_scalar("SELECT typname::text FROM pg_type WHERE oid = $1::int8::oid")
            .bind(i64::from(oid))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db.error(&format!("reading type {oid}"), &e))?;
        self.types.insert(oid, name.clone());
        Ok(name)
    }

    /// Values an update left unchanged and did not send (TOASTed ones,
    /// without `REPLICA IDENTITY FULL`), read from the table by key.
    async fn unchanged(&mut self, relation: &Relation, cells: &mut [Cell]) -> Result<()> {
        let missing: Vec<usize> = (0..cells.len()).filter(|&i| cells[i] == Cell::Unchanged).collect();
        if missing.is_empty() || relation.key_order.is_empty() {
            return Ok(());
        }
        let mut filter = Vec::new();
        for (&i, t) in relation.key_order.iter().zip(&relation.key_types) {
            let Some(Cell::Text(text)) = cells.get(i) else { return Ok(()) };
            filter.push(format!("{} = '{}'::{t}", quote(&relation.columns[i].name), text.replace('\'', "''")));
        }
        let select: Vec<String> =
            missing.iter().map(|&i| format!("{}::text", quote(&relation.columns[i].name))).collect();
        let table = Table { schema: Some(relation.schema.clone()), name: relation.name.clone() };
        let sql = format!("SELECT {} FROM {} WHERE {}", select.join(", "), table.quoted(), filter.join(" AND "));
        let db = self.db.clone();
        let conn = self.conn().await?;
        let row = sqlx::query(&sql)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db.error(&format!("reading unchanged values of {table}"), &e))?;
        if let Some(row) = row {
            for (j, &i) in missing.iter().enumerate() {
                let text: Option<String> = sqlx::Row::try_get(&row, j).unwrap_or(None);
                cells[i] = text.map_or(Cell::Null, Cell::Text);
            }
        }
        Ok(())
    }

    /// The events of one streamed change (none when the snapshot or the
    /// log has it already).
    async fn change(
        &mut self,
        oid: u32,
        op: Op,
        old: Option<Vec<Cell>>,
        new: Option<Vec<Cell>>,
        out: &mut Vec<SourceRecord>,
    ) -> Result<()> {
        let Some(tx) = self.tx.as_mut() else { return Ok(()) };
        tx.changes += 1;
        if tx.changes <= tx.skip {
            return Ok(()); // in the log before a crash
        }
        let (lsn, xid, ts_ms, changes) = (tx.final_lsn, tx.xid, tx.ts_ms, tx.changes);
        self.at.lsn = lsn;
        self.at.changes = Some(changes);
        let relation = match self.relations.get(&oid) {
            Some(Some(relation)) => Arc::clone(relation),
            Some(None) => return Ok(()), // a table not captured
            None => {
                return Err(Error::connector(
                    &self.connector,
                    format!("a change of relation {oid}, which pgoutput has not described"),
                ));
            }
        };
        // An unchanged TOASTed value: from the old row when the server
        // sends it (REPLICA IDENTITY FULL), else from the table.
        let mut new = new.map(|cells| {
            cells
                .into_iter()
                .enumerate()
                .map(|(i, c)| match (c, old.as_ref().and_then(|o| o.get(i))) {
                    (Cell::Unchanged, Some(Cell::Text(t))) => Cell::Text(t.clone()),
                    (c, _) => c,
                })
                .collect::<Vec<_>>()
        });
        if let Some(cells) = new.as_mut() {
            self.unchanged(&relation, cells).await?;
        }
        let mut failure = None;
        let mut values = |tuple: Option<Vec<Cell>>| {
            tuple.map(|cells| {
                let texts = cells.iter().map(|c| match c {
                    Cell::Text(t) => Some(t.as_str()),
                    Cell::Null | Cell::Unchanged => None,
                });
                let (values, bad) = parse_row(&relation.columns, texts);
                if failure.is_none() {
                    failure = bad.map(|(i, e)| format!("column {:?}: {e}", relation.columns[i].name));
                }
                values
            })
        };
        let (before, after) = (values(old), values(new));
        let source = Source { lsn, tx: Some(xid), ts_ms, snapshot: "false" };
        let progress = self.at.snapshot.as_ref();
        let covered = |row: &Option<Vec<Value>>| {
            progress.is_some_and(|p| {
                let key = row.as_deref().map(|r| relation.key_of(r));
                p.covers(&relation, key.as_deref().filter(|k| !k.is_empty()), lsn)
            })
        };
        let mut events = Vec::new();
        match (op, before, after) {
            // A key change: a delete of the old key (and its tombstone) and
            // a create of the new one, as Debezium emits it.
            (Op::Update, Some(before), Some(after)) if relation.key_changed(&before, &after) => {
                let (old_row, new_row) = (Some(before), Some(after));
                if !covered(&old_row) {
                    events.extend(self.events.records(&relation, Op::Delete, old_row, None, &source));
                }
                if !covered(&new_row) {
                    events.extend(self.events.records(&relation, Op::Create, None, new_row, &source));
                }
            }
            (op, before, after) => {
                if !covered(if after.is_some() { &after } else { &before }) {
                    events.extend(self.events.records(&relation, op, before, after, &source));
                }
            }
        }
        if let Some(reason) = failure {
            for e in &mut events {
                e.failure = Some(reason.clone());
            }
        }
        out.extend(events);
        Ok(())
    }

    /// Reads the stream until a batch is full or it is quiet for a poll
    /// interval.
    async fn stream_rows(&mut self) -> Result<Vec<SourceRecord>> {
        if self.stream.is_none() {
            let (db, slot, publication) = (self.db.clone(), self.config.slot.clone(), self.config.publication.clone());
            let conn = self.conn().await?;
            self.stream = Some(stream::start(&db, conn, &slot, &publication).await?);
            tracing::info!(connector = %self.connector, %slot, "streaming");
        }
        let max = self.config.max_batch;
        let wait = Duration::from_millis(self.config.poll_interval_ms.max(1));
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < max {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Once something is read, only what is already here joins it.
            let patience = if out.is_empty() { deadline - now } else { Duration::from_millis(2) };
            let Some(stream) = self.stream.as_mut() else { break };
            let event = match tokio::time::timeout(patience, stream.recv()).await {
                Err(_) => break,
                Ok(Ok(Some(event))) => event,
                Ok(Ok(None)) => return Err(Error::connector(&self.connector, "the replication stream ended")),
                Ok(Err(e)) => return Err(Error::connector(&self.connector, format!("the replication stream: {e}"))),
            };
            match event {
                ReplicationEvent::Begin { final_lsn, xid, commit_time_micros } => {
                    let final_lsn = final_lsn.as_u64();
                    let (lsn, changes) = self.resume;
                    let skip = if final_lsn < lsn || (final_lsn == lsn && changes.is_none()) {
                        u64::MAX
                    } else if final_lsn == lsn {
                        changes.unwrap_or(0)
                    } else {
                        0
                    };
                    // Microseconds since 2000-01-01.
                    let ts_ms = (commit_time_micros + PG_EPOCH_US).div_euclid(1000);
                    self.tx = Some(Tx { final_lsn, xid, ts_ms, changes: 0, skip });
                }
                ReplicationEvent::XLogData { data, .. } => {
                    let message = Message::parse(&data)
                        .map_err(|e| Error::connector(&self.connector, format!("a pgoutput message: {e}")))?;
                    match message {
                        Message::Relation { oid, schema, name, columns } => {
                            self.relation(oid, schema, name, columns).await?;
                        }
                        Message::Change { oid, op, old, new } => self.change(oid, op, old, new, &mut out).await?,
                        Message::Other => {}
                    }
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    let Some(tx) = self.tx.take() else { continue };
                    // A transaction the log had whole leaves the position;
                    // any other is after it, and now whole in the log.
                    if tx.skip != u64::MAX {
                        self.at.lsn = tx.final_lsn;
                        self.at.changes = None;
                    }
                    self.at.end = self.at.end.max(end_lsn.as_u64());
                    if self.at.snapshot.as_ref().is_some_and(|p| p.done && self.at.lsn > p.newest()) {
                        self.at.snapshot = None; // the stream is past every snapshot point
                    }
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if self.tx.is_none() {
                        self.idle_end = self.idle_end.max(wal_end.as_u64());
                    }
                }
                ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
            }
        }
        Ok(out)
    }

    /// A heartbeat record, letting the slot move to `end`.
    fn heartbeat(&mut self, end: u64) -> SourceRecord {
        self.last_heartbeat = Instant::now();
        let topic = format!("__debezium-heartbeat.{}", self.config.topic_prefix);
        let key = Value::Struct(vec![("serverName".into(), Value::String(self.config.topic_prefix.clone()))]);
        let value = Value::Struct(vec![("ts_ms".into(), Value::Int64(now_ms()))]);
        let mut record = ConnectRecord::new(topic, value).with_key(key);
        record.value_schema = Some(DataType::Struct(Fields::from(vec![Field::new("ts_ms", DataType::Int64, false)])));
        self.at.end = self.at.end.max(end);
        self.events.source_record(record)
    }

    /// Reports `end` to the server as durable (the slot may drop what
    /// comes before it).
    fn confirm(&mut self, end: u64) {
        if end > self.confirmed
            && let Some(stream) = &self.stream
        {
            stream.update_applied_lsn(Lsn::from_u64(end));
            self.confirmed = end;
        }
    }
}

#[async_trait]
impl SourceTask for CdcTask {
    async fn start(&mut self, offsets: &SourceOffsets) -> Result<()> {
        let stored: Option<CdcOffset> =
            offsets.get(&self.events.partition.to_string()).and_then(|(_, o)| serde_json::from_value(o.clone()).ok());
        let slot_exists = self.prepare().await?;
        self.refresh_copies().await?;
        let progress = stored.as_ref().and_then(|s| s.snapshot.clone());
        let snapshot = match self.config.snapshot_mode {
            SnapshotMode::NoData => false,
            SnapshotMode::Always => true,
            // A new slot, none stored yet, or a snapshot a crash cut short.
            SnapshotMode::Initial => !slot_exists || stored.is_none() || progress.as_ref().is_some_and(|p| !p.done),
        };
        self.resume = stored.as_ref().map_or((0, None), |s| (s.lsn, s.changes));
        self.at = stored.clone().unwrap_or_default();
        self.at.end = 0;
        let (slot, publication) = (self.config.slot.clone(), self.config.publication.clone());
        if !slot_exists {
            let (_, exported) = stream::create_slot(&self.db, &slot, &publication, snapshot, false).await?;
            if let Some(exported) = exported {
                // A new slot: whatever was stored belongs to another.
                self.at = CdcOffset::default();
                self.resume = (0, None);
                self.begin_snapshot(exported, Progress::default()).await?;
            }
        } else if snapshot {
            // The slot streams from further back than now: the snapshot is
            // read at a temporary slot's point, and the stream's changes
            // of what it read up to there are dropped.
            let temporary = format!("{}_snapshot_{}", slot, std::process::id());
            let temporary: String = temporary.chars().take(63).collect();
            let (_, exported) = stream::create_slot(&self.db, &temporary, &publication, true, true).await?;
            let exported = exported.ok_or_else(|| Error::connector(&self.connector, "no snapshot was exported"))?;
            let progress = match self.config.snapshot_mode {
                SnapshotMode::Always => Progress::default(),
                _ => progress.unwrap_or_default(),
            };
            self.begin_snapshot(exported, progress).await?;
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let mut records = if self.snapshot.is_some() {
            match self.snapshot_rows().await {
                Ok(Some(records)) => records,
                Ok(None) => Vec::new(),
                Err(e) => {
                    self.snapshot = None;
                    return Err(e);
                }
            }
        } else {
            match self.stream_rows().await {
                Ok(records) => records,
                Err(e) => {
                    self.stream = None;
                    self.conn = None;
                    self.tx = None;
                    return Err(e);
                }
            }
        };
        if self.snapshot.is_none() && records.is_empty() && self.tx.is_none() {
            let heartbeat_due = self.config.heartbeat_ms > 0
                && self.last_heartbeat.elapsed() >= Duration::from_millis(self.config.heartbeat_ms);
            let end = self.at.end.max(self.idle_end);
            if heartbeat_due && end > 0 {
                records.push(self.heartbeat(end));
            } else {
                // Nothing in flight: what was skipped or filtered is durable.
                let end = self.at.end;
                self.confirm(end);
            }
        }
        if let Some(last) = records.last_mut() {
            last.source_offset = serde_json::to_value(&self.at).unwrap_or(Json::Null);
        }
        Ok(records)
    }

    async fn commit(&mut self, offsets: &[(Json, Json)]) -> Result<()> {
        if let Some(end) = offsets.iter().filter_map(|(_, o)| o.get("end").and_then(Json::as_u64)).max() {
            self.confirm(end);
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(stream) = self.stream.take() {
            stream.stop();
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.join()).await;
        }
        if let Some(conn) = self.conn.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
        self.snapshot = None;
        Ok(())
    }
}
