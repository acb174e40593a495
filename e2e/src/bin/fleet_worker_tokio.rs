//! The fleet test's worker on tokio: `fleet-worker-tokio WORKER_ID STREAM APPLICATION CONFIG_JSON LOG`.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    kcl_e2e::trace_to_stderr();
    let args = match kcl_e2e::WorkerArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let built = match args.factory() {
        Ok(factory) => kcl_tokio::build(args.builder(), factory)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match built {
        Ok(consumer) => {
            let stats = kcl_tokio::run_until_signal(consumer).await;
            eprintln!("stopped: {stats:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
