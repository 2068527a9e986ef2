//! `track` end to end against a loopback server: the wire format of `events/bulk`, every
//! validation rule of SPLIT_SEMANTICS.md §7.3 with its message, and delivery under thresholds,
//! failures, concurrency and shutdown, with exact totals.

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use serde_json::{Map, Value, json};
use splitkit::{Client, ClientBuilder, Error, Properties};

use crate::common::{CLOCK_TICK_MS, logs, now_ms};
use crate::server::{
    Recorded, Reply, SdkBackend, Server, eventually, examples, flag, localhost, remote,
};

const WAIT: Duration = Duration::from_secs(10);
const EVENTS: &str = "/events/events/bulk";

fn events(r: &Recorded) -> Vec<Value> {
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("not an events body: {}", r.json()))
        .clone()
}

/// Every event in the 2xx-answered requests, in wire order.
fn delivered(server: &Server) -> Vec<Value> {
    server
        .requests_to(EVENTS)
        .iter()
        .filter(|r| r.ok())
        .flat_map(events)
        .collect()
}

/// Event types of the delivered events, each once; panics on a duplicate.
fn delivered_types(server: &Server) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for e in delivered(server) {
        let t = e["eventTypeId"].as_str().expect("eventTypeId").to_string();
        assert!(seen.insert(t.clone()), "event {t} delivered twice");
    }
    seen
}

fn props(v: Value) -> Properties {
    Properties::from(v.as_object().expect("an object").clone())
}

/// The error `track` returns (its Display), after checking it was not queued.
fn rejected(client: &Client, r: Result<(), Error>) -> String {
    let before = client.stats().events;
    let e = r.expect_err("rejected");
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let after = client.stats().events;
    assert_eq!(after.queue.recorded, before.queue.recorded, "not queued");
    e.to_string()
}

#[test]
fn events_bulk_payload_has_every_field() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    logs::start();
    let from = now_ms();
    let p = props(json!({"plan": "pro", "items": 3, "ratio": 0.5, "ok": true, "none": null}));
    client
        .track("ann", "user", "checkout", Some(42.5), Some(&p))
        .expect("tracked");
    client
        .track("bob", "account", "page.view", None, None)
        .expect("tracked");
    client
        .track_at(
            "cy",
            "user",
            "late:event",
            Some(-1.0),
            None,
            1_600_000_000_123,
        )
        .expect("tracked");
    let to = now_ms();
    assert!(
        logs::take().is_empty(),
        "no traffic type warning in localhost mode"
    );
    assert!(client.flush(WAIT));
    let reqs = server.requests_to(EVENTS);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].header("Authorization"), Some("Bearer localhost"));
    assert_eq!(reqs[0].header("Content-Type"), Some("application/json"));
    assert_eq!(
        reqs[0].header("SplitSDKVersion"),
        Some(splitkit::SDK_VERSION)
    );
    let mut got = events(&reqs[0]);
    for e in &mut got[..2] {
        let t = e["timestamp"].as_i64().expect("timestamp");
        let from = from - CLOCK_TICK_MS;
        assert!((from..=to).contains(&t), "{t} not in [{from}, {to}]");
        e["timestamp"] = json!(0);
    }
    assert_eq!(
        Value::Array(got),
        json!([
            {"key": "ann", "trafficTypeName": "user", "eventTypeId": "checkout", "value": 42.5,
             "timestamp": 0,
             "properties": {"plan": "pro", "items": 3, "ratio": 0.5, "ok": true, "none": null}},
            {"key": "bob", "trafficTypeName": "account", "eventTypeId": "page.view",
             "value": null, "timestamp": 0},
            {"key": "cy", "trafficTypeName": "user", "eventTypeId": "late:event", "value": -1.0,
             "timestamp": 1_600_000_000_123i64}
        ])
    );
    let s = client.stats().events;
    assert_eq!((s.tracked, s.rejected, s.local_only), (3, 0, 0));
    assert_eq!((s.queue.recorded, s.queue.sent), (3, 3));
    assert!(s.queue.is_balanced());
}

#[test]
fn every_validation_rule_rejects_with_its_message() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    logs::start();
    let regex_msg = |et: &str| {
        format!(
            "track: you passed {et}, event name must adhere to the regular expression ^[a-zA-Z0-9][-_.:a-zA-Z0-9]{{0,79}}$. This means an event name must be alphanumeric, cannot be more than 80 characters long, and can only include a dash, underscore, period, or colon as separators of alphanumeric characters."
        )
    };
    let cases: Vec<(Result<(), Error>, String)> = vec![
        (
            client.track("", "user", "e", None, None),
            "track: you passed an empty key, key must be a non-empty string".into(),
        ),
        (
            client.track(&"k".repeat(251), "user", "e", None, None),
            "track: key too long - must be 250 characters or less".into(),
        ),
        (
            client.track("k", "", "e", None, None),
            "track: you passed an empty traffic_type_name, traffic_type_name must be a non-empty string".into(),
        ),
        (
            client.track("k", "user", "", None, None),
            "track: you passed an empty event_type, event_type must be a non-empty String".into(),
        ),
        (client.track("k", "user", "-starts-with-dash", None, None), regex_msg("-starts-with-dash")),
        (client.track("k", "user", "has space", None, None), regex_msg("has space")),
        (client.track("k", "user", "slash/no", None, None), regex_msg("slash/no")),
        (client.track("k", "user", "ümlaut", None, None), regex_msg("ümlaut")),
        (client.track("k", "user", &"a".repeat(81), None, None), regex_msg(&"a".repeat(81))),
        (
            client.track("k", "user", "e", Some(f64::NAN), None),
            "track: value must be a finite number, got NaN".into(),
        ),
        (
            client.track("k", "user", "e", Some(f64::INFINITY), None),
            "track: value must be a finite number, got inf".into(),
        ),
    ];
    let n = cases.len() as u64;
    for (r, expected) in cases {
        assert_eq!(rejected(&client, r), expected);
    }
    let warnings = logs::take();
    assert_eq!(
        warnings.len() as u64,
        n,
        "each rejection is logged: {warnings:?}"
    );

    // The limits themselves are accepted.
    let ok: Vec<Result<(), Error>> = vec![
        client.track(&"k".repeat(250), "user", "e", None, None),
        client.track(&"é".repeat(250), "user", "e", None, None),
        client.track("k", "user", &"a".repeat(80), None, None),
        client.track("k", "user", "A0-_.:z", Some(0.0), None),
        client.track("k", "user", "9", Some(f64::MAX), None),
    ];
    for r in ok {
        r.expect("accepted");
    }
    assert!(client.flush(WAIT));
    assert_eq!(delivered(&server).len(), 5);
    let s = client.stats().events;
    assert_eq!((s.tracked, s.rejected, s.queue.sent), (5, n, 5));
}

#[test]
fn an_upper_case_traffic_type_is_lower_cased_with_a_warning() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    logs::start();
    client.track("k", "User", "e", None, None).expect("tracked");
    assert_eq!(
        logs::take(),
        vec!["track: traffic type should be all lowercase - converting string to lowercase"]
    );
    client
        .track("k", "user", "e2", None, None)
        .expect("tracked");
    assert!(logs::take().is_empty(), "no warning for a lower-case one");
    assert!(client.flush(WAIT));
    let tts: Vec<Value> = delivered(&server)
        .into_iter()
        .map(|e| e["trafficTypeName"].clone())
        .collect();
    assert_eq!(tts, vec![json!("user"), json!("user")]);
}

#[test]
fn properties_of_invalid_types_become_null_with_a_warning() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    logs::start();
    let p = props(json!({"arr": [1, 2], "obj": {"a": 1}, "s": "x", "n": -3, "b": false}));
    client
        .track("k", "user", "e", None, Some(&p))
        .expect("tracked");
    let mut w = logs::take();
    w.sort();
    assert_eq!(
        w,
        vec![
            "track: Property arr is of invalid type. Setting value to null",
            "track: Property obj is of invalid type. Setting value to null",
        ]
    );
    assert!(client.flush(WAIT));
    assert_eq!(
        delivered(&server)[0]["properties"],
        json!({"arr": null, "obj": null, "s": "x", "n": -3, "b": false})
    );
}

#[test]
fn properties_over_32_kb_are_rejected_and_not_queued() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    // Size estimate: 1024 + name length + string value length; at most 32768 is accepted.
    let fits = props(json!({"a": "x".repeat(32768 - 1024 - 1)}));
    client
        .track("k", "user", "fits", None, Some(&fits))
        .expect("32768 fits");
    let over = props(json!({"a": "x".repeat(32768 - 1024)}));
    let e = rejected(
        &client,
        client.track("k", "user", "over", None, Some(&over)),
    );
    assert_eq!(
        e,
        "track: The maximum size allowed for the properties is 32768 bytes. Current one is 32769 bytes. Event not queued"
    );
    let big = props(json!({"big": "x".repeat(32 * 1024)}));
    let e = rejected(&client, client.track("k", "user", "big", None, Some(&big)));
    assert!(
        e.contains("Current one is 33795 bytes. Event not queued"),
        "{e}"
    );
    // Many small properties add up the same way.
    let many = (0..200).fold(Properties::new(), |p, i| {
        p.with(format!("p{i:03}"), "y".repeat(160))
    });
    rejected(
        &client,
        client.track("k", "user", "many", None, Some(&many)),
    );
    assert!(client.flush(WAIT));
    let types: Vec<Value> = delivered(&server)
        .into_iter()
        .map(|e| e["eventTypeId"].clone())
        .collect();
    assert_eq!(types, vec![json!("fits")]);
    let s = client.stats().events;
    assert_eq!((s.tracked, s.rejected, s.queue.recorded), (1, 3, 1));
}

#[test]
fn more_than_300_properties_warns_and_keeps_them() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    logs::start();
    let at_limit = (0..300).fold(Properties::new(), |p, i| p.with(format!("p{i}"), i));
    client
        .track("k", "user", "e300", None, Some(&at_limit))
        .expect("tracked");
    assert!(logs::take().is_empty(), "300 is fine");
    let over = (0..301).fold(Properties::new(), |p, i| p.with(format!("p{i}"), i));
    client
        .track("k", "user", "e301", None, Some(&over))
        .expect("tracked");
    assert_eq!(
        logs::take(),
        vec![
            "track: Event has more than 300 properties. Some of them will be trimmed when processed"
        ]
    );
    assert!(client.flush(WAIT));
    let got = delivered(&server);
    assert_eq!(got[1]["properties"].as_object().map(Map::len), Some(301));
}

#[test]
fn a_full_batch_is_sent_without_flush() {
    let server = Server::start();
    let client = localhost(&server)
        .events_bulk_size(5)
        .build()
        .expect("client");
    for i in 0..5 {
        client
            .track("k", "user", &format!("e{i}"), None, None)
            .expect("tracked");
    }
    let reqs = server.expect_requests(EVENTS, 1, WAIT);
    assert_eq!(events(&reqs[0]).len(), 5);
    for i in 5..8 {
        client
            .track("k", "user", &format!("e{i}"), None, None)
            .expect("tracked");
    }
    assert!(client.flush(WAIT));
    let sizes: Vec<usize> = server
        .requests_to(EVENTS)
        .iter()
        .map(|r| events(r).len())
        .collect();
    assert_eq!(sizes, vec![5, 3]);
    assert_eq!(delivered_types(&server).len(), 8);
}

#[test]
fn events_are_sent_at_the_push_rate() {
    let server = Server::start();
    let client = localhost(&server)
        .enforce_minimum_rates(false)
        .events_push_rate(Duration::from_millis(50))
        .build()
        .expect("client");
    client.track("k", "user", "e", None, None).expect("tracked");
    let reqs = server.expect_requests(EVENTS, 1, WAIT);
    assert_eq!(events(&reqs[0]).len(), 1);
}

#[test]
fn a_failing_server_loses_nothing_once_it_recovers() {
    let server = Server::start();
    server.script(EVENTS, [Reply::status(503)]);
    let client = localhost(&server).build().expect("client");
    for i in 0..10 {
        client
            .track("k", "user", &format!("e{i}"), None, None)
            .expect("tracked");
    }
    assert!(client.flush(WAIT));
    let reqs = server.requests_to(EVENTS);
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 200]
    );
    assert_eq!(reqs[0].body, reqs[1].body, "the same batch again");
    assert_eq!(delivered_types(&server).len(), 10);
    let s = client.stats().events;
    assert_eq!(
        (s.queue.sent, s.queue.failed_attempts, s.queue.dropped()),
        (10, 1, 0)
    );
    assert!(s.queue.is_balanced());
}

#[test]
fn a_429_with_retry_after_is_honoured() {
    let server = Server::start();
    server.script(EVENTS, [Reply::status(429).header("Retry-After", "1")]);
    let client = localhost(&server).build().expect("client");
    client.track("k", "user", "e", None, None).expect("tracked");
    assert!(client.flush(WAIT));
    let reqs = server.requests_to(EVENTS);
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
}

#[test]
fn shutdown_delivers_every_event() {
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    for i in 0..7 {
        client
            .track("k", "user", &format!("e{i}"), None, None)
            .expect("tracked");
    }
    assert!(client.destroy(WAIT));
    assert_eq!(delivered_types(&server).len(), 7);
    assert!(matches!(
        client.track("k", "user", "late", None, None),
        Err(Error::Destroyed)
    ));
    let s = client.stats().events;
    assert_eq!((s.tracked, s.rejected, s.queue.sent), (7, 1, 7));
    assert!(s.queue.is_balanced());

    // Dropping the last handle does the same.
    let server = Server::start();
    let client = localhost(&server).build().expect("client");
    client
        .track("k", "user", "dropped", None, None)
        .expect("tracked");
    drop(client);
    assert_eq!(delivered_types(&server).len(), 1);
}

#[test]
fn concurrent_tracking_delivers_exact_totals() {
    const THREADS: usize = 4;
    const EACH: usize = 250;
    let server = Server::start();
    let client = localhost(&server)
        .events_bulk_size(100)
        .build()
        .expect("client");
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = client.clone();
            thread::spawn(move || {
                for n in 0..EACH {
                    c.track("k", "user", &format!("t{t}-{n}"), Some(n as f64), None)
                        .expect("tracked");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert!(client.flush(WAIT));
    assert_eq!(delivered_types(&server).len(), THREADS * EACH);
    let s = client.stats().events;
    let total = (THREADS * EACH) as u64;
    assert_eq!(
        (s.tracked, s.queue.recorded, s.queue.sent),
        (total, total, total)
    );
    assert!(s.queue.is_balanced());
}

#[test]
fn destroy_while_tracking_keeps_the_counts_exact() {
    // The race is narrow: a few rounds make it show up reliably.
    for _round in 0..5 {
        let server = Server::start();
        let client = localhost(&server).build().expect("client");
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = client.clone();
                thread::spawn(move || {
                    // Validating many properties widens the window between the check and the push.
                    let p = (0..200).fold(Properties::new(), |p, i| p.with(format!("p{i}"), i));
                    let mut ok = 0u64;
                    let mut n = 0u64;
                    while !c.is_destroyed() {
                        if c.track("k", "user", &format!("t{t}-{n}"), None, Some(&p))
                            .is_ok()
                        {
                            ok += 1;
                        }
                        n += 1;
                    }
                    ok
                })
            })
            .collect();
        assert!(eventually(WAIT, || client.stats().events.tracked >= 500));
        assert!(client.destroy(WAIT));
        let ok: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        let s = client.stats().events;
        assert_eq!(s.tracked, ok);
        assert_eq!(
            s.queue.rejected_after_shutdown, 0,
            "accepted (Ok) but refused by the closed queue: {s:?}"
        );
        assert_eq!(s.tracked, s.queue.recorded + s.local_only, "{s:?}");
        assert_eq!(delivered(&server).len() as u64, s.queue.sent);
    }
}

#[test]
fn localhost_without_an_events_url_accepts_but_sends_nothing() {
    let client = ClientBuilder::new("localhost")
        .split_file(examples("flags.json"))
        .build()
        .expect("client");
    for i in 0..3 {
        client
            .track("k", "user", &format!("e{i}"), None, None)
            .expect("accepted");
    }
    assert!(client.track("", "user", "e", None, None).is_err());
    assert!(client.flush(WAIT));
    let s = client.stats().events;
    assert_eq!((s.tracked, s.local_only, s.rejected), (3, 3, 1));
    assert_eq!(s.queue.recorded, 0);
}

#[test]
fn remote_mode_warns_about_a_traffic_type_no_flag_uses() {
    let server = Server::start();
    let backend = SdkBackend::new();
    backend.push_flag(flag("f", 10, &[], None, "on"));
    backend.install(&server, "/sdk");
    let client = remote(&server, "events-key").build().expect("client");
    client.block_until_ready(WAIT).expect("ready");
    logs::start();
    client
        .track("k", "account", "e1", None, None)
        .expect("still tracked");
    assert_eq!(
        logs::take(),
        vec![
            "track: traffic type account does not have any corresponding feature flags in this environment, make sure you're tracking your events to a valid traffic type defined in the Split user interface"
        ]
    );
    client
        .track("k", "user", "e2", None, None)
        .expect("tracked");
    assert!(logs::take().is_empty(), "flag f has traffic type user");
    assert!(client.flush(WAIT));
    let reqs = server.requests_to(EVENTS);
    assert_eq!(reqs[0].header("Authorization"), Some("Bearer events-key"));
    assert_eq!(delivered_types(&server).len(), 2);
}

#[test]
fn destroy_delivers_events_while_the_sdk_api_hangs() {
    let server = Server::start();
    let backend = SdkBackend::new();
    backend.push_flag(flag("f", 10, &[], None, "on"));
    backend.install(&server, "/sdk");
    let client = remote(&server, "hang-key").build().expect("client");
    client.block_until_ready(WAIT).expect("ready");
    // From now on the SDK API hangs (the events API is fine): a poll is left in flight.
    let gate = crate::server::Gate::closed();
    let n = server.requests_to("/sdk/splitChanges").len();
    server.script("/sdk/splitChanges", [Reply::ok().held(&gate)]);
    client.sync_now();
    server.expect_requests("/sdk/splitChanges", n + 1, WAIT);
    for i in 0..10 {
        client
            .track("k", "user", &format!("e{i}"), None, None)
            .expect("tracked");
    }
    client.destroy(Duration::from_secs(2));
    gate.open();
    let s = client.stats().events;
    assert_eq!(
        delivered_types(&server).len(),
        10,
        "the events were dropped because the SDK API hung: {s:?}"
    );
    assert_eq!(s.queue.dropped_shutdown, 0, "{s:?}");
}

#[test]
fn a_413_splits_events_and_drops_a_single_oversized_one() {
    let server = Server::start();
    // Accepts one event per request, and never the one called "huge".
    server.route(EVENTS, |r| {
        let evs = events(r);
        if evs.len() > 1 || evs.iter().any(|e| e["eventTypeId"] == "huge") {
            Reply::status(413)
        } else {
            Reply::ok()
        }
    });
    let client = localhost(&server).build().expect("client");
    for t in ["a", "b", "huge", "c"] {
        client.track("k", "user", t, None, None).expect("tracked");
    }
    assert!(client.flush(WAIT));
    let types: Vec<Value> = delivered(&server)
        .into_iter()
        .map(|e| e["eventTypeId"].clone())
        .collect();
    assert_eq!(types, [json!("a"), json!("b"), json!("c")]);
    let s = client.stats().events;
    assert_eq!((s.queue.sent, s.queue.dropped_rejected), (3, 1));
    assert!(s.queue.is_balanced());
}
