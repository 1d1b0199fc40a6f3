//! `TimestampConverter`: between unix numbers, formatted strings and the
//! Date, Time and Timestamp types (Kafka's keys: `field`, `target.type`,
//! `format`, `unix.precision`).
//!
//! `format` is Java's `SimpleDateFormat` for the letters people use in
//! timestamps — `yyyy MM dd HH mm ss SSS`, quoted literals (`'T'`) and any
//! other character as itself — all in UTC. (Hand-written: the patterns are
//! Java's, which no Rust date crate reads, and this is all that is needed.)

use std::collections::BTreeMap;

use crate::data::{Value, days_from_civil};

const DAY_US: i64 = 86_400_000_000;

/// What to convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    String,
    Unix,
    Date,
    Time,
    Timestamp,
}

/// A `SimpleDateFormat` piece.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
    Literal(String),
}

/// A configured `TimestampConverter`.
#[derive(Debug, Clone)]
pub(super) struct TimestampConverter {
    field: Option<String>,
    target: Target,
    format: Option<Vec<Piece>>,
    /// Microseconds per unit of a unix number.
    unit_us: i64,
    nanos: bool,
}

type ConfigError = (String, String);

impl TimestampConverter {
    pub(super) fn parse(own: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let target = match own.get("target.type").map(String::as_str) {
            Some("string") => Target::String,
            Some("unix") => Target::Unix,
            Some("Date") => Target::Date,
            Some("Time") => Target::Time,
            Some("Timestamp") => Target::Timestamp,
            other => {
                return Err((
                    "target.type".into(),
                    format!("{:?}: use string, unix, Date, Time or Timestamp", other.unwrap_or("(missing)")),
                ));
            }
        };
        let format = match own.get("format").filter(|f| !f.is_empty()) {
            Some(f) => Some(pattern(f).map_err(|e| ("format".to_owned(), e))?),
            None if target == Target::String => {
                return Err((
                    "format".into(),
                    "missing; target.type=string needs a format like yyyy-MM-dd'T'HH:mm:ss".into(),
                ));
            }
            None => None,
        };
        let (unit_us, nanos) = match own.get("unix.precision").map_or("milliseconds", String::as_str) {
            "seconds" => (1_000_000, false),
            "milliseconds" => (1_000, false),
            "microseconds" => (1, false),
            "nanoseconds" => (1, true),
            other => {
                return Err((
                    "unix.precision".into(),
                    format!("{other:?}: use seconds, milliseconds, microseconds or nanoseconds"),
                ));
            }
        };
        Ok(Self { field: own.get("field").filter(|f| !f.is_empty()).cloned(), target, format, unit_us, nanos })
    }

    pub(super) fn apply(&self, value: Value) -> Result<Value, String> {
        match &self.field {
            None => self.convert(value),
            Some(name) => match value {
                Value::Struct(mut fields) => {
                    for (n, v) in &mut fields {
                        if n == name {
                            *v = self.convert(std::mem::take(v)).map_err(|e| format!("field {name:?}: {e}"))?;
                        }
                    }
                    Ok(Value::Struct(fields))
                }
                Value::Null => Ok(Value::Null),
                other => Err(format!("expected a struct with field {name:?}, found {}", other.type_name())),
            },
        }
    }

    fn convert(&self, v: Value) -> Result<Value, String> {
        let us = match &v {
            Value::Null => return Ok(Value::Null),
            Value::Int64(n) if self.nanos => n.div_euclid(1000),
            Value::Int64(n) => n.saturating_mul(self.unit_us),
            Value::Int32(n) => i64::from(*n).saturating_mul(self.unit_us),
            Value::Timestamp(us) | Value::Time(us) => *us,
            Value::Date(days) => i64::from(*days) * DAY_US,
            Value::String(s) => match &self.format {
                Some(f) => parse(f, s)?,
                None => return Err(format!("cannot read the string {s:?} without a format")),
            },
            other => return Err(format!("cannot convert {} to a timestamp", other.type_name())),
        };
        Ok(match self.target {
            Target::Timestamp => Value::Timestamp(us),
            #[allow(clippy::cast_possible_truncation)] // days of any i64 of microseconds fit in i32
            Target::Date => Value::Date(us.div_euclid(DAY_US) as i32),
            Target::Time => Value::Time(us.rem_euclid(DAY_US)),
            Target::Unix if self.nanos => Value::Int64(us.saturating_mul(1000)),
            Target::Unix => Value::Int64(us.div_euclid(self.unit_us)),
            Target::String => Value::String(format(self.format.as_deref().unwrap_or_default(), us)),
        })
    }
}

fn pattern(f: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let piece = match (c, run) {
            ('y', 4) => Piece::Year,
            ('M', 2) => Piece::Month,
            ('d', 2) => Piece::Day,
            ('H', 2) => Piece::Hour,
            ('m', 2) => Piece::Minute,
            ('s', 2) => Piece::Second,
            ('S', 3) => Piece::Millis,
            ('\'', _) => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == '\'')
                    .ok_or_else(|| format!("{f:?}: an unclosed quote"))?;
                out.push(Piece::Literal(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
                continue;
            }
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "{f:?}: {} is not supported; use yyyy, MM, dd, HH, mm, ss, SSS",
                    c.to_string().repeat(run)
                ));
            }
            (c, run) => Piece::Literal(c.to_string().repeat(run)),
        };
        out.push(piece);
        i += run;
    }
    Ok(out)
}

fn parse(pieces: &[Piece], s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} does not match the format");
    let (mut y, mut mo, mut d, mut h, mut mi, mut se, mut ms) = (1970_i64, 1_u32, 1_u32, 0_i64, 0_i64, 0_i64, 0_i64);
    let mut rest = s;
    for p in pieces {
        let mut digits = |n: usize| -> Result<i64, String> {
            let (head, tail) = rest.split_at_checked(n).ok_or_else(bad)?;
            rest = tail;
            if !head.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            head.parse().map_err(|_| bad())
        };
        match p {
            Piece::Year => y = digits(4)?,
            Piece::Month => mo = u32::try_from(digits(2)?).map_err(|_| bad())?,
            Piece::Day => d = u32::try_from(digits(2)?).map_err(|_| bad())?,
            Piece::Hour => h = digits(2)?,
            Piece::Minute => mi = digits(2)?,
            Piece::Second => se = digits(2)?,
            Piece::Millis => ms = digits(3)?,
            Piece::Literal(l) => rest = rest.strip_prefix(l.as_str()).ok_or_else(bad)?,
        }
    }
    if !rest.is_empty() || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    Ok(days * DAY_US + ((h * 60 + mi) * 60 + se) * 1_000_000 + ms * 1000)
}

fn format(pieces: &[Piece], us: i64) -> String {
    let days = us.div_euclid(DAY_US);
    let of_day = us.rem_euclid(DAY_US);
    #[allow(clippy::cast_possible_truncation)] // days of any i64 of microseconds fit in i32
    let date = crate::data::date_text(days as i32);
    let (y, rest) = date.split_at(date.len() - 6);
    let (mo, d) = (&rest[1..3], &rest[4..6]);
    let s = of_day / 1_000_000;
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Year => out.push_str(y),
            Piece::Month => out.push_str(mo),
            Piece::Day => out.push_str(d),
            Piece::Hour => out.push_str(&format!("{:02}", s / 3600)),
            Piece::Minute => out.push_str(&format!("{:02}", s / 60 % 60)),
            Piece::Second => out.push_str(&format!("{:02}", s % 60)),
            Piece::Millis => out.push_str(&format!("{:03}", of_day % 1_000_000 / 1000)),
            Piece::Literal(l) => out.push_str(l),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converter(pairs: &[(&str, &str)]) -> TimestampConverter {
        let own = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        TimestampConverter::parse(&own).expect("config")
    }

    #[test]
    fn strings_numbers_and_timestamps_convert_both_ways() {
        let to_string = converter(&[("target.type", "string"), ("format", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")]);
        let ts = Value::Timestamp(1_700_000_000_123_000);
        let text = to_string.convert(ts.clone()).expect("format");
        assert_eq!(text, Value::string("2023-11-14T22:13:20.123Z"));
        let back = converter(&[("target.type", "Timestamp"), ("format", "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")]);
        assert_eq!(back.convert(text).expect("parse"), ts);
        let unix = converter(&[("target.type", "unix"), ("unix.precision", "seconds")]);
        assert_eq!(unix.convert(ts).expect("unix"), Value::Int64(1_700_000_000));
        let date = converter(&[("target.type", "Date"), ("field", "at")]);
        let row = Value::Struct(vec![("at".into(), Value::Int64(1_700_000_000_123))]);
        assert_eq!(date.apply(row).expect("date"), Value::Struct(vec![("at".into(), Value::Date(19_675))]));
    }

    #[test]
    fn a_string_that_does_not_match_is_named() {
        let c = converter(&[("target.type", "unix"), ("format", "yyyy-MM-dd")]);
        assert_eq!(
            c.convert(Value::string("14/11/2023")).expect_err("mismatch"),
            "\"14/11/2023\" does not match the format"
        );
        let own =
            [("target.type".to_owned(), "string".to_owned()), ("format".to_owned(), "dd MMM yyyy".to_owned())].into();
        let (key, reason) = TimestampConverter::parse(&own).expect_err("MMM");
        assert_eq!(key, "format");
        assert!(reason.contains("MMM is not supported"), "{reason}");
    }
}
