//! Records per second through a kcl-tokio worker versus a bare aws-sdk GetRecords loop, on the
//! same kinesalite stream, in one run (rounds alternate, so both see the same machine).
//!
//! ```text
//! eval "$(.ci/emulators.sh start)" && cargo bench -p kcl-e2e --bench throughput
//! ```
//!
//! `KCLRS_BENCH_RECORDS` (default 200,000), `KCLRS_BENCH_SHARDS` (4), `KCLRS_BENCH_ROUNDS` (5) size it;
//! `KCLRS_BENCH_JSON=PATH` also writes the figures as JSON. Both readers run on one current-thread
//! tokio runtime and read every shard from `TRIM_HORIZON` to the newest record. The worker
//! checkpoints after every batch, as a real consumer does. The compared rate counts from the
//! moment a reader starts on the shards: for the bare loop from its first GetShardIterator, for
//! the worker from its first processor `initialize` (its leases taken; it then gets iterators
//! and reads, as the bare loop does). The worker's one-time start (lease table scan, leader
//! election, lease assignment) is reported beside it, with the rate that includes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcl_aws::{
    Batch, Checkpointer, ConsumerBuilder, InitialPosition, Initialize, KinesisRecord,
    RecordProcessor,
};
use kcl_e2e::stream as streams;

/// One reader's pass over the stream.
#[derive(Clone, Copy, Debug)]
struct Pass {
    records: usize,
    /// From the start to the last record.
    total: Duration,
    /// From the start until reading began (the worker's leases taken; 0 for the bare loop).
    startup: Duration,
}

impl Pass {
    /// Records per second once reading began.
    fn rate(&self) -> f64 {
        self.records as f64 / (self.total - self.startup).as_secs_f64().max(1e-9)
    }
    /// Records per second including the start.
    fn rate_from_start(&self) -> f64 {
        self.records as f64 / self.total.as_secs_f64()
    }
}

fn env_number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The bare loop: per shard, GetShardIterator at TRIM_HORIZON, then GetRecords (10,000 at a
/// time) until a call returns nothing and the shard is caught up.
async fn bare_loop(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    expected: usize,
) -> Result<Pass, String> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| format!("ListShards: {e:?}"))?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for shard in shards.shards() {
        let (client, stream, shard) = (
            client.clone(),
            stream.to_string(),
            shard.shard_id().to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(&shard)
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| format!("GetShardIterator: {e:?}"))?
                .shard_iterator;
            let mut count = 0usize;
            while let Some(it) = iterator {
                let got = client
                    .get_records()
                    .shard_iterator(it)
                    .limit(10_000)
                    .send()
                    .await
                    .map_err(|e| format!("GetRecords: {e:?}"))?;
                let n = got.records().len();
                count += n;
                if n == 0 && got.millis_behind_latest().unwrap_or(0) == 0 {
                    break;
                }
                iterator = got.next_shard_iterator;
            }
            Ok::<usize, String>(count)
        }));
    }
    let mut records = 0;
    for task in tasks {
        records += task.await.map_err(|e| format!("reader task: {e}"))??;
    }
    let total = start.elapsed();
    if records != expected {
        return Err(format!(
            "the bare loop read {records} of {expected} records"
        ));
    }
    Ok(Pass {
        records,
        total,
        startup: Duration::ZERO,
    })
}

struct Count {
    delivered: Arc<AtomicUsize>,
    first_initialize: Arc<Mutex<Option<Instant>>>,
}

impl RecordProcessor<KinesisRecord> for Count {
    async fn initialize(&mut self, _init: &Initialize) {
        if let Ok(mut first) = self.first_initialize.lock() {
            first.get_or_insert_with(Instant::now);
        }
    }
    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        self.delivered
            .fetch_add(batch.records.len(), Ordering::Relaxed);
        if let Err(e) = checkpointer.checkpoint().await {
            eprintln!("checkpoint refused: {e:?}");
        }
    }
}

/// One kcl-tokio worker with a fresh lease table, from `run` until every record was delivered.
async fn worker(stream: &str, application: &str, expected: usize) -> Result<Pass, String> {
    let delivered = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(Mutex::new(None));
    let factory = {
        let (delivered, first) = (Arc::clone(&delivered), Arc::clone(&first));
        move |_: &kcl_aws::LeaseKey| Count {
            delivered: Arc::clone(&delivered),
            first_initialize: Arc::clone(&first),
        }
    };
    // The records were put before the worker starts: read them from the oldest.
    let builder =
        ConsumerBuilder::new(stream, application).initial_position(InitialPosition::TrimHorizon);
    let consumer = kcl_tokio::build(builder, factory)
        .await
        .map_err(|e| e.to_string())?;
    let shutdown = consumer.shutdown_handle();
    let start = Instant::now();
    let running = tokio::spawn(consumer.run());
    while delivered.load(Ordering::Relaxed) < expected {
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "the worker delivered {} of {expected} records in 600 s",
                delivered.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = start.elapsed();
    shutdown.shutdown();
    let stats = running
        .await
        .map_err(|e| format!("worker task: {e}"))?
        .map_err(|e| kcl_aws::error_chain(&e))?;
    if stats.records_delivered != expected as u64 {
        return Err(format!(
            "the worker delivered {} records, expected {expected}",
            stats.records_delivered
        ));
    }
    let startup = first
        .lock()
        .ok()
        .and_then(|f| *f)
        .map_or(total, |at: Instant| at - start);
    Ok(Pass {
        records: expected,
        total,
        startup,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn bench() -> Result<(), String> {
    let records = env_number("KCLRS_BENCH_RECORDS", 200_000)?;
    let shards = env_number("KCLRS_BENCH_SHARDS", 4)?;
    let rounds = env_number("KCLRS_BENCH_ROUNDS", 5)?.max(1);
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_kinesis::Client::new(&sdk);
    let stream = format!("throughput-{}", std::process::id());
    let shard_count = i32::try_from(shards).map_err(|_| "KCLRS_BENCH_SHARDS is too large")?;
    streams::create(&client, &stream, shard_count).await?;
    let put_start = Instant::now();
    streams::put_numbered(&client, &stream, 0..records).await?;
    eprintln!(
        "put {records} records on {shards} shards in {:.1} s",
        put_start.elapsed().as_secs_f64()
    );

    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let b = bare_loop(&client, &stream, records).await?;
        let w = worker(&stream, &format!("{stream}-app-{round}"), records).await?;
        eprintln!(
            "round {round}: bare loop {:>7.0} rec/s; kcl-tokio worker {:>7.0} rec/s \
             ({:>7.0} with its {:.2} s start)",
            b.rate(),
            w.rate(),
            w.rate_from_start(),
            w.startup.as_secs_f64()
        );
        bare.push(b);
        ours.push(w);
    }
    let m = |passes: &[Pass], f: fn(&Pass) -> f64| median(passes.iter().map(f).collect());
    let (bare_rate, ours_rate) = (m(&bare, Pass::rate), m(&ours, Pass::rate));
    let ours_from_start = m(&ours, Pass::rate_from_start);
    let startup = median(ours.iter().map(|p| p.startup.as_secs_f64()).collect());
    let ratio = ours_rate / bare_rate;
    let ratio_from_start = ours_from_start / bare_rate;
    println!(
        "throughput: {records} records, {shards} shards, kinesalite, median of {rounds} rounds"
    );
    println!("  bare GetRecords loop   {bare_rate:>8.0} rec/s");
    println!("  kcl-tokio worker       {ours_rate:>8.0} rec/s   ratio {ratio:.2}");
    println!(
        "  worker with its start  {ours_from_start:>8.0} rec/s   ratio {ratio_from_start:.2}   \
         (start: {startup:.2} s to the first lease)"
    );
    if let Ok(path) = std::env::var("KCLRS_BENCH_JSON") {
        let json = format!(
            "{{\"records\":{records},\"shards\":{shards},\"rounds\":{rounds},\
             \"bare_records_per_second\":{bare_rate:.0},\"worker_records_per_second\":{ours_rate:.0},\
             \"ratio\":{ratio:.3},\"worker_records_per_second_with_start\":{ours_from_start:.0},\
             \"ratio_with_start\":{ratio_from_start:.3},\"worker_start_seconds\":{startup:.3}}}\n"
        );
        std::fs::write(&path, json).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    if !kcl_aws::testkit::emulator_environment() {
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput benchmark failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
