//! Peak memory of what a server or a document can make the SDK hold: a counting global
//! allocator measures the most heap bytes live at once while a test runs.
//!
//! This is its own test binary (the allocator is global to the binary), and its tests run
//! one at a time (a lock), since the count covers every thread: the synchronizer and the
//! delivery workers allocate on threads of their own. Each test also prints the peak resident
//! memory (Linux `VmHWM`, reset through `/proc/self/clear_refs`) for comparison.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use splitkit::{Attributes, ImpressionsMode, Snapshot};

#[path = "support/documents.rs"]
mod documents;
#[path = "support/rss.rs"]
mod rss;

#[path = "it/server.rs"]
#[expect(dead_code, reason = "shared with tests/it, which uses all of it")]
mod server;

use server::{Gate, Reply, Server, localhost, remote};

struct Counting;

/// Heap bytes live now, and the most live since the last [`measure`] began.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counting has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MIB: usize = 1024 * 1024;

/// Serializes the tests of this binary.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `f` returns, the most heap bytes live at once while it ran beyond those live when it
/// began, and the same for resident memory (`None` where it cannot be measured).
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize, Option<usize>) {
    let ((r, heap), rss) = rss::peak_rss(|| {
        let start = LIVE.load(Ordering::Relaxed);
        PEAK.store(start, Ordering::Relaxed);
        let r = f();
        (r, PEAK.load(Ordering::Relaxed).saturating_sub(start))
    });
    let rss = rss
        .map(|(before, peak)| usize::try_from(peak.saturating_sub(before)).unwrap_or(usize::MAX));
    (r, heap, rss)
}

fn mib(n: usize) -> f64 {
    n as f64 / MIB as f64
}

/// A gzip body of `n` members of 1 MiB of spaces each: `n` MiB once decompressed, about a
/// thousandth of that on the wire.
fn gzip_bomb(n: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; MIB]).expect("gzip");
    gz.finish().expect("gzip").repeat(n)
}

/// Peak heap and resident memory of a remote client on `server` (SDK API under `/sdk`) from
/// its start until it is ready or refused, and what `block_until_ready` said.
fn first_load(server: &Server) -> (Result<(), splitkit::Error>, usize, Option<usize>) {
    measure(|| {
        let client = remote(server, "memory").build().expect("client");
        let outcome = client.block_until_ready(Duration::from_secs(60));
        client.destroy(Duration::from_secs(5));
        outcome
    })
}

/// A splitChanges answer of 192 MiB once decompressed (about 190 KiB sent) is refused at the
/// default `max_response_bytes` (128 MiB) without holding more than that: ureq's own limit
/// counts the compressed bytes, so the decompressed body used to be read whole, into a buffer
/// that doubled up to 256 MiB.
#[test]
fn a_gzip_bomb_holds_at_most_max_response_bytes() {
    let _serial = one_at_a_time();
    // What a client costs anyway: the same start against an empty document.
    let plain = Server::start();
    plain.route("/sdk/splitChanges", |_| {
        Reply::json(&serde_json::json!({"ff": {"d": [], "s": -1, "t": -1},
                                        "rbs": {"d": [], "s": -1, "t": -1}}))
    });
    let (outcome, base_heap, base_rss) = first_load(&plain);
    outcome.expect("ready on an empty document");

    let bomb = gzip_bomb(192);
    let sent = bomb.len();
    assert!(sent < 256 * 1024, "{sent}");
    let server = Server::start();
    server.route("/sdk/splitChanges", move |_| {
        Reply::ok()
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(bomb.clone())
    });
    let (outcome, heap, rss) = first_load(&server);
    let shown = |r: Option<usize>| r.map_or("unknown".into(), |r| format!("{:.1} MiB", mib(r)));
    eprintln!(
        "gzip bomb of {} KiB (192 MiB decompressed): peak heap +{:.1} MiB, peak RSS +{} \
         (a client on an empty document: +{:.1} MiB, +{})",
        sent / 1024,
        mib(heap),
        shown(rss),
        mib(base_heap),
        shown(base_rss),
    );
    let e = outcome.expect_err("a refused answer").to_string();
    assert!(
        e.contains("max_response_bytes") && e.contains(&server.url("/sdk/splitChanges")),
        "{e}"
    );
    assert!(e.contains("larger than 134,217,728 bytes"), "{e}");
    let extra = heap.saturating_sub(base_heap);
    assert!(
        extra <= 128 * MIB + MIB,
        "the answer took {:.1} MiB of heap beyond the client's own",
        mib(extra)
    );
}

/// An events endpoint answering with 64 MiB once decompressed (64 KiB sent): the answer is
/// read and dropped without being held.
#[test]
fn a_gzip_bomb_from_the_events_endpoint_is_not_held() {
    let _serial = one_at_a_time();
    let bomb = gzip_bomb(64);
    let server = Server::start();
    server.route("/events", move |_| {
        Reply::ok()
            .header("Content-Encoding", "gzip")
            .body(bomb.clone())
    });
    let client = localhost(&server).build().expect("client");
    let (delivered, heap, rss) = measure(|| {
        client.get_treatment("user-1", "new_checkout", Some(&Attributes::new()));
        client.flush(Duration::from_secs(30))
    });
    eprintln!(
        "events answer of 64 MiB decompressed: peak heap +{:.1} MiB, peak RSS +{}",
        mib(heap),
        rss.map_or("unknown".into(), |r| format!("{:.1} MiB", mib(r)))
    );
    assert!(delivered, "the impressions were delivered");
    assert!(!server.requests_to("/events").is_empty());
    assert!(heap < 8 * MIB, "peak heap {:.1} MiB", mib(heap));
    client.destroy(Duration::from_secs(5));
}

/// `Snapshot::from_json` compiles each definition as soon as it is read: beyond the compiled
/// snapshot it keeps, it holds little (it used to hold every definition parsed, about 3.6
/// times the document's size, before compiling the first), and the snapshot is smaller
/// than the text's double.
#[test]
fn from_json_holds_little_beyond_the_compiled_snapshot() {
    let _serial = one_at_a_time();
    let (text, flags) = documents::document(8_000_000, 400);
    let start = LIVE.load(Ordering::Relaxed);
    let ((snapshot, problems), heap, rss) =
        measure(|| Snapshot::from_json(&text, "memory").expect("parses"));
    let kept = LIVE.load(Ordering::Relaxed).saturating_sub(start);
    let size = text.len();
    eprintln!(
        "from_json of {:.1} MiB ({flags} flags): peak heap +{:.1} MiB ({:.2} of the size), \
         snapshot {:.1} MiB, peak RSS +{}",
        mib(size),
        mib(heap),
        heap as f64 / size as f64,
        mib(kept),
        rss.map_or("unknown".into(), |r| format!("{:.1} MiB", mib(r)))
    );
    assert!(
        problems.is_empty(),
        "{:?}",
        &problems[..problems.len().min(3)]
    );
    assert_eq!(snapshot.len(), flags);
    assert!(
        heap <= kept + size / 4,
        "peak {:.1} MiB for a snapshot of {:.1} MiB",
        mib(heap),
        mib(kept)
    );
    // The compiled snapshot itself: 1.97 times the text. It was 2.02 while whitelists were
    // hash sets of boxed strings, and 1.89 before a rule with a percentage split held the
    // partition of each bucket (a 100-byte table; every rule of this document splits).
    assert!(heap <= 2 * size, "peak {:.1} MiB", mib(heap));
}

/// What the impression queue costs, as `impressions_queue_size` documents it: 112 bytes a
/// slot (the 96 of a queued impression, keys inline, and the channel's 16), allocated up
/// front for a queue of up to 8 MiB, else as impressions wait; and nothing more for an
/// impression waiting in it, its keys fitting the 45 bytes. The impressions are made to wait
/// by a delivery the server holds: the worker takes nothing while it waits for the answer.
#[test]
fn the_impression_queue_costs_what_its_documentation_says() {
    let _serial = one_at_a_time();
    let server = Server::start();
    let queue = 1_100_000;
    let builder = |queue: usize| {
        localhost(&server)
            // Optimized mode's dedupe cache would hold each new impression too.
            .impressions_mode(ImpressionsMode::Debug)
            .impressions_queue_size(queue)
            // One batch for them all: nothing is posted before the end but the held delivery.
            .impressions_bulk_size(1_000_000)
            .enforce_minimum_rates(false)
            .impressions_refresh_rate(Duration::from_secs(3600))
    };
    let (small, small_heap, _) = measure(|| builder(1).build().expect("client"));
    let (big, big_heap, _) = measure(|| builder(queue).build().expect("client"));
    let up_front = big_heap.abs_diff(small_heap);
    eprintln!("a queue of {queue} impressions: {up_front} bytes up front");
    assert!(up_front < 16 * 1024, "{up_front} bytes up front");
    let eager = 70_000;
    let (medium, medium_heap, _) = measure(|| builder(eager).build().expect("client"));
    let per_slot = medium_heap.saturating_sub(small_heap) as f64 / eager as f64;
    eprintln!("a queue of {eager} impressions: {per_slot:.1} bytes a slot up front");
    assert!(
        (111.5..=112.5).contains(&per_slot),
        "{per_slot:.1} bytes a slot"
    );
    medium.destroy(Duration::from_secs(5));
    small.destroy(Duration::from_secs(5));

    let n = 200_000;
    let keys: Vec<String> = (0..n)
        .map(|i| format!("5f0c8a9e-3b1d-4c2a-9e7f-{i:012}"))
        .collect();
    let attributes = Attributes::new();
    let bulk = "/events/testImpressions/bulk";
    let gate = Gate::closed();
    server.script(bulk, [Reply::ok().held(&gate)]);
    big.get_treatment("first", "new_checkout", Some(&attributes));
    std::thread::scope(|scope| {
        // The worker posts the first impression and waits for the answer.
        let flushed = scope.spawn(|| big.flush(Duration::from_secs(30)));
        server.expect_requests(bulk, 1, Duration::from_secs(10));
        let start = LIVE.load(Ordering::Relaxed);
        for key in &keys {
            big.get_treatment(key, "new_checkout", Some(&attributes));
        }
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(start);
        let queued = big.stats().impressions.queue.queued_now;
        gate.open();
        let per_impression = held as f64 / n as f64;
        eprintln!("{n} queued impressions (36-byte keys): {per_impression:.2} bytes each");
        assert_eq!(
            queued,
            n as u64 + 1,
            "all queued, and the first in delivery"
        );
        assert!(
            (112.0..=112.5).contains(&per_impression),
            "{per_impression:.2} bytes a queued impression"
        );
        assert!(flushed.join().unwrap_or(false), "the first delivered");
    });
    assert!(big.destroy(Duration::from_secs(30)), "delivered at the end");
}
