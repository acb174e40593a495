//! Records per second through a kcl-tokio worker versus a bare aws-sdk GetRecords loop, on the
//! same kinesalite stream, in one run (rounds alternate, so both see the same machine).
//!
//! ```text
//! eval "$(.ci/emulators.sh start)" && cargo bench -p kcl-e2e --bench throughput
//! ```
//!
//! `KCL_BENCH_RECORDS` (default 200,000), `KCL_BENCH_SHARDS` (4), `KCL_BENCH_ROUNDS` (3) size it;
//! `KCL_BENCH_JSON=PATH` also writes the figures as JSON. Both readers run on one current-thread
//! tokio runtime and read every shard from `TRIM_HORIZON` to the newest record. The worker
//! checkpoints after every batch, as a real consumer does. Two figures per reader: the rate from
//! the start (the worker's includes creating its leases), and the rate from the first record
//! delivered, which is the throughput a running consumer sustains.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcl_aws::{Batch, Checkpointer, ConsumerBuilder, Initialize, KinesisRecord, RecordProcessor};
use kcl_e2e::stream as streams;

/// One reader's pass over the stream.
#[derive(Clone, Copy, Debug)]
struct Pass {
    records: usize,
    /// From the start to the last record.
    total: Duration,
    /// From the start to the first record.
    first: Duration,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.records as f64 / self.total.as_secs_f64()
    }
    fn steady_rate(&self) -> f64 {
        self.records as f64 / (self.total - self.first).as_secs_f64().max(1e-9)
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
    let first = Arc::new(Mutex::new(None::<Duration>));
    let mut tasks = Vec::new();
    for shard in shards.shards() {
        let (client, stream, shard) = (
            client.clone(),
            stream.to_string(),
            shard.shard_id().to_string(),
        );
        let first = Arc::clone(&first);
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
                if n > 0 {
                    if let Ok(mut f) = first.lock() {
                        f.get_or_insert(start.elapsed());
                    }
                }
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
    let first = first.lock().ok().and_then(|f| *f).unwrap_or(total);
    Ok(Pass {
        records,
        total,
        first,
    })
}

struct Count {
    delivered: Arc<AtomicUsize>,
    first: Arc<Mutex<Option<Instant>>>,
}

impl RecordProcessor<KinesisRecord> for Count {
    async fn initialize(&mut self, _init: &Initialize) {}
    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        if let Ok(mut f) = self.first.lock() {
            f.get_or_insert_with(Instant::now);
        }
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
            first: Arc::clone(&first),
        }
    };
    let consumer = kcl_tokio::build(ConsumerBuilder::new(stream, application), factory)
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
    let stats = running.await.map_err(|e| format!("worker task: {e}"))?;
    if stats.records_delivered != expected as u64 {
        return Err(format!(
            "the worker delivered {} records, expected {expected}",
            stats.records_delivered
        ));
    }
    let first = first
        .lock()
        .ok()
        .and_then(|f| *f)
        .map_or(total, |at: Instant| at - start);
    Ok(Pass {
        records: expected,
        total,
        first,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn bench() -> Result<(), String> {
    let records = env_number("KCL_BENCH_RECORDS", 200_000)?;
    let shards = env_number("KCL_BENCH_SHARDS", 4)?;
    let rounds = env_number("KCL_BENCH_ROUNDS", 3)?.max(1);
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_kinesis::Client::new(&sdk);
    let stream = format!("throughput-{}", std::process::id());
    let shard_count = i32::try_from(shards).map_err(|_| "KCL_BENCH_SHARDS is too large")?;
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
            "round {round}: bare loop {:>8.0} rec/s ({:>8.0} from the first record); \
             kcl-tokio worker {:>8.0} rec/s ({:>8.0} from the first record, first after {:.2} s)",
            b.rate(),
            b.steady_rate(),
            w.rate(),
            w.steady_rate(),
            w.first.as_secs_f64()
        );
        bare.push(b);
        ours.push(w);
    }
    let m = |passes: &[Pass], f: fn(&Pass) -> f64| median(passes.iter().map(f).collect());
    let (bare_rate, bare_steady) = (m(&bare, Pass::rate), m(&bare, Pass::steady_rate));
    let (ours_rate, ours_steady) = (m(&ours, Pass::rate), m(&ours, Pass::steady_rate));
    let ratio = ours_steady / bare_steady;
    let ratio_from_start = ours_rate / bare_rate;
    println!(
        "throughput ({records} records, {shards} shards, kinesalite, median of {rounds} rounds)"
    );
    println!("  bare GetRecords loop   {bare_steady:>9.0} rec/s from the first record   {bare_rate:>9.0} rec/s from the start");
    println!("  kcl-tokio worker       {ours_steady:>9.0} rec/s from the first record   {ours_rate:>9.0} rec/s from the start");
    println!(
        "  ratio worker / bare    {ratio:>9.2}                           {ratio_from_start:>9.2}"
    );
    if let Ok(path) = std::env::var("KCL_BENCH_JSON") {
        let json = format!(
            "{{\"records\":{records},\"shards\":{shards},\"rounds\":{rounds},\
             \"bare_records_per_second\":{bare_steady:.0},\"worker_records_per_second\":{ours_steady:.0},\
             \"ratio\":{ratio:.3},\"bare_records_per_second_from_start\":{bare_rate:.0},\
             \"worker_records_per_second_from_start\":{ours_rate:.0},\"ratio_from_start\":{ratio_from_start:.3}}}\n"
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
