//! `PostgresCdcSource`: every insert, update and delete of the captured
//! tables as a change event, from PostgreSQL's logical decoding with the
//! built-in `pgoutput` plugin, with Debezium's keys and event shape.
//!
//! On start the connector makes sure of its publication
//! (`publication.name`, created `FOR ALL TABLES` or for the included
//! tables per `publication.autocreate.mode`) and its replication slot
//! (`slot.name`). A new slot starts with a snapshot (`snapshot.mode`
//! `initial`): every row of every captured table as a read event
//! (`op: "r"`), taken right after the slot was created, so no change is
//! missed (a row changed between the two is in both, and the change
//! event after the snapshot row leaves the same final state).
//!
//! Then it streams. sqlx does not speak the replication protocol, so the
//! task polls the slot through SQL, as the issue allows:
//! `pg_logical_slot_peek_binary_changes` returns whole transactions of
//! `pgoutput` messages after the slot's confirmed position, which the task
//! decodes ([`Message`]) into events — `op` `c`, `u` or `d` with `before`,
//! `after`, `source` (`lsn`, `txId`, `table`, `ts_ms`, …) and `ts_ms` —
//! keyed by the table's primary key, to the topic
//! `<topic.prefix>.<schema>.<table>`. A delete is followed by a tombstone
//! (`tombstones.on.delete`) so a compacted topic forgets the key. Only
//! once the worker has committed a batch to the log does the task advance
//! the slot (`pg_replication_slot_advance`) to the batch's last commit:
//! a crash in between replays transactions the stored offset (`lsn`)
//! already covers, and they are skipped. With `heartbeat.interval.ms` a
//! heartbeat record goes to `__debezium-heartbeat.<topic.prefix>` and the
//! slot advances even when the captured tables are quiet, so the server
//! can recycle its WAL.
//!
//! The record key is the table's primary key. An update that leaves a
//! large (TOASTed) value unchanged does not carry it: with `REPLICA
//! IDENTITY FULL` it is taken from the old row; otherwise it is null in
//! `after`, as PostgreSQL gives nothing else to put there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow_schema::{DataType, Field, Fields};
use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use sqlx::Executor;
use sqlx::postgres::PgConnection;

use super::pgoutput::{Cell, Message, Op, lsn_text, parse_lsn};
use super::types::{Kind, parse_text};
use super::{Column, Database, Table, columns, list_tables, primary_key, quote};
use crate::connector::{SourceConnector, SourceOffsets, SourceTask};
use crate::data::Value;
use crate::error::{Error, Result};
use crate::record::{ConnectRecord, SourceRecord};

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
    /// `max.batch.size`: changes read per poll (whole transactions; default 2048).
    #[serde(rename = "max.batch.size", default = "default_batch", deserialize_with = "crate::config::from_str")]
    pub max_batch: usize,
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
            partition: Arc::new(json!({ "server": self.config.topic_prefix })),
            database: String::new(),
            types: HashMap::new(),
            relations: HashMap::new(),
            committed_lsn: 0,
            snapshot: None,
            last_heartbeat: Instant::now(),
        }))
    }
}

/// A table as `pgoutput` describes it.
#[derive(Debug, Clone)]
struct Relation {
    schema: String,
    name: String,
    columns: Vec<Column>,
    /// Whether each column is part of the key (the replica identity).
    key: Vec<bool>,
    /// The columns as `pgoutput` last described them (flags, name, type
    /// OID, typmod), to know a description that changes nothing.
    described: Vec<(u8, String, u32, i32)>,
    /// The events' topic and schemas, made once.
    topic: String,
    key_schema: Option<DataType>,
    value_schema: DataType,
}

impl Relation {
    fn new(prefix: &str, schema: String, name: String, columns: Vec<Column>, key: Vec<bool>) -> Self {
        let row_schema = DataType::Struct(
            columns.iter().map(|c| Field::new(&c.name, c.kind.data_type(), true)).collect::<Vec<_>>().into(),
        );
        let key_schema = key.iter().any(|k| *k).then(|| {
            DataType::Struct(
                columns
                    .iter()
                    .zip(&key)
                    .filter(|(_, k)| **k)
                    .map(|(c, _)| Field::new(&c.name, c.kind.data_type(), false))
                    .collect::<Vec<_>>()
                    .into(),
            )
        });
        let source_schema = DataType::Struct(Fields::from(vec![
            Field::new("version", DataType::Utf8, false),
            Field::new("connector", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("ts_ms", DataType::Int64, false),
            Field::new("snapshot", DataType::Utf8, true),
            Field::new("db", DataType::Utf8, false),
            Field::new("schema", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("txId", DataType::Int64, true),
            Field::new("lsn", DataType::Int64, true),
        ]));
        let value_schema = DataType::Struct(Fields::from(vec![
            Field::new("before", row_schema.clone(), true),
            Field::new("after", row_schema, true),
            Field::new("source", source_schema, false),
            Field::new("op", DataType::Utf8, false),
            Field::new("ts_ms", DataType::Int64, true),
        ]));
        let topic = format!("{prefix}.{schema}.{name}");
        Self { schema, name, columns, key, described: Vec::new(), topic, key_schema, value_schema }
    }
}

impl Relation {
    /// Whether an update moved the row to another key. The old row has
    /// the key when the server sends one (it does when the key changed,
    /// and always under `REPLICA IDENTITY FULL`).
    fn key_changed(&self, before: &[Value], after: &[Value]) -> bool {
        self.key_schema.is_some()
            && self.key.iter().zip(before.iter().zip(after)).any(|(k, (old, new))| *k && !old.is_null() && old != new)
    }
}

/// The snapshot being read: tables left, and the one open cursor.
struct Snapshot {
    conn: PgConnection,
    tables: Vec<Table>,
    current: Option<(Arc<Relation>, String)>,
    lsn: u64,
}

struct CdcTask {
    connector: String,
    config: PostgresCdcConfig,
    db: Database,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    conn: Option<PgConnection>,
    partition: Arc<Json>,
    database: String,
    /// Type OID → name.
    types: HashMap<u32, String>,
    /// Relation OID → the table, `None` for one not captured.
    relations: HashMap<u32, Option<Arc<Relation>>>,
    /// The commit LSN up to which changes are in the log.
    committed_lsn: u64,
    snapshot: Option<Snapshot>,
    last_heartbeat: Instant,
}

impl CdcTask {
    async fn conn(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            let mut conn = self.db.connect().await?;
            // Decoded values are printed in the session's time zone.
            conn.execute("SET TimeZone = 'UTC'").await.map_err(|e| self.db.error("setting the time zone", &e))?;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| Error::connector(&self.connector, "no connection"))
    }

    fn captured(&self, schema: &str, table: &str) -> bool {
        let name = format!("{schema}.{table}");
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(&name)))
            && !self.exclude.iter().any(|r| r.is_match(&name))
    }

    /// The tables to snapshot (and to publish, in `filtered` mode).
    async fn tables(&mut self) -> Result<Vec<Table>> {
        let db = self.db.clone();
        let conn = self.conn().await?;
        let mut tables = list_tables(conn).await.map_err(|e| db.error("listing tables", &e))?;
        tables.retain(|t| self.captured(t.schema.as_deref().unwrap_or("public"), &t.name));
        Ok(tables)
    }

    /// Makes sure of the publication and the slot; the slot's LSN if it
    /// was created now.
    async fn prepare(&mut self) -> Result<Option<u64>> {
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
            conn.execute(sql.as_str())
                .await
                .map_err(|e| db.error(&format!("creating publication {publication}"), &e))?;
            tracing::info!(connector = %db.connector, %publication, "created the publication");
        }
        let database: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db.error("reading the database name", &e))?;
        self.database = database;
        let conn = self.conn().await?;
        let slot_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)")
                .bind(&slot)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db.error("reading the replication slots", &e))?;
        if slot_exists {
            return Ok(None);
        }
        let lsn: String =
            sqlx::query_scalar("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')")
                .bind(&slot)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db.error(&format!("creating replication slot {slot}"), &e))?;
        tracing::info!(connector = %db.connector, %slot, %lsn, "created the replication slot");
        Ok(Some(parse_lsn(&lsn).unwrap_or(0)))
    }

    /// Opens the snapshot: one repeatable-read transaction for every table.
    async fn begin_snapshot(&mut self, lsn: u64) -> Result<()> {
        let tables = self.tables().await?;
        let db = self.db.clone();
        let mut conn = db.connect().await?;
        conn.execute("SET TimeZone = 'UTC'; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| db.error("starting the snapshot", &e))?;
        tracing::info!(connector = %db.connector, tables = tables.len(), "snapshot started");
        self.snapshot = Some(Snapshot { conn, tables, current: None, lsn });
        Ok(())
    }

    /// The next rows of the snapshot; `None` once it is done.
    async fn snapshot_rows(&mut self) -> Result<Option<Vec<SourceRecord>>> {
        let db = self.db.clone();
        let batch = self.config.max_batch;
        let prefix = self.config.topic_prefix.clone();
        let (relation, rows, lsn, last_table) = loop {
            let Some(snap) = self.snapshot.as_mut() else { return Ok(None) };
            if snap.current.is_none() {
                let Some(table) = snap.tables.pop() else {
                    let _ = snap.conn.execute("COMMIT").await;
                    self.snapshot = None;
                    tracing::info!(connector = %db.connector, "snapshot done");
                    return Ok(None);
                };
                let failed = |e: sqlx::Error| db.error(&format!("reading table {table}"), &e);
                let cols = columns(&mut snap.conn, &table).await.map_err(failed)?.unwrap_or_default();
                let pk = primary_key(&mut snap.conn, &table).await.map_err(failed)?;
                // As text, read by the same parser as streamed changes.
                let select: Vec<String> = cols.iter().map(|c| format!("{}::text", quote(&c.name))).collect();
                let cursor = format!("plexus_snapshot_{}", snap.tables.len());
                let declare = format!(
                    "DECLARE {cursor} NO SCROLL CURSOR FOR SELECT {} FROM {}",
                    select.join(", "),
                    table.quoted()
                );
                snap.conn.execute(declare.as_str()).await.map_err(failed)?;
                let key = cols.iter().map(|c| pk.contains(&c.name)).collect();
                let relation = Relation::new(
                    &prefix,
                    table.schema.clone().unwrap_or_else(|| "public".into()),
                    table.name.clone(),
                    cols,
                    key,
                );
                snap.current = Some((Arc::new(relation), cursor));
            }
            let Some((relation, cursor)) = snap.current.clone() else { continue };
            let rows = sqlx::query(&format!("FETCH {batch} FROM {cursor}"))
                .fetch_all(&mut snap.conn)
                .await
                .map_err(|e| db.error(&format!("reading table {}.{}", relation.schema, relation.name), &e))?;
            if rows.len() < batch {
                snap.current = None;
            }
            if rows.is_empty() {
                continue;
            }
            break (relation, rows, snap.lsn, snap.tables.is_empty() && snap.current.is_none());
        };
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let mut values = Vec::with_capacity(relation.columns.len());
            let mut failure = None;
            for (j, c) in relation.columns.iter().enumerate() {
                let text: Option<&str> = sqlx::Row::try_get(row, j).unwrap_or(None);
                match text.map_or(Ok(Value::Null), |t| parse_text(t, &c.kind)) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        failure.get_or_insert_with(|| format!("column {:?}: {e}", c.name));
                        values.push(Value::Null);
                    }
                }
            }
            let last = last_table && i + 1 == rows.len();
            let source = Source { lsn, tx: None, ts_ms: now_ms(), snapshot: if last { "last" } else { "true" } };
            // Only the last row stores an offset: a snapshot cut short is
            // taken again.
            let offset = if last { json!({ "lsn": lsn, "snapshot_done": true }) } else { Json::Null };
            let mut events = self.event(&relation, Op::Read, None, Some(values), &source, offset);
            if let Some(reason) = failure {
                for e in &mut events {
                    e.failure = Some(reason.clone());
                }
            }
            out.extend(events);
        }
        Ok(Some(out))
    }

    /// Reads decoded changes from the slot (whole transactions).
    async fn changes(&mut self) -> Result<Vec<SourceRecord>> {
        let db = self.db.clone();
        let (slot, publication, max) =
            (self.config.slot.clone(), self.config.publication.clone(), self.config.max_batch);
        let heartbeat_due = self.config.heartbeat_ms > 0
            && self.last_heartbeat.elapsed() >= Duration::from_millis(self.config.heartbeat_ms);
        let conn = self.conn().await?;
        // Where the WAL ends before the peek: with nothing to read, the
        // slot may move up to here.
        let before = if heartbeat_due {
            let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db.error("reading the WAL position", &e))?;
            parse_lsn(&lsn)
        } else {
            None
        };
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
             'proto_version', '1', 'publication_names', $3)",
        )
        .bind(&slot)
        .bind(i32::try_from(max).unwrap_or(i32::MAX))
        .bind(&publication)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db.error(&format!("reading replication slot {slot}"), &e))?;
        if rows.is_empty() {
            return Ok(before.map(|lsn| self.heartbeat(lsn)).into_iter().collect());
        }
        let mut out = Vec::new();
        let mut tx: Option<(u64, u32, i64)> = None; // (commit lsn, xid, commit ts ms)
        let mut pending = Vec::new();
        let mut skipped = None;
        for (_, data) in &rows {
            let message = Message::parse(data)
                .map_err(|e| Error::connector(&self.connector, format!("a pgoutput message: {e}")))?;
            match message {
                Message::Begin { final_lsn, ts_ms, xid } => tx = Some((final_lsn, xid, ts_ms)),
                Message::Relation { oid, schema, name, columns } => {
                    if !self.captured(&schema, &name) {
                        self.relations.insert(oid, None);
                        continue;
                    }
                    // pgoutput describes each relation again on every peek:
                    // one it already knows as it is needs nothing more.
                    if self
                        .relations
                        .get(&oid)
                        .and_then(Option::as_ref)
                        .is_some_and(|r| r.described == columns && r.schema == schema && r.name == name)
                    {
                        continue;
                    }
                    // Kinds from the catalog, which knows what pgoutput does
                    // not say (a domain's base type, an array's dimensions);
                    // pgoutput's type for a column the catalog no longer has.
                    let table = Table { schema: Some(schema.clone()), name: name.clone() };
                    let failed = |e: sqlx::Error| db.error(&format!("reading table {table}"), &e);
                    let conn = self.conn().await?;
                    let catalog = super::columns(conn, &table).await.map_err(failed)?.unwrap_or_default();
                    let pk = primary_key(conn, &table).await.map_err(failed)?;
                    let mut cols = Vec::with_capacity(columns.len());
                    let mut key = Vec::with_capacity(columns.len());
                    for (flags, col, type_oid, typmod) in &columns {
                        let kind = match catalog.iter().find(|c| c.name == *col) {
                            Some(c) => c.kind.clone(),
                            None => Kind::of(&self.type_name(*type_oid).await?, *typmod),
                        };
                        cols.push(Column { name: col.clone(), kind, nullable: true });
                        key.push(flags & 1 == 1);
                    }
                    // The key is the primary key. pgoutput flags the replica
                    // identity, which is every column under REPLICA IDENTITY
                    // FULL: that is no key.
                    if !pk.is_empty() {
                        key = cols.iter().map(|c| pk.contains(&c.name)).collect();
                    } else if key.iter().all(|k| *k) {
                        key = vec![false; cols.len()];
                    }
                    let mut relation = Relation::new(&self.config.topic_prefix, schema, name, cols, key);
                    relation.described = columns;
                    self.relations.insert(oid, Some(Arc::new(relation)));
                }
                Message::Change { oid, op, old, new } => {
                    let Some((lsn, xid, ts_ms)) = tx else { continue };
                    if lsn <= self.committed_lsn {
                        continue; // already in the log before a crash
                    }
                    let relation = match self.relations.get(&oid) {
                        Some(Some(relation)) => Arc::clone(relation),
                        Some(None) => continue, // a table not captured
                        None => {
                            return Err(Error::connector(
                                &self.connector,
                                format!("a change of relation {oid}, which pgoutput has not described"),
                            ));
                        }
                    };
                    let source = Source { lsn, tx: Some(xid), ts_ms, snapshot: "false" };
                    let mut failure = None;
                    // An unchanged TOASTed value is taken from the old row
                    // when the table sends it (REPLICA IDENTITY FULL);
                    // otherwise it is unknown here and left null.
                    let new = new.map(|cells| {
                        cells
                            .into_iter()
                            .enumerate()
                            .map(|(i, c)| match (c, old.as_ref().and_then(|o| o.get(i))) {
                                (Cell::Unchanged, Some(Cell::Text(t))) => Cell::Text(t.clone()),
                                (c, _) => c,
                            })
                            .collect::<Vec<_>>()
                    });
                    let mut values = |tuple: Option<Vec<Cell>>| {
                        tuple.map(|t| {
                            relation
                                .columns
                                .iter()
                                .zip(t)
                                .map(|(c, cell)| match cell {
                                    Cell::Null | Cell::Unchanged => Value::Null,
                                    Cell::Text(text) => parse_text(&text, &c.kind).unwrap_or_else(|e| {
                                        failure.get_or_insert_with(|| format!("column {:?}: {e}", c.name));
                                        Value::Null
                                    }),
                                })
                                .collect::<Vec<_>>()
                        })
                    };
                    let (before, after) = (values(old), values(new));
                    let mut events = match (op, before, after) {
                        // A key change is a delete of the old key (and its
                        // tombstone) and a create of the new one, as
                        // Debezium emits it: a sink keyed by the key then
                        // drops the old row instead of keeping it.
                        (Op::Update, Some(before), Some(after)) if relation.key_changed(&before, &after) => {
                            let mut events = self.event(&relation, Op::Delete, Some(before), None, &source, Json::Null);
                            events.extend(self.event(&relation, Op::Create, None, Some(after), &source, Json::Null));
                            events
                        }
                        (op, before, after) => self.event(&relation, op, before, after, &source, Json::Null),
                    };
                    if let Some(reason) = failure {
                        for e in &mut events {
                            e.failure = Some(reason.clone());
                        }
                    }
                    pending.extend(events);
                }
                Message::Commit { end_lsn } => {
                    let Some((lsn, xid, _)) = tx.take() else { continue };
                    if lsn <= self.committed_lsn {
                        // In the log before a crash that came before the
                        // slot moved: nothing to write, but the slot must
                        // move past it, or a window of such transactions
                        // is read again forever.
                        skipped = skipped.max(Some(end_lsn.max(lsn)));
                        continue;
                    }
                    let offset = json!({ "lsn": end_lsn.max(lsn), "txId": xid });
                    if let Some(last) = pending.last_mut() {
                        let last: &mut SourceRecord = last;
                        last.source_offset = offset;
                        out.append(&mut pending);
                    } else if let Some(last) = out.last_mut() {
                        // Nothing captured: the batch's offset moves past it.
                        last.source_offset = offset;
                    } else {
                        skipped = Some(end_lsn.max(lsn));
                    }
                }
                Message::Other => {}
            }
        }
        if out.is_empty()
            && let Some(lsn) = skipped
        {
            // Only changes of tables not captured, or already in the log:
            // nothing to write, but the slot must move past them or every
            // poll reads them again.
            self.committed_lsn = self.committed_lsn.max(lsn);
            self.advance(lsn).await?;
        }
        Ok(out)
    }

    /// A heartbeat record, moving the offset to `lsn`.
    fn heartbeat(&mut self, lsn: u64) -> SourceRecord {
        self.last_heartbeat = Instant::now();
        let topic = format!("__debezium-heartbeat.{}", self.config.topic_prefix);
        let key = Value::Struct(vec![("serverName".into(), Value::String(self.config.topic_prefix.clone()))]);
        let value = Value::Struct(vec![("ts_ms".into(), Value::Int64(now_ms()))]);
        let mut record = ConnectRecord::new(topic, value).with_key(key);
        record.value_schema = Some(DataType::Struct(Fields::from(vec![Field::new("ts_ms", DataType::Int64, false)])));
        SourceRecord {
            source_partition: Arc::clone(&self.partition),
            source_offset: json!({ "lsn": lsn.max(self.committed_lsn) }),
            record,
            failure: None,
        }
    }

    /// Moves the slot's confirmed position to `lsn`: the server may drop
    /// what comes before.
    async fn advance(&mut self, lsn: u64) -> Result<()> {
        let (db, slot) = (self.db.clone(), self.config.slot.clone());
        let conn = self.conn().await?;
        // Never past what the server has written (a heartbeat's position
        // is at most that), never backwards.
        let result = sqlx::query(
            "SELECT pg_replication_slot_advance($1, least($2::pg_lsn, pg_current_wal_lsn())) \
             WHERE $2::pg_lsn > (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1)",
        )
        .bind(&slot)
        .bind(lsn_text(lsn))
        .execute(&mut *conn)
        .await;
        if let Err(e) = result {
            self.conn = None;
            return Err(db.error(&format!("advancing replication slot {slot}"), &e));
        }
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

    /// A change event (and its tombstone, for a delete).
    fn event(
        &self,
        relation: &Relation,
        op: Op,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        source: &Source,
        offset: Json,
    ) -> Vec<SourceRecord> {
        let row =
            |values: Vec<Value>| Value::Struct(relation.columns.iter().map(|c| c.name.clone()).zip(values).collect());
        let key_of = |values: &[Value]| {
            Value::Struct(
                relation
                    .columns
                    .iter()
                    .zip(values)
                    .zip(&relation.key)
                    .filter(|(_, k)| **k)
                    .map(|((c, v), _)| (c.name.clone(), v.clone()))
                    .collect(),
            )
        };
        let key = if relation.key_schema.is_some() {
            after.as_deref().or(before.as_deref()).map_or(Value::Null, key_of)
        } else {
            Value::Null
        };
        let source_value = Value::Struct(vec![
            ("version".into(), Value::string(env!("CARGO_PKG_VERSION"))),
            ("connector".into(), Value::string("postgresql")),
            ("name".into(), Value::string(&self.config.topic_prefix)),
            ("ts_ms".into(), Value::Int64(source.ts_ms)),
            ("snapshot".into(), Value::string(source.snapshot)),
            ("db".into(), Value::string(&self.database)),
            ("schema".into(), Value::string(&relation.schema)),
            ("table".into(), Value::string(&relation.name)),
            ("txId".into(), source.tx.map_or(Value::Null, |x| Value::Int64(i64::from(x)))),
            ("lsn".into(), Value::Int64(i64::try_from(source.lsn).unwrap_or(i64::MAX))),
        ]);
        let is_delete = op == Op::Delete;
        let value = Value::Struct(vec![
            ("before".into(), before.map_or(Value::Null, row)),
            ("after".into(), after.map_or(Value::Null, row)),
            ("source".into(), source_value),
            ("op".into(), Value::string(op.code())),
            ("ts_ms".into(), Value::Int64(now_ms())),
        ]);
        let mut record = ConnectRecord::new(relation.topic.clone(), value)
            .with_key(key.clone())
            .with_value_schema(relation.value_schema.clone());
        record.key_schema.clone_from(&relation.key_schema);
        let mut out = vec![SourceRecord {
            source_partition: Arc::clone(&self.partition),
            source_offset: offset,
            record,
            failure: None,
        }];
        if is_delete && self.config.tombstones && !key.is_null() {
            let mut tombstone = ConnectRecord::new(relation.topic.clone(), Value::Null).with_key(key);
            tombstone.key_schema.clone_from(&relation.key_schema);
            // The event before it carries the offset; the batch's last
            // record must, so the tombstone takes it over.
            let offset = std::mem::take(&mut out[0].source_offset);
            out.push(SourceRecord {
                source_partition: Arc::clone(&self.partition),
                source_offset: offset,
                record: tombstone,
                failure: None,
            });
        }
        out
    }
}

/// Where an event came from.
struct Source {
    lsn: u64,
    tx: Option<u32>,
    ts_ms: i64,
    snapshot: &'static str,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl SourceTask for CdcTask {
    async fn start(&mut self, offsets: &SourceOffsets) -> Result<()> {
        let stored = offsets.get(&self.partition.to_string()).map(|(_, o)| o.clone());
        self.committed_lsn = stored.as_ref().and_then(|o| o.get("lsn")).and_then(Json::as_u64).unwrap_or(0);
        // Offsets are stored only once the snapshot is whole.
        let snapshot_done = stored.is_some();
        let created = self.prepare().await?;
        let snapshot = match self.config.snapshot_mode {
            SnapshotMode::NoData => false,
            SnapshotMode::Always => true,
            // A new slot, or a snapshot a crash cut short.
            SnapshotMode::Initial => created.is_some() || !snapshot_done,
        };
        if snapshot {
            let lsn = match created {
                Some(lsn) => lsn,
                None => {
                    let db = self.db.clone();
                    let slot = self.config.slot.clone();
                    let conn = self.conn().await?;
                    let lsn: Option<String> = sqlx::query_scalar(
                        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    )
                    .bind(&slot)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db.error("reading the replication slot", &e))?;
                    lsn.as_deref().and_then(parse_lsn).unwrap_or(0)
                }
            };
            self.begin_snapshot(lsn).await?;
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        if self.snapshot.is_some() {
            match self.snapshot_rows().await {
                Ok(Some(records)) => return Ok(records),
                Ok(None) => {}
                Err(e) => {
                    self.snapshot = None;
                    return Err(e);
                }
            }
        }
        let records = match self.changes().await {
            Ok(r) => r,
            Err(e) => {
                self.conn = None;
                return Err(e);
            }
        };
        if records.is_empty() {
            tokio::time::sleep(Duration::from_millis(self.config.poll_interval_ms.min(1000))).await;
        }
        Ok(records)
    }

    async fn commit(&mut self, offsets: &[(Json, Json)]) -> Result<()> {
        let Some(lsn) = offsets.iter().filter_map(|(_, o)| o.get("lsn").and_then(Json::as_u64)).max() else {
            return Ok(());
        };
        self.committed_lsn = self.committed_lsn.max(lsn);
        if self.snapshot.is_some() {
            return Ok(()); // the slot moves once streaming starts
        }
        self.advance(lsn).await
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
        if let Some(snap) = self.snapshot.take() {
            let _ = sqlx::Connection::close(snap.conn).await;
        }
        Ok(())
    }
}
