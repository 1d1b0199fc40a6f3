//! CSV as `FileSource` reads it: a header naming the columns, then one
//! struct per line, each column of one type for the whole file.
//!
//! The types are inferred once per file from its first rows (up to
//! [`SAMPLE_ROWS`] lines or [`SAMPLE_BYTES`]): a column whose cells all
//! read as integers is `int64`; integers and decimals (`3.00`, `284.20`,
//! `1e3`) make it `double`; `true`/`false` make it `boolean`; anything
//! else makes it a string. Empty cells do not count (they are null in a
//! typed column, the empty string in a string column). A later
//! cell that does not fit its column's type is a bad record (the error
//! names the file, line and column, and `errors.tolerance` decides), never
//! a value of another type.
//!
//! Hand-written rather than through `arrow-csv`'s inference: records here
//! are [`Value`]s one line at a time; when the connectors move Arrow
//! batches, the reader and its inference become `arrow-csv`'s.

use std::fs::File;
use std::os::unix::fs::FileExt;

use arrow_schema::{DataType, Field};
use memchr::memchr;

use crate::data::Value;

/// Rows read to infer the column types.
pub(crate) const SAMPLE_ROWS: usize = 1000;
/// Bytes read, at most, to infer the column types.
pub(crate) const SAMPLE_BYTES: usize = 1 << 20;

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CsvType {
    /// No cell seen yet (only empty ones): read as a string.
    Unknown,
    /// Whole numbers.
    Int64,
    /// Numbers.
    Float64,
    /// `true` / `false`.
    Boolean,
    /// Anything.
    Utf8,
}

impl CsvType {
    /// The narrowest type of one cell.
    fn of(cell: &str) -> Self {
        if cell.parse::<i64>().is_ok() {
            Self::Int64
        } else if is_decimal(cell) {
            Self::Float64
        } else if cell == "true" || cell == "false" {
            Self::Boolean
        } else {
            Self::Utf8
        }
    }

    /// The type that holds both.
    fn widen(self, other: Self) -> Self {
        match (self, other) {
            (Self::Unknown, t) | (t, Self::Unknown) => t,
            (a, b) if a == b => a,
            (Self::Int64, Self::Float64) | (Self::Float64, Self::Int64) => Self::Float64,
            _ => Self::Utf8,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Unknown | Self::Utf8 => DataType::Utf8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Int64 => "an integer",
            Self::Float64 => "a number",
            Self::Boolean => "true or false",
            Self::Unknown | Self::Utf8 => "a string",
        }
    }
}

/// A finite number as people write it: digits with an optional sign,
/// point and exponent (no `NaN`, `inf` or hex, which are strings).
fn is_decimal(cell: &str) -> bool {
    let body = cell.strip_prefix(['-', '+']).unwrap_or(cell);
    body.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && cell.parse::<f64>().is_ok_and(f64::is_finite)
}

/// A file's columns: names from the header, types from the sample.
#[derive(Debug, Clone)]
pub(crate) struct CsvColumns {
    names: Vec<String>,
    types: Vec<CsvType>,
    schema: DataType,
}

impl CsvColumns {
    /// Columns named by `header`, typed by the `rows` sampled after it.
    pub(crate) fn infer(header: Vec<String>, rows: &[Vec<String>]) -> Self {
        let mut types = vec![CsvType::Unknown; header.len()];
        for row in rows.iter().filter(|r| r.len() == header.len()) {
            for (t, cell) in types.iter_mut().zip(row) {
                if !cell.is_empty() {
                    *t = t.widen(CsvType::of(cell));
                }
            }
        }
        let schema = DataType::Struct(
            header.iter().zip(&types).map(|(n, t)| Field::new(n, t.data_type(), true)).collect::<Vec<_>>().into(),
        );
        Self { names: header, types, schema }
    }

    /// The record schema: a struct of the columns, each nullable.
    pub(crate) fn schema(&self) -> &DataType {
        &self.schema
    }

    /// How many columns.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// One line's cells as a struct, or the first cell that does not fit
    /// its column (its name and why).
    pub(crate) fn row(&self, cells: Vec<String>) -> Result<Value, String> {
        let mut fields = Vec::with_capacity(cells.len());
        for ((name, t), cell) in self.names.iter().zip(&self.types).zip(cells) {
            let value = if cell.is_empty() {
                // An empty cell: an empty string in a string column, null
                // in a typed one.
                match t {
                    CsvType::Unknown | CsvType::Utf8 => Value::String(String::new()),
                    _ => Value::Null,
                }
            } else {
                let parsed = match t {
                    CsvType::Int64 => cell.parse().ok().map(Value::Int64),
                    CsvType::Float64 => is_decimal(&cell).then(|| cell.parse().ok().map(Value::Float64)).flatten(),
                    CsvType::Boolean => match cell.as_str() {
                        "true" => Some(Value::Boolean(true)),
                        "false" => Some(Value::Boolean(false)),
                        _ => None,
                    },
                    CsvType::Unknown | CsvType::Utf8 => Some(Value::String(cell.clone())),
                };
                parsed.ok_or_else(|| {
                    format!(
                        "column {name:?}: {cell:?} is not {}, as the column's first rows are (a column has one type)",
                        t.name()
                    )
                })?
            };
            fields.push((name.clone(), value));
        }
        Ok(Value::Struct(fields))
    }
}

/// The cells of one CSV line.
pub(crate) fn cells(line: &[u8]) -> std::result::Result<Vec<String>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line);
    match reader.records().next() {
        Some(r) => Ok(r?.iter().map(str::to_owned).collect()),
        None => Ok(Vec::new()),
    }
}

/// A file's header (if it has a whole first line) and first rows.
pub(crate) type Sample = (Option<Vec<String>>, Vec<Vec<String>>);

/// The header and the first complete rows of an open file (read from its
/// start, whatever position it is being read at).
pub(crate) fn sample(file: &File) -> std::io::Result<Sample> {
    let mut buf = vec![0_u8; SAMPLE_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read_at(&mut buf[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let mut lines = Vec::new();
    let mut at = 0;
    while lines.len() <= SAMPLE_ROWS
        && let Some(nl) = memchr(b'\n', &buf[at..filled])
    {
        let line = &buf[at..at + nl];
        lines.push(line.strip_suffix(b"\r").unwrap_or(line));
        at += nl + 1;
    }
    let mut lines = lines.into_iter();
    let header = lines.next().and_then(|l| cells(l).ok());
    Ok((header, lines.filter_map(|l| cells(l).ok()).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(rows: &[&[&str]]) -> CsvColumns {
        let header = vec!["id".into(), "amount".into(), "ok".into(), "note".into()];
        let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| (*c).to_owned()).collect()).collect();
        CsvColumns::infer(header, &rows)
    }

    #[test]
    fn money_with_two_decimals_is_a_number_in_every_row() {
        let c = columns(&[&["1", "284.20", "true", "x"], &["2", "3", "false", ""], &["3", "3.00", "", "7"]]);
        assert_eq!(
            c.schema(),
            &DataType::Struct(
                vec![
                    Field::new("id", DataType::Int64, true),
                    Field::new("amount", DataType::Float64, true),
                    Field::new("ok", DataType::Boolean, true),
                    Field::new("note", DataType::Utf8, true),
                ]
                .into()
            )
        );
        let row = c.row(vec!["4".into(), "284.20".into(), "".into(), "7".into()]).expect("fits");
        assert_eq!(
            row,
            Value::Struct(vec![
                ("id".into(), Value::Int64(4)),
                ("amount".into(), Value::Float64(284.2)),
                ("ok".into(), Value::Null),
                ("note".into(), Value::string("7")),
            ])
        );
        let err = c.row(vec!["5".into(), "lots".into(), "true".into(), "".into()]).expect_err("not a number");
        assert!(err.starts_with("column \"amount\": \"lots\" is not a number"), "{err}");
        assert!(c.row(vec!["1.5".into(), "1".into(), "".into(), "".into()]).is_err(), "an integer column");
    }

    #[test]
    fn numbers_are_what_people_write_not_what_rust_parses() {
        for cell in ["0", "-1.5", "+2", "1e3", ".5", "284.20"] {
            assert!(CsvType::of(cell) != CsvType::Utf8, "{cell}");
        }
        for cell in ["NaN", "inf", "infinity", "0x10", "1.2.3", "-", "e5"] {
            assert_eq!(CsvType::of(cell), CsvType::Utf8, "{cell}");
        }
    }
}
