//! Readiness of remote synchronization: loading, ready, or failed with a reason.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;
use crate::updates::{Update, UpdatesHub};

/// Where the synchronizer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadinessState {
    /// The first load of flags and their segments has not completed.
    Loading,
    /// Flags and every segment they use have been loaded once. Stays so through later
    /// outages: the last good definitions keep being served.
    Ready,
    /// The first load cannot complete; the reason says why (never containing the SDK key).
    Failed(String),
}

#[derive(Debug)]
struct Inner {
    state: ReadinessState,
    /// A failure that no later success can undo (bad SDK key: the synchronizer stopped).
    permanent: bool,
    flags_loaded: bool,
    /// Segments still to be loaded, for the timeout message.
    pending_segments: Vec<String>,
    /// The latest failure while loading, for the timeout message.
    last_error: Option<String>,
}

/// Readiness shared between the synchronizer threads (writers) and the client (readers).
///
/// [`Readiness::wait`] blocks on a condition variable until the state leaves
/// [`ReadinessState::Loading`] or the timeout passes.
#[derive(Debug)]
pub(crate) struct Readiness {
    inner: Mutex<Inner>,
    changed: Condvar,
    /// Told when the client becomes ready (a client's update subscribers).
    hub: OnceLock<Arc<UpdatesHub>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl Readiness {
    /// A readiness in [`ReadinessState::Loading`].
    pub(crate) fn new() -> Readiness {
        Readiness {
            inner: Mutex::new(Inner {
                state: ReadinessState::Loading,
                permanent: false,
                flags_loaded: false,
                pending_segments: Vec::new(),
                last_error: None,
            }),
            changed: Condvar::new(),
            hub: OnceLock::new(),
        }
    }

    /// True once flags and their segments have been loaded.
    pub(crate) fn is_ready(&self) -> bool {
        self.inner.lock().state == ReadinessState::Ready
    }

    /// The current state.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn state(&self) -> ReadinessState {
        self.inner.lock().state.clone()
    }

    /// True once the first page chain of flags has been loaded (segments may still be loading).
    pub(crate) fn flags_loaded(&self) -> bool {
        self.inner.lock().flags_loaded
    }

    /// The latest failure recorded since the last success, if any.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn last_error(&self) -> Option<String> {
        self.inner.lock().last_error.clone()
    }

    /// Waits until ready, for at most `timeout`.
    ///
    /// # Errors
    /// [`Error::NotReady`] when the first load failed (the reason says why: unreachable server,
    /// rejected SDK key, ...), or when `timeout` passed first (the reason says what was still
    /// loading and the last failure seen).
    pub(crate) fn wait(&self, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        let deadline = start.checked_add(timeout);
        let mut inner = self.inner.lock();
        loop {
            match &inner.state {
                ReadinessState::Ready => return Ok(()),
                ReadinessState::Failed(reason) => {
                    return Err(Error::NotReady {
                        waited: start.elapsed(),
                        reason: format!("synchronization failed: {reason}"),
                    });
                }
                ReadinessState::Loading => {}
            }
            let timed_out = match deadline {
                Some(d) => self.changed.wait_until(&mut inner, d).timed_out(),
                None => {
                    self.changed.wait(&mut inner);
                    false
                }
            };
            if timed_out && inner.state == ReadinessState::Loading {
                return Err(Error::NotReady {
                    waited: start.elapsed(),
                    reason: loading_reason(&inner),
                });
            }
        }
    }

    /// Records that the flags have been loaded once.
    pub(crate) fn set_flags_loaded(&self) {
        let mut inner = self.inner.lock();
        inner.flags_loaded = true;
        inner.last_error = None;
    }

    /// Records which segments are still to be loaded.
    pub(crate) fn set_pending_segments(&self, names: Vec<String>) {
        self.inner.lock().pending_segments = names;
    }

    /// Marks the synchronizer ready (unless it failed permanently) and wakes the waiters.
    pub(crate) fn set_ready(&self) {
        let mut inner = self.inner.lock();
        if inner.permanent || inner.state == ReadinessState::Ready {
            return;
        }
        inner.state = ReadinessState::Ready;
        inner.flags_loaded = true;
        inner.pending_segments.clear();
        inner.last_error = None;
        drop(inner);
        self.changed.notify_all();
        if let Some(hub) = self.hub.get() {
            hub.publish(&Update::Ready);
        }
    }

    /// Tells `hub` when the client becomes ready (once; later calls are ignored).
    pub(crate) fn observe(&self, hub: Arc<UpdatesHub>) {
        let _ = self.hub.set(hub);
    }

    /// Marks the first load as failed, unless already ready, and wakes the waiters.
    /// A `permanent` failure cannot be followed by [`Readiness::set_ready`].
    /// Returns false when the synchronizer was already ready (nothing changed).
    pub(crate) fn set_failed(&self, reason: String, permanent: bool) -> bool {
        let mut inner = self.inner.lock();
        if inner.state == ReadinessState::Ready {
            inner.last_error = Some(reason);
            return false;
        }
        inner.last_error = Some(reason.clone());
        inner.state = ReadinessState::Failed(reason);
        inner.permanent |= permanent;
        drop(inner);
        self.changed.notify_all();
        true
    }

    /// Records a failure that will be retried; it is reported if a wait times out.
    pub(crate) fn record_error(&self, message: String) {
        self.inner.lock().last_error = Some(message);
    }

    /// Forgets the last failure after a success.
    pub(crate) fn clear_error(&self) {
        self.inner.lock().last_error = None;
    }
}

fn loading_reason(inner: &Inner) -> String {
    let what = if !inner.flags_loaded {
        "still loading feature flags".to_string()
    } else if inner.pending_segments.is_empty() {
        "feature flags loaded, still loading their segments".to_string()
    } else {
        format!(
            "feature flags loaded, still loading segments {}",
            inner.pending_segments.join(", ")
        )
    };
    match &inner.last_error {
        Some(e) => format!("{what}; last error: {e}"),
        None => format!("{what}; no answer from the server yet"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn wait_returns_when_ready_from_another_thread() {
        let r = Arc::new(Readiness::new());
        assert!(!r.is_ready());
        let w = Arc::clone(&r);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.set_ready();
        });
        assert!(r.wait(Duration::from_secs(5)).is_ok());
        assert!(r.is_ready());
        assert!(t.join().is_ok());
        // Later failures do not undo readiness.
        assert!(!r.set_failed("boom".into(), true));
        assert!(r.is_ready());
        assert_eq!(r.last_error().as_deref(), Some("boom"));
    }

    #[test]
    fn timeout_says_what_is_still_loading() {
        let r = Readiness::new();
        let e = r.wait(Duration::from_millis(10)).unwrap_err().to_string();
        assert!(e.contains("still loading feature flags"), "{e}");
        assert!(e.contains("no answer"), "{e}");
        r.record_error("HTTP 503 from http://x/api/splitChanges".into());
        let e = r.wait(Duration::from_millis(1)).unwrap_err().to_string();
        assert!(e.contains("HTTP 503"), "{e}");
        r.set_flags_loaded();
        r.set_pending_segments(vec!["employees".into(), "beta".into()]);
        let e = r.wait(Duration::from_millis(1)).unwrap_err().to_string();
        assert!(e.contains("segments employees, beta"), "{e}");
        assert!(r.flags_loaded());
    }

    #[test]
    fn the_error_says_each_part_once() {
        let r = Readiness::new();
        r.record_error("HTTP 503 from http://x/api/splitChanges".into());
        // The exact text, with the time this wait took, as the error reports it.
        let text = |e: &Error| match e {
            Error::NotReady { waited, .. } => {
                e.to_string()
                    .replacen(&crate::text::duration(*waited).to_string(), "<waited>", 1)
            }
            other => panic!("{other:?}"),
        };
        let e = r.wait(Duration::from_millis(5)).unwrap_err();
        assert_eq!(
            text(&e),
            "not ready after <waited>: still loading feature flags; last error: HTTP 503 from http://x/api/splitChanges"
        );
        r.set_failed("the server answered HTTP 401".into(), true);
        let e = r.wait(Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            text(&e),
            "not ready after <waited>: synchronization failed: the server answered HTTP 401"
        );
    }

    #[test]
    fn failure_ends_the_wait_early_and_permanent_failures_stick() {
        let r = Readiness::new();
        assert!(r.set_failed("bad key".into(), false));
        let start = Instant::now();
        let e = r.wait(Duration::from_secs(10)).unwrap_err().to_string();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(e.contains("synchronization failed: bad key"), "{e}");
        r.set_ready();
        assert!(r.is_ready(), "a non-permanent failure can recover");

        let r = Readiness::new();
        r.set_failed("401".into(), true);
        r.set_ready();
        assert_eq!(r.state(), ReadinessState::Failed("401".into()));
    }
}
