//! The evaluation benchmark's keys and flag (the engine issue's workload: a whitelist of keys, a
//! `plan in list` rule and a 50/50 catch-all), shared by the benches, the peers' versions of
//! the flag (`benches/support/peers.rs`) and the allocation test.

use serde_json::{Value, json};

/// The workload flag's `seed`, which a key's bucket is hashed with.
pub(crate) const SEED: i32 = 1_314_229_456;

/// The plans the workload flag's rule selects (`plan in [enterprise, pro]`).
pub(crate) const RULE_PLANS: [&str; 2] = ["enterprise", "pro"];

/// A WHITELIST matcher on the key (`attribute: None`) or on an attribute.
pub(crate) fn whitelist(attribute: Option<&str>, list: &[&str]) -> Value {
    json!({"keySelector": {"trafficType": "user", "attribute": attribute},
           "matcherType": "WHITELIST", "negate": false,
           "whitelistMatcherData": {"whitelist": list}})
}

/// The workload flag under `name`, whitelisting `keys`, with a traffic allocation and kill
/// switch.
pub(crate) fn flag(name: &str, keys: &[&str], traffic_allocation: i64, killed: bool) -> Value {
    json!({
        "name": name, "trafficTypeName": "user", "killed": killed, "defaultTreatment": "off",
        "changeNumber": 1_700_000_000_000_i64, "algo": 2, "trafficAllocation": traffic_allocation,
        "trafficAllocationSeed": -1_667_452_163, "seed": SEED, "status": "ACTIVE",
        "configurations": {"on": "{\"color\":\"blue\"}", "off": "{\"color\":\"grey\"}"},
        "conditions": [
            {"conditionType": "WHITELIST",
             "matcherGroup": {"combiner": "AND", "matchers": [whitelist(None, keys)]},
             "partitions": [{"treatment": "on", "size": 100}], "label": "whitelisted"},
            {"conditionType": "ROLLOUT",
             "matcherGroup": {"combiner": "AND",
                              "matchers": [whitelist(Some("plan"), &RULE_PLANS)]},
             "partitions": [{"treatment": "on", "size": 100}, {"treatment": "off", "size": 0}],
             "label": "plan rule"},
            {"conditionType": "ROLLOUT",
             "matcherGroup": {"combiner": "AND", "matchers": [{
                 "keySelector": {"trafficType": "user", "attribute": null},
                 "matcherType": "ALL_KEYS", "negate": false}]},
             "partitions": [{"treatment": "on", "size": 50}, {"treatment": "off", "size": 50}],
             "label": "default rule"}
        ]
    })
}

/// `n` UUID-v4-looking keys from a xorshift64* (deterministic, no rand dependency): always
/// the same ones.
pub(crate) fn uuid_keys(n: usize) -> Vec<String> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..n)
        .map(|_| {
            let (a, b) = (next(), next());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | ((b >> 48) & 0x3fff),
                b & 0xffff_ffff_ffff
            )
        })
        .collect()
}

/// Ten of `keys`, evenly spaced: the standard workload's whitelist.
#[allow(dead_code)]
pub(crate) fn ten_of(keys: &[String]) -> Vec<&str> {
    keys.iter()
        .step_by((keys.len() / 10).max(1))
        .take(10)
        .map(String::as_str)
        .collect()
}

/// The plans the workload's keys have, in turn.
#[allow(dead_code)]
pub(crate) const PLANS: [&str; 4] = ["enterprise", "pro", "free", "team"];

/// The typical attribute set of key `i`: a string, a number, another string and a list of two
/// strings.
#[allow(dead_code)]
pub(crate) fn attrs4(i: usize) -> splitkit::Attributes {
    splitkit::Attributes::new()
        .with("plan", PLANS[i % PLANS.len()])
        .with("age", 18 + (i % 60) as i64)
        .with("country", "AR")
        .with("tags", vec!["beta", "mobile"])
}

/// [`attrs4`] as borrowed pairs: the list lent from where it is held, as an application's
/// would be.
#[allow(dead_code)]
pub(crate) fn attrs4_borrowed(i: usize) -> [(&'static str, splitkit::AttributeRef<'static>); 4] {
    static TAGS: [&str; 2] = ["beta", "mobile"];
    [
        ("plan", PLANS[i % PLANS.len()].into()),
        ("age", (18 + (i % 60) as i64).into()),
        ("country", "AR".into()),
        ("tags", (&TAGS).into()),
    ]
}
