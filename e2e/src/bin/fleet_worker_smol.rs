//! The fleet test's worker on smol, with no tokio runtime:
//! `fleet-worker-smol WORKER_ID STREAM APPLICATION CONFIG LOG`.

use kcl_e2e::WorkerArgs;

fn main() -> std::process::ExitCode {
    kcl_e2e::trace_to_stderr();
    let outcome = smol::block_on(async {
        let args = WorkerArgs::parse(std::env::args().skip(1))?;
        let consumer = kcl_smol::build(args.builder(), args.factory()?)
            .await
            .map_err(|e| format!("cannot start: {}", kcl_aws::error_chain(&e)))?;
        kcl_smol::run_until_signal(consumer)
            .await
            .map_err(|e| kcl_aws::error_chain(&e))
    });
    kcl_e2e::exit(outcome)
}
