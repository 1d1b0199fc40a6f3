//! `PostgresSource`: reads tables (or a query) into topics by polling,
//! with the Confluent JDBC source's keys and modes.
//!
//! `mode`:
//! - `bulk`: the whole table every `poll.interval.ms`. Better than the JDBC
//!   source, a key that was there on the last poll and is gone now gets a
//!   tombstone, so a compacted topic forgets deleted rows too.
//! - `incrementing`: rows whose `incrementing.column.name` is above the
//!   last one read (new rows; not updates).
//! - `timestamp`: rows whose `timestamp.column.name` is after the last one
//!   read and before now less `timestamp.delay.interval.ms` (new and
//!   updated rows); rows sharing a timestamp are never split between polls.
//! - `timestamp+incrementing`: both, ordered by (timestamp, id): the
//!   robust choice for new and updated rows.
//!
//! Tables come from `table.whitelist` (`schema.table` or `table`), or all
//! of the database's tables less `table.blacklist`; each goes to the topic
//! `topic.prefix` + its name. With `query`, that query is read instead (as
//! a subquery, so it may have its own `WHERE`) into the topic
//! `topic.prefix`. Each row is a struct value with a schema from the
//! column types ([`super::types`]); a table's primary key columns are the
//! record's key. The source partition is `{"table": "schema.table"}` (or
//! `{"query": …}`), its offset the last `incrementing` / `timestamp_us`
//! value, written with the rows in one transaction: a restart resumes
//! exactly after the last row in the log. Deletes are visible only to
//! `bulk` mode here; `PostgresCdcSource` sees every change.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::{DataType, Field};
use async_trait::async_trait;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use sqlx::postgres::PgConnection;
use sqlx::{Column as _, Executor, TypeInfo as _};

use super::types::{ArrayMode, Kind, parse_row, parse_text};
use super::{Column, Database, Table, TextRow, columns, copy_rows, list_tables, primary_key, quote};
use crate::connector::{SourceConnector, SourceOffsets, SourceTask};
use crate::data::Value;
use crate::error::{Error, Result};
use crate::record::{ConnectRecord, SourceRecord};

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mode {
    /// Every row, every poll.
    #[serde(rename = "bulk")]
    Bulk,
    /// New rows by a growing id.
    #[serde(rename = "incrementing")]
    Incrementing,
    /// New and updated rows by a modification timestamp.
    #[serde(rename = "timestamp")]
    Timestamp,
    /// New and updated rows by (timestamp, id).
    #[serde(rename = "timestamp+incrementing")]
    TimestampIncrementing,
}

/// `PostgresSource`'s own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `connection.url`.
    #[serde(rename = "connection.url")]
    pub url: String,
    /// `connection.user`.
    #[serde(rename = "connection.user", default)]
    pub user: Option<String>,
    /// `connection.password`.
    #[serde(rename = "connection.password", default)]
    pub password: Option<String>,
    /// `mode`.
    pub mode: Mode,
    /// `incrementing.column.name`.
    #[serde(rename = "incrementing.column.name", default)]
    pub incrementing_column: Option<String>,
    /// `timestamp.column.name`.
    #[serde(rename = "timestamp.column.name", default)]
    pub timestamp_column: Option<String>,
    /// `table.whitelist` (also `table.include.list`).
    #[serde(
        rename = "table.whitelist",
        alias = "table.include.list",
        default,
        deserialize_with = "crate::config::comma_list"
    )]
    pub whitelist: Vec<String>,
    /// `table.blacklist` (also `table.exclude.list`).
    #[serde(
        rename = "table.blacklist",
        alias = "table.exclude.list",
        default,
        deserialize_with = "crate::config::comma_list"
    )]
    pub blacklist: Vec<String>,
    /// `query`: read this instead of tables.
    #[serde(default)]
    pub query: Option<String>,
    /// `topic.prefix`.
    #[serde(rename = "topic.prefix", default)]
    pub topic_prefix: String,
    /// `poll.interval.ms` (default 5000).
    #[serde(rename = "poll.interval.ms", default = "default_poll", deserialize_with = "crate::config::from_str")]
    pub poll_interval_ms: u64,
    /// `batch.max.rows` (default 1000).
    #[serde(rename = "batch.max.rows", default = "default_batch", deserialize_with = "crate::config::from_str")]
    pub batch_max_rows: usize,
    /// `array.handling.mode`: `list` (the default) or `string`.
    #[serde(rename = "array.handling.mode", default)]
    pub array_mode: ArrayMode,
    /// `timestamp.delay.interval.ms`: how long after a timestamp its rows
    /// are read (transactions that commit late).
    #[serde(rename = "timestamp.delay.interval.ms", default, deserialize_with = "crate::config::from_str")]
    pub timestamp_delay_ms: u64,
}

fn default_poll() -> u64 {
    5000
}

fn default_batch() -> usize {
    1000
}

/// The configured connector.
#[derive(Debug)]
pub struct PostgresSourceConnector {
    name: String,
    config: PostgresSourceConfig,
    db: Database,
}

impl PostgresSourceConnector {
    pub(crate) fn new(name: &str, config: PostgresSourceConfig) -> Result<Self> {
        let err = |key: &str, reason: &str| Error::config(name, key, reason);
        let db = Database::new(name, &config.url, config.user.as_deref(), config.password.as_deref())?;
        let needs_inc = matches!(config.mode, Mode::Incrementing | Mode::TimestampIncrementing);
        let needs_ts = matches!(config.mode, Mode::Timestamp | Mode::TimestampIncrementing);
        if needs_inc && config.incrementing_column.as_deref().is_none_or(str::is_empty) {
            return Err(err("incrementing.column.name", "missing; this mode reads rows by it: name an integer column"));
        }
        if needs_ts && config.timestamp_column.as_deref().is_none_or(str::is_empty) {
            return Err(err("timestamp.column.name", "missing; this mode reads rows by it: name a timestamp column"));
        }
        if config.query.is_some() && !config.whitelist.is_empty() {
            return Err(err("query", "set together with table.whitelist; read either a query or tables"));
        }
        if config.query.is_some() && config.topic_prefix.is_empty() {
            return Err(err("topic.prefix", "empty; with query it is the whole topic name"));
        }
        if config.batch_max_rows == 0 {
            return Err(err("batch.max.rows", "must be at least 1"));
        }
        Ok(Self { name: name.to_owned(), config, db })
    }
}

#[async_trait]
impl SourceConnector for PostgresSourceConnector {
    async fn validate(&self) -> Result<()> {
        let mut conn = self.db.connect().await?;
        for t in &self.config.whitelist {
            let table = Table::parse(t);
            let found = columns(&mut conn, &table).await.map_err(|e| self.db.error("reading the catalog", &e))?;
            if found.is_none() {
                return Err(Error::config(&self.name, "table.whitelist", format!("table {t:?} does not exist")));
            }
        }
        Ok(())
    }

    fn task_count(&self, tasks_max: usize) -> usize {
        match (&self.config.query, self.config.whitelist.len()) {
            (Some(_), _) => 1,
            (None, 0) => tasks_max.max(1),
            (None, n) => tasks_max.clamp(1, n),
        }
    }

    fn task(&self, index: usize, count: usize) -> Result<Box<dyn SourceTask>> {
        Ok(Box::new(PostgresSourceTask {
            connector: self.name.clone(),
            config: self.config.clone(),
            db: self.db.clone(),
            index,
            count,
            conn: None,
            readers: Vec::new(),
            queue: VecDeque::new(),
        }))
    }
}

/// How far a reader has read.
#[derive(Debug, Clone, Default, PartialEq)]
struct Position {
    incrementing: Option<i64>,
    timestamp_us: Option<i64>,
}

/// One table (or the query) being read.
struct Reader {
    partition: Arc<Json>,
    topic: String,
    /// `FROM` this: a quoted table or `(query) AS q`.
    from: String,
    columns: Vec<Column>,
    /// Indexes of the key columns.
    key: Vec<usize>,
    incrementing: Option<usize>,
    timestamp: Option<usize>,
    position: Position,
    next_poll: Instant,
    /// Bulk mode: the keys of the last poll.
    seen: HashSet<String>,
    /// The records' schemas, made once.
    value_schema: DataType,
    key_schema: Option<DataType>,
}

struct PostgresSourceTask {
    connector: String,
    config: PostgresSourceConfig,
    db: Database,
    index: usize,
    count: usize,
    conn: Option<PgConnection>,
    readers: Vec<Reader>,
    /// Bulk mode: rows read but not yet returned.
    queue: VecDeque<SourceRecord>,
}

impl PostgresSourceTask {
    async fn conn(&mut self) -> Result<&mut PgConnection> {
        if self.conn.is_none() {
            let mut conn = self.db.connect().await?;
            // Timestamps with a zone are printed in the session's.
            conn.execute("SET TimeZone = 'UTC'").await.map_err(|e| self.db.error("setting the time zone", &e))?;
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or_else(|| Error::connector(&self.connector, "no connection"))
    }

    /// The tables this task reads.
    async fn tables(&mut self) -> Result<Vec<Table>> {
        let (whitelist, blacklist) = (self.config.whitelist.clone(), self.config.blacklist.clone());
        let db = self.db.clone();
        let mut tables: Vec<Table> = if whitelist.is_empty() {
            let conn = self.conn().await?;
            list_tables(conn).await.map_err(|e| db.error("listing tables", &e))?
        } else {
            whitelist.iter().map(|t| Table::parse(t)).collect()
        };
        let excluded = |t: &Table| {
            blacklist.iter().any(|b| {
                let b = Table::parse(b);
                b.name == t.name && (b.schema.is_none() || b.schema == t.schema)
            })
        };
        tables.retain(|t| !excluded(t));
        Ok(tables.into_iter().enumerate().filter(|(i, _)| i % self.count == self.index).map(|(_, t)| t).collect())
    }

    async fn table_reader(&mut self, table: Table, offsets: &SourceOffsets) -> Result<Reader> {
        let db = self.db.clone();
        let conn = self.conn().await?;
        let cols = columns(conn, &table)
            .await
            .map_err(|e| db.error(&format!("reading table {table}"), &e))?
            .ok_or_else(|| Error::connector(&db.connector, format!("table {table} does not exist")))?;
        let pk = primary_key(conn, &table).await.map_err(|e| db.error(&format!("reading table {table}"), &e))?;
        let key = pk.iter().filter_map(|k| cols.iter().position(|c| c.name == *k)).collect();
        let schema = table.schema.clone().unwrap_or_else(|| "public".into());
        let partition = json!({ "table": format!("{schema}.{}", table.name) });
        let topic = format!("{}{}", self.config.topic_prefix, table.name);
        self.reader(partition, topic, table.quoted(), cols, key, offsets)
    }

    async fn query_reader(&mut self, query: String, offsets: &SourceOffsets) -> Result<Reader> {
        let db = self.db.clone();
        let view = Table { schema: None, name: format!("plexus_query_{}", self.readers.len()) };
        let conn = self.conn().await?;
        let described = conn
            .describe(format!("SELECT * FROM ({query}) AS q").as_str())
            .await
            .map_err(|e| Error::config(&db.connector, "query", format!("PostgreSQL cannot run it: {e}")))?;
        // The result's type modifiers (numeric's precision and scale),
        // domains' base types and arrays' dimensions are in the catalog
        // only: a temporary view of the query puts them there.
        let create = format!("CREATE OR REPLACE TEMP VIEW {} AS SELECT * FROM ({query}) AS q", view.quoted());
        let typed = match conn.execute(create.as_str()).await {
            Ok(_) => columns(conn, &view).await.ok().flatten().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let _ = conn.execute(format!("DROP VIEW IF EXISTS {}", view.quoted()).as_str()).await;
        let cols = described
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| Column {
                name: c.name().to_owned(),
                kind: typed
                    .get(i)
                    .filter(|t| t.name == c.name())
                    .map_or_else(|| Kind::of(c.type_info().name(), -1), |t| t.kind.clone()),
                nullable: described.nullable(i).unwrap_or(true),
            })
            .collect();
        let topic = self.config.topic_prefix.clone();
        self.reader(json!({ "query": query }), topic, format!("({query}) AS q"), cols, Vec::new(), offsets)
    }

    fn reader(
        &self,
        partition: Json,
        topic: String,
        from: String,
        mut columns: Vec<Column>,
        key: Vec<usize>,
        offsets: &SourceOffsets,
    ) -> Result<Reader> {
        for c in &mut columns {
            c.kind.apply_array_mode(self.config.array_mode);
        }
        let find = |key: &str,
                    name: &Option<String>,
                    ok: &dyn Fn(&Kind) -> bool,
                    what: &str|
         -> Result<Option<usize>> {
            let Some(name) = name.as_deref().filter(|n| !n.is_empty()) else { return Ok(None) };
            let i = columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| Error::config(&self.connector, key, format!("{from} has no column {name:?}")))?;
            if !ok(&columns[i].kind) {
                return Err(Error::config(&self.connector, key, format!("column {name:?} of {from} is not {what}")));
            }
            Ok(Some(i))
        };
        let mode = self.config.mode;
        let incrementing = if matches!(mode, Mode::Incrementing | Mode::TimestampIncrementing) {
            find(
                "incrementing.column.name",
                &self.config.incrementing_column,
                &|k| matches!(k, Kind::Int16 | Kind::Int32 | Kind::Int64),
                "an integer",
            )?
        } else {
            None
        };
        let timestamp = if matches!(mode, Mode::Timestamp | Mode::TimestampIncrementing) {
            find(
                "timestamp.column.name",
                &self.config.timestamp_column,
                &|k| matches!(k, Kind::Timestamp | Kind::TimestampTz),
                "a timestamp",
            )?
        } else {
            None
        };
        let stored = offsets.get(&partition.to_string()).map(|(_, o)| o);
        let position = Position {
            incrementing: stored.and_then(|o| o.get("incrementing")).and_then(Json::as_i64),
            timestamp_us: stored.and_then(|o| o.get("timestamp_us")).and_then(Json::as_i64),
        };
        let value_schema = DataType::Struct(
            columns.iter().map(|c| Field::new(&c.name, c.kind.data_type(), c.nullable)).collect::<Vec<_>>().into(),
        );
        let key_schema = (!key.is_empty()).then(|| {
            DataType::Struct(
                key.iter()
                    .map(|&i| Field::new(&columns[i].name, columns[i].kind.data_type(), false))
                    .collect::<Vec<_>>()
                    .into(),
            )
        });
        Ok(Reader {
            value_schema,
            key_schema,
            partition: Arc::new(partition),
            topic,
            from,
            columns,
            key,
            incrementing,
            timestamp,
            position,
            next_poll: Instant::now(),
            seen: HashSet::new(),
        })
    }

    /// Reads the next rows of reader `r`.
    async fn read(&mut self, r: usize) -> Result<Vec<SourceRecord>> {
        let (mode, limit) = (self.config.mode, self.config.batch_max_rows);
        let delay = i64::try_from(self.config.timestamp_delay_ms).unwrap_or(i64::MAX);
        let db = self.db.clone();
        let reader = &self.readers[r];
        let select: Vec<String> = reader.columns.iter().map(|c| quote(&c.name)).collect();
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), reader.from);
        let col = |i: Option<usize>| i.map(|i| quote(&reader.columns[i].name)).unwrap_or_default();
        let (inc, ts) = (col(reader.incrementing), col(reader.timestamp));
        let now = match reader.timestamp.map(|i| &reader.columns[i].kind) {
            Some(Kind::Timestamp) => "LOCALTIMESTAMP",
            _ => "CURRENT_TIMESTAMP",
        };
        let bound = format!("{ts} < {now} - make_interval(secs => {delay}::float8 / 1000)");
        let position = reader.position.clone();
        let ts_kind = reader.timestamp.map(|i| reader.columns[i].kind.clone());
        match mode {
            Mode::Bulk => {}
            Mode::Incrementing => {
                if position.incrementing.is_some() {
                    sql.push_str(&format!(" WHERE {inc} > $1"));
                }
                sql.push_str(&format!(" ORDER BY {inc} LIMIT {limit}"));
            }
            Mode::Timestamp => {
                sql.push_str(&format!(" WHERE {bound}"));
                if position.timestamp_us.is_some() {
                    sql.push_str(&format!(" AND {ts} > $1"));
                }
                sql.push_str(&format!(" ORDER BY {ts} LIMIT {limit}"));
            }
            Mode::TimestampIncrementing => {
                sql.push_str(&format!(" WHERE {bound}"));
                if position.timestamp_us.is_some() {
                    sql.push_str(&format!(" AND ({ts} > $1 OR ({ts} = $1 AND {inc} > $2))"));
                }
                sql.push_str(&format!(" ORDER BY {ts}, {inc} LIMIT {limit}"));
            }
        }
        let conn = self.conn().await?;
        let rows = fetch(conn, &sql, &position, mode, ts_kind.as_ref())
            .await
            .map_err(|e| db.error(&format!("reading {}", self.readers[r].from), &e))?;
        let full = rows.len() >= limit && mode != Mode::Bulk;
        let mut rows = rows;
        if full && mode == Mode::Timestamp {
            // Rows sharing the last timestamp must not be split between
            // polls: drop them, or when the whole batch shares it, read all
            // of them.
            let reader = &self.readers[r];
            let Some(tsi) = reader.timestamp else { return Ok(Vec::new()) };
            let last = cell(&rows[rows.len() - 1], tsi, &reader.columns[tsi].kind).ok();
            let first = cell(&rows[0], tsi, &reader.columns[tsi].kind).ok();
            if first == last {
                let Some(Value::Timestamp(us)) = last else { return Ok(Vec::new()) };
                let select = sql.split(" WHERE ").next().unwrap_or_default().to_owned();
                let same = format!("{select} WHERE {ts} = $1");
                let at = Position { incrementing: None, timestamp_us: Some(us) };
                let conn = self.conn().await?;
                rows = fetch(conn, &same, &at, Mode::Timestamp, ts_kind.as_ref())
                    .await
                    .map_err(|e| db.error("reading rows of one timestamp", &e))?;
            } else {
                while rows.len() > 1 && cell(&rows[rows.len() - 1], tsi, &reader.columns[tsi].kind).ok() == last {
                    rows.pop();
                }
            }
        }
        let poll_interval = Duration::from_millis(self.config.poll_interval_ms);
        let reader = &mut self.readers[r];
        reader.next_poll = if full { Instant::now() } else { Instant::now() + poll_interval };
        let mut out = Vec::with_capacity(rows.len());
        let mut keys = HashSet::new();
        for row in &rows {
            out.push(reader.record(row, mode, &mut keys));
        }
        if mode != Mode::Bulk
            && let Some(last) = out.last_mut()
        {
            last.source_offset = reader.offset();
        }
        if mode == Mode::Bulk {
            let gone: Vec<String> = reader.seen.difference(&keys).cloned().collect();
            for key in gone {
                let key = Value::from_json(serde_json::from_str(&key).unwrap_or(Json::Null));
                out.push(SourceRecord {
                    source_partition: Arc::clone(&reader.partition),
                    source_offset: Json::Null,
                    record: ConnectRecord::new(reader.topic.clone(), Value::Null).with_key(key),
                    failure: None,
                });
            }
            reader.seen = keys;
        }
        Ok(out)
    }
}

/// Runs a reader's query with its position in place of `$1` (and `$2`),
/// through `COPY (…) TO STDOUT`: the server's cheapest way out, a good
/// deal cheaper than the extended protocol's rows. The position goes in
/// as literals it prints itself (numbers and timestamps), never text from
/// outside.
async fn fetch(
    conn: &mut PgConnection,
    sql: &str,
    position: &Position,
    mode: Mode,
    ts_kind: Option<&Kind>,
) -> sqlx::Result<Vec<TextRow>> {
    let mut sql = sql.to_owned();
    if mode == Mode::TimestampIncrementing {
        sql = sql.replace("$2", &position.incrementing.unwrap_or(i64::MIN).to_string());
    }
    match mode {
        Mode::Bulk => {}
        Mode::Incrementing => {
            if let Some(inc) = position.incrementing {
                sql = sql.replace("$1", &inc.to_string());
            }
        }
        Mode::Timestamp | Mode::TimestampIncrementing => {
            if let Some(ts) = position.timestamp_us.and_then(DateTime::from_timestamp_micros) {
                let text = ts.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f");
                let literal = match ts_kind {
                    Some(Kind::Timestamp) => format!("'{text}'::timestamp"),
                    _ => format!("'{text}+00'::timestamptz"),
                };
                sql = sql.replace("$1", &literal);
            }
        }
    }
    copy_rows(conn, &sql).await
}

/// Column `i` of a text row as a value of `kind`.
fn cell(row: &TextRow, i: usize, kind: &Kind) -> Result<Value, String> {
    match row.get(i) {
        Some(Some(text)) => parse_text(text, kind),
        _ => Ok(Value::Null),
    }
}

impl Reader {
    /// Where the reader stands, as a source offset.
    fn offset(&self) -> Json {
        let mut o = serde_json::Map::new();
        if let Some(n) = self.position.incrementing {
            o.insert("incrementing".into(), json!(n));
        }
        if let Some(us) = self.position.timestamp_us {
            o.insert("timestamp_us".into(), json!(us));
        }
        Json::Object(o)
    }

    /// A row as a record, the reader's position moved past it.
    fn record(&mut self, row: &TextRow, mode: Mode, keys: &mut HashSet<String>) -> SourceRecord {
        let (values, failure) = parse_row(&self.columns, row.iter().map(Option::as_deref));
        let failure =
            failure.map(|(i, reason)| format!("column {:?} of {}: {reason}", self.columns[i].name, self.from));
        let fields: Vec<(String, Value)> = self.columns.iter().map(|c| c.name.clone()).zip(values).collect();
        if let Some(i) = self.incrementing
            && let Some(n) = as_i64(&fields[i].1)
        {
            self.position.incrementing = Some(n);
        }
        if let Some(i) = self.timestamp
            && let Value::Timestamp(us) = fields[i].1
        {
            self.position.timestamp_us = Some(us);
        }
        let key = if self.key.is_empty() {
            Value::Null
        } else {
            Value::Struct(self.key.iter().map(|&i| fields[i].clone()).collect())
        };
        if mode == Mode::Bulk && !key.is_null() {
            keys.insert(key.to_json().to_string());
        }
        let schema = self.value_schema.clone();
        let mut record = ConnectRecord::new(self.topic.clone(), Value::Struct(fields)).with_value_schema(schema);
        record.key = key;
        record.key_schema.clone_from(&self.key_schema);
        // The batch's last record carries the offset (`Reader::offset`).
        SourceRecord { source_partition: Arc::clone(&self.partition), source_offset: Json::Null, record, failure }
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int16(n) => Some(i64::from(*n)),
        Value::Int32(n) => Some(i64::from(*n)),
        Value::Int64(n) => Some(*n),
        _ => None,
    }
}

#[async_trait]
impl SourceTask for PostgresSourceTask {
    async fn start(&mut self, offsets: &SourceOffsets) -> Result<()> {
        if let Some(query) = self.config.query.clone() {
            let reader = self.query_reader(query, offsets).await?;
            self.readers.push(reader);
            return Ok(());
        }
        for table in self.tables().await? {
            let reader = self.table_reader(table, offsets).await?;
            self.readers.push(reader);
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        if !self.queue.is_empty() {
            let n = self.queue.len().min(self.config.batch_max_rows);
            return Ok(self.queue.drain(..n).collect());
        }
        let Some((r, due)) = self.readers.iter().enumerate().map(|(i, r)| (i, r.next_poll)).min_by_key(|(_, t)| *t)
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(Vec::new());
        };
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
            return Ok(Vec::new());
        }
        let records = match self.read(r).await {
            Ok(records) => records,
            Err(e) => {
                // The next poll connects again.
                self.conn = None;
                return Err(e);
            }
        };
        if self.config.mode == Mode::Bulk && records.len() > self.config.batch_max_rows {
            self.queue.extend(records);
            let n = self.config.batch_max_rows;
            return Ok(self.queue.drain(..n).collect());
        }
        Ok(records)
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
        Ok(())
    }
}
