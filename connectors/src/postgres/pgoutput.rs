//! PostgreSQL's logical replication messages as the built-in `pgoutput`
//! plugin writes them (protocol version 1): what [`super::cdc`] reads
//! from a replication slot.
//!
//! Hand-written: no maintained crate decodes pgoutput for sqlx, and the
//! format is small (PostgreSQL's "Logical Replication Message Formats").
//! Every read is bounds-checked: a truncated or unknown message is an
//! error, never a panic.

use bytes::Buf;

/// A change's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A snapshot row.
    Read,
    /// An insert.
    Create,
    /// An update.
    Update,
    /// A delete.
    Delete,
}

impl Op {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Read => "r",
            Self::Create => "c",
            Self::Update => "u",
            Self::Delete => "d",
        }
    }
}

/// Microseconds from PostgreSQL's epoch (2000-01-01) to Unix's.
pub(crate) const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A column of a row in a `pgoutput` message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// SQL NULL.
    Null,
    /// A TOASTed value the update did not change: the server does not
    /// send it (only the old row has it, with `REPLICA IDENTITY FULL`).
    Unchanged,
    /// The value's text.
    Text(String),
}

/// One `pgoutput` message, as far as the CDC source needs it.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
    /// `R`: a table's columns: (flags, name, type OID, typmod).
    Relation {
        /// The table's OID.
        oid: u32,
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// Its columns.
        columns: Vec<(u8, String, u32, i32)>,
    },
    /// `I`, `U`, `D`: a row changed; values as text.
    Change {
        /// The table's OID.
        oid: u32,
        /// What happened.
        op: Op,
        /// The old row (or key), when the server sends it.
        old: Option<Vec<Cell>>,
        /// The new row.
        new: Option<Vec<Cell>>,
    },
    /// Anything else (origin, type, truncate, message; begin and commit,
    /// which the replication client hands over parsed).
    Other,
}

impl Message {
    pub(crate) fn parse(mut b: &[u8]) -> std::result::Result<Self, String> {
        fn need(b: &[u8], n: usize) -> std::result::Result<(), String> {
            if b.remaining() < n { Err(format!("truncated: {n} more bytes expected")) } else { Ok(()) }
        }
        fn string(b: &mut &[u8]) -> std::result::Result<String, String> {
            let end = b.iter().position(|&c| c == 0).ok_or("an unterminated string")?;
            let s = String::from_utf8_lossy(&b[..end]).into_owned();
            b.advance(end + 1);
            Ok(s)
        }
        fn tuple(b: &mut &[u8]) -> std::result::Result<Vec<Cell>, String> {
            need(b, 2)?;
            let n = b.get_i16();
            let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
            for _ in 0..n {
                need(b, 1)?;
                match b.get_u8() {
                    b'n' => out.push(Cell::Null),
                    b'u' => out.push(Cell::Unchanged),
                    b't' | b'b' => {
                        need(b, 4)?;
                        let len = usize::try_from(b.get_i32()).map_err(|_| "a negative length")?;
                        need(b, len)?;
                        out.push(Cell::Text(String::from_utf8_lossy(&b[..len]).into_owned()));
                        b.advance(len);
                    }
                    other => return Err(format!("a column kind {:?}", char::from(other))),
                }
            }
            Ok(out)
        }
        need(b, 1)?;
        let tag = b.get_u8();
        Ok(match tag {
            b'R' => {
                need(b, 4)?;
                let oid = b.get_u32();
                let schema = string(&mut b)?;
                let name = string(&mut b)?;
                need(b, 3)?;
                let _identity = b.get_u8();
                let n = b.get_i16();
                let mut columns = Vec::new();
                for _ in 0..n {
                    need(b, 1)?;
                    let flags = b.get_u8();
                    let col = string(&mut b)?;
                    need(b, 8)?;
                    columns.push((flags, col, b.get_u32(), b.get_i32()));
                }
                Self::Relation { oid, schema, name, columns }
            }
            b'I' => {
                need(b, 5)?;
                let oid = b.get_u32();
                let _n = b.get_u8();
                Self::Change { oid, op: Op::Create, old: None, new: Some(tuple(&mut b)?) }
            }
            b'U' => {
                need(b, 5)?;
                let oid = b.get_u32();
                let mut old = None;
                let mut kind = b.get_u8();
                if kind == b'K' || kind == b'O' {
                    old = Some(tuple(&mut b)?);
                    need(b, 1)?;
                    kind = b.get_u8();
                }
                if kind != b'N' {
                    return Err(format!("an update without its new row ({:?})", char::from(kind)));
                }
                Self::Change { oid, op: Op::Update, old, new: Some(tuple(&mut b)?) }
            }
            b'D' => {
                need(b, 5)?;
                let oid = b.get_u32();
                let _kind = b.get_u8();
                Self::Change { oid, op: Op::Delete, old: Some(tuple(&mut b)?), new: None }
            }
            _ => Self::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgoutput_messages_decode() {
        let mut insert = vec![b'I', 0, 0, 0, 42, b'N', 0, 2, b't', 0, 0, 0, 1, b'7', b'n'];
        assert_eq!(
            Message::parse(&insert),
            Ok(Message::Change {
                oid: 42,
                op: Op::Create,
                old: None,
                new: Some(vec![Cell::Text("7".into()), Cell::Null])
            })
        );
        insert.truncate(10);
        assert!(Message::parse(&insert).is_err(), "a truncated message is an error, not a panic");
        let mut relation = vec![b'R', 0, 0, 0, 42];
        relation.extend_from_slice(b"public\0t\0");
        relation.extend_from_slice(&[b'd', 0, 1, 1]);
        relation.extend_from_slice(b"id\0");
        relation.extend_from_slice(&[0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            Message::parse(&relation),
            Ok(Message::Relation {
                oid: 42,
                schema: "public".into(),
                name: "t".into(),
                columns: vec![(1, "id".into(), 23, -1)]
            })
        );
    }
}
