//! What the simulator's test files share: running a spec quietly, the swarm's width, and what a
//! report found.

use kcl_sim::{run, Report, RunSpec};

/// Runs `spec` without progress output.
pub(crate) fn quiet(spec: &RunSpec) -> Report {
    run(spec, &mut |_| {})
}

/// Seeds per swarm: `KCLRS_SIM_SEEDS`, or `default`.
pub(crate) fn seeds(default: u64) -> u64 {
    std::env::var("KCLRS_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Whether the run reported a violation of this kind (`exclusivity`, `fencing`, ...).
pub(crate) fn reports(r: &Report, kind: &str) -> bool {
    r.violations.iter().any(|v| v.what.starts_with(kind))
}

/// The run found no violation; a failure names the seed, the first violation and the replay.
pub(crate) fn assert_no_violation(r: &Report) {
    assert!(
        r.violation_count == 0,
        "seed {} violated an invariant: {:?}\nreplay: {}",
        r.seed,
        r.violations.first(),
        r.replay
    );
}
