//! The unit tests' log capture: every warning and error the crate logs, kept for the test
//! process (one logger can be installed per process, so every module's tests share it).

use std::sync::{Mutex, OnceLock};

/// `(target, "LEVEL message")` of every warning and error logged since the start.
static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn && m.target().starts_with("splitkit")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata())
            && let Ok(mut lines) = LINES.lock()
        {
            lines.push((
                r.target().to_string(),
                format!("{} {}", r.level(), r.args()),
            ));
        }
    }
    fn flush(&self) {}
}

/// Installs the capture (idempotent).
pub(crate) fn install() {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let ok = *INSTALLED.get_or_init(|| {
        let ok = log::set_logger(&Capture).is_ok();
        log::set_max_level(log::LevelFilter::Warn);
        ok
    });
    assert!(ok, "another logger was installed in the unit tests");
}

/// The captured lines logged from a module whose path contains `module` and that contain
/// every needle.
pub(crate) fn lines(module: &str, needles: &[&str]) -> Vec<String> {
    LINES
        .lock()
        .map(|l| {
            l.iter()
                .filter(|(t, line)| t.contains(module) && needles.iter().all(|n| line.contains(n)))
                .map(|(_, line)| line.clone())
                .collect()
        })
        .unwrap_or_default()
}
