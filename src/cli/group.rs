//! `plexus group ...`

use clap::{ArgGroup, Subcommand};
use plexus::Log;
use plexus::client::{Admin, EmbeddedAdmin, OffsetSpec};
use serde_json::json;

use super::consume::parse_time;
use super::output;
use super::topic::Json;

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups and their state.
    List {
        #[command(flatten)]
        json: Json,
    },
    /// Show a group's members, their partitions, committed offsets and lag.
    Describe {
        /// The group.
        group: String,
        #[command(flatten)]
        json: Json,
    },
    /// Move a group's committed offsets for a topic (the group must have no running consumers).
    ///
    /// Example: plexus group reset billing --topic orders --to-earliest
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_time", "to_offset"])))]
    Reset {
        /// The group.
        group: String,
        /// The topic whose offsets move.
        #[arg(long)]
        topic: String,
        /// To the start of each partition.
        #[arg(long)]
        to_earliest: bool,
        /// To the end of each partition (skip everything there now).
        #[arg(long)]
        to_latest: bool,
        /// To the first record at or after TIME (ms since the epoch or RFC 3339).
        #[arg(long, value_name = "TIME")]
        to_time: Option<String>,
        /// To this offset on every partition (clamped to each partition's range).
        #[arg(long, value_name = "OFFSET")]
        to_offset: Option<i64>,
        #[command(flatten)]
        json: Json,
    },
}

pub(crate) async fn run(log: &Log, command: GroupCommand) -> anyhow::Result<()> {
    let admin = EmbeddedAdmin::new(log.clone());
    match command {
        GroupCommand::List { json } => {
            let groups = admin.list_groups().await?;
            if json.json {
                for (g, state) in &groups {
                    output::json(&json!({"group": g, "state": state}))?;
                }
            } else if groups.is_empty() {
                println!("No consumer groups yet.");
            } else {
                let rows: Vec<Vec<String>> = groups.into_iter().map(|(g, s)| vec![g, s]).collect();
                output::table(&["GROUP", "STATE"], &rows);
            }
        }
        GroupCommand::Describe { group, json } => {
            let lag = admin.group_lag(&group).await?;
            if json.json {
                let partitions: Vec<_> = lag
                    .partitions
                    .iter()
                    .map(|p| {
                        json!({"topic": p.tp.topic, "partition": p.tp.partition, "committed_offset": p.committed,
                                    "end_offset": p.end_offset, "lag": p.lag, "member": p.member})
                    })
                    .collect();
                let members: Vec<_> = lag
                    .group
                    .members
                    .iter()
                    .map(|m| {
                        json!({"member_id": m.member_id, "client_id": m.client_id,
                                    "assignment": m.assignment.iter().map(ToString::to_string).collect::<Vec<_>>()})
                    })
                    .collect();
                output::json(&json!({"group": group, "state": lag.group.state, "generation": lag.group.generation,
                                     "protocol": lag.group.protocol, "members": members, "partitions": partitions}))?;
            } else {
                println!(
                    "Group: {group}  State: {}  Generation: {}  Members: {}",
                    lag.group.state,
                    lag.group.generation,
                    lag.group.members.len()
                );
                let rows: Vec<Vec<String>> = lag
                    .partitions
                    .iter()
                    .map(|p| {
                        vec![
                            p.tp.topic.clone(),
                            p.tp.partition.to_string(),
                            p.committed.map_or("-".into(), |c| c.to_string()),
                            p.end_offset.to_string(),
                            p.lag.to_string(),
                            p.member.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                output::table(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"], &rows);
            }
        }
        GroupCommand::Reset { group, topic, to_earliest, to_latest, to_time, to_offset, json } => {
            let spec = match (to_earliest, to_latest, to_time, to_offset) {
                (true, ..) => OffsetSpec::Earliest,
                (_, true, ..) => OffsetSpec::Latest,
                (_, _, Some(t), _) => OffsetSpec::Timestamp(parse_time(&t)?),
                (_, _, _, Some(o)) => OffsetSpec::Offset(o),
                _ => anyhow::bail!("say where to: --to-earliest, --to-latest, --to-time T or --to-offset O"),
            };
            let offsets = admin.reset_offsets(&group, &topic, spec).await?;
            if json.json {
                for (tp, o) in &offsets {
                    output::json(&json!({"group": group, "topic": tp.topic, "partition": tp.partition, "offset": o}))?;
                }
            } else {
                let rows: Vec<Vec<String>> = offsets
                    .iter()
                    .map(|(tp, o)| vec![tp.topic.clone(), tp.partition.to_string(), o.to_string()])
                    .collect();
                println!("Reset group {group} on {topic}:");
                output::table(&["TOPIC", "PARTITION", "NEW-OFFSET"], &rows);
            }
        }
    }
    Ok(())
}
