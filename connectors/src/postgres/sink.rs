//! `PostgresSink`: writes records to tables, exactly once, with the
//! Confluent JDBC sink's keys.
//!
//! Each record's value is a struct (a row); `table.name.format` (default
//! `${topic}`) names its table. `insert.mode` is `insert`, `upsert`
//! (`INSERT … ON CONFLICT (key) DO UPDATE`) or `update`; `pk.mode` says
//! where the key columns come from: `none`, `record_key` (the key's
//! fields, or a primitive key as `pk.fields`' one name, default
//! `__connect_key`), `record_value` (`pk.fields` of the value) or `kafka`
//! (`__connect_topic`, `__connect_partition`, `__connect_offset`). With
//! `delete.enabled` a tombstone deletes its key's row. `auto.create`
//! creates a missing table from the record's schema (its key columns as
//! the primary key); `auto.evolve` adds a missing column, nullable.
//!
//! Writes are batched: rows accumulate to `batch.max.rows` (default
//! 3000) or the worker's flush, then go in one transaction — `COPY` into
//! the table (`insert`) or into a temporary table that one statement then
//! merges (`upsert`, `update`), and deletes likewise. Within a batch only
//! each key's last change is written, which is what applying them in
//! order would leave.
//!
//! Exactly once: the same transaction writes the next offset of every
//! partition it covers to `offsets.table.name` (default
//! `plexus_connect_offsets`, created if missing), and on start the task
//! resumes from there; a crash at any moment neither loses nor repeats a
//! row. A value that does not fit its column (the wrong type, out of
//! range) is rejected with the column named and goes to the error
//! handler; the rest of the batch is written.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use arrow_schema::DataType;
use async_trait::async_trait;
use plexus_core::TopicPartition;
use serde::Deserialize;
use sqlx::Executor;
use sqlx::postgres::PgConnection;

use super::types::{Kind, copy_field};
use super::{Column, Database, Table, columns, primary_key, quote};
use crate::connector::{SinkConnector, SinkTask};
use crate::data::{Value, infer_schema};
use crate::error::{Error, Result};
use crate::record::{Rejected, SinkRecord};

/// `insert.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InsertMode {
    /// `INSERT` (the default): a key already there is an error.
    #[default]
    Insert,
    /// Insert, or update the row with the same key.
    Upsert,
    /// Update the row with the same key; nothing if there is none.
    Update,
}

/// `pk.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PkMode {
    /// No key (the default; `insert` only).
    #[default]
    None,
    /// The record's key.
    RecordKey,
    /// `pk.fields` of the record's value.
    RecordValue,
    /// Where the record was read: topic, partition, offset.
    Kafka,
}

/// `PostgresSink`'s own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `connection.url`: `postgres://user:password@host:port/database`.
    #[serde(rename = "connection.url")]
    pub url: String,
    /// `connection.user`.
    #[serde(rename = "connection.user", default)]
    pub user: Option<String>,
    /// `connection.password`.
    #[serde(rename = "connection.password", default)]
    pub password: Option<String>,
    /// `insert.mode`.
    #[serde(rename = "insert.mode", default)]
    pub insert_mode: InsertMode,
    /// `pk.mode`.
    #[serde(rename = "pk.mode", default)]
    pub pk_mode: PkMode,
    /// `pk.fields`.
    #[serde(rename = "pk.fields", default, deserialize_with = "crate::config::comma_list")]
    pub pk_fields: Vec<String>,
    /// `delete.enabled`: a tombstone deletes its key's row.
    #[serde(rename = "delete.enabled", default, deserialize_with = "crate::config::from_str")]
    pub delete_enabled: bool,
    /// `auto.create`: create a missing table.
    #[serde(rename = "auto.create", default, deserialize_with = "crate::config::from_str")]
    pub auto_create: bool,
    /// `auto.evolve`: add missing columns.
    #[serde(rename = "auto.evolve", default, deserialize_with = "crate::config::from_str")]
    pub auto_evolve: bool,
    /// `table.name.format`: `${topic}` is replaced by the topic.
    #[serde(rename = "table.name.format", default = "default_table_format")]
    pub table_name_format: String,
    /// `batch.max.rows`.
    #[serde(rename = "batch.max.rows", default = "default_batch", deserialize_with = "crate::config::from_str")]
    pub batch_max_rows: usize,
    /// `offsets.table.name`: where the consumed offsets are kept, in the
    /// same transaction as the rows.
    #[serde(rename = "offsets.table.name", default = "default_offsets_table")]
    pub offsets_table: String,
}

fn default_table_format() -> String {
    "${topic}".into()
}

fn default_batch() -> usize {
    3000
}

fn default_offsets_table() -> String {
    super::SINK_OFFSETS_TABLE.into()
}

/// The configured connector.
#[derive(Debug)]
pub struct PostgresSinkConnector {
    name: String,
    config: PostgresSinkConfig,
    db: Database,
    /// `errors.tolerance=all`: rows the server refuses are set aside.
    tolerant: bool,
}

impl PostgresSinkConnector {
    pub(crate) fn new(name: &str, config: PostgresSinkConfig, tolerant: bool) -> Result<Self> {
        let err = |key: &str, reason: &str| Error::config(name, key, reason);
        let db = Database::new(name, &config.url, config.user.as_deref(), config.password.as_deref())?;
        if config.pk_mode == PkMode::None && config.insert_mode != InsertMode::Insert {
            return Err(err("pk.mode", "none, but insert.mode upsert and update need a key; set pk.mode=record_key"));
        }
        if config.delete_enabled && config.pk_mode != PkMode::RecordKey {
            return Err(err("delete.enabled", "a tombstone names its row by the record key; set pk.mode=record_key"));
        }
        if config.pk_mode == PkMode::RecordValue && config.pk_fields.is_empty() {
            return Err(err("pk.fields", "empty, but pk.mode=record_value takes the key columns from it; name them"));
        }
        if config.batch_max_rows == 0 {
            return Err(err("batch.max.rows", "must be at least 1"));
        }
        if config.table_name_format.trim().is_empty() {
            return Err(err("table.name.format", "empty; use ${topic} or a table name"));
        }
        Ok(Self { name: name.to_owned(), config, db, tolerant })
    }
}

#[async_trait]
impl SinkConnector for PostgresSinkConnector {
    async fn validate(&self) -> Result<()> {
        self.db.connect().await.map(drop)
    }

    fn task_count(&self, tasks_max: usize) -> usize {
        tasks_max.max(1)
    }

    fn task(&self, _index: usize, _count: usize) -> Result<Box<dyn SinkTask>> {
        Ok(Box::new(PostgresSinkTask {
            connector: self.name.clone(),
            config: self.config.clone(),
            db: self.db.clone(),
            tolerant: self.tolerant,
            conn: None,
            tables: HashMap::new(),
            pending: BTreeMap::new(),
            pending_rows: 0,
            buffered: BTreeMap::new(),
            written: BTreeMap::new(),
            carried: Vec::new(),
        }))
    }
}

/// A table being written.
#[derive(Debug)]
struct Target {
    table: Table,
    columns: Vec<Column>,
    key: Vec<String>,
}

/// A record's fields as (column, value), and the names of its key columns.
type RowFields = (Vec<(String, Value)>, Vec<String>);

/// What one record does to its table.
#[derive(Debug, Clone)]
enum Change {
    /// Insert or update: every column's field (in table order), `None`
    /// where the record has no such field.
    Row(Vec<Option<String>>),
    /// Delete the key's row: the key columns' fields.
    Delete(Vec<String>),
}

/// The changes waiting for one table.
#[derive(Debug, Default)]
struct Pending {
    changes: Vec<Change>,
    /// The record each change came from (topic, partition, offset), to
    /// name it when the server refuses its row.
    origins: Vec<(String, i32, i64)>,
    /// Key text → index in `changes`: a key's later change replaces its
    /// earlier one.
    by_key: HashMap<String, usize>,
}

struct PostgresSinkTask {
    connector: String,
    config: PostgresSinkConfig,
    db: Database,
    /// `errors.tolerance=all`.
    tolerant: bool,
    conn: Option<PgConnection>,
    /// Table name → what is known of it.
    tables: HashMap<String, Target>,
    pending: BTreeMap<String, Pending>,
    pending_rows: usize,
    /// The next offset per partition of what is pending.
    buffered: BTreeMap<TopicPartition, i64>,
    /// The next offset per partition stored in the database.
    written: BTreeMap<TopicPartition, i64>,
    /// Records rejected by a put whose write then failed: reported by the
    /// next put (a retry skips them as already taken).
    carried: Vec<Rejected>,
}

impl PostgresSinkTask {
    async fn conn(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            let mut conn = self.db.connect().await?;
            let offsets = quote_table(&self.config.offsets_table);
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {offsets} (connector text NOT NULL, topic text NOT NULL, \
                 partition integer NOT NULL, next_offset bigint NOT NULL, PRIMARY KEY (connector, topic, partition))"
            );
            super::create_once(&mut conn, None, &ddl)
                .await
                .map_err(|e| self.db.error(&format!("creating {}", self.config.offsets_table), &e))?;
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {} (connector text NOT NULL, table_schema text NOT NULL, \
                 table_name text NOT NULL, PRIMARY KEY (connector, table_schema, table_name))",
                super::SINK_TABLES
            );
            super::create_once(&mut conn, None, &ddl)
                .await
                .map_err(|e| self.db.error(&format!("creating {}", super::SINK_TABLES), &e))?;
            self.conn = Some(conn);
        }
        // Set just above.
        self.conn.as_mut().ok_or_else(|| Error::connector(&self.connector, "no connection"))
    }

    /// The record's fields as (column, value), key columns first; `None`
    /// for a tombstone when `delete.enabled` is off.
    ///
    /// The key and value are taken out of `r` (not copied); its topic,
    /// partition, offset and schemas stay.
    fn fields(&self, r: &mut SinkRecord) -> Result<Option<RowFields>, String> {
        let (partition, offset) = (r.partition, r.offset);
        let record = &mut r.record;
        let value_fields = |v: Value| -> Result<Vec<(String, Value)>, String> {
            match v {
                Value::Struct(fields) => Ok(fields),
                Value::Map(entries) => Ok(entries.into_iter().map(|(k, v)| (k.to_text(), v)).collect()),
                other => Err(format!(
                    "the value is a {}, not a struct; a row needs named fields (HoistField can wrap it)",
                    other.type_name()
                )),
            }
        };
        let mut fields = Vec::new();
        let mut key = Vec::new();
        match self.config.pk_mode {
            PkMode::None => {}
            PkMode::Kafka => {
                let names = ["__connect_topic", "__connect_partition", "__connect_offset"];
                let names: Vec<String> = if self.config.pk_fields.len() == 3 {
                    self.config.pk_fields.clone()
                } else {
                    names.iter().map(|s| (*s).to_owned()).collect()
                };
                fields.push((names[0].clone(), Value::String(record.topic.clone())));
                fields.push((names[1].clone(), Value::Int32(partition)));
                fields.push((names[2].clone(), Value::Int64(offset)));
                key = names;
            }
            PkMode::RecordKey => match std::mem::take(&mut record.key) {
                Value::Null => return Err("the record has no key, but pk.mode=record_key".into()),
                k @ (Value::Struct(_) | Value::Map(_)) => {
                    for (name, v) in value_fields(k)? {
                        if self.config.pk_fields.is_empty() || self.config.pk_fields.contains(&name) {
                            key.push(name.clone());
                            fields.push((name, v));
                        }
                    }
                }
                primitive => {
                    let name = self.config.pk_fields.first().cloned().unwrap_or_else(|| "__connect_key".into());
                    key.push(name.clone());
                    fields.push((name, primitive));
                }
            },
            PkMode::RecordValue => key = self.config.pk_fields.clone(),
        }
        if record.value.is_null() {
            return Ok(if self.config.delete_enabled { Some((fields, key)) } else { None });
        }
        for (name, v) in value_fields(std::mem::take(&mut record.value))? {
            if !fields.iter().any(|(n, _)| *n == name) {
                fields.push((name, v));
            }
        }
        for k in &key {
            if !fields.iter().any(|(n, _)| n == k) {
                return Err(format!("the key field {k:?} is missing"));
            }
        }
        Ok(Some((fields, key)))
    }

    /// The table for `name`, created or evolved to take `fields` when
    /// configured so.
    async fn target(&mut self, name: &str, r: &SinkRecord, fields: &[(String, Value)], key: &[String]) -> Result<()> {
        let missing = |t: &Target| fields.iter().any(|(n, _)| !t.columns.iter().any(|c| c.name == *n));
        if self.tables.get(name).is_some_and(|t| !missing(t)) {
            return Ok(());
        }
        let table = Table::parse(name);
        let schema_of = |field: &str, v: &Value| -> DataType {
            let from = |schema: &Option<DataType>| match schema {
                Some(DataType::Struct(fs)) => fs.iter().find(|f| f.name() == field).map(|f| f.data_type().clone()),
                _ => None,
            };
            from(&r.record.value_schema).or_else(|| from(&r.record.key_schema)).unwrap_or_else(|| infer_schema(v))
        };
        let (connector, auto_create, auto_evolve) =
            (self.connector.clone(), self.config.auto_create, self.config.auto_evolve);
        let db = self.db.clone();
        let conn = self.conn().await?;
        let mut cols = columns(conn, &table).await.map_err(|e| db.error(&format!("reading table {table}"), &e))?;
        if cols.is_none() {
            if !auto_create {
                return Err(Error::connector(
                    &connector,
                    format!("table {table} does not exist; create it, or set auto.create=true"),
                ));
            }
            let mut ddl = format!("CREATE TABLE IF NOT EXISTS {} (", table.quoted());
            for (i, (n, v)) in fields.iter().enumerate() {
                let t = Kind::sql_type_for(&schema_of(n, v));
                let not_null = if key.contains(n) { " NOT NULL" } else { "" };
                let _ = write!(ddl, "{}{} {t}{not_null}", if i > 0 { ", " } else { "" }, quote(n));
            }
            if !key.is_empty() {
                let pk: Vec<String> = key.iter().map(|k| quote(k)).collect();
                let _ = write!(ddl, ", PRIMARY KEY ({})", pk.join(", "));
            }
            ddl.push(')');
            super::create_once(conn, None, &ddl).await.map_err(|e| db.error(&format!("creating table {table}"), &e))?;
            tracing::info!(connector = %connector, %table, "created the table");
            cols = columns(conn, &table).await.map_err(|e| db.error(&format!("reading table {table}"), &e))?;
        }
        let mut cols = cols.unwrap_or_default();
        let absent: Vec<&(String, Value)> = fields.iter().filter(|(n, _)| !cols.iter().any(|c| c.name == *n)).collect();
        if !absent.is_empty() {
            let names: Vec<&str> = absent.iter().map(|(n, _)| n.as_str()).collect();
            if !auto_evolve {
                return Err(Error::connector(
                    &connector,
                    format!("table {table} has no column {}; add it, or set auto.evolve=true", names.join(", ")),
                ));
            }
            for (n, v) in absent {
                let t = Kind::sql_type_for(&schema_of(n, v));
                let ddl = format!("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {t}", table.quoted(), quote(n));
                conn.execute(ddl.as_str()).await.map_err(|e| db.error(&format!("evolving table {table}"), &e))?;
                tracing::info!(connector = %connector, %table, column = %n, "added a column");
            }
            cols = columns(conn, &table)
                .await
                .map_err(|e| db.error(&format!("reading table {table}"), &e))?
                .unwrap_or_default();
        }
        let mut table_key =
            primary_key(conn, &table).await.map_err(|e| db.error(&format!("reading table {table}"), &e))?;
        if table_key.is_empty() {
            table_key = key.to_vec();
        }
        // Noted, so that CDC on this database does not capture the copy.
        sqlx::query(&format!(
            "INSERT INTO {} (connector, table_schema, table_name) \
             SELECT $1, n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass($2) ON CONFLICT DO NOTHING",
            super::SINK_TABLES
        ))
        .bind(&connector)
        .bind(table.quoted())
        .execute(&mut *conn)
        .await
        .map_err(|e| db.error(&format!("noting table {table}"), &e))?;
        self.tables.insert(name.to_owned(), Target { table, columns: cols, key: table_key });
        Ok(())
    }

    /// Renders one record into its table's pending changes.
    async fn add(&mut self, r: &mut SinkRecord) -> Result<Option<String>> {
        let tombstone = r.record.value.is_null();
        let (fields, key) = match self.fields(r) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(reason) => return Ok(Some(reason)),
        };
        let name = self.config.table_name_format.replace("${topic}", &r.record.topic);
        self.target(&name, r, &fields, &key).await?;
        let target = &self.tables[&name];
        let key_columns = if key.is_empty() { &[][..] } else { &target.key[..] };
        let mut key_text = Vec::with_capacity(key_columns.len());
        for k in key_columns {
            let (c, v) = match (target.columns.iter().find(|c| c.name == *k), fields.iter().find(|(n, _)| n == k)) {
                (Some(c), Some((_, v))) => (c, v),
                _ => return Ok(Some(format!("the key column {k:?} of table {} is not in the record", target.table))),
            };
            let mut text = String::new();
            if let Err(reason) = copy_field(v, &c.kind, &mut text) {
                return Ok(Some(format!("column {k:?}: {reason}")));
            }
            key_text.push(text);
        }
        let change = if tombstone {
            Change::Delete(key_text.clone())
        } else {
            let mut row = vec![None; target.columns.len()];
            for (n, v) in &fields {
                let Some(i) = target.columns.iter().position(|c| c.name == *n) else { continue };
                let mut text = String::new();
                if let Err(reason) = copy_field(v, &target.columns[i].kind, &mut text) {
                    return Ok(Some(format!("column {n:?}: {reason}")));
                }
                row[i] = Some(text);
            }
            Change::Row(row)
        };
        let origin = (r.record.topic.clone(), r.partition, r.offset);
        let pending = self.pending.entry(name).or_default();
        if key_text.is_empty() {
            pending.changes.push(change);
            pending.origins.push(origin);
        } else {
            let joined = key_text.join("\t");
            match pending.by_key.get(&joined) {
                Some(&i) => {
                    pending.changes[i] = change;
                    pending.origins[i] = origin;
                }
                None => {
                    pending.by_key.insert(joined, pending.changes.len());
                    pending.changes.push(change);
                    pending.origins.push(origin);
                }
            }
        }
        self.pending_rows += 1;
        Ok(None)
    }

    /// Writes what is pending and `offsets` in one transaction; returns
    /// the records whose rows the server refused (see [`PostgresSinkTask::transaction`]).
    async fn write(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<Vec<Rejected>> {
        let mut next = self.written.clone();
        for (tp, o) in offsets {
            let entry = next.entry(tp.clone()).or_insert(*o);
            *entry = (*entry).max(*o);
        }
        if self.pending.is_empty() && next == self.written {
            return Ok(Vec::new());
        }
        let result = self.transaction(&next).await;
        match result {
            Ok(rejected) => {
                self.pending.clear();
                self.pending_rows = 0;
                self.buffered.clear();
                self.written = next;
                Ok(rejected)
            }
            Err(e) => {
                // The transaction rolled back (or the connection is gone):
                // start over on a new connection, the pending rows kept.
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Writes the pending changes and `offsets` in one transaction. When
    /// the server refuses a row for its data (SQLSTATE class 22, a data
    /// exception, or 23, a constraint — what no check here can foresee,
    /// such as text a `uuid` column does not take) and `errors.tolerance`
    /// is `all`, the batch is written again row by row, each in a
    /// savepoint: the refused rows come back to go to the error handler
    /// with the server's reason, the rest and the offsets commit. With
    /// `errors.tolerance=none` the batch fails whole, and the task with
    /// it; nothing is committed past the refused row.
    async fn transaction(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<Vec<Rejected>> {
        let db = self.db.clone();
        let (connector, mode, offsets_table) =
            (self.connector.clone(), self.config.insert_mode, quote_table(&self.config.offsets_table));
        let pending = std::mem::take(&mut self.pending);
        if let Err(e) = self.conn().await {
            self.pending = pending;
            return Err(e);
        }
        let Some(conn) = self.conn.as_mut() else { return Err(Error::connector(&connector, "no connection")) };
        let statements: Vec<(&Target, &Pending)> = pending.iter().map(|(name, p)| (&self.tables[name], p)).collect();
        let mut result = write_all(conn, &statements, mode, offsets, &connector, &offsets_table, false).await;
        if let Err(sqlx::Error::Database(e)) = &result
            && self.tolerant
            && e.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
        {
            let _ = conn.execute("ROLLBACK").await;
            tracing::info!(connector = %connector, error = %e, "the server refused a row: writing the batch row by row");
            result = write_all(conn, &statements, mode, offsets, &connector, &offsets_table, true).await;
        }
        match result {
            Ok(rejected) => Ok(rejected),
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                self.pending = pending;
                Err(db.error("writing a batch", &e))
            }
        }
    }
}

/// Every table's changes and the offsets, in one transaction; with
/// `one_by_one`, each row in a savepoint, a refused one rolled back and
/// returned.
async fn write_all(
    conn: &mut PgConnection,
    statements: &[(&Target, &Pending)],
    mode: InsertMode,
    offsets: &BTreeMap<TopicPartition, i64>,
    connector: &str,
    offsets_table: &str,
    one_by_one: bool,
) -> sqlx::Result<Vec<Rejected>> {
    let mut rejected = Vec::new();
    conn.execute("BEGIN").await?;
    let mut n = 0;
    for (target, p) in statements {
        if !one_by_one {
            write_table(conn, target, p, n, mode).await?;
            n += 1;
            continue;
        }
        for (change, (topic, partition, offset)) in p.changes.iter().zip(&p.origins) {
            let single = Pending { changes: vec![change.clone()], origins: Vec::new(), by_key: HashMap::new() };
            conn.execute("SAVEPOINT plexus_row").await?;
            match write_table(conn, target, &single, n, mode).await {
                Ok(()) => {
                    conn.execute("RELEASE SAVEPOINT plexus_row").await?;
                }
                Err(sqlx::Error::Database(e))
                    if e.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")) =>
                {
                    conn.execute("ROLLBACK TO SAVEPOINT plexus_row").await?;
                    rejected.push(Rejected {
                        topic: topic.clone(),
                        partition: *partition,
                        offset: *offset,
                        reason: format!("table {}: {}", target.table, e.message()),
                    });
                }
                Err(e) => return Err(e),
            }
            n += 1;
        }
    }
    let (mut topics, mut partitions, mut nexts) = (Vec::new(), Vec::new(), Vec::new());
    for (tp, o) in offsets {
        topics.push(tp.topic.clone());
        partitions.push(tp.partition);
        nexts.push(*o);
    }
    sqlx::query(&format!(
        "INSERT INTO {offsets_table} (connector, topic, partition, next_offset) \
         SELECT $1, * FROM unnest($2::text[], $3::int[], $4::int8[]) \
         ON CONFLICT (connector, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
    ))
    .bind(connector)
    .bind(&topics)
    .bind(&partitions)
    .bind(&nexts)
    .execute(&mut *conn)
    .await?;
    conn.execute("COMMIT").await?;
    Ok(rejected)
}

/// One table's changes, inside the open transaction.
async fn write_table(
    conn: &mut PgConnection,
    target: &Target,
    pending: &Pending,
    n: usize,
    mode: InsertMode,
) -> sqlx::Result<()> {
    let table = target.table.quoted();
    // The columns any row of the batch has.
    let used: Vec<usize> = (0..target.columns.len())
        .filter(|&i| pending.changes.iter().any(|c| matches!(c, Change::Row(r) if r[i].is_some())))
        .collect();
    let names: Vec<String> = used.iter().map(|&i| quote(&target.columns[i].name)).collect();
    let list = names.join(", ");
    let mut rows = String::new();
    let mut deletes = String::new();
    for change in &pending.changes {
        match change {
            Change::Row(row) => {
                for (j, &i) in used.iter().enumerate() {
                    rows.push_str(if j > 0 { "\t" } else { "" });
                    rows.push_str(row[i].as_deref().unwrap_or("\\N"));
                }
                rows.push('\n');
            }
            Change::Delete(key) => {
                deletes.push_str(&key.join("\t"));
                deletes.push('\n');
            }
        }
    }
    let keys: Vec<String> = target.key.iter().map(|k| quote(k)).collect();
    let matches =
        |a: &str, b: &str| keys.iter().map(|k| format!("{a}.{k} = {b}.{k}")).collect::<Vec<_>>().join(" AND ");
    if !deletes.is_empty() {
        let stage = format!("plexus_delete_{n}");
        conn.execute(
            format!("CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {} FROM {table} WITH NO DATA", keys.join(", "))
                .as_str(),
        )
        .await?;
        copy(conn, &format!("COPY {stage} ({}) FROM STDIN", keys.join(", ")), deletes).await?;
        conn.execute(format!("DELETE FROM {table} t USING {stage} d WHERE {}", matches("t", "d")).as_str()).await?;
    }
    if rows.is_empty() {
        return Ok(());
    }
    if mode == InsertMode::Insert {
        return copy(conn, &format!("COPY {table} ({list}) FROM STDIN"), rows).await;
    }
    let stage = format!("plexus_stage_{n}");
    conn.execute(
        format!("CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {list} FROM {table} WITH NO DATA").as_str(),
    )
    .await?;
    copy(conn, &format!("COPY {stage} ({list}) FROM STDIN"), rows).await?;
    let others: Vec<&String> = names.iter().filter(|c| !keys.contains(c)).collect();
    let sql = match mode {
        InsertMode::Upsert => {
            let on_conflict = if others.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                let set: Vec<String> = others.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
                format!("DO UPDATE SET {}", set.join(", "))
            };
            format!(
                "INSERT INTO {table} ({list}) SELECT {list} FROM {stage} ON CONFLICT ({}) {on_conflict}",
                keys.join(", ")
            )
        }
        _ => {
            if others.is_empty() {
                return Ok(());
            }
            let set: Vec<String> = others.iter().map(|c| format!("{c} = s.{c}")).collect();
            format!("UPDATE {table} t SET {} FROM {stage} s WHERE {}", set.join(", "), matches("t", "s"))
        }
    };
    conn.execute(sql.as_str()).await?;
    Ok(())
}

async fn copy(conn: &mut PgConnection, statement: &str, data: String) -> sqlx::Result<()> {
    let mut copy = conn.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(data.into_bytes()).await {
        let _ = copy.abort(e.to_string()).await;
        return Err(e);
    }
    copy.finish().await.map(drop)
}

fn quote_table(name: &str) -> String {
    Table::parse(name).quoted()
}

#[async_trait]
impl SinkTask for PostgresSinkTask {
    async fn open(&mut self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        let db = self.db.clone();
        let (connector, table) = (self.connector.clone(), quote_table(&self.config.offsets_table));
        let conn = self.conn().await?;
        let topics: Vec<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
        let numbers: Vec<i32> = partitions.iter().map(|tp| tp.partition).collect();
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(&format!(
            "SELECT o.topic, o.partition, o.next_offset FROM {table} o \
             JOIN unnest($2::text[], $3::int[]) AS p(topic, partition) USING (topic, partition) WHERE o.connector = $1"
        ))
        .bind(&connector)
        .bind(&topics)
        .bind(&numbers)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db.error("reading the stored offsets", &e))?;
        let stored: BTreeMap<TopicPartition, i64> =
            rows.into_iter().map(|(t, p, o)| (TopicPartition::new(t, p), o)).collect();
        self.written.extend(stored.clone());
        Ok(stored)
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<Vec<Rejected>> {
        let mut rejected = std::mem::take(&mut self.carried);
        for mut r in records {
            let tp = TopicPartition::new(r.record.topic.clone(), r.partition);
            // A retried put gives again what an earlier try already took.
            if self.buffered.get(&tp).is_some_and(|next| r.offset < *next) {
                continue;
            }
            if let Some(reason) = self.add(&mut r).await? {
                rejected.push(Rejected::new(&r, reason));
            }
            self.buffered.insert(tp, r.offset + 1);
        }
        if self.pending_rows >= self.config.batch_max_rows {
            let covered = self.buffered.clone();
            match self.write(&covered).await {
                Ok(refused) => rejected.extend(refused),
                Err(e) => {
                    self.carried = rejected;
                    return Err(e);
                }
            }
        }
        Ok(rejected)
    }

    async fn flush(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<Vec<Rejected>> {
        self.write(offsets).await
    }

    async fn close(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.written.remove(tp);
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
        Ok(())
    }
}
