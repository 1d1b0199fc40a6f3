//! The file connectors, as Kafka's FileStream connectors with more
//! formats: [`source`] tails a file or a glob, [`sink`] writes records to
//! files.
//!
//! Both take `format`: `lines` (the default, Kafka's: one record per line,
//! the value is the line), `json` (JSON lines: each line one value) or
//! `csv` (a header line naming the fields, then one struct per line, each
//! column of one type inferred from the file's first rows: [`csv`]); the
//! sink also writes `parquet`.

pub(crate) mod csv;
mod parquet;
pub mod sink;
pub mod source;

use serde::Deserialize;

use crate::config::ConnectorConfig;
use crate::connector::{Connector, ConnectorClass};
use crate::error::{Error, Result};

/// How records are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One record per line; the value is the line's text.
    #[default]
    Lines,
    /// JSON lines.
    Json,
    /// CSV with a header line.
    Csv,
    /// Parquet (sinks only): rolled files, each complete when it appears.
    Parquet,
}

impl Format {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Lines => "txt",
            Self::Json => "jsonl",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// `connector.class=FileSource` (also Kafka's `FileStreamSource`).
#[derive(Debug, Deserialize)]
pub struct FileSource {}

#[typetag::deserialize(name = "FileSource")]
impl ConnectorClass for FileSource {
    fn configure(&self, config: &ConnectorConfig) -> Result<Connector> {
        let c: source::FileSourceConfig = crate::config::class_config(config)?;
        if c.format == Format::Parquet {
            return Err(Error::config(
                &config.name,
                "format",
                "parquet is written by FileSink; FileSource reads lines, json or csv",
            ));
        }
        if c.topic.is_empty() {
            return Err(Error::config(&config.name, "topic", "empty; name the topic to write the lines to"));
        }
        Ok(Connector::Source(Box::new(source::FileSourceConnector::new(&config.name, c))))
    }
}

/// `connector.class=FileSink` (also Kafka's `FileStreamSink`).
#[derive(Debug, Deserialize)]
pub struct FileSink {}

#[typetag::deserialize(name = "FileSink")]
impl ConnectorClass for FileSink {
    fn configure(&self, config: &ConnectorConfig) -> Result<Connector> {
        let c: sink::FileSinkConfig = crate::config::class_config(config)?;
        Ok(Connector::Sink(Box::new(sink::FileSinkConnector::new(&config.name, c)?)))
    }
}
