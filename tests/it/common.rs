//! Helpers shared by the integration tests.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use splitkit::definitions::SegmentChanges;
use splitkit::{Attributes, Impression, ImpressionListener, SdkMetadata, Snapshot};

/// `tests/data/<rel>`: the official SDKs' test data and the golden sets (see
/// `tests/data/SOURCES.md`).
pub fn vectors(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// The text of `tests/data/<rel>`, or of `<rel>.gz` uncompressed where the file is stored
/// compressed (the large ones are).
pub fn read(rel: &str) -> String {
    let p = vectors(rel);
    if p.exists() {
        return std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    let gz = p.with_file_name(format!(
        "{}.gz",
        p.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let file = std::fs::File::open(&gz).unwrap_or_else(|e| panic!("{}: {e}", gz.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", gz.display()));
    text
}

/// A snapshot from a flags document plus segmentChanges files.
pub fn snapshot(flags: &str, segments: &[&str]) -> Snapshot {
    let (mut s, problems) = Snapshot::from_json(&read(flags), flags).expect("document parses");
    for p in &problems {
        eprintln!("problem: {p}");
    }
    for seg in segments {
        let changes: SegmentChanges = serde_json::from_str(&read(seg)).expect("segment parses");
        s = s.apply_segment_changes(&changes);
    }
    s
}

/// Log records captured per thread, so parallel tests see only their own warnings.
pub mod logs {
    use std::sync::{Mutex, Once};
    use std::thread::ThreadId;

    static RECORDS: Mutex<Vec<(ThreadId, log::Level, String)>> = Mutex::new(Vec::new());
    static INIT: Once = Once::new();

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if let Ok(mut r) = RECORDS.lock() {
                r.push((
                    std::thread::current().id(),
                    record.level(),
                    record.args().to_string(),
                ));
            }
        }
        fn flush(&self) {}
    }

    /// Starts capturing (idempotent) and forgets this thread's earlier records.
    pub fn start() {
        INIT.call_once(|| {
            let _ = log::set_logger(&Capture);
            log::set_max_level(log::LevelFilter::Trace);
        });
        take();
    }

    /// Warnings and errors of any thread (a background thread's) that contain `needle`,
    /// forgotten. Tests give their data names of their own, so that they see only theirs.
    #[allow(dead_code)]
    pub fn any_thread(needle: &str) -> Vec<String> {
        let mut all = RECORDS.lock().expect("log lock");
        let (mine, rest): (Vec<_>, Vec<_>) = all
            .drain(..)
            .partition(|(_, l, m)| *l <= log::Level::Warn && m.contains(needle));
        *all = rest;
        mine.into_iter().map(|(_, _, m)| m).collect()
    }

    /// This thread's warnings and errors since the last call.
    pub fn take() -> Vec<String> {
        let me = std::thread::current().id();
        let mut all = RECORDS.lock().expect("log lock");
        let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(t, _, _)| *t == me);
        *all = rest;
        mine.into_iter()
            .filter(|(_, l, _)| *l <= log::Level::Warn)
            .map(|(_, _, m)| m)
            .collect()
    }
}

/// The precise wall clock, epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How far an impression or event time may trail the precise clock: splitkit stamps them from
/// the coarse realtime clock, whose tick is at most 10 ms on any kernel (1 to 4 ms usually).
pub(crate) const CLOCK_TICK_MS: i64 = 10;

/// A listener that keeps the impressions it sees.
#[derive(Default)]
pub struct Collect(Mutex<Vec<Impression>>);

impl ImpressionListener for Collect {
    fn on_impression(&self, i: &Impression, _: Option<&Attributes>, _: &SdkMetadata) {
        self.0.lock().expect("collect").push(i.clone());
    }
}

impl Collect {
    /// The impressions seen so far.
    pub fn seen(&self) -> Vec<Impression> {
        self.0.lock().expect("collect").clone()
    }

    /// The impressions seen so far, forgotten.
    pub fn take(&self) -> Vec<Impression> {
        std::mem::take(&mut *self.0.lock().expect("collect"))
    }
}

/// Whether `program` runs here (`program --version`). A test that needs it skips, saying
/// so, only outside CI: under `CI` set, a missing program fails the test (`.ci/run`
/// installs it with `apt-get install -y <package>`).
#[allow(dead_code)]
pub fn installed(program: &str, package: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `{program}` is not installed (apt-get install -y {package}; .ci/run does)"
        );
        eprintln!(
            "SKIPPED: `{program}` is not installed and CI is unset (apt-get install -y {package} to run this test)"
        );
    }
    found
}
