//! Remote mode through the public API, against a loopback server playing Split's SDK API:
//! the initial paged load, updates after `sync_now` or a short refresh period, failures that
//! keep the last good state, and readiness errors.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use splitkit::{Client, ClientBuilder, Label, SDK_VERSION};

use crate::server::{
    Gate, Recorded, Reply, SdkBackend, Server, dead_port, eventually, flag, remote,
};

const WAIT: Duration = Duration::from_secs(10);
const SPLITS: &str = "/sdk/splitChanges";
const SEGMENT: &str = "/sdk/segmentChanges/beta";

/// A backend with `f1` (whitelist `qa`, segment `beta`, else `off`) and `f2` (`on` for
/// everyone), and segment `beta` = {carol}.
fn backend() -> SdkBackend {
    let b = SdkBackend::new();
    b.push_flag(flag("f1", 100, &["qa"], Some("beta"), "off"));
    b.push_flag(flag("f2", 110, &[], None, "on"));
    b.push_segment("beta", 5, &["carol"], &[]);
    b
}

/// A ready remote client on `server` serving `backend` under `/sdk`.
fn ready_client(server: &Server, backend: &SdkBackend, key: &str) -> Client {
    backend.install(server, "/sdk");
    let client = remote(server, key).build().expect("client");
    client.block_until_ready(WAIT).expect("ready");
    client
}

/// Calls `sync_now` until `f` holds (the synchronizer is asynchronous; sync_now also cuts a
/// retry wait short).
fn sync_until(client: &Client, mut f: impl FnMut() -> bool) -> bool {
    eventually(WAIT, || {
        client.sync_now();
        f()
    })
}

fn label(client: &Client, key: &str, flag: &str) -> Option<Label> {
    client.evaluate(key, flag, None).label
}

#[test]
fn the_initial_load_follows_the_pages_until_since_equals_till() {
    let server = Server::start();
    let b = SdkBackend::new();
    b.page_size(2);
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let seg = (*name == "a").then_some("beta");
        b.push_flag(flag(name, 10 * (i as i64 + 1), &["qa"], seg, "off"));
    }
    b.push_segment("beta", 1, &["carol"], &[]);
    b.push_segment("beta", 2, &["dave"], &[]);
    b.push_segment("beta", 3, &["erin"], &["dave"]);
    let client = ready_client(&server, &b, "pages-key");
    assert!(client.is_ready());

    let queries: Vec<String> = server
        .requests_to(SPLITS)
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(
        queries,
        [-1, 20, 40, 50].map(|s| format!("s=1.3&since={s}&rbSince=-1")),
        "pages until since == till"
    );
    let seg: Vec<String> = server
        .requests_to(SEGMENT)
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(seg, ["since=-1", "since=2", "since=3"]);
    assert_eq!(client.manager().flag_names(), ["a", "b", "c", "d", "e"]);
    assert_eq!(client.get_treatment("qa", "e", None), "on");
    assert_eq!(client.get_treatment("carol", "a", None), "on");
    assert_eq!(client.get_treatment("erin", "a", None), "on");
    assert_eq!(
        client.get_treatment("dave", "a", None),
        "off",
        "removed again"
    );
    assert_eq!(
        label(&client, "carol", "a"),
        Some(Label::Rule("in segment beta".into()))
    );

    for r in server.requests_to("/sdk/") {
        assert_eq!(r.method, "GET");
        assert_eq!(r.header("Authorization"), Some("Bearer pages-key"));
        assert_eq!(r.header("SplitSDKVersion"), Some(SDK_VERSION));
        assert_eq!(r.header("Cache-Control"), Some("no-cache"));
        assert!(
            r.header("Accept-Encoding")
                .is_some_and(|v| v.contains("gzip"))
        );
    }
}

#[test]
fn a_killed_flag_is_visible_after_sync_now() {
    let server = Server::start();
    let b = backend();
    let client = ready_client(&server, &b, "kill-key");
    assert_eq!(client.get_treatment("anyone", "f2", None), "on");
    let mut killed = flag("f2", 120, &[], None, "on");
    killed["killed"] = json!(true);
    killed["defaultTreatment"] = json!("off");
    b.push_flag(killed);
    assert!(sync_until(&client, || label(&client, "anyone", "f2")
        == Some(Label::Killed)));
    let d = client.evaluate("anyone", "f2", None);
    assert_eq!((d.treatment.as_str(), d.change_number), ("off", Some(120)));
    assert!(
        server.wait_for(WAIT, |rs| rs
            .iter()
            .any(|r| r.path == SPLITS && r.param("since") == Some("120"))),
        "then asks from the new change number until since == till"
    );
    // Impressions carry the change number and label of the definition that decided.
    assert!(client.flush(WAIT));
    let seen: Vec<(Value, Value, Value)> = server
        .requests_to("/events/testImpressions/bulk")
        .iter()
        .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
        .filter(|g| g["f"] == "f2")
        .flat_map(|g| g["i"].as_array().cloned().unwrap_or_default())
        .map(|i| (i["t"].clone(), i["c"].clone(), i["r"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (json!("on"), json!(110), json!("default rule")),
            (json!("off"), json!(120), json!("killed"))
        ]
    );
}

#[test]
fn a_failing_first_load_is_retried_until_ready() {
    let server = Server::start();
    server.script(
        SPLITS,
        [Reply::status(500), Reply::status(500), Reply::status(500)],
    );
    let b = backend();
    b.install(&server, "/sdk");
    let client = remote(&server, "retry-key").build().expect("client");
    let e = client
        .block_until_ready(Duration::from_millis(200))
        .expect_err("not ready yet")
        .to_string();
    assert!(e.contains("HTTP 500"), "the last error is named: {e}");
    assert!(sync_until(&client, || client.is_ready()));
    client.block_until_ready(WAIT).expect("ready");
    assert_eq!(client.get_treatment("carol", "f1", None), "on");
    let statuses: Vec<u16> = server
        .requests_to(SPLITS)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(&statuses[..4], [500, 500, 500, 200]);
}

#[test]
fn a_segment_gains_and_loses_keys() {
    let server = Server::start();
    let b = backend();
    let client = ready_client(&server, &b, "segment-key");
    assert_eq!(client.get_treatment("carol", "f1", None), "on");
    assert_eq!(client.get_treatment("dave", "f1", None), "off");
    b.push_segment("beta", 6, &["dave"], &["carol"]);
    assert!(sync_until(&client, || {
        client.get_treatment("dave", "f1", None) == "on"
    }));
    assert_eq!(client.get_treatment("carol", "f1", None), "off");
    let since: Vec<String> = server
        .requests_to(SEGMENT)
        .iter()
        .filter_map(|r| r.param("since").map(str::to_string))
        .collect();
    assert!(since.contains(&"5".to_string()), "{since:?}");
}

#[test]
fn an_archived_flag_disappears() {
    let server = Server::start();
    let b = backend();
    let client = ready_client(&server, &b, "archive-key");
    assert!(client.manager().flag("f2").is_some());
    let mut archived = flag("f2", 130, &[], None, "on");
    archived["status"] = json!("ARCHIVED");
    b.push_flag(archived);
    assert!(sync_until(&client, || client
        .manager()
        .flag("f2")
        .is_none()));
    let d = client.evaluate("anyone", "f2", None);
    assert_eq!(d.treatment, "control");
    assert_eq!(d.label, Some(Label::DefinitionNotFound));
    assert!(!d.impression);
    assert_eq!(client.manager().flag_names(), ["f1"]);
}

#[test]
fn errors_and_garbage_keep_the_last_good_state() {
    let server = Server::start();
    let b = backend();
    let client = ready_client(&server, &b, "garbage-key");
    let before = client.manager().flag_names();
    let n = server.requests_to(SPLITS).len();
    server.script(
        SPLITS,
        [
            Reply::status(500),
            Reply::ok().body("{\"ff\": {\"d\": [ garbage"),
            Reply::json(&json!({"ff": 5})),
            Reply::json(&json!({"not": "a splitChanges document"})),
            Reply::status(404).body("not here"),
        ],
    );
    let m = server.requests_to(SEGMENT).len();
    server.script(
        SEGMENT,
        [Reply::status(503), Reply::ok().body("<html>oops</html>")],
    );
    assert!(
        sync_until(&client, || server.requests_to(SPLITS).len() >= n + 5
            && server.requests_to(SEGMENT).len() >= m + 2),
        "the bad answers were served"
    );
    assert_eq!(client.manager().flag_names(), before);
    assert_eq!(client.get_treatment("qa", "f1", None), "on");
    assert_eq!(
        client.get_treatment("carol", "f1", None),
        "on",
        "segment kept"
    );
    assert_eq!(client.get_treatment("anyone", "f2", None), "on");
    assert!(client.is_ready());
    client.block_until_ready(WAIT).expect("still ready");
    // And it recovers.
    let mut killed = flag("f2", 140, &[], None, "on");
    killed["killed"] = json!(true);
    b.push_flag(killed);
    assert!(sync_until(&client, || label(&client, "anyone", "f2")
        == Some(Label::Killed)));
}

#[test]
fn a_rejected_key_fails_readiness_without_showing_the_key() {
    for status in [401, 403] {
        let server = Server::start();
        server.route(SPLITS, move |_| Reply::status(status));
        let key = format!("SECRET-key-{status}");
        let client = remote(&server, &key).build().expect("client");
        let start = Instant::now();
        let e = client
            .block_until_ready(WAIT)
            .expect_err("not ready")
            .to_string();
        assert!(start.elapsed() < Duration::from_secs(3), "fails fast");
        assert!(e.contains(&status.to_string()), "{e}");
        assert!(e.contains("SDK key was rejected"), "{e}");
        assert!(
            !e.contains(&key) && !e.contains("SECRET"),
            "the key leaked: {e}"
        );
        assert!(!client.is_ready());
        let d = client.evaluate("k", "f1", None);
        assert_eq!(
            (d.treatment.as_str(), d.label),
            ("control", Some(Label::NotReady))
        );
        // A rejected key stops synchronization: no retries.
        let n = server.requests_to(SPLITS).len();
        client.sync_now();
        assert!(!server.wait_for(Duration::from_millis(200), |rs| {
            rs.iter().filter(|r| r.path == SPLITS).count() > n
        }));
    }
}

#[test]
fn an_unreachable_server_is_named_in_the_error() {
    let port = dead_port();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let client = ClientBuilder::new("SECRET-unreachable")
        .streaming_enabled(false)
        .sdk_url(url("/sdk"))
        .events_url(url("/events"))
        .telemetry_url(url("/telemetry"))
        .enforce_minimum_rates(false)
        .request_timeout(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let e = client
        .block_until_ready(Duration::from_millis(700))
        .expect_err("not ready")
        .to_string();
    assert!(e.contains(&url("/sdk/splitChanges")), "{e}");
    assert!(e.contains("cannot reach"), "{e}");
    assert!(!e.contains("SECRET"), "{e}");
}

#[test]
fn before_ready_evaluations_are_control_with_not_ready() {
    let server = Server::start();
    let gate = Gate::closed();
    server.script(SPLITS, [Reply::ok().held(&gate)]);
    let b = backend();
    b.install(&server, "/sdk");
    let client = remote(&server, "early-key").build().expect("client");
    assert!(!client.is_ready());
    let e = client
        .block_until_ready(Duration::from_millis(100))
        .expect_err("still loading")
        .to_string();
    assert!(e.contains("still loading feature flags"), "{e}");
    let d = client.evaluate("qa", "f1", None);
    assert_eq!(
        (d.treatment.as_str(), d.label),
        ("control", Some(Label::NotReady))
    );
    assert!(d.impression);
    let many = client.get_treatments("qa", &["f1", "f2"], None);
    assert!(many.values().all(|t| t == "control"), "{many:?}");
    gate.open();
    client.block_until_ready(WAIT).expect("ready");
    assert_eq!(client.get_treatment("qa", "f1", None), "on");
    assert_eq!(
        client.get_treatment("carol", "f1", None),
        "on",
        "segments too"
    );
}

#[test]
fn a_flag_sets_filter_is_sent_and_applied() {
    let server = Server::start();
    let b = SdkBackend::new();
    for (name, sets) in [
        ("x", json!(["backend"])),
        ("y", json!(["other"])),
        ("z", json!(["front"])),
    ] {
        let mut f = flag(name, 10, &[], None, "on");
        f["sets"] = sets;
        b.push_flag(f);
    }
    b.install(&server, "/sdk");
    let client = remote(&server, "sets-key")
        .flag_sets_filter(&[" Front", "backend"])
        .build()
        .expect("client");
    client.block_until_ready(WAIT).expect("ready");
    let first: Recorded = server.requests_to(SPLITS).remove(0);
    assert_eq!(first.query, "s=1.3&since=-1&rbSince=-1&sets=backend,front");
    assert_eq!(client.manager().flag_names(), ["x", "z"]);
}

#[test]
fn update_latency_with_a_50_ms_refresh_rate() {
    let server = Server::start();
    let b = backend();
    b.install(&server, "/sdk");
    let client = remote(&server, "latency-key")
        .features_refresh_rate(Duration::from_millis(50))
        .segments_refresh_rate(Duration::from_millis(50))
        .build()
        .expect("client");
    client.block_until_ready(WAIT).expect("ready");
    let mut flag_ms = Vec::new();
    for round in 0..5i64 {
        let mut f = flag("f2", 200 + round, &[], None, "on");
        let killed = round % 2 == 0;
        f["killed"] = json!(killed);
        let want = if killed { "off" } else { "on" };
        let start = Instant::now();
        b.push_flag(f);
        assert!(eventually(WAIT, || client
            .get_treatment("anyone", "f2", None)
            == want));
        flag_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let start = Instant::now();
    b.push_segment("beta", 9, &["zoe"], &[]);
    assert!(eventually(WAIT, || client.get_treatment("zoe", "f1", None) == "on"));
    let segment_ms = start.elapsed().as_secs_f64() * 1000.0;
    flag_ms.sort_by(f64::total_cmp);
    eprintln!(
        "remote update latency with 50 ms refresh rates: flag min {:.1} ms, median {:.1} ms, max {:.1} ms; segment {segment_ms:.1} ms",
        flag_ms[0], flag_ms[2], flag_ms[4]
    );
    assert!(flag_ms[4] < 2000.0 && segment_ms < 2000.0);
}

#[test]
fn max_response_bytes_and_sync_backoff_reach_the_synchronizer() {
    let server = Server::start();
    let backend = SdkBackend::new();
    backend.push_flag(flag("f", 10, &["a"], None, "off"));
    backend.install(&server, "/sdk");
    let client = remote(&server, "small-answers")
        .max_response_bytes(10)
        .build()
        .expect("client");
    let e = client
        .block_until_ready(Duration::from_secs(5))
        .expect_err("an answer over 10 bytes is refused");
    assert!(e.to_string().contains("larger than 10 bytes"), "{e}");
    client.destroy(Duration::from_secs(2));

    let failing = Server::start();
    failing.route("/sdk/splitChanges", |_| Reply::status(503));
    let client = remote(&failing, "fast-retries")
        .sync_backoff(Duration::from_millis(2), Duration::from_millis(10))
        .build()
        .expect("client");
    assert!(
        eventually(Duration::from_secs(5), || failing
            .requests_to("/sdk/splitChanges")
            .len()
            >= 20),
        "retried every few milliseconds: {}",
        failing.requests_to("/sdk/splitChanges").len()
    );
    client.destroy(Duration::from_secs(2));
}
