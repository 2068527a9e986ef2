//! The expected results that the official SDKs' own tests assert on their fixtures
//! (SPLIT_SEMANTICS.md §10).

use splitkit::{Attributes, Label, Snapshot};

use crate::common::{read, snapshot};

fn eval(
    s: &Snapshot,
    key: &str,
    flag: &str,
    attrs: &Attributes,
) -> (String, String, Option<String>) {
    let e = s.evaluate(key, None, flag, attrs);
    (
        e.treatment.to_string(),
        e.label.as_str().to_string(),
        e.config.map(str::to_string),
    )
}

fn t(s: &Snapshot, key: &str, flag: &str) -> String {
    eval(s, key, flag, &Attributes::new()).0
}

fn email(key: &str) -> Attributes {
    Attributes::new().with("email", key)
}

#[test]
fn python_client_e2e() {
    let s = snapshot(
        "fixtures/python-client/splitChanges.json",
        &[
            "fixtures/python-client/segmentEmployeesChanges.json",
            "fixtures/python-client/segmentHumanBeignsChanges.json",
        ],
    );
    let (tr, _, cfg) = eval(&s, "user1", "sample_feature", &Attributes::new());
    assert_eq!(tr, "on");
    assert_eq!(cfg.as_deref(), Some("{\"size\":15,\"test\":20}"));
    let (tr, _, cfg) = eval(&s, "invalidKey", "sample_feature", &Attributes::new());
    assert_eq!((tr.as_str(), cfg), ("off", None));
    let (tr, label, _) = eval(&s, "invalidKey", "invalid_feature", &Attributes::new());
    assert_eq!(
        (tr.as_str(), label.as_str()),
        ("control", "definition not found")
    );
    let (tr, label, cfg) = eval(&s, "invalidKey", "killed_feature", &Attributes::new());
    assert_eq!((tr.as_str(), label.as_str()), ("defTreatment", "killed"));
    assert_eq!(cfg.as_deref(), Some("{\"size\":15,\"defTreatment\":true}"));
    assert_eq!(t(&s, "invalidKey", "all_feature"), "on");
    assert_eq!(t(&s, "whitelisted_user", "whitelist_feature"), "on");
    assert_eq!(t(&s, "unwhitelisted_user", "whitelist_feature"), "off");
    assert_eq!(t(&s, "somekey", "dependency_test"), "off");
    assert_eq!(t(&s, "True", "boolean_test"), "on");
    assert_eq!(t(&s, "abc4", "regex_test"), "on");
    let bilal = "bilal@split.io";
    assert_eq!(eval(&s, bilal, "rbs_feature_flag", &email(bilal)).0, "on");
    let mauro = "mauro@split.io";
    assert_eq!(eval(&s, mauro, "rbs_feature_flag", &email(mauro)).0, "off");
    assert_eq!(t(&s, "abc4", "prereq_feature"), "on");
    let (tr, label, _) = eval(&s, "user1234", "prereq_feature", &Attributes::new());
    assert_eq!(
        (tr.as_str(), label.as_str()),
        ("off_default", "prerequisites not met")
    );
}

#[test]
fn python_client_prerequisites() {
    let s = snapshot("fixtures/python-client/splits_prereq.json", &[])
        .with_segment("segment-test", ["pato@split.io"]);
    let bilal = "bilal@split.io";
    assert_eq!(eval(&s, bilal, "test_prereq", &email(bilal)).0, "on");
    assert_eq!(t(&s, bilal, "test_prereq"), "def_treatment");
    // The Python test passes the key as `email` everywhere but in the `{}` case above.
    let with_email = |key: &str, flag: &str| eval(&s, key, flag, &email(key)).0;
    assert_eq!(with_email("mauro@split.io", "test_prereq"), "def_treatment");
    assert_eq!(with_email("pato@split.io", "test_prereq"), "def_treatment");
    assert_eq!(with_email("nico@split.io", "test_prereq"), "on");
    assert_eq!(with_email(bilal, "prereq_chain"), "on_whitelist");
    assert_eq!(with_email("pato@split.io", "prereq_chain"), "on_default");
    assert_eq!(with_email("mauro@split.io", "prereq_chain"), "on_default");
    let (_, label, _) = eval(
        &s,
        "mauro@split.io",
        "prereq_chain",
        &email("mauro@split.io"),
    );
    assert_eq!(label, "prerequisites not met");
}

/// The rule-based segment fixtures, with the flag the Python test adds:
/// IN_RULE_BASED_SEGMENT(sample_rule_based_segment) -> on, else off.
fn rbs_snapshot(file: &str) -> Snapshot {
    let mut doc: serde_json::Value = serde_json::from_str(&read(file)).expect("fixture");
    doc["ff"]["d"] = serde_json::json!([{
        "name": "rbs_flag", "trafficTypeName": "user", "defaultTreatment": "off",
        "algo": 2, "trafficAllocation": 100, "seed": 1, "changeNumber": 1, "status": "ACTIVE",
        "conditions": [{"conditionType": "ROLLOUT", "label": "in rule based segment",
            "matcherGroup": {"combiner": "AND", "matchers": [{
                "keySelector": {"trafficType": "user"}, "matcherType": "IN_RULE_BASED_SEGMENT",
                "negate": false,
                "userDefinedSegmentMatcherData": {"segmentName": "sample_rule_based_segment"}}]},
            "partitions": [{"treatment": "on", "size": 100}, {"treatment": "off", "size": 0}]}]}]);
    let (s, problems) = Snapshot::from_json(&doc.to_string(), file).expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    s
}

#[test]
fn python_client_rule_based_segments() {
    let rbs = |s: &Snapshot, key: &str| eval(s, key, "rbs_flag", &email(key)).0;
    let s = rbs_snapshot("fixtures/python-client/rule_base_segments.json");
    assert_eq!(rbs(&s, "bilal@split.io"), "on");
    assert_eq!(rbs(&s, "mauro@split.io"), "off");

    let s = rbs_snapshot("fixtures/python-client/rule_base_segments3.json")
        .with_segment("segment1", ["pato@split.io"]);
    assert_eq!(rbs(&s, "bilal@split.io"), "on");
    assert_eq!(rbs(&s, "mauro@split.io"), "off");
    assert_eq!(rbs(&s, "pato@split.io"), "off");

    let s = rbs_snapshot("fixtures/python-client/rule_base_segments2.json");
    assert_eq!(rbs(&s, "bilal@split.io"), "off");
    assert_eq!(rbs(&s, "bilal"), "on");
    assert_eq!(rbs(&s, "bilal2@split.io"), "on");
}

#[test]
fn javascript_client_semver() {
    let s = snapshot(
        "fixtures/javascript-client/splitchanges.since.-1.semver.json",
        &[],
    );
    let v = |flag: &str, version: Option<serde_json::Value>| {
        let attrs = match version {
            Some(v) => Attributes::new().with("version", v),
            None => Attributes::new(),
        };
        eval(&s, "key", flag, &attrs).0
    };
    let st = |x: &str| Some(serde_json::Value::from(x));
    assert_eq!(v("semver_equalto", st("1.22.9")), "on");
    assert_eq!(v("semver_equalto", st("1.22.9+build")), "off");
    assert_eq!(v("semver_equalto", st("1.22.9-rc.0")), "off");
    assert_eq!(v("semver_equalto", Some(serde_json::Value::Null)), "off");
    assert_eq!(v("semver_equalto", None), "off");
    assert_eq!(v("semver_inlist", st("2.1.0")), "on");
    assert_eq!(v("semver_inlist", st("1.22.9")), "on");
    assert_eq!(v("semver_inlist", st("1.22.9+build")), "off");
    assert_eq!(v("semver_inlist", st("1.22.9-rc.0")), "off");
    assert_eq!(v("semver_inlist", Some(serde_json::Value::Null)), "off");
    for (ver, exp) in [
        ("1.23.9", "on"),
        ("1.22.9", "on"),
        ("1.22.9+build", "on"),
        ("1.22.9-rc.0", "off"),
        ("1.21.9", "off"),
        ("invalid", "off"),
    ] {
        assert_eq!(v("semver_greater_or_equalto", st(ver)), exp, "{ver}");
    }
    for (ver, exp) in [
        ("1.22.11", "off"),
        ("1.22.9", "on"),
        ("1.22.9+build", "on"),
        ("1.22.9-rc.0", "on"),
        ("1.21.9", "on"),
    ] {
        assert_eq!(v("semver_less_or_equalto", st(ver)), exp, "{ver}");
    }
    assert_eq!(
        v("semver_less_or_equalto", Some(serde_json::json!({}))),
        "off"
    );
    for (ver, exp) in [
        ("2.1.1", "off"),
        ("2.1.0+build", "on"),
        ("1.25.0", "on"),
        ("1.22.9", "on"),
        ("1.22.9-rc.0", "off"),
    ] {
        assert_eq!(v("semver_between", st(ver)), exp, "{ver}");
    }
    assert_eq!(v("semver_between", Some(serde_json::json!([]))), "off");
    let e = s.evaluate(
        "key",
        None,
        "flag_with_unsupported_matcher",
        &Attributes::new(),
    );
    assert_eq!(e.treatment, "control");
    assert_eq!(e.label, &Label::Unsupported);
    assert_eq!(e.label.as_str(), "targeting rule type unsupported by sdk");
}

#[test]
fn java_client_semver_fixture_loads_and_labels_verbatim() {
    let s = snapshot("fixtures/java-client/semver-splits.json", &[]);
    let attrs = Attributes::new().with("version", "1.22.9");
    let e = s.evaluate("key", None, "semver_equalto", &attrs);
    assert_eq!(e.treatment, "on");
    assert_eq!(e.label.as_str(), "equal to semver");
}

#[test]
fn every_fixture_loads_without_losing_flags() {
    for f in [
        "fixtures/python-client/split_changes.json",
        "fixtures/python-client/split_old_spec.json",
        "fixtures/javascript-client/splitchanges.since.-1.json",
        "fixtures/javascript-client/splitchanges.real.json",
        "fixtures/go-client/splits.json",
    ] {
        let raw: serde_json::Value = serde_json::from_str(&read(f)).expect("json");
        let count = raw
            .get("ff")
            .and_then(|ff| ff.get("d"))
            .or_else(|| raw.get("splits"))
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .filter(|f| f.get("status").and_then(|s| s.as_str()) != Some("ARCHIVED"))
                    .count()
            })
            .unwrap_or(0);
        let (s, _) = Snapshot::from_json(&read(f), f).expect("parses");
        assert_eq!(s.len(), count, "{f}");
        assert!(count > 0, "{f}");
    }
}
