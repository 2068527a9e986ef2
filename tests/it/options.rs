//! The 2025 SDK features through the public API, against a loopback server: fallback
//! treatments, impression properties, the `default rule` label option and typed configs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use splitkit::{
    Attributes, Client, Error, EvaluationOptions, FallbackTreatment, ImpressionsMode, Label,
    Properties, Snapshot,
};

use crate::common::{Collect, logs};
use crate::server::{Server, delivered_impressions, localhost, not_ready_until_opened, remote};

const WAIT: Duration = Duration::from_secs(10);
const BULK: &str = "/events/testImpressions/bulk";

/// `(flag, item)` of every impression delivered to `/events`, in wire order.
fn delivered(server: &Server) -> Vec<(String, Value)> {
    delivered_impressions(server, BULK)
}

fn condition(label: &str, matcher: Value, treatment: &str) -> Value {
    json!({"conditionType": "ROLLOUT",
           "matcherGroup": {"combiner": "AND", "matchers": [matcher]},
           "partitions": [{"treatment": treatment, "size": 100}], "label": label})
}

fn definition(name: &str, killed: bool, default: &str, conditions: Vec<Value>) -> Value {
    json!({"name": name, "trafficTypeName": "user", "killed": killed,
           "defaultTreatment": default, "changeNumber": 7, "algo": 2,
           "trafficAllocation": 100, "trafficAllocationSeed": 1, "seed": 3,
           "status": "ACTIVE", "conditions": conditions,
           "configurations": {"on": "{\"color\": \"blue\", \"size\": 2}"}})
}

/// A flags file:
/// - `everyone`: `on` (with a configuration) for every key, label `everyone`;
/// - `killed_control`: killed, with `control` as its default treatment;
/// - `control_rule`: a rule that answers `control`, label `control rule`;
/// - `pro_only`: `on` for `plan = pro`, otherwise no rule matches (default `off`).
fn flags() -> (tempfile::TempDir, PathBuf) {
    let all_keys = json!({"keySelector": {"trafficType": "user", "attribute": null},
                          "matcherType": "ALL_KEYS", "negate": false});
    let pro = json!({"keySelector": {"trafficType": "user", "attribute": "plan"},
                     "matcherType": "WHITELIST", "negate": false,
                     "whitelistMatcherData": {"whitelist": ["pro"]}});
    let defs = vec![
        definition(
            "everyone",
            false,
            "off",
            vec![condition("everyone", all_keys.clone(), "on")],
        ),
        definition("killed_control", true, "control", vec![]),
        definition(
            "control_rule",
            false,
            "off",
            vec![condition("control rule", all_keys, "control")],
        ),
        definition(
            "pro_only",
            false,
            "off",
            vec![condition("pro plan", pro, "on")],
        ),
    ];
    let doc = json!({"ff": {"d": defs, "s": -1, "t": 7}, "rbs": {"d": [], "s": -1, "t": -1}});
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, doc.to_string()).expect("write flags");
    (dir, path)
}

fn label(l: &Option<Label>) -> Option<&str> {
    l.as_ref().map(Label::as_str)
}

#[test]
fn fallback_treatments_answer_for_control_with_their_label_config_and_impression() {
    let server = Server::start();
    let (_dir, path) = flags();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .split_file(path)
        .impressions_mode(ImpressionsMode::Debug)
        .impression_listener(seen.clone())
        .fallback_treatment("off")
        .fallback_treatment_for(
            "control_rule",
            FallbackTreatment::new("safe").with_config(r#"{"x": 1}"#),
        )
        .build()
        .expect("client");

    let d = client.evaluate("k", "no_such_flag", None);
    assert_eq!(d.treatment, "off");
    assert_eq!(label(&d.label), Some("fallback - definition not found"));
    assert_eq!(d.config, None);
    assert!(!d.impression, "an unknown flag still makes no impression");

    let d = client.evaluate("k", "killed_control", None);
    assert_eq!(
        (d.treatment.as_str(), label(&d.label)),
        ("off", Some("fallback - killed"))
    );
    assert!(d.impression);

    let d = client.evaluate("k", "control_rule", None);
    assert_eq!(
        (d.treatment.as_str(), d.config.as_deref(), label(&d.label)),
        ("safe", Some(r#"{"x": 1}"#), Some("fallback - control rule"))
    );
    let t = client.get_treatment_with_config("k", "control_rule", None);
    assert_eq!(
        (t.treatment.as_str(), t.config.as_deref()),
        ("safe", Some(r#"{"x": 1}"#))
    );

    // A real treatment is left alone.
    assert_eq!(client.get_treatment("k", "everyone", None), "on");
    // Invalid input answers the fallback, without an impression.
    assert_eq!(client.get_treatment("", "everyone", None), "off");
    assert_eq!(client.get_treatment("k", "", None), "off");
    let many = client.get_treatments("k", &["no_such_flag", "control_rule", "everyone"], None);
    assert_eq!(many["no_such_flag"], "off");
    assert_eq!(many["control_rule"], "safe");
    assert_eq!(many["everyone"], "on");
    let invalid_key = client.get_treatments("", &["everyone", "control_rule"], None);
    assert_eq!(
        (
            invalid_key["everyone"].as_str(),
            invalid_key["control_rule"].as_str()
        ),
        ("off", "safe")
    );

    assert!(client.flush(WAIT));
    let wire: Vec<(String, Value, Value)> = delivered(&server)
        .into_iter()
        .map(|(f, i)| (f, i["t"].clone(), i["r"].clone()))
        .collect();
    let expected = [
        ("killed_control", "off", "fallback - killed"),
        ("control_rule", "safe", "fallback - control rule"),
        ("control_rule", "safe", "fallback - control rule"),
        ("everyone", "on", "everyone"),
        ("control_rule", "safe", "fallback - control rule"),
        ("everyone", "on", "everyone"),
    ];
    let mut sorted = wire.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, Value, Value)> = expected
        .iter()
        .map(|(f, t, r)| (f.to_string(), json!(t), json!(r)))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(sorted, want, "{wire:?}");
    let listened: Vec<(String, String, Option<String>)> = seen
        .seen()
        .iter()
        .map(|i| {
            (
                i.flag().to_string(),
                i.treatment().to_string(),
                i.label().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(listened.len(), expected.len());
    assert!(listened.contains(&(
        "killed_control".into(),
        "off".into(),
        Some("fallback - killed".into())
    )));

    assert!(client.destroy(WAIT));
    assert_eq!(
        client.get_treatment("k", "everyone", None),
        "off",
        "destroyed: the fallback"
    );
    assert_eq!(client.get_treatment("k", "control_rule", None), "safe");
}

#[test]
fn before_ready_the_fallback_answers_with_fallback_not_ready() {
    let server = Server::start();
    let gate = not_ready_until_opened(&server);
    let client = remote(&server, "fallback-key")
        .impressions_mode(ImpressionsMode::Debug)
        .fallback_treatment(FallbackTreatment::new("waiting").with_config("{}"))
        .build()
        .expect("client");
    let d = client.evaluate("a", "f", None);
    assert_eq!(
        (d.treatment.as_str(), d.config.as_deref(), label(&d.label)),
        ("waiting", Some("{}"), Some("fallback - not ready"))
    );
    gate.open();
    client.block_until_ready(WAIT).expect("ready");
    assert_eq!(client.get_treatment("a", "f", None), "on");
    assert!(client.flush(WAIT));
    let got: Vec<Value> = delivered(&server).into_iter().map(|(_, i)| i).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (&got[0]["t"], &got[0]["r"]),
        (&json!("waiting"), &json!("fallback - not ready"))
    );
    client.destroy(WAIT);
}

#[test]
fn fallbacks_the_official_sdks_would_discard_are_refused_by_name() {
    let cases: [(splitkit::ClientBuilder, &str); 3] = [
        (
            Client::builder("localhost").fallback_treatment("has space"),
            "fallback_treatment: treatment \"has space\" is not a valid treatment",
        ),
        (
            Client::builder("localhost").fallback_treatment_for("my flag", "on"),
            "fallback_treatment_for: flag 'my flag': a flag name must be 1 to 100 characters",
        ),
        (
            Client::builder("localhost").fallback_treatment_for("f", "x".repeat(101)),
            "fallback_treatment_for: flag 'f': treatment",
        ),
    ];
    for (builder, message) in cases {
        let e = builder
            .split_file(crate::server::examples("flags.json"))
            .build()
            .expect_err("refused");
        assert!(matches!(e, Error::Config { .. }), "{e:?}");
        assert!(e.to_string().contains(message), "{e}");
    }
}

#[test]
fn impression_properties_reach_the_wire_and_listeners_and_are_never_deduplicated() {
    let server = Server::start();
    let (_dir, path) = flags();
    let seen = Arc::new(Collect::default());
    let client = localhost(&server)
        .split_file(path)
        .impressions_mode(ImpressionsMode::Optimized)
        .impression_listener(seen.clone())
        .build()
        .expect("client");
    let options = EvaluationOptions::new().properties(
        Properties::new()
            .with("page", "cart")
            .with("n", 2)
            .with("tags", None::<&str>),
    );
    let with = client.with_options(&options);
    for _ in 0..3 {
        assert_eq!(with.get_treatment("k", "everyone", None), "on");
    }
    let many = with.get_treatments_with_config("k2", &["everyone"], None);
    assert_eq!(many["everyone"].treatment, "on");
    // Without properties, optimized mode deduplicates as usual.
    for _ in 0..3 {
        client.get_treatment("k", "everyone", None);
    }
    assert!(client.flush(WAIT));
    let items: Vec<Value> = delivered(&server).into_iter().map(|(_, i)| i).collect();
    let text = r#"{"n":2,"page":"cart","tags":null}"#;
    let with_props: Vec<&Value> = items
        .iter()
        .filter(|i| i.get("properties").is_some())
        .collect();
    assert_eq!(with_props.len(), 4, "{items:?}");
    for i in &with_props {
        assert_eq!(
            i["properties"],
            json!(text),
            "a string holding the object: {i}"
        );
        assert!(
            i.get("pt").is_none(),
            "no previous time with properties: {i}"
        );
    }
    assert_eq!(
        items.len() - with_props.len(),
        1,
        "the plain repeats are deduplicated"
    );
    let listened: Vec<Option<String>> = seen
        .seen()
        .iter()
        .map(|i| i.properties().map(str::to_string))
        .collect();
    assert_eq!(
        listened
            .iter()
            .filter(|p| p.as_deref() == Some(text))
            .count(),
        4
    );
    assert_eq!(listened.iter().filter(|p| p.is_none()).count(), 3);
    assert_eq!(client.stats().impressions.deduplicated, 2);
    client.destroy(WAIT);
}

#[test]
fn oversized_or_empty_impression_properties_are_left_out_and_the_evaluation_goes_on() {
    let server = Server::start();
    let client = localhost(&server)
        .impressions_mode(ImpressionsMode::Debug)
        .build()
        .expect("client");
    logs::start();
    let big =
        EvaluationOptions::new().properties(Properties::new().with("blob", "x".repeat(40_000)));
    assert_eq!(
        client
            .with_options(&big)
            .get_treatment("qa_alice", "new_checkout", None),
        "on"
    );
    let warnings = logs::take();
    assert!(
        warnings.iter().any(|w| w
            .contains("The maximum size allowed for the properties is 32768 bytes")
            && w.contains("Properties discarded")),
        "{warnings:?}"
    );
    let empty = EvaluationOptions::new().properties(Properties::new());
    let nested = EvaluationOptions::new().properties(Properties::from(
        json!({"list": [1, 2]})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    ));
    client
        .with_options(&empty)
        .get_treatment("qa_bob", "new_checkout", None);
    client
        .with_options(&nested)
        .get_treatment("carol", "new_checkout", None);
    assert!(client.flush(WAIT));
    let items: Vec<Value> = delivered(&server).into_iter().map(|(_, i)| i).collect();
    assert_eq!(items.len(), 3);
    assert!(items[0].get("properties").is_none() && items[1].get("properties").is_none());
    assert_eq!(
        items[2]["properties"],
        json!(r#"{"list":null}"#),
        "invalid types become null"
    );
    client.destroy(WAIT);
}

#[test]
fn the_default_rule_label_option_reports_what_the_official_sdks_send() {
    // Definitions exactly as given (a localhost file would get a catch-all rule appended).
    let (_dir, path) = flags();
    let text = std::fs::read_to_string(&path).expect("flags");
    for (option, wire) in [(false, "no rule matched"), (true, "default rule")] {
        let server = Server::start();
        let seen = Arc::new(Collect::default());
        let (snapshot, problems) = Snapshot::from_json(&text, "flags.json").expect("parses");
        assert!(problems.is_empty(), "{problems:?}");
        let client = localhost(&server)
            .snapshot(snapshot)
            .impressions_mode(ImpressionsMode::Debug)
            .impression_listener(seen.clone())
            .default_rule_label(option)
            .build()
            .expect("client");
        let d = client.evaluate("k", "pro_only", None);
        assert_eq!(d.treatment, "off");
        assert_eq!(d.label, Some(Label::NoRuleMatched), "details keep the enum");
        let pro = Attributes::new().with("plan", "pro");
        assert_eq!(client.get_treatment("k", "pro_only", Some(&pro)), "on");
        assert!(client.flush(WAIT));
        let labels: Vec<Value> = delivered(&server)
            .into_iter()
            .map(|(_, i)| i["r"].clone())
            .collect();
        assert_eq!(
            labels,
            vec![json!(wire), json!("pro plan")],
            "option {option}"
        );
        assert_eq!(seen.seen()[0].label(), Some(wire));
        client.destroy(WAIT);
    }
}

#[test]
fn configs_parse_into_the_callers_type() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Look {
        color: String,
        size: u8,
    }
    let server = Server::start();
    let (_dir, path) = flags();
    let client = localhost(&server).split_file(path).build().expect("client");
    let t = client.get_treatment_with_config("k", "everyone", None);
    assert_eq!(
        t.parse_config::<Look>().expect("fits"),
        Some(Look {
            color: "blue".into(),
            size: 2
        })
    );
    assert_eq!(t.config_value().expect("json").expect("some")["size"], 2);
    let d = client.evaluate("k", "pro_only", None);
    assert_eq!(d.parse_config::<Look>().expect("no config is fine"), None);
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Wrong {
        color: u32,
    }
    let e = t.parse_config::<Wrong>().expect_err("does not fit");
    assert!(e.to_string().contains("invalid type"), "{e}");
    client.destroy(WAIT);
}
