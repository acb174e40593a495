use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// Every leaf field of a [`DriverConfig`] as serde names it (`worker.failover_time`), with its
/// value. A `Duration` (`{secs, nanos}`) counts as one leaf.
fn leaves(config: &DriverConfig) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match v {
            serde_json::Value::Object(o)
                if !(o.len() == 2 && o.contains_key("secs") && o.contains_key("nanos")) =>
            {
                for (k, v) in o {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "",
        &serde_json::to_value(config).expect("serializes"),
        &mut out,
    );
    out
}

/// A field added to `DriverConfig` or `Config` without a setting fails here: every field has
/// exactly one setting, and no two settings share a field or a key.
#[test]
fn every_field_has_exactly_one_setting() {
    let fields: BTreeSet<String> = leaves(&DriverConfig::default()).into_keys().collect();
    let knob_fields: Vec<&str> = KNOBS.iter().map(|k| k.field).collect();
    let unique: BTreeSet<String> = knob_fields.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        unique.len(),
        knob_fields.len(),
        "two settings set one field"
    );
    let missing: Vec<_> = fields.difference(&unique).collect();
    let stale: Vec<_> = unique.difference(&fields).collect();
    assert!(missing.is_empty(), "fields without a setting: {missing:?}");
    assert!(stale.is_empty(), "settings naming no field: {stale:?}");
    let keys: BTreeSet<&str> = KNOBS.iter().map(|k| k.key).collect();
    assert_eq!(keys.len(), KNOBS.len(), "two settings share a key");
}

/// A value of the setting's kind, different from the one in `config`.
fn another_value(knob: &Knob, config: &DriverConfig) -> String {
    let mut c = config.clone();
    match knob.access {
        Access::Duration(place) => {
            // Half a second less from a second on (a longer heartbeat would not fit the
            // delivery window twice), else one and a half more.
            let d = *place(&mut c);
            let other = if d >= Duration::from_secs(1) {
                d - Duration::from_millis(500)
            } else {
                d + Duration::from_millis(1500)
            };
            format!("\"{}\"", humantime::format_duration(other))
        }
        Access::OptionalDuration(place) => match *place(&mut c) {
            Some(_) => "\"none\"".into(),
            None => "\"2s\"".into(),
        },
        Access::OptionalText(place) => match place(&mut c) {
            Some(_) => "\"\"".into(),
            None => "\"rack-7\"".into(),
        },
        Access::U64(place) | Access::Limit(place) => {
            (place(&mut c).wrapping_add(2) % 1000).max(1).to_string()
        }
        Access::U32(place) => (*place(&mut c) % 9000 + 7).to_string(),
        Access::Usize(place) => (*place(&mut c) + 3).to_string(),
        Access::Flag(place) => (!*place(&mut c)).to_string(),
        Access::Policy(place) => match place(&mut c) {
            BalancingPolicy::Coordinated => "\"kcl2-compatible\"".into(),
            BalancingPolicy::Kcl2Compatible => "\"coordinated\"".into(),
        },
        Access::Liveness(place) => match place(&mut c) {
            Liveness::Lease => "\"worker\"".into(),
            Liveness::Worker => "\"lease\"".into(),
        },
        Access::Position(place) => match place(&mut c) {
            InitialPosition::Latest => "\"TRIM_HORIZON\"".into(),
            _ => "\"LATEST\"".into(),
        },
    }
}

/// Each setting, written in a file, changes its own field and no other (the policy and the
/// liveness aside: the policy's defaults move the scan interval, the liveness and the heartbeat
/// interval too, and the liveness's the heartbeat interval).
#[test]
fn each_setting_sets_the_field_it_names_and_no_other() {
    let defaults = DriverConfig::default();
    let before = leaves(&defaults);
    for knob in KNOBS {
        let text = format!("{} = {}\n", knob.key, another_value(knob, &defaults));
        let config = Settings::new()
            .toml(&text, "test.toml")
            .and_then(|s| s.driver_config())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let after = leaves(&config);
        let changed: BTreeSet<&String> =
            before.keys().filter(|k| before[*k] != after[*k]).collect();
        let mut expected: BTreeSet<&String> = BTreeSet::new();
        let field = knob.field.to_string();
        expected.insert(&field);
        let scan = "worker.scan_interval".to_string();
        let heartbeat = "worker.heartbeat_interval".to_string();
        let liveness = "worker.liveness".to_string();
        if knob.key == "policy" {
            expected.extend([&scan, &heartbeat, &liveness]);
        }
        if knob.key == "liveness" {
            expected.insert(&heartbeat);
        }
        assert_eq!(changed, expected, "{text}");
    }
}

/// The same settings from the environment: `KCL_` and the key upper-cased.
#[test]
fn environment_variables_name_settings_upper_case() {
    let config = Settings::new()
        .vars([
            ("KCL_FAILOVER_TIME".to_string(), "20s".to_string()),
            (
                "KCL_MAX_LEASES_PER_WORKER".to_string(),
                "unlimited".to_string(),
            ),
            ("KCL_THROUGHPUT_WEIGHTING".to_string(), "TRUE".to_string()),
            ("KCL_MAX_RECORDS".to_string(), "5_000".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ])
        .and_then(|s| s.driver_config())
        .expect("valid");
    assert_eq!(config.worker.failover_time, Duration::from_secs(20));
    assert_eq!(config.worker.max_leases_per_worker, u64::MAX);
    assert!(config.worker.throughput_weighting);
    assert_eq!(config.worker.max_records, 5_000);
}

#[test]
fn a_later_source_overrides_an_earlier_one() {
    let config = Settings::new()
        .toml("failover_time = \"20s\"\nmax_records = 100", "kcl.toml")
        .and_then(|s| s.vars([("KCL_FAILOVER_TIME".into(), "30s".into())]))
        .and_then(|s| s.driver_config())
        .expect("valid");
    assert_eq!(config.worker.failover_time, Duration::from_secs(30));
    assert_eq!(config.worker.max_records, 100);
}

/// `kcl2-compatible` brings the Java taker's timing unless a scan interval is set, wherever the
/// policy is written.
#[test]
fn the_chosen_policy_s_defaults_lie_underneath() {
    let config = Settings::new()
        .vars([("KCL_POLICY".into(), "KCL2_COMPATIBLE".into())])
        .and_then(|s| s.driver_config())
        .expect("valid");
    assert_eq!(config.worker, Config::kcl2());
    let config = Settings::new()
        .toml("scan_interval = \"5s\"", "kcl.toml")
        .and_then(|s| s.vars([("KCL_POLICY".into(), "kcl2-compatible".into())]))
        .and_then(|s| s.driver_config())
        .expect("valid");
    assert_eq!(config.worker.policy, BalancingPolicy::Kcl2Compatible);
    assert_eq!(config.worker.scan_interval, Duration::from_secs(5));
}

/// Worker liveness is the default, with a heartbeat every renew interval; `lease` brings the
/// 2 s heartbeat of a renewal per lease, unless a heartbeat interval is set.
#[test]
fn the_chosen_liveness_s_heartbeat_lies_underneath() {
    let config = Settings::new().driver_config().expect("valid");
    assert_eq!(config.worker.liveness, Liveness::Worker);
    assert_eq!(
        config.worker.heartbeat_interval,
        config.worker.renew_interval()
    );
    let lease = Settings::new()
        .vars([("KCL_LIVENESS".into(), "lease".into())])
        .and_then(|s| s.driver_config())
        .expect("valid");
    assert_eq!(lease.worker, Config::default().with_lease_liveness());
    assert_eq!(lease.worker.heartbeat_interval, Duration::from_secs(2));
    let set = Settings::new()
        .toml("heartbeat_interval = \"1s\"", "kcl.toml")
        .and_then(|s| s.vars([("KCL_LIVENESS".into(), "lease".into())]))
        .and_then(|s| s.driver_config())
        .expect("valid");
    assert_eq!(set.worker.liveness, Liveness::Lease);
    assert_eq!(set.worker.heartbeat_interval, Duration::from_secs(1));
}

#[test]
fn an_unknown_key_is_an_error_naming_it_and_the_closest_setting() {
    let e = Settings::new()
        .toml("failover_timeout = \"10s\"", "kcl.toml")
        .expect_err("unknown");
    assert_eq!(
        e.to_string(),
        "kcl.toml: `failover_timeout` is not a setting (did you mean `failover_time`?)"
    );
    let e = Settings::new()
        .json(r#"{"maxLeasesForWorker": 5}"#, "kcl.json")
        .expect_err("unknown");
    assert!(
        matches!(&e, SettingsError::UnknownKey { key, .. } if key == "maxLeasesForWorker"),
        "{e:?}"
    );
    let e = Settings::new()
        .vars([("KCL_FAILOVR_TIME".into(), "10s".into())])
        .expect_err("unknown");
    assert_eq!(
        e.to_string(),
        "environment variable KCL_FAILOVR_TIME names no setting (did you mean KCL_FAILOVER_TIME?)"
    );
    let e = Settings::new()
        .toml("zzzz = 1", "kcl.toml")
        .expect_err("unknown");
    assert_eq!(e.to_string(), "kcl.toml: `zzzz` is not a setting");
}

#[test]
fn a_bad_value_names_the_source_the_setting_and_what_it_takes() {
    let cases = [
        ("failover_time = 10", "kcl.toml: `failover_time` takes a duration with its unit, like \"10s\", \"250ms\" or \"1m 30s\", not 10"),
        ("failover_time = \"ten\"", "kcl.toml: `failover_time` takes a duration with its unit, like \"10s\", \"250ms\" or \"1m 30s\", not \"ten\""),
        ("max_records = -1", "kcl.toml: `max_records` takes an integer from 0 to 4294967295, not -1"),
        ("max_records = 1.5", "kcl.toml: `max_records` takes an integer from 0 to 4294967295, not the number 1.5"),
        ("throughput_weighting = \"yes\"", "kcl.toml: `throughput_weighting` takes true or false, not \"yes\""),
        ("policy = \"fair\"", "kcl.toml: `policy` takes \"coordinated\" or \"kcl2-compatible\", not \"fair\""),
        ("[retry]\nattempts = 3", "kcl.toml: `retry` is not a setting"),
    ];
    for (text, message) in cases {
        let e = Settings::new().toml(text, "kcl.toml").expect_err(text);
        assert!(e.to_string().starts_with(message), "{text}: {e}");
    }
    let e = Settings::new()
        .vars([("KCL_INITIAL_POSITION".into(), "OLDEST".into())])
        .expect_err("bad");
    assert!(
        e.to_string().starts_with(
            "environment variable KCL_INITIAL_POSITION: `initial_position` takes \"LATEST\""
        ),
        "{e}"
    );
}

#[test]
fn values_that_parse_but_cannot_work_together_are_refused() {
    let e = Settings::new()
        .toml("failover_time = \"1s\"\nsafety_margin = \"2s\"", "kcl.toml")
        .and_then(|s| s.driver_config())
        .expect_err("invalid");
    assert!(matches!(e, SettingsError::Invalid(_)), "{e:?}");
    assert!(std::error::Error::source(&e).is_some());
    let e = Settings::new()
        .toml("call_attempts = 0", "kcl.toml")
        .and_then(|s| s.driver_config())
        .expect_err("invalid");
    assert!(matches!(e, SettingsError::Invalid(_)), "{e:?}");
}

#[test]
fn an_initial_timestamp_is_an_rfc_3339_time_in_a_string_or_a_toml_datetime() {
    for text in [
        "initial_position = \"2026-12-01T00:00:00Z\"",
        "initial_position = 2026-12-01T00:00:00Z",
    ] {
        let config = Settings::new()
            .toml(text, "kcl.toml")
            .and_then(|s| s.driver_config())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            config.worker.initial_position,
            InitialPosition::AtTimestamp(1_796_083_200_000),
            "{text}"
        );
    }
}

/// A time without a zone would be read in some zone the operator did not pick, skipping or
/// repeating hours of records: it is refused, and the message asks for UTC.
#[test]
fn an_initial_timestamp_without_a_zone_is_refused() {
    for text in [
        "initial_position = 2026-12-01T00:00:00",
        "initial_position = \"2026-12-01T00:00:00\"",
        "initial_position = \"2026-12-01 00:00:00\"",
    ] {
        let e = Settings::new().toml(text, "kcl.toml").expect_err(text);
        assert!(matches!(e, SettingsError::BadValue { .. }), "{text}: {e:?}");
        assert!(e.to_string().contains("in UTC"), "{text}: {e}");
    }
    let e = Settings::new()
        .vars([("KCL_INITIAL_POSITION".into(), "2026-12-01T00:00:00".into())])
        .expect_err("no zone");
    assert!(matches!(e, SettingsError::BadValue { .. }), "{e:?}");
}

#[test]
fn files_are_read_by_their_extension() {
    let dir = std::env::temp_dir().join(format!("kcl-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let toml_path = dir.join("kcl.toml");
    let json_path = dir.join("kcl.json");
    let other = dir.join("kcl.yaml");
    std::fs::write(&toml_path, "max_records = 123\n").expect("write");
    std::fs::write(&json_path, r#"{"max_records": 456, "call_timeout": "2s"}"#).expect("write");
    std::fs::write(&other, "max_records: 1\n").expect("write");
    let config = Settings::new()
        .file(&toml_path)
        .and_then(|s| s.file(&json_path))
        .and_then(|s| s.driver_config())
        .expect("valid");
    assert_eq!(config.worker.max_records, 456);
    assert_eq!(config.retry.call_timeout, Duration::from_secs(2));
    assert!(matches!(
        Settings::new().file(&other),
        Err(SettingsError::Format { .. })
    ));
    let missing = Settings::new()
        .file(dir.join("absent.toml"))
        .expect_err("absent");
    assert!(matches!(missing, SettingsError::Read { .. }));
    assert!(std::error::Error::source(&missing).is_some());
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "max_records = \n").expect("write");
    let e = Settings::new().file(&bad).expect_err("syntax");
    assert!(matches!(e, SettingsError::Syntax { .. }), "{e:?}");
    assert!(e.to_string().contains("bad.toml"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/configuration.md lists every setting with its default and Java name: the table between
/// its markers is the one [`Settings::reference`] prints.
#[test]
fn the_configuration_reference_lists_every_setting() {
    // Compiled in, so the page is a dependency of this test: a stale build cannot read another
    // checkout's page (a target directory may be shared between clones).
    let page = include_str!("../../../docs/configuration.md");
    let begin = "<!-- settings: begin -->\n";
    let end = "<!-- settings: end -->";
    let table = page
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(table, _)| table)
        .expect("the page has the settings markers");
    let expected = Settings::reference();
    assert!(
        table == expected,
        "docs/configuration.md's table is stale; the current one is:\n{expected}"
    );
}

fn arbitrary_config() -> impl Strategy<Value = DriverConfig> {
    proptest::collection::vec(any::<u64>(), KNOBS.len()).prop_map(|draws| {
        let mut c = DriverConfig::default();
        for (knob, draw) in KNOBS.iter().zip(draws) {
            match knob.access {
                // Whole microseconds up to a day, some with nanoseconds.
                Access::Duration(place) => {
                    *place(&mut c) = Duration::from_nanos(draw % 86_400_000_000_000)
                }
                Access::OptionalDuration(place) => {
                    *place(&mut c) =
                        (draw % 3 != 0).then(|| Duration::from_nanos(draw % 86_400_000_000_000))
                }
                Access::OptionalText(place) => {
                    *place(&mut c) = (draw % 2 == 0).then(|| format!("zone \"{}\"", draw % 97))
                }
                Access::U64(place) => *place(&mut c) = draw >> 1,
                Access::Limit(place) => {
                    *place(&mut c) = if draw % 4 == 0 { u64::MAX } else { draw >> 1 }
                }
                Access::U32(place) => *place(&mut c) = draw as u32,
                Access::Usize(place) => *place(&mut c) = (draw >> 1) as usize,
                Access::Flag(place) => *place(&mut c) = draw % 2 == 0,
                Access::Policy(place) => {
                    *place(&mut c) = if draw % 2 == 0 {
                        BalancingPolicy::Coordinated
                    } else {
                        BalancingPolicy::Kcl2Compatible
                    }
                }
                Access::Liveness(place) => {
                    *place(&mut c) = if draw % 2 == 0 {
                        Liveness::Lease
                    } else {
                        Liveness::Worker
                    }
                }
                Access::Position(place) => {
                    *place(&mut c) = match draw % 3 {
                        0 => InitialPosition::Latest,
                        1 => InitialPosition::TrimHorizon,
                        _ => InitialPosition::AtTimestamp(draw % 4_102_444_800_000),
                    }
                }
            }
        }
        c
    })
}

proptest! {
    /// What `to_toml` writes reads back to the same configuration (before validation, which a
    /// random configuration rarely passes).
    #[test]
    fn to_toml_reads_back_to_the_same_configuration(config in arbitrary_config()) {
        let text = config.to_toml();
        let settings = Settings::new().toml(&text, "round-trip.toml");
        prop_assert!(settings.is_ok(), "{text}: {:?}", settings.err());
        let mut read = DriverConfig::default();
        for (_, knob, value) in &settings.expect("checked").entries {
            prop_assert!(knob.apply(&mut read, value).is_ok());
        }
        prop_assert_eq!(read, config, "{}", text);
    }
}
