//! `FileSource`: tails a file, or every file a glob matches, one record
//! per line.
//!
//! Each file is a source partition `{"filename": <path>}`; its offset is
//! `{"position": <byte after the last line written>, "inode": <inode>}`.
//! A restart seeks to the stored position of the file that still has the
//! stored inode: if the file was rotated meanwhile (renamed, a new one
//! created under the name), the renamed file is found by its inode in the
//! same directory and read to its end first. While running, a file whose
//! name now points at another inode is drained to its end (the writer may
//! still be finishing a line) and then left for the new file, read from
//! its start. Only whole lines are emitted; a last line without its
//! newline waits for it (or for the rotation that ends the file).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use memchr::memchr;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::Format;
use super::csv::{CsvColumns, cells as csv_cells, sample as csv_sample};
use crate::connector::{SourceConnector, SourceOffsets, SourceTask};
use crate::data::Value;
use crate::error::{Error, Result};
use crate::record::{ConnectRecord, SourceRecord};

fn default_batch() -> usize {
    10_000
}

fn default_poll() -> u64 {
    100
}

/// `FileSource`'s own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// `file`: the file to tail, or a glob (`logs/*.log`).
    pub file: String,
    /// `topic`: where the records go.
    pub topic: String,
    /// `format`: `lines` (default), `json`, `csv`.
    #[serde(default)]
    pub format: Format,
    /// `batch.size`: most records per poll (Kafka's key; default 10,000).
    #[serde(rename = "batch.size", default = "default_batch", deserialize_with = "crate::config::from_str")]
    pub batch_size: usize,
    /// `poll.interval.ms`: how long to wait at the end of the files.
    #[serde(rename = "poll.interval.ms", default = "default_poll", deserialize_with = "crate::config::from_str")]
    pub poll_interval_ms: u64,
}

/// The configured connector.
#[derive(Debug)]
pub struct FileSourceConnector {
    name: String,
    config: FileSourceConfig,
}

impl FileSourceConnector {
    pub(crate) fn new(name: &str, config: FileSourceConfig) -> Self {
        Self { name: name.to_owned(), config }
    }

    fn is_glob(&self) -> bool {
        self.config.file.contains(['*', '?', '['])
    }
}

#[async_trait]
impl SourceConnector for FileSourceConnector {
    async fn validate(&self) -> Result<()> {
        if self.is_glob() {
            glob::Pattern::new(&self.config.file).map_err(|e| {
                Error::config(&self.name, "file", format!("{:?} is not a valid glob: {e}", self.config.file))
            })?;
            return Ok(());
        }
        let path = Path::new(&self.config.file);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(Error::config(
                &self.name,
                "file",
                format!("{:?}: the directory {} does not exist", self.config.file, dir.display()),
            ));
        }
        Ok(())
    }

    fn task(&self, _index: usize, _count: usize) -> Result<Box<dyn SourceTask>> {
        Ok(Box::new(FileSourceTask {
            name: self.name.clone(),
            config: self.config.clone(),
            glob: self.is_glob(),
            files: BTreeMap::new(),
            stored: SourceOffsets::new(),
            buf: vec![0; 1 << 20],
            last_scan: None,
        }))
    }
}

/// One file being tailed.
struct Tailed {
    path: PathBuf,
    /// The partition's JSON (`{"filename": …}`), built once.
    partition: Arc<Json>,
    file: File,
    inode: u64,
    /// Bytes consumed: the offset after the last whole line.
    position: u64,
    /// Bytes read past `position`: a line still missing its newline.
    partial: Vec<u8>,
    /// The CSV header (read from the file's first line).
    header: Option<Vec<String>>,
    /// The CSV columns' names and types, inferred at the first data line.
    columns: Option<CsvColumns>,
    /// The number of the next line (1 is the first), when known: counted
    /// from the start, or stored with the offset.
    line: Option<u64>,
    /// Set once the name points at another file: drain, then switch.
    rotated_since: Option<Instant>,
}

struct FileSourceTask {
    name: String,
    config: FileSourceConfig,
    glob: bool,
    files: BTreeMap<PathBuf, Tailed>,
    stored: SourceOffsets,
    buf: Vec<u8>,
    last_scan: Option<Instant>,
}

/// How long a rotated file is still read after its last growth, for a
/// writer that finishes its line before reopening.
const DRAIN: Duration = Duration::from_millis(500);

impl FileSourceTask {
    fn io(&self, path: &Path, source: std::io::Error) -> Error {
        Error::Io { connector: self.name.clone(), path: path.to_owned(), source }
    }

    /// The paths to tail now.
    fn paths(&self) -> Vec<PathBuf> {
        if !self.glob {
            return vec![PathBuf::from(&self.config.file)];
        }
        match glob::glob(&self.config.file) {
            Ok(paths) => paths.filter_map(std::result::Result::ok).filter(|p| p.is_file()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Starts tailing `path` if it exists: at the stored position when the
    /// stored inode is still this file; else, if the stored inode was
    /// renamed within the directory, that file is drained first.
    fn open(&mut self, path: &Path) -> Result<()> {
        let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
        let partition = Arc::new(json!({ "filename": path.to_string_lossy() }));
        let stored = self.stored.remove(&partition.to_string()).map(|(_, o)| o);
        let stored_inode = stored.as_ref().and_then(|o| o.get("inode")).and_then(Json::as_u64);
        let stored_position = stored.as_ref().and_then(|o| o.get("position")).and_then(Json::as_u64).unwrap_or(0);
        let stored_line = stored.as_ref().and_then(|o| o.get("line")).and_then(Json::as_u64);
        let (open_path, position, line) = match stored_inode {
            None => (path.to_owned(), stored_position, stored_line),
            Some(ino) if ino == meta.ino() => (path.to_owned(), stored_position, stored_line),
            // Rotated while we were away: finish the old file first.
            Some(ino) => match find_inode(path, ino) {
                Some(old) => (old, stored_position, stored_line),
                None => (path.to_owned(), 0, None),
            },
        };
        let line = if position == 0 { Some(1) } else { line };
        let mut file = File::open(&open_path).map_err(|e| self.io(&open_path, e))?;
        let inode = file.metadata().map_err(|e| self.io(&open_path, e))?.ino();
        // From the start, the first line read is the header; past it, it
        // is read now.
        let header = match self.config.format {
            Format::Csv if position > 0 => csv_sample(&file).map_err(|e| self.io(&open_path, e))?.0,
            _ => None,
        };
        file.seek(SeekFrom::Start(position)).map_err(|e| self.io(&open_path, e))?;
        let rotated_since = (open_path != path).then(Instant::now);
        tracing::info!(connector = %self.name, file = %open_path.display(), position, "tailing");
        self.files.insert(
            path.to_owned(),
            Tailed {
                path: path.to_owned(),
                partition,
                file,
                inode,
                position,
                partial: Vec::new(),
                header,
                columns: None,
                line,
                rotated_since,
            },
        );
        Ok(())
    }

    /// Reads what `path` has, up to `budget` records, into `out`.
    /// The last record read carries the file's offset: where to resume
    /// (a batch is stored whole, so the others need none).
    fn read(&mut self, path: &Path, budget: usize, out: &mut Vec<SourceRecord>) -> Result<()> {
        let Some(mut t) = self.files.remove(path) else { return Ok(()) };
        let start = out.len();
        let result = self.read_file(&mut t, budget, out);
        if out.len() > start
            && let Some(last) = out.last_mut()
        {
            last.source_offset = match t.line {
                Some(line) => json!({ "position": t.position, "inode": t.inode, "line": line }),
                None => json!({ "position": t.position, "inode": t.inode }),
            };
        }
        self.files.insert(path.to_owned(), t);
        result
    }

    fn read_file(&mut self, t: &mut Tailed, budget: usize, out: &mut Vec<SourceRecord>) -> Result<()> {
        let start = out.len();
        loop {
            // Whole lines already read (left over from a full batch) first.
            let mut partial = std::mem::take(&mut t.partial);
            let mut consumed = 0;
            while out.len() - start < budget
                && let Some(nl) = memchr(b'\n', &partial[consumed..])
            {
                let line_end = consumed + nl;
                let mut line = &partial[consumed..line_end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let next = t.position + (line_end + 1) as u64;
                self.emit(t, line, next, out);
                consumed = line_end + 1;
            }
            t.position += consumed as u64;
            partial.drain(..consumed);
            t.partial = partial;
            if out.len() - start >= budget {
                return Ok(());
            }
            let n = t.file.read(&mut self.buf).map_err(|e| Error::Io {
                connector: self.name.clone(),
                path: t.path.clone(),
                source: e,
            })?;
            if n == 0 {
                break;
            }
            t.partial.extend_from_slice(&self.buf[..n]);
        }
        // At the end: has the name moved on to another file?
        let now = std::fs::metadata(&t.path).map(|m| m.ino()).ok();
        if now != Some(t.inode) {
            let since = *t.rotated_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= DRAIN && now.is_some() {
                // The old file is done: its unterminated last line counts.
                if !t.partial.is_empty() {
                    let line = std::mem::take(&mut t.partial);
                    let next = t.position + line.len() as u64;
                    self.emit(t, &line, next, out);
                }
                let mut file = File::open(&t.path).map_err(|e| self.io(&t.path, e))?;
                let inode = file.metadata().map_err(|e| self.io(&t.path, e))?.ino();
                file.seek(SeekFrom::Start(0)).map_err(|e| self.io(&t.path, e))?;
                tracing::info!(connector = %self.name, file = %t.path.display(), "following the rotation to the new file");
                t.file = file;
                t.inode = inode;
                t.position = 0;
                t.line = Some(1);
                t.rotated_since = None;
                t.header = None;
                t.columns = None;
            }
        }
        Ok(())
    }

    /// One line as a record (`next`: the byte after it, for messages).
    fn emit(&self, t: &mut Tailed, line: &[u8], next: u64, out: &mut Vec<SourceRecord>) {
        let number = t.line;
        t.line = t.line.map(|n| n + 1);
        let text = String::from_utf8_lossy(line);
        let place = || {
            let at = next - line.len() as u64 - 1;
            match number {
                Some(n) => format!("{}: line {n}", t.path.display()),
                None => format!("{}: the line at byte {at}", t.path.display()),
            }
        };
        let mut schema = None;
        let (value, failure) = match self.config.format {
            // (A source never has `parquet`: `configure` refuses it.)
            Format::Lines | Format::Parquet => (Value::String(text.into_owned()), None),
            Format::Json => match Value::parse_json(line) {
                Ok(v) => (v, None),
                Err(e) => (Value::String(text.into_owned()), Some(format!("{}: not JSON: {e}", place()))),
            },
            Format::Csv => {
                let cells = csv_cells(line);
                let Some(header) = &t.header else {
                    // The header line itself: remembered, not emitted.
                    match cells {
                        Ok(c) => t.header = Some(c),
                        Err(e) => {
                            tracing::warn!(connector = %self.name, file = %t.path.display(), error = %e, "unreadable CSV header")
                        }
                    }
                    return;
                };
                if t.columns.is_none() {
                    // The first data line: the column types come from the
                    // file's first rows, this one among them.
                    let rows = csv_sample(&t.file).map(|(_, rows)| rows).unwrap_or_default();
                    t.columns = Some(CsvColumns::infer(header.clone(), &rows));
                }
                let Some(columns) = &t.columns else { return };
                schema = Some(columns.schema().clone());
                match cells {
                    Ok(c) if c.len() == columns.len() => match columns.row(c) {
                        Ok(row) => (row, None),
                        Err(reason) => (Value::String(text.into_owned()), Some(format!("{}: {reason}", place()))),
                    },
                    Ok(c) => (
                        Value::String(text.into_owned()),
                        Some(format!("{}: {} fields where the header has {}", place(), c.len(), columns.len())),
                    ),
                    Err(e) => (Value::String(text.into_owned()), Some(format!("{}: not CSV: {e}", place()))),
                }
            }
        };
        let mut record = ConnectRecord::new(self.config.topic.clone(), value);
        if failure.is_none() {
            record.value_schema = schema;
        }
        out.push(SourceRecord {
            source_partition: Arc::clone(&t.partition),
            source_offset: Json::Null,
            record,
            failure,
        });
    }
}

#[async_trait]
impl SourceTask for FileSourceTask {
    async fn start(&mut self, offsets: &SourceOffsets) -> Result<()> {
        self.stored = offsets.clone();
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let rescan = self.last_scan.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if rescan {
            self.last_scan = Some(Instant::now());
            for path in self.paths() {
                if !self.files.contains_key(&path) {
                    self.open(&path)?;
                }
            }
        }
        let mut out = Vec::new();
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in paths {
            let budget = self.config.batch_size.saturating_sub(out.len());
            if budget == 0 {
                break;
            }
            self.read(&path, budget, &mut out)?;
        }
        if out.is_empty() {
            tokio::time::sleep(Duration::from_millis(self.config.poll_interval_ms)).await;
        }
        Ok(out)
    }
}

/// A file with inode `ino` in `path`'s directory (where rotation renamed it).
fn find_inode(path: &Path, ino: u64) -> Option<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(std::result::Result::ok)
        .find(|e| e.metadata().is_ok_and(|m| m.is_file() && m.ino() == ino))
        .map(|e| e.path())
}
