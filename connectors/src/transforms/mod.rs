//! Single message transforms: the chain named by `transforms`, configured
//! with Kafka Connect's keys (`transforms`, `transforms.<alias>.type`,
//! `transforms.<alias>.<key>`, `transforms.<alias>.predicate`,
//! `transforms.<alias>.negate`, `predicates`, `predicates.<alias>.type`,
//! `predicates.<alias>.<key>`) and Kafka's class names (full, or the short
//! `InsertField$Value`).
//!
//! Transforms: `InsertField`, `ReplaceField`, `MaskField`, `ValueToKey`,
//! `ExtractField`, `HoistField`, `Cast`, `Flatten`, `TimestampConverter`
//! (each `$Key` or `$Value`), `RegexRouter`, `Filter`; predicates:
//! `TopicNameMatches`, `HasHeaderKey`, `RecordIsTombstone`. A type not
//! listed is refused by name when the config is checked.
//!
//! Transforms work on struct values (rows, JSON objects); a null value (a
//! tombstone) passes through those that change fields. Where the record
//! carries a schema, it is dropped after a field-changing transform and
//! inferred again by the converter.

mod fields;
mod timestamp;

use std::collections::BTreeMap;

use arrow_schema::{DataType, Field};
use regex::Regex;

use crate::data::{Value, infer_schema};
use crate::record::ConnectRecord;
use fields::{FieldTransform, Side};

/// One transform in a chain, with its optional predicate.
pub struct TransformStage {
    /// The alias it was configured under.
    pub name: String,
    transform: Transform,
    predicate: Option<(Predicate, bool)>,
}

impl std::fmt::Debug for TransformStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformStage").field("name", &self.name).finish_non_exhaustive()
    }
}

enum Transform {
    Field(Side, FieldTransform),
    RegexRouter { regex: Regex, replacement: String },
    Filter,
}

#[derive(Clone)]
enum Predicate {
    TopicNameMatches(Regex),
    HasHeaderKey(String),
    RecordIsTombstone,
}

impl Predicate {
    fn test(&self, record: &ConnectRecord) -> bool {
        match self {
            Self::TopicNameMatches(r) => r.is_match(&record.topic),
            Self::HasHeaderKey(name) => record.headers.iter().any(|h| &h.key == name),
            Self::RecordIsTombstone => record.value.is_null(),
        }
    }
}

impl TransformStage {
    /// Applies the transform if the predicate (negated with `negate=true`)
    /// holds; `Ok(None)` drops the record.
    pub fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, String> {
        if let Some((predicate, negate)) = &self.predicate
            && predicate.test(&record) == *negate
        {
            return Ok(Some(record));
        }
        match &self.transform {
            Transform::Filter => Ok(None),
            Transform::RegexRouter { regex, replacement } => {
                let mut record = record;
                if regex.is_match(&record.topic) {
                    record.topic = regex.replace(&record.topic, replacement.as_str()).into_owned();
                }
                Ok(Some(record))
            }
            Transform::Field(side, t) => {
                let mut record = record;
                let name = &self.name;
                match side {
                    Side::Key => {
                        let key = std::mem::take(&mut record.key);
                        let (key, _) = t.apply(key, &record).map_err(|e| format!("{name}: {e}"))?;
                        record.key_schema = t
                            .schema(record.key_schema.as_ref())
                            .unwrap_or_else(|| retype(record.key_schema.as_ref(), &key));
                        record.key = key;
                    }
                    Side::Value => {
                        let value = std::mem::take(&mut record.value);
                        let (value, new_key) = t.apply(value, &record).map_err(|e| format!("{name}: {e}"))?;
                        if let Some(k) = new_key {
                            // ValueToKey: the key's fields keep the value's types.
                            record.key_schema = retype(record.value_schema.as_ref(), &k);
                            record.key = k;
                        }
                        record.value_schema = t
                            .schema(record.value_schema.as_ref())
                            .unwrap_or_else(|| retype(record.value_schema.as_ref(), &value));
                        record.value = value;
                    }
                }
                Ok(Some(record))
            }
        }
    }
}

/// Whether `key` belongs to the transform chain's configuration.
pub fn is_transform_key(key: &str) -> bool {
    key == "transforms" || key == "predicates" || key.starts_with("transforms.") || key.starts_with("predicates.")
}

fn aliases(config: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    config
        .get(key)
        .map(|v| v.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The short name of a class: `org.apache.kafka.connect.transforms.InsertField$Value` → `InsertField$Value`.
fn short(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

/// The chain a config names, in order. Errors are `(key, reason)`.
pub fn build_transforms(config: &BTreeMap<String, String>) -> Result<Vec<TransformStage>, (String, String)> {
    let mut predicates: BTreeMap<String, Predicate> = BTreeMap::new();
    for alias in aliases(config, "predicates") {
        let prefix = format!("predicates.{alias}.");
        let get = |k: &str| config.get(&format!("{prefix}{k}")).map(String::as_str);
        let need = |k: &str| get(k).ok_or_else(|| (format!("{prefix}{k}"), "missing".to_owned()));
        let class = need("type")?;
        let predicate = match short(class) {
            "TopicNameMatches" => {
                let pattern = need("pattern")?;
                Predicate::TopicNameMatches(full_match(pattern).map_err(|e| (format!("{prefix}pattern"), e))?)
            }
            "HasHeaderKey" => Predicate::HasHeaderKey(need("name")?.to_owned()),
            "RecordIsTombstone" => Predicate::RecordIsTombstone,
            _ => {
                return Err((
                    format!("{prefix}type"),
                    format!("{class:?} is not a predicate; use TopicNameMatches, HasHeaderKey or RecordIsTombstone"),
                ));
            }
        };
        predicates.insert(alias, predicate);
    }
    let mut stages = Vec::new();
    for alias in aliases(config, "transforms") {
        let prefix = format!("transforms.{alias}.");
        let own: BTreeMap<String, String> =
            config.iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_owned(), v.clone()))).collect();
        let class = own
            .get("type")
            .ok_or_else(|| (format!("{prefix}type"), "missing; name the transform's class".to_owned()))?;
        let at = |e: (String, String)| (format!("{prefix}{}", e.0), e.1);
        let (kind, side) = match short(class).split_once('$') {
            Some((k, "Key")) => (k, Side::Key),
            Some((k, "Value")) => (k, Side::Value),
            Some((_, other)) => {
                return Err((format!("{prefix}type"), format!("{class:?}: ${other} is neither $Key nor $Value")));
            }
            None => (short(class), Side::Value),
        };
        let transform = match kind {
            "RegexRouter" => {
                let regex = own.get("regex").ok_or_else(|| (format!("{prefix}regex"), "missing".to_owned()))?;
                let replacement =
                    own.get("replacement").ok_or_else(|| (format!("{prefix}replacement"), "missing".to_owned()))?;
                Transform::RegexRouter {
                    regex: full_match(regex).map_err(|e| (format!("{prefix}regex"), e))?,
                    // Java's `$1` is the regex crate's `${1}`.
                    replacement: java_replacement(replacement),
                }
            }
            "Filter" => Transform::Filter,
            "ValueToKey" => Transform::Field(Side::Value, FieldTransform::parse("ValueToKey", &own).map_err(at)?),
            _ => Transform::Field(side, FieldTransform::parse(kind, &own).map_err(at)?),
        };
        let predicate = match own.get("predicate") {
            None => None,
            Some(p) => {
                let predicate = predicates
                    .get(p)
                    .cloned()
                    .ok_or_else(|| (format!("{prefix}predicate"), format!("{p:?} is not in `predicates`")))?;
                let negate = match own.get("negate").map(String::as_str) {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => return Err((format!("{prefix}negate"), format!("{other:?} is not true or false"))),
                };
                Some((predicate, negate))
            }
        };
        stages.push(TransformStage { name: alias, transform, predicate });
    }
    Ok(stages)
}

/// Java's group references (`$1`) as the regex crate writes them (`${1}`),
/// so that `$1-x` is group 1 then `-x`, not a group named `1-x`.
fn java_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str("${");
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
            out.push('}');
        } else {
            out.push(c);
        }
    }
    out
}

/// A regex that must match a whole string (Java's `matches()`).
fn full_match(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("{pattern:?} is not a regular expression: {e}"))
}

#[cfg(test)]
mod tests;

/// The schema of a transformed value: the fields it still has keep their
/// types from `old` where the value still fits them (so a row keeps its
/// decimals and timestamps through `ReplaceField`, `ValueToKey`, …); new or
/// changed fields (`Cast`, `InsertField`) get the type their values show;
/// `None` (inferred when written) for anything else.
fn retype(old: Option<&DataType>, value: &Value) -> Option<DataType> {
    let old = old?;
    match (old, value) {
        (DataType::Struct(defs), Value::Struct(fields)) => Some(DataType::Struct(
            fields
                .iter()
                .map(|(name, v)| match defs.iter().find(|f| f.name() == name) {
                    Some(f) => match retype(Some(f.data_type()), v) {
                        Some(t) => Field::new(name, t, f.is_nullable() || v.is_null()),
                        None => Field::new(name, infer_schema(v), true),
                    },
                    None => Field::new(name, infer_schema(v), true),
                })
                .collect::<Vec<_>>()
                .into(),
        )),
        (t, v) if fits(v, t) => Some(t.clone()),
        _ => None,
    }
}

/// Whether `value` is of a kind `t` describes.
fn fits(value: &Value, t: &DataType) -> bool {
    use std::mem::discriminant;
    match (value, t) {
        (Value::Null, _) => true,
        (Value::Timestamp(_), DataType::Timestamp(..))
        | (Value::Time(_), DataType::Time32(_) | DataType::Time64(_))
        | (Value::Array(_), DataType::List(_))
        | (Value::Map(_), DataType::Map(..)) => true,
        (Value::Decimal { scale, .. }, DataType::Decimal128(_, s)) => scale == s,
        (v, t) => discriminant(&infer_schema(v)) == discriminant(t),
    }
}
