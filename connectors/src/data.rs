//! The values connectors move, and their schemas.
//!
//! A record's key and value are [`Value`]s; where a schema is known it is
//! an Arrow [`DataType`] (the `arrow-schema` crate) rather than a type
//! system of our own, so that a row read from PostgreSQL, a record decoded
//! from JSON with an embedded schema and a Parquet column agree on types.
//! Kafka Connect's logical types map onto Arrow's own: `Timestamp` →
//! `Timestamp(Millisecond, "UTC")`, `Date` → `Date32`, `Time` →
//! `Time32(Millisecond)`, `Decimal` → `Decimal128` (its precision in
//! Confluent's `connect.decimal.precision`). Microsecond types — what
//! PostgreSQL keeps — take Debezium's names so that nothing is lost:
//! `Timestamp(Microsecond, None)` is `io.debezium.time.MicroTimestamp`,
//! with a zone `io.debezium.time.ZonedTimestamp`, `Time64` is
//! `io.debezium.time.MicroTime`. Values themselves are always in
//! microseconds.
//!
//! [`Value::to_json`] / [`Value::from_json`] are the schemaless JSON
//! mapping; [`schema_to_json`] / [`schema_from_json`] the schema half of
//! Kafka Connect's JSON envelope (`{"schema": …, "payload": …}`).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Number, Value as Json, json};

use crate::datetime::{TIMESTAMP_INFINITY, TIMESTAMP_NEG_INFINITY};
pub use crate::datetime::{date_text, days_from_civil, time_text, timestamp_text};

/// One value of a record's key or value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (a tombstone, an absent key, SQL NULL).
    Null,
    /// `boolean`.
    Boolean(bool),
    /// `int8`.
    Int8(i8),
    /// `int16`.
    Int16(i16),
    /// `int32`.
    Int32(i32),
    /// `int64`.
    Int64(i64),
    /// `float` (32-bit).
    Float32(f32),
    /// `double`.
    Float64(f64),
    /// `string`.
    String(String),
    /// `bytes`.
    Bytes(Bytes),
    /// A fixed-point number: `unscaled × 10^-scale`.
    Decimal {
        /// The digits.
        unscaled: i128,
        /// Digits after the point.
        scale: i8,
    },
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// A list of values.
    Array(Vec<Value>),
    /// Key–value pairs.
    Map(Vec<(Value, Value)>),
    /// Named fields in order (a row, a JSON object).
    Struct(Vec<(String, Value)>),
}

impl Default for Value {
    /// [`Value::Null`].
    fn default() -> Self {
        Self::Null
    }
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Self::String(s.into())
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// A struct's field.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Self::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            Self::Map(entries) => {
                entries.iter().find(|(k, _)| matches!(k, Self::String(s) if s == name)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// The Kafka Connect type name of this value (`int32`, `struct`, …),
    /// for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean(_) => "boolean",
            Self::Int8(_) => "int8",
            Self::Int16(_) => "int16",
            Self::Int32(_) => "int32",
            Self::Int64(_) => "int64",
            Self::Float32(_) => "float",
            Self::Float64(_) => "double",
            Self::String(_) => "string",
            Self::Bytes(_) => "bytes",
            Self::Decimal { .. } => "decimal",
            Self::Date(_) => "date",
            Self::Time(_) => "time",
            Self::Timestamp(_) => "timestamp",
            Self::Array(_) => "array",
            Self::Map(_) => "map",
            Self::Struct(_) => "struct",
        }
    }

    /// The value as a string the way a person would write it (for keys
    /// built from fields, CSV cells, SQL text parameters).
    pub fn to_text(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::String(s) => s.clone(),
            Self::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
            other => match other.to_json() {
                Json::String(s) => s,
                j => j.to_string(),
            },
        }
    }

    /// As [`Value::to_text`], for a value of `schema`: a timestamp the
    /// schema says is in microseconds as RFC 3339 text with all six digits
    /// (see [`Value::write_json_as`]).
    pub fn to_text_as(&self, schema: Option<&DataType>) -> String {
        match (self, schema) {
            (Self::Timestamp(us), Some(DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _))) => {
                timestamp_text(*us)
            }
            _ => self.to_text(),
        }
    }

    /// Schemaless JSON: numbers as numbers, bytes as base64, decimals as
    /// strings (no precision lost), dates and times as ISO-8601 strings,
    /// timestamps as milliseconds since the epoch (Kafka Connect's
    /// `Timestamp`).
    pub fn to_json(&self) -> Json {
        match self {
            Self::Null => Json::Null,
            Self::Boolean(b) => Json::Bool(*b),
            Self::Int8(n) => json!(n),
            Self::Int16(n) => json!(n),
            Self::Int32(n) => json!(n),
            Self::Int64(n) => json!(n),
            Self::Float32(n) => float_json(f64::from(*n)),
            Self::Float64(n) => float_json(*n),
            Self::String(s) => Json::String(s.clone()),
            Self::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Self::Decimal { unscaled, scale } => Json::String(decimal_text(*unscaled, *scale)),
            Self::Date(days) => Json::String(date_text(*days)),
            Self::Time(us) => Json::String(time_text(*us)),
            Self::Timestamp(us) => json!(timestamp_millis(*us)),
            Self::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Self::Map(entries) => {
                Json::Object(entries.iter().map(|(k, v)| (k.to_text(), v.to_json())).collect::<Map<_, _>>())
            }
            Self::Struct(fields) => {
                Json::Object(fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<Map<_, _>>())
            }
        }
    }

    /// Schemaless JSON text, as [`Value::to_json`] gives, with struct
    /// fields in their order (no intermediate JSON tree).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_as(None, out);
    }

    /// Schemaless JSON text of a value that has `schema`: as
    /// [`Value::write_json`], except that timestamps the schema says are
    /// microseconds (PostgreSQL's) are written as RFC 3339 text with all
    /// six digits rather than Kafka Connect's milliseconds, so that a
    /// sink reading the JSON without its schema still gets them exactly.
    pub fn write_json_as(&self, schema: Option<&DataType>, out: &mut Vec<u8>) {
        match (self, schema) {
            (Self::String(s), _) => write_json_str(out, s),
            (Self::Timestamp(us), Some(DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _))) => {
                write_json_str(out, &timestamp_text(*us));
            }
            (Self::Array(items), _) => {
                let item = match schema {
                    Some(DataType::List(f) | DataType::LargeList(f)) => Some(f.data_type()),
                    _ => None,
                };
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_json_as(item, out);
                }
                out.push(b']');
            }
            (Self::Struct(fields), _) => {
                let defs = match schema {
                    Some(DataType::Struct(defs)) => Some(defs),
                    _ => None,
                };
                out.push(b'{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, k);
                    out.push(b':');
                    // Fields are usually in the schema's order.
                    let t = defs
                        .and_then(|d| d.get(i).filter(|f| f.name() == k).or_else(|| d.iter().find(|f| f.name() == k)));
                    v.write_json_as(t.map(|f| f.data_type()), out);
                }
                out.push(b'}');
            }
            (Self::Map(entries), _) => {
                out.push(b'{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, &k.to_text());
                    out.push(b':');
                    v.write_json(out);
                }
                out.push(b'}');
            }
            (other, _) => out.extend_from_slice(other.to_json().to_string().as_bytes()),
        }
    }

    /// Parses schemaless JSON text into a value, keeping the order of
    /// object fields (see [`Value::from_json`]).
    pub fn parse_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice::<Ordered>(bytes).map(|o| o.0)
    }

    /// A value from schemaless JSON: integers as `Int64`, other numbers as
    /// `Float64`, objects as structs (fields in document order).
    pub fn from_json(json: Json) -> Self {
        match json {
            Json::Null => Self::Null,
            Json::Bool(b) => Self::Boolean(b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Self::Int64(i),
                None => Self::Float64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Self::String(s),
            Json::Array(items) => Self::Array(items.into_iter().map(Self::from_json).collect()),
            Json::Object(map) => Self::Struct(map.into_iter().map(|(k, v)| (k, Self::from_json(v))).collect()),
        }
    }

    /// A value from JSON typed by `schema` (the payload of Kafka Connect's
    /// envelope). Fails naming the path of the first value that does not
    /// fit.
    pub fn from_json_typed(json: Json, schema: &DataType) -> Result<Self, String> {
        from_typed(json, schema, "")
    }

    /// The payload JSON of this value under `schema` (as
    /// [`Value::to_json`], but timestamps, dates and decimals in the
    /// encodings Kafka Connect's logical types use).
    pub fn to_json_typed(&self, schema: &DataType) -> Json {
        match (self, schema) {
            (Self::Date(d), _) => json!(d),
            (Self::Time(us), DataType::Time64(_)) => json!(us),
            (Self::Time(us), _) => json!(us.div_euclid(1000)),
            (Self::Timestamp(us), DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, None)) => json!(us),
            (Self::Timestamp(us), DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, Some(_))) => {
                Json::String(timestamp_text(*us))
            }
            (Self::Decimal { unscaled, .. }, _) => {
                Json::String(base64::engine::general_purpose::STANDARD.encode(unscaled_bytes(*unscaled)))
            }
            (Self::Struct(fields), DataType::Struct(defs)) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| {
                        let t = defs.iter().find(|f| f.name() == k).map_or(DataType::Null, |f| f.data_type().clone());
                        (k.clone(), v.to_json_typed(&t))
                    })
                    .collect(),
            ),
            (Self::Array(items), DataType::List(item)) => {
                Json::Array(items.iter().map(|v| v.to_json_typed(item.data_type())).collect())
            }
            _ => self.to_json(),
        }
    }
}

/// A float as JSON: a number, or — JSON having none for them — `"NaN"`,
/// `"Infinity"` and `"-Infinity"` as strings, as Kafka Connect's
/// `JsonConverter` (Jackson) writes them; [`Value::from_json_typed`] reads
/// them back.
fn float_json(x: f64) -> Json {
    match Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x.is_nan() => Json::String("NaN".into()),
        None if x > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// A float written by [`float_json`], or `None`.
fn float_from_json(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Microseconds as Kafka Connect's milliseconds, the infinities kept as
/// the largest and smallest `i64` (see [`crate::datetime`]).
fn timestamp_millis(us: i64) -> i64 {
    match us {
        TIMESTAMP_INFINITY | TIMESTAMP_NEG_INFINITY => us,
        _ => us.div_euclid(1000),
    }
}

/// Milliseconds as microseconds (the inverse of [`timestamp_millis`]);
/// `None` past what microseconds hold.
pub fn timestamp_from_millis(ms: i64) -> Option<i64> {
    match ms {
        TIMESTAMP_INFINITY | TIMESTAMP_NEG_INFINITY => Some(ms),
        _ => ms.checked_mul(1000).filter(|us| *us != TIMESTAMP_INFINITY && *us != TIMESTAMP_NEG_INFINITY),
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a `&str` to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A [`Value`] deserialized straight from JSON text, objects as structs
/// in document order.
struct Ordered(Value);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Ordered, E> {
                Ok(Ordered(Value::Null))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered(Value::Boolean(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Ordered, E> {
                Ok(Ordered(Value::Int64(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Ordered, E> {
                Ok(Ordered(i64::try_from(n).map_or(Value::Float64(n as f64), Value::Int64)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Ordered, E> {
                Ok(Ordered(Value::Float64(n)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Ordered, E> {
                Ok(Ordered(Value::String(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Ordered, E> {
                Ok(Ordered(Value::String(s)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(Ordered(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Ordered(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, Ordered(v))) = map.next_entry::<String, Ordered>()? {
                    fields.push((k, v));
                }
                Ok(Ordered(Value::Struct(fields)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The schema of a value, inferred (what a schemaless value would be
/// written as): every field nullable.
pub fn infer_schema(value: &Value) -> DataType {
    match value {
        Value::Null => DataType::Null,
        Value::Boolean(_) => DataType::Boolean,
        Value::Int8(_) => DataType::Int8,
        Value::Int16(_) => DataType::Int16,
        Value::Int32(_) => DataType::Int32,
        Value::Int64(_) => DataType::Int64,
        Value::Float32(_) => DataType::Float32,
        Value::Float64(_) => DataType::Float64,
        Value::String(_) => DataType::Utf8,
        Value::Bytes(_) => DataType::Binary,
        Value::Decimal { scale, .. } => DataType::Decimal128(38, *scale),
        Value::Date(_) => DataType::Date32,
        Value::Time(_) => DataType::Time64(TimeUnit::Microsecond),
        Value::Timestamp(_) => timestamp_type(),
        Value::Array(items) => {
            let item = items.iter().find(|v| !v.is_null()).map_or(DataType::Utf8, infer_schema);
            DataType::List(Arc::new(Field::new("item", item, true)))
        }
        Value::Map(entries) => {
            let (k, v) =
                entries.first().map_or((DataType::Utf8, DataType::Utf8), |(k, v)| (infer_schema(k), infer_schema(v)));
            map_type(k, v)
        }
        Value::Struct(fields) => DataType::Struct(
            fields.iter().map(|(n, v)| Field::new(n, infer_schema(v), true)).collect::<Vec<_>>().into(),
        ),
    }
}

/// Kafka Connect's `Timestamp` (milliseconds, UTC) as this crate types it.
/// Values are microseconds whatever the schema's unit; the unit says how
/// they are encoded in JSON (see [`schema_to_json`]).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn map_type(key: DataType, value: DataType) -> DataType {
    let entries = Fields::from(vec![Field::new("key", key, false), Field::new("value", value, true)]);
    DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
}

const LOGICAL_TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
const LOGICAL_DATE: &str = "org.apache.kafka.connect.data.Date";
const LOGICAL_TIME: &str = "org.apache.kafka.connect.data.Time";
const LOGICAL_DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
/// Debezium's names for microsecond precision, which Kafka's own logical
/// types (milliseconds) would lose: PostgreSQL's `timestamp`, `timestamptz`
/// and `time` go through a topic and back unchanged.
const MICRO_TIMESTAMP: &str = "io.debezium.time.MicroTimestamp";
const ZONED_TIMESTAMP: &str = "io.debezium.time.ZonedTimestamp";
const MICRO_TIME: &str = "io.debezium.time.MicroTime";
/// The parameter Confluent's converters keep a decimal's precision in.
const DECIMAL_PRECISION: &str = "connect.decimal.precision";

/// The schema half of Kafka Connect's JSON envelope for `schema`.
pub fn schema_to_json(schema: &DataType, optional: bool) -> Json {
    let (kind, extra): (&str, Map<String, Json>) = match schema {
        DataType::Boolean => ("boolean", Map::new()),
        DataType::Int8 => ("int8", Map::new()),
        DataType::Int16 => ("int16", Map::new()),
        DataType::Int32 => ("int32", Map::new()),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("int64", Map::new()),
        DataType::Float32 => ("float", Map::new()),
        DataType::Float64 => ("double", Map::new()),
        DataType::Binary | DataType::LargeBinary => ("bytes", Map::new()),
        DataType::Timestamp(TimeUnit::Millisecond | TimeUnit::Second, _) => ("int64", named(LOGICAL_TIMESTAMP)),
        DataType::Timestamp(_, None) => ("int64", named(MICRO_TIMESTAMP)),
        DataType::Timestamp(_, Some(_)) => ("string", named(ZONED_TIMESTAMP)),
        DataType::Date32 | DataType::Date64 => ("int32", named(LOGICAL_DATE)),
        DataType::Time32(_) => ("int32", named(LOGICAL_TIME)),
        DataType::Time64(_) => ("int64", named(MICRO_TIME)),
        DataType::Decimal128(precision, scale) => {
            let mut m = named(LOGICAL_DECIMAL);
            m.insert(
                "parameters".into(),
                json!({ "scale": scale.to_string(), DECIMAL_PRECISION: precision.to_string() }),
            );
            ("bytes", m)
        }
        DataType::List(item) | DataType::LargeList(item) => (
            "array",
            [("items".to_owned(), schema_to_json(item.data_type(), item.is_nullable()))].into_iter().collect(),
        ),
        DataType::Map(entries, _) => {
            let (k, v) = match entries.data_type() {
                DataType::Struct(f) if f.len() == 2 => (f[0].data_type().clone(), f[1].data_type().clone()),
                _ => (DataType::Utf8, DataType::Utf8),
            };
            (
                "map",
                [("keys".to_owned(), schema_to_json(&k, false)), ("values".to_owned(), schema_to_json(&v, true))]
                    .into_iter()
                    .collect(),
            )
        }
        DataType::Struct(fields) => {
            let fields: Vec<Json> = fields
                .iter()
                .map(|f| {
                    let mut s = schema_to_json(f.data_type(), f.is_nullable());
                    if let Json::Object(m) = &mut s {
                        m.insert("field".into(), Json::String(f.name().clone()));
                    }
                    s
                })
                .collect();
            ("struct", [("fields".to_owned(), Json::Array(fields))].into_iter().collect())
        }
        _ => ("string", Map::new()),
    };
    let mut m = extra;
    m.insert("type".into(), Json::String(kind.into()));
    m.insert("optional".into(), Json::Bool(optional));
    Json::Object(m)
}

fn named(name: &str) -> Map<String, Json> {
    [("name".to_owned(), Json::String(name.into()))].into_iter().collect()
}

/// A schema from Kafka Connect's JSON envelope; `Err` says what is wrong.
pub fn schema_from_json(json: &Json) -> Result<(DataType, bool), String> {
    let Json::Object(m) = json else { return Err(format!("a schema must be a JSON object, not {json}")) };
    let optional = m.get("optional").and_then(Json::as_bool).unwrap_or(false);
    let name = m.get("name").and_then(Json::as_str);
    let kind = m.get("type").and_then(Json::as_str).ok_or("a schema needs a \"type\"")?;
    let t = match (kind, name) {
        ("int64", Some(LOGICAL_TIMESTAMP)) => timestamp_type(),
        ("int64", Some(MICRO_TIMESTAMP)) => DataType::Timestamp(TimeUnit::Microsecond, None),
        ("string", Some(ZONED_TIMESTAMP)) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ("int32", Some(LOGICAL_DATE)) => DataType::Date32,
        ("int32", Some(LOGICAL_TIME)) => DataType::Time32(TimeUnit::Millisecond),
        ("int64", Some(MICRO_TIME)) => DataType::Time64(TimeUnit::Microsecond),
        ("bytes", Some(LOGICAL_DECIMAL)) => {
            let parameter = |key: &str| {
                m.get("parameters")
                    .and_then(|p| p.get(key))
                    .and_then(|s| s.as_str().map(str::to_owned).or_else(|| s.as_i64().map(|n| n.to_string())))
            };
            let scale = parameter("scale").and_then(|s| s.parse::<i8>().ok()).unwrap_or(0);
            let precision = parameter(DECIMAL_PRECISION).and_then(|s| s.parse::<u8>().ok()).unwrap_or(38);
            DataType::Decimal128(precision.clamp(1, 38), scale)
        }
        ("boolean", _) => DataType::Boolean,
        ("int8", _) => DataType::Int8,
        ("int16", _) => DataType::Int16,
        ("int32", _) => DataType::Int32,
        ("int64", _) => DataType::Int64,
        ("float", _) => DataType::Float32,
        ("double", _) => DataType::Float64,
        ("string", _) => DataType::Utf8,
        ("bytes", _) => DataType::Binary,
        ("array", _) => {
            let (item, nullable) = schema_from_json(m.get("items").ok_or("an array schema needs \"items\"")?)?;
            DataType::List(Arc::new(Field::new("item", item, nullable)))
        }
        ("map", _) => {
            let (k, _) = schema_from_json(m.get("keys").ok_or("a map schema needs \"keys\"")?)?;
            let (v, _) = schema_from_json(m.get("values").ok_or("a map schema needs \"values\"")?)?;
            map_type(k, v)
        }
        ("struct", _) => {
            let fields = m.get("fields").and_then(Json::as_array).ok_or("a struct schema needs \"fields\"")?;
            let mut out = Vec::new();
            for f in fields {
                let name = f.get("field").and_then(Json::as_str).ok_or("each struct field needs a \"field\" name")?;
                let (t, nullable) = schema_from_json(f)?;
                out.push(Field::new(name, t, nullable));
            }
            DataType::Struct(out.into())
        }
        (other, _) => return Err(format!("unknown schema type {other:?}")),
    };
    Ok((t, optional))
}

fn from_typed(json: Json, schema: &DataType, path: &str) -> Result<Value, String> {
    let at = |what: &str, json: &Json| {
        let place = if path.is_empty() { String::new() } else { format!(" at {path}") };
        format!("expected {what}{place}, found {json}")
    };
    if json.is_null() {
        return Ok(Value::Null);
    }
    let int = |json: &Json| json.as_i64().ok_or_else(|| at("an integer", json));
    Ok(match schema {
        DataType::Boolean => Value::Boolean(json.as_bool().ok_or_else(|| at("a boolean", &json))?),
        DataType::Int8 => Value::Int8(i8::try_from(int(&json)?).map_err(|_| at("an int8", &json))?),
        DataType::Int16 => Value::Int16(i16::try_from(int(&json)?).map_err(|_| at("an int16", &json))?),
        DataType::Int32 => Value::Int32(i32::try_from(int(&json)?).map_err(|_| at("an int32", &json))?),
        DataType::Int64 => Value::Int64(int(&json)?),
        #[allow(clippy::cast_possible_truncation)] // a JSON float narrowed to the schema's float
        DataType::Float32 => Value::Float32(float_from_json(&json).ok_or_else(|| at("a number", &json))? as f32),
        DataType::Float64 => Value::Float64(float_from_json(&json).ok_or_else(|| at("a number", &json))?),
        DataType::Utf8 | DataType::LargeUtf8 => match json {
            Json::String(s) => Value::String(s),
            other => Value::String(other.to_string()),
        },
        DataType::Binary | DataType::LargeBinary => {
            let s = json.as_str().ok_or_else(|| at("base64 bytes", &json))?;
            let b =
                base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| at(&format!("base64 ({e})"), &json))?;
            Value::Bytes(Bytes::from(b))
        }
        DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _) => match &json {
            Json::String(s) => {
                Value::Timestamp(crate::datetime::parse_timestamp(s).ok_or_else(|| at("an ISO-8601 timestamp", &json))?)
            }
            _ => Value::Timestamp(int(&json)?),
        },
        DataType::Timestamp(..) => {
            Value::Timestamp(timestamp_from_millis(int(&json)?).ok_or_else(|| at("a timestamp in range", &json))?)
        }
        DataType::Date32 | DataType::Date64 => {
            Value::Date(i32::try_from(int(&json)?).map_err(|_| at("a day number", &json))?)
        }
        DataType::Time64(_) => Value::Time(int(&json)?),
        DataType::Time32(_) => Value::Time(int(&json)?.saturating_mul(1000)),
        DataType::Decimal128(_, scale) => match &json {
            Json::String(s) => {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| at(&format!("a decimal ({e})"), &json))?;
                Value::Decimal { unscaled: unscaled_from_bytes(&b), scale: *scale }
            }
            _ => return Err(at("a base64 decimal", &json)),
        },
        DataType::List(item) => match json {
            Json::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| from_typed(v, item.data_type(), &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            other => return Err(at("an array", &other)),
        },
        DataType::Map(entries, _) => {
            let Json::Object(map) = json else { return Err(at("an object", &json)) };
            let vt = match entries.data_type() {
                DataType::Struct(f) if f.len() == 2 => f[1].data_type().clone(),
                _ => DataType::Utf8,
            };
            Value::Map(
                map.into_iter()
                    .map(|(k, v)| {
                        let p = format!("{path}.{k}");
                        Ok((Value::String(k), from_typed(v, &vt, &p)?))
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
        DataType::Struct(fields) => {
            let Json::Object(mut map) = json else { return Err(at("an object", &json)) };
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                let p = if path.is_empty() { f.name().clone() } else { format!("{path}.{}", f.name()) };
                let v = map.remove(f.name()).unwrap_or(Json::Null);
                if v.is_null() && !f.is_nullable() {
                    return Err(format!("field {p} is required but missing or null"));
                }
                out.push((f.name().clone(), from_typed(v, f.data_type(), &p)?));
            }
            Value::Struct(out)
        }
        _ => Value::from_json(json),
    })
}

/// Big-endian two's complement, as Kafka Connect's `Decimal` carries it.
fn unscaled_bytes(n: i128) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    // The shortest form that keeps the sign.
    let mut start = 0;
    while start < 15
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    bytes[start..].to_vec()
}

fn unscaled_from_bytes(b: &[u8]) -> i128 {
    let negative = b.first().is_some_and(|x| x & 0x80 != 0);
    let mut buf = if negative { [0xff; 16] } else { [0; 16] };
    let b = &b[b.len().saturating_sub(16)..];
    buf[16 - b.len()..].copy_from_slice(b);
    i128::from_be_bytes(buf)
}

/// `unscaled × 10^-scale` as decimal text.
pub fn decimal_text(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        let zeros = "0".repeat(usize::from(scale.unsigned_abs()));
        return if unscaled == 0 { "0".into() } else { format!("{unscaled}{zeros}") };
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale.unsigned_abs());
    let padded =
        if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale - digits.len() + 1)) } else { digits };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if unscaled < 0 { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_and_encode_as_kafka_connect_does() {
        assert_eq!(decimal_text(12_345, 2), "123.45");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(7, 0), "7");
        for n in [0_i128, 1, -1, 127, 128, -128, -129, 1 << 70, -(1 << 90)] {
            assert_eq!(unscaled_from_bytes(&unscaled_bytes(n)), n);
        }
        assert_eq!(unscaled_bytes(128), vec![0, 128]);
    }

    #[test]
    fn typed_json_round_trips_through_the_envelope_schema() {
        let value = Value::Struct(vec![
            ("id".into(), Value::Int32(7)),
            ("name".into(), Value::string("ada")),
            ("at".into(), Value::Timestamp(1_700_000_000_123_000)),
            ("price".into(), Value::Decimal { unscaled: 1999, scale: 2 }),
            ("tags".into(), Value::Array(vec![Value::string("a")])),
            ("missing".into(), Value::Null),
        ]);
        let schema = infer_schema(&value);
        let json_schema = schema_to_json(&schema, false);
        let (back, optional) = schema_from_json(&json_schema).expect("schema");
        assert!(!optional);
        let payload = value.to_json_typed(&back);
        assert_eq!(payload["at"], json!(1_700_000_000_123_i64));
        let decoded = Value::from_json_typed(payload, &back).expect("payload");
        assert_eq!(decoded, value);
    }

    #[test]
    fn microseconds_survive_the_envelope() {
        let schema = DataType::Struct(
            vec![
                Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                Field::new("zoned", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                Field::new("time", DataType::Time64(TimeUnit::Microsecond), true),
                Field::new("price", DataType::Decimal128(12, 2), true),
            ]
            .into(),
        );
        let value = Value::Struct(vec![
            ("at".into(), Value::Timestamp(1_700_000_000_123_456)),
            ("zoned".into(), Value::Timestamp(1_700_000_000_123_456)),
            ("time".into(), Value::Time(3_600_000_001)),
            ("price".into(), Value::Decimal { unscaled: 1999, scale: 2 }),
        ]);
        let (back, _) = schema_from_json(&schema_to_json(&schema, false)).expect("schema");
        assert_eq!(back, schema);
        let payload = value.to_json_typed(&back);
        assert_eq!(payload["zoned"], json!("2023-11-14T22:13:20.123456Z"));
        assert_eq!(Value::from_json_typed(payload, &back).expect("payload"), value);
    }

    #[test]
    fn a_payload_that_does_not_fit_its_schema_names_the_field() {
        let schema = DataType::Struct(vec![Field::new("id", DataType::Int32, false)].into());
        let err = Value::from_json_typed(json!({"id": "seven"}), &schema).expect_err("mismatch");
        assert_eq!(err, "expected an integer at id, found \"seven\"");
        let err = Value::from_json_typed(json!({}), &schema).expect_err("missing");
        assert!(err.contains("field id is required"), "{err}");
    }
}
