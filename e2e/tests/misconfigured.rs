//! Day-one mistakes end a worker process at once, non-zero, with a message naming the mistake:
//! a stream name that does not exist, no region, a misspelt `KCL_*` setting. Both runtimes' worker binaries (built on
//! `kcl_tokio::build` / `kcl_smol::build`, as the example consumers are), against the emulators.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bound for failing loudly: a worker that idles is the bug, not a slow answer.
const WITHIN: Duration = Duration::from_secs(30);

const WORKERS: [&str; 2] = [
    env!("CARGO_BIN_EXE_fleet-worker-tokio"),
    env!("CARGO_BIN_EXE_fleet-worker-smol"),
];

/// Runs `program` on `stream` with the environment changed by `env`; its exit success and
/// stderr, or a failure when it is still running after [`WITHIN`].
fn run(program: &str, stream: &str, env: impl Fn(&mut Command)) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("misconfigured-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kcl.json");
    std::fs::write(&config, "{}").unwrap();
    let stderr = dir.join(format!("{stream}.stderr"));
    let mut command = Command::new(program);
    command
        .args(["misconfigured-worker", stream, &format!("{stream}-app")])
        .arg(&config)
        .arg(dir.join("log"))
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
    for program in WORKERS {
        let stream = format!("no-such-stream-{}", std::process::id());
        let (ok, stderr) = run(program, &stream, |_| {});
        assert!(!ok, "{program} exited successfully on a missing stream");
        assert!(
            stderr.contains(&stream) && stderr.contains("not found"),
            "{program}: {stderr}"
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
        assert!(!ok, "{program} exited successfully without a region");
        assert!(stderr.contains("AWS_REGION"), "{program}: {stderr}");

        let (ok, stderr) = run(program, "any-stream", |c| {
            c.env("KCL_FAILOVER_TIMEOUT", "20s");
        });
        assert!(!ok, "{program} exited successfully with a misspelt setting");
        assert!(
            stderr.contains("KCL_FAILOVER_TIMEOUT") && stderr.contains("KCL_FAILOVER_TIME?"),
            "{program}: {stderr}"
        );
    }
}
