//! A captured table as the change events describe it, and the events
//! themselves: Debezium's envelope (`before`, `after`, `source`, `op`,
//! `ts_ms`), keyed by the primary key, with a tombstone after a delete.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_schema::{DataType, Field, Fields};
use serde_json::Value as Json;

use super::super::Column;
use super::super::pgoutput::Op;
use super::super::types::Kind;
use crate::data::Value;
use crate::record::{ConnectRecord, SourceRecord};

/// A captured table: its columns, key and the events' topic and schemas,
/// made once.
#[derive(Debug)]
pub(super) struct Relation {
    pub(super) schema: String,
    pub(super) name: String,
    /// `schema.table`, as the snapshot's progress names it.
    pub(super) qualified: String,
    pub(super) columns: Vec<Column>,
    /// Whether each column is part of the key.
    pub(super) key: Vec<bool>,
    /// The key columns in the primary key's order (indexes into
    /// `columns`): the order the snapshot reads in, along the index.
    pub(super) key_order: Vec<usize>,
    /// Their types as SQL (`format_type`), for literals.
    pub(super) key_types: Vec<String>,
    /// The columns as `pgoutput` last described them (flags, name, type
    /// OID, typmod), to know a description that changes nothing.
    pub(super) described: Vec<(u8, String, u32, i32)>,
    pub(super) topic: String,
    key_schema: Option<DataType>,
    value_schema: DataType,
}

impl Relation {
    pub(super) fn new(
        prefix: &str,
        schema: String,
        name: String,
        columns: Vec<Column>,
        key_order: Vec<usize>,
        key_types: Vec<String>,
    ) -> Self {
        let key: Vec<bool> = (0..columns.len()).map(|i| key_order.contains(&i)).collect();
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
        let qualified = format!("{schema}.{name}");
        Self {
            schema,
            name,
            qualified,
            columns,
            key,
            key_order,
            key_types,
            described: Vec::new(),
            topic,
            key_schema,
            value_schema,
        }
    }

    /// Whether the table has a key.
    pub(super) fn keyed(&self) -> bool {
        self.key_schema.is_some()
    }

    /// The key columns' values of a row, in key order.
    pub(super) fn key_of<'a>(&self, row: &'a [Value]) -> Vec<&'a Value> {
        self.key_order.iter().filter_map(|&i| row.get(i)).collect()
    }

    /// The key columns' kinds, in key order.
    pub(super) fn key_kinds(&self) -> Vec<&Kind> {
        self.key_order.iter().filter_map(|&i| self.columns.get(i)).map(|c| &c.kind).collect()
    }

    /// Whether an update moved the row to another key. The old row has
    /// the key when the server sends one (it does when the key changed,
    /// and always under `REPLICA IDENTITY FULL`).
    pub(super) fn key_changed(&self, before: &[Value], after: &[Value]) -> bool {
        self.keyed()
            && self.key.iter().zip(before.iter().zip(after)).any(|(k, (old, new))| *k && !old.is_null() && old != new)
    }
}

/// Where an event came from.
pub(super) struct Source {
    pub(super) lsn: u64,
    pub(super) tx: Option<u32>,
    pub(super) ts_ms: i64,
    pub(super) snapshot: &'static str,
}

/// What every event of a connector shares.
pub(super) struct Events {
    pub(super) prefix: String,
    pub(super) database: String,
    pub(super) tombstones: bool,
    pub(super) partition: Arc<Json>,
}

impl Events {
    /// A change event (and its tombstone, for a delete), without offsets.
    pub(super) fn records(
        &self,
        relation: &Relation,
        op: Op,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        source: &Source,
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
        let key = if relation.keyed() {
            after.as_deref().or(before.as_deref()).map_or(Value::Null, key_of)
        } else {
            Value::Null
        };
        let source_value = Value::Struct(vec![
            ("version".into(), Value::string(env!("CARGO_PKG_VERSION"))),
            ("connector".into(), Value::string("postgresql")),
            ("name".into(), Value::string(&self.prefix)),
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
        let mut out = vec![self.source_record(record)];
        if is_delete && self.tombstones && !key.is_null() {
            let mut tombstone = ConnectRecord::new(relation.topic.clone(), Value::Null).with_key(key);
            tombstone.key_schema.clone_from(&relation.key_schema);
            out.push(self.source_record(tombstone));
        }
        out
    }

    /// A record of this connector's partition (its offset is set later).
    pub(super) fn source_record(&self, record: ConnectRecord) -> SourceRecord {
        SourceRecord { source_partition: Arc::clone(&self.partition), source_offset: Json::Null, record, failure: None }
    }
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A table as the catalog describes it now: its columns (kinds with
/// domains resolved and arrays' dimensions), its primary key and the key
/// columns' SQL types.
pub(super) async fn describe(
    conn: &mut sqlx::PgConnection,
    prefix: &str,
    table: &super::super::Table,
    arrays: super::super::types::ArrayMode,
) -> sqlx::Result<Relation> {
    let mut columns = super::super::columns(conn, table).await?.unwrap_or_default();
    for c in &mut columns {
        c.kind.apply_array_mode(arrays);
    }
    let key: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_index i \
         JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n",
    )
    .bind(table.quoted())
    .fetch_all(&mut *conn)
    .await?;
    let key_order = key.iter().filter_map(|(k, _)| columns.iter().position(|c| c.name == *k)).collect();
    let key_types = key.into_iter().map(|(_, t)| t).collect();
    Ok(Relation::new(
        prefix,
        table.schema.clone().unwrap_or_else(|| "public".into()),
        table.name.clone(),
        columns,
        key_order,
        key_types,
    ))
}
