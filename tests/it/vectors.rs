//! Every row of the official SDKs' hash, semver and regex vectors.

use splitkit::bucketing::{HashAlgo, bucket, legacy_hash, murmur3_hash};
use splitkit::{Attributes, Snapshot};

use crate::common::read;

/// `seed,key,hash,bucket` where the key may itself contain commas.
fn csv_rows(rel: &str) -> Vec<(i64, String, i64, u8)> {
    read(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (seed, rest) = l.split_once(',').expect("seed");
            let (rest, bucket) = rest.rsplit_once(',').expect("bucket");
            let (key, hash) = rest.rsplit_once(',').expect("hash");
            (
                seed.parse().expect("seed"),
                key.to_string(),
                hash.parse().expect("hash"),
                bucket.parse().expect("bucket"),
            )
        })
        .collect()
}

fn jsonl_rows(rel: &str) -> Vec<(i64, String, i64, u8)> {
    read(rel)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect()
}

#[test]
fn murmur3_vectors_every_row() {
    let mut n = 0;
    for file in [
        "hash/murmur3-sample-data-v2.csv",
        "hash/murmur3-custom-uuids.csv",
        "hash/murmur3-sample-v3.csv",
        "hash/murmur3-sample-v4.csv",
    ] {
        for (seed, key, hash, b) in csv_rows(file) {
            let seed = seed as i32;
            assert_eq!(i64::from(murmur3_hash(&key, seed)), hash, "{file}: {key}");
            assert_eq!(bucket(&key, seed, HashAlgo::Murmur3), b, "{file}: {key}");
            n += 1;
        }
    }
    assert!(n > 100_000);
}

#[test]
fn legacy_vectors_every_row() {
    let mut n = 0;
    for file in [
        "hash/sample-data.csv",
        "hash/small-data.csv",
        "hash/sample-data-non-alpha-numeric.csv",
    ] {
        for (seed, key, hash, b) in csv_rows(file) {
            assert_eq!(
                i64::from(legacy_hash(&key, seed as i32)),
                hash,
                "{file}: {key}"
            );
            assert_eq!(
                bucket(&key, seed as i32, HashAlgo::Legacy),
                b,
                "{file}: {key}"
            );
            n += 1;
        }
    }
    for file in [
        "hash/sample-data.jsonl",
        "hash/sample-data-non-alpha-numeric.jsonl",
    ] {
        for (seed, key, hash, b) in jsonl_rows(file) {
            assert_eq!(
                i64::from(legacy_hash(&key, seed as i32)),
                hash,
                "{file}: {key}"
            );
            assert_eq!(
                bucket(&key, seed as i32, HashAlgo::Legacy),
                b,
                "{file}: {key}"
            );
            n += 1;
        }
    }
    assert!(n > 120_000);
}

/// A one-flag snapshot whose only rule is `matcher` on attribute `v`.
fn one_matcher(matcher: serde_json::Value) -> Snapshot {
    let doc = serde_json::json!({"ff": {"d": [{
        "name": "f", "defaultTreatment": "off", "algo": 2, "trafficAllocation": 100,
        "conditions": [{"conditionType": "ROLLOUT",
            "matcherGroup": {"combiner": "AND", "matchers": [matcher]},
            "partitions": [{"treatment": "on", "size": 100}], "label": "rule"}]}],
        "s": -1, "t": 1}});
    let (s, problems) = Snapshot::from_json(&doc.to_string(), "test").expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    s
}

fn on(s: &Snapshot, v: &str) -> bool {
    let attrs = Attributes::new().with("v", v);
    s.evaluate("k", None, "f", &attrs).treatment == "on"
}

fn semver_matcher(kind: &str, data: serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::json!({"keySelector": {"trafficType": "user", "attribute": "v"},
        "matcherType": kind, "negate": false});
    let field = match kind {
        "BETWEEN_SEMVER" => "betweenStringMatcherData",
        "IN_LIST_SEMVER" => "whitelistMatcherData",
        _ => "stringMatcherData",
    };
    m[field] = data;
    m
}

#[test]
fn semver_between_vectors() {
    let mut n = 0;
    for line in read("semver/between-semver.csv")
        .lines()
        .filter(|l| !l.is_empty())
    {
        let cols: Vec<&str> = line.split(',').collect();
        let (start, version, end, expected) = (cols[0], cols[1], cols[2], cols[3] == "true");
        let s = one_matcher(semver_matcher(
            "BETWEEN_SEMVER",
            serde_json::json!({"start": start, "end": end}),
        ));
        assert_eq!(on(&s, version), expected, "{line}");
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn semver_equal_vectors() {
    let mut n = 0;
    for line in read("semver/equal-to-semver.csv")
        .lines()
        .filter(|l| !l.is_empty())
    {
        let cols: Vec<&str> = line.split(',').collect();
        let s = one_matcher(semver_matcher("EQUAL_TO_SEMVER", cols[0].into()));
        assert_eq!(on(&s, cols[1]), cols[2] == "true", "{line}");
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn semver_precedence_vectors_both_ways() {
    let mut n = 0;
    for line in read("semver/valid-semantic-versions.csv")
        .lines()
        .filter(|l| !l.is_empty())
    {
        let (hi, lo) = line.split_once(',').expect("pair");
        let gte = |rule: &str, v: &str| {
            on(
                &one_matcher(semver_matcher(
                    "GREATER_THAN_OR_EQUAL_TO_SEMVER",
                    rule.into(),
                )),
                v,
            )
        };
        let lte = |rule: &str, v: &str| {
            on(
                &one_matcher(semver_matcher("LESS_THAN_OR_EQUAL_TO_SEMVER", rule.into())),
                v,
            )
        };
        assert!(gte(lo, hi), "{hi} >= {lo}");
        assert!(!gte(hi, lo), "not {lo} >= {hi}");
        assert!(lte(hi, lo), "{lo} <= {hi}");
        assert!(!lte(lo, hi), "not {hi} <= {lo}");
        assert!(gte(hi, hi) && lte(lo, lo), "{line}: reflexive");
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn semver_invalid_vectors_never_match() {
    let gte = one_matcher(semver_matcher(
        "GREATER_THAN_OR_EQUAL_TO_SEMVER",
        "0.0.0".into(),
    ));
    let lte = one_matcher(semver_matcher(
        "LESS_THAN_OR_EQUAL_TO_SEMVER",
        "99999.0.0".into(),
    ));
    let mut n = 0;
    for line in read("semver/invalid-semantic-versions.csv").lines().skip(1) {
        assert!(
            !on(&gte, line) && !on(&lte, line),
            "{line:?} is not a version"
        );
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn regex_vectors_every_row() {
    let mut n = 0;
    for line in read("regex/regex.txt").lines().filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split('#').collect();
        let (pattern, input, expected) = (parts[0], parts[1], parts[2] == "true");
        let s = one_matcher(serde_json::json!({
            "keySelector": {"trafficType": "user", "attribute": "v"},
            "matcherType": "MATCHES_STRING", "negate": false, "stringMatcherData": pattern}));
        assert_eq!(on(&s, input), expected, "{line}");
        n += 1;
    }
    assert!(n >= 140, "{n}");
}
