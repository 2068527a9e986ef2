//! Evaluation does not allocate: a counting global allocator around the benchmark's workload.
//!
//! This is its own test binary (the allocator is global to the binary). Only allocations made
//! by a test's own thread while it measures are counted (a thread-local switch), so the test
//! harness and tests running in parallel cannot disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use serde_json::{Value, json};
use splitkit::{AttributeRef, AttributeValue, Attributes, Label, Snapshot, Store};

#[path = "support/workload.rs"]
mod workload;
use workload::{flag, uuid_keys};

#[path = "support/sink.rs"]
mod sink;
use sink::Sink;

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    /// Allocations made by this thread while measuring (per thread, so that tests running
    /// in parallel cannot add to each other's counts).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may run while thread locals are being torn down.
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Number of allocations `f` makes on this thread.
fn allocations_of<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = ALLOCATIONS.with(Cell::get);
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (ALLOCATIONS.with(Cell::get) - before, r)
}

const KEYS: usize = 4096;

#[test]
fn evaluation_does_not_allocate() {
    // The counter works: an allocation on this thread is seen.
    let (n, b) = allocations_of(|| Box::new(std::hint::black_box(7u64)));
    assert!(n >= 1 && *b == 7, "the counting allocator is not in use");

    let keys = uuid_keys(KEYS);
    let wl: Vec<&str> = keys
        .iter()
        .step_by(KEYS / 10)
        .take(10)
        .map(String::as_str)
        .collect();
    let doc = json!({"ff": {"d": [
        flag("checkout", &wl, 100, false),
        flag("killed", &wl, 100, true),
        flag("half_traffic", &wl, 50, false),
    ], "s": -1, "t": 42}});
    let (snapshot, problems) = Snapshot::from_json(&doc.to_string(), "alloc").expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    let store = Store::new(snapshot);
    let plans = workload::PLANS;
    let attrs: Vec<Attributes> = (0..KEYS)
        .map(|i| Attributes::new().with("plan", plans[i % plans.len()]))
        .collect();
    let no_attrs = Attributes::new();

    // Each case: flag, attributes by key index, the label it must produce for some keys.
    let cases: [(&str, &str, bool, &str); 6] = [
        ("whitelist hit", "checkout", true, "whitelisted"),
        ("plan rule hit", "checkout", true, "plan rule"),
        ("50/50 rollout", "checkout", false, "default rule"),
        ("not found", "no_such_flag", true, "definition not found"),
        ("killed", "killed", true, "killed"),
        ("not in split", "half_traffic", false, "not in split"),
    ];
    // Pick, for each case, keys that really take that path.
    let mut per_case: Vec<Vec<usize>> = vec![Vec::new(); cases.len()];
    {
        let snap = store.load();
        for (c, (_, flag, with_attrs, label)) in cases.iter().enumerate() {
            for i in 0..KEYS {
                let a = if *with_attrs { &attrs[i] } else { &no_attrs };
                if snap.evaluate(&keys[i], None, flag, a).label.as_str() == *label {
                    per_case[c].push(i);
                }
            }
            assert!(!per_case[c].is_empty(), "no key takes path {label}");
        }
    }
    assert_eq!(per_case[0].len(), 10);

    // Warm up (thread-local state of arc-swap, lazily built tables) outside the count.
    for _ in 0..2 {
        for (c, (_, flag, with_attrs, _)) in cases.iter().enumerate() {
            for &i in &per_case[c] {
                let a = if *with_attrs { &attrs[i] } else { &no_attrs };
                std::hint::black_box(store.load().evaluate(&keys[i], None, flag, a).treatment);
            }
        }
    }

    const EVALUATIONS: usize = 10_000;
    let mut report = Vec::new();
    for (c, (what, flag, with_attrs, label)) in cases.iter().enumerate() {
        let idx = &per_case[c];
        let (n, ok) = allocations_of(|| {
            let mut ok = 0usize;
            for j in 0..EVALUATIONS {
                let i = idx[j % idx.len()];
                let a = if *with_attrs { &attrs[i] } else { &no_attrs };
                let snap = store.load();
                let e = snap.evaluate(&keys[i], None, flag, a);
                ok += usize::from(e.label.as_str() == *label);
                std::hint::black_box(e.config);
            }
            ok
        });
        assert_eq!(ok, EVALUATIONS, "{what}: wrong path taken");
        report.push((*what, n));
    }
    // The whole mixed workload, round-robin over every key, as the benchmark runs it.
    let (mixed, _) = allocations_of(|| {
        for j in 0..EVALUATIONS {
            let i = j % KEYS;
            let snap = store.load();
            std::hint::black_box(
                snap.evaluate(&keys[i], None, "checkout", &attrs[i])
                    .treatment,
            );
        }
    });
    report.push(("mixed bench workload", mixed));
    // The label type is what the API hands out; make sure reading it is free too.
    let (label_reads, _) = allocations_of(|| {
        let snap = store.load();
        let e = snap.evaluate(&keys[0], None, "checkout", &attrs[0]);
        std::hint::black_box(matches!(e.label, Label::Rule(_)));
        std::hint::black_box(e.label.as_str().len());
    });
    report.push(("label read", label_reads));

    eprintln!("allocations per {EVALUATIONS} evaluations: {report:?}");
    let allocating: Vec<_> = report.iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        allocating.is_empty(),
        "evaluation allocated: {allocating:?}"
    );
}

/// One flag per matcher kind, each evaluated with an attribute that reaches the matcher.
fn matcher_cases() -> (Snapshot, Vec<(&'static str, Attributes)>) {
    let m = |kind: &str, attribute: Option<&str>, data: Value| {
        let mut m = json!({"keySelector": {"trafficType": "user", "attribute": attribute},
                           "matcherType": kind, "negate": false});
        if let (Some(obj), Value::Object(more)) = (m.as_object_mut(), data) {
            obj.extend(more);
        }
        m
    };
    let a = |name: &str, v: Value| Attributes::from_json(&json!({ name: v })).expect("object");
    let list = |items: &[&str]| json!({"whitelistMatcherData": {"whitelist": items}});
    let number = |v: i64| json!({"unaryNumericMatcherData": {"dataType": "NUMBER", "value": v}});
    let cases: Vec<(&'static str, Value, Attributes)> = vec![
        (
            "number_equal_to",
            m("EQUAL_TO", Some("n"), number(5)),
            a("n", json!(5)),
        ),
        (
            "number_from_string",
            m("GREATER_THAN_OR_EQUAL_TO", Some("n"), number(5)),
            a("n", json!("7")),
        ),
        (
            "datetime_between",
            m(
                "BETWEEN",
                Some("t"),
                json!({"betweenMatcherData":
            {"dataType": "DATETIME", "start": 0, "end": 1_800_000_000_000_i64}}),
            ),
            a("t", json!(1_700_000_000_000_i64)),
        ),
        (
            "matches_string",
            m(
                "MATCHES_STRING",
                Some("s"),
                json!({"stringMatcherData": "^a.*z$"}),
            ),
            a("s", json!("abcz")),
        ),
        (
            "starts_with",
            m("STARTS_WITH", Some("s"), list(&["ab"])),
            a("s", json!("abcz")),
        ),
        (
            "contains_string",
            m("CONTAINS_STRING", Some("s"), list(&["bc"])),
            a("s", json!("abcz")),
        ),
        (
            "equal_to_boolean",
            m(
                "EQUAL_TO_BOOLEAN",
                Some("b"),
                json!({"booleanMatcherData": true}),
            ),
            a("b", json!("TRUE")),
        ),
        (
            "in_segment",
            m(
                "IN_SEGMENT",
                None,
                json!({"userDefinedSegmentMatcherData": {"segmentName": "seg"}}),
            ),
            Attributes::new(),
        ),
        (
            "dependency_on_whitelist",
            m(
                "IN_SPLIT_TREATMENT",
                None,
                json!({"dependencyMatcherData": {"split": "starts_with", "treatments": ["on"]}}),
            ),
            a("s", json!("abcz")),
        ),
        // The ones below used to allocate (see `non_string_inputs_do_not_allocate`).
        (
            "whitelist_int_attribute",
            m("WHITELIST", Some("n"), list(&["5"])),
            a("n", json!(5)),
        ),
        (
            "whitelist_float_attribute",
            m("WHITELIST", Some("n"), list(&["5.5"])),
            a("n", json!(5.5)),
        ),
        (
            "contains_any_of_set",
            m("CONTAINS_ANY_OF_SET", Some("t"), list(&["a"])),
            a("t", json!(["a", "b"])),
        ),
        (
            "part_of_set",
            m("PART_OF_SET", Some("t"), list(&["a", "b", "c"])),
            a("t", json!(["a", "b"])),
        ),
        (
            "semver_greater_or_equal",
            m(
                "GREATER_THAN_OR_EQUAL_TO_SEMVER",
                Some("v"),
                json!({"stringMatcherData": "1.2.3"}),
            ),
            a("v", json!("1.5.0")),
        ),
        (
            "semver_in_list",
            m("IN_LIST_SEMVER", Some("v"), list(&["1.2.3"])),
            a("v", json!("1.2.3")),
        ),
        (
            "semver_in_list_normalized",
            m(
                "IN_LIST_SEMVER",
                Some("v"),
                list(&["2.0.0", "1.02.3-rc.01+b"]),
            ),
            a("v", json!("01.2.3-rc.1+b")),
        ),
        (
            "semver_equal",
            m(
                "EQUAL_TO_SEMVER",
                Some("v"),
                json!({"stringMatcherData": "1.2.3-rc.1"}),
            ),
            a("v", json!("1.2.3-rc.01")),
        ),
        (
            "semver_between",
            m(
                "BETWEEN_SEMVER",
                Some("v"),
                json!({"betweenStringMatcherData": {"start": "1.0.0-rc.1", "end": "2.0.0"}}),
            ),
            a("v", json!("1.0.0")),
        ),
        (
            "semver_less_or_equal",
            m(
                "LESS_THAN_OR_EQUAL_TO_SEMVER",
                Some("v"),
                json!({"stringMatcherData": "1.2.3"}),
            ),
            a("v", json!("1.2.3-alpha.beta")),
        ),
        (
            "equal_to_set",
            m("EQUAL_TO_SET", Some("t"), list(&["a", "b"])),
            a("t", json!(["b", "a", "b"])),
        ),
        (
            "contains_all_of_set",
            m("CONTAINS_ALL_OF_SET", Some("t"), list(&["a", "b"])),
            a("t", json!(["c", "b", "a"])),
        ),
        (
            "set_of_numbers",
            m(
                "PART_OF_SET",
                Some("t"),
                list(&["1", "2.5", "true", "null"]),
            ),
            a("t", json!([1, 2.5, true, null])),
        ),
        (
            "starts_with_int_attribute",
            m("STARTS_WITH", Some("n"), list(&["-92"])),
            a("n", json!(i64::MIN)),
        ),
        (
            "ends_with_float_attribute",
            m("ENDS_WITH", Some("n"), list(&["e-7"])),
            a("n", json!(-1.5e-7)),
        ),
        (
            "whitelist_datetime_attribute",
            m("WHITELIST", Some("d"), list(&["1700000000000"])),
            {
                let mut attrs = Attributes::new();
                attrs.insert("d", AttributeValue::DateTime(1_700_000_000_000));
                attrs
            },
        ),
    ];
    let flags: Vec<Value> = cases
        .iter()
        .map(|(name, matcher, _)| {
            json!({"name": name, "defaultTreatment": "off", "algo": 2,
            "conditions": [{"conditionType": "ROLLOUT",
                "matcherGroup": {"combiner": "AND", "matchers": [matcher]},
                "partitions": [{"treatment": "on", "size": 100}], "label": "rule"}]})
        })
        .collect();
    let (s, problems) =
        Snapshot::from_json(&json!({"ff": {"d": flags}}).to_string(), "matchers").expect("parses");
    assert!(problems.is_empty(), "{problems:?}");
    let s = s.with_segment("seg", ["k1"]);
    for (name, _, attrs) in &cases {
        let e = s.evaluate("k1", None, name, attrs);
        assert_eq!((e.treatment, e.label.as_str()), ("on", "rule"), "{name}");
    }
    (s, cases.into_iter().map(|(n, _, a)| (n, a)).collect())
}

/// Allocations per 1,000 evaluations of each matcher case, after warm-up.
fn matcher_allocations() -> Vec<(&'static str, usize)> {
    let (s, cases) = matcher_cases();
    cases
        .iter()
        .map(|(name, attrs)| {
            for _ in 0..3 {
                std::hint::black_box(s.evaluate("k1", None, name, attrs).treatment);
            }
            let (n, _) = allocations_of(|| {
                for _ in 0..1_000 {
                    std::hint::black_box(s.evaluate("k1", None, name, attrs).treatment);
                }
            });
            (*name, n)
        })
        .collect()
}

#[test]
fn string_and_number_matchers_do_not_allocate() {
    let report = matcher_allocations();
    eprintln!("allocations per 1000 evaluations: {report:?}");
    let zero_expected = report
        .iter()
        .take_while(|(n, _)| *n != "whitelist_int_attribute");
    let allocating: Vec<_> = zero_expected.filter(|(_, n)| *n > 0).collect();
    assert!(
        allocating.is_empty(),
        "evaluation allocated: {allocating:?}"
    );
}

/// Reading a non-string attribute as a string (`5` -> "5", `5.5` -> "5.5", formatted on the
/// stack), a list as a set (its items read in place) or an attribute as a semantic version
/// (parsed into slices of the text) allocates nothing either. Only a list read as a string
/// or a number (its items joined) is built on the heap.
#[test]
fn non_string_inputs_do_not_allocate() {
    let report = matcher_allocations();
    let allocating: Vec<_> = report.iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        allocating.is_empty(),
        "evaluation allocated (per 1000): {allocating:?}"
    );
}

/// Every matcher case again, its attribute given as a borrowed pair in its most direct form
/// (strings, numbers and times as they are, a list of strings as `&[&str]`, anything else as a
/// borrowed `AttributeValue`): the same result, and no allocation at all.
#[test]
fn every_matcher_reads_borrowed_attributes_without_allocating() {
    let (s, cases) = matcher_cases();
    let mut allocating = Vec::new();
    for (name, attrs) in &cases {
        let lists: Vec<Option<Vec<&str>>> = attrs
            .iter()
            .map(|(_, v)| match v {
                AttributeValue::List(items) => items
                    .iter()
                    .map(|i| match i {
                        AttributeValue::String(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            })
            .collect();
        let pairs: Vec<(&str, AttributeRef<'_>)> = attrs
            .iter()
            .zip(&lists)
            .map(|((n, v), list)| {
                let v = match (v, list) {
                    (AttributeValue::String(s), _) => AttributeRef::Str(s.as_str()),
                    (AttributeValue::Int(i), _) => AttributeRef::Int(*i),
                    (AttributeValue::Float(f), _) => AttributeRef::Float(*f),
                    (AttributeValue::DateTime(ms), _) => AttributeRef::DateTime(*ms),
                    (_, Some(list)) => AttributeRef::StrList(list),
                    (v, None) => AttributeRef::Value(v),
                };
                (n, v)
            })
            .collect();
        let e = s.evaluate("k1", None, name, &pairs);
        assert_eq!((e.treatment, e.label.as_str()), ("on", "rule"), "{name}");
        let (n, _) = allocations_of(|| {
            for _ in 0..1_000 {
                std::hint::black_box(s.evaluate("k1", None, name, &pairs).treatment);
            }
        });
        if n > 0 {
            allocating.push((*name, n));
        }
    }
    assert!(
        allocating.is_empty(),
        "evaluation allocated (per 1000): {allocating:?}"
    );
}

#[test]
fn get_treatment_with_recording_allocates_nothing() {
    use splitkit::{Client, ImpressionsMode};
    let sink = Sink::start();
    let keys = uuid_keys(KEYS);
    let doc = json!({"ff": {"d": [flag("f", &["someone"], 100, false)], "s": -1, "t": 1}});
    let attrs = Attributes::new().with("plan", "free");
    for mode in [ImpressionsMode::Debug, ImpressionsMode::Optimized] {
        let (snapshot, problems) = Snapshot::from_json(&doc.to_string(), "alloc").expect("doc");
        assert!(problems.is_empty());
        let client = Client::builder("localhost")
            .snapshot(snapshot)
            .events_url(sink.url())
            .impressions_mode(mode)
            .impressions_queue_size(4 * KEYS)
            .impressions_bulk_size(4 * KEYS)
            .build()
            .expect("client");
        // Every key once, so that the dedupe cache holds them all (its growth allocates).
        for k in &keys {
            client.get_treatment(k.as_str(), "f", Some(&attrs));
        }
        assert!(client.flush(std::time::Duration::from_secs(10)));
        // The flush took the hourly counts; the first count of the next period allocates
        // its flag's entry (once per flag and period, not per impression).
        client.get_treatment(keys[0].as_str(), "f", Some(&attrs));
        let (n, _) = allocations_of(|| {
            for k in &keys {
                std::hint::black_box(client.get_treatment(k.as_str(), "f", Some(&attrs)));
            }
        });
        assert_eq!(n, 0, "{mode:?}: the treatment is returned without a copy");
        // Attributes borrowed from where the caller holds them: nothing to build either.
        let tags = vec!["beta".to_string(), "mobile".to_string()];
        let (n, _) = allocations_of(|| {
            for k in &keys {
                let attrs = [("plan", "free".into()), ("tags", (&tags).into())];
                std::hint::black_box(client.get_treatment(k.as_str(), "f", &attrs));
            }
        });
        assert_eq!(n, 0, "{mode:?}: borrowed attributes");
        assert!(client.flush(std::time::Duration::from_secs(10)));
        let s = client.stats().impressions;
        let queued = if mode == ImpressionsMode::Debug {
            3 * KEYS + 1
        } else {
            KEYS
        };
        assert_eq!(s.queue.sent as usize, queued, "{mode:?}: {s:?}");
        assert!(s.is_balanced(), "{s:?}");
        client.destroy(std::time::Duration::from_secs(10));
    }
}

#[test]
fn building_attributes_allocates_only_their_list_and_long_strings() {
    let long = "a value well past the twenty-four bytes kept inline";
    let (n, attrs) = allocations_of(|| {
        Attributes::new()
            .with("plan", "enterprise")
            .with("age", 42)
            .with("country", "AR")
            .with("email", "someone@example.com")
    });
    assert_eq!(n, 1, "one allocation: the list of four entries");
    assert_eq!(
        attrs.get("email"),
        Some(&AttributeValue::from("someone@example.com"))
    );
    drop(attrs);
    let (n, attrs) = allocations_of(|| {
        Attributes::new()
            .with("plan", "enterprise")
            .with("tags", ["beta", "mobile"])
            .with("bio", long)
    });
    assert_eq!(n, 3, "the entries, the list value and the long string");
    assert_eq!(attrs.get("bio"), Some(&AttributeValue::from(long)));
    assert_eq!(
        attrs.get("tags"),
        Some(&AttributeValue::List(vec!["beta".into(), "mobile".into()]))
    );
}
