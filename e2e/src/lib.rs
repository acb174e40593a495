//! kcl-e2e: a real fleet as separate OS processes, checked from outside.
//!
//! The two binaries, `fleet-worker-tokio` and `fleet-worker-smol`, are the same worker on the two
//! runtimes: they consume a stream with a [`RecordLog`] processor, which appends every event of
//! every shard it owns to a log file, and stop gracefully on SIGTERM. The test
//! (`tests/fleet.rs`) starts a fleet of them, reshards and kills one with SIGKILL mid-run, then
//! reads the logs ([`read_log`]) and the lease table to check what docs/design.md promises.
//!
//! A worker is started as `fleet-worker-* WORKER_ID STREAM APPLICATION CONFIG LOG`, with the AWS
//! endpoints, region and credentials in the environment (aws-config's chain). The configuration
//! is a settings file (TOML or JSON, docs/configuration.md) then the `KCL_*` variables, read as
//! an application would: [`DriverConfig::load`].
//!
//! The log is written before each checkpoint and never buffered past it: a record whose
//! checkpoint reached the table is always in the log, even after a SIGKILL.

pub mod stream;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use kcl_aws::{
    Batch, Checkpointer, ConsumerBuilder, DriverConfig, Initialize, KinesisRecord, LeaseKey,
    RecordProcessor,
};

/// What a worker process is told on its command line.
#[derive(Clone, Debug)]
pub struct WorkerArgs {
    /// Its identity in the lease table.
    pub worker_id: String,
    /// The stream.
    pub stream: String,
    /// The application (and lease table) name.
    pub application: String,
    /// The driver's configuration.
    pub config: DriverConfig,
    /// Where it appends its events.
    pub log: PathBuf,
}

impl WorkerArgs {
    /// Parses `WORKER_ID STREAM APPLICATION CONFIG LOG` (the program name skipped).
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        const USAGE: &str = "usage: fleet-worker-* WORKER_ID STREAM APPLICATION CONFIG LOG";
        let mut next = |what: &str| {
            args.next()
                .ok_or_else(|| format!("{USAGE} ({what} missing)"))
        };
        let worker_id = next("WORKER_ID")?;
        let stream = next("STREAM")?;
        let application = next("APPLICATION")?;
        let config_path = PathBuf::from(next("CONFIG")?);
        let log = PathBuf::from(next("LOG")?);
        let config = DriverConfig::load(Some(&config_path))
            .map_err(|e| format!("cannot start: {}", kcl_aws::error_chain(&e)))?;
        Ok(Self {
            worker_id,
            stream,
            application,
            config,
            log,
        })
    }

    /// The consumer these arguments describe.
    pub fn builder(&self) -> ConsumerBuilder {
        ConsumerBuilder::new(&self.stream, &self.application)
            .worker_id(&self.worker_id)
            .config(self.config.clone())
    }

    /// A factory of [`RecordLog`] processors appending to the log file (created if absent).
    pub fn factory(&self) -> Result<impl Fn(&LeaseKey) -> RecordLog + Send + Sync, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let file = Arc::new(Mutex::new(file));
        Ok(move |shard: &LeaseKey| RecordLog {
            file: Arc::clone(&file),
            shard: shard.to_string(),
            token: 0,
        })
    }
}

/// A worker process's exit: its stats on success, what stopped it otherwise.
pub fn exit(outcome: Result<kcl_aws::Stats, String>) -> std::process::ExitCode {
    match outcome {
        Ok(stats) => {
            eprintln!("stopped: {stats:?}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sends the worker's tracing output to stderr (the test keeps it per worker for diagnosis).
pub fn trace_to_stderr() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
}

/// A processor that appends one line per event to a shared file and checkpoints after every
/// batch. Lines: `init MILLIS SHARD TOKEN`, `record MILLIS SHARD TOKEN ID SEQUENCE`,
/// `ended MILLIS SHARD TOKEN`, `lost MILLIS SHARD TOKEN`, where `ID` is the record's data (the
/// test puts decimal record numbers) and `MILLIS` the wall clock.
#[derive(Debug)]
pub struct RecordLog {
    file: Arc<Mutex<File>>,
    shard: String,
    token: u64,
}

impl RecordLog {
    fn append(&self, lines: &str) {
        // One write per call: the kernel keeps it whole in an append-only file, and a SIGKILL
        // after it returns cannot lose it.
        let written = match self.file.lock() {
            Ok(mut f) => f.write_all(lines.as_bytes()),
            Err(poisoned) => poisoned.into_inner().write_all(lines.as_bytes()),
        };
        if let Err(e) = written {
            // Without its log the run proves nothing: stop before checkpointing anything more.
            eprintln!("cannot append to the record log: {e}");
            std::process::abort();
        }
    }

    fn event(&self, kind: &str) -> String {
        format!("{kind} {} {} {}\n", now_millis(), self.shard, self.token)
    }
}

/// The wall clock in milliseconds since the Unix epoch (the processes share one machine).
pub fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl RecordProcessor<KinesisRecord> for RecordLog {
    async fn initialize(&mut self, init: &Initialize) {
        self.token = init.token.0;
        self.append(&self.event("init"));
    }

    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        let at = now_millis();
        let mut lines = String::new();
        for record in &batch.records {
            lines.push_str(&format!(
                "record {at} {} {} {} {}\n",
                self.shard,
                self.token,
                String::from_utf8_lossy(&record.data),
                record.position.sequence
            ));
        }
        self.append(&lines);
        if let Err(e) = checkpointer.checkpoint().await {
            tracing::warn!(shard = %self.shard, error = ?e, "checkpoint refused");
        }
    }

    async fn lease_lost(&mut self) {
        self.append(&self.event("lost"));
    }

    async fn shard_ended(&mut self, _checkpointer: &Checkpointer) {
        self.append(&self.event("ended"));
    }
}

/// One line of a worker's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Wall clock, milliseconds since the Unix epoch.
    pub at: u128,
    /// The shard.
    pub shard: String,
    /// The ownership's fencing token.
    pub token: u64,
}

/// What a log line says happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Processing of the shard started.
    Init,
    /// A record was handed to the processor.
    Record {
        /// The record's data.
        id: String,
        /// Its sequence number.
        sequence: String,
    },
    /// The shard's end was reached, everything before it processed.
    Ended,
    /// The lease was lost.
    Lost,
}

/// Reads a worker's log. A malformed line is an error naming its number: the logs are the
/// evidence, so nothing in them is skipped.
pub fn read_log(path: &Path) -> Result<Vec<Event>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            parse_line(line)
                .ok_or_else(|| format!("{}:{}: malformed: {line}", path.display(), n + 1))
        })
        .collect()
}

fn parse_line(line: &str) -> Option<Event> {
    let mut words = line.split(' ');
    let kind = words.next()?;
    let at = words.next()?.parse().ok()?;
    let shard = words.next()?.to_string();
    let token = words.next()?.parse().ok()?;
    let kind = match kind {
        "init" => EventKind::Init,
        "ended" => EventKind::Ended,
        "lost" => EventKind::Lost,
        "record" => EventKind::Record {
            id: words.next()?.to_string(),
            sequence: words.next()?.to_string(),
        },
        _ => return None,
    };
    if words.next().is_some() {
        return None;
    }
    Some(Event {
        kind,
        at,
        shard,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_kind_reads_back() {
        let lines = "init 5 shardId-1 3\nrecord 6 shardId-1 3 42 4955\nended 7 shardId-1 3\nlost 8 shardId-1 3";
        let events: Vec<_> = lines.lines().map(|l| parse_line(l).expect(l)).collect();
        assert_eq!(events[0].kind, EventKind::Init);
        assert_eq!(
            events[1].kind,
            EventKind::Record {
                id: "42".into(),
                sequence: "4955".into()
            }
        );
        assert_eq!((events[1].at, events[1].token), (6, 3));
        assert_eq!(events[2].kind, EventKind::Ended);
        assert_eq!(events[3].kind, EventKind::Lost);
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            "",
            "init",
            "init x shardId-1 3",
            "record 6 shardId-1 3 42",
            "init 5 shardId-1 3 extra",
            "begin 5 shardId-1 3",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
    }
}
