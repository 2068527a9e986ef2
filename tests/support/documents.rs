//! Large splitChanges documents, generated (nothing big is kept in the repository), for the
//! loading benchmark and the memory tests: flags in the shape Split's API sends them (every
//! matcher carries all its data fields, most of them `null`), with rollout rules on segments,
//! rule-based segments and attributes (numbers, dates, semver, sets, lists), configurations,
//! flag sets, 100 rule-based segments, and for a third of the flags a whitelist rule.

use std::fmt::Write as _;

/// A matcher in the API's shape: every data field present, all but one `null`.
fn matcher(out: &mut String, attribute: Option<&str>, kind: &str, field: &str, data: &str) {
    let attribute = attribute.map_or("null".to_string(), |a| format!("\"{a}\""));
    let mut fields = String::new();
    for f in [
        "userDefinedSegmentMatcherData",
        "whitelistMatcherData",
        "unaryNumericMatcherData",
        "betweenMatcherData",
        "betweenStringMatcherData",
        "booleanMatcherData",
        "dependencyMatcherData",
        "stringMatcherData",
    ] {
        let value = if f == field { data } else { "null" };
        let _ = write!(fields, ",\"{f}\":{value}");
    }
    let _ = write!(
        out,
        "{{\"keySelector\":{{\"trafficType\":\"user\",\"attribute\":{attribute}}},\
         \"matcherType\":\"{kind}\",\"negate\":false{fields}}}"
    );
}

/// One rule-matcher of variety `kind` for flag `i`.
fn rule_matcher(out: &mut String, i: usize, kind: usize) {
    match kind % 8 {
        0 => matcher(
            out,
            None,
            "IN_SEGMENT",
            "userDefinedSegmentMatcherData",
            &format!("{{\"segmentName\":\"segment_{}\"}}", i % 50),
        ),
        1 => matcher(
            out,
            Some("age"),
            "GREATER_THAN_OR_EQUAL_TO",
            "unaryNumericMatcherData",
            &format!("{{\"dataType\":\"NUMBER\",\"value\":{}}}", 18 + i % 50),
        ),
        2 => matcher(
            out,
            Some("app_version"),
            "GREATER_THAN_OR_EQUAL_TO_SEMVER",
            "stringMatcherData",
            &format!("\"{}.{}.0\"", 1 + i % 3, i % 20),
        ),
        3 => matcher(
            out,
            Some("country"),
            "WHITELIST",
            "whitelistMatcherData",
            "{\"whitelist\":[\"US\",\"CA\",\"GB\",\"DE\",\"FR\",\"AR\",\"BR\",\"JP\",\"AU\",\"ES\"]}",
        ),
        4 => matcher(
            out,
            Some("tags"),
            "CONTAINS_ANY_OF_SET",
            "whitelistMatcherData",
            &format!(
                "{{\"whitelist\":[\"beta\",\"early\",\"cohort_{}\"]}}",
                i % 30
            ),
        ),
        5 => matcher(
            out,
            Some("signup"),
            "BETWEEN",
            "betweenMatcherData",
            &format!(
                "{{\"dataType\":\"DATETIME\",\"start\":{},\"end\":1800000000000}}",
                1_600_000_000_000_u64 + i as u64 * 60_000
            ),
        ),
        6 => matcher(
            out,
            None,
            "IN_RULE_BASED_SEGMENT",
            "userDefinedSegmentMatcherData",
            &format!("{{\"segmentName\":\"rbs_{}\"}}", i % 100),
        ),
        _ => matcher(
            out,
            Some("email"),
            "ENDS_WITH",
            "whitelistMatcherData",
            "{\"whitelist\":[\"@example.com\",\"@example.org\"]}",
        ),
    }
}

fn condition(
    out: &mut String,
    kind: &str,
    label: &str,
    on: u32,
    matchers: impl FnOnce(&mut String),
) {
    let _ = write!(
        out,
        "{{\"conditionType\":\"{kind}\",\"matcherGroup\":{{\"combiner\":\"AND\",\"matchers\":["
    );
    matchers(out);
    let _ = write!(
        out,
        "]}},\"partitions\":[{{\"treatment\":\"on\",\"size\":{on}}},{{\"treatment\":\"off\",\"size\":{}}}],\
         \"label\":\"{label}\"}}",
        100 - on
    );
}

/// Appends flag `i` to `out`; a third of the flags whitelist up to `max_keys` keys.
fn flag(out: &mut String, i: usize, max_keys: usize) {
    let _ = write!(
        out,
        "{{\"orgId\":\"aaaabbbb-cccc-dddd-eeee-ffff00001111\",\"environment\":\"eeeeffff-0000-1111-2222-333344445555\",\
         \"trafficTypeId\":\"tt-1\",\"trafficTypeName\":\"user\",\"name\":\"flag_{i:06}\",\
         \"trafficAllocation\":{},\"trafficAllocationSeed\":{},\"seed\":{},\"status\":\"ACTIVE\",\
         \"killed\":{},\"defaultTreatment\":\"off\",\"changeNumber\":{},\"algo\":2,\
         \"configurations\":{{\"on\":\"{{\\\"variant\\\":{i},\\\"color\\\":\\\"blue\\\"}}\",\"off\":\"{{\\\"color\\\":\\\"grey\\\"}}\"}},\
         \"sets\":[\"set_{}\"],\"impressionsDisabled\":false,\"conditions\":[",
        if i.is_multiple_of(5) { 80 } else { 100 },
        (i as i64 * 7919) % 2_147_483_647 - 1_000_000_000,
        (i as i64 * 104_729) % 2_147_483_647 - 1_000_000_000,
        i.is_multiple_of(97),
        1_700_000_000_000_u64 + i as u64,
        i % 40,
    );
    if i.is_multiple_of(3) {
        let keys = 5 + (i * 37) % max_keys.saturating_sub(4).max(1);
        condition(out, "WHITELIST", "whitelisted", 100, |out| {
            let mut list = String::from("{\"whitelist\":[");
            for k in 0..keys {
                if k > 0 {
                    list.push(',');
                }
                let _ = write!(list, "\"user_{:07}\"", (i * 131 + k * 7) % 10_000_000);
            }
            list.push_str("]}");
            matcher(out, None, "WHITELIST", "whitelistMatcherData", &list);
        });
        out.push(',');
    }
    for r in 0..(1 + i % 3) {
        condition(out, "ROLLOUT", &format!("rule {r}"), 100, |out| {
            rule_matcher(out, i, i * 7 + r * 3);
            if r == 1 {
                out.push(',');
                rule_matcher(out, i, i * 7 + r * 3 + 1);
            }
        });
        out.push(',');
    }
    condition(
        out,
        "ROLLOUT",
        "default rule",
        10 * (i % 11) as u32,
        |out| {
            matcher(out, None, "ALL_KEYS", "", "null");
        },
    );
    out.push_str("]}");
}

/// A document of about `target` bytes, and its number of flags.
pub(crate) fn document(target: usize, max_keys: usize) -> (String, usize) {
    let mut out = String::with_capacity(target + 64 * 1024);
    out.push_str("{\"ff\":{\"d\":[");
    let mut n = 0;
    while out.len() < target {
        if n > 0 {
            out.push(',');
        }
        flag(&mut out, n, max_keys);
        n += 1;
    }
    out.push_str("],\"s\":-1,\"t\":1800000000000},\"rbs\":{\"d\":[");
    for r in 0..100 {
        if r > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"name\":\"rbs_{r}\",\"trafficTypeName\":\"user\",\"changeNumber\":5,\"status\":\"ACTIVE\",\
             \"excluded\":{{\"keys\":[\"excluded_{r}\"],\"segments\":[{{\"name\":\"segment_{}\",\"type\":\"standard\"}}]}},\
             \"conditions\":[",
            r % 50
        );
        condition(&mut out, "WHITELIST", "in", 100, |out| {
            rule_matcher(out, r, 3)
        });
        out.push_str("]}");
    }
    out.push_str("],\"s\":-1,\"t\":5}}");
    (out, n)
}
