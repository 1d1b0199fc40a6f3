//! `FileSink`: writes each record's value to files — one line per record
//! (`lines`, Kafka's default), JSON lines or CSV — exactly once.
//!
//! Without rolling, records are appended to `file` (as Kafka's
//! FileStreamSink does). With `roll.size.bytes` or `roll.interval.ms`, they
//! go to a hidden in-progress file `.<stem>-<seq>.<ext>.inprogress` beside
//! `file`; when it is big or old enough it is synced and renamed to
//! `<stem>-<seq>.<ext>`, so a reader never sees a partial file.
//!
//! `parquet` always rolls (every `roll.interval.ms`, default 60 s, or once
//! the written row groups pass `roll.size.bytes`, and when the task
//! stops): a Parquet file is only readable once its footer is written.
//!
//! Exactly once: every flush syncs the data, then replaces (write, sync,
//! rename) a state file `.<file name>.sink-state.json` beside it holding
//! the current file's length and the next offset of every partition the
//! data covers. On restart the task truncates the file to that length and
//! resumes reading at those offsets, so a crash at any point neither loses
//! nor repeats a line. A Parquet in-progress file cannot be cut back, so
//! its state only moves at a roll: a restart deletes the in-progress file
//! and reads again from the offsets the last rolled file covered.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_schema::DataType;
use async_trait::async_trait;
use plexus_core::TopicPartition;
use serde::{Deserialize, Serialize};

use super::Format;
use crate::connector::{SinkConnector, SinkTask};
use crate::data::Value;
use crate::error::{Error, Result};
use crate::record::{Rejected, SinkRecord};

/// `FileSink`'s own keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// `file`: the file to write (with rolling: the name rolled files are
    /// derived from).
    pub file: String,
    /// `format`: `lines` (default), `json`, `csv`.
    #[serde(default)]
    pub format: Format,
    /// `roll.size.bytes`: roll once the current file has this many bytes.
    #[serde(rename = "roll.size.bytes", default, deserialize_with = "crate::config::from_str_opt")]
    pub roll_size_bytes: Option<u64>,
    /// `roll.interval.ms`: roll once the current file is this old.
    #[serde(rename = "roll.interval.ms", default, deserialize_with = "crate::config::from_str_opt")]
    pub roll_interval_ms: Option<u64>,
}

/// The configured connector.
#[derive(Debug)]
pub struct FileSinkConnector {
    name: String,
    config: FileSinkConfig,
}

impl FileSinkConnector {
    pub(crate) fn new(name: &str, config: FileSinkConfig) -> Result<Self> {
        if config.file.trim().is_empty() {
            return Err(Error::config(name, "file", "empty; name the file to write"));
        }
        if Path::new(&config.file).file_name().is_none() {
            return Err(Error::config(name, "file", format!("{:?} names a directory, not a file", config.file)));
        }
        Ok(Self { name: name.to_owned(), config })
    }
}

#[async_trait]
impl SinkConnector for FileSinkConnector {
    async fn validate(&self) -> Result<()> {
        let dir = parent(Path::new(&self.config.file));
        if !dir.is_dir() {
            return Err(Error::config(
                &self.name,
                "file",
                format!("{:?}: the directory {} does not exist; create it first", self.config.file, dir.display()),
            ));
        }
        Ok(())
    }

    /// One task: several writers of one file would interleave.
    fn task_count(&self, _tasks_max: usize) -> usize {
        1
    }

    fn task(&self, _index: usize, _count: usize) -> Result<Box<dyn SinkTask>> {
        let path = PathBuf::from(&self.config.file);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Box::new(FileSinkTask {
            connector: self.name.clone(),
            config: self.config.clone(),
            state_path: parent(&path).join(format!(".{name}.sink-state.json")),
            path,
            state: State::default(),
            file: None,
            pending: Vec::new(),
            header: None,
            opened_at: Instant::now(),
            parquet: None,
            parquet_offsets: BTreeMap::new(),
        }))
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// What the state file holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    /// The rolled file being written (rolling only).
    seq: u64,
    /// Its committed length.
    position: u64,
    /// Next offset per partition (`topic-partition`).
    offsets: BTreeMap<String, i64>,
    /// The CSV header of the current file.
    #[serde(default)]
    header: Option<Vec<String>>,
}

struct FileSinkTask {
    connector: String,
    config: FileSinkConfig,
    path: PathBuf,
    state_path: PathBuf,
    state: State,
    file: Option<File>,
    /// Formatted records not yet written.
    pending: Vec<u8>,
    header: Option<Vec<String>>,
    opened_at: Instant,
    /// The Parquet file being written, with its file handle (to sync it).
    parquet: Option<(super::parquet::ParquetFile, File)>,
    /// Offsets the rows given to the Parquet file so far reach.
    parquet_offsets: BTreeMap<String, i64>,
}

impl FileSinkTask {
    fn io(&self, path: &Path, source: std::io::Error) -> Error {
        Error::Io { connector: self.connector.clone(), path: path.to_owned(), source }
    }

    fn rolling(&self) -> bool {
        self.is_parquet() || self.config.roll_size_bytes.is_some() || self.config.roll_interval_ms.is_some()
    }

    fn is_parquet(&self) -> bool {
        self.config.format == Format::Parquet
    }

    /// Completes the Parquet file (footer, sync, rename) and stores the
    /// offsets its rows reach; with no rows since the last roll, only the
    /// offsets move.
    fn roll_parquet(&mut self) -> Result<()> {
        let (done, inprogress) = self.rolled_names(self.state.seq);
        if let Some((file, handle)) = self.parquet.take()
            && !file.is_empty()
        {
            file.finish().map_err(|e| Error::connector(&self.connector, format!("{}: {e}", inprogress.display())))?;
            handle.sync_data().map_err(|e| self.io(&inprogress, e))?;
            std::fs::rename(&inprogress, &done).map_err(|e| self.io(&done, e))?;
            tracing::info!(connector = %self.connector, file = %done.display(), "rolled");
            self.state.seq += 1;
        }
        self.state.offsets.extend(std::mem::take(&mut self.parquet_offsets));
        self.state.position = 0;
        self.opened_at = Instant::now();
        self.save_state()
    }

    /// `<stem>-<seq>.<ext>` and its hidden in-progress name.
    fn rolled_names(&self, seq: u64) -> (PathBuf, PathBuf) {
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = self
            .path
            .extension()
            .map_or_else(|| self.config.format.extension().to_owned(), |e| e.to_string_lossy().into_owned());
        let dir = parent(&self.path);
        let done = format!("{stem}-{seq:06}.{ext}");
        (dir.join(&done), dir.join(format!(".{done}.inprogress")))
    }

    /// The file being written now.
    fn current(&self) -> PathBuf {
        if self.rolling() { self.rolled_names(self.state.seq).1 } else { self.path.clone() }
    }

    /// Opens the current file, cut back to the committed length.
    fn open_current(&mut self) -> Result<()> {
        let path = self.current();
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| self.io(&path, e))?;
        let len = file.metadata().map_err(|e| self.io(&path, e))?.len();
        if len > self.state.position {
            tracing::info!(connector = %self.connector, file = %path.display(), from = len, to = self.state.position,
                "cutting off what the last run wrote after its last commit");
            file.set_len(self.state.position).map_err(|e| self.io(&path, e))?;
        } else if len < self.state.position {
            return Err(Error::connector(
                &self.connector,
                format!(
                    "{} is shorter ({len} bytes) than its committed length ({}); was it truncated by hand? \
                     Delete {} to start the file over",
                    path.display(),
                    self.state.position,
                    self.state_path.display()
                ),
            ));
        }
        self.header.clone_from(&self.state.header);
        self.file = Some(file);
        self.opened_at = Instant::now();
        Ok(())
    }

    fn save_state(&self) -> Result<()> {
        let tmp = self.state_path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&self.state).map_err(|e| Error::connector(&self.connector, e.to_string()))?;
        let mut f = File::create(&tmp).map_err(|e| self.io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| self.io(&tmp, e))?;
        f.sync_data().map_err(|e| self.io(&tmp, e))?;
        std::fs::rename(&tmp, &self.state_path).map_err(|e| self.io(&self.state_path, e))?;
        sync_dir(parent(&self.state_path)).map_err(|e| self.io(&self.state_path, e))
    }

    /// Appends one record's line(s) to `pending`.
    fn format(&mut self, value: &Value, schema: Option<&DataType>) -> std::result::Result<(), String> {
        match self.config.format {
            Format::Parquet => return Err("Parquet rows are written by put_parquet".into()),
            Format::Lines => {
                self.pending.extend_from_slice(value.to_text().as_bytes());
                self.pending.push(b'\n');
            }
            Format::Json => {
                value.write_json_as(schema, &mut self.pending);
                self.pending.push(b'\n');
            }
            Format::Csv => {
                let (names, cells): (Vec<String>, Vec<String>) = match value {
                    Value::Struct(fields) => fields
                        .iter()
                        .map(|(k, v)| {
                            let field = match schema {
                                Some(DataType::Struct(defs)) => defs.iter().find(|f| f.name() == k),
                                _ => None,
                            };
                            (k.clone(), v.to_text_as(field.map(|f| f.data_type())))
                        })
                        .unzip(),
                    other => (vec!["value".to_owned()], vec![other.to_text_as(schema)]),
                };
                let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
                match &self.header {
                    None => {
                        w.write_record(&names).map_err(|e| e.to_string())?;
                        self.header = Some(names);
                        w.write_record(&cells).map_err(|e| e.to_string())?;
                    }
                    Some(header) => {
                        // Cells in the header's order; fields it lacks are dropped.
                        let row: Vec<&str> = header
                            .iter()
                            .map(|h| names.iter().position(|n| n == h).map_or("", |i| cells[i].as_str()))
                            .collect();
                        w.write_record(&row).map_err(|e| e.to_string())?;
                    }
                }
                self.pending.extend_from_slice(&w.into_inner().map_err(|e| e.to_string())?);
            }
        }
        Ok(())
    }

    /// Rolls the current file if it is big or old enough.
    fn maybe_roll(&mut self) -> Result<()> {
        let big = self.config.roll_size_bytes.is_some_and(|max| self.state.position >= max);
        let old = self
            .config
            .roll_interval_ms
            .is_some_and(|ms| self.opened_at.elapsed() >= Duration::from_millis(ms) && self.state.position > 0);
        if !(big || old) {
            return Ok(());
        }
        let (done, inprogress) = self.rolled_names(self.state.seq);
        self.file = None;
        std::fs::rename(&inprogress, &done).map_err(|e| self.io(&done, e))?;
        sync_dir(parent(&done)).map_err(|e| self.io(&done, e))?;
        tracing::info!(connector = %self.connector, file = %done.display(), "rolled");
        self.state.seq += 1;
        self.state.position = 0;
        self.state.header = None;
        self.header = None;
        self.save_state()?;
        self.open_current()
    }
}

/// Makes a rename in `dir` durable.
#[allow(clippy::disallowed_methods)] // a connector's output directory, not a log file
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn tp_key(tp: &TopicPartition) -> String {
    format!("{}-{}", tp.topic, tp.partition)
}

#[async_trait]
impl SinkTask for FileSinkTask {
    async fn open(&mut self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        if self.file.is_none() {
            match std::fs::read(&self.state_path) {
                Ok(bytes) => {
                    self.state = serde_json::from_slice(&bytes).map_err(|e| {
                        Error::connector(
                            &self.connector,
                            format!("{} is damaged ({e}); delete it to start over", self.state_path.display()),
                        )
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&self.state_path.clone(), e)),
            }
            if self.rolling() {
                // A crash between a roll's rename and its state: the roll happened.
                let (done, inprogress) = self.rolled_names(self.state.seq);
                if done.exists() && !inprogress.exists() {
                    self.state.seq += 1;
                    self.state.position = 0;
                    self.state.header = None;
                }
            }
            if self.is_parquet() {
                // Its rows are read again from the stored offsets.
                let inprogress = self.rolled_names(self.state.seq).1;
                match std::fs::remove_file(&inprogress) {
                    Ok(()) => {
                        tracing::info!(connector = %self.connector, file = %inprogress.display(), "dropping an unfinished Parquet file")
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io(&inprogress, e)),
                }
                self.opened_at = Instant::now();
                self.file = Some(File::open(parent(&self.path)).map_err(|e| self.io(&self.path.clone(), e))?);
            } else {
                self.open_current()?;
            }
        }
        Ok(partitions.iter().filter_map(|tp| self.state.offsets.get(&tp_key(tp)).map(|o| (tp.clone(), *o))).collect())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<Vec<Rejected>> {
        if self.is_parquet() {
            self.put_parquet(records)?;
            return Ok(Vec::new());
        }
        let mut rejected = Vec::new();
        for r in &records {
            if r.record.value.is_null() {
                continue; // a tombstone has no line
            }
            if let Err(reason) = self.format(&r.record.value, r.record.value_schema.as_ref()) {
                rejected.push(Rejected::new(r, reason));
            }
        }
        if self.pending.len() >= 1 << 20 {
            let path = self.current();
            let pending = std::mem::take(&mut self.pending);
            if let Some(f) = &mut self.file {
                f.write_all(&pending).map_err(|e| Error::Io { connector: self.connector.clone(), path, source: e })?;
            }
        }
        Ok(rejected)
    }

    async fn flush(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<Vec<Rejected>> {
        if self.is_parquet() {
            self.parquet_offsets.extend(offsets.iter().map(|(tp, o)| (tp_key(tp), *o)));
            let interval = Duration::from_millis(self.config.roll_interval_ms.unwrap_or(60_000));
            let size = self.parquet.as_ref().map_or(0, |(_, f)| f.metadata().map_or(0, |m| m.len()));
            let big = self.config.roll_size_bytes.is_some_and(|max| size >= max);
            if big || self.opened_at.elapsed() >= interval || self.parquet.is_none() {
                self.roll_parquet()?;
            }
            return Ok(Vec::new());
        }
        let path = self.current();
        let pending = std::mem::take(&mut self.pending);
        let Some(file) = &mut self.file else {
            return Err(Error::connector(&self.connector, "flush before open"));
        };
        let io = |e| Error::Io { connector: self.connector.clone(), path: path.clone(), source: e };
        file.write_all(&pending).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.state.position = file.metadata().map_err(io)?.len();
        for (tp, o) in offsets {
            self.state.offsets.insert(tp_key(tp), *o);
        }
        self.state.header.clone_from(&self.header);
        self.save_state()?;
        if self.rolling() {
            self.maybe_roll()?;
        }
        Ok(Vec::new())
    }

    /// A Parquet sink's last roll: what it wrote becomes visible.
    async fn stop(&mut self) -> Result<()> {
        if self.is_parquet() && self.file.is_some() {
            self.roll_parquet()?;
        }
        Ok(())
    }
}

impl FileSinkTask {
    fn put_parquet(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        for r in records {
            if r.record.value.is_null() {
                continue;
            }
            if self.parquet.is_none() {
                let inprogress = self.rolled_names(self.state.seq).1;
                let file = File::create(&inprogress).map_err(|e| self.io(&inprogress, e))?;
                let handle = file.try_clone().map_err(|e| self.io(&inprogress, e))?;
                let schema = super::parquet::schema_of(&r.record.value);
                let writer = super::parquet::ParquetFile::create(file, schema)
                    .map_err(|e| Error::connector(&self.connector, format!("{}: {e}", inprogress.display())))?;
                self.parquet = Some((writer, handle));
            }
            if let Some((writer, _)) = &mut self.parquet
                && let Err(reason) = writer.push(r.record.value)
            {
                return Err(Error::Record {
                    stage: "task".into(),
                    topic: r.record.topic,
                    partition: r.partition,
                    offset: r.offset,
                    reason,
                });
            }
        }
        Ok(())
    }
}
