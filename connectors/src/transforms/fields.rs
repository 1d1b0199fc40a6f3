//! The transforms that work on a struct's fields.

use std::collections::BTreeMap;

use arrow_schema::DataType;

use crate::data::Value;
use crate::record::ConnectRecord;

/// Which part of the record a transform changes (`$Key` or `$Value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Key,
    Value,
}

/// A type `Cast` converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CastType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

impl CastType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "int8" => Self::Int8,
            "int16" => Self::Int16,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "float32" => Self::Float32,
            "float64" => Self::Float64,
            "boolean" => Self::Boolean,
            "string" => Self::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Int16 => "int16",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Float32 => "float32",
            Self::Float64 => "float64",
            Self::Boolean => "boolean",
            Self::String => "string",
        }
    }
}

/// A configured field transform.
pub(super) enum FieldTransform {
    InsertField { topic: Option<String>, timestamp: Option<String>, constant: Option<(String, String)> },
    ReplaceField { exclude: Vec<String>, include: Vec<String>, renames: Vec<(String, String)> },
    MaskField { fields: Vec<String>, replacement: Option<String> },
    ValueToKey { fields: Vec<String> },
    ExtractField { field: String },
    HoistField { field: String },
    Cast { whole: Option<CastType>, fields: Vec<(String, CastType)> },
    Flatten { delimiter: String },
    Timestamp(super::timestamp::TimestampConverter),
}

impl FieldTransform {
    /// The schema of what the transform made, when it follows from the
    /// schema it was given (`None`: see [`super::retype`]).
    pub(super) fn schema(&self, old: Option<&DataType>) -> Option<Option<DataType>> {
        match self {
            Self::ExtractField { field } => Some(match old {
                Some(DataType::Struct(fields)) => {
                    fields.iter().find(|f| f.name() == field).map(|f| f.data_type().clone())
                }
                _ => None,
            }),
            Self::HoistField { field } => {
                Some(old.map(|t| DataType::Struct(vec![arrow_schema::Field::new(field, t.clone(), true)].into())))
            }
            _ => None,
        }
    }
}

type ConfigError = (String, String);

fn list(own: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    own.get(key)
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn need<'a>(own: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, ConfigError> {
    own.get(key).map(String::as_str).filter(|v| !v.is_empty()).ok_or_else(|| (key.to_owned(), "missing".to_owned()))
}

impl FieldTransform {
    /// Reads a transform's own keys (`kind`: the class's short name
    /// without `$Key`/`$Value`). Errors name the key relative to the alias.
    pub(super) fn parse(kind: &str, own: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        Ok(match kind {
            "InsertField" => {
                let constant = match (own.get("static.field"), own.get("static.value")) {
                    (Some(f), Some(v)) => Some((f.clone(), v.clone())),
                    (Some(_), None) => {
                        return Err(("static.value".into(), "missing; static.field needs a value".into()));
                    }
                    _ => None,
                };
                let t = Self::InsertField {
                    topic: own.get("topic.field").cloned(),
                    timestamp: own.get("timestamp.field").cloned(),
                    constant,
                };
                if let Self::InsertField { topic: None, timestamp: None, constant: None } = t {
                    return Err((
                        "type".into(),
                        "InsertField needs topic.field, timestamp.field or static.field".into(),
                    ));
                }
                t
            }
            "ReplaceField" => {
                let mut renames = Vec::new();
                for pair in list(own, "renames") {
                    let (from, to) = pair
                        .split_once(':')
                        .ok_or_else(|| ("renames".to_owned(), format!("{pair:?} is not old:new")))?;
                    renames.push((from.to_owned(), to.to_owned()));
                }
                let exclude = [list(own, "exclude"), list(own, "blacklist")].concat();
                let include = [list(own, "include"), list(own, "whitelist")].concat();
                Self::ReplaceField { exclude, include, renames }
            }
            "MaskField" => {
                let fields = list(own, "fields");
                if fields.is_empty() {
                    return Err(("fields".into(), "missing; name the fields to mask".into()));
                }
                Self::MaskField { fields, replacement: own.get("replacement").cloned() }
            }
            "ValueToKey" => {
                let fields = list(own, "fields");
                if fields.is_empty() {
                    return Err(("fields".into(), "missing; name the value's fields that make the key".into()));
                }
                Self::ValueToKey { fields }
            }
            "ExtractField" => Self::ExtractField { field: need(own, "field")?.to_owned() },
            "HoistField" => Self::HoistField { field: need(own, "field")?.to_owned() },
            "Cast" => {
                let spec = need(own, "spec")?;
                let mut fields = Vec::new();
                let mut whole = None;
                for part in spec.split(',').map(str::trim) {
                    let bad = || {
                        (
                            "spec".to_owned(),
                            format!(
                                "{part:?}: use field:type or one type, a type of int8, int16, int32, int64, float32, float64, boolean, string"
                            ),
                        )
                    };
                    match part.split_once(':') {
                        Some((f, t)) => fields.push((f.to_owned(), CastType::parse(t).ok_or_else(bad)?)),
                        None => whole = Some(CastType::parse(part).ok_or_else(bad)?),
                    }
                }
                Self::Cast { whole, fields }
            }
            "TimestampConverter" => Self::Timestamp(super::timestamp::TimestampConverter::parse(own)?),
            "Flatten" => Self::Flatten { delimiter: own.get("delimiter").cloned().unwrap_or_else(|| ".".into()) },
            other => {
                return Err((
                    "type".into(),
                    format!(
                        "{other:?} is not a transform here; use InsertField, ReplaceField, MaskField, ValueToKey, \
                         ExtractField, HoistField, Cast, Flatten, TimestampConverter, RegexRouter or Filter"
                    ),
                ));
            }
        })
    }

    /// Applies to `value` (the key or the value); returns it and, for
    /// `ValueToKey`, the new key.
    pub(super) fn apply(&self, value: Value, record: &ConnectRecord) -> Result<(Value, Option<Value>), String> {
        if value.is_null() && !matches!(self, Self::HoistField { .. } | Self::Cast { .. }) {
            return Ok((value, None));
        }
        let fields = |v: Value| match v {
            Value::Struct(f) => Ok(f),
            other => Err(format!("expected a struct, found {}", other.type_name())),
        };
        Ok(match self {
            Self::InsertField { topic, timestamp, constant } => {
                let mut f = fields(value)?;
                if let Some(name) = topic {
                    f.push((name.clone(), Value::String(record.topic.clone())));
                }
                if let Some(name) = timestamp {
                    f.push((
                        name.clone(),
                        record.timestamp.map_or(Value::Null, |ms| Value::Timestamp(ms.saturating_mul(1000))),
                    ));
                }
                if let Some((name, v)) = constant {
                    f.push((name.clone(), Value::String(v.clone())));
                }
                (Value::Struct(f), None)
            }
            Self::ReplaceField { exclude, include, renames } => {
                let f = fields(value)?
                    .into_iter()
                    .filter(|(n, _)| !exclude.contains(n) && (include.is_empty() || include.contains(n)))
                    .map(|(n, v)| match renames.iter().find(|(from, _)| *from == n) {
                        Some((_, to)) => (to.clone(), v),
                        None => (n, v),
                    })
                    .collect();
                (Value::Struct(f), None)
            }
            Self::MaskField { fields: masked, replacement } => {
                let mut f = fields(value)?;
                for (name, v) in &mut f {
                    if masked.contains(name) {
                        *v = mask(name, v, replacement.as_deref())?;
                    }
                }
                (Value::Struct(f), None)
            }
            Self::ValueToKey { fields: names } => {
                let key = names
                    .iter()
                    .map(|n| {
                        value
                            .field(n)
                            .cloned()
                            .map(|v| (n.clone(), v))
                            .ok_or_else(|| format!("the value has no field {n:?}"))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                (value, Some(Value::Struct(key)))
            }
            Self::ExtractField { field } => (value.field(field).cloned().unwrap_or(Value::Null), None),
            Self::HoistField { field } => (Value::Struct(vec![(field.clone(), value)]), None),
            Self::Cast { whole: Some(t), .. } => (cast("value", value, *t)?, None),
            Self::Cast { whole: None, fields: casts } => {
                let mut f = fields(value)?;
                for (name, v) in &mut f {
                    if let Some((_, t)) = casts.iter().find(|(n, _)| n == name) {
                        *v = cast(name, std::mem::take(v), *t)?;
                    }
                }
                (Value::Struct(f), None)
            }
            Self::Timestamp(t) => (t.apply(value)?, None),
            Self::Flatten { delimiter } => {
                let mut out = Vec::new();
                flatten("", fields(value)?, delimiter, &mut out);
                (Value::Struct(out), None)
            }
        })
    }
}

fn flatten(prefix: &str, fields: Vec<(String, Value)>, delimiter: &str, out: &mut Vec<(String, Value)>) {
    for (name, v) in fields {
        let full = if prefix.is_empty() { name } else { format!("{prefix}{delimiter}{name}") };
        match v {
            Value::Struct(inner) => flatten(&full, inner, delimiter, out),
            other => out.push((full, other)),
        }
    }
}

/// A field's masked value: the replacement read as the field's type, or
/// the type's empty value.
fn mask(name: &str, v: &Value, replacement: Option<&str>) -> Result<Value, String> {
    if let Some(r) = replacement {
        let t = match v {
            Value::Int8(_) => CastType::Int8,
            Value::Int16(_) => CastType::Int16,
            Value::Int32(_) => CastType::Int32,
            Value::Int64(_) => CastType::Int64,
            Value::Float32(_) => CastType::Float32,
            Value::Float64(_) => CastType::Float64,
            Value::Boolean(_) => CastType::Boolean,
            _ => CastType::String,
        };
        return cast(name, Value::String(r.to_owned()), t);
    }
    Ok(match v {
        Value::Null => Value::Null,
        Value::Boolean(_) => Value::Boolean(false),
        Value::Int8(_) => Value::Int8(0),
        Value::Int16(_) => Value::Int16(0),
        Value::Int32(_) => Value::Int32(0),
        Value::Int64(_) => Value::Int64(0),
        Value::Float32(_) => Value::Float32(0.0),
        Value::Float64(_) => Value::Float64(0.0),
        Value::Bytes(_) => Value::Bytes(bytes::Bytes::new()),
        Value::Decimal { scale, .. } => Value::Decimal { unscaled: 0, scale: *scale },
        Value::Date(_) => Value::Date(0),
        Value::Time(_) => Value::Time(0),
        Value::Timestamp(_) => Value::Timestamp(0),
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Map(_) => Value::Map(Vec::new()),
        Value::Struct(_) => Value::Struct(Vec::new()),
        Value::String(_) => Value::String(String::new()),
    })
}

/// Casts one value; the error names the field, the value and the type.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // Cast's documented semantics: Java's narrowing
fn cast(name: &str, v: Value, to: CastType) -> Result<Value, String> {
    let fail =
        |v: &Value| format!("Cast: field {name:?}: cannot cast {} {} to {}", v.type_name(), v.to_text(), to.name());
    if v.is_null() {
        return Ok(Value::Null);
    }
    let as_i64 = |v: &Value| -> Option<i64> {
        match v {
            Value::Int8(n) => Some(i64::from(*n)),
            Value::Int16(n) => Some(i64::from(*n)),
            Value::Int32(n) => Some(i64::from(*n)),
            Value::Int64(n) => Some(*n),
            Value::Float32(x) => Some(*x as i64),
            Value::Float64(x) => Some(*x as i64),
            Value::Boolean(b) => Some(i64::from(*b)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let as_f64 = |v: &Value| -> Option<f64> {
        match v {
            Value::Float32(x) => Some(f64::from(*x)),
            Value::Float64(x) => Some(*x),
            Value::String(s) => s.trim().parse().ok(),
            other => as_i64(other).map(|n| n as f64),
        }
    };
    Ok(match to {
        CastType::String => Value::String(v.to_text()),
        CastType::Boolean => match &v {
            Value::Boolean(b) => Value::Boolean(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Boolean(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Boolean(false),
            other => Value::Boolean(as_i64(other).ok_or_else(|| fail(other))? != 0),
        },
        CastType::Float32 => Value::Float32(as_f64(&v).ok_or_else(|| fail(&v))? as f32),
        CastType::Float64 => Value::Float64(as_f64(&v).ok_or_else(|| fail(&v))?),
        CastType::Int8 => Value::Int8(as_i64(&v).and_then(|n| i8::try_from(n).ok()).ok_or_else(|| fail(&v))?),
        CastType::Int16 => Value::Int16(as_i64(&v).and_then(|n| i16::try_from(n).ok()).ok_or_else(|| fail(&v))?),
        CastType::Int32 => Value::Int32(as_i64(&v).and_then(|n| i32::try_from(n).ok()).ok_or_else(|| fail(&v))?),
        CastType::Int64 => Value::Int64(as_i64(&v).ok_or_else(|| fail(&v))?),
    })
}
