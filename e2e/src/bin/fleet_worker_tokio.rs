//! The fleet test's worker on tokio: `fleet-worker-tokio WORKER_ID STREAM APPLICATION CONFIG LOG`.

use kcl_e2e::WorkerArgs;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    kcl_e2e::trace_to_stderr();
    let outcome = async {
        let args = WorkerArgs::parse(std::env::args().skip(1))?;
        let consumer = kcl_tokio::build(args.builder(), args.factory()?)
            .await
            .map_err(|e| format!("cannot start: {}", kcl_aws::error_chain(&e)))?;
        kcl_tokio::run_until_signal(consumer)
            .await
            .map_err(|e| kcl_aws::error_chain(&e))
    };
    kcl_e2e::exit(outcome.await)
}
