//! Loading a large splitChanges document: time and peak memory of `Snapshot::from_json`.
//!
//! The documents are generated here (nothing big is kept in the repository), of
//! `SPLITKIT_BENCH_DOC_MB` megabytes each (default 95, the size of the document a fault probe
//! loaded), with flags in the shape Split's API sends them (every matcher carries all its data
//! fields, most of them `null`): rollout rules on segments, rule-based segments and
//! attributes (numbers, dates, semver, sets, lists), configurations, flag sets, 100
//! rule-based segments, and for a third of the flags a whitelist rule, of 5 to 400 keys in
//! `mixed` and of 5 to 8,000 keys in `whitelists`.
//!
//! Before timing, each document is loaded once in a process of its own, which prints the
//! peak resident memory of `from_json` (Linux: `VmHWM` of `/proc/self/status`, reset through
//! `/proc/self/clear_refs` first) over the document's size:
//!
//! ```text
//! loading/mixed: document 95.1 MB, 27045 flags (27045 kept); from_json peak RSS +X MB over the Y MB before: factor F of the document's size (F + 1 counting the document itself)
//! ```
//!
//! Run: `cargo bench --bench loading` (`-- --test` to load each document once, untimed).

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use splitkit::Snapshot;

#[path = "../tests/support/documents.rs"]
mod documents;
#[path = "../tests/support/rss.rs"]
mod rss;
use documents::document;

/// Size of the generated document in megabytes (10^6 bytes).
fn target_bytes() -> usize {
    std::env::var("SPLITKIT_BENCH_DOC_MB")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(95_000_000, |mb| (mb * 1e6) as usize)
}

/// The documents measured and timed: name and the most keys a whitelist holds.
const DOCUMENTS: [(&str, usize); 2] = [("mixed", 400), ("whitelists", 8000)];

/// Set in the child process that measures one document.
const CHILD: &str = "SPLITKIT_BENCH_MEASURE";

/// In a process of its own (so that memory freed by an earlier measurement cannot be
/// reused unseen): generates the document `name`, resets the peak resident memory, loads it
/// once and prints the peak over the document's size.
fn measure_child(name: &str) {
    let Some(&(_, max_keys)) = DOCUMENTS.iter().find(|(n, _)| *n == name) else {
        eprintln!("loading: unknown document {name:?}");
        return;
    };
    let (text, flags) = document(target_bytes(), max_keys);
    let mb = |b: u64| b as f64 / 1e6;
    let ((snapshot, problems), measured) =
        rss::peak_rss(|| Snapshot::from_json(&text, "bench").expect("parses"));
    let Some((before, peak)) = measured else {
        eprintln!("loading: peak RSS not measurable here (no /proc/self/clear_refs)");
        return;
    };
    assert!(
        problems.is_empty(),
        "{:?}",
        &problems[..problems.len().min(3)]
    );
    let extra = peak.saturating_sub(before);
    let size = text.len() as f64;
    eprintln!(
        "loading/{name}: document {:.1} MB, {flags} flags ({} kept); from_json peak RSS +{:.1} MB \
         over the {:.1} MB before: factor {:.2} of the document's size ({:.2} counting the \
         document itself)",
        mb(text.len() as u64),
        black_box(snapshot.len()),
        mb(extra),
        mb(before),
        extra as f64 / size,
        (extra as f64 + size) / size,
    );
}

fn loading(c: &mut Criterion) {
    // Peak memory first, each document in a child process.
    if let Ok(exe) = std::env::current_exe() {
        for (name, _) in DOCUMENTS {
            let status = std::process::Command::new(&exe).env(CHILD, name).status();
            if !status.as_ref().is_ok_and(|s| s.success()) {
                eprintln!("loading/{name}: the measuring process failed: {status:?}");
            }
        }
    }
    let mut g = c.benchmark_group("loading");
    g.sample_size(10);
    for (name, max_keys) in DOCUMENTS {
        let (text, _) = document(target_bytes(), max_keys);
        g.bench_function(format!("from_json/{name}"), |b| {
            b.iter(|| {
                let (s, p) = Snapshot::from_json(black_box(&text), "bench").expect("parses");
                black_box((s.len(), p.len()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, loading);

fn main() {
    if let Ok(name) = std::env::var(CHILD) {
        measure_child(&name);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
