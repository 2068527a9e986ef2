//! Helpers: flag definitions, clients on them, and an OpenFeature API with the provider.

use open_feature::{EvaluationContext, EvaluationError, EvaluationErrorCode, OpenFeature};
use serde_json::{Value, json};
use splitkit::{Client, ClientBuilder, Snapshot};
use splitkit_openfeature::SplitProvider;
use tempfile::TempDir;

/// A matcher on an attribute (`attribute: None` looks at the key).
pub fn matcher(kind: &str, attribute: Option<&str>, data: Value) -> Value {
    let mut m = json!({"keySelector": {"trafficType": "user", "attribute": attribute},
                       "matcherType": kind, "negate": false});
    if let (Value::Object(m), Value::Object(data)) = (&mut m, data) {
        m.extend(data);
    }
    m
}

/// `WHITELIST` of keys.
pub fn keys(list: &[&str]) -> Value {
    matcher(
        "WHITELIST",
        None,
        json!({"whitelistMatcherData": {"whitelist": list}}),
    )
}

/// `ALL_KEYS`.
pub fn all_keys() -> Value {
    matcher("ALL_KEYS", None, json!({}))
}

/// A targeting rule: the matchers (AND), then partitions `[(treatment, size)]`.
pub fn rule(matchers: Vec<Value>, partitions: &[(&str, i64)], label: &str) -> Value {
    let partitions: Vec<Value> = partitions
        .iter()
        .map(|(t, s)| json!({"treatment": t, "size": s}))
        .collect();
    json!({"conditionType": "ROLLOUT",
           "matcherGroup": {"combiner": "AND", "matchers": matchers},
           "partitions": partitions, "label": label})
}

/// A flag: default treatment `off`, change number 42, the rules, and configurations
/// `{treatment: json}`.
pub fn flag(name: &str, rules: Vec<Value>, configurations: Value) -> Value {
    json!({"name": name, "trafficTypeName": "user", "killed": false, "defaultTreatment": "off",
           "changeNumber": 42, "algo": 2, "trafficAllocation": 100, "trafficAllocationSeed": 3,
           "seed": 5, "status": "ACTIVE", "conditions": rules,
           "configurations": configurations})
}

/// A flag giving every key `treatment` (with `config`, if any).
pub fn constant(name: &str, treatment: &str, config: Option<&str>) -> Value {
    let configurations = match config {
        Some(c) => json!({ treatment: c }),
        None => json!({}),
    };
    flag(
        name,
        vec![rule(vec![all_keys()], &[(treatment, 100)], "everyone")],
        configurations,
    )
}

/// The splitChanges document of `flags`.
pub fn document(flags: &[Value]) -> String {
    json!({"ff": {"d": flags, "s": -1, "t": 42}}).to_string()
}

/// A localhost client on a temporary flags JSON file (which gets a catch-all rule giving
/// `off` appended to flags not ending with one); the directory must outlive the client.
pub fn localhost(flags: &[Value]) -> (TempDir, ClientBuilder) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document(flags)).expect("write the flags");
    (dir, Client::builder("localhost").split_file(path))
}

/// A localhost client evaluating `flags` exactly as given (no rule appended).
pub fn exact(flags: &[Value]) -> ClientBuilder {
    let (snapshot, problems) = Snapshot::from_json(&document(flags), "test").expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    Client::builder("localhost").snapshot(snapshot)
}

/// An OpenFeature API (not the global singleton: tests run in parallel) with `provider` set,
/// and a client of it.
pub async fn api(provider: SplitProvider) -> (OpenFeature, open_feature::Client) {
    let mut api = OpenFeature::default();
    api.set_provider(provider).await;
    let client = api.create_client();
    (api, client)
}

/// An OpenFeature client whose provider uses `client` with the defaults.
pub async fn features(client: ClientBuilder) -> (OpenFeature, open_feature::Client) {
    api(SplitProvider::new(client.build().expect("a client"))).await
}

/// A context with a targeting key.
pub fn user(key: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(key)
}

/// The error code of a resolution that must fail.
pub fn code<T: std::fmt::Debug>(result: Result<T, EvaluationError>) -> EvaluationErrorCode {
    match result {
        Err(e) => e.code,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}
