//! Prints every record of a stream and checkpoints after each batch; Ctrl-C hands the leases on.
//! No tokio runtime runs: the SDK is on smol.
//!
//! cargo run -p kcl-smol --example smol_consumer -- STREAM APPLICATION [CONFIG.toml|CONFIG.json]
//! Settings come from the optional file, then from `KCL_*` variables (docs/configuration.md).
//! (against emulators: AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:4568 AWS_ENDPOINT_URL_KINESIS=...)

use kcl_aws::{
    Batch, Checkpointer, ConsumerBuilder, DriverConfig, Initialize, KinesisRecord, LeaseKey,
    RecordProcessor,
};

struct Print;

impl RecordProcessor<KinesisRecord> for Print {
    async fn initialize(&mut self, init: &Initialize) {
        println!("{}: starting after {:?}", init.shard, init.checkpoint);
    }

    async fn process_records(&mut self, batch: Batch<KinesisRecord>, checkpointer: &Checkpointer) {
        for record in &batch.records {
            println!(
                "{} {}: {}",
                batch.shard,
                record.position.sequence,
                String::from_utf8_lossy(&record.data)
            );
        }
        if let Err(e) = checkpointer.checkpoint().await {
            eprintln!("{}: checkpoint refused: {e:?}", batch.shard);
        }
    }
}

/// Exits non-zero, saying why, when the consumer cannot start (a wrong stream name, no region,
/// no credentials, a permission missing), when the stream or table refuses every call for long
/// (deleted, permission revoked), when a setting is wrong, or when another process has its
/// worker id.
fn main() -> std::process::ExitCode {
    smol::block_on(async {
        let mut args = std::env::args().skip(1);
        let stream = args.next().unwrap_or_else(|| "my-stream".into());
        let application = args.next().unwrap_or_else(|| "my-application".into());
        let file = args.next().map(std::path::PathBuf::from);
        let config = match DriverConfig::load(file.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("cannot start: {}", kcl_aws::error_chain(&e));
                return std::process::ExitCode::FAILURE;
            }
        };
        let builder = ConsumerBuilder::new(&stream, &application).config(config);
        let consumer = match kcl_smol::build(builder, |_: &LeaseKey| Print).await {
            Ok(consumer) => consumer,
            Err(e) => {
                eprintln!("cannot start: {}", kcl_aws::error_chain(&e));
                return std::process::ExitCode::FAILURE;
            }
        };
        let stats = match kcl_smol::run_until_signal(consumer).await {
            Ok(stats) => stats,
            Err(e) => {
                eprintln!("stopped: {}", kcl_aws::error_chain(&e));
                return std::process::ExitCode::FAILURE;
            }
        };
        println!("stopped: {} records delivered", stats.records_delivered);
        if stats.duplicate_worker_id > 0 {
            eprintln!("another live process has this worker id");
            return std::process::ExitCode::FAILURE;
        }
        std::process::ExitCode::SUCCESS
    })
}
