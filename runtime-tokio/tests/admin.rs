//! The `kcl-admin` command against dynalite: it lists a table, releases a lease, refuses a bad
//! checkpoint with a message and exit code 1, and a usage error with exit code 2.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use kcl_aws::{DynamoLeaseTable, LeaseTable};
use kcl_core::protocol::LeaseOp;
use kcl_core::{Lease, LeaseKey, Position, WorkerId};

/// Runs kcl-admin with `args`: its exit code, stdout and stderr.
fn admin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kcl-admin"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kcl_admin_lists_releases_and_refuses_bad_input() {
    if !kcl_aws::testkit::emulator_environment() {
        return;
    }
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let name = format!("admin-cli-{}", std::process::id());
    let table = DynamoLeaseTable::new(&aws_sdk_dynamodb::Client::new(&sdk), &name);
    table
        .ensure_table(&kcl_tokio::TokioRuntime, Duration::from_secs(30))
        .await
        .unwrap();
    let mut lease = Lease::new(
        LeaseKey::from("shardId-000000000001"),
        Position::TrimHorizon,
    );
    lease.owner = Some(WorkerId::from("w1"));
    lease.counter = 5;
    table
        .write(
            &LeaseOp::Create {
                lease: Box::new(lease),
            }
            .to_write(),
        )
        .await
        .unwrap();

    // Worker liveness: a lease held by a process of w2, w2's row, and a fenced row of w3.
    let mut held = Lease::new(
        LeaseKey::from("shardId-000000000002"),
        Position::TrimHorizon,
    );
    held.owner = Some(WorkerId::from("w2"));
    held.owner_incarnation = Some("w2-process".into());
    held.counter = 2;
    let heartbeat = |worker: &str, reads_stalled: bool| LeaseOp::Heartbeat {
        failure_domain: None,
        worker: WorkerId::from(worker),
        incarnation: format!("{worker}-process").as_str().into(),
        takeover: None,
        registered: false,
        previous: None,
        max_leases: 100,
        leaving: false,
        reads_stalled,
        acked: Vec::new(),
    };
    let ops = [
        LeaseOp::Create {
            lease: Box::new(held),
        },
        heartbeat("w2", true),
        heartbeat("w3", false),
        LeaseOp::FenceWorker {
            worker: WorkerId::from("w3"),
            counter: 1,
            incarnation: "w3-process".into(),
        },
    ];
    for op in ops {
        table.write(&op.to_write()).await.unwrap();
    }

    let (code, out, err) = admin(&["--table", &name, "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("shardId-000000000001  owner=w1  counter=5  checkpoint=TRIM_HORIZON"),
        "{out}"
    );
    assert!(
        out.contains("shardId-000000000002  owner=w2  counter=2  checkpoint=TRIM_HORIZON  process=w2-process"),
        "{out}"
    );
    assert!(
        out.contains("w2  counter=1  max-leases=100  process=w2-process  reads-stalled"),
        "{out}"
    );
    assert!(
        out.contains("w3  counter=1  max-leases=100  process=none (fenced or given up)"),
        "{out}"
    );

    let (code, out, err) = admin(&["--table", &name, "release", "shardId-000000000001"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("owner=-  counter=6"), "{out}");

    let (code, _, err) = admin(&[
        "--table",
        &name,
        "set-checkpoint",
        "shardId-000000000001",
        "LATEST",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("\"LATEST\" is not a checkpoint"), "{err}");

    let (code, _, err) = admin(&["--table", &name, "frobnicate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown command: frobnicate") && err.contains("usage:"),
        "{err}"
    );
}
