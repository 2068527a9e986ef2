//! Property tests: evaluation is total (never panics, always answers `control` or a treatment
//! the flag names) for arbitrary keys, attributes and structurally valid but semantically
//! random definitions; buckets stay in 1..=100; definitions survive a serde round trip.

use proptest::collection::{btree_map, hash_map, vec};
use proptest::prelude::*;
use proptest::{bool::weighted, option, sample::select};
use serde_json::{Value, json};
use splitkit::bucketing::{HashAlgo, bucket};
use splitkit::definitions::{
    BetweenMatcherData, BetweenStringMatcherData, Condition, DependencyMatcherData, Excluded,
    ExcludedSegment, FeatureFlag, KeySelector, MatcherDef, MatcherGroup, Partition, Prerequisite,
    RuleBasedSegment, SegmentNameData, SplitChanges, UnaryNumericMatcherData, WhitelistMatcherData,
};
use splitkit::{AttributeValue, Attributes, Error, Label, Snapshot, Store};

const CASES: u32 = 256;

/// Flags are named `f0`, `f1`, ... in generation order; `missing` is never defined.
const FLAG_NAMES: [&str; 5] = ["f0", "f1", "f2", "f3", "missing"];
/// Rule-based segments are `r0`, `r1`, ...; `ghost` is never defined.
const RBS_NAMES: [&str; 4] = ["r0", "r1", "r2", "ghost"];
const SEGMENTS: [&str; 3] = ["s0", "s1", "nope"];
const TREATMENTS: [&str; 6] = ["on", "off", "control", "v1", "", "ÿ"];
const ATTRIBUTES: [&str; 7] = ["a", "b", "plan", "n", "v", "t", "email"];
const MATCHER_TYPES: [&str; 30] = [
    "ALL_KEYS",
    "IN_SEGMENT",
    "IN_LARGE_SEGMENT",
    "IN_RULE_BASED_SEGMENT",
    "WHITELIST",
    "EQUAL_TO",
    "GREATER_THAN_OR_EQUAL_TO",
    "LESS_THAN_OR_EQUAL_TO",
    "BETWEEN",
    "EQUAL_TO_SET",
    "CONTAINS_ANY_OF_SET",
    "CONTAINS_ALL_OF_SET",
    "PART_OF_SET",
    "STARTS_WITH",
    "ENDS_WITH",
    "CONTAINS_STRING",
    "MATCHES_STRING",
    "IN_SPLIT_TREATMENT",
    "EQUAL_TO_BOOLEAN",
    "EQUAL_TO_SEMVER",
    "GREATER_THAN_OR_EQUAL_TO_SEMVER",
    "LESS_THAN_OR_EQUAL_TO_SEMVER",
    "BETWEEN_SEMVER",
    "IN_LIST_SEMVER",
    // Unknown ones.
    "",
    "all_keys",
    "IN_SPLIT",
    "NEW_MATCHER_2030",
    "WHITELIST ",
    "EQUAL_TO_JSON",
];

// ---- values ----

/// Short strings that rules and attributes share, so matchers sometimes match.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "a",
            "b",
            "pro",
            "enterprise",
            "true",
            "TRUE",
            "false",
            "42",
            "5",
            "5.5",
            "-1",
            "",
            "1.2.3",
            "01.2.3",
            "1.2.3-rc.1",
            "1.2.3+build",
            "2.0.0",
            "1.2",
            "x@split.io",
            "s0",
            "0x1F",
            "1e3",
            " 7 ",
            "Infinity",
            "NaN",
            "null",
            "ß",
            "日本",
            "🦀",
        ])
        .prop_map(str::to_string),
        "[a-z0-9.@+-]{0,6}",
        any::<String>(),
    ]
}

/// Regexes (valid and invalid), semantic versions (valid and invalid) and noise.
fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "^a",
            "b+c",
            ".*",
            "(?i)PRO",
            "\\d{2,}",
            "^$",
            "[",
            "(",
            "[a-",
            "a{2,1}",
            "\\",
            "(?<n>a)(?<n>b)",
            "\\p{Greek}+",
            "a**",
            "1.2.3",
            "1.2.3-alpha.01",
            "1.2.3+",
            "1..3",
            "v1.2.3",
            "",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,6}",
    ]
}

fn number() -> impl Strategy<Value = serde_json::Number> {
    prop_oneof![
        (-5i64..200).prop_map(serde_json::Number::from),
        any::<i64>().prop_map(serde_json::Number::from),
        any::<u64>().prop_map(serde_json::Number::from),
        select(vec![
            i64::MIN,
            i64::MAX,
            0,
            1_710_460_800_000,
            -86_400_000,
            8_640_000_000_000_001
        ])
        .prop_map(serde_json::Number::from),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            5.5,
            1e300,
            -1e-300,
            4.2e1,
            9.007_199_254_740_993e15,
            f64::MAX,
            f64::MIN_POSITIVE,
        ]),
    ]
}

fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        Just(AttributeValue::Null),
        any::<bool>().prop_map(AttributeValue::Bool),
        any::<i64>().prop_map(AttributeValue::Int),
        select(vec![i64::MIN, i64::MAX, 0, 1, 5, 42, -1]).prop_map(AttributeValue::Int),
        float().prop_map(AttributeValue::Float),
        word().prop_map(AttributeValue::from),
        any::<i64>().prop_map(AttributeValue::DateTime),
        select(vec![0, 1_710_460_800_000, i64::MAX, i64::MIN]).prop_map(AttributeValue::DateTime),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(AttributeValue::List),
            btree_map(
                prop_oneof![Just("matchingKey".to_string()), word()],
                inner,
                0..3
            )
            .prop_map(AttributeValue::Object),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Attributes> {
    btree_map(select(ATTRIBUTES.to_vec()), attribute_value(), 0..5)
        .prop_map(|m| m.into_iter().collect::<Attributes>())
}

/// Matching or bucketing keys: empty, any unicode, long.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        word(),
        any::<String>(),
        "\\PC{250,400}",
        ".{1000,1200}",
    ]
}

// ---- definitions ----

fn treatment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(TREATMENTS.to_vec()).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn name_of(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(pool.to_vec()).prop_map(str::to_string)
}

fn strings(pool: impl Strategy<Value = String>) -> impl Strategy<Value = Option<Vec<String>>> {
    option::weighted(0.9, vec(pool, 0..4))
}

/// Every data field of a matcher, each filled with something plausible.
#[derive(Debug, Clone)]
struct MatcherData {
    segment: SegmentNameData,
    large: Value,
    whitelist: WhitelistMatcherData,
    unary: UnaryNumericMatcherData,
    between: BetweenMatcherData,
    between_string: BetweenStringMatcherData,
    dependency: DependencyMatcherData,
    boolean: bool,
    string: String,
}

fn data_type() -> impl Strategy<Value = Option<String>> {
    option::weighted(
        0.9,
        select(vec!["NUMBER", "DATETIME", "STRING"]).prop_map(str::to_string),
    )
}

fn matcher_data() -> impl Strategy<Value = MatcherData> {
    let segment = option::weighted(0.95, prop_oneof![name_of(&SEGMENTS), name_of(&RBS_NAMES)])
        .prop_map(|segment_name| SegmentNameData { segment_name });
    let whitelist = strings(prop_oneof![word(), pattern()])
        .prop_map(|whitelist| WhitelistMatcherData { whitelist });
    let unary = (data_type(), option::weighted(0.95, number()))
        .prop_map(|(data_type, value)| UnaryNumericMatcherData { data_type, value });
    let between = (
        data_type(),
        option::weighted(0.95, number()),
        option::weighted(0.95, number()),
    )
        .prop_map(|(data_type, start, end)| BetweenMatcherData {
            data_type,
            start,
            end,
        });
    let between_string = (
        option::weighted(0.95, pattern()),
        option::weighted(0.95, pattern()),
    )
        .prop_map(|(start, end)| BetweenStringMatcherData { start, end });
    let dependency = (
        option::weighted(0.95, name_of(&FLAG_NAMES)),
        strings(treatment()),
    )
        .prop_map(|(split, treatments)| DependencyMatcherData { split, treatments });
    (
        segment,
        word().prop_map(|n| json!({ "largeSegmentName": n })),
        whitelist,
        unary,
        between,
        between_string,
        dependency,
        any::<bool>(),
        pattern(),
    )
        .prop_map(
            |(
                segment,
                large,
                whitelist,
                unary,
                between,
                between_string,
                dependency,
                boolean,
                string,
            )| {
                MatcherData {
                    segment,
                    large,
                    whitelist,
                    unary,
                    between,
                    between_string,
                    dependency,
                    boolean,
                    string,
                }
            },
        )
}

/// A matcher of a random type (known or not). The data field its type reads is usually
/// present; every other field is present now and then, as junk.
fn matcher() -> impl Strategy<Value = MatcherDef> {
    let selector = option::weighted(
        0.9,
        (
            option::of(select(vec!["user", "account"]).prop_map(str::to_string)),
            option::weighted(0.7, name_of(&ATTRIBUTES)),
        )
            .prop_map(|(traffic_type, attribute)| KeySelector {
                traffic_type,
                attribute,
            }),
    );
    (
        select(MATCHER_TYPES.to_vec()),
        selector,
        option::of(any::<bool>()),
        matcher_data(),
        weighted(0.9),
        vec(weighted(0.15), 9),
    )
        .prop_map(|(kind, key_selector, negate, d, own_field, junk)| {
            let own = match kind {
                "IN_SEGMENT" | "IN_RULE_BASED_SEGMENT" => 0,
                "IN_LARGE_SEGMENT" => 1,
                "WHITELIST"
                | "EQUAL_TO_SET"
                | "CONTAINS_ANY_OF_SET"
                | "CONTAINS_ALL_OF_SET"
                | "PART_OF_SET"
                | "STARTS_WITH"
                | "ENDS_WITH"
                | "CONTAINS_STRING"
                | "IN_LIST_SEMVER" => 2,
                "EQUAL_TO" | "GREATER_THAN_OR_EQUAL_TO" | "LESS_THAN_OR_EQUAL_TO" => 3,
                "BETWEEN" => 4,
                "BETWEEN_SEMVER" => 5,
                "IN_SPLIT_TREATMENT" => 6,
                "EQUAL_TO_BOOLEAN" => 7,
                "MATCHES_STRING"
                | "EQUAL_TO_SEMVER"
                | "GREATER_THAN_OR_EQUAL_TO_SEMVER"
                | "LESS_THAN_OR_EQUAL_TO_SEMVER" => 8,
                _ => usize::MAX,
            };
            let has = |i: usize| junk[i] || (own == i && own_field);
            MatcherDef {
                key_selector,
                matcher_type: kind.to_string(),
                negate,
                user_defined_segment_matcher_data: has(0).then(|| d.segment.clone()),
                user_defined_large_segment_matcher_data: has(1).then(|| d.large.clone()),
                whitelist_matcher_data: has(2).then(|| d.whitelist.clone()),
                unary_numeric_matcher_data: has(3).then(|| d.unary.clone()),
                between_matcher_data: has(4).then(|| d.between.clone()),
                between_string_matcher_data: has(5).then(|| d.between_string.clone()),
                dependency_matcher_data: has(6).then(|| d.dependency.clone()),
                boolean_matcher_data: has(7).then_some(d.boolean),
                string_matcher_data: has(8).then(|| d.string.clone()),
            }
        })
}

fn partition() -> impl Strategy<Value = Partition> {
    let size = prop_oneof![
        6 => 0i64..=100,
        2 => -200i64..400,
        1 => any::<i64>(),
        1 => select(vec![i64::MAX, i64::MIN]),
    ];
    (treatment(), size).prop_map(|(treatment, size)| Partition { treatment, size })
}

fn condition() -> impl Strategy<Value = Condition> {
    let group = (
        option::weighted(0.9, select(vec!["AND", "OR", ""]).prop_map(str::to_string)),
        option::weighted(0.95, vec(matcher(), 0..3)),
    )
        .prop_map(|(combiner, matchers)| MatcherGroup { combiner, matchers });
    (
        option::weighted(
            0.95,
            select(vec!["ROLLOUT", "WHITELIST", "rollout", "OTHER"]).prop_map(str::to_string),
        ),
        option::weighted(0.95, group),
        option::weighted(0.95, vec(partition(), 0..4)),
        option::of(word()),
    )
        .prop_map(
            |(condition_type, matcher_group, partitions, label)| Condition {
                condition_type,
                matcher_group,
                partitions,
                label,
            },
        )
}

fn config_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        word().prop_map(Value::String),
        (word(), any::<i64>()).prop_map(|(k, v)| json!({ k: v })),
    ]
}

/// A flag; its name is set later from its position.
fn feature_flag() -> impl Strategy<Value = FeatureFlag> {
    let head = (
        option::of(word()),
        option::weighted(0.2, weighted(0.3)),
        option::weighted(0.9, treatment()),
        option::of(any::<i64>()),
        option::weighted(
            0.9,
            prop_oneof![
                Just(2i64),
                Just(1),
                Just(0),
                Just(7),
                Just(-1),
                any::<i64>()
            ],
        ),
        option::weighted(
            0.9,
            prop_oneof![
                4 => 0i64..=100,
                1 => -50i64..200,
                1 => any::<i64>(),
            ],
        ),
        option::of(any::<i64>()),
        option::of(any::<i64>()),
    );
    let tail = (
        option::weighted(
            0.95,
            prop_oneof![
                8 => Just("ACTIVE".to_string()),
                1 => Just("ARCHIVED".to_string()),
                1 => word(),
            ],
        ),
        option::weighted(0.95, vec(condition(), 0..4)),
        option::of(hash_map(treatment(), config_value(), 0..3)),
        option::of(vec(word(), 0..3)),
        option::of(any::<bool>()),
        option::weighted(
            0.3,
            vec(
                (name_of(&FLAG_NAMES), strings(treatment()))
                    .prop_map(|(n, ts)| Prerequisite { n, ts }),
                0..3,
            ),
        ),
    );
    (head, tail).prop_map(
        |(
            (
                traffic_type_name,
                killed,
                default_treatment,
                change_number,
                algo,
                traffic_allocation,
                traffic_allocation_seed,
                seed,
            ),
            (status, conditions, configurations, sets, impressions_disabled, prerequisites),
        )| FeatureFlag {
            name: String::new(),
            traffic_type_name,
            killed,
            default_treatment,
            change_number,
            algo,
            traffic_allocation,
            traffic_allocation_seed,
            seed,
            status,
            conditions,
            configurations,
            sets,
            impressions_disabled,
            prerequisites,
        },
    )
}

fn rule_based_segment() -> impl Strategy<Value = RuleBasedSegment> {
    let excluded_segment = (
        prop_oneof![name_of(&SEGMENTS), name_of(&RBS_NAMES)],
        option::of(
            select(vec!["standard", "rule-based", "large", "weird"]).prop_map(str::to_string),
        ),
    )
        .prop_map(|(name, kind)| ExcludedSegment { name, kind });
    let excluded = (strings(word()), option::of(vec(excluded_segment, 0..3)))
        .prop_map(|(keys, segments)| Excluded { keys, segments });
    (
        option::of(excluded),
        option::weighted(0.95, vec(condition(), 0..3)),
        option::of(any::<i64>()),
        option::weighted(
            0.9,
            prop_oneof![Just("ACTIVE".to_string()), Just("ARCHIVED".to_string())],
        ),
    )
        .prop_map(
            |(excluded, conditions, change_number, status)| RuleBasedSegment {
                name: String::new(),
                change_number,
                status,
                traffic_type_name: Some("user".into()),
                excluded,
                conditions,
            },
        )
}

/// Up to four flags and three rule-based segments that refer to each other by name (cycles
/// and self-references included), and the segment `s0`.
#[derive(Debug, Clone)]
struct Definitions {
    flags: Vec<FeatureFlag>,
    rule_based: Vec<RuleBasedSegment>,
    segment: Vec<String>,
}

fn definitions() -> impl Strategy<Value = Definitions> {
    (
        vec(feature_flag(), 1..=4),
        vec(rule_based_segment(), 0..=3),
        vec(word(), 0..4),
    )
        .prop_map(|(mut flags, mut rule_based, segment)| {
            for (i, f) in flags.iter_mut().enumerate() {
                f.name = format!("f{i}");
            }
            for (i, r) in rule_based.iter_mut().enumerate() {
                r.name = format!("r{i}");
            }
            Definitions {
                flags,
                rule_based,
                segment,
            }
        })
}

fn document(d: &Definitions) -> String {
    json!({"ff": {"d": d.flags, "s": -1, "t": 10}, "rbs": {"d": d.rule_based, "s": -1, "t": 10}})
        .to_string()
}

// ---- properties ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn bucket_is_always_between_1_and_100(key in key(), seed in any::<i32>()) {
        for algo in [HashAlgo::Legacy, HashAlgo::Murmur3] {
            let b = bucket(&key, seed, algo);
            prop_assert!((1..=100).contains(&b), "{algo:?} {seed} {key:?} -> {b}");
        }
    }

    #[test]
    fn feature_flags_survive_a_serde_round_trip(d in definitions()) {
        for f in &d.flags {
            let text = serde_json::to_string(f).expect("serializes");
            let back: FeatureFlag = serde_json::from_str(&text).expect("deserializes");
            prop_assert_eq!(&back, f);
        }
        for r in &d.rule_based {
            let back: RuleBasedSegment =
                serde_json::from_value(serde_json::to_value(r).expect("serializes")).expect("deserializes");
            prop_assert_eq!(&back, r);
        }
        // And through a whole splitChanges document.
        let (doc, problems) = SplitChanges::parse(&document(&d), "generated").expect("parses");
        prop_assert!(problems.is_empty(), "{:?}", problems);
        prop_assert_eq!(&doc.flags.d, &d.flags);
        prop_assert_eq!(&doc.rule_based_segments.d, &d.rule_based);
    }

    #[test]
    fn evaluation_is_total(
        d in definitions(),
        keys in vec(key(), 1..4),
        bucketing_key in option::of(key()),
        attrs in attributes(),
    ) {
        let (snapshot, problems) =
            Snapshot::from_json(&document(&d), "generated").expect("a well-formed document loads");
        for p in &problems {
            prop_assert!(matches!(p, Error::InvalidDefinition { .. }), "{}", p);
        }
        // Every non-archived flag loads, whatever its content.
        let mut expected: Vec<String> = d
            .flags
            .iter()
            .filter(|f| f.status.as_deref() != Some("ARCHIVED"))
            .map(|f| f.name.clone())
            .collect();
        expected.sort();
        prop_assert_eq!(snapshot.flag_names(), expected);
        let snapshot = snapshot.with_segment("s0", d.segment.clone());
        let store = Store::new(snapshot.clone());

        for key in &keys {
            for flag in FLAG_NAMES {
                let e = snapshot.evaluate(key, bucketing_key.as_deref(), flag, &attrs);
                // Same answer again, and through the store.
                prop_assert_eq!(e, snapshot.evaluate(key, bucketing_key.as_deref(), flag, &attrs));
                prop_assert_eq!(
                    e.to_owned(),
                    store.load().evaluate(key, bucketing_key.as_deref(), flag, &attrs).to_owned()
                );
                let Some(view) = snapshot.flag(flag) else {
                    prop_assert_eq!(e.treatment, "control");
                    prop_assert_eq!(e.label, &Label::DefinitionNotFound);
                    prop_assert_eq!(e.change_number, None);
                    continue;
                };
                prop_assert!(
                    e.treatment == "control" || view.treatments.iter().any(|t| t == e.treatment),
                    "{flag}: treatment {:?} is not one of {:?}", e.treatment, view.treatments
                );
                prop_assert_eq!(e.change_number, Some(view.change_number));
                prop_assert!(
                    !matches!(e.label, Label::DefinitionNotFound | Label::NotReady),
                    "{flag}: label {:?}", e.label
                );
                match e.label {
                    Label::Killed => prop_assert!(view.killed),
                    Label::Exception | Label::Unsupported => prop_assert_eq!(e.treatment, "control"),
                    Label::NoRuleMatched | Label::NotInSplit | Label::PrerequisitesNotMet => {
                        prop_assert_eq!(e.treatment, view.default_treatment.as_str())
                    }
                    _ => {}
                }
                if let Some(config) = e.config {
                    prop_assert_eq!(view.configs.get(e.treatment).map(String::as_str), Some(config));
                }
            }
        }
    }

    #[test]
    fn attribute_values_from_json_are_accepted(
        attrs in btree_map(word(), attribute_value(), 0..4)
    ) {
        // Whatever the values, a JSON object of them is valid attributes.
        let obj: serde_json::Map<String, Value> = attrs
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect();
        let parsed = Attributes::from_json(&Value::Object(obj)).expect("an object is accepted");
        prop_assert_eq!(parsed.len(), attrs.len());
    }
}

fn to_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::Null => Value::Null,
        AttributeValue::Bool(b) => json!(b),
        AttributeValue::Int(i) | AttributeValue::DateTime(i) => json!(i),
        AttributeValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        AttributeValue::String(s) => json!(s.as_str()),
        AttributeValue::List(items) => Value::Array(items.iter().map(to_json).collect()),
        AttributeValue::Object(obj) => Value::Object(
            obj.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}
