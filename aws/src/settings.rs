//! A [`DriverConfig`] from a file (TOML or JSON) and from `KCL_*` environment variables.
//!
//! Every setting is one field of [`DriverConfig`], in one flat namespace: `failover_time = "10s"`
//! in a file is `KCL_FAILOVER_TIME=10s` in the environment. Durations carry their unit (`"10s"`,
//! `"250ms"`, `"1m 30s"`); a bare number is refused, since `10` could mean seconds or
//! milliseconds. Sources apply in the order they are added, later ones overriding earlier ones;
//! the defaults underneath are those of the balancing policy the sources choose
//! ([`Config::kcl2`] for `kcl2-compatible`, whose lease taker scans every 20.05 s). A key that
//! names no setting is an error naming it and the closest setting, and so is a `KCL_` variable
//! naming none: a misspelt setting never silently keeps its default. Every setting, its default
//! and its Java KCL equivalent: docs/configuration.md.
//!
//! ```
//! use kcl_aws::{DriverConfig, InitialPosition, Settings};
//!
//! let config: DriverConfig = Settings::new()
//!     .toml("failover_time = \"20s\"\ninitial_position = \"TRIM_HORIZON\"\n", "kcl.toml")?
//!     .vars([("KCL_MAX_LEASES_PER_WORKER".to_string(), "50".to_string())])?
//!     .driver_config()?;
//! assert_eq!(config.worker.failover_time.as_secs(), 20);
//! assert_eq!(config.worker.initial_position, InitialPosition::TrimHorizon);
//! assert_eq!(config.worker.max_leases_per_worker, 50);
//! # Ok::<(), kcl_aws::SettingsError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcl_core::{BalancingPolicy, Config, ConfigError, InitialPosition, Liveness};

use crate::driver::DriverConfig;

/// The prefix of the environment variables [`Settings::env`] reads.
pub const ENV_PREFIX: &str = "KCL_";

/// Where a setting came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file, or text named like one ([`Settings::toml`], [`Settings::json`]).
    File(String),
    /// An environment variable (its full name).
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(name) => write!(f, "{name}"),
            Self::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// A configuration that could not be loaded: which source, which key, what was wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's name ends neither in `.toml` nor in `.json`.
    Format {
        /// The file.
        path: PathBuf,
    },
    /// The text is not TOML or JSON, or its top level is not a table.
    Syntax {
        /// The source.
        origin: Origin,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key (or a `KCL_` variable) that names no setting.
    UnknownKey {
        /// The source.
        origin: Origin,
        /// The key as written.
        key: String,
        /// The setting with the closest name, if one is close.
        did_you_mean: Option<&'static str>,
    },
    /// A value of the wrong kind or out of range.
    BadValue {
        /// The source.
        origin: Origin,
        /// The setting.
        key: &'static str,
        /// What the setting takes.
        expected: &'static str,
        /// What was written.
        found: String,
    },
    /// Every value parsed, but together they cannot work.
    Invalid(ConfigError),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, .. } => write!(f, "cannot read {}", path.display()),
            Self::Format { path } => write!(
                f,
                "{}: a configuration file's name ends in .toml or .json",
                path.display()
            ),
            Self::Syntax { origin, message } => write!(f, "{origin}: {message}"),
            Self::UnknownKey {
                origin: origin @ Origin::Env(_),
                did_you_mean,
                ..
            } => {
                write!(f, "{origin} names no setting")?;
                match did_you_mean {
                    Some(near) => write!(f, " (did you mean {ENV_PREFIX}{}?)", near.to_uppercase()),
                    None => Ok(()),
                }
            }
            Self::UnknownKey {
                origin,
                key,
                did_you_mean,
            } => {
                write!(f, "{origin}: `{key}` is not a setting")?;
                match did_you_mean {
                    Some(near) => write!(f, " (did you mean `{near}`?)"),
                    None => Ok(()),
                }
            }
            Self::BadValue {
                origin,
                key,
                expected,
                found,
            } => write!(f, "{origin}: `{key}` takes {expected}, not {found}"),
            Self::Invalid(e) => write!(f, "the configuration cannot work: {e}"),
        }
    }
}

impl std::error::Error for SettingsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

/// A value as written, before it is read as a setting's kind.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Text(String),
    Integer(i64),
    Bool(bool),
    /// Anything no setting takes (a float, an array, a table, null): what it is, for the error.
    Other(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => write!(f, "{s:?}"),
            Self::Integer(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

impl Value {
    /// The text of a string, or of a number or flag given where text was expected (environment
    /// variables are always text, and the kinds below parse it).
    fn text(&self) -> Option<String> {
        match self {
            Self::Text(s) => Some(s.trim().to_string()),
            Self::Integer(n) => Some(n.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Other(_) => None,
        }
    }
}

/// How a setting reaches its field, and the kind of value it takes.
#[derive(Clone, Copy)]
enum Access {
    Duration(fn(&mut DriverConfig) -> &mut Duration),
    /// A duration, or `"none"` for `None`.
    OptionalDuration(fn(&mut DriverConfig) -> &mut Option<Duration>),
    /// A name; the empty string for `None`.
    OptionalText(fn(&mut DriverConfig) -> &mut Option<String>),
    U64(fn(&mut DriverConfig) -> &mut u64),
    /// A `u64` whose largest value means "no limit", written `"unlimited"`.
    Limit(fn(&mut DriverConfig) -> &mut u64),
    U32(fn(&mut DriverConfig) -> &mut u32),
    Usize(fn(&mut DriverConfig) -> &mut usize),
    Flag(fn(&mut DriverConfig) -> &mut bool),
    Policy(fn(&mut DriverConfig) -> &mut BalancingPolicy),
    Liveness(fn(&mut DriverConfig) -> &mut Liveness),
    Position(fn(&mut DriverConfig) -> &mut InitialPosition),
}

/// One setting.
struct Knob {
    /// Its key in a file; upper-cased after [`ENV_PREFIX`], its environment variable.
    key: &'static str,
    /// The [`DriverConfig`] field it sets, as serde names it (`worker.failover_time`).
    field: &'static str,
    /// The Java KCL's name for the same knob, or how Java decides it.
    java: &'static str,
    /// One line for the reference.
    about: &'static str,
    access: Access,
}

const DURATION: &str = "a duration with its unit, like \"10s\", \"250ms\" or \"1m 30s\"";
const POLICY: &str = "\"coordinated\" or \"kcl2-compatible\"";
const LIVENESS: &str = "\"lease\" or \"worker\"";
const POSITION: &str =
    "\"LATEST\", \"TRIM_HORIZON\" or an RFC 3339 time in UTC (AT_TIMESTAMP), like \"2026-12-01T00:00:00Z\"";
const FLAG: &str = "true or false";
const OPTIONAL_DURATION: &str = "a duration with its unit, like \"3s\", or \"none\"";
const TEXT: &str = "a string (empty: none)";

macro_rules! knob {
    ($key:literal, $kind:ident, $field:literal, |$c:ident| $place:expr, $java:literal, $about:literal) => {
        Knob {
            key: $key,
            field: $field,
            java: $java,
            about: $about,
            access: Access::$kind(|$c| &mut $place),
        }
    };
}

/// Every setting, in the order of the reference.
const KNOBS: &[Knob] = &[
    knob!("policy", Policy, "worker.policy", |c| c.worker.policy, "none",
        "How leases are spread: one elected leader plans (`coordinated`), or every worker takes and steals as the Java KCL 2.x does (`kcl2-compatible`, for a fleet shared with Java workers). Its defaults apply underneath every other setting."),
    knob!("liveness", Liveness, "worker.liveness", |c| c.worker.liveness, "none (every lease is renewed)",
        "`coordinated`: what keeps a worker's leases: a renewal per lease (`lease`), or one heartbeat per worker (`worker`, the default: the leader fences a worker whose heartbeat stood still before moving its leases; far fewer writes). A running fleet may switch worker by worker; a fleet of kcl-rs versions before worker liveness upgrades through `lease`. Its heartbeat applies underneath the other settings: the renew interval for `worker`, 2 s for `lease`."),
    knob!("initial_position", Position, "worker.initial_position", |c| c.worker.initial_position, "`initialPositionInStreamExtended`",
        "Where a shard without a checkpoint or a parent starts. Read when its lease is created."),
    knob!("failover_time", Duration, "worker.failover_time", |c| c.worker.failover_time, "`failoverTimeMillis`",
        "A lease not renewed for this long is expired; the time a crashed worker's shards wait."),
    knob!("epsilon", Duration, "worker.epsilon", |c| c.worker.epsilon, "`epsilonMillis`",
        "Renewals run every `failover_time / 3 - epsilon`."),
    knob!("safety_margin", Duration, "worker.safety_margin", |c| c.worker.safety_margin, "none (Java delivers until it notices the loss)",
        "An owner stops delivering `failover_time - safety_margin` after its last successful renewal: the clock drift tolerated."),
    knob!("max_leases_per_worker", Limit, "worker.max_leases_per_worker", |c| c.worker.max_leases_per_worker, "`maxLeasesForWorker`",
        "The most leases one worker holds; an integer or \"unlimited\"."),
    knob!("max_leases_to_steal", U64, "worker.max_leases_to_steal", |c| c.worker.max_leases_to_steal, "`maxLeasesToStealAtOneTime`",
        "`kcl2-compatible`: the most leases stolen in one taker run."),
    knob!("priority_lease_assignment", Flag, "worker.priority_lease_assignment", |c| c.worker.priority_lease_assignment, "`enablePriorityLeaseAssignment`",
        "`kcl2-compatible`: take very old leases first."),
    knob!("scan_interval", Duration, "worker.scan_interval", |c| c.worker.scan_interval, "none (2 × (failoverTimeMillis + epsilonMillis))",
        "How often the lease table is scanned: by the leader (`coordinated`), by every worker (`kcl2-compatible`)."),
    knob!("heartbeat_interval", Duration, "worker.heartbeat_interval", |c| c.worker.heartbeat_interval, "none",
        "`coordinated`: how often a worker writes its heartbeat row and reads its assignments."),
    knob!("worker_row_retention", Duration, "worker.worker_row_retention", |c| c.worker.worker_row_retention, "none",
        "`coordinated`: the leader deletes a worker row whose heartbeat has not moved for this long (at least 3 heartbeats)."),
    knob!("leader_check_interval", Duration, "worker.leader_check_interval", |c| c.worker.leader_check_interval, "none",
        "`coordinated`: how often a non-leader reads the leader row."),
    knob!("standby_scan_interval", OptionalDuration, "worker.standby_scan_interval", |c| c.worker.standby_scan_interval, "none",
        "`coordinated`: how often the standby the leader names scans the table beside it, so that it takes over knowing every worker row when the leader dies with others (\"none\": no standby; followers claim a failover time after the leader row stood still, the other followers wait two standby scans and a second longer while one is named)."),
    knob!("failure_domain", OptionalText, "worker.failure_domain", |c| c.worker.failure_domain, "none",
        "`coordinated`: the host, rack or zone this worker fails with; the leader names a standby outside its own. Empty: the host name (`ConsumerBuilder`), else unknown."),
    knob!("move_budget_per_mille", U64, "worker.move_budget_per_mille", |c| c.worker.move_budget_per_mille, "none",
        "`coordinated`: the most handoffs the leader starts per scan, per mille of the leases that may move (at least 1)."),
    knob!("throughput_weighting", Flag, "worker.throughput_weighting", |c| c.worker.throughput_weighting, "none (KCL 3.x balances on CPU)",
        "`coordinated`: weigh leases by their `throughputKBps` instead of counting them."),
    knob!("handoff_timeout", Duration, "worker.handoff_timeout", |c| c.worker.handoff_timeout, "`gracefulLeaseHandoffTimeoutMillis` (KCL 3.x)",
        "`coordinated`: how long an owner may take to hand a lease over before its processor is told the lease is lost."),
    knob!("handoff_poll_interval", Duration, "worker.handoff_poll_interval", |c| c.worker.handoff_poll_interval, "none",
        "`coordinated`: how often a new owner looks whether a handoff to it has completed."),
    knob!("shard_sync_interval", Duration, "worker.shard_sync_interval", |c| c.worker.shard_sync_interval, "`shardSyncIntervalMillis`",
        "How often shards are listed and missing leases created."),
    knob!("parent_poll_interval", Duration, "worker.parent_poll_interval", |c| c.worker.parent_poll_interval, "`parentShardPollIntervalMillis`",
        "How often a child waiting for its parents re-reads their leases."),
    knob!("max_records", U32, "worker.max_records", |c| c.worker.max_records, "`maxRecords`",
        "Records asked for per GetRecords call (1 to 10,000)."),
    knob!("min_fetch_interval", Duration, "worker.min_fetch_interval", |c| c.worker.min_fetch_interval, "none",
        "The least gap between two GetRecords calls on one shard (Kinesis allows 5 per second)."),
    knob!("idle_time_between_reads", Duration, "worker.idle_time_between_reads", |c| c.worker.idle_time_between_reads, "`idleTimeBetweenReadsInMillis`",
        "The gap after a call that found the shard caught up."),
    knob!("max_prefetched_batches", Usize, "worker.max_prefetched_batches", |c| c.worker.max_prefetched_batches, "`maxPendingProcessRecordsInput`",
        "Batches fetched ahead per shard while the processor works."),
    knob!("backoff_base", Duration, "worker.backoff_base", |c| c.worker.backoff_base, "none",
        "The first backoff after a throttled or failed call; doubles per attempt, with jitter."),
    knob!("backoff_max", Duration, "worker.backoff_max", |c| c.worker.backoff_max, "none",
        "The largest such backoff."),
    knob!("request_timeout", Duration, "worker.request_timeout", |c| c.worker.request_timeout, "none",
        "A request without a result after this long is failed, whatever its late answer."),
    knob!("shutdown_timeout", Duration, "worker.shutdown_timeout", |c| c.worker.shutdown_timeout, "none",
        "How long a graceful shutdown waits for processors to checkpoint."),
    knob!("cleanup_finished_leases", Flag, "worker.cleanup_finished_leases", |c| c.worker.cleanup_finished_leases, "`cleanupLeasesUponShardCompletion`",
        "Delete a finished shard's lease once its children have started."),
    knob!("max_table_calls_in_flight", Usize, "max_table_calls_in_flight", |c| c.max_table_calls_in_flight, "none",
        "Lease table calls in flight at once per worker; more wait in order. Separate from stream calls, so renewals never wait behind reads."),
    knob!("max_stream_calls_in_flight", Usize, "max_stream_calls_in_flight", |c| c.max_stream_calls_in_flight, "none",
        "Stream calls in flight at once per worker. With enhanced fan-out each held shard keeps one waiting for its next event: keep it above the leases a worker holds."),
    knob!("call_attempts", U32, "retry.attempts", |c| c.retry.attempts, "none (the SDK's retry config)",
        "Attempts per AWS call, the first included (at least 1)."),
    knob!("call_backoff_base", Duration, "retry.base", |c| c.retry.base, "none",
        "The first backoff between attempts; doubles per attempt, with full jitter."),
    knob!("call_backoff_max", Duration, "retry.max", |c| c.retry.max, "none",
        "The largest backoff between attempts."),
    knob!("call_timeout", Duration, "retry.call_timeout", |c| c.retry.call_timeout, "none",
        "One attempt's time limit."),
    knob!("drop_kpl_records_outside_shard", Flag, "drop_kpl_records_outside_shard", |c| c.drop_kpl_records_outside_shard, "none (always)",
        "Drop a KPL aggregate's user records whose hash key is outside the shard's range (a producer's stale shard map put them there), counted in `kcl_kpl_records_dropped_total`."),
    knob!("give_up_after", Duration, "give_up_after", |c| c.give_up_after, "none (Java retries forever)",
        "How long the stream or the lease table may refuse every call (not found, access denied), or the stream every read (access denied: a permission or its KMS key), before the consumer stops with an error."),
    knob!("processor_call_timeout", Duration, "processor_call_timeout", |c| c.processor_call_timeout, "none (a hung processor keeps its shard forever)",
        "How long one record processor call may run before it is cancelled (dropped at its await point) and its lease given up. Set it above the longest a batch may legitimately take."),
];

fn knob(key: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.key == key)
}

/// The setting whose key is closest to `key`, if a typo away.
fn closest(key: &str) -> Option<&'static str> {
    KNOBS
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k.key), k.key))
        .filter(|&(distance, near)| distance <= 3.max(near.len() / 4))
        .min()
        .map(|(_, near)| near)
}

/// Settings gathered from files, texts and the environment, applied in the order they were
/// added. See the module's page for the rules.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    entries: Vec<(Origin, &'static Knob, Value)>,
}

impl fmt::Debug for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key)
    }
}

impl Settings {
    /// No settings yet: the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file's settings: TOML if its name ends in `.toml`, JSON if in `.json`.
    pub fn file(self, path: impl AsRef<Path>) -> Result<Self, SettingsError> {
        let path = path.as_ref();
        let read = || {
            std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => self.toml(&read()?, &name),
            Some("json") => self.json(&read()?, &name),
            _ => Err(SettingsError::Format {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Adds the settings of a TOML text; `name` names it in errors.
    pub fn toml(mut self, text: &str, name: &str) -> Result<Self, SettingsError> {
        let origin = Origin::File(name.to_string());
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| SettingsError::Syntax {
                    origin: origin.clone(),
                    message: e.to_string().trim_end().to_string(),
                })?;
        for (key, value) in table {
            let value = match value {
                toml::Value::String(s) => Value::Text(s),
                toml::Value::Integer(n) => Value::Integer(n),
                toml::Value::Boolean(b) => Value::Bool(b),
                toml::Value::Datetime(t) => Value::Text(t.to_string()),
                toml::Value::Float(x) => Value::Other(format!("the number {x}")),
                toml::Value::Array(_) => Value::Other("an array".into()),
                toml::Value::Table(_) => Value::Other("a table (settings are flat)".into()),
            };
            self.add(origin.clone(), &key, value)?;
        }
        Ok(self)
    }

    /// Adds the settings of a JSON object; `name` names it in errors.
    pub fn json(mut self, text: &str, name: &str) -> Result<Self, SettingsError> {
        let origin = Origin::File(name.to_string());
        let syntax = |message: String| SettingsError::Syntax {
            origin: origin.clone(),
            message,
        };
        let object = match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) => return Err(syntax("the top level must be an object".into())),
            Err(e) => return Err(syntax(e.to_string())),
        };
        for (key, value) in object {
            let value = match value {
                serde_json::Value::String(s) => Value::Text(s),
                serde_json::Value::Bool(b) => Value::Bool(b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(n) => Value::Integer(n),
                    None => Value::Other(format!("the number {n}")),
                },
                serde_json::Value::Null => Value::Other("null".into()),
                serde_json::Value::Array(_) => Value::Other("an array".into()),
                serde_json::Value::Object(_) => {
                    Value::Other("an object (settings are flat)".into())
                }
            };
            self.add(origin.clone(), &key, value)?;
        }
        Ok(self)
    }

    /// Adds the process's `KCL_*` environment variables (`KCL_FAILOVER_TIME=10s`). Every variable
    /// with the prefix must name a setting.
    pub fn env(self) -> Result<Self, SettingsError> {
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
                continue;
            };
            // Not UTF-8: kept as lossy text, which no setting reads, so it is refused by name.
            let value = value.to_string_lossy();
            vars.push((name.to_string(), value.to_string()));
        }
        // The environment's order is the platform's: sorted, a run's result never depends on it.
        vars.sort();
        self.vars(vars)
    }

    /// Adds variables as [`Settings::env`] reads them, from a list instead of the process (for
    /// tests, or a platform's own configuration map). Names without the `KCL_` prefix are skipped.
    pub fn vars(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        for (name, value) in vars {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_lowercase();
            self.add(Origin::Env(name), &key, Value::Text(value))?;
        }
        Ok(self)
    }

    /// Every setting as a Markdown table: key, environment variable, field, default, Java KCL
    /// name, meaning. docs/configuration.md shows it (a test keeps the page equal to it).
    pub fn reference() -> String {
        let defaults = DriverConfig::default();
        let mut out = String::from(
            "| setting | environment | `DriverConfig` field | default | Java KCL | what it does |\n|---|---|---|---|---|---|\n",
        );
        for knob in KNOBS {
            let default = knob.render(&defaults);
            let default = match default.trim_matches('"') {
                "" => "\"\"",
                bare => bare,
            };
            out.push_str(&format!(
                "| `{}` | `{}{}` | `{}` | `{}` | {} | {} |\n",
                knob.key,
                ENV_PREFIX,
                knob.key.to_uppercase(),
                knob.field,
                default,
                knob.java,
                knob.about,
            ));
        }
        out
    }

    fn add(&mut self, origin: Origin, key: &str, value: Value) -> Result<(), SettingsError> {
        let Some(knob) = knob(key) else {
            return Err(SettingsError::UnknownKey {
                origin,
                key: key.to_string(),
                did_you_mean: closest(key),
            });
        };
        // Read the value now, so an error names the source that wrote it.
        knob.apply(&mut DriverConfig::default(), &value)
            .map_err(|expected| knob.bad_value(origin.clone(), expected, &value))?;
        self.entries.push((origin, knob, value));
        Ok(())
    }

    /// The configuration: the chosen policy's defaults, every setting in order, then checked.
    pub fn driver_config(&self) -> Result<DriverConfig, SettingsError> {
        let mut policy = DriverConfig::default();
        for (_, knob, value) in &self.entries {
            if matches!(knob.access, Access::Policy(_) | Access::Liveness(_)) {
                // Read when added: cannot fail here.
                let _ = knob.apply(&mut policy, value);
            }
        }
        // Kcl2Compatible always renews per lease: its defaults ignore the liveness.
        let worker = match (policy.worker.policy, policy.worker.liveness) {
            (BalancingPolicy::Kcl2Compatible, _) => Config::kcl2(),
            (BalancingPolicy::Coordinated, Liveness::Worker) => {
                Config::default().with_worker_liveness()
            }
            (BalancingPolicy::Coordinated, Liveness::Lease) => {
                Config::default().with_lease_liveness()
            }
        };
        let mut config = DriverConfig {
            worker,
            ..DriverConfig::default()
        };
        for (origin, knob, value) in &self.entries {
            knob.apply(&mut config, value)
                .map_err(|expected| knob.bad_value(origin.clone(), expected, value))?;
        }
        config.validate().map_err(SettingsError::Invalid)?;
        Ok(config)
    }
}

impl DriverConfig {
    /// The defaults, then `file` if given (TOML or JSON), then the `KCL_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let settings = match file {
            Some(path) => Settings::new().file(path)?,
            None => Settings::new(),
        };
        settings.env()?.driver_config()
    }

    /// Every setting of this configuration as a TOML file that [`Settings::toml`] reads back to
    /// the same configuration.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for knob in KNOBS {
            out.push_str(knob.key);
            out.push_str(" = ");
            out.push_str(&knob.render(self));
            out.push('\n');
        }
        out
    }
}

impl Knob {
    /// Sets the field from `value`; `Err` says what the setting takes.
    fn apply(&self, config: &mut DriverConfig, value: &Value) -> Result<(), &'static str> {
        let text = value.text();
        match self.access {
            Access::Duration(place) => {
                // A bare number has no unit: refused, not guessed.
                let Value::Text(text) = value else {
                    return Err(DURATION);
                };
                *place(config) = humantime::parse_duration(text.trim()).map_err(|_| DURATION)?;
            }
            Access::OptionalDuration(place) => {
                let Value::Text(text) = value else {
                    return Err(OPTIONAL_DURATION);
                };
                *place(config) = if text.trim().eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(humantime::parse_duration(text.trim()).map_err(|_| OPTIONAL_DURATION)?)
                };
            }
            Access::OptionalText(place) => {
                let Value::Text(text) = value else {
                    return Err(TEXT);
                };
                *place(config) = Some(text.trim().to_string()).filter(|t| !t.is_empty());
            }
            Access::U64(place) => *place(config) = integer(text, "an integer from 0")?,
            Access::Limit(place) => {
                const LIMIT: &str = "an integer from 1, or \"unlimited\"";
                *place(config) = match text {
                    Some(t) if t.eq_ignore_ascii_case("unlimited") => u64::MAX,
                    text => integer(text, LIMIT)?,
                };
            }
            Access::U32(place) => {
                *place(config) = integer(text, "an integer from 0 to 4294967295")?
            }
            Access::Usize(place) => *place(config) = integer(text, "an integer from 0")?,
            Access::Flag(place) => {
                *place(config) = match (value, text.map(|t| t.to_ascii_lowercase()).as_deref()) {
                    (Value::Bool(b), _) => *b,
                    (_, Some("true")) => true,
                    (_, Some("false")) => false,
                    _ => return Err(FLAG),
                };
            }
            Access::Policy(place) => {
                let t = text.ok_or(POLICY)?.to_ascii_lowercase().replace('_', "-");
                *place(config) = match t.as_str() {
                    "coordinated" => BalancingPolicy::Coordinated,
                    "kcl2-compatible" | "kcl2" => BalancingPolicy::Kcl2Compatible,
                    _ => return Err(POLICY),
                };
            }
            Access::Liveness(place) => {
                *place(config) = match text.ok_or(LIVENESS)?.to_ascii_lowercase().as_str() {
                    "lease" => Liveness::Lease,
                    "worker" => Liveness::Worker,
                    _ => return Err(LIVENESS),
                };
            }
            Access::Position(place) => {
                let t = text.ok_or(POSITION)?;
                *place(config) = if t.eq_ignore_ascii_case("LATEST") {
                    InitialPosition::Latest
                } else if t.eq_ignore_ascii_case("TRIM_HORIZON") {
                    InitialPosition::TrimHorizon
                } else {
                    // A time without a zone would be read in one the operator did not pick.
                    if !t.trim_end().ends_with(['Z', 'z']) {
                        return Err(POSITION);
                    }
                    let at = humantime::parse_rfc3339_weak(&t).map_err(|_| POSITION)?;
                    let millis = at.duration_since(UNIX_EPOCH).map_err(|_| POSITION)?;
                    InitialPosition::AtTimestamp(
                        u64::try_from(millis.as_millis()).map_err(|_| POSITION)?,
                    )
                };
            }
        }
        Ok(())
    }

    /// The field's value in `config`, written as a TOML value.
    fn render(&self, config: &DriverConfig) -> String {
        let mut c = config.clone();
        match self.access {
            Access::Duration(place) => {
                format!("\"{}\"", humantime::format_duration(*place(&mut c)))
            }
            Access::OptionalDuration(place) => match *place(&mut c) {
                Some(d) => format!("\"{}\"", humantime::format_duration(d)),
                None => "\"none\"".into(),
            },
            Access::OptionalText(place) => {
                toml::Value::String(place(&mut c).clone().unwrap_or_default()).to_string()
            }
            Access::U64(place) => place(&mut c).to_string(),
            Access::Limit(place) => match *place(&mut c) {
                u64::MAX => "\"unlimited\"".into(),
                n => n.to_string(),
            },
            Access::U32(place) => place(&mut c).to_string(),
            Access::Usize(place) => place(&mut c).to_string(),
            Access::Flag(place) => place(&mut c).to_string(),
            Access::Policy(place) => match place(&mut c) {
                BalancingPolicy::Coordinated => "\"coordinated\"".into(),
                BalancingPolicy::Kcl2Compatible => "\"kcl2-compatible\"".into(),
            },
            Access::Liveness(place) => match place(&mut c) {
                Liveness::Lease => "\"lease\"".into(),
                Liveness::Worker => "\"worker\"".into(),
            },
            Access::Position(place) => match *place(&mut c) {
                InitialPosition::Latest => "\"LATEST\"".into(),
                InitialPosition::TrimHorizon => "\"TRIM_HORIZON\"".into(),
                InitialPosition::AtTimestamp(ms) => format!(
                    "\"{}\"",
                    humantime::format_rfc3339_millis(
                        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
                    )
                ),
            },
        }
    }

    fn bad_value(&self, origin: Origin, expected: &'static str, value: &Value) -> SettingsError {
        SettingsError::BadValue {
            origin,
            key: self.key,
            expected,
            found: value.to_string(),
        }
    }
}

/// An integer setting from a number, or from text holding one (`_` allowed between digits).
fn integer<N: TryFrom<i128>>(
    text: Option<String>,
    expected: &'static str,
) -> Result<N, &'static str> {
    let digits = text.ok_or(expected)?.replace('_', "");
    let n: i128 = digits.parse().map_err(|_| expected)?;
    N::try_from(n).map_err(|_| expected)
}

#[cfg(test)]
mod tests;
