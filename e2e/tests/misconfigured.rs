//! Day-one mistakes end a worker process at once, non-zero, with a message naming the mistake:
//! a stream name that does not exist, no region, a misspelt `KCL_*` setting. Both runtimes' worker
//! binaries and both example consumers, against the emulators.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bound for failing loudly: a worker that idles is the bug, not a slow answer.
const WITHIN: Duration = Duration::from_secs(30);

const WORKERS: [&str; 2] = [
    env!("CARGO_BIN_EXE_fleet-worker-tokio"),
    env!("CARGO_BIN_EXE_fleet-worker-smol"),
];

/// The example consumers (`examples/consumer.rs` of kcl-tokio, `examples/smol_consumer.rs` of
/// kcl-smol): testing the workspace builds them beside the test binaries.
fn examples() -> Vec<PathBuf> {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|me| Some(me.parent()?.parent()?.join("examples")));
    let found: Vec<PathBuf> = ["consumer", "smol_consumer"]
        .iter()
        .filter_map(|name| dir.as_ref().map(|d| d.join(name)))
        .filter(|path| path.exists())
        .collect();
    if found.len() < 2 {
        eprintln!(
            "\n*** SKIPPED for the example consumers: not built beside this test (found {found:?}); \
             run the workspace's tests (./.ci/test) ***\n"
        );
    }
    found
}

/// Runs `program` on `stream` with the environment changed by `env`; its exit success and
/// stderr, or a failure when it is still running after [`WITHIN`]. A fleet worker is given its
/// five arguments, an example consumer its two.
fn run(program: &Path, stream: &str, env: impl Fn(&mut Command)) -> (bool, String) {
    let program = program.display().to_string();
    let dir = std::env::temp_dir().join(format!("misconfigured-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kcl.json");
    std::fs::write(&config, "{}").unwrap();
    let stderr = dir.join(format!("{stream}.stderr"));
    let mut command = Command::new(&program);
    if program.contains("fleet-worker") {
        command
            .args(["misconfigured-worker", stream, &format!("{stream}-app")])
            .arg(&config)
            .arg(dir.join("log"));
    } else {
        command.args([stream, &format!("{stream}-app")]);
    }
    command
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    env(&mut command);
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} on {stream} still running after {WITHIN:?}: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(&stderr).unwrap_or_default(),
    )
}

#[test]
fn a_wrong_stream_no_region_or_a_misspelt_setting_ends_the_worker_with_a_message() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let programs = WORKERS.iter().map(PathBuf::from).chain(examples());
    for program in programs {
        let program = program.as_path();
        let stream = format!("no-such-stream-{}", std::process::id());
        let (ok, stderr) = run(program, &stream, |_| {});
        assert!(
            !ok,
            "{} exited successfully on a missing stream",
            program.display()
        );
        assert!(
            stderr.contains(&stream) && stderr.contains("not found"),
            "{}: {stderr}",
            program.display()
        );

        let (ok, stderr) = run(program, "any-stream", |c| {
            c.env_remove("AWS_REGION")
                .env_remove("AWS_DEFAULT_REGION")
                .env_remove("AWS_PROFILE")
                .env("AWS_CONFIG_FILE", "/nonexistent/kcl-rs/config")
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    "/nonexistent/kcl-rs/credentials",
                );
        });
        assert!(
            !ok,
            "{} exited successfully without a region",
            program.display()
        );
        assert!(
            stderr.contains("AWS_REGION"),
            "{}: {stderr}",
            program.display()
        );

        let (ok, stderr) = run(program, "any-stream", |c| {
            c.env("KCL_FAILOVER_TIMEOUT", "20s");
        });
        assert!(
            !ok,
            "{} exited successfully with a misspelt setting",
            program.display()
        );
        assert!(
            stderr.contains("KCL_FAILOVER_TIMEOUT") && stderr.contains("KCL_FAILOVER_TIME?"),
            "{}: {stderr}",
            program.display()
        );
    }
}
