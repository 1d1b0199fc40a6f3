//! PostgreSQL types and the Arrow-typed record schema, both ways.
//!
//! Reading, each column has a [`Kind`], and every value is read from
//! PostgreSQL's text output ([`parse_text`]) — what `COPY … TO STDOUT`
//! and `pgoutput` both give, so a snapshot row and a streamed change of
//! the same value are equal: booleans, integers, floats (`NaN` and the
//! infinities too), bytea, dates and timestamps over PostgreSQL's whole
//! range (BC, years past 9999, `infinity`; see [`crate::datetime`]),
//! `24:00:00`, arrays of any dimension; `numeric` kept exact as a
//! [`Value::Decimal`]; everything else (uuid, json, inet, intervals,
//! money, ranges, bit strings, enums, …) as its text, which PostgreSQL
//! reads back unchanged. Domains are read as their base type.
//!
//! Writing, a value is rendered as a field of `COPY … FROM STDIN` text for
//! the target column's kind, or refused with the reason (the caller names
//! the column): the row goes to the error handler instead of failing the
//! whole batch in the server.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};

use crate::data::{Value, decimal_text, timestamp_from_millis};
use crate::datetime::{
    DATE_INFINITY, DATE_NEG_INFINITY, TIMESTAMP_INFINITY, TIMESTAMP_NEG_INFINITY, parse_date, parse_time,
    parse_timestamp, pg_date_in_range, pg_date_text, pg_timestamp_in_range, pg_timestamp_text, time_text,
};

/// `array.handling.mode`: how the sources carry arrays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrayMode {
    /// As lists (Arrow `List`, JSON arrays) of the element type: arrays
    /// starting at index 1 with the column's declared dimensions; any
    /// other array is refused, with the column named.
    #[default]
    List,
    /// As PostgreSQL's text for the array: every array, exactly.
    String,
}

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

    /// Makes the kind what `array.handling.mode` says: with `string`, an
    /// array is carried as PostgreSQL's literal for it (`[0:1]={1,2}`,
    /// `{{1,2},{3,4}}`), which keeps what a list cannot (bounds other
    /// than 1, a number of dimensions the column does not declare) and a
    /// sink writes back as it is.
    pub fn apply_array_mode(&mut self, mode: ArrayMode) {
        if let (Self::Array(element), ArrayMode::String) = (&*self, mode) {
            *self = Self::Other(format!("{}[]", kind_name(element)));
        }
    }

    /// An array kind with `dims` dimensions (`attndims`; 0 or 1: one):
    /// a two-dimensional `int[][]` is carried as a list of lists.
    pub fn with_dims(self, dims: i32) -> Self {
        match self {
            Self::Array(element) if dims > 1 => Self::Array(Box::new(Self::Array(element).with_dims(dims - 1))),
            other => other,
        }
    }

    /// The innermost element kind of an array kind (itself otherwise), and
    /// the number of dimensions.
    fn element(&self) -> (&Kind, usize) {
        match self {
            Self::Array(e) => {
                let (inner, dims) = e.element();
                (inner, dims + 1)
            }
            other => (other, 0),
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
                    Self::Numeric(_) | Self::Json | Self::Other(_) => DataType::Utf8,
                    ref k => k.data_type(),
                };
                DataType::List(Arc::new(Field::new("item", element, true)))
            }
        }
    }

    /// The kind array elements are read as: the type's own, but text for
    /// the kinds kept as text anyway and for `numeric` (exact either way).
    fn array_element(&self) -> Kind {
        match self {
            Self::Numeric(_) | Self::Json | Self::Other(_) => Self::Text,
            other => other.clone(),
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
            Value::Float32(x) if x.is_finite() => x.to_string(),
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
            // `numeric` has NaN and (since PostgreSQL 14) the infinities too.
            Value::Float32(x) => float_text(f64::from(*x)),
            Value::Float64(x) => float_text(*x),
            Value::String(s) if parse_decimal(s.trim()).is_some() || is_special_numeric(s.trim()) => {
                s.trim().to_owned()
            }
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
        Kind::Date => pg_date_text(
            Some(match value {
                Value::Date(d) => *d,
                Value::Int32(d) => *d,
                Value::Timestamp(TIMESTAMP_INFINITY) => DATE_INFINITY,
                Value::Timestamp(TIMESTAMP_NEG_INFINITY) => DATE_NEG_INFINITY,
                Value::Timestamp(us) => i32::try_from(us.div_euclid(86_400_000_000)).map_err(|_| wrong())?,
                Value::String(s) => parse_date(s).ok_or_else(wrong)?,
                _ => return Err(wrong()),
            })
            .filter(|d| pg_date_in_range(*d))
            .ok_or_else(|| {
                format!("{} is outside the range of type date (4714-11-24 BC to 5874897 AD)", short(value))
            })?,
        ),
        Kind::Time => time_text(match value {
            Value::Time(us) if (0..=86_400_000_000).contains(us) => *us,
            Value::String(s) => parse_time(s).ok_or_else(wrong)?,
            _ => return Err(wrong()),
        }),
        Kind::Timestamp | Kind::TimestampTz => {
            let us = match value {
                Value::Timestamp(us) => *us,
                // Kafka Connect's schemaless timestamps: milliseconds.
                Value::Int64(ms) => timestamp_from_millis(*ms).ok_or_else(wrong)?,
                Value::Date(DATE_INFINITY) => TIMESTAMP_INFINITY,
                Value::Date(DATE_NEG_INFINITY) => TIMESTAMP_NEG_INFINITY,
                Value::Date(d) => i64::from(*d) * 86_400_000_000,
                Value::String(s) => parse_timestamp(s).ok_or_else(wrong)?,
                _ => return Err(wrong()),
            };
            if !pg_timestamp_in_range(us) {
                return Err(format!("{} is before 4714-11-24 BC, where type {} begins", short(value), kind_name(kind)));
            }
            pg_timestamp_text(us, *kind == Kind::TimestampTz)
        }
        Kind::Other(_) => match value {
            Value::String(s) => s.clone(),
            Value::Struct(_) | Value::Map(_) | Value::Array(_) => return Err(wrong()),
            other => other.to_text(),
        },
        Kind::Array(element) => match value {
            Value::Array(items) => {
                let mut text = String::new();
                array_literal(items, element, &mut text)?;
                text
            }
            // An array literal (a source's array.handling.mode=string):
            // the server reads it, or refuses the row.
            Value::String(s) if s.starts_with('{') || s.starts_with('[') => s.clone(),
            _ => return Err(wrong()),
        },
    })
}

/// `items` as an array literal of `element`s (`{"a",NULL}`); a nested
/// array kind writes nested braces.
fn array_literal(items: &[Value], element: &Kind, text: &mut String) -> Result<(), String> {
    text.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        match (item, element) {
            (Value::Null, _) => text.push_str("NULL"),
            (Value::Array(inner), Kind::Array(e)) => {
                array_literal(inner, e, text).map_err(|e| format!("element {i}: {e}"))?;
            }
            // Another dimension in a column that does not declare it (an
            // int[] column takes any number of dimensions).
            (Value::Array(inner), scalar) if *scalar != Kind::Json => {
                array_literal(inner, scalar, text).map_err(|e| format!("element {i}: {e}"))?;
            }
            (_, Kind::Array(_)) => {
                return Err(format!(
                    "element {i}: {} {} where the column has another dimension",
                    item.type_name(),
                    short(item)
                ));
            }
            _ => {
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
        }
    }
    text.push('}');
    Ok(())
}

/// `NaN`, `Infinity` or `-Infinity`, as `numeric` reads them.
fn is_special_numeric(s: &str) -> bool {
    ["NaN", "Infinity", "-Infinity", "+Infinity", "inf", "-inf", "+inf"].iter().any(|w| s.eq_ignore_ascii_case(w))
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

/// A row of PostgreSQL's text output (`None`: NULL) as the columns'
/// values; a value that does not parse is null, and the first such
/// column's index and reason come back with the row, for the caller to
/// send the record to the error handler (never to write the null).
pub(crate) fn parse_row<'a>(
    columns: &[super::Column],
    texts: impl IntoIterator<Item = Option<&'a str>>,
) -> (Vec<Value>, Option<(usize, String)>) {
    let mut failure = None;
    let values = columns
        .iter()
        .zip(texts)
        .enumerate()
        .map(|(i, (c, text))| match text {
            None => Value::Null,
            Some(t) => parse_text(t, &c.kind).unwrap_or_else(|e| {
                failure.get_or_insert((i, e));
                Value::Null
            }),
        })
        .collect();
    (values, failure)
}

/// A value in PostgreSQL's text output as the kind's value; the error
/// says what the text is not (the caller names the column).
pub fn parse_text(text: &str, kind: &Kind) -> std::result::Result<Value, String> {
    let bad = |what: &str| format!("{text:?} is not {what}");
    Ok(match kind {
        Kind::Bool => match text {
            "t" | "true" => Value::Boolean(true),
            "f" | "false" => Value::Boolean(false),
            _ => return Err(bad("a boolean")),
        },
        Kind::Int16 => Value::Int16(text.parse().map_err(|_| bad("a smallint"))?),
        Kind::Int32 => Value::Int32(text.parse().map_err(|_| bad("an integer"))?),
        Kind::Int64 => Value::Int64(text.parse().map_err(|_| bad("a bigint"))?),
        // Rust reads `NaN`, `Infinity` and `-Infinity` as PostgreSQL writes them.
        Kind::Float32 => Value::Float32(text.parse().map_err(|_| bad("a real"))?),
        Kind::Float64 => Value::Float64(text.parse().map_err(|_| bad("a double"))?),
        Kind::Text | Kind::Json | Kind::Other(_) | Kind::Numeric(None) => Value::String(text.to_owned()),
        Kind::Numeric(Some((_, scale))) => {
            let (unscaled, s) = parse_decimal(text).ok_or_else(|| bad("an exact decimal"))?;
            Value::Decimal { unscaled: rescale(unscaled, s, *scale).ok_or_else(|| bad("in range"))?, scale: *scale }
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
        Kind::Date => Value::Date(parse_date(text).ok_or_else(|| bad("a date"))?),
        Kind::Time => Value::Time(parse_time(text).ok_or_else(|| bad("a time"))?),
        Kind::Timestamp | Kind::TimestampTz => {
            Value::Timestamp(parse_timestamp(text).ok_or_else(|| bad("a timestamp within ±292,000 years of 1970"))?)
        }
        Kind::Array(_) => {
            let (element, dims) = kind.element();
            let element = element.array_element();
            let mut parser = ArrayParser { text: text.as_bytes(), at: 0 };
            let value = parser.array(dims, &element).map_err(|e| format!("the array {text:?} {e}"))?;
            if parser.at != text.len() {
                return Err(format!("the array {text:?} has text after its closing brace"));
            }
            value
        }
    })
}

/// Reads PostgreSQL's array output: `{a,NULL,"b,c"}`, nested braces for
/// each further dimension, and an optional `[lower:upper]…=` prefix when
/// a dimension does not start at 1. Lists start at 1, so such an array is
/// refused (the row goes to the error handler, never changed in silence).
struct ArrayParser<'a> {
    text: &'a [u8],
    at: usize,
}

impl ArrayParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn consume(&mut self, b: u8) -> std::result::Result<(), String> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("is malformed at byte {}", self.at))
        }
    }

    /// The whole array: its dimensions prefix, then `dims` levels of braces.
    fn array(&mut self, dims: usize, element: &Kind) -> std::result::Result<Value, String> {
        if self.peek() == Some(b'[') {
            let end = self.text.iter().position(|&b| b == b'=').ok_or("has bounds but no '='")?;
            let bounds = String::from_utf8_lossy(&self.text[..end]).into_owned();
            let lowers_are_one = bounds
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split("][")
                .all(|range| range.split_once(':').is_some_and(|(lower, _)| lower == "1"));
            if !lowers_are_one {
                return Err(format!(
                    "has bounds {bounds}; lists start at 1: set array.handling.mode=string to carry \
                     arrays as PostgreSQL's text, bounds and all"
                ));
            }
            self.at = end + 1;
        }
        self.level(dims, element)
    }

    fn level(&mut self, dims: usize, element: &Kind) -> std::result::Result<Value, String> {
        self.consume(b'{')?;
        let mut items = Vec::new();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            if self.peek() == Some(b'{') {
                if dims <= 1 {
                    return Err(format!(
                        "has more dimensions than the column declares ({dims}); declare the column with one [] per \
                         dimension (e.g. int[][]), or set array.handling.mode=string"
                    ));
                }
                items.push(self.level(dims - 1, element)?);
            } else {
                if dims > 1 {
                    return Err(format!(
                        "has fewer dimensions than the column declares ({dims}); an empty or one-dimensional value \
                         in a column declared with {dims} dimensions"
                    ));
                }
                items.push(match self.item()? {
                    None => Value::Null,
                    Some(text) => parse_text(&text, element)?,
                });
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(format!("is malformed at byte {}", self.at)),
            }
        }
    }

    /// One element: quoted (with backslash escapes), or bare (`NULL` is null).
    fn item(&mut self) -> std::result::Result<Option<String>, String> {
        let mut out = Vec::new();
        if self.peek() == Some(b'"') {
            self.at += 1;
            loop {
                match self.peek() {
                    Some(b'\\') => {
                        self.at += 1;
                        out.push(self.peek().ok_or("ends inside an escape")?);
                    }
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(b) => out.push(b),
                    None => return Err("ends inside a quoted element".into()),
                }
                self.at += 1;
            }
            return Ok(Some(String::from_utf8_lossy(&out).into_owned()));
        }
        while let Some(b) = self.peek().filter(|b| *b != b',' && *b != b'}') {
            out.push(b);
            self.at += 1;
        }
        Ok(if out == b"NULL" { None } else { Some(String::from_utf8_lossy(&out).into_owned()) })
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
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("-12.340"), Some((-12_340, 3)));
        assert_eq!(parse_decimal("7"), Some((7, 0)));
        assert_eq!(parse_decimal("NaN"), None);
        assert_eq!(parse_text("1.5", &Kind::Numeric(Some((10, 2)))), Ok(Value::Decimal { unscaled: 150, scale: 2 }));
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
