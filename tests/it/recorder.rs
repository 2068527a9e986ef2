//! Impressions end to end, through the public API, against a loopback server: the wire format
//! of every endpoint, the three modes, labels, the listener, and delivery under failure,
//! concurrency and shutdown, with exact totals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use splitkit::{
    Attributes, Client, Impression, ImpressionListener, ImpressionsMode, Key, Label, SDK_VERSION,
    SdkMetadata,
};

use crate::common::{CLOCK_TICK_MS, now_ms};
use crate::server::{
    Gate, Recorded, Reply, SdkBackend, Server, bulk_items as items, dead_port,
    delivered_impressions, eventually, flag, localhost, not_ready_until_opened, remote,
};

const WAIT: Duration = Duration::from_secs(10);
const HOUR: i64 = 3_600_000;
const BULK: &str = "/events/testImpressions/bulk";
const COUNT: &str = "/events/testImpressions/count";
const KEYS: &str = "/telemetry/v1/keys/ss";

/// `(flag, item)` of every impression delivered to `/events`, in wire order.
fn delivered(server: &Server) -> Vec<(String, Value)> {
    delivered_impressions(server, BULK)
}

/// Matching keys of the delivered impressions, each once; panics on a duplicate.
fn delivered_keys(server: &Server) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, i) in delivered(server) {
        let k = i["k"].as_str().expect("k").to_string();
        assert!(seen.insert(k.clone()), "impression of {k} delivered twice");
    }
    seen
}

/// Replaces `m` (checked to lie in `[from - one clock tick, to]`) by 0, for exact comparisons.
fn without_time(mut item: Value, from: i64, to: i64) -> Value {
    let m = item["m"].as_i64().expect("m");
    let from = from - CLOCK_TICK_MS;
    assert!((from..=to).contains(&m), "m {m} not in [{from}, {to}]");
    item["m"] = json!(0);
    item
}

/// A listener that keeps every impression with its attributes and metadata.
#[derive(Default)]
struct Collect(Mutex<Vec<(Impression, Option<Attributes>, SdkMetadata)>>);

impl ImpressionListener for Collect {
    fn on_impression(&self, i: &Impression, a: Option<&Attributes>, m: &SdkMetadata) {
        self.0
            .lock()
            .expect("collect")
            .push((i.clone(), a.cloned(), m.clone()));
    }
}

impl Collect {
    fn seen(&self) -> Vec<(Impression, Option<Attributes>, SdkMetadata)> {
        self.0.lock().expect("collect").clone()
    }
}

/// A localhost JSON flags file in a temporary directory:
/// - `quiet`: `impressionsDisabled`, `on` for everyone;
/// - `lab`: `on` for everyone, with label `pro plan` when `plan` is `pro`, else `everyone`.
fn lab_flags() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut quiet = flag("quiet", 5, &[], None, "on");
    quiet["impressionsDisabled"] = json!(true);
    let all_keys = json!({"keySelector": {"trafficType": "user", "attribute": null},
                          "matcherType": "ALL_KEYS", "negate": false});
    let lab = json!({
        "name": "lab", "trafficTypeName": "user", "killed": false, "defaultTreatment": "off",
        "changeNumber": 6, "algo": 2, "trafficAllocation": 100, "trafficAllocationSeed": 1,
        "seed": 3, "status": "ACTIVE",
        "conditions": [
            {"conditionType": "ROLLOUT",
             "matcherGroup": {"combiner": "AND", "matchers": [
                {"keySelector": {"trafficType": "user", "attribute": "plan"},
                 "matcherType": "WHITELIST", "negate": false,
                 "whitelistMatcherData": {"whitelist": ["pro"]}}]},
             "partitions": [{"treatment": "on", "size": 100}], "label": "pro plan"},
            {"conditionType": "ROLLOUT",
             "matcherGroup": {"combiner": "AND", "matchers": [all_keys]},
             "partitions": [{"treatment": "on", "size": 100}], "label": "everyone"}
        ]
    });
    let doc =
        json!({"ff": {"d": [quiet, lab], "s": -1, "t": 6}, "rbs": {"d": [], "s": -1, "t": -1}});
    let path = dir.path().join("flags.json");
    std::fs::write(&path, doc.to_string()).expect("write flags");
    (dir, path)
}

#[test]
fn bulk_payload_is_grouped_by_flag_with_exact_fields() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    let from = now_ms();
    assert_eq!(client.get_treatment("qa_alice", "new_checkout", None), "on");
    assert_eq!(
        client.get_treatment("anyone", "legacy_banner", None),
        "hidden"
    );
    assert_eq!(
        client.get_treatment(Key::new("carol", "acct-1"), "new_checkout", None),
        "on"
    );
    assert_eq!(client.get_treatment("qa_alice", "new_checkout", None), "on"); // deduped
    let to = now_ms();
    assert!(client.flush(WAIT));

    let bulk = server.requests_to(BULK);
    assert_eq!(bulk.len(), 1, "one request");
    assert_eq!(bulk[0].method, "POST");
    let mut body = bulk[0].json();
    for g in body.as_array_mut().expect("array") {
        for i in g["i"].as_array_mut().expect("i") {
            *i = without_time(i.take(), from, to);
        }
    }
    assert_eq!(
        body,
        json!([
            {"f": "new_checkout", "i": [
                {"k": "qa_alice", "t": "on", "m": 0, "c": 1_700_000_000_000i64, "r": "whitelisted"},
                {"k": "carol", "t": "on", "m": 0, "c": 1_700_000_000_000i64,
                 "r": "in segment beta_testers", "b": "acct-1"}]},
            {"f": "legacy_banner", "i": [
                {"k": "anyone", "t": "hidden", "m": 0, "c": 1_700_000_000_002i64, "r": "killed"}]}
        ]),
        "grouped by flag in first-seen order; b only with a bucketing key; no pt the first time"
    );

    // The repeat was counted: {"pf":[{"f","m","rc"}]} with the hour of the evaluation.
    let count = server.requests_to(COUNT);
    assert_eq!(count.len(), 1);
    let pf = count[0].json();
    let m = pf["pf"][0]["m"].as_i64().expect("m");
    assert!(m == from - from % HOUR || m == to - to % HOUR, "{m}");
    assert_eq!(pf, json!({"pf": [{"f": "new_checkout", "m": m, "rc": 1}]}));
    assert_eq!(
        count[0].header("SplitSDKImpressionsMode"),
        Some("OPTIMIZED")
    );
    assert!(
        server.requests_to(KEYS).is_empty(),
        "no unique keys outside none mode"
    );
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.deduplicated, s.queue.sent), (4, 1, 3));
    assert_eq!((s.counts.sent, s.local_only, s.counted_only), (1, 0, 0));
    assert!(s.is_balanced(), "{s:?}");
}

#[test]
fn headers_name_the_key_version_mode_and_machine() {
    let server = Server::start();
    let backend = SdkBackend::new();
    backend.push_flag(flag("f", 10, &["a"], None, "off"));
    backend.install(&server, "/sdk");
    let client = remote(&server, "hdr-key-42")
        .machine_ip("10.9.8.7")
        .machine_name("test-box")
        .build()
        .expect("client");
    client.block_until_ready(WAIT).expect("ready");
    client.get_treatment("a", "f", None);
    client.get_treatment("a", "f", None);
    assert!(client.flush(WAIT));
    let posts: Vec<Recorded> = [BULK, COUNT]
        .iter()
        .flat_map(|p| server.requests_to(p))
        .collect();
    assert_eq!(posts.len(), 2, "bulk and count");
    let gets = server.requests_to("/sdk/");
    assert!(!gets.is_empty());
    for r in posts.iter().chain(&gets) {
        let what = format!("{} {}", r.method, r.path);
        assert_eq!(
            r.header("Authorization"),
            Some("Bearer hdr-key-42"),
            "{what}"
        );
        assert_eq!(r.header("SplitSDKVersion"), Some(SDK_VERSION), "{what}");
        assert!(SDK_VERSION.starts_with("rust-"));
        assert_eq!(r.header("SplitSDKMachineIP"), Some("10.9.8.7"), "{what}");
        assert_eq!(r.header("SplitSDKMachineName"), Some("test-box"), "{what}");
    }
    for r in &posts {
        assert_eq!(r.header("SplitSDKImpressionsMode"), Some("OPTIMIZED"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
    let m = client.metadata();
    assert_eq!(
        (m.machine_ip.as_deref(), m.machine_name.as_deref()),
        (Some("10.9.8.7"), Some("test-box"))
    );
}

#[test]
fn machine_headers_are_absent_when_ip_addresses_are_disabled() {
    let server = Server::start();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .ip_addresses_enabled(false)
        .machine_ip("10.9.8.7")
        .machine_name("test-box")
        .impressions_mode(ImpressionsMode::Debug)
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    client.get_treatment("a", "new_checkout", None);
    assert!(client.flush(WAIT));
    let bulk = server.requests_to(BULK);
    assert_eq!(bulk.len(), 1);
    assert_eq!(bulk[0].header("SplitSDKImpressionsMode"), Some("DEBUG"));
    assert_eq!(bulk[0].header("SplitSDKMachineIP"), None);
    assert_eq!(bulk[0].header("SplitSDKMachineName"), None);
    assert_eq!(bulk[0].header("Authorization"), Some("Bearer localhost"));
    let meta = &seen.seen()[0].2;
    assert_eq!((&meta.machine_ip, &meta.machine_name), (&None, &None));
    assert_eq!(meta.sdk_version, SDK_VERSION);
}

#[test]
fn debug_mode_sends_every_impression_with_pt_on_repeats() {
    let server = Server::start();
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    for _ in 0..3 {
        assert_eq!(client.get_treatment("qa_bob", "new_checkout", None), "on");
    }
    assert!(client.flush(WAIT));
    let got = delivered(&server);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].1.get("pt").is_none(), "first time: no pt");
    assert_eq!(got[1].1["pt"], got[0].1["m"]);
    assert_eq!(got[2].1["pt"], got[1].1["m"]);
    assert!(
        server.requests_to(COUNT).is_empty(),
        "debug mode counts nothing"
    );
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.deduplicated, s.queue.sent), (3, 0, 3));
    assert!(s.is_balanced());
}

#[test]
fn short_and_long_keys_reach_the_wire_the_same_way() {
    // Keys up to QUEUED_KEY_BYTES together are queued inline; longer ones as a whole
    // impression on the heap. Both must give the same items, pt included.
    let (_dir, path) = lab_flags();
    let server = Server::start();
    let client = localhost(&server)
        .split_file(&path)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    let at_bound = "a".repeat(splitkit::limits::QUEUED_KEY_BYTES);
    let over = "b".repeat(splitkit::limits::QUEUED_KEY_BYTES + 1);
    // Matching and bucketing key at the bound, and one past it (the dedupe key is the
    // matching key, so the two need different ones).
    let matching = "c".repeat(splitkit::limits::QUEUED_KEY_BYTES - 3);
    let matching_over = "e".repeat(splitkit::limits::QUEUED_KEY_BYTES - 3);
    let escaped = "d\"\\ü\n".to_string();
    let keys: [Key<'_>; 5] = [
        Key::from(at_bound.as_str()),
        Key::from(over.as_str()),
        Key::new(&matching, "acc"),
        Key::new(&matching_over, "acct"),
        Key::from(escaped.as_str()),
    ];
    let from = now_ms();
    for _ in 0..2 {
        for k in keys {
            assert_eq!(client.get_treatment(k, "lab", None), "on");
        }
    }
    let to = now_ms();
    assert!(client.flush(WAIT));
    let got = delivered(&server);
    assert_eq!(got.len(), 10, "{got:?}");
    for (n, (f, item)) in got.into_iter().enumerate() {
        assert_eq!(f, "lab");
        let k = keys[n % 5];
        let pt = item.get("pt").cloned();
        assert_eq!(pt.is_some(), n >= 5, "pt only on the repeat: {item}");
        let mut expected = json!({"k": k.matching_key, "t": "on", "m": 0, "c": 6, "r": "everyone"});
        if let Some(b) = k.bucketing_key {
            expected["b"] = json!(b);
        }
        if let Some(pt) = pt {
            expected["pt"] = pt;
        }
        assert_eq!(without_time(item, from, to), expected);
    }
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.queue.sent), (10, 10));
    assert!(s.is_balanced(), "{s:?}");
}

#[test]
fn optimized_mode_dedupes_within_the_hour_and_counts_the_repeats() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    for _ in 0..5 {
        client.get_treatment("qa_alice", "new_checkout", None);
        client.get_treatment("x", "legacy_banner", None);
    }
    client.get_treatment("y", "legacy_banner", None);
    assert!(client.flush(WAIT));
    let keys: Vec<(String, String)> = delivered(&server)
        .into_iter()
        .map(|(f, i)| (f, i["k"].as_str().expect("k").to_string()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("new_checkout".to_string(), "qa_alice".to_string()),
            ("legacy_banner".to_string(), "x".to_string()),
            ("legacy_banner".to_string(), "y".to_string()),
        ]
    );
    let count = server.requests_to(COUNT);
    assert_eq!(count.len(), 1);
    let rc: BTreeMap<String, i64> = count[0].json()["pf"]
        .as_array()
        .expect("pf")
        .iter()
        .map(|c| {
            let m = c["m"].as_i64().expect("m");
            assert_eq!(m % HOUR, 0, "m is truncated to the hour");
            (
                c["f"].as_str().expect("f").to_string(),
                c["rc"].as_i64().expect("rc"),
            )
        })
        .collect();
    assert_eq!(
        rc,
        BTreeMap::from([("legacy_banner".into(), 4), ("new_checkout".into(), 4)])
    );
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.deduplicated, s.queue.sent), (11, 8, 3));
    assert!(s.is_balanced());
}

#[test]
fn none_mode_sends_counts_and_unique_keys_only() {
    let server = Server::start();
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::None)
        .build()
        .expect("client");
    let from = now_ms();
    for k in ["b", "a", "b", "a"] {
        client.get_treatment(k, "new_checkout", None);
    }
    client.get_treatment("z", "legacy_banner", None);
    let to = now_ms();
    assert!(client.flush(WAIT));
    assert!(
        server.requests_to(BULK).is_empty(),
        "nothing queued in none mode"
    );

    let count = server.requests_to(COUNT);
    assert_eq!(count.len(), 1);
    assert_eq!(count[0].header("SplitSDKImpressionsMode"), Some("NONE"));
    let mut pf = count[0].json()["pf"].as_array().expect("pf").clone();
    pf.sort_by_key(|c| c["f"].as_str().unwrap_or_default().to_string());
    let m = pf[0]["m"].as_i64().expect("m");
    assert!(m == from - from % HOUR || m == to - to % HOUR);
    assert_eq!(
        Value::Array(pf),
        json!([{"f": "legacy_banner", "m": m, "rc": 1}, {"f": "new_checkout", "m": m, "rc": 4}])
    );

    let keys = server.requests_to(KEYS);
    assert_eq!(keys.len(), 1, "unique keys go to the telemetry URL");
    assert_eq!(keys[0].header("Authorization"), Some("Bearer localhost"));
    let mut ks = keys[0].json()["keys"].as_array().expect("keys").clone();
    ks.sort_by_key(|k| k["f"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        Value::Array(ks),
        json!([{"f": "legacy_banner", "ks": ["z"]}, {"f": "new_checkout", "ks": ["a", "b"]}])
    );
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.counted_only, s.queue.recorded), (5, 5, 0));
    assert_eq!((s.counts.sent, s.unique_keys.sent), (2, 2));
    assert!(s.is_balanced());
}

#[test]
fn a_flag_with_impressions_disabled_is_only_counted() {
    let (_dir, path) = lab_flags();
    let server = Server::start();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .split_file(&path)
        .impressions_mode(ImpressionsMode::Debug)
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    assert_eq!(client.get_treatment("k1", "quiet", None), "on");
    assert_eq!(client.get_treatment("k2", "quiet", None), "on");
    assert_eq!(client.get_treatment("k1", "lab", None), "on");
    assert!(client.flush(WAIT));
    let got: Vec<String> = delivered(&server).into_iter().map(|(f, _)| f).collect();
    assert_eq!(got, vec!["lab"], "quiet is not sent");
    let count = server.requests_to(COUNT);
    assert_eq!(count.len(), 1);
    assert_eq!(count[0].json()["pf"][0]["f"], "quiet");
    assert_eq!(count[0].json()["pf"][0]["rc"], 2);
    let keys = server.requests_to(KEYS);
    assert_eq!(
        keys[0].json(),
        json!({"keys": [{"f": "quiet", "ks": ["k1", "k2"]}]})
    );
    let seen = seen.seen();
    assert_eq!(seen.len(), 3, "the listener sees them all");
    assert!(seen[0].0.impressions_disabled() && !seen[2].0.impressions_disabled());
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.counted_only, s.queue.sent), (3, 2, 1));
    assert!(s.is_balanced());
}

/// Borrowed attributes decide as owned ones do, and reach the listener as an owned copy;
/// no attributes reach it as `None`, an empty set as an empty set.
#[test]
fn borrowed_attributes_decide_and_reach_the_listener_as_owned() {
    let (_dir, path) = lab_flags();
    let server = Server::start();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .split_file(&path)
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    let plan = String::from("pro");
    let tags = ["beta", "mobile"];
    let d = client.evaluate(
        "k",
        "lab",
        &[("plan", (&plan).into()), ("tags", (&tags).into())],
    );
    assert_eq!(d.label.map(|l| l.to_string()).as_deref(), Some("pro plan"));
    let d = client.evaluate(
        "k",
        "lab",
        &[("plan", "free".into()), ("plan", (&plan).into())],
    );
    assert_eq!(
        d.label.map(|l| l.to_string()).as_deref(),
        Some("pro plan"),
        "the last pair of a name counts"
    );
    let d = client.evaluate("k", "lab", &[("plan", "free".into())]);
    assert_eq!(d.label.map(|l| l.to_string()).as_deref(), Some("everyone"));
    assert_eq!(client.get_treatment("k", "lab", None), "on");
    assert_eq!(client.get_treatment("k", "lab", &Attributes::new()), "on");
    assert!(client.flush(WAIT));
    let seen: Vec<Option<Attributes>> = seen.seen().into_iter().map(|(_, a, _)| a).collect();
    assert_eq!(
        seen,
        vec![
            Some(
                Attributes::new()
                    .with("plan", "pro")
                    .with("tags", ["beta", "mobile"])
            ),
            Some(Attributes::new().with("plan", "pro")),
            Some(Attributes::new().with("plan", "free")),
            None,
            Some(Attributes::new()),
        ]
    );
}

#[test]
fn without_labels_nothing_carries_r_and_dedupe_ignores_the_label() {
    let (_dir, path) = lab_flags();
    let server = Server::start();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .split_file(&path)
        .labels_enabled(false)
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    let pro = Attributes::new().with("plan", "pro");
    // Same key, flag, treatment and change number; the labels differ ("everyone", "pro plan").
    assert_eq!(client.get_treatment("k", "lab", None), "on");
    assert_eq!(client.get_treatment("k", "lab", Some(&pro)), "on");
    assert!(client.flush(WAIT));
    let got = delivered(&server);
    assert_eq!(
        got.len(),
        1,
        "the second one is a duplicate once labels are gone"
    );
    assert!(
        got[0].1.get("r").is_none(),
        "no r on the wire: {}",
        got[0].1
    );
    let seen = seen.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|(i, _, _)| i.label().is_none()));
    assert_eq!(
        seen[1].1.as_ref(),
        Some(&pro),
        "attributes reach the listener"
    );
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.deduplicated, s.queue.sent), (2, 1, 1));

    // With labels, the same two evaluations are two impressions.
    let server2 = Server::start();
    let labelled = localhost(&server2)
        .split_file(&path)
        .build()
        .expect("client");
    labelled.get_treatment("k", "lab", None);
    labelled.get_treatment("k", "lab", Some(&pro));
    assert!(labelled.flush(WAIT));
    let labels: Vec<Value> = delivered(&server2)
        .into_iter()
        .map(|(_, i)| i["r"].clone())
        .collect();
    assert_eq!(labels, vec![json!("everyone"), json!("pro plan")]);
}

#[test]
fn no_impression_for_definition_not_found_or_invalid_input() {
    let server = Server::start();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    let d = client.evaluate("k", "no_such_flag", None);
    assert_eq!((d.treatment.as_str(), d.impression), ("control", false));
    assert_eq!(d.label, Some(Label::DefinitionNotFound));
    assert_eq!(client.get_treatment("", "new_checkout", None), "control");
    assert_eq!(client.get_treatment("k", "  ", None), "control");
    assert_eq!(
        client.get_treatment(Key::new("k", ""), "new_checkout", None),
        "control"
    );
    let long = "x".repeat(251);
    assert_eq!(
        client.get_treatment(long.as_str(), "new_checkout", None),
        "control"
    );
    let many = client.get_treatments("", &["new_checkout", "legacy_banner"], None);
    assert!(many.values().all(|t| t == "control"));
    client.get_treatments("k", &["nope", ""], None);
    // The one real evaluation.
    client.get_treatment("marker", "legacy_banner", None);
    assert!(client.flush(WAIT));
    let got = delivered(&server);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1["k"], "marker");
    assert_eq!(seen.seen().len(), 1);
    assert_eq!(client.stats().impressions.recorded, 1);
}

#[test]
fn evaluations_before_ready_in_remote_mode_report_not_ready() {
    let server = Server::start();
    let gate = not_ready_until_opened(&server);
    let client = remote(&server, "nr-key")
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    let d = client.evaluate("a", "f", None);
    assert!(!client.is_ready());
    assert_eq!(d.treatment, "control");
    assert_eq!(d.label, Some(Label::NotReady));
    assert!(d.impression);
    gate.open();
    client.block_until_ready(WAIT).expect("ready");
    assert_eq!(client.get_treatment("a", "f", None), "on");
    assert!(client.flush(WAIT));
    let got: Vec<Value> = delivered(&server).into_iter().map(|(_, i)| i).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (&got[0]["t"], &got[0]["r"], &got[0]["c"]),
        (&json!("control"), &json!("not ready"), &json!(0))
    );
    assert_eq!(
        (&got[1]["t"], &got[1]["r"]),
        (&json!("on"), &json!("whitelisted"))
    );
}

#[test]
fn the_listener_sees_every_impression_including_deduplicated_ones() {
    let server = Server::start();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .machine_name("lbox")
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    let attrs = Attributes::new().with("plan", "free");
    for _ in 0..5 {
        client.get_treatment("qa_alice", "new_checkout", Some(&attrs));
    }
    assert!(client.flush(WAIT));
    let seen = seen.seen();
    assert_eq!(seen.len(), 5);
    for (i, a, m) in &seen {
        assert_eq!(
            (i.key(), i.flag(), i.treatment(), i.label()),
            ("qa_alice", "new_checkout", "on", Some("whitelisted"))
        );
        assert_eq!(i.change_number(), Some(1_700_000_000_000));
        assert_eq!(a.as_ref(), Some(&attrs));
        assert_eq!(m.machine_name.as_deref(), Some("lbox"));
    }
    assert_eq!(delivered(&server).len(), 1);
    let s = client.stats().impressions;
    assert_eq!(s.deduplicated, 4);
    let l = s.listeners[0];
    assert_eq!((l.recorded, l.sent, l.listener_panics), (5, 5, 0));
}

#[test]
fn in_debug_mode_listeners_and_the_wire_see_the_same_pt() {
    // Without a listener the worker sets `pt`; with one it is set when recording, so
    // that the listener sees it too. Both give the same values.
    for with_listener in [false, true] {
        let server = Server::start();
        let seen = Arc::new(Collect::default());
        let mut builder = localhost(&server).impressions_mode(ImpressionsMode::Debug);
        if with_listener {
            builder = builder.impression_listener(seen.clone());
        }
        let client = builder.build().expect("client");
        for key in ["qa_alice", "qa_bob", "qa_alice", "qa_alice"] {
            client.get_treatment(key, "new_checkout", None);
        }
        assert!(client.flush(WAIT));
        let got: Vec<Value> = delivered(&server).into_iter().map(|(_, i)| i).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        let pt: Vec<Option<i64>> = got.iter().map(|i| i["pt"].as_i64()).collect();
        let m: Vec<i64> = got.iter().map(|i| i["m"].as_i64().expect("m")).collect();
        assert_eq!(
            pt,
            [None, None, Some(m[0]), Some(m[2])],
            "listener: {with_listener}"
        );
        if with_listener {
            let heard: Vec<Option<i64>> = seen
                .seen()
                .iter()
                .map(|(i, _, _)| i.previous_time())
                .collect();
            assert_eq!(heard, pt);
        }
    }
}

/// Blocks on a gate the first time, panics for key `boom`.
struct Troublesome {
    gate: Gate,
    calls: Mutex<Vec<String>>,
}

impl ImpressionListener for Troublesome {
    fn on_impression(&self, i: &Impression, _: Option<&Attributes>, _: &SdkMetadata) {
        self.gate.wait(Duration::from_secs(15));
        assert_ne!(i.key(), "boom", "listener failure injected by the test");
        self.calls.lock().expect("calls").push(i.key().to_string());
    }
}

#[test]
fn a_slow_or_panicking_listener_never_blocks_evaluation() {
    let server = Server::start();
    let listener = Arc::new(Troublesome {
        gate: Gate::closed(),
        calls: Mutex::new(Vec::new()),
    });
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .impression_listener(listener.clone())
        .build()
        .expect("client");
    let start = Instant::now();
    assert_eq!(
        client.get_treatment("boom", "legacy_banner", None),
        "hidden"
    );
    for n in 0..200 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "evaluation waited on the listener: {took:?}"
    );
    assert!(
        listener.calls.lock().expect("calls").is_empty(),
        "still blocked"
    );
    listener.gate.open();
    assert!(client.flush(WAIT));
    assert_eq!(listener.calls.lock().expect("calls").len(), 200);
    let s = client.stats().impressions;
    let l = s.listeners[0];
    assert_eq!(
        (l.recorded, l.sent, l.listener_panics, l.dropped_rejected),
        (201, 200, 1, 1)
    );
    assert_eq!(s.queue.sent, 201, "all delivered");
    assert!(s.is_balanced());
}

#[test]
fn server_down_then_up_loses_nothing() {
    let port = dead_port();
    let client = splitkit::ClientBuilder::new("localhost")
        .split_file(crate::server::examples("flags.json"))
        .events_url(format!("http://127.0.0.1:{port}/events"))
        .telemetry_url(format!("http://127.0.0.1:{port}/telemetry"))
        .impressions_mode(ImpressionsMode::Debug)
        .request_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    for n in 0..20 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    assert!(
        !client.flush(Duration::from_millis(200)),
        "nothing can be delivered while the server is down"
    );
    assert!(eventually(WAIT, || client
        .stats()
        .impressions
        .queue
        .failed_attempts
        >= 1));
    let server = Server::start_on(port);
    assert!(client.flush(WAIT), "delivered after recovery");
    let keys = delivered_keys(&server);
    assert_eq!(keys.len(), 20);
    let s = client.stats().impressions;
    assert_eq!((s.queue.sent, s.queue.dropped()), (20, 0));
    assert!(s.queue.failed_attempts >= 1);
    assert!(s.is_balanced());
}

#[test]
fn a_500_is_retried_until_delivered() {
    let server = Server::start();
    server.script(BULK, [Reply::status(500)]);
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    for n in 0..10 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    assert!(client.flush(WAIT));
    let bulk = server.requests_to(BULK);
    assert_eq!(
        bulk.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 200]
    );
    assert_eq!(bulk[0].body, bulk[1].body, "the same batch again");
    assert_eq!(delivered_keys(&server).len(), 10);
    let s = client.stats().impressions;
    assert_eq!(
        (s.queue.sent, s.queue.failed_attempts, s.queue.dropped()),
        (10, 1, 0)
    );
    assert!(s.is_balanced());
}

#[test]
fn a_429_waits_for_retry_after() {
    let server = Server::start();
    server.script(BULK, [Reply::status(429).header("Retry-After", "1")]);
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    client.get_treatment("k", "legacy_banner", None);
    assert!(client.flush(WAIT));
    let bulk = server.requests_to(BULK);
    assert_eq!(bulk.len(), 2);
    let gap = bulk[1].at - bulk[0].at;
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_secs(3),
        "retried after {gap:?}, Retry-After said 1 s"
    );
    assert_eq!(delivered_keys(&server).len(), 1);
}

#[test]
fn a_413_splits_the_batch_until_it_fits() {
    let server = Server::start();
    // Accepts at most two impressions per request.
    server.route(BULK, |r| {
        if items(r).len() > 2 {
            Reply::status(413)
        } else {
            Reply::ok()
        }
    });
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    for n in 0..8 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    assert!(client.flush(WAIT));
    let sizes: Vec<(u16, usize)> = server
        .requests_to(BULK)
        .iter()
        .map(|r| (r.status, items(r).len()))
        .collect();
    assert_eq!(
        sizes,
        vec![
            (413, 8),
            (413, 4),
            (200, 2),
            (200, 2),
            (413, 4),
            (200, 2),
            (200, 2)
        ]
    );
    let keys: Vec<String> = delivered(&server)
        .into_iter()
        .map(|(_, i)| i["k"].as_str().expect("k").to_string())
        .collect();
    let expected: Vec<String> = (0..8).map(|n| format!("k{n}")).collect();
    assert_eq!(keys, expected, "all delivered, in order");
    let s = client.stats().impressions;
    assert_eq!((s.queue.sent, s.queue.dropped()), (8, 0));
    assert!(s.is_balanced());
}

#[test]
fn concurrent_evaluation_delivers_exact_totals() {
    const THREADS: usize = 4;
    const EACH: usize = 500;
    let server = Server::start();
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .impressions_bulk_size(300)
        .build()
        .expect("client");
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = client.clone();
            thread::spawn(move || {
                for n in 0..EACH {
                    c.get_treatment(format!("t{t}-{n}").as_str(), "new_checkout", None);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert!(client.flush(WAIT));
    let keys = delivered_keys(&server);
    assert_eq!(keys.len(), THREADS * EACH);
    let bulk = server.requests_to(BULK);
    assert!(bulk.len() >= (THREADS * EACH) / 300);
    assert!(
        bulk.iter().all(|r| items(r).len() <= 300),
        "at most the bulk size per request"
    );
    let s = client.stats().impressions;
    assert_eq!(s.recorded, (THREADS * EACH) as u64);
    assert_eq!(
        (s.queue.sent, s.queue.dropped()),
        ((THREADS * EACH) as u64, 0)
    );
    assert!(s.is_balanced(), "{s:?}");
}

#[test]
fn destroy_delivers_everything_and_is_idempotent() {
    let server = Server::start();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    for n in 0..50 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    assert!(client.destroy(WAIT));
    assert_eq!(delivered_keys(&server).len(), 50);
    assert_eq!(seen.seen().len(), 50);
    let start = Instant::now();
    assert!(client.destroy(WAIT), "a second destroy is fine");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(client.is_destroyed());
    let d = client.evaluate("k0", "legacy_banner", None);
    assert_eq!((d.treatment.as_str(), d.impression), ("control", false));
    assert!(client.flush(Duration::from_secs(1)));
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.queue.sent), (50, 50));
    assert!(s.is_balanced());
    assert_eq!(server.requests_to(BULK).len(), 1);
}

#[test]
fn dropping_the_last_handle_delivers_everything() {
    let server = Server::start();
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    let other = client.clone();
    for n in 0..30 {
        other.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    drop(other);
    assert!(
        server.requests_to(BULK).is_empty(),
        "a clone's drop is not a shutdown"
    );
    drop(client);
    assert_eq!(
        delivered_keys(&server).len(),
        30,
        "delivered before drop returned"
    );
}

/// A client with a queue of 4 and a bulk size of 1, whose impressions requests hang until
/// the gate opens.
fn held_tiny_queue(mode: ImpressionsMode) -> (Server, Gate, Client) {
    let server = Server::start();
    let gate = Gate::closed();
    let g = gate.clone();
    server.route(BULK, move |_| Reply::ok().held(&g));
    let client = localhost(&server)
        .impressions_mode(mode)
        .impressions_queue_size(4)
        .impressions_bulk_size(1)
        .build()
        .expect("client");
    (server, gate, client)
}

#[test]
fn a_full_queue_drops_and_counts_and_stats_balance() {
    let (server, gate, client) = held_tiny_queue(ImpressionsMode::Debug);
    for n in 0..50 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    let s = client.stats().impressions;
    assert!(s.queue.dropped_queue_full > 0, "{s:?}");
    assert!(s.queue.is_consistent());
    gate.open();
    assert!(client.flush(WAIT));
    let s = client.stats().impressions;
    let sent = s.queue.sent;
    assert_eq!(sent + s.queue.dropped_queue_full, 50, "{s:?}");
    assert_eq!(s.queue.dropped(), s.queue.dropped_queue_full);
    assert!(s.is_balanced(), "{s:?}");
    assert_eq!(delivered_keys(&server).len() as u64, sent);
    assert!(client.destroy(WAIT));
    assert!(client.stats().impressions.is_balanced());
}

#[test]
fn a_full_queue_loses_no_count_in_optimized_mode() {
    // The impressions worker applies the mode as it takes impressions; one that finds the
    // queue full has it applied on the evaluating thread instead, so a repeat is counted
    // (not dropped) whether or not the queue had room.
    let (server, gate, client) = held_tiny_queue(ImpressionsMode::Optimized);
    client.get_treatment("k", "legacy_banner", None);
    // The first impression's request hangs: the worker takes nothing more meanwhile.
    assert!(eventually(WAIT, || !server.requests_to(BULK).is_empty()));
    for _ in 0..49 {
        client.get_treatment("k", "legacy_banner", None);
    }
    gate.open();
    assert!(client.flush(WAIT));
    let s = client.stats().impressions;
    assert_eq!(
        (s.recorded, s.deduplicated, s.queue.sent, s.queue.dropped()),
        (50, 49, 1, 0),
        "{s:?}"
    );
    assert!(s.is_balanced(), "{s:?}");
    let rc = counted(&server);
    assert_eq!(rc, 49);
}

/// The sum of the counts (`rc`) the server received.
fn counted(server: &Server) -> i64 {
    server
        .requests_to(COUNT)
        .iter()
        .flat_map(|r| r.json()["pf"].as_array().cloned().unwrap_or_default())
        .map(|c| c["rc"].as_i64().expect("rc"))
        .sum()
}

#[test]
fn destroy_sends_the_counts_of_impressions_still_queued() {
    // The impressions worker counts what `none` mode does not send: destroy drains the
    // counts and unique keys only once it has taken every queued impression.
    let server = Server::start();
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::None)
        .impressions_queue_size(100_000)
        .build()
        .expect("client");
    for n in 0..1000 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    assert!(client.destroy(WAIT));
    let rc = counted(&server);
    assert_eq!(rc, 1000);
    let keys: BTreeSet<String> = server
        .requests_to(KEYS)
        .iter()
        .flat_map(|r| r.json()["keys"].as_array().cloned().unwrap_or_default())
        .flat_map(|k| k["ks"].as_array().cloned().unwrap_or_default())
        .map(|k| k.as_str().expect("key").to_string())
        .collect();
    assert_eq!(keys.len(), 1000);
    let s = client.stats().impressions;
    assert_eq!(
        (s.recorded, s.counted_only, s.queue.recorded),
        (1000, 1000, 0)
    );
    assert!(s.is_balanced(), "{s:?}");
}

#[test]
fn periodic_and_threshold_sends_need_no_flush() {
    let server = Server::start();
    let client = localhost(&server)
        .enforce_minimum_rates(false)
        .impressions_bulk_size(3)
        .impression_counts_refresh_rate(Duration::from_millis(50))
        .build()
        .expect("client");
    // Three queued impressions reach the bulk size: sent at once.
    for k in ["a", "b", "c"] {
        client.get_treatment(k, "legacy_banner", None);
    }
    let bulk = server.expect_requests(BULK, 1, WAIT);
    assert_eq!(items(&bulk[0]).len(), 3);
    // A repeat is counted, and the count is sent at its period.
    client.get_treatment("a", "legacy_banner", None);
    let count = server.expect_requests(COUNT, 1, WAIT);
    assert_eq!(count[0].json()["pf"][0]["rc"], 1);

    // The impressions period too.
    let server2 = Server::start();
    let periodic = localhost(&server2)
        .enforce_minimum_rates(false)
        .impressions_refresh_rate(Duration::from_millis(50))
        .build()
        .expect("client");
    periodic.get_treatment("a", "legacy_banner", None);
    let bulk = server2.expect_requests(BULK, 1, WAIT);
    assert_eq!(items(&bulk[0]).len(), 1);
}

#[test]
fn unique_keys_are_sent_early_when_many() {
    let server = Server::start();
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::None)
        .build()
        .expect("client");
    let n = splitkit::limits::UNIQUE_KEYS_EARLY_FLUSH;
    for i in 0..n {
        client.get_treatment(format!("u{i}").as_str(), "legacy_banner", None);
    }
    // The early drain happens (the keys move to the unique-keys queue) ...
    assert!(
        eventually(WAIT, || client.stats().impressions.unique_keys.recorded
            >= 1),
        "no early drain: {:?}",
        client.stats().impressions
    );
    eprintln!(
        "unique keys after the early drain: {:?}",
        client.stats().impressions.unique_keys
    );
    // ... and they must then be posted, not wait for the 900 s period.
    let keys = server.expect_requests(KEYS, 1, Duration::from_secs(3));
    let ks = keys[0].json()["keys"][0]["ks"]
        .as_array()
        .expect("ks")
        .len();
    assert_eq!(ks, n, "every key, without waiting for the period");
    assert!(server.requests_to(BULK).is_empty());
}

#[test]
fn localhost_without_an_events_url_sends_nothing_and_counts_it() {
    let client = splitkit::ClientBuilder::new("localhost")
        .split_file(crate::server::examples("flags.json"))
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    assert_eq!(client.config().events_url(), None);
    client.get_treatment("a", "legacy_banner", None);
    client.get_treatment("a", "legacy_banner", None);
    assert!(client.flush(WAIT));
    let s = client.stats().impressions;
    assert_eq!((s.recorded, s.local_only, s.queue.recorded), (2, 2, 0));
    assert!(s.is_balanced());
}

#[test]
fn localhost_sends_unique_keys_to_the_events_url_unless_told_otherwise() {
    let server = Server::start();
    let client = splitkit::ClientBuilder::new("localhost")
        .split_file(crate::server::examples("flags.json"))
        .events_url(server.url("/events"))
        .impressions_mode(ImpressionsMode::None)
        .build()
        .expect("client");
    let events = server.url("/events");
    assert_eq!(client.config().telemetry_url(), Some(events.as_str()));
    client.get_treatment("a", "legacy_banner", None);
    assert!(client.flush(WAIT));
    let keys = server.expect_requests("/events/v1/keys/ss", 1, WAIT);
    assert_eq!(keys[0].json()["keys"][0]["ks"], json!(["a"]));
    assert!(server.requests_to(KEYS).is_empty());
}

#[test]
fn a_400_is_dropped_and_counted_not_retried() {
    let server = Server::start();
    server.script(BULK, [Reply::status(400)]);
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    client.get_treatment("a", "legacy_banner", None);
    assert!(client.flush(WAIT), "a rejected batch is resolved");
    client.get_treatment("b", "legacy_banner", None);
    assert!(client.flush(WAIT));
    let statuses: Vec<u16> = server.requests_to(BULK).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![400, 200], "not retried");
    let s = client.stats().impressions;
    assert_eq!((s.queue.sent, s.queue.dropped_rejected), (1, 1));
    assert!(s.is_balanced());
}

#[test]
fn destroy_is_bounded_when_the_server_hangs() {
    let server = Server::start();
    let gate = Gate::closed();
    let g = gate.clone();
    server.route(BULK, move |_| Reply::ok().held(&g));
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    for n in 0..10 {
        client.get_treatment(format!("k{n}").as_str(), "legacy_banner", None);
    }
    assert!(
        !client.flush(Duration::from_millis(100)),
        "the request hangs"
    );
    server.expect_requests(BULK, 1, WAIT);
    let start = Instant::now();
    let finished = client.destroy(Duration::from_millis(500));
    let took = start.elapsed();
    assert!(!finished, "a request is still in flight");
    assert!(
        took < Duration::from_secs(2),
        "destroy(500 ms) took {took:?}"
    );
    assert!(client.is_destroyed());
    assert_eq!(client.get_treatment("k0", "legacy_banner", None), "control");
    // The request in flight ends when the server answers; its items are then accounted for.
    gate.open();
    assert!(eventually(WAIT, || client
        .stats()
        .impressions
        .queue
        .queued_now
        == 0));
    let s = client.stats().impressions;
    assert_eq!(s.queue.sent + s.queue.dropped(), 10, "{s:?}");
    assert!(s.is_balanced(), "{s:?}");
}

#[test]
fn destroy_while_evaluating_keeps_stats_balanced() {
    // The race is narrow: a few rounds make it show up reliably.
    for _round in 0..3 {
        let server = Server::start();
        let seen = Arc::new(Collect::default());
        let client = localhost(&server)
            .impressions_mode(ImpressionsMode::Debug)
            .impression_listener(seen.clone())
            .build()
            .expect("client");
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = client.clone();
                thread::spawn(move || {
                    let mut n = 0u64;
                    while !c.is_destroyed() {
                        c.get_treatment(format!("t{t}-{n}").as_str(), "new_checkout", None);
                        n += 1;
                    }
                })
            })
            .collect();
        assert!(eventually(WAIT, || client.stats().impressions.recorded >= 2_000));
        assert!(client.destroy(WAIT));
        for h in handles {
            h.join().expect("thread");
        }
        let s = client.stats().impressions;
        assert_eq!(delivered_keys(&server).len() as u64, s.queue.sent, "{s:?}");
        assert_eq!(
            s.queue.rejected_after_shutdown, 0,
            "impressions recorded but refused by the closed queue: {s:?}"
        );
        assert!(s.is_balanced(), "{s:?}");
        assert_eq!(s.recorded, s.queue.sent + s.queue.dropped(), "{s:?}");
        // Four threads evaluating flat out can outrun the listener (a release build does):
        // its queue is bounded, and what did not fit is counted as dropped for a full queue.
        // Nothing else: shutdown neither refused nor dropped anything it had taken.
        let l = &s.listeners[0];
        assert_eq!(
            seen.seen().len() as u64 + l.dropped_queue_full,
            s.recorded,
            "the listener saw each one or counted it: {l:?}"
        );
        assert_eq!(
            l.dropped() - l.dropped_queue_full + l.rejected_after_shutdown,
            0,
            "{l:?}"
        );
    }
}

#[test]
fn a_hanging_request_times_out_and_is_retried() {
    let server = Server::start();
    // The first answer comes after the client's request timeout.
    server.script(BULK, [Reply::ok().delay(Duration::from_millis(1500))]);
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    client.get_treatment("k", "legacy_banner", None);
    assert!(client.flush(WAIT));
    let bulk = server.requests_to(BULK);
    assert_eq!(bulk.len(), 2, "timed out, then sent again");
    assert_eq!(bulk[0].body, bulk[1].body);
    let s = client.stats().impressions;
    assert_eq!(
        (s.queue.sent, s.queue.failed_attempts, s.queue.dropped()),
        (1, 1, 0)
    );
    assert!(s.is_balanced());
}

#[test]
fn destroy_delivers_impressions_while_the_sdk_api_hangs() {
    let server = Server::start();
    let backend = SdkBackend::new();
    backend.push_flag(flag("f", 10, &["a"], None, "off"));
    backend.install(&server, "/sdk");
    let client = remote(&server, "hang-key")
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    client.block_until_ready(WAIT).expect("ready");
    // From now on the SDK API hangs (the events API is fine): a poll is left in flight.
    let gate = Gate::closed();
    let n = server.requests_to("/sdk/splitChanges").len();
    server.script("/sdk/splitChanges", [Reply::ok().held(&gate)]);
    client.sync_now();
    server.expect_requests("/sdk/splitChanges", n + 1, WAIT);
    for k in 0..10 {
        client.get_treatment(format!("k{k}").as_str(), "f", None);
    }
    let start = Instant::now();
    client.destroy(Duration::from_secs(2));
    let took = start.elapsed();
    gate.open();
    assert!(took < Duration::from_secs(4), "destroy(2 s) took {took:?}");
    let s = client.stats().impressions;
    assert_eq!(
        delivered_keys(&server).len(),
        10,
        "the impressions were dropped because the SDK API hung: {s:?}"
    );
    assert_eq!(s.queue.dropped_shutdown, 0, "{s:?}");
}
