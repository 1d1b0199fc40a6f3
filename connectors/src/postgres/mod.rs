//! The PostgreSQL connectors (sqlx): [`source`] reads tables by query
//! (the Confluent JDBC source's modes and keys), [`cdc`] streams every
//! change by logical decoding (Debezium's keys and events), [`sink`]
//! writes topics to tables (insert, upsert, update, delete; exactly once).
//!
//! Shared here: the connection keys (`connection.url`, a `postgres://`
//! URL, with `connection.user` and `connection.password` overriding what
//! it says), table names, and the catalog lookups both need. Types and
//! their mapping to the Arrow-typed record schema are in [`types`].

pub mod cdc;
mod pgoutput;
pub mod sink;
pub mod source;
pub mod types;

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor, Row};

use crate::config::ConnectorConfig;
use crate::connector::{Connector, ConnectorClass};
use crate::error::{Error, Result};
use types::Kind;

/// How long connecting may take before the connector says the database
/// is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `connector.class=PostgresSource` (also the Confluent JDBC source's
/// `JdbcSourceConnector`).
#[derive(Debug, Deserialize)]
pub struct PostgresSource {}

#[typetag::deserialize(name = "PostgresSource")]
impl ConnectorClass for PostgresSource {
    fn configure(&self, config: &ConnectorConfig) -> Result<Connector> {
        let c: source::PostgresSourceConfig = crate::config::class_config(config)?;
        Ok(Connector::Source(Box::new(source::PostgresSourceConnector::new(&config.name, c)?)))
    }

    /// Rows carry types plain JSON loses: the schema goes with them.
    fn schemas_by_default(&self) -> bool {
        true
    }
}

/// `connector.class=PostgresSink` (also the Confluent JDBC sink's
/// `JdbcSinkConnector`).
#[derive(Debug, Deserialize)]
pub struct PostgresSink {}

#[typetag::deserialize(name = "PostgresSink")]
impl ConnectorClass for PostgresSink {
    fn configure(&self, config: &ConnectorConfig) -> Result<Connector> {
        let c: sink::PostgresSinkConfig = crate::config::class_config(config)?;
        // A row the server refuses is set aside only when the error handler
        // may skip it; otherwise its batch fails whole, to be tried again.
        let tolerant = config.get("errors.tolerance") == Some("all");
        Ok(Connector::Sink(Box::new(sink::PostgresSinkConnector::new(&config.name, c, tolerant)?)))
    }
}

/// `connector.class=PostgresCdcSource` (also Debezium's
/// `io.debezium.connector.postgresql.PostgresConnector`).
#[derive(Debug, Deserialize)]
pub struct PostgresCdcSource {}

#[typetag::deserialize(name = "PostgresCdcSource")]
impl ConnectorClass for PostgresCdcSource {
    fn configure(&self, config: &ConnectorConfig) -> Result<Connector> {
        let c: cdc::PostgresCdcConfig = crate::config::class_config(config)?;
        Ok(Connector::Source(Box::new(cdc::PostgresCdcConnector::new(&config.name, c)?)))
    }

    /// Rows carry types plain JSON loses: the schema goes with them.
    fn schemas_by_default(&self) -> bool {
        true
    }
}

/// Where to connect: `connection.url`, `connection.user`, `connection.password`.
#[derive(Debug, Clone)]
pub(crate) struct Database {
    connector: String,
    options: PgConnectOptions,
    /// The password, for the replication connection (never shown).
    password: Secret,
    /// The URL as it is used (the user who connects), any password
    /// hidden, for messages.
    shown: String,
}

/// A password: `Debug` shows stars.
#[derive(Clone, Default)]
struct Secret(Option<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "****" } else { "None" })
    }
}

impl Database {
    /// Parses the connection keys.
    pub(crate) fn new(connector: &str, url: &str, user: Option<&str>, password: Option<&str>) -> Result<Self> {
        let usage = "use postgres://user:password@host:port/database";
        let stripped = url.strip_prefix("jdbc:").unwrap_or(url);
        let stripped = stripped.replacen("postgresql://", "postgres://", 1);
        if !stripped.starts_with("postgres://") {
            return Err(Error::config(
                connector,
                "connection.url",
                format!("{url:?} is not a PostgreSQL URL; {usage}"),
            ));
        }
        let mut options = PgConnectOptions::from_str(&stripped)
            .map_err(|e| Error::config(connector, "connection.url", format!("{url:?}: {e}; {usage}")))?;
        if let Some(user) = user.filter(|u| !u.is_empty()) {
            options = options.username(user);
        }
        let url_password = url_password(&stripped);
        let password = password.filter(|p| !p.is_empty()).map(str::to_owned).or(url_password);
        if let Some(password) = &password {
            options = options.password(password);
        }
        options = options.application_name(&format!("plexus-connect-{connector}")).options([
            // The text forms `types::parse_text` reads, whatever the
            // server's defaults (sqlx sets DateStyle and TimeZone).
            ("IntervalStyle", "postgres"),
            ("extra_float_digits", "3"),
            ("bytea_output", "hex"),
        ]);
        let shown = format!(
            "postgres://{}{}@{}:{}/{}",
            options.get_username(),
            if password.is_some() { ":****" } else { "" },
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        Ok(Self { connector: connector.to_owned(), options, password: Secret(password), shown })
    }

    /// A connection, or the error that says the database is unreachable.
    pub(crate) async fn connect(&self) -> Result<PgConnection> {
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(Error::config(
                &self.connector,
                "connection.url",
                format!(
                    "cannot connect to {}: {e}; check that the server runs and the URL, user and password",
                    self.shown
                ),
            )),
            Err(_) => Err(Error::config(
                &self.connector,
                "connection.url",
                format!("{} did not answer in {CONNECT_TIMEOUT:?}; check the host and port", self.shown),
            )),
        }
    }

    /// The connector's name.
    pub(crate) fn connector(&self) -> &str {
        &self.connector
    }

    /// The `application_name` its sessions have (`plexus-connect-<name>`).
    pub(crate) fn application_name(&self) -> String {
        format!("plexus-connect-{}", self.connector)
    }

    /// Host, port, user, password and database, for a connection sqlx
    /// does not make (the replication protocol's).
    pub(crate) fn endpoint(&self) -> (String, u16, String, String, String) {
        (
            self.options.get_host().to_owned(),
            self.options.get_port(),
            self.options.get_username().to_owned(),
            self.password.0.clone().unwrap_or_default(),
            self.options.get_database().unwrap_or(self.options.get_username()).to_owned(),
        )
    }

    /// A database error as this connector's error.
    pub(crate) fn error(&self, doing: &str, e: &sqlx::Error) -> Error {
        Error::connector(&self.connector, format!("{doing}: {e}"))
    }
}

/// The password of a `postgres://user:password@…` URL, percent-decoded.
fn url_password(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let encoded = parsed.password()?;
    Some(percent_encoding::percent_decode_str(encoded).decode_utf8_lossy().into_owned())
}

/// A table, `schema.table` or `table` (the search path's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Table {
    pub(crate) schema: Option<String>,
    pub(crate) name: String,
}

impl Table {
    /// Parses `schema.table`, `table`, or either quoted.
    pub(crate) fn parse(text: &str) -> Self {
        let unquote = |s: &str| s.trim().trim_matches('"').to_owned();
        match text.split_once('.') {
            Some((schema, name)) => Self { schema: Some(unquote(schema)), name: unquote(name) },
            None => Self { schema: None, name: unquote(text) },
        }
    }

    /// Quoted for SQL.
    pub(crate) fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote(s), quote(&self.name)),
            None => quote(&self.name),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// An identifier quoted for SQL.
pub(crate) fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A table's column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) nullable: bool,
}

/// A table's columns in order, or `None` if it does not exist. A domain
/// column has its base type's kind; an array column as many dimensions
/// as it was declared with (`int[][]`: two).
pub(crate) async fn columns(conn: &mut PgConnection, table: &Table) -> sqlx::Result<Option<Vec<Column>>> {
    let oid: Option<i64> =
        sqlx::query_scalar("SELECT to_regclass($1)::oid::int8").bind(table.quoted()).fetch_one(&mut *conn).await?;
    let Some(oid) = oid else { return Ok(None) };
    let rows = sqlx::query(
        "SELECT a.attname::text, \
                (CASE WHEN t.typtype = 'd' THEN b.typname ELSE t.typname END)::text, \
                CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, \
                a.attnotnull, a.attndims::int4 \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type b ON b.oid = t.typbasetype \
         WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(
        rows.iter()
            .map(|r| Column {
                name: r.get(0),
                kind: Kind::of(r.get::<&str, _>(1), r.get(2)).with_dims(r.get(4)),
                nullable: !r.get::<bool, _>(3),
            })
            .collect(),
    ))
}

/// The default `offsets.table.name` of `PostgresSink`: the sources leave
/// it out when they list a database's tables, as it is not data.
pub(crate) const SINK_OFFSETS_TABLE: &str = "plexus_connect_offsets";

/// Where `PostgresSink`s note the tables they write (`connector`,
/// `table_schema`, `table_name`): CDC without `table.include.list` leaves
/// them out, so a copy is not captured again as a source.
pub(crate) const SINK_TABLES: &str = "plexus_connect_sink_tables";

/// The database's tables (outside the system schemas), in name order,
/// without the sinks' own tables.
pub(crate) async fn list_tables(conn: &mut PgConnection) -> sqlx::Result<Vec<Table>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, name)| name != SINK_OFFSETS_TABLE && name != SINK_TABLES)
        .map(|(schema, name)| Table { schema: Some(schema), name })
        .collect())
}

/// The tables `PostgresSink`s write, as `schema.table` (none when no
/// sink has written here).
pub(crate) async fn sink_tables(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(SINK_TABLES).fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(&format!("SELECT DISTINCT table_schema || '.' || table_name FROM {SINK_TABLES}"))
        .fetch_all(&mut *conn)
        .await
}

/// A table's primary key columns in key order (empty: none).
pub(crate) async fn primary_key(conn: &mut PgConnection, table: &Table) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n",
    )
    .bind(table.quoted())
    .fetch_all(&mut *conn)
    .await
}

/// Creates something in the database once, however many connectors
/// start together: `IF NOT EXISTS` (or a check first) alone lets two
/// sessions both decide to create, and one fails on the catalog's unique
/// index. A transaction-scoped advisory lock, held by every Plexus
/// connector while it creates, makes them take turns. `exists` is a query
/// with one parameter answering whether it is there already.
pub(crate) async fn create_once(conn: &mut PgConnection, exists: Option<(&str, &str)>, ddl: &str) -> sqlx::Result<()> {
    /// The advisory lock key: "plexus" in ASCII.
    const CREATE_LOCK: i64 = 0x706c_6578_7573;
    conn.execute("BEGIN").await?;
    let result = async {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CREATE_LOCK).execute(&mut *conn).await?;
        let there = match exists {
            Some((query, name)) => sqlx::query_scalar::<_, bool>(query).bind(name).fetch_one(&mut *conn).await?,
            None => false,
        };
        if !there {
            conn.execute(ddl).await?;
        }
        conn.execute("COMMIT").await.map(drop)
    }
    .await;
    if result.is_err() {
        let _ = conn.execute("ROLLBACK").await;
    }
    result
}

/// A row as `COPY … TO STDOUT` text gives it: each column's text, `None`
/// for NULL.
pub(crate) type TextRow = Vec<Option<String>>;

/// The rows of `query` through `COPY (…) TO STDOUT`: the server's cheapest
/// way out, a good deal cheaper than the extended protocol's rows.
pub(crate) async fn copy_rows(conn: &mut PgConnection, query: &str) -> sqlx::Result<Vec<TextRow>> {
    use futures_util::StreamExt as _;
    let mut out = conn.copy_out_raw(format!("COPY ({query}) TO STDOUT").as_str()).await?;
    let mut rows = Vec::new();
    let mut rest: Vec<u8> = Vec::new();
    while let Some(chunk) = out.next().await {
        rest.extend_from_slice(&chunk?);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &rest[start..]) {
            rows.push(copy_row(&rest[start..start + end]));
            start += end + 1;
        }
        rest.drain(..start);
    }
    Ok(rows)
}

/// One line of `COPY` text: tab-separated fields, `\N` for NULL, and
/// backslash escapes.
fn copy_row(line: &[u8]) -> TextRow {
    line.split(|&b| b == b'\t')
        .map(|field| {
            if field == b"\\N" {
                return None;
            }
            if !field.contains(&b'\\') {
                return Some(String::from_utf8_lossy(field).into_owned());
            }
            let mut out = Vec::with_capacity(field.len());
            let mut bytes = field.iter();
            while let Some(&b) = bytes.next() {
                if b != b'\\' {
                    out.push(b);
                    continue;
                }
                out.push(match bytes.next() {
                    Some(b'n') => b'\n',
                    Some(b't') => b'\t',
                    Some(b'r') => b'\r',
                    Some(b'b') => 8,
                    Some(b'f') => 12,
                    Some(b'v') => 11,
                    Some(&other) => other,
                    None => b'\\',
                });
            }
            Some(String::from_utf8_lossy(&out).into_owned())
        })
        .collect()
}
