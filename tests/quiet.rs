//! A clean shutdown is quiet: a remote client whose servers answer normally, destroyed (or
//! dropped) with time to spare, logs no warning and no error, from any thread.
//!
//! This is its own test binary: the background threads (synchronizer, delivery workers) log
//! from threads of their own, so the capture here sees the records of every thread, and
//! only one test at a time may run while it watches (a lock serializes them). The tests in
//! `tests/it` capture per thread instead.

use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use splitkit::Client;

#[path = "it/server.rs"]
#[expect(dead_code, reason = "shared with tests/it, which uses all of it")]
mod server;

use server::{Reply, SdkBackend, Server, flag, remote};

const WAIT: Duration = Duration::from_secs(10);

/// `LEVEL target: message` of every record at warn level or above, from every thread.
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata())
            && let Ok(mut records) = RECORDS.lock()
        {
            records.push(format!("{} {}: {}", r.level(), r.target(), r.args()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capture (once), serializes the tests of this binary and forgets earlier
/// records.
fn watch() -> MutexGuard<'static, ()> {
    static INIT: Once = Once::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    INIT.call_once(|| {
        assert!(
            log::set_logger(&Capture).is_ok(),
            "another logger installed"
        );
        log::set_max_level(log::LevelFilter::Warn);
    });
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    taken();
    guard
}

/// The records since the last call.
fn taken() -> Vec<String> {
    std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A remote client on `server`, ready, that has evaluated and tracked (so that impressions,
/// counts, unique keys and events are queued for the shutdown to deliver).
fn busy_client(server: &Server) -> Client {
    let backend = SdkBackend::new();
    backend.push_flag(flag("f1", 100, &["qa"], Some("beta"), "off"));
    backend.push_segment("beta", 5, &["carol"], &[]);
    backend.install(server, "/sdk");
    let client = remote(server, "quiet-key").build().expect("client");
    client.block_until_ready(WAIT).expect("ready");
    assert_eq!(client.get_treatment("qa", "f1", None), "on");
    assert_eq!(client.get_treatment("carol", "f1", None), "on");
    client
        .track("qa", "user", "checkout", Some(1.0), None)
        .expect("tracked");
    client
}

#[test]
fn destroy_with_time_to_spare_logs_nothing() {
    let _watching = watch();
    let server = Server::start();
    let client = busy_client(&server);
    assert!(client.destroy(WAIT), "everything stopped in time");
    assert_eq!(taken(), Vec::<String>::new());
    // What was queued went out: the shutdown was clean, not merely silent.
    let stats = client.stats();
    assert_eq!(stats.impressions.queue.sent, 2, "{stats:?}");
    assert_eq!(stats.events.queue.sent, 1, "{stats:?}");
    assert_eq!(server.requests_to("/events/events/bulk").len(), 1);
}

#[test]
fn destroy_while_a_definitions_request_is_in_flight_logs_nothing() {
    let _watching = watch();
    let server = Server::start();
    let client = busy_client(&server);
    let polls = server.requests_to("/sdk/splitChanges").len();
    server.script(
        "/sdk/splitChanges",
        [Reply::json(&serde_json::json!({
            "ff": {"d": [], "s": 100, "t": 100},
            "rbs": {"d": [], "s": -1, "t": -1},
        }))
        .delay(Duration::from_millis(300))],
    );
    client.sync_now();
    assert!(
        server.wait_for(WAIT, |rs| rs
            .iter()
            .filter(|r| r.path == "/sdk/splitChanges")
            .count()
            > polls),
        "the poll is in flight"
    );
    assert!(client.destroy(WAIT), "everything stopped in time");
    assert_eq!(taken(), Vec::<String>::new());
}

#[test]
fn dropping_the_last_handle_logs_nothing() {
    let _watching = watch();
    let server = Server::start();
    let client = busy_client(&server);
    drop(client);
    assert_eq!(taken(), Vec::<String>::new());
    assert_eq!(server.requests_to("/events/events/bulk").len(), 1);
}
