//! kcl-admin: inspect and repair a kcl-rs (or Java KCL) lease table.
//!
//! ```text
//! kcl-admin --table TABLE list
//! kcl-admin --table TABLE release SHARD
//! kcl-admin --table TABLE set-checkpoint SHARD (TRIM_HORIZON | SEQUENCE[:SUB])
//! kcl-admin --table TABLE prune-workers [--watch 10s]
//! kcl-admin deregister-consumer STREAM CONSUMER
//! ```
//!
//! Region, credentials and endpoints come from aws-config's chain, as for a consumer. Every
//! write is conditional on what was just read (see `kcl_aws::admin`). Exit codes: 0 done, 1 the
//! operation failed, 2 a usage error. Arguments are parsed by hand: five subcommands do not
//! warrant a parser dependency.

use std::process::ExitCode;
use std::time::Duration;

use kcl_aws::admin::{self, AdminError, TableAdmin, TableSnapshot};
use kcl_aws::{DynamoLeaseTable, StreamId};
use kcl_core::Lease;
use kcl_tokio::TokioRuntime;

const USAGE: &str = "usage:
  kcl-admin --table TABLE list
  kcl-admin --table TABLE release SHARD
  kcl-admin --table TABLE set-checkpoint SHARD (TRIM_HORIZON | SEQUENCE[:SUB])
  kcl-admin --table TABLE prune-workers [--watch 10s]
  kcl-admin deregister-consumer STREAM CONSUMER";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    List {
        table: String,
    },
    Release {
        table: String,
        shard: String,
    },
    SetCheckpoint {
        table: String,
        shard: String,
        at: String,
    },
    PruneWorkers {
        table: String,
        watch: Duration,
    },
    DeregisterConsumer {
        stream: String,
        consumer: String,
    },
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut table = None;
    let mut watch = Duration::from_secs(10);
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--table" => table = Some(it.next().ok_or("--table needs a value")?.clone()),
            "--watch" => {
                let value = it.next().ok_or("--watch needs a duration, like 10s")?;
                watch = humantime::parse_duration(value).map_err(|_| {
                    format!("--watch {value:?}: a duration with its unit, like 10s")
                })?;
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            word => words.push(word.to_string()),
        }
    }
    let table = || {
        table
            .clone()
            .ok_or_else(|| "--table TABLE is required".to_string())
    };
    match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["list"] => Ok(Command::List { table: table()? }),
        ["release", shard] => Ok(Command::Release {
            table: table()?,
            shard: shard.into(),
        }),
        ["set-checkpoint", shard, at] => Ok(Command::SetCheckpoint {
            table: table()?,
            shard: shard.into(),
            at: at.into(),
        }),
        ["prune-workers"] => Ok(Command::PruneWorkers {
            table: table()?,
            watch,
        }),
        ["deregister-consumer", stream, consumer] => Ok(Command::DeregisterConsumer {
            stream: stream.into(),
            consumer: consumer.into(),
        }),
        [] => Err("no command".into()),
        _ => Err(format!("unknown command: {}", words.join(" "))),
    }
}

fn describe(lease: &Lease) -> String {
    let names = |keys: &[kcl_core::LeaseKey]| {
        keys.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut line = format!(
        "{}  owner={}  counter={}  checkpoint={}",
        lease.key,
        lease
            .owner
            .as_ref()
            .map_or("-".to_string(), ToString::to_string),
        lease.counter,
        position(&lease.checkpoint),
    );
    if let Some(from) = &lease.checkpoint_owner {
        line.push_str(&format!("  handing-over-from={from}"));
    }
    // Worker liveness: the holder's process; the lease lives while that process's row does.
    if let Some(process) = &lease.owner_incarnation {
        line.push_str(&format!("  process={process}"));
    }
    if let Some(pending) = &lease.pending_checkpoint {
        line.push_str(&format!("  pending={}", position(pending)));
    }
    if !lease.parent_shard_ids.is_empty() {
        line.push_str(&format!("  parents={}", names(&lease.parent_shard_ids)));
    }
    if !lease.child_shard_ids.is_empty() {
        line.push_str(&format!("  children={}", names(&lease.child_shard_ids)));
    }
    line
}

fn position(p: &kcl_core::Position) -> String {
    let (checkpoint, sub) = p.to_attribute();
    if sub == 0 {
        checkpoint.to_string()
    } else {
        format!("{checkpoint}:{sub}")
    }
}

fn print(snapshot: &TableSnapshot) {
    println!("leases ({}):", snapshot.leases.len());
    for lease in snapshot.leases.values() {
        println!("  {}", describe(lease));
    }
    if let Some(leader) = &snapshot.leader {
        println!(
            "leader: {} (counter {})",
            leader
                .owner
                .as_ref()
                .map_or("-".to_string(), ToString::to_string),
            leader.counter
        );
    }
    if !snapshot.workers.is_empty() {
        println!("workers ({}):", snapshot.workers.len());
        for row in snapshot.workers.values() {
            // A row without a process was fenced by the leader, or its process gave it up: its
            // leases are free, and it takes none until a process registers again.
            let process = row
                .incarnation
                .as_deref()
                .map_or_else(|| "none (fenced or given up)".to_string(), str::to_string);
            println!(
                "  {}  counter={}  max-leases={}  process={}{}{}{}",
                row.worker,
                row.counter,
                row.max_leases,
                process,
                if row.assigned.is_empty() {
                    String::new()
                } else {
                    format!("  notes={}", row.assigned.len())
                },
                if row.leaving { "  leaving" } else { "" },
                // Its Kinesis calls go unanswered: the leader hands its leases to workers that
                // read.
                if row.reads_stalled {
                    "  reads-stalled"
                } else {
                    ""
                }
            );
        }
    }
    for (key, kind) in &snapshot.foreign {
        println!("other row: {key} ({kind})");
    }
    for (key, error) in &snapshot.malformed {
        println!("malformed row: {key}: {error}");
    }
}

async fn run(command: Command) -> Result<(), AdminError> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let admin = |table: &str| {
        TableAdmin::new(DynamoLeaseTable::new(
            &aws_sdk_dynamodb::Client::new(&sdk),
            table,
        ))
    };
    match command {
        Command::List { table } => print(&admin(&table).snapshot().await?),
        Command::Release { table, shard } => {
            let lease = admin(&table).release(&shard).await?;
            println!("released: {}", describe(&lease));
        }
        Command::SetCheckpoint { table, shard, at } => {
            let at = admin::parse_checkpoint(&at)?;
            let lease = admin(&table).set_checkpoint(&shard, at).await?;
            println!("checkpoint set: {}", describe(&lease));
        }
        Command::PruneWorkers { table, watch } => {
            let pruned = admin(&table).prune_workers(&TokioRuntime, watch).await?;
            println!("pruned {} worker rows", pruned.len());
            for worker in pruned {
                println!("  {worker}");
            }
        }
        Command::DeregisterConsumer { stream, consumer } => {
            let client = aws_sdk_kinesis::Client::new(&sdk);
            admin::deregister_consumer(&client, &StreamId::from(stream.as_str()), &consumer)
                .await?;
            println!("deregistered consumer {consumer} of {stream}");
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(command) => command,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("kcl-admin: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcl-admin: {}", kcl_aws::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_command_line_names_a_command_and_its_table() {
        assert_eq!(
            parse(&args("--table t release shardId-1")),
            Ok(Command::Release {
                table: "t".into(),
                shard: "shardId-1".into()
            })
        );
        assert_eq!(
            parse(&args("prune-workers --table t --watch 30s")),
            Ok(Command::PruneWorkers {
                table: "t".into(),
                watch: Duration::from_secs(30)
            })
        );
        assert_eq!(
            parse(&args("deregister-consumer s c")),
            Ok(Command::DeregisterConsumer {
                stream: "s".into(),
                consumer: "c".into()
            })
        );
        assert_eq!(
            parse(&args("list")),
            Err("--table TABLE is required".into())
        );
        assert_eq!(
            parse(&args("--table t drop")),
            Err("unknown command: drop".into())
        );
        assert_eq!(
            parse(&args("--table t --force list")),
            Err("unknown option --force".into())
        );
        assert!(parse(&args("--table t prune-workers --watch 10")).is_err());
    }
}
