//! Streaming end to end against a loopback backend (auth, server-sent events, the SDK API):
//! every notification type and payload encoding, the inline fast path and the fetch path,
//! kills, segment and rule-based segment updates, pause and resume (both spellings),
//! disabling, occupancy, a dropped connection, token refresh, token and final errors, the
//! CDN-bypass fetch, the fallback to polling and back, and the updates subscription. The
//! tests wait for events, not for fixed times.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use splitkit::{Client, ClientBuilder, Update};

use crate::server::{Reply, SdkBackend, Server, eventually, flag};

#[path = "../support/sse.rs"]
mod sse;
use sse::{SEGMENTS, SPLITS, SseServer, token};

const WAIT: Duration = Duration::from_secs(10);
const SPLIT_CHANGES: &str = "/sdk/splitChanges";

/// A backend: the SDK API (flags, segments) and auth on one server, the stream on another.
struct Backend {
    server: Server,
    sdk: SdkBackend,
    sse: SseServer,
}

impl Backend {
    /// `f` (`on` for `a`, else `off`, change number 10), auth answering with a token of
    /// `lifetime` seconds.
    fn start(lifetime: i64) -> Backend {
        Backend::with_auth(move || {
            Reply::json(&json!({"pushEnabled": true, "token": token(lifetime)}))
        })
    }

    /// The same backend, with `auth` answering authentication.
    fn with_auth(mut auth: impl FnMut() -> Reply + Send + 'static) -> Backend {
        let server = Server::start();
        let sdk = SdkBackend::new();
        sdk.push_flag(flag("f", 10, &["a"], None, "off"));
        sdk.install(&server, "/sdk");
        server.route("/auth/v2/auth", move |_| auth());
        Backend {
            server,
            sdk,
            sse: SseServer::start(),
        }
    }

    /// A remote client on this backend, polling every 100 ms when it polls.
    fn client(&self) -> ClientBuilder {
        ClientBuilder::new("stream-key-1234")
            .sdk_url(self.server.url("/sdk"))
            .events_url(self.server.url("/events"))
            .telemetry_url(self.server.url("/telemetry"))
            .auth_url(self.server.url("/auth"))
            .streaming_url(self.sse.url())
            .enforce_minimum_rates(false)
            .features_refresh_rate(Duration::from_millis(100))
            .segments_refresh_rate(Duration::from_millis(100))
            .request_timeout(Duration::from_secs(2))
            .shutdown_timeout(Duration::from_secs(2))
    }

    /// A started client, ready and connected to the stream.
    fn connected(&self) -> Client {
        let client = self.client().build().expect("client");
        client.block_until_ready(WAIT).expect("ready");
        assert!(
            self.sse.wait_connections(1, WAIT),
            "connected to the stream"
        );
        client
    }

    fn polls(&self) -> usize {
        self.server.requests_to(SPLIT_CHANGES).len()
    }

    /// Waits until no poll came for `quiet`; the number of polls then.
    fn settled(&self, quiet: Duration) -> usize {
        let mut last = self.polls();
        let mut since = Instant::now();
        while since.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.polls();
            if now != last {
                last = now;
                since = Instant::now();
            }
            assert!(since.elapsed() < WAIT, "never settles");
        }
        last
    }
}

fn treatment(client: &Client, key: &str) -> String {
    client.get_treatment(key, "f", None).into()
}

/// Waits up to `WAIT` for `key` to get `want`; the time it took.
fn visible(client: &Client, key: &str, want: &str) -> Duration {
    let started = Instant::now();
    assert!(
        eventually(WAIT, || treatment(client, key) == want),
        "{key} never got {want} (has {})",
        treatment(client, key)
    );
    started.elapsed()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn while_streaming_polling_stops_and_a_kill_is_seen_at_once() {
    let b = Backend::start(3600);
    let client = b.connected();
    let updates = client.updates();
    assert_eq!(updates.recv_timeout(WAIT), Ok(Update::Ready));
    let polls = b.settled(Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.polls(), polls, "no polling while the stream is up");
    assert_eq!(treatment(&client, "a"), "on");

    // The backend kills the flag; the stream says so.
    let mut killed = flag("f", 20, &["a"], None, "off");
    killed["killed"] = json!(true);
    killed["defaultTreatment"] = json!("off");
    b.sdk.push_flag(killed);
    assert!(b.sse.notify(SPLITS, &json!({"type": "SPLIT_KILL", "changeNumber": 20, "splitName": "f", "defaultTreatment": "off"})));
    let took = visible(&client, "a", "off");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let d = client.evaluate("a", "f", None);
    assert_eq!(d.label.map(|l| l.to_string()).as_deref(), Some("killed"));
    // Then fetched: the full definition at 20.
    assert!(eventually(WAIT, || b.polls() > polls));
    let update = updates.recv_timeout(WAIT).expect("an update");
    let Update::Definitions(u) = update else {
        panic!("{update:?}")
    };
    assert_eq!(u.flags.len(), 1);
    assert!(u.flags[0].killed && u.flags[0].name == "f" && u.flags[0].change_number == Some(20));
    client.destroy(WAIT);
}

#[test]
fn an_inline_update_applies_without_a_fetch_in_every_encoding() {
    let b = Backend::start(3600);
    let client = b.connected();
    let mut cn = 10;
    for c in [0, 1, 2] {
        let polls = b.settled(Duration::from_millis(300));
        let previous = cn;
        cn += 10;
        let def = flag("f", cn, &["a", &format!("k{c}")], None, "off").to_string();
        let data = match c {
            0 => b64(def.as_bytes()),
            1 => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(def.as_bytes()).expect("gzip");
                b64(&e.finish().expect("gzip"))
            }
            _ => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(def.as_bytes()).expect("zlib");
                b64(&e.finish().expect("zlib"))
            }
        };
        assert!(b.sse.notify(
            SPLITS,
            &json!({"type": "SPLIT_UPDATE", "changeNumber": cn, "pcn": previous, "c": c, "d": data})
        ));
        visible(&client, &format!("k{c}"), "on");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(b.polls(), polls, "c = {c}: applied inline, nothing fetched");
    }
    client.destroy(WAIT);
}

#[test]
fn an_update_without_a_usable_payload_is_fetched() {
    let b = Backend::start(3600);
    let client = b.connected();
    // No payload; then one whose pcn does not match; then an older change number.
    b.sdk.push_flag(flag("f", 30, &["a", "x"], None, "off"));
    assert!(
        b.sse
            .notify(SPLITS, &json!({"type": "SPLIT_UPDATE", "changeNumber": 30}))
    );
    visible(&client, "x", "on");
    b.sdk.push_flag(flag("f", 40, &["a", "y"], None, "off"));
    let def = b64(flag("f", 40, &["wrong"], None, "off")
        .to_string()
        .as_bytes());
    assert!(b.sse.notify(
        SPLITS,
        &json!({"type": "SPLIT_UPDATE", "changeNumber": 40, "pcn": 35, "c": 0, "d": def})
    ));
    visible(&client, "y", "on");
    assert_eq!(
        treatment(&client, "wrong"),
        "off",
        "the mismatched payload was not applied"
    );
    let polls = b.settled(Duration::from_millis(300));
    assert!(
        b.sse
            .notify(SPLITS, &json!({"type": "SPLIT_UPDATE", "changeNumber": 40}))
    );
    assert!(b.sse.notify(
        SPLITS,
        &json!({"type": "SPLIT_KILL", "changeNumber": 5, "splitName": "f", "defaultTreatment": "x"})
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.polls(), polls, "not newer: ignored");
    assert_eq!(treatment(&client, "a"), "on");
    client.destroy(WAIT);
}

#[test]
fn segment_and_rule_based_segment_updates() {
    let b = Backend::start(3600);
    b.sdk.push_flag(flag("g", 11, &[], Some("beta"), "off"));
    b.sdk.push_segment("beta", 1, &["s1"], &[]);
    let client = b.connected();
    assert_eq!(client.get_treatment("s2", "g", None), "off");
    b.sdk.push_segment("beta", 2, &["s2"], &[]);
    assert!(b.sse.notify(
        SEGMENTS,
        &json!({"type": "SEGMENT_UPDATE", "changeNumber": 2, "segmentName": "beta"})
    ));
    assert!(eventually(WAIT, || client.get_treatment("s2", "g", None) == "on"));
    b.sdk.push_segment("beta", 3, &[], &["s2"]);
    assert!(b.sse.notify(
        SEGMENTS,
        &json!({"type": "SEGMENT_UPDATE", "changeNumber": 3, "segmentName": "beta"})
    ));
    assert!(
        eventually(WAIT, || client.get_treatment("s2", "g", None) == "off"),
        "left the segment"
    );

    // A rule-based segment arrives inline, and a flag using it too.
    let rbs = json!({"name": "vip", "trafficTypeName": "user", "changeNumber": 7, "status": "ACTIVE",
        "excluded": {"keys": [], "segments": []},
        "conditions": [{"conditionType": "WHITELIST", "matcherGroup": {"combiner": "AND", "matchers": [
            {"keySelector": {"trafficType": "user", "attribute": null}, "matcherType": "WHITELIST", "negate": false,
             "whitelistMatcherData": {"whitelist": ["r1"]}}]}}]});
    assert!(b.sse.notify(SPLITS, &json!({"type": "RB_SEGMENT_UPDATE", "changeNumber": 7, "pcn": -1, "c": 0, "d": b64(rbs.to_string().as_bytes())})));
    let mut uses = flag("h", 50, &[], None, "off");
    uses["conditions"] = json!([{"conditionType": "ROLLOUT", "matcherGroup": {"combiner": "AND", "matchers": [
        {"keySelector": {"trafficType": "user", "attribute": null}, "matcherType": "IN_RULE_BASED_SEGMENT", "negate": false,
         "userDefinedSegmentMatcherData": {"segmentName": "vip"}}]},
        "partitions": [{"treatment": "on", "size": 100}], "label": "vip"}]);
    b.sdk.push_flag(uses.clone());
    assert!(b.sse.notify(SPLITS, &json!({"type": "SPLIT_UPDATE", "changeNumber": 50, "pcn": 11, "c": 0, "d": b64(uses.to_string().as_bytes())})));
    assert!(eventually(WAIT, || client.get_treatment("r1", "h", None) == "on"));
    assert_eq!(client.get_treatment("r2", "h", None), "off");
    client.destroy(WAIT);
}

#[test]
fn a_burst_of_segment_notifications_loses_none() {
    const N: usize = 200;
    let b = Backend::start(3600);
    for i in 0..N {
        let s = format!("s{i}");
        b.sdk
            .push_flag(flag(&format!("g{i}"), 11 + i as i64, &[], Some(&s), "off"));
        b.sdk.push_segment(&s, 1, &[], &[]);
    }
    let client = b.connected();
    for i in 0..N {
        b.sdk.push_segment(&format!("s{i}"), 2, &["k"], &[]);
    }
    // Faster than the segments thread fetches: the requests pile up while it works.
    for i in 0..N {
        assert!(b.sse.notify(
            SEGMENTS,
            &json!({"type": "SEGMENT_UPDATE", "changeNumber": 2, "segmentName": format!("s{i}")})
        ));
    }
    let behind = || {
        (0..N)
            .filter(|i| client.get_treatment("k", &format!("g{i}"), None) != "on")
            .count()
    };
    assert!(
        eventually(WAIT, || behind() == 0),
        "{} of {N} segments never got their notified change",
        behind()
    );
    client.destroy(WAIT);
}

#[test]
fn a_segment_whose_fetch_failed_is_retried_though_other_notifications_come_first() {
    let b = Backend::start(3600);
    b.sdk.push_flag(flag("g", 11, &[], Some("beta"), "off"));
    b.sdk.push_flag(flag("h", 12, &[], Some("bad"), "off"));
    b.sdk.push_segment("beta", 1, &[], &[]);
    b.sdk.push_segment("bad", 1, &[], &[]);
    let client = b
        .client()
        .sync_backoff(Duration::from_millis(500), Duration::from_millis(500))
        .build()
        .expect("client");
    client.block_until_ready(WAIT).expect("ready");
    assert!(b.sse.wait_connections(1, WAIT));
    b.sdk.push_segment("bad", 2, &["k"], &[]);
    b.sdk.push_segment("beta", 2, &["k"], &[]);
    // The notified fetch of `bad` fails once; then `beta` is notified.
    b.server
        .script("/sdk/segmentChanges/bad", [Reply::status(500)]);
    for name in ["bad", "beta"] {
        assert!(b.sse.notify(
            SEGMENTS,
            &json!({"type": "SEGMENT_UPDATE", "changeNumber": 2, "segmentName": name})
        ));
    }
    assert!(eventually(WAIT, || client.get_treatment("k", "g", None) == "on"));
    // Polling is off while streaming is up: only the retry brings `bad` up to date.
    assert!(
        eventually(WAIT, || client.get_treatment("k", "h", None) == "on"),
        "the failed segment was never fetched again"
    );
    client.destroy(WAIT);
}

#[test]
fn pause_resume_and_occupancy_switch_polling_on_and_off() {
    let b = Backend::start(3600);
    let client = b.connected();
    let idle = b.settled(Duration::from_millis(300));
    for (pause, resume) in [
        ("STREAMING_PAUSED", "STREAMING_RESUMED"),
        ("STREAMING_PAUSED", "STREAMING_ENABLED"),
    ] {
        assert!(b.sse.notify(
            "control_pri",
            &json!({"type": "CONTROL", "controlType": pause})
        ));
        let before = b.polls();
        assert!(
            eventually(WAIT, || b.polls() >= before + 3),
            "paused: polling every 100 ms"
        );
        assert!(b.sse.notify(
            "control_pri",
            &json!({"type": "CONTROL", "controlType": resume})
        ));
        let settled = b.settled(Duration::from_millis(400));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(b.polls(), settled, "{resume}: polling stops again");
    }
    // No publishers on either control channel: polling; one comes back: streaming.
    assert!(b.sse.occupancy("control_pri", 0));
    assert!(b.sse.occupancy("control_sec", 0));
    let before = b.polls();
    assert!(eventually(WAIT, || b.polls() >= before + 3));
    assert!(b.sse.occupancy("control_sec", 1));
    let settled = b.settled(Duration::from_millis(400));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(b.polls(), settled);
    assert!(idle > 0);
    client.destroy(WAIT);
}

#[test]
fn streaming_disabled_means_polling_for_good() {
    let b = Backend::start(3600);
    let client = b.connected();
    assert!(b.sse.notify(
        "control_sec",
        &json!({"type": "CONTROL", "controlType": "STREAMING_DISABLED"})
    ));
    let before = b.polls();
    assert!(eventually(WAIT, || b.polls() >= before + 3));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(b.sse.requests().len(), 1, "no reconnection");
    assert_eq!(
        b.server.requests_to("/auth").len(),
        1,
        "no new authentication"
    );
    client.destroy(WAIT);
}

#[test]
fn a_dropped_stream_is_recovered_quickly_and_caught_up() {
    let b = Backend::start(3600);
    let client = b.connected();
    b.settled(Duration::from_millis(300));
    // While the stream is down, the flag changes: the reconnection catches up.
    b.sdk.push_flag(flag("f", 60, &["a", "z"], None, "off"));
    let dropped = Instant::now();
    b.sse.drop_connection();
    assert!(b.sse.wait_connections(2, WAIT));
    let back = dropped.elapsed();
    assert!(
        back < Duration::from_millis(1_500),
        "reconnected in {back:?}"
    );
    visible(&client, "z", "on");
    let s = b.sse.requests();
    assert!(s[1].starts_with("/sse?channels="), "{s:?}");
    assert!(
        s[1].contains("%5B%3Foccupancy%3Dmetrics.publishers%5Dcontrol_pri"),
        "{s:?}"
    );
    assert!(s[1].contains("&v=1.1"), "{s:?}");
    client.destroy(WAIT);
}

#[test]
fn the_token_is_refreshed_before_it_expires_and_token_errors_authenticate_again() {
    // A token valid for a second: renewed after that.
    let b = Backend::start(1);
    let client = b.connected();
    assert!(
        b.sse.wait_connections(2, WAIT),
        "reconnected with a new token"
    );
    assert!(b.server.requests_to("/auth").len() >= 2);
    let conns = b.sse.requests().len();
    // A token error (Ably 40142): authenticate again and reconnect.
    assert!(b.sse.error(40142, 401));
    assert!(b.sse.wait_connections(conns + 1, WAIT));
    client.destroy(WAIT);
}

#[test]
fn a_final_error_or_push_disabled_means_polling_only() {
    let b = Backend::start(3600);
    let client = b.connected();
    assert!(b.sse.error(40000, 400));
    let before = b.polls();
    assert!(
        eventually(WAIT, || b.polls() >= before + 3),
        "polling after a final error"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        b.sse.requests().len(),
        1,
        "no reconnection after a final error"
    );
    client.destroy(WAIT);

    let off = Backend::with_auth(|| Reply::json(&json!({"pushEnabled": false, "token": ""})));
    let client = off.client().build().expect("client");
    client.block_until_ready(WAIT).expect("ready");
    let before = off.polls();
    assert!(
        eventually(WAIT, || off.polls() >= before + 3),
        "pushEnabled false: polling"
    );
    assert_eq!(off.server.requests_to("/auth").len(), 1, "asked once");
    assert!(off.sse.requests().is_empty(), "never connected");
    client.destroy(WAIT);
}

#[test]
fn an_authentication_answered_429_is_retried_when_its_retry_after_says() {
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let seen = asked.clone();
    let b = Backend::with_auth(move || {
        let mut at = seen.lock().unwrap();
        at.push(Instant::now());
        if at.len() == 1 {
            Reply::status(429).header("Retry-After", "2")
        } else {
            Reply::json(&json!({"pushEnabled": true, "token": token(3600)}))
        }
    });
    let client = b.client().build().expect("client");
    client.block_until_ready(WAIT).expect("ready");
    assert!(b.sse.wait_connections(1, WAIT), "connected in the end");
    let at = asked.lock().unwrap().clone();
    assert_eq!(at.len(), 2, "{at:?}");
    let waited = at[1] - at[0];
    // The reconnection backoff alone would have asked again within 250 ms.
    assert!(
        waited >= Duration::from_millis(1900),
        "asked again after {waited:?}"
    );
    client.destroy(WAIT);
}

#[test]
fn a_stale_cdn_is_bypassed_with_till() {
    let b = Backend::start(3600);
    let client = b.connected();
    b.sdk.stale_cache(true);
    b.sdk.push_flag(flag("f", 70, &["a", "c"], None, "off"));
    assert!(
        b.sse
            .notify(SPLITS, &json!({"type": "SPLIT_UPDATE", "changeNumber": 70}))
    );
    visible(&client, "c", "on");
    let tills: Vec<String> = b
        .server
        .requests_to(SPLIT_CHANGES)
        .iter()
        .filter(|r| r.param("till").is_some())
        .map(|r| r.query.clone())
        .collect();
    // The round past the CDN asks for 70 on each of its pages, from the stale version.
    assert!(!tills.is_empty(), "{tills:?}");
    assert!(tills.iter().all(|q| q.ends_with("&till=70")), "{tills:?}");
    assert!(tills[0].contains("since=10&"), "{tills:?}");
    client.destroy(WAIT);
}

#[test]
fn without_streaming_the_client_polls() {
    let b = Backend::start(3600);
    let client = b.client().streaming_enabled(false).build().expect("client");
    client.block_until_ready(WAIT).expect("ready");
    let before = b.polls();
    assert!(eventually(WAIT, || b.polls() >= before + 3));
    assert!(b.server.requests_to("/auth").is_empty());
    assert!(b.sse.requests().is_empty());
    client.destroy(WAIT);
}

#[test]
fn the_stream_carries_the_sdk_headers_and_never_the_whole_key() {
    let b = Backend::start(3600);
    let client = b.connected();
    let auth = &b.server.requests_to("/auth")[0];
    assert_eq!(auth.header("Authorization"), Some("Bearer stream-key-1234"));
    assert_eq!(auth.query, "s=1.3");
    let v: Value = json!(b.sse.requests());
    assert!(!v.to_string().contains("stream-key"), "{v}");
    client.destroy(WAIT);
}
