//! A real fleet as separate OS processes on the local emulators: three tokio workers and two smol
//! workers consume one 8-shard stream (kinesalite) with their leases in one table (dynalite).
//! 20,000 records are put; one shard is split and two are merged during the run; one worker is
//! killed with SIGKILL mid-run; the survivors are stopped with SIGTERM at the end. Then, from the
//! workers' logs and the lease table: every record processed, from the shard it was put to;
//! duplicates only after an ownership change; records of an ownership in order; fencing tokens
//! distinct per ownership; children started only after their parents ended; leases balanced over
//! the survivors; the final checkpoints in the table; the lease rows in the Java KCL 2.x schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::types::Shard;
use kcl_aws::{DriverConfig, InitialPosition};
use kcl_core::SequenceNumber;
use kcl_e2e::stream as streams;
use kcl_e2e::{read_log, Event, EventKind};

const RECORDS: usize = 20_000;
const SHARDS: i32 = 8;
/// The rows of the coordination protocol share the table; they are not leases.
const COORDINATION_PREFIX: &str = "kcl-rs:";

/// Where a record went when it was put.
#[derive(Clone, Debug)]
struct Put {
    shard: String,
    sequence: SequenceNumber,
}

struct Worker {
    id: String,
    child: Child,
    log: PathBuf,
    stderr: PathBuf,
}

struct Fleet {
    dir: PathBuf,
    workers: Vec<Worker>,
}

impl Fleet {
    fn start(dir: &Path, stream: &str, application: &str) -> Self {
        let config = dir.join("kcl.toml");
        std::fs::write(&config, fleet_config().to_toml()).unwrap();
        let mut workers = Vec::new();
        for (id, program) in [
            ("tokio-1", env!("CARGO_BIN_EXE_fleet-worker-tokio")),
            ("smol-1", env!("CARGO_BIN_EXE_fleet-worker-smol")),
            ("tokio-2", env!("CARGO_BIN_EXE_fleet-worker-tokio")),
            ("smol-2", env!("CARGO_BIN_EXE_fleet-worker-smol")),
            ("tokio-3", env!("CARGO_BIN_EXE_fleet-worker-tokio")),
        ] {
            let log = dir.join(format!("{id}.log"));
            let stderr = dir.join(format!("{id}.stderr"));
            let child = Command::new(program)
                .args([id, stream, application])
                .arg(&config)
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
            workers.push(Worker {
                id: id.to_string(),
                child,
                log,
                stderr,
            });
        }
        Self {
            dir: dir.to_path_buf(),
            workers,
        }
    }

    /// Every worker's log, by worker id.
    fn logs(&self) -> BTreeMap<String, Vec<Event>> {
        self.workers
            .iter()
            .map(|w| {
                (
                    w.id.clone(),
                    read_log(&w.log).unwrap_or_else(|e| panic!("{e}")),
                )
            })
            .collect()
    }

    fn processed(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for events in self.logs().values() {
            for event in events {
                if let EventKind::Record { id, .. } = &event.kind {
                    ids.insert(id.clone());
                }
            }
        }
        ids
    }

    /// Fails the test with what the workers said, so a CI failure can be understood.
    fn fail(&self, why: &str) -> ! {
        for w in &self.workers {
            let text = std::fs::read_to_string(&w.stderr).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!(
                "--- {} stderr (last {} lines, newest last):",
                w.id,
                tail.len()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        panic!("{why} (logs kept in {})", self.dir.display());
    }

    /// Fails if a worker other than `killed` has exited.
    fn assert_running(&mut self, killed: Option<&str>) {
        let mut exited = None;
        for w in self
            .workers
            .iter_mut()
            .filter(|w| Some(w.id.as_str()) != killed)
        {
            if let Ok(Some(status)) = w.child.try_wait() {
                exited = Some(format!("worker {} exited early: {status}", w.id));
            }
        }
        if let Some(why) = exited {
            self.fail(&why);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

/// Short lease timing, so a kill is noticed in seconds; the rest is the default. The workers
/// read it as a settings file (`DriverConfig::to_toml`), as an application would.
fn fleet_config() -> DriverConfig {
    let mut config = DriverConfig::default();
    let w = &mut config.worker;
    w.failover_time = Duration::from_secs(6);
    w.safety_margin = Duration::from_millis(1500);
    w.scan_interval = Duration::from_secs(1);
    w.heartbeat_interval = Duration::from_secs(1);
    w.leader_check_interval = Duration::from_secs(2);
    w.shard_sync_interval = Duration::from_secs(2);
    w.parent_poll_interval = Duration::from_millis(500);
    w.handoff_poll_interval = Duration::from_millis(200);
    w.handoff_timeout = Duration::from_secs(10);
    w.idle_time_between_reads = Duration::from_millis(250);
    // Records are put before the workers start: every one is owed.
    w.initial_position = InitialPosition::TrimHorizon;
    w.max_records = 1000;
    config
}

async fn list_shards(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Shard> {
    let got = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    got.shards.unwrap_or_default()
}

/// Puts records `ids` and remembers where each one went.
async fn put(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    ids: std::ops::Range<usize>,
    puts: &mut BTreeMap<String, Put>,
) {
    for placed in streams::put_numbered(kinesis, stream, ids).await.unwrap() {
        let put = Put {
            shard: placed.shard,
            sequence: SequenceNumber::parse(&placed.sequence).unwrap(),
        };
        puts.insert(placed.id.to_string(), put);
    }
}

fn hash_range(shard: &Shard) -> (u128, u128) {
    let range = shard
        .hash_key_range()
        .expect("a shard has a hash key range");
    (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    )
}

/// Splits the first shard in two halves and merges the next two adjacent ones.
async fn reshard(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> (String, [String; 2]) {
    let shards = list_shards(kinesis, stream).await;
    let mut open: Vec<&Shard> = shards
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .collect();
    open.sort_by_key(|s| hash_range(s).0);
    let (start, end) = hash_range(open[0]);
    let split = open[0].shard_id().to_string();
    kinesis
        .split_shard()
        .stream_name(stream)
        .shard_to_split(&split)
        .new_starting_hash_key((start + (end - start) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    streams::wait_active(kinesis, stream).await.unwrap();
    let merged = [
        open[1].shard_id().to_string(),
        open[2].shard_id().to_string(),
    ];
    assert_eq!(hash_range(open[1]).1 + 1, hash_range(open[2]).0, "adjacent");
    kinesis
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(&merged[0])
        .adjacent_shard_to_merge(&merged[1])
        .send()
        .await
        .expect("MergeShards");
    streams::wait_active(kinesis, stream).await.unwrap();
    (split, merged)
}

type Row = std::collections::HashMap<String, AttributeValue>;

async fn lease_rows(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    let mut start = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan");
        for row in page.items().iter() {
            let Some(AttributeValue::S(key)) = row.get("leaseKey") else {
                panic!("a row without a string leaseKey: {row:?}");
            };
            if !key.starts_with(COORDINATION_PREFIX) {
                rows.insert(key.clone(), row.clone());
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return rows;
        }
    }
}

fn string<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    match row.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// The Java KCL 2.x lease schema, attribute by attribute.
fn assert_java_schema(key: &str, row: &Row) {
    let is = |name: &str, ok: fn(&AttributeValue) -> bool| {
        let value = row.get(name);
        assert!(value.is_some_and(ok), "{key}: {name} is {value:?}");
    };
    is("leaseKey", |v| v.is_s());
    is("leaseCounter", |v| {
        v.as_n().is_ok_and(|n| n.parse::<u64>().is_ok())
    });
    is("checkpoint", |v| v.is_s());
    is("checkpointSubSequenceNumber", |v| {
        v.as_n().is_ok_and(|n| n.parse::<u64>().is_ok())
    });
    is("ownerSwitchesSinceCheckpoint", |v| {
        v.as_n().is_ok_and(|n| n.parse::<u64>().is_ok())
    });
    for optional in [
        ("leaseOwner", "S"),
        ("parentShardId", "SS"),
        ("childShardIds", "SS"),
    ] {
        if let Some(v) = row.get(optional.0) {
            let ok = if optional.1 == "S" {
                v.is_s()
            } else {
                v.is_ss()
            };
            assert!(ok, "{key}: {} is {v:?}, not {}", optional.0, optional.1);
        }
    }
}

/// Per worker, open leases owned; `None` while a lease is unowned or owned by someone else.
fn owners(rows: &BTreeMap<String, Row>, survivors: &[String]) -> Option<BTreeMap<String, usize>> {
    let mut per_worker: BTreeMap<String, usize> =
        survivors.iter().map(|w| (w.clone(), 0)).collect();
    for row in rows.values() {
        if string(row, "checkpoint") == Some("SHARD_END") {
            continue;
        }
        let owner = string(row, "leaseOwner")?;
        *per_worker.get_mut(owner)? += 1;
    }
    Some(per_worker)
}

#[tokio::test(flavor = "current_thread")]
async fn a_fleet_of_processes_consumes_through_resharding_and_a_kill() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let started = Instant::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let stream = format!("fleet-{}-{nanos}", std::process::id());
    let application = format!("{stream}-app");
    streams::create(&kinesis, &stream, SHARDS).await.unwrap();

    let dir = std::env::temp_dir().join(&stream);
    std::fs::create_dir_all(&dir).unwrap();
    let mut fleet = Fleet::start(&dir, &stream, &application);
    let mut puts = BTreeMap::new();
    put(&kinesis, &stream, 0..RECORDS / 2, &mut puts).await;
    let (split, merged) = reshard(&kinesis, &stream).await;
    put(&kinesis, &stream, RECORDS / 2..RECORDS * 3 / 4, &mut puts).await;

    // Kill the busiest worker while records flow: once the fleet is past part of the second
    // half, choose the worker holding the most open leases, and SIGKILL it in the middle of the
    // last quarter's puts.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fleet.processed().len() < RECORDS * 5 / 8 {
        fleet.assert_running(None);
        if Instant::now() > deadline {
            fleet.fail("the fleet did not get through the first records");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = lease_rows(&dynamodb, &application).await;
    let held = |worker: &str| -> BTreeSet<String> {
        rows.iter()
            .filter(|(_, row)| string(row, "checkpoint") != Some("SHARD_END"))
            .filter(|(_, row)| string(row, "leaseOwner") == Some(worker))
            .map(|(key, _)| key.clone())
            .collect()
    };
    let killed = fleet
        .workers
        .iter()
        .map(|w| w.id.clone())
        .max_by_key(|id| held(id).len())
        .unwrap();
    let killed_leases = held(&killed);
    assert!(
        !killed_leases.is_empty(),
        "no worker holds an open lease: {rows:#?}"
    );
    let last_quarter: Vec<usize> = (RECORDS * 3 / 4..RECORDS).collect();
    let mut killed_at = 0;
    for (i, chunk) in last_quarter.chunks(500).enumerate() {
        if i == 3 {
            let victim = fleet.workers.iter_mut().find(|w| w.id == killed).unwrap();
            victim.child.kill().expect("SIGKILL");
            victim.child.wait().unwrap();
            killed_at = kcl_e2e::now_millis();
        }
        put(
            &kinesis,
            &stream,
            chunk[0]..chunk[chunk.len() - 1] + 1,
            &mut puts,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let killed = killed.as_str();
    let survivors: Vec<String> = fleet
        .workers
        .iter()
        .map(|w| w.id.clone())
        .filter(|id| id != killed)
        .collect();

    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let processed = fleet.processed();
        if processed.len() >= RECORDS {
            break;
        }
        fleet.assert_running(Some(killed));
        if Instant::now() > deadline {
            let missing: Vec<&String> = puts.keys().filter(|id| !processed.contains(*id)).collect();
            fleet.fail(&format!(
                "{} of {RECORDS} records processed after 240 s; missing e.g. {:?}",
                processed.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all_processed = started.elapsed();

    // Balanced over the survivors: every open lease held by one of them, max - min <= 1.
    let deadline = Instant::now() + Duration::from_secs(90);
    let balance = loop {
        let rows = lease_rows(&dynamodb, &application).await;
        if let Some(per_worker) = owners(&rows, &survivors) {
            let (min, max) = (per_worker.values().min(), per_worker.values().max());
            if max.zip(min).is_some_and(|(max, min)| max - min <= 1) {
                break per_worker;
            }
        }
        if Instant::now() > deadline {
            fleet.fail(&format!(
                "leases not balanced over the survivors after 90 s: {rows:#?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let balanced = started.elapsed();

    // Graceful stop: SIGTERM, then each survivor hands its leases over with a final checkpoint.
    for w in fleet.workers.iter().filter(|w| w.id != killed) {
        let status = Command::new("kill")
            .args(["-TERM", &w.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", w.child.id());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..fleet.workers.len() {
        if fleet.workers[i].id == killed {
            continue;
        }
        let status = loop {
            if let Some(status) = fleet.workers[i].child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let id = fleet.workers[i].id.clone();
                fleet.fail(&format!("{id} did not stop within 60 s of SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !status.success() {
            let id = fleet.workers[i].id.clone();
            fleet.fail(&format!("{id} stopped with {status}"));
        }
    }

    let logs = fleet.logs();
    let shards = list_shards(&kinesis, &stream).await;
    let rows = lease_rows(&dynamodb, &application).await;
    let report = check(&logs, &puts, &shards, &rows, (&split, &merged));
    // The kill mattered: every open lease the victim held went to a survivor afterwards (but a
    // parent the victim finished between the scan and the kill has nothing left to take over).
    let ended_by_victim = |shard: &String| {
        logs.get(killed).is_some_and(|events| {
            events
                .iter()
                .any(|e| e.kind == EventKind::Ended && &e.shard == shard)
        })
    };
    for shard in killed_leases.iter().filter(|s| !ended_by_victim(s)) {
        let taken_over = logs
            .iter()
            .filter(|(worker, _)| worker.as_str() != killed)
            .flat_map(|(_, events)| events)
            .any(|e| e.kind == EventKind::Init && &e.shard == shard && e.at >= killed_at);
        assert!(
            taken_over,
            "{killed}'s lease {shard} was not taken over after the kill"
        );
    }
    eprintln!(
        "fleet: {RECORDS} records over {} shards; {killed} killed holding {killed_leases:?}; all \
         processed after {:.1} s, balanced {balance:?} after {:.1} s; {report}",
        shards.len(),
        all_processed.as_secs_f64(),
        balanced.as_secs_f64(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every check that reads the logs and the final table; returns a one-line summary.
fn check(
    logs: &BTreeMap<String, Vec<Event>>,
    puts: &BTreeMap<String, Put>,
    shards: &[Shard],
    rows: &BTreeMap<String, Row>,
    (split, merged): (&str, &[String; 2]),
) -> String {
    // Ownership: (worker, shard, token). Every record once per ownership, in sequence order.
    let mut deliveries: BTreeMap<&str, Vec<(&str, &str, u64)>> = BTreeMap::new();
    let mut last_in_ownership: BTreeMap<(&str, &str, u64), SequenceNumber> = BTreeMap::new();
    let mut inits: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    let mut first_init: BTreeMap<&str, u128> = BTreeMap::new();
    let mut last_end: BTreeMap<&str, u128> = BTreeMap::new();
    for (worker, events) in logs {
        for e in events {
            let ownership = (worker.as_str(), e.shard.as_str(), e.token);
            match &e.kind {
                EventKind::Init => {
                    inits.entry(&e.shard).or_default().push((e.token, worker));
                    let at = first_init.entry(&e.shard).or_insert(e.at);
                    *at = (*at).min(e.at);
                }
                EventKind::Ended => {
                    let at = last_end.entry(&e.shard).or_insert(e.at);
                    *at = (*at).max(e.at);
                }
                EventKind::Lost => {}
                EventKind::Record { id, sequence } => {
                    let put = puts
                        .get(id)
                        .unwrap_or_else(|| panic!("record {id} was never put"));
                    assert_eq!(e.shard, put.shard, "record {id} came from another shard");
                    assert_eq!(
                        sequence,
                        &put.sequence.to_string(),
                        "record {id}'s sequence"
                    );
                    let seq = &put.sequence;
                    if let Some(last) = last_in_ownership.insert(ownership, seq.clone()) {
                        assert!(
                            &last < seq,
                            "{ownership:?}: {seq:?} after {last:?}, out of order"
                        );
                    }
                    deliveries.entry(id).or_default().push(ownership);
                }
            }
        }
    }
    let missing: Vec<&String> = puts
        .keys()
        .filter(|id| !deliveries.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records never processed: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let mut duplicates = 0;
    for (id, owners) in &deliveries {
        let distinct: BTreeSet<_> = owners.iter().collect();
        assert_eq!(
            distinct.len(),
            owners.len(),
            "record {id} delivered twice within one ownership: {owners:?}"
        );
        duplicates += owners.len() - 1;
    }
    let mut ownership_changes = 0;
    for (shard, tokens) in &inits {
        let distinct: BTreeSet<u64> = tokens.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            distinct.len(),
            tokens.len(),
            "{shard}: a fencing token handed out twice: {tokens:?}"
        );
        ownership_changes += tokens.len() - 1;
    }

    // Parents before children, for every shard the resharding made.
    let mut children = 0;
    for shard in shards {
        let parents: Vec<&str> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .collect();
        if parents.is_empty() {
            continue;
        }
        children += 1;
        let child = shard.shard_id();
        let started = *first_init
            .get(child)
            .unwrap_or_else(|| panic!("child {child} never started"));
        for parent in &parents {
            let ended = *last_end
                .get(parent)
                .unwrap_or_else(|| panic!("parent {parent} never ended"));
            assert!(
                ended <= started,
                "child {child} started at {started}, before parent {parent} ended at {ended}"
            );
        }
    }
    assert_eq!(children, 3, "the split makes two children, the merge one");
    for parent in [split, &merged[0], &merged[1]] {
        assert!(
            last_end.contains_key(parent),
            "{parent} was not processed to its end"
        );
    }

    // The table: Java 2.x rows; open shards checkpointed at their last record; closed shards
    // at SHARD_END or already cleaned up.
    let mut last_put: BTreeMap<&str, &SequenceNumber> = BTreeMap::new();
    for put in puts.values() {
        let last = last_put.entry(&put.shard).or_insert(&put.sequence);
        if *last < &put.sequence {
            *last = &put.sequence;
        }
    }
    for (key, row) in rows {
        assert_java_schema(key, row);
    }
    for shard in shards {
        let id = shard.shard_id();
        let closed = shard
            .sequence_number_range()
            .and_then(|r| r.ending_sequence_number())
            .is_some();
        let checkpoint = rows.get(id).and_then(|row| string(row, "checkpoint"));
        if closed {
            assert!(
                matches!(checkpoint, None | Some("SHARD_END")),
                "closed {id} at {checkpoint:?}"
            );
        } else {
            let expected = last_put.get(id).map(|s| s.to_string());
            assert_eq!(
                checkpoint.map(str::to_string),
                expected,
                "open {id}'s final checkpoint"
            );
        }
    }
    format!(
        "{duplicates} duplicate deliveries over {ownership_changes} ownership changes, {} lease rows",
        rows.len()
    )
}
