//! Rows of [`Value`]s as Parquet (the `parquet` crate's Arrow writer).
//!
//! The schema is the first row's: a struct's fields become columns (a
//! value that is not a struct is one column, `value`), every column
//! nullable. Later rows fill the columns by field name; a missing field is
//! null, a field of another type is an error naming it.

use std::fs::File;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;

use crate::data::{Value, infer_schema};

/// An open Parquet file and the rows not yet written to it.
pub(crate) struct ParquetFile {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    rows: Vec<Value>,
    /// Rows taken so far.
    count: usize,
}

/// The columns a row gives.
pub(crate) fn schema_of(row: &Value) -> SchemaRef {
    let fields: Vec<Field> = match row {
        Value::Struct(fields) => fields
            .iter()
            .map(|(n, v)| {
                let t = match infer_schema(v) {
                    // Nested values are written as their JSON text.
                    DataType::Null | DataType::Struct(_) | DataType::List(_) | DataType::Map(..) => DataType::Utf8,
                    t => t,
                };
                Field::new(n, t, true)
            })
            .collect(),
        other => vec![Field::new("value", infer_schema(other), true)],
    };
    Arc::new(Schema::new(fields))
}

impl ParquetFile {
    pub(crate) fn create(file: File, schema: SchemaRef) -> Result<Self, String> {
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), None).map_err(|e| e.to_string())?;
        Ok(Self { writer, schema, rows: Vec::new(), count: 0 })
    }

    pub(crate) fn push(&mut self, row: Value) -> Result<(), String> {
        self.rows.push(row);
        self.count += 1;
        if self.rows.len() >= 8_192 { self.write_rows() } else { Ok(()) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the buffered rows as a record batch.
    fn write_rows(&mut self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let columns =
            self.schema.fields().iter().map(|f| column(f, &rows)).collect::<Result<Vec<ArrayRef>, String>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|e| e.to_string())?;
        self.writer.write(&batch).map_err(|e| e.to_string())
    }

    /// Writes the footer; the file is complete.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        self.write_rows()?;
        self.writer.close().map(|_| ()).map_err(|e| e.to_string())
    }
}

/// One column of `rows`.
fn column(field: &Field, rows: &[Value]) -> Result<ArrayRef, String> {
    let name = field.name();
    let cells = rows.iter().map(|r| match r {
        Value::Struct(fields) => fields.iter().find(|(n, _)| n == name).map_or(&Value::Null, |(_, v)| v),
        other if name == "value" => other,
        _ => &Value::Null,
    });
    let wrong =
        |v: &Value| format!("field {name:?}: a {} where the file's column is {}", v.type_name(), field.data_type());
    macro_rules! build {
        ($builder:expr, $($pat:pat => $val:expr),+) => {{
            let mut b = $builder;
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    $($pat => b.append_value($val),)+
                    other => return Err(wrong(other)),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match field.data_type() {
        DataType::Boolean => build!(BooleanBuilder::new(), Value::Boolean(b) => *b),
        DataType::Int8 => build!(Int8Builder::new(), Value::Int8(n) => *n),
        DataType::Int16 => build!(Int16Builder::new(), Value::Int16(n) => *n),
        DataType::Int32 => build!(Int32Builder::new(), Value::Int32(n) => *n),
        DataType::Int64 => build!(Int64Builder::new(), Value::Int64(n) => *n),
        DataType::Float32 => build!(Float32Builder::new(), Value::Float32(n) => *n),
        #[allow(clippy::cast_precision_loss)] // an integer in a float column, as JSON mixes them
        DataType::Float64 => build!(Float64Builder::new(), Value::Float64(n) => *n, Value::Int64(n) => *n as f64),
        DataType::Binary => build!(BinaryBuilder::new(), Value::Bytes(b) => b),
        DataType::Date32 => build!(Date32Builder::new(), Value::Date(d) => *d),
        DataType::Time64(TimeUnit::Microsecond) => build!(Time64MicrosecondBuilder::new(), Value::Time(t) => *t),
        DataType::Timestamp(..) => {
            let b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            build!(b, Value::Timestamp(t) => *t)
        }
        DataType::Decimal128(p, s) => {
            let b = Decimal128Builder::new().with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?;
            build!(b, Value::Decimal { unscaled, .. } => *unscaled)
        }
        _ => {
            let mut b = StringBuilder::new();
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::String(s) => b.append_value(s),
                    other => {
                        let mut out = Vec::new();
                        other.write_json(&mut out);
                        b.append_value(String::from_utf8_lossy(&out));
                    }
                }
            }
            Arc::new(b.finish())
        }
    })
}
