//! The snapshot: every row of the captured tables as they were at one
//! point of the WAL, and where the change stream takes over from it.
//!
//! A snapshot is read inside one `REPEATABLE READ` transaction that
//! imported the snapshot a replication slot exported when it was created
//! (`SET TRANSACTION SNAPSHOT`): it sees exactly the transactions that
//! committed before the slot's consistent point, and the slot streams
//! exactly those after, so no row is both read and streamed.
//!
//! Tables with a primary key of a type Rust orders as PostgreSQL does
//! (integers, booleans, dates, timestamps, exact numerics, bytea, uuid —
//! not text, whose order is the collation's) are read in key order, in
//! chunks, and each chunk's last key goes into the connector's offsets:
//! after a crash the snapshot continues after that key instead of
//! starting over. The rest of the table is then read at a newer point (a
//! temporary slot's exported snapshot), so the table is made of
//! [`Segment`]s, key ranges read at different LSNs; a streamed change of
//! a row is dropped when its commit is not after the point its range was
//! read at (the snapshot has it already) — see [`Progress::covers`].
//! Other tables are read whole through a cursor; one cut short by a crash
//! is read again from its start (its rows read before the crash are then
//! in the log twice).

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::Executor;
use sqlx::postgres::PgConnection;

use super::super::types::{ArrayMode, Kind, parse_text};
use super::super::{Database, Table, TextRow, copy_rows, quote};
use super::relation::Relation;
use crate::data::Value;
use crate::error::Result;

/// A key range of a table, read at one LSN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Segment {
    /// The LSN the range was read at.
    pub(super) lsn: u64,
    /// The last key read (each key column's text), keys above the
    /// previous segment's up to it; `None`: to the end of the table.
    pub(super) upto: Option<Vec<Option<String>>>,
}

/// How far the snapshot is, kept in the offsets until the stream has
/// passed every point it was read at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Progress {
    /// Every captured table read to its end.
    pub(super) done: bool,
    /// `schema.table` → its segments, in key order.
    pub(super) tables: BTreeMap<String, Vec<Segment>>,
}

impl Progress {
    /// Whether a table is read to its end.
    pub(super) fn finished(&self, table: &str) -> bool {
        self.tables.get(table).and_then(|s| s.last()).is_some_and(|s| s.upto.is_none())
    }

    /// The newest point any range was read at.
    pub(super) fn newest(&self) -> u64 {
        self.tables.values().flatten().map(|s| s.lsn).max().unwrap_or(0)
    }

    /// Whether the snapshot already has the effect of a change to the row
    /// with `key` (`None`: no key) of `relation` committed at `lsn`: its
    /// range was read at or after that commit.
    pub(super) fn covers(&self, relation: &Relation, key: Option<&[&Value]>, lsn: u64) -> bool {
        let Some(segments) = self.tables.get(&relation.qualified) else { return false };
        let kinds = relation.key_kinds();
        for segment in segments {
            let inside = match (&segment.upto, key) {
                (None, _) => true,
                (Some(upto), Some(key)) => compare_key(key, upto, &kinds) != Ordering::Greater,
                (Some(_), None) => true,
            };
            if inside {
                return lsn <= segment.lsn;
            }
        }
        false
    }
}

/// Whether Rust orders values of `kind` as PostgreSQL's default btree
/// order does.
fn orderable(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Bool
            | Kind::Int16
            | Kind::Int32
            | Kind::Int64
            | Kind::Date
            | Kind::Timestamp
            | Kind::TimestampTz
            | Kind::Numeric(Some(_))
            | Kind::Bytea
    ) || *kind == Kind::Other("uuid".into())
}

/// `key` against the key texts `upto` (read as `kinds`).
fn compare_key(key: &[&Value], upto: &[Option<String>], kinds: &[&Kind]) -> Ordering {
    for ((value, text), kind) in key.iter().zip(upto).zip(kinds) {
        let bound = text.as_deref().map_or(Ok(Value::Null), |t| parse_text(t, kind)).unwrap_or(Value::Null);
        match compare(value, &bound) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

/// Two values of one orderable kind.
fn compare(a: &Value, b: &Value) -> Ordering {
    fn int(v: &Value) -> Option<i128> {
        match v {
            Value::Int8(n) => Some(i128::from(*n)),
            Value::Int16(n) => Some(i128::from(*n)),
            Value::Int32(n) => Some(i128::from(*n)),
            Value::Int64(n) => Some(i128::from(*n)),
            _ => None,
        }
    }
    match (a, b) {
        (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
        (Value::Date(x), Value::Date(y)) => x.cmp(y),
        (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        // One column, one scale.
        (Value::Decimal { unscaled: x, .. }, Value::Decimal { unscaled: y, .. }) => x.cmp(y),
        // uuid: its text orders as its bytes.
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        _ => match (int(a), int(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => Ordering::Equal,
        },
    }
}

/// One table being read.
struct TableRead {
    relation: Arc<Relation>,
    /// In key chunks (else through a cursor).
    chunked: bool,
    /// The last key read, for the next chunk.
    after: Option<Vec<Option<String>>>,
    /// Whether a segment at this snapshot's LSN is open for the table.
    open: bool,
    cursor: Option<String>,
}

/// A snapshot being read (see the module docs).
pub(super) struct Reader {
    conn: PgConnection,
    /// The LSN it sees the database at.
    pub(super) lsn: u64,
    tables: VecDeque<Table>,
    current: Option<TableRead>,
    chunk: usize,
    arrays: ArrayMode,
}

/// Rows of one table, and whether they are the snapshot's last.
pub(super) struct Chunk {
    pub(super) relation: Arc<Relation>,
    pub(super) rows: Vec<TextRow>,
    pub(super) last: bool,
}

impl Reader {
    /// Opens a transaction on `snapshot` (the exported snapshot's name)
    /// to read `tables` that `progress` does not have whole.
    pub(super) async fn open(
        db: &Database,
        snapshot: &str,
        lsn: u64,
        tables: Vec<Table>,
        progress: &Progress,
        chunk: usize,
        arrays: ArrayMode,
    ) -> Result<Self> {
        let mut conn = db.connect().await?;
        // A snapshot name is the server's (hex digits and dashes).
        let name: String = snapshot.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        conn.execute(
            format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{name}'").as_str(),
        )
        .await
        .map_err(|e| db.error("importing the slot's snapshot", &e))?;
        let tables: VecDeque<Table> = tables.into_iter().filter(|t| !progress.finished(&qualified(t))).collect();
        tracing::info!(connector = %db.connector(), tables = tables.len(), lsn, "snapshot started");
        Ok(Self { conn, lsn, tables, current: None, chunk, arrays })
    }

    /// The next rows, with `progress` moved past them; `None` once every
    /// table is read (and the transaction ended).
    pub(super) async fn next(&mut self, db: &Database, prefix: &str, progress: &mut Progress) -> Result<Option<Chunk>> {
        loop {
            if self.current.is_none() {
                let Some(table) = self.tables.pop_front() else {
                    let _ = self.conn.execute("COMMIT").await;
                    progress.done = true;
                    tracing::info!(connector = %db.connector(), "snapshot done");
                    return Ok(None);
                };
                let relation = Arc::new(
                    super::relation::describe(&mut self.conn, prefix, &table, self.arrays)
                        .await
                        .map_err(|e| db.error(&format!("reading table {table}"), &e))?,
                );
                let chunked = relation.keyed() && relation.key_kinds().iter().all(|k| orderable(k));
                let after = if chunked {
                    progress.tables.get(&relation.qualified).and_then(|s| s.last()).and_then(|s| s.upto.clone())
                } else {
                    None
                };
                if !chunked {
                    // Read whole: what an earlier run read of it counts for nothing.
                    progress.tables.remove(&relation.qualified);
                }
                self.current = Some(TableRead { relation, chunked, after, open: false, cursor: None });
            }
            let Some(read) = self.current.as_mut() else { continue };
            let relation = Arc::clone(&read.relation);
            let failed = |e: sqlx::Error| db.error(&format!("reading table {}", relation.qualified), &e);
            let rows = if read.chunked {
                let sql = chunk_query(&relation, read.after.as_deref(), self.chunk);
                copy_rows(&mut self.conn, &sql).await.map_err(failed)?
            } else {
                let cursor = match &read.cursor {
                    Some(c) => c.clone(),
                    None => {
                        let c = format!("plexus_snapshot_{}", self.tables.len());
                        let select: Vec<String> =
                            relation.columns.iter().map(|c| format!("{}::text", quote(&c.name))).collect();
                        let table = Table { schema: Some(relation.schema.clone()), name: relation.name.clone() };
                        let declare = format!(
                            "DECLARE {c} NO SCROLL CURSOR FOR SELECT {} FROM {}",
                            select.join(", "),
                            table.quoted()
                        );
                        self.conn.execute(declare.as_str()).await.map_err(failed)?;
                        read.cursor = Some(c.clone());
                        c
                    }
                };
                let rows = sqlx::query(&format!("FETCH {} FROM {cursor}", self.chunk))
                    .fetch_all(&mut self.conn)
                    .await
                    .map_err(failed)?;
                rows.iter()
                    .map(|r| {
                        (0..relation.columns.len())
                            .map(|i| sqlx::Row::try_get::<Option<String>, _>(r, i).unwrap_or(None))
                            .collect()
                    })
                    .collect()
            };
            let finished = rows.len() < self.chunk;
            let segments = progress.tables.entry(relation.qualified.clone()).or_default();
            if read.chunked {
                let last_key = rows
                    .last()
                    .map(|row| relation.key_order.iter().map(|&i| row.get(i).cloned().flatten()).collect::<Vec<_>>());
                if let Some(key) = &last_key {
                    read.after = Some(key.clone());
                }
                let upto = if finished { None } else { last_key };
                if read.open {
                    if let Some(last) = segments.last_mut() {
                        last.upto = upto;
                    }
                } else if upto.is_some() || finished {
                    segments.push(Segment { lsn: self.lsn, upto });
                    read.open = true;
                }
            } else if finished {
                segments.push(Segment { lsn: self.lsn, upto: None });
            }
            if finished {
                self.current = None;
            }
            if rows.is_empty() {
                continue;
            }
            let last = finished && self.tables.is_empty();
            return Ok(Some(Chunk { relation, rows, last }));
        }
    }
}

/// `schema.table`.
pub(super) fn qualified(table: &Table) -> String {
    format!("{}.{}", table.schema.as_deref().unwrap_or("public"), table.name)
}

/// The next chunk of a keyed table, after key `after`, in key order.
fn chunk_query(relation: &Relation, after: Option<&[Option<String>]>, limit: usize) -> String {
    let table = Table { schema: Some(relation.schema.clone()), name: relation.name.clone() };
    let keys: Vec<String> =
        relation.key_order.iter().filter_map(|&i| relation.columns.get(i)).map(|c| quote(&c.name)).collect();
    let filter = after.map_or_else(String::new, |after| {
        let literals: Vec<String> = after
            .iter()
            .zip(&relation.key_types)
            .map(|(text, t)| match text {
                // Quoted as PostgreSQL reads a literal (standard_conforming_strings).
                Some(text) => format!("'{}'::{t}", text.replace('\'', "''")),
                None => format!("NULL::{t}"),
            })
            .collect();
        format!(" WHERE ({}) > ({})", keys.join(", "), literals.join(", "))
    });
    format!("SELECT * FROM {}{filter} ORDER BY {} LIMIT {limit}", table.quoted(), keys.join(", "))
}
