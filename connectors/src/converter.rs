//! Converters: between the bytes in the log and a record's [`Value`] —
//! Kafka Connect's `JsonConverter` (with or without the embedded schema),
//! `StringConverter` and `ByteArrayConverter`, configured with Kafka's keys
//! (`value.converter`, `value.converter.schemas.enable`, and the same for
//! the key).
//!
//! Plexus's default is JSON *without* the schema envelope: a record's
//! value in the log is the plain JSON a person or a `Json<T>` serde reads
//! (Kafka's worker default embeds the schema in every record). Reading,
//! the default takes both: a value that is exactly Kafka Connect's
//! envelope (`{"schema": {…}, "payload": …}`, a valid schema) is read
//! with its schema, anything else as plain JSON — so a sink reads what a
//! source wrote with `schemas.enable=true` without being told.
//! `schemas.enable=false` set explicitly reads every value as plain JSON.

use arrow_schema::DataType;
use bytes::Bytes;
use serde_json::Value as Json;

use crate::config::{ConnectorConfig, typed};
use crate::data::{Value, infer_schema, schema_from_json, schema_to_json};
use crate::error::{Error, Result};

/// A converter (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converter {
    /// JSON; with `schemas`, Kafka Connect's `{"schema": …, "payload": …}`.
    Json {
        /// `schemas.enable`: write the envelope, and expect it when reading.
        schemas: bool,
        /// Read an envelope as one when `schemas.enable` was not set.
        detect: bool,
    },
    /// UTF-8 text.
    String,
    /// The bytes as they are.
    Bytes,
}

impl Converter {
    /// Reads `<prefix>` (`key.converter` / `value.converter`) and
    /// `<prefix>.schemas.enable` (when unset: `schemas`).
    pub fn parse(config: &ConnectorConfig, prefix: &str, schemas: bool) -> Result<Self> {
        let class = config.get(prefix).unwrap_or("json");
        let short = class.rsplit('.').next().unwrap_or(class);
        let schemas_key = format!("{prefix}.schemas.enable");
        match short {
            "JsonConverter" | "json" => {
                let set: Option<bool> = typed(config, &schemas_key)?;
                Ok(Self::Json { schemas: set.unwrap_or(schemas), detect: set.is_none() })
            }
            "StringConverter" | "string" => Ok(Self::String),
            "ByteArrayConverter" | "bytes" => Ok(Self::Bytes),
            _ => Err(Error::config(
                &config.name,
                prefix,
                format!(
                    "{class:?} is not a converter; use org.apache.kafka.connect.json.JsonConverter, \
                     org.apache.kafka.connect.storage.StringConverter or \
                     org.apache.kafka.connect.converters.ByteArrayConverter (or json, string, bytes)"
                ),
            )),
        }
    }

    /// The bytes for a value (`None`: null, a tombstone).
    pub fn from_connect(&self, schema: Option<&DataType>, value: &Value) -> Result<Option<Bytes>, String> {
        if value.is_null() && !matches!(self, Self::Json { schemas: true, .. }) {
            return Ok(None);
        }
        match self {
            Self::Json { schemas: false, .. } => {
                let mut out = Vec::with_capacity(64);
                value.write_json_as(schema, &mut out);
                Ok(Some(Bytes::from(out)))
            }
            Self::Json { schemas: true, .. } => {
                if value.is_null() {
                    return Ok(None);
                }
                let schema = schema.cloned().unwrap_or_else(|| infer_schema(value));
                // The schema first, as Kafka's JsonConverter writes it.
                let mut out = Vec::with_capacity(256);
                out.extend_from_slice(b"{\"schema\":");
                out.extend_from_slice(schema_to_json(&schema, true).to_string().as_bytes());
                out.extend_from_slice(b",\"payload\":");
                out.extend_from_slice(value.to_json_typed(&schema).to_string().as_bytes());
                out.push(b'}');
                Ok(Some(Bytes::from(out)))
            }
            Self::String => Ok(Some(Bytes::from(value.to_text()))),
            Self::Bytes => match value {
                Value::Bytes(b) => Ok(Some(b.clone())),
                Value::String(s) => Ok(Some(Bytes::from(s.clone()))),
                other => Err(format!("ByteArrayConverter takes bytes or strings, not {}", other.type_name())),
            },
        }
    }

    /// The value (and its schema, when the bytes carry one) of some bytes.
    pub fn to_connect(&self, bytes: Option<&[u8]>) -> Result<(Option<DataType>, Value), String> {
        let Some(bytes) = bytes else { return Ok((None, Value::Null)) };
        match self {
            Self::Json { schemas, detect } => {
                let not_json = |e: serde_json::Error| {
                    format!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes[..bytes.len().min(80)]))
                };
                let needs = "schemas.enable=true needs {\"schema\": …, \"payload\": …}; \
                             set schemas.enable=false for plain JSON";
                let envelope = *schemas || (*detect && looks_like_envelope(bytes));
                if !envelope {
                    return Value::parse_json(bytes).map(|v| (None, v)).map_err(not_json);
                }
                let json: Json = serde_json::from_slice(bytes).map_err(not_json)?;
                let Json::Object(mut envelope) = json else { return Err(needs.into()) };
                if !schemas && envelope.len() != 2 {
                    // Detected, but other keys too: plain JSON.
                    return Value::parse_json(bytes).map(|v| (None, v)).map_err(not_json);
                }
                let (Some(schema), Some(payload)) = (envelope.remove("schema"), envelope.remove("payload")) else {
                    return Err(needs.into());
                };
                if schema.is_null() {
                    return Ok((None, Value::from_json(payload)));
                }
                let (schema, _) = match schema_from_json(&schema) {
                    Ok(s) => s,
                    // Detected, but not an envelope after all: plain JSON.
                    Err(_) if !schemas => return Value::parse_json(bytes).map(|v| (None, v)).map_err(not_json),
                    Err(e) => return Err(e),
                };
                let value = Value::from_json_typed(payload, &schema)?;
                Ok((Some(schema), value))
            }
            Self::String => match std::str::from_utf8(bytes) {
                Ok(s) => Ok((Some(DataType::Utf8), Value::String(s.to_owned()))),
                Err(e) => Err(format!("not UTF-8 text: {e}")),
            },
            Self::Bytes => Ok((Some(DataType::Binary), Value::Bytes(Bytes::copy_from_slice(bytes)))),
        }
    }
}

/// Whether JSON text starts as Kafka Connect's envelope does: an object
/// whose first key is `"schema"` or `"payload"` and that has the other
/// (the caller parses it to be sure).
fn looks_like_envelope(bytes: &[u8]) -> bool {
    let text = bytes.trim_ascii_start();
    let Some(rest) = text.strip_prefix(b"{").map(<[u8]>::trim_ascii_start) else { return false };
    (rest.starts_with(b"\"schema\"") && memchr::memmem::find(rest, b"\"payload\"").is_some())
        || (rest.starts_with(b"\"payload\"") && memchr::memmem::find(rest, b"\"schema\"").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_and_without_the_envelope_round_trips() {
        let value = Value::Struct(vec![("id".into(), Value::Int64(1)), ("name".into(), Value::string("ada"))]);
        for c in [Converter::Json { schemas: false, detect: false }, Converter::Json { schemas: true, detect: false }] {
            let bytes = c.from_connect(None, &value).expect("to bytes").expect("not null");
            let (_, back) = c.to_connect(Some(&bytes)).expect("from bytes");
            assert_eq!(back, value, "{c:?}");
        }
        let plain =
            Converter::Json { schemas: false, detect: false }.from_connect(None, &value).expect("json").expect("bytes");
        assert_eq!(&plain[..], br#"{"id":1,"name":"ada"}"#);
        assert_eq!(
            Converter::Json { schemas: false, detect: false }.from_connect(None, &Value::Null).expect("null"),
            None
        );
    }

    #[test]
    fn the_default_reads_an_envelope_and_plain_json_alike() {
        let value = Value::Struct(vec![("at".into(), Value::Timestamp(1_700_000_000_123_456))]);
        let schema = DataType::Struct(
            vec![arrow_schema::Field::new("at", DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None), true)]
                .into(),
        );
        let enveloped =
            Converter::Json { schemas: true, detect: false }.from_connect(Some(&schema), &value).expect("json");
        let default = Converter::Json { schemas: false, detect: true };
        let (read_schema, back) = default.to_connect(enveloped.as_deref()).expect("envelope");
        assert_eq!((read_schema.as_ref(), &back), (Some(&schema), &value));
        // Schemaless, microseconds go as RFC 3339 text: nothing is lost.
        let plain = default.from_connect(Some(&schema), &value).expect("json").expect("bytes");
        assert_eq!(&plain[..], br#"{"at":"2023-11-14T22:13:20.123456Z"}"#);
        // Something that only looks like an envelope is plain JSON.
        let odd = br#"{"schema": "mine", "payload": 1}"#;
        let (none, back) = default.to_connect(Some(odd)).expect("plain");
        assert!(none.is_none());
        assert_eq!(back.field("schema"), Some(&Value::string("mine")));
    }

    #[test]
    fn bad_bytes_say_what_they_are() {
        let e = Converter::Json { schemas: false, detect: false }.to_connect(Some(b"{oops")).expect_err("not json");
        assert!(e.starts_with("not JSON"), "{e}");
        let e = Converter::Json { schemas: true, detect: false }.to_connect(Some(b"[1]")).expect_err("no envelope");
        assert!(e.contains("schemas.enable=false"), "{e}");
        let e = Converter::String.to_connect(Some(&[0xff, 0xfe])).expect_err("not utf-8");
        assert!(e.starts_with("not UTF-8"), "{e}");
    }
}
