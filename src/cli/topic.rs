//! `plexus topic ...`

use clap::{Args, Subcommand};
use plexus::client::{Admin, EmbeddedAdmin};
use plexus::core::config::parse_assignment;
use plexus::{Log, TopicConfig};
use serde_json::json;

use super::output;

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    ///
    /// Example: plexus topic create orders --partitions 6 --config retention.ms=86400000
    Create {
        /// Topic name: letters, digits, '.', '_' and '-', at most 249 characters.
        name: String,
        /// Number of partitions (the unit of order and parallelism).
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// A topic config key=value, Kafka's keys (repeatable): cleanup.policy,
        /// retention.ms, retention.bytes, segment.bytes, flush.messages, ...
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        json: Json,
    },
    /// List topics.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        json: Json,
    },
    /// Show a topic's partitions (offsets, size) and configuration.
    Describe {
        /// The topic.
        name: String,
        #[command(flatten)]
        json: Json,
    },
    /// Change a topic's configuration or grow its partition count.
    Alter {
        /// The topic.
        name: String,
        /// Set a config key=value (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Reset a config key to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
        /// The new partition count (partitions can be added, never removed).
        #[arg(long)]
        partitions: Option<i32>,
        #[command(flatten)]
        json: Json,
    },
    /// Delete a topic and all its records.
    Delete {
        /// The topic.
        name: String,
        #[command(flatten)]
        json: Json,
    },
}

/// `--json`: one JSON object per line instead of a table.
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct Json {
    /// Print JSON (one object per line) for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(log: &Log, command: TopicCommand) -> anyhow::Result<()> {
    let admin = EmbeddedAdmin::new(log.clone());
    match command {
        TopicCommand::Create { name, partitions, configs, json } => {
            let pairs = configs.iter().map(|c| parse_assignment(c)).collect::<Result<Vec<_>, _>>()?;
            let config = TopicConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
            admin.create_topic(&name, partitions, config).await?;
            if json.json {
                output::json(&json!({"topic": name, "partitions": partitions, "created": true}))?;
            } else {
                println!("Created topic {name} with {partitions} partition(s).");
            }
        }
        TopicCommand::List { internal, json } => {
            let topics: Vec<String> = admin
                .list_topics()
                .await?
                .into_iter()
                .filter(|t| internal || !plexus::core::config::is_internal_topic(t))
                .collect();
            if json.json {
                for t in &topics {
                    let partitions = log.partition_count(t)?;
                    output::json(&json!({"topic": t, "partitions": partitions}))?;
                }
            } else if topics.is_empty() {
                println!("No topics yet. Create one with `plexus topic create NAME`.");
            } else {
                let rows = topics
                    .iter()
                    .map(|t| Ok(vec![t.clone(), log.partition_count(t)?.to_string()]))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                output::table(&["TOPIC", "PARTITIONS"], &rows);
            }
        }
        TopicCommand::Describe { name, json } => {
            let d = admin.describe_topic(&name).await?;
            let configs: serde_json::Map<String, serde_json::Value> =
                d.config.entries().into_iter().map(|e| (e.name, json!(e.value))).collect();
            if json.json {
                let partitions: Vec<_> = d
                    .partitions
                    .iter()
                    .map(|p| {
                        json!({"partition": p.partition, "log_start_offset": p.log_start_offset,
                               "high_watermark": p.high_watermark, "log_end_offset": p.log_end_offset,
                               "size_bytes": p.size_bytes, "segments": p.segments, "corruption": p.corruption})
                    })
                    .collect();
                output::json(
                    &json!({"topic": d.name, "internal": d.internal, "partitions": partitions, "config": configs}),
                )?;
            } else {
                println!(
                    "Topic: {}  Partitions: {}{}",
                    d.name,
                    d.partitions.len(),
                    if d.internal { "  (internal)" } else { "" }
                );
                let rows: Vec<Vec<String>> = d
                    .partitions
                    .iter()
                    .map(|p| {
                        vec![
                            p.partition.to_string(),
                            p.log_start_offset.to_string(),
                            p.high_watermark.to_string(),
                            p.log_end_offset.to_string(),
                            p.size_bytes.to_string(),
                            p.segments.to_string(),
                            p.corruption.clone().unwrap_or_else(|| "ok".into()),
                        ]
                    })
                    .collect();
                output::table(&["PARTITION", "START", "HIGH-WATERMARK", "END", "BYTES", "SEGMENTS", "STATUS"], &rows);
                let overrides = d.config.overrides();
                if overrides.is_empty() {
                    println!("Config: all defaults (see `--json` for every key)");
                } else {
                    println!("Config overrides:");
                    for (k, v) in overrides {
                        println!("  {k}={v}");
                    }
                }
            }
        }
        TopicCommand::Alter { name, configs, delete_configs, partitions, json } => {
            if configs.is_empty() && delete_configs.is_empty() && partitions.is_none() {
                anyhow::bail!("nothing to change: give --config KEY=VALUE, --delete-config KEY or --partitions N");
            }
            let set = configs.iter().map(|c| parse_assignment(c)).collect::<Result<Vec<_>, _>>()?;
            if !set.is_empty() || !delete_configs.is_empty() {
                admin.alter_topic_config(&name, &set, &delete_configs).await?;
            }
            if let Some(n) = partitions {
                admin.create_partitions(&name, n).await?;
            }
            let count = log.partition_count(&name)?;
            if json.json {
                output::json(
                    &json!({"topic": name, "partitions": count, "config": log.topic_config(&name)?.overrides()}),
                )?;
            } else {
                println!("Altered topic {name}: {count} partition(s).");
            }
        }
        TopicCommand::Delete { name, json } => {
            admin.delete_topic(&name).await?;
            if json.json {
                output::json(&json!({"topic": name, "deleted": true}))?;
            } else {
                println!("Deleted topic {name}.");
            }
        }
    }
    Ok(())
}
