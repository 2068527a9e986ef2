//! Delivery through backend incidents, end to end against loopback servers: an outage longer
//! than any attempt budget, recovery within one flush period, an outage across shutdown,
//! `Retry-After` as an HTTP-date, and the disk spool (a client stopped during an outage, the
//! next one delivering what it spooled, a truncated spool file, two clients on one
//! directory), with exact accounting in each.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use splitkit::{Client, ClientBuilder, ImpressionsMode};

use crate::server::{Reply, Server, dead_port, delivered_impressions, examples};

const WAIT: Duration = Duration::from_secs(10);
const BULK: &str = "/events/testImpressions/bulk";
const EVENTS: &str = "/events/events/bulk";

/// A localhost client posting to `127.0.0.1:<port>`: debug-mode impressions and events,
/// timed sends every 300 ms (so retry waits are at most the 1 s backoff base).
fn client_on(port: u16) -> ClientBuilder {
    Client::builder("localhost")
        .split_file(examples("flags.json"))
        .segment_directory(examples("segments"))
        .events_url(format!("http://127.0.0.1:{port}/events"))
        .telemetry_url(format!("http://127.0.0.1:{port}/telemetry"))
        .impressions_mode(ImpressionsMode::Debug)
        .enforce_minimum_rates(false)
        .impressions_refresh_rate(Duration::from_millis(300))
        .events_push_rate(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(2))
}

/// `n` evaluations and `n` events, for keys `<tag>-0` ...
fn record(client: &Client, tag: &str, n: usize) {
    for i in 0..n {
        let key = format!("{tag}-{i}");
        client.get_treatment(key.as_str(), "new_checkout", None);
        client
            .track(&key, "user", "checkout", Some(i as f64), None)
            .expect("tracked");
    }
}

/// How many times each key's impression and event reached `server`.
fn received(server: &Server) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut impressions = BTreeMap::new();
    for (_, i) in delivered_impressions(server, BULK) {
        *impressions
            .entry(i["k"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    let mut events = BTreeMap::new();
    for r in server.requests_to(EVENTS).iter().filter(|r| r.ok()) {
        for e in r.json().as_array().cloned().unwrap_or_default() {
            *events
                .entry(e["key"].as_str().unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
    }
    (impressions, events)
}

/// Every key of `sets` (`(tag, n)`: keys `<tag>-0` to `<tag>-<n-1>`) exactly once.
fn each_once(sets: &[(&str, usize)]) -> BTreeMap<String, usize> {
    sets.iter()
        .flat_map(|&(t, n)| (0..n).map(move |i| (format!("{t}-{i}"), 1)))
        .collect()
}

fn assert_balanced(client: &Client) {
    let s = client.stats();
    assert!(s.impressions.is_balanced(), "{s}");
    assert!(s.events.queue.is_balanced(), "{s}");
}

#[test]
fn an_outage_longer_than_any_attempt_budget_loses_nothing_and_recovers_within_a_flush_period() {
    let port = dead_port();
    let client = client_on(port).build().expect("client");
    record(&client, "before", 30);
    // Refused for 6 s: with waits of at most 1 s that is more than five attempts a batch.
    thread::sleep(Duration::from_secs(6));
    record(&client, "during", 20);
    let s = client.stats();
    assert!(s.impressions.queue.failed_attempts > 5, "{s}");
    assert_eq!(
        (s.impressions.queue.dropped(), s.events.queue.dropped()),
        (0, 0),
        "{s}"
    );

    let server = Server::start_on(port);
    let up = Instant::now();
    assert!(
        server.wait_for(WAIT, |r| r.iter().any(|r| r.path == BULK && r.ok())),
        "delivered after the outage"
    );
    let first = server.requests_to(BULK)[0].at.duration_since(up);
    assert!(
        first < Duration::from_millis(1_600),
        "recovery within a flush period (300 ms) plus the 1 s retry wait: {first:?}"
    );
    assert!(client.flush(WAIT));
    let (impressions, events) = received(&server);
    assert_eq!(impressions, each_once(&[("before", 30), ("during", 20)]));
    assert_eq!(events, impressions, "every event too, each once");
    let s = client.stats();
    assert_eq!(
        (s.impressions.queue.sent, s.events.queue.sent),
        (50, 50),
        "{s}"
    );
    assert_balanced(&client);
    client.destroy(WAIT);
}

#[test]
fn destroy_spends_its_budget_retrying_and_delivers_when_the_host_comes_back() {
    let port = dead_port();
    let client = client_on(port).build().expect("client");
    record(&client, "k", 25);
    // The host comes back 1.5 s into a 6 s shutdown.
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1_500));
        Server::start_on(port)
    });
    let started = Instant::now();
    assert!(
        client.destroy(Duration::from_secs(6)),
        "delivered within the budget"
    );
    let took = started.elapsed();
    let server = late.join().expect("server thread");
    assert!(
        took >= Duration::from_millis(1_400),
        "kept retrying: {took:?}"
    );
    assert!(
        took < Duration::from_millis(4_000),
        "done once delivered: {took:?}"
    );
    let (impressions, events) = received(&server);
    assert_eq!(impressions, each_once(&[("k", 25)]));
    assert_eq!(events, each_once(&[("k", 25)]));
    assert_balanced(&client);
}

#[test]
fn an_outage_through_shutdown_uses_the_whole_budget_and_counts_exactly_what_is_left() {
    let port = dead_port();
    let client = client_on(port).build().expect("client");
    record(&client, "k", 12);
    let started = Instant::now();
    assert!(!client.destroy(Duration::from_secs(2)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_700) && took < Duration::from_millis(2_600),
        "the budget, spent retrying: {took:?}"
    );
    let s = client.stats();
    assert_eq!(s.impressions.queue.dropped_shutdown, 12, "{s}");
    assert_eq!(s.events.queue.dropped_shutdown, 12, "{s}");
    assert!(s.impressions.queue.failed_attempts >= 2, "retried: {s}");
    assert_balanced(&client);
}

/// An IMF-fixdate `secs` seconds from now.
fn http_date_in(secs: u64) -> String {
    httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let server = Server::start();
    server.script(
        EVENTS,
        [Reply::status(503).header("Retry-After", &http_date_in(3))],
    );
    let client = client_on(0)
        .events_url(server.url("/events"))
        .telemetry_url(server.url("/telemetry"))
        .build()
        .expect("client");
    client.track("k", "user", "e", None, None).expect("tracked");
    assert!(client.flush(WAIT), "delivered after the server's wait");
    let posts = server.requests_to(EVENTS);
    assert_eq!(posts.len(), 2, "one refusal, one delivery");
    let waited = posts[1].at.duration_since(posts[0].at);
    // The date has a resolution of one second: the wait is 2 to 3 s, where the backoff
    // alone (at most 1 s here) would have retried sooner.
    assert!(
        waited >= Duration::from_millis(1_900) && waited < Duration::from_millis(3_600),
        "{waited:?}"
    );
    assert_balanced(&client);
    client.destroy(WAIT);
}

fn spool_files(dir: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("spool dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// A client on `spool`, posting to `port` where nothing answers: `n` impressions and events
/// recorded, then destroyed (so it spools them).
fn spooled_in_an_outage(spool: &Path, port: u16, tag: &str, n: usize) -> Client {
    let client = client_on(port)
        .spool_directory(spool)
        .build()
        .expect("client");
    record(&client, tag, n);
    assert!(!client.destroy(Duration::from_secs(1)), "not delivered");
    client
}

#[test]
fn a_client_stopped_during_an_outage_spools_and_the_next_one_delivers_it_first() {
    let spool = tempfile::tempdir().expect("tempdir");
    let port = dead_port();
    let first = spooled_in_an_outage(spool.path(), port, "k", 40);
    let s = first.stats();
    assert_eq!(
        (s.impressions.queue.spooled, s.events.queue.spooled),
        (40, 40),
        "{s}"
    );
    assert_eq!(
        (s.impressions.queue.dropped(), s.events.queue.dropped()),
        (0, 0),
        "{s}"
    );
    assert!(s.to_string().contains("40 spooled to disk"), "{s}");
    assert_balanced(&first);
    assert!(!spool_files(spool.path(), "spool").is_empty());
    drop(first);

    // The next start, with the host back: the spool goes out first, then new data.
    let server = Server::start_on(port);
    let second = client_on(port)
        .spool_directory(spool.path())
        .build()
        .expect("client");
    record(&second, "new", 5);
    assert!(second.flush(WAIT));
    let (impressions, events) = received(&server);
    assert_eq!(impressions, each_once(&[("k", 40), ("new", 5)]));
    assert_eq!(events, impressions);
    let first_bulk: Vec<Value> = delivered_impressions(&server, BULK)
        .into_iter()
        .map(|(_, i)| i["k"].clone())
        .take(40)
        .collect();
    assert!(
        first_bulk
            .iter()
            .all(|k| k.as_str().is_some_and(|k| k.starts_with("k-"))),
        "the spool is delivered first"
    );
    let s = second.stats();
    assert_eq!(
        (s.impressions.queue.recovered, s.events.queue.recovered),
        (40, 40),
        "{s}"
    );
    assert_eq!(
        (s.impressions.queue.sent, s.events.queue.sent),
        (45, 45),
        "{s}"
    );
    assert_balanced(&second);
    assert!(second.destroy(WAIT));
    assert!(
        spool_files(spool.path(), "spool").is_empty(),
        "delivered files are removed"
    );
}

#[test]
fn a_truncated_spool_file_is_skipped_with_a_warning_and_the_rest_delivered() {
    let spool = tempfile::tempdir().expect("tempdir");
    let port = dead_port();
    drop(spooled_in_an_outage(spool.path(), port, "a", 6));
    let files = spool_files(spool.path(), "spool");
    assert!(files.len() >= 2, "{files:?}");
    // A crash cut the first one short.
    let text = std::fs::read(&files[0]).expect("read");
    std::fs::write(&files[0], &text[..text.len() / 2]).expect("truncate");

    let server = Server::start_on(port);
    let second = client_on(port)
        .spool_directory(spool.path())
        .build()
        .expect("a damaged spool never fails a start");
    assert!(second.flush(WAIT));
    assert!(second.destroy(WAIT));
    // Set aside, not retried at every start (the warning naming it is checked by the
    // spool's unit tests, which see every thread's log records).
    assert!(files[0].with_extension("damaged").exists());
    assert!(spool_files(spool.path(), "spool").is_empty());
    let (impressions, events) = received(&server);
    let total = impressions.values().sum::<usize>() + events.values().sum::<usize>();
    assert!(
        total > 0 && total < 12,
        "the rest was delivered: {impressions:?} {events:?}"
    );
    assert!(impressions.values().chain(events.values()).all(|n| *n == 1));
}

#[test]
fn two_clients_on_one_spool_directory_never_send_the_same_file_twice() {
    let spool = tempfile::tempdir().expect("tempdir");
    let port = dead_port();
    for round in 0..4 {
        spooled_in_an_outage(spool.path(), port, &format!("r{round}"), 10);
    }
    let server = Server::start_on(port);
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| client_on(port).spool_directory(spool.path()).build());
        let b = s.spawn(|| client_on(port).spool_directory(spool.path()).build());
        (a.join().expect("a"), b.join().expect("b"))
    });
    let (a, b) = (a.expect("client a"), b.expect("client b"));
    assert!(a.flush(WAIT) && b.flush(WAIT));
    assert!(a.destroy(WAIT) && b.destroy(WAIT));
    let (impressions, events) = received(&server);
    let want = each_once(&[("r0", 10), ("r1", 10), ("r2", 10), ("r3", 10)]);
    assert_eq!(impressions, want, "each impression exactly once");
    assert_eq!(events, want, "each event exactly once");
    let recovered = |c: &Client| {
        let s = c.stats();
        s.impressions.queue.recovered + s.events.queue.recovered
    };
    assert_eq!(recovered(&a) + recovered(&b), 80);
}
