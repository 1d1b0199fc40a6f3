//! PostgreSQL types and the Arrow-typed record schema, both ways.
//!
//! Reading, each column has a [`Kind`]: the types with an exact Rust
//! counterpart are decoded by sqlx (booleans, integers, floats, text,
//! bytea, dates, times, timestamps, and arrays of these); `numeric` is
//! read as its text and kept exact as a [`Value::Decimal`]; everything
//! else (uuid, json, jsonb, inet, intervals, enums, …) is read as its text
//! — the server's cast, so nothing PostgreSQL can print is unreadable.
//!
//! Writing, a value is rendered as a field of `COPY … FROM STDIN` text for
//! the target column's kind, or refused with the reason (the caller names
//! the column): the row goes to the error handler instead of failing the
//! whole batch in the server.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::data::{Value, decimal_text};

/// How a column is read and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `boolean`.
    Bool,
    /// `smallint`.
    Int16,
    /// `integer`.
    Int32,
    /// `bigint`.
    Int64,
    /// `real`.
    Float32,
    /// `double precision`.
    Float64,
    /// `text`, `varchar`, `char`, `name`.
    Text,
    /// `bytea`.
    Bytea,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`.
    TimestampTz,
    /// `numeric(precision, scale)`; `None`: unconstrained.
    Numeric(Option<(u8, i8)>),
    /// `json` / `jsonb`: read as text; written from any value as JSON.
    Json,
    /// Anything else (uuid, inet, interval, enums, …), read and written
    /// as PostgreSQL's text for it; the name is the type's.
    Other(String),
    /// An array of the element kind.
    Array(Box<Kind>),
}

impl Kind {
    /// The kind of a type by its catalog name (`int4`, `_int4` or
    /// `int4[]` for arrays, case-insensitive) and `atttypmod` (-1: none).
    pub fn of(type_name: &str, typmod: i32) -> Self {
        let lower = type_name.to_ascii_lowercase();
        if let Some(element) = lower.strip_suffix("[]").or_else(|| lower.strip_prefix('_')) {
            return Self::Array(Box::new(Self::of(element, typmod)));
        }
        match lower.as_str() {
            "bool" | "boolean" => Self::Bool,
            "int2" | "smallint" => Self::Int16,
            "int4" | "integer" | "int" => Self::Int32,
            "int8" | "bigint" => Self::Int64,
            "float4" | "real" => Self::Float32,
            "float8" | "double precision" => Self::Float64,
            "text" | "varchar" | "character varying" | "bpchar" | "character" | "name" | "char" => Self::Text,
            "bytea" => Self::Bytea,
            "date" => Self::Date,
            "time" | "time without time zone" => Self::Time,
            "timestamp" | "timestamp without time zone" => Self::Timestamp,
            "timestamptz" | "timestamp with time zone" => Self::TimestampTz,
            "numeric" | "decimal" => Self::Numeric(numeric_typmod(typmod)),
            "json" | "jsonb" => Self::Json,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The expression that selects column `quoted` so that [`decode`]
    /// can read it: a cast to text for the kinds read as text.
    pub fn select(&self, quoted: &str) -> String {
        match self {
            Self::Numeric(_) | Self::Json | Self::Other(_) => format!("{quoted}::text"),
            Self::Array(e) if matches!(**e, Self::Numeric(_) | Self::Json | Self::Other(_) | Self::Array(_)) => {
                format!("{quoted}::text[]")
            }
            _ => quoted.to_owned(),
        }
    }

    /// The Arrow type of the column's values in a record's schema.
    pub fn data_type(&self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Text | Self::Json | Self::Other(_) | Self::Numeric(None) => DataType::Utf8,
            Self::Bytea => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Numeric(Some((p, s))) => DataType::Decimal128(*p, *s),
            Self::Array(e) => {
                let element = match **e {
                    Self::Numeric(_) | Self::Json | Self::Other(_) | Self::Array(_) => DataType::Utf8,
                    ref k => k.data_type(),
                };
                DataType::List(Arc::new(Field::new("item", element, true)))
            }
        }
    }

    /// The PostgreSQL type a column of Arrow type `t` is created with
    /// (`auto.create`, `auto.evolve`); structs and maps become `jsonb`.
    pub fn sql_type_for(t: &DataType) -> String {
        match t {
            DataType::Boolean => "boolean".into(),
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
            DataType::Int32 | DataType::UInt16 => "integer".into(),
            DataType::Int64 | DataType::UInt32 => "bigint".into(),
            DataType::UInt64 => "numeric(20,0)".into(),
            DataType::Float16 | DataType::Float32 => "real".into(),
            DataType::Float64 => "double precision".into(),
            DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) | DataType::BinaryView => {
                "bytea".into()
            }
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
            DataType::Date32 | DataType::Date64 => "date".into(),
            DataType::Time32(_) | DataType::Time64(_) => "time".into(),
            DataType::Timestamp(_, None) => "timestamp".into(),
            DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => match f.data_type() {
                DataType::Struct(_) | DataType::Map(..) | DataType::List(_) => "jsonb".into(),
                inner => format!("{}[]", Self::sql_type_for(inner)),
            },
            DataType::Struct(_) | DataType::Map(..) => "jsonb".into(),
            _ => "text".into(),
        }
    }
}

/// `numeric(p, s)` from `atttypmod`.
fn numeric_typmod(typmod: i32) -> Option<(u8, i8)> {
    if typmod < 4 {
        return None;
    }
    let m = typmod - 4;
    let precision = u8::try_from((m >> 16) & 0xffff).ok()?;
    let scale = i8::try_from(m & 0xffff).ok()?;
    (precision <= 38).then_some((precision, scale))
}

/// Column `i` of `row`, selected with [`Kind::select`], as a value.
pub fn decode(row: &PgRow, i: usize, kind: &Kind) -> Result<Value, String> {
    fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        i: usize,
    ) -> Result<Option<T>, String> {
        row.try_get::<Option<T>, _>(i).map_err(|e| e.to_string())
    }
    fn list<T, F>(row: &PgRow, i: usize, f: F) -> Result<Value, String>
    where
        T: for<'a> sqlx::Decode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + sqlx::postgres::PgHasArrayType,
        F: Fn(T) -> Result<Value, String>,
    {
        let items = row.try_get::<Option<Vec<Option<T>>>, _>(i).map_err(|e| e.to_string())?;
        Ok(match items {
            None => Value::Null,
            Some(items) => {
                Value::Array(items.into_iter().map(|x| x.map_or(Ok(Value::Null), &f)).collect::<Result<Vec<_>, _>>()?)
            }
        })
    }
    Ok(match kind {
        Kind::Bool => get::<bool>(row, i)?.map_or(Value::Null, Value::Boolean),
        Kind::Int16 => get::<i16>(row, i)?.map_or(Value::Null, Value::Int16),
        Kind::Int32 => get::<i32>(row, i)?.map_or(Value::Null, Value::Int32),
        Kind::Int64 => get::<i64>(row, i)?.map_or(Value::Null, Value::Int64),
        Kind::Float32 => get::<f32>(row, i)?.map_or(Value::Null, Value::Float32),
        Kind::Float64 => get::<f64>(row, i)?.map_or(Value::Null, Value::Float64),
        Kind::Text | Kind::Json | Kind::Other(_) => get::<String>(row, i)?.map_or(Value::Null, Value::String),
        Kind::Bytea => get::<Vec<u8>>(row, i)?.map_or(Value::Null, |b| Value::Bytes(b.into())),
        Kind::Date => get::<NaiveDate>(row, i)?.map_or(Value::Null, |d| Value::Date(days(d))),
        Kind::Time => get::<NaiveTime>(row, i)?.map_or(Value::Null, |t| Value::Time(time_micros(t))),
        Kind::Timestamp => get::<NaiveDateTime>(row, i)?.map_or(Value::Null, |t| Value::Timestamp(micros(t))),
        Kind::TimestampTz => {
            get::<DateTime<Utc>>(row, i)?.map_or(Value::Null, |t| Value::Timestamp(micros(t.naive_utc())))
        }
        Kind::Numeric(typmod) => match get::<String>(row, i)? {
            None => Value::Null,
            Some(text) => numeric_value(&text, *typmod)?,
        },
        Kind::Array(element) => match &**element {
            Kind::Bool => list::<bool, _>(row, i, |x| Ok(Value::Boolean(x)))?,
            Kind::Int16 => list::<i16, _>(row, i, |x| Ok(Value::Int16(x)))?,
            Kind::Int32 => list::<i32, _>(row, i, |x| Ok(Value::Int32(x)))?,
            Kind::Int64 => list::<i64, _>(row, i, |x| Ok(Value::Int64(x)))?,
            Kind::Float32 => list::<f32, _>(row, i, |x| Ok(Value::Float32(x)))?,
            Kind::Float64 => list::<f64, _>(row, i, |x| Ok(Value::Float64(x)))?,
            Kind::Bytea => list::<Vec<u8>, _>(row, i, |x| Ok(Value::Bytes(x.into())))?,
            Kind::Date => list::<NaiveDate, _>(row, i, |x| Ok(Value::Date(days(x))))?,
            Kind::Time => list::<NaiveTime, _>(row, i, |x| Ok(Value::Time(time_micros(x))))?,
            Kind::Timestamp => list::<NaiveDateTime, _>(row, i, |x| Ok(Value::Timestamp(micros(x))))?,
            Kind::TimestampTz => list::<DateTime<Utc>, _>(row, i, |x| Ok(Value::Timestamp(micros(x.naive_utc()))))?,
            _ => list::<String, _>(row, i, |x| Ok(Value::String(x)))?,
        },
    })
}

fn days(d: NaiveDate) -> i32 {
    // The epoch is a valid date; NaiveDate's range keeps the difference in i32.
    #[allow(clippy::cast_possible_truncation)]
    let n = (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32;
    n
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

fn time_micros(t: NaiveTime) -> i64 {
    i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000)
}

/// A `numeric`'s text as an exact decimal (at the column's scale when it
/// has one); text when it does not fit 38 digits or is `NaN`/infinite.
fn numeric_value(text: &str, typmod: Option<(u8, i8)>) -> Result<Value, String> {
    if typmod.is_none() {
        return Ok(Value::String(text.to_owned()));
    }
    match parse_decimal(text) {
        Some((unscaled, scale)) => {
            let target = typmod.map_or(scale, |(_, s)| s);
            let unscaled = rescale(unscaled, scale, target)
                .ok_or_else(|| format!("numeric {text} does not fit 38 digits at scale {target}"))?;
            Ok(Value::Decimal { unscaled, scale: target })
        }
        None => Err(format!("numeric {text} has no exact decimal value")),
    }
}

/// `[-]digits[.digits]` as (unscaled, scale); `None` for anything else.
pub fn parse_decimal(text: &str) -> Option<(i128, i8)> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = i8::try_from(frac.len()).ok()?;
    let mut unscaled: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        unscaled = unscaled.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some((if negative { -unscaled } else { unscaled }, scale))
}

fn rescale(unscaled: i128, from: i8, to: i8) -> Option<i128> {
    match to.cmp(&from) {
        std::cmp::Ordering::Equal => Some(unscaled),
        std::cmp::Ordering::Greater => {
            unscaled.checked_mul(10_i128.checked_pow(u32::from((to - from).unsigned_abs()))?)
        }
        std::cmp::Ordering::Less => {
            let div = 10_i128.checked_pow(u32::from((from - to).unsigned_abs()))?;
            // Only exact: a sink never rounds a value silently.
            (unscaled % div == 0).then(|| unscaled / div)
        }
    }
}

/// Appends `value` as a field of `COPY … FROM STDIN` text (tab-separated,
/// `\N` for NULL) for a column of `kind`, or says why it cannot go there.
pub fn copy_field(value: &Value, kind: &Kind, out: &mut String) -> Result<(), String> {
    if value.is_null() {
        out.push_str("\\N");
        return Ok(());
    }
    let text = sql_text(value, kind)?;
    escape_copy(&text, out);
    Ok(())
}

/// `value` as PostgreSQL's input text for `kind`.
fn sql_text(value: &Value, kind: &Kind) -> Result<String, String> {
    let wrong =
        || format!("{} {} cannot be written to a column of type {}", value.type_name(), short(value), kind_name(kind));
    let int = |min: i128, max: i128| -> Result<String, String> {
        let n: i128 = match value {
            Value::Int8(n) => i128::from(*n),
            Value::Int16(n) => i128::from(*n),
            Value::Int32(n) => i128::from(*n),
            Value::Int64(n) => i128::from(*n),
            Value::Decimal { unscaled, scale } => rescale(*unscaled, *scale, 0).ok_or_else(wrong)?,
            Value::String(s) => s.trim().parse().map_err(|_| wrong())?,
            _ => return Err(wrong()),
        };
        if n < min || n > max {
            return Err(format!("{n} is out of range for type {}", kind_name(kind)));
        }
        Ok(n.to_string())
    };
    Ok(match kind {
        Kind::Bool => match value {
            Value::Boolean(b) => if *b { "t" } else { "f" }.into(),
            Value::String(s) if matches!(s.as_str(), "true" | "false" | "t" | "f") => s[..1].to_owned(),
            _ => return Err(wrong()),
        },
        Kind::Int16 => int(i128::from(i16::MIN), i128::from(i16::MAX))?,
        Kind::Int32 => int(i128::from(i32::MIN), i128::from(i32::MAX))?,
        Kind::Int64 => int(i128::from(i64::MIN), i128::from(i64::MAX))?,
        Kind::Float32 | Kind::Float64 => match value {
            Value::Float32(x) => float_text(f64::from(*x)),
            Value::Float64(x) => float_text(*x),
            Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_) | Value::Decimal { .. } => {
                value.to_text()
            }
            Value::String(s) if s.trim().parse::<f64>().is_ok() => s.trim().to_owned(),
            _ => return Err(wrong()),
        },
        Kind::Numeric(_) => match value {
            Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => value.to_text(),
            Value::Decimal { unscaled, scale } => decimal_text(*unscaled, *scale),
            Value::Float32(x) if x.is_finite() => x.to_string(),
            Value::Float64(x) if x.is_finite() => x.to_string(),
            Value::String(s) if parse_decimal(s.trim()).is_some() => s.trim().to_owned(),
            _ => return Err(wrong()),
        },
        Kind::Text => match value {
            Value::String(s) => s.clone(),
            Value::Struct(_) | Value::Map(_) | Value::Array(_) => value.to_json().to_string(),
            other => other.to_text(),
        },
        Kind::Json => match value {
            Value::String(s) if serde_json::from_str::<serde_json::Value>(s).is_ok() => s.clone(),
            other => other.to_json().to_string(),
        },
        Kind::Bytea => match value {
            Value::Bytes(b) => {
                let mut hex = String::with_capacity(2 + b.len() * 2);
                hex.push_str("\\x");
                for byte in b.iter() {
                    let _ = write!(hex, "{byte:02x}");
                }
                hex
            }
            // Schemaless JSON carries bytes as base64 (Kafka Connect's convention).
            Value::String(s) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| wrong())?;
                return sql_text(&Value::Bytes(bytes.into()), kind);
            }
            _ => return Err(wrong()),
        },
        Kind::Date => match value {
            Value::Date(_) => value.to_text(),
            Value::Timestamp(us) => {
                crate::data::date_text(i32::try_from(us.div_euclid(86_400_000_000)).map_err(|_| wrong())?)
            }
            Value::Int32(d) => crate::data::date_text(*d),
            Value::String(s) if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => s.clone(),
            _ => return Err(wrong()),
        },
        Kind::Time => match value {
            Value::Time(_) => value.to_text(),
            Value::String(s) if NaiveTime::parse_from_str(s, "%H:%M:%S%.f").is_ok() => s.clone(),
            _ => return Err(wrong()),
        },
        Kind::Timestamp | Kind::TimestampTz => {
            let us = match value {
                Value::Timestamp(us) => *us,
                // Kafka Connect's schemaless timestamps: milliseconds.
                Value::Int64(ms) => ms.checked_mul(1000).ok_or_else(wrong)?,
                Value::Date(d) => i64::from(*d) * 86_400_000_000,
                Value::String(s) => parse_timestamp(s).ok_or_else(wrong)?,
                _ => return Err(wrong()),
            };
            let t = DateTime::from_timestamp_micros(us).ok_or_else(wrong)?;
            let mut text = t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            if *kind == Kind::TimestampTz {
                text.push_str("+00");
            }
            text
        }
        Kind::Other(_) => match value {
            Value::String(s) => s.clone(),
            Value::Struct(_) | Value::Map(_) | Value::Array(_) => return Err(wrong()),
            other => other.to_text(),
        },
        Kind::Array(element) => match value {
            Value::Array(items) => {
                let mut text = String::from("{");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    if item.is_null() {
                        text.push_str("NULL");
                        continue;
                    }
                    let inner = sql_text(item, element).map_err(|e| format!("element {i}: {e}"))?;
                    text.push('"');
                    for c in inner.chars() {
                        if c == '"' || c == '\\' {
                            text.push('\\');
                        }
                        text.push(c);
                    }
                    text.push('"');
                }
                text.push('}');
                text
            }
            _ => return Err(wrong()),
        },
    })
}

/// RFC 3339 or `YYYY-MM-DD HH:MM:SS[.f]` (UTC) as microseconds.
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(micros)
}

fn float_text(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        x.to_string()
    }
}

/// A value shortened for an error message.
fn short(value: &Value) -> String {
    let text = value.to_json().to_string();
    if text.chars().count() > 40 { format!("{}…", text.chars().take(40).collect::<String>()) } else { text }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Bool => "boolean".into(),
        Kind::Int16 => "smallint".into(),
        Kind::Int32 => "integer".into(),
        Kind::Int64 => "bigint".into(),
        Kind::Float32 => "real".into(),
        Kind::Float64 => "double precision".into(),
        Kind::Text => "text".into(),
        Kind::Bytea => "bytea".into(),
        Kind::Date => "date".into(),
        Kind::Time => "time".into(),
        Kind::Timestamp => "timestamp".into(),
        Kind::TimestampTz => "timestamptz".into(),
        Kind::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
        Kind::Numeric(None) => "numeric".into(),
        Kind::Json => "json".into(),
        Kind::Other(name) => name.clone(),
        Kind::Array(e) => format!("{}[]", kind_name(e)),
    }
}

/// COPY text escaping: backslash, tab, newline and carriage return.
fn escape_copy(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A value in PostgreSQL's text output as the kind's value.
pub fn parse_text(text: &str, kind: &Kind) -> std::result::Result<Value, String> {
    let bad = |what: &str| format!("{text:?} is not {what}");
    Ok(match kind {
        Kind::Bool => Value::Boolean(text == "t"),
        Kind::Int16 => Value::Int16(text.parse().map_err(|_| bad("a smallint"))?),
        Kind::Int32 => Value::Int32(text.parse().map_err(|_| bad("an integer"))?),
        Kind::Int64 => Value::Int64(text.parse().map_err(|_| bad("a bigint"))?),
        Kind::Float32 => Value::Float32(text.parse().map_err(|_| bad("a real"))?),
        Kind::Float64 => Value::Float64(text.parse().map_err(|_| bad("a double"))?),
        Kind::Text | Kind::Json | Kind::Other(_) => Value::String(text.to_owned()),
        Kind::Numeric(None) => Value::String(text.to_owned()),
        Kind::Numeric(Some((_, scale))) => {
            let (unscaled, s) = parse_decimal(text).ok_or_else(|| bad("an exact decimal"))?;
            let factor = 10_i128.checked_pow(u32::from((*scale - s).unsigned_abs())).ok_or_else(|| bad("in range"))?;
            let unscaled = if *scale >= s { unscaled.checked_mul(factor) } else { Some(unscaled / factor) };
            Value::Decimal { unscaled: unscaled.ok_or_else(|| bad("in range"))?, scale: *scale }
        }
        Kind::Bytea => {
            let hex = text.strip_prefix("\\x").ok_or_else(|| bad("hex bytea"))?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| bad("hex bytea"))?;
            Value::Bytes(bytes.into())
        }
        Kind::Date => {
            let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad("a date"))?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            Value::Date(i32::try_from((d - epoch).num_days()).map_err(|_| bad("a date in range"))?)
        }
        Kind::Time => {
            let t = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").map_err(|_| bad("a time"))?;
            Value::Time(i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000))
        }
        Kind::Timestamp => Value::Timestamp(
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|_| bad("a timestamp"))?
                .and_utc()
                .timestamp_micros(),
        ),
        Kind::TimestampTz => Value::Timestamp(
            DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .map_err(|_| bad("a timestamptz"))?
                .timestamp_micros(),
        ),
        Kind::Array(element) => {
            let items = parse_array(text).ok_or_else(|| bad("an array"))?;
            let element = match **element {
                Kind::Numeric(_) | Kind::Json | Kind::Other(_) | Kind::Array(_) => Kind::Text,
                ref k => k.clone(),
            };
            Value::Array(
                items
                    .into_iter()
                    .map(|item| item.map_or(Ok(Value::Null), |t| parse_text(&t, &element)))
                    .collect::<std::result::Result<_, _>>()?,
            )
        }
    })
}

/// A one-dimensional array literal (`{a,NULL,"b,c"}`) as its elements.
fn parse_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next()? {
                    '\\' => s.push(chars.next()?),
                    '"' => break,
                    c => s.push(c),
                }
            }
            out.push(Some(s));
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(if s == "NULL" { None } else { Some(s) });
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_catalog_and_describe_names() {
        assert_eq!(Kind::of("INT4[]", -1), Kind::Array(Box::new(Kind::Int32)));
        assert_eq!(Kind::of("_text", -1), Kind::Array(Box::new(Kind::Text)));
        // numeric(10,2): typmod = (10 << 16 | 2) + 4
        assert_eq!(Kind::of("numeric", (10 << 16 | 2) + 4), Kind::Numeric(Some((10, 2))));
        assert_eq!(Kind::of("uuid", -1), Kind::Other("uuid".into()));
        assert_eq!(Kind::of("uuid", -1).select("\"id\""), "\"id\"::text");
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("-12.340"), Some((-12_340, 3)));
        assert_eq!(parse_decimal("7"), Some((7, 0)));
        assert_eq!(parse_decimal("NaN"), None);
        assert_eq!(numeric_value("1.5", Some((10, 2))), Ok(Value::Decimal { unscaled: 150, scale: 2 }));
    }

    #[test]
    fn copy_fields_escape_and_convert() {
        let mut out = String::new();
        copy_field(&Value::string("a\tb\\c\nd"), &Kind::Text, &mut out).expect("text");
        assert_eq!(out, "a\\tb\\\\c\\nd");
        out.clear();
        copy_field(&Value::Bytes(vec![0xde, 0xad].into()), &Kind::Bytea, &mut out).expect("bytea");
        assert_eq!(out, "\\\\xdead");
        out.clear();
        let tags = Value::Array(vec![Value::string("a\"b"), Value::Null]);
        copy_field(&tags, &Kind::Array(Box::new(Kind::Text)), &mut out).expect("array");
        assert_eq!(out, "{\"a\\\\\"b\",NULL}");
        out.clear();
        copy_field(&Value::Timestamp(1_700_000_000_123_456), &Kind::TimestampTz, &mut out).expect("ts");
        assert_eq!(out, "2023-11-14 22:13:20.123456+00");
        let err = copy_field(&Value::string("seven"), &Kind::Int32, &mut out).expect_err("not an int");
        assert_eq!(err, "string \"seven\" cannot be written to a column of type integer");
        let err = copy_field(&Value::Int64(70_000), &Kind::Int16, &mut out).expect_err("range");
        assert_eq!(err, "70000 is out of range for type smallint");
    }

    #[test]
    fn text_values_parse_by_kind() {
        assert_eq!(parse_text("t", &Kind::Bool), Ok(Value::Boolean(true)));
        assert_eq!(parse_text("12.50", &Kind::Numeric(Some((10, 2)))), Ok(Value::Decimal { unscaled: 1250, scale: 2 }));
        assert_eq!(parse_text("\\xdead", &Kind::Bytea), Ok(Value::Bytes(vec![0xde, 0xad].into())));
        assert_eq!(
            parse_text("2024-01-01 00:00:01.5+00", &Kind::TimestampTz),
            Ok(Value::Timestamp(1_704_067_201_500_000))
        );
        assert_eq!(
            parse_text("{a,NULL,\"b,c\",\"q\\\"\"}", &Kind::Array(Box::new(Kind::Text))),
            Ok(Value::Array(vec![Value::string("a"), Value::Null, Value::string("b,c"), Value::string("q\"")]))
        );
        assert!(parse_text("x", &Kind::Int32).is_err());
    }
}
