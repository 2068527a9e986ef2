//! Fetch-until loops: request pages from the current change number until the server says
//! there is nothing newer (`since == till`), applying each page whole in one snapshot swap.
//!
//! A round ends early when a page does not advance the change number, and after
//! [`MAX_PAGES_PER_ROUND`] pages: a server whose change numbers never converge is asked
//! again a poll period later, and is warned about once (naming the URL and the change
//! numbers) until they converge.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::definitions::SplitChanges;
use crate::storage::Store;

use super::api::{FetchError, SdkApi};
use crate::text::count;

/// Most pages fetched in one round (of flags, or of one segment); the rest is fetched on the
/// next round, a poll period later. Guards against a server whose change numbers never
/// converge (`since` moves on with every page but never reaches `till`): such a server gets
/// at most this many requests a period, not as many as the loopback can carry. Split's API
/// sends everything since -1 in one page or a few, so 100 is far more than a real load needs.
pub(crate) const MAX_PAGES_PER_ROUND: u32 = 100;

/// What a round of flag fetches did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SplitRound {
    /// Pages fetched.
    pub(crate) pages: u32,
    /// True when some page carried definitions (the snapshot changed).
    pub(crate) changed: bool,
    /// True when stopped before the server said `since == till`.
    pub(crate) interrupted: bool,
}

impl SplitRound {
    /// This round followed by `next`.
    pub(crate) fn and(self, next: SplitRound) -> SplitRound {
        SplitRound {
            pages: self.pages + next.pages,
            changed: self.changed || next.changed,
            interrupted: next.interrupted,
        }
    }
}

/// Fetches flags and rule-based segments into a [`Store`].
#[derive(Debug, Clone)]
pub(crate) struct SplitFetcher {
    api: Arc<SdkApi>,
    store: Arc<Store>,
    sets: Vec<String>,
    /// Set once a round was cut short at [`MAX_PAGES_PER_ROUND`] and warned about; cleared
    /// when a round ends with `since == till` (so the warning is given once an episode).
    cut_short: Arc<AtomicBool>,
}

impl SplitFetcher {
    /// A fetcher restricted to the flag sets `sets` (sanitized; empty for every flag).
    pub(crate) fn new(api: Arc<SdkApi>, store: Arc<Store>, sets: Vec<String>) -> SplitFetcher {
        SplitFetcher {
            api,
            store,
            sets,
            cut_short: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Fetches pages from the stored change numbers until both sections say `since == till`,
    /// applying each page whole. `stop` is checked before every request. With `till`, the
    /// requests ask for that change number (past a CDN's cache).
    ///
    /// Broken definitions inside a page are logged (warn, naming flag and field) and skipped;
    /// a page that is not a splitChanges document is not applied at all and ends the round
    /// with an error.
    pub(crate) fn fetch_until(
        &self,
        stop: &dyn Fn() -> bool,
        till: Option<i64>,
    ) -> Result<SplitRound, FetchError> {
        let mut round = SplitRound::default();
        loop {
            if stop() {
                round.interrupted = true;
                return Ok(round);
            }
            let (since, rb_since) = {
                let s = self.store.load();
                (s.change_number(), s.rule_based_change_number())
            };
            let (mut changes, problems, url) = self
                .api
                .fetch_split_changes(since, rb_since, &self.sets, till)?;
            round.pages += 1;
            for p in &problems {
                log::warn!("{url}: skipped a broken definition: {p}");
            }
            if !self.sets.is_empty() {
                drop_flags_outside(&mut changes, &self.sets);
            }
            let has_definitions =
                !changes.flags.d.is_empty() || !changes.rule_based_segments.d.is_empty();
            let advances = changes.flags.t > since || changes.rule_based_segments.t > rb_since;
            if has_definitions || advances {
                let compile_problems = self.store.update(|s| s.apply_changes(&changes));
                for p in &compile_problems {
                    log::warn!("{url}: {p}");
                }
                round.changed |= has_definitions;
                log::debug!(
                    "applied {} and {} from {url}",
                    count(changes.flags.d.len(), "flag", "flags"),
                    count(
                        changes.rule_based_segments.d.len(),
                        "rule-based segment",
                        "rule-based segments"
                    )
                );
            }
            let done = changes.flags.s == changes.flags.t
                && changes.rule_based_segments.s == changes.rule_based_segments.t;
            if done {
                self.cut_short.store(false, Ordering::Relaxed);
            }
            if done || !advances {
                return Ok(round);
            }
            if round.pages >= MAX_PAGES_PER_ROUND {
                let message = format!(
                    "{url}: the change numbers do not converge: the last page went from since \
                     {} to till {} (rule-based segments {} to {}), still no since == till after \
                     {}; stopped until the next poll",
                    changes.flags.s,
                    changes.flags.t,
                    changes.rule_based_segments.s,
                    changes.rule_based_segments.t,
                    count(round.pages, "page", "pages")
                );
                if self.cut_short.swap(true, Ordering::Relaxed) {
                    log::debug!("{message}");
                } else {
                    log::warn!("{message} (said once until they converge)");
                }
                return Ok(round);
            }
        }
    }
}

/// Marks the flags that are in none of `sets` as archived, so applying removes them
/// (SPLIT_SEMANTICS.md §1.1: filtered-out flags are deleted).
pub(crate) fn drop_flags_outside(changes: &mut SplitChanges, sets: &[String]) {
    for f in &mut changes.flags.d {
        let inside = f
            .sets
            .as_deref()
            .is_some_and(|fs| fs.iter().any(|s| sets.contains(s)));
        if !inside {
            f.status = Some("ARCHIVED".to_string());
        }
    }
}

/// Fetches segments into a [`Store`].
#[derive(Debug, Clone)]
pub(crate) struct SegmentFetcher {
    api: Arc<SdkApi>,
    store: Arc<Store>,
    /// Segments whose last round was cut short at [`MAX_PAGES_PER_ROUND`] and warned about.
    cut_short: Arc<Mutex<BTreeSet<String>>>,
}

impl SegmentFetcher {
    /// A segment fetcher.
    pub(crate) fn new(api: Arc<SdkApi>, store: Arc<Store>) -> SegmentFetcher {
        SegmentFetcher {
            api,
            store,
            cut_short: Arc::default(),
        }
    }

    /// Fetches pages of segment `name` from its stored change number until `since == till`,
    /// applying each page whole. Returns the number of pages, or `None` when `stop` said to
    /// stop first.
    pub(crate) fn fetch_until(
        &self,
        name: &str,
        stop: &dyn Fn() -> bool,
        till: Option<i64>,
    ) -> Result<Option<u32>, FetchError> {
        let mut pages = 0;
        loop {
            if stop() {
                return Ok(None);
            }
            let stored = self.store.load().segment_change_number(name);
            let since = stored.unwrap_or(-1);
            let (changes, problems) = self.api.fetch_segment_changes(name, since, till)?;
            pages += 1;
            for p in &problems {
                log::warn!("{p}");
            }
            let has_keys = !changes.added.is_empty() || !changes.removed.is_empty();
            let advances = changes.till > since;
            if has_keys || advances || stored.is_none() {
                self.store.update(|s| s.apply_segment_changes(&changes));
                log::debug!(
                    "segment {name}: +{} -{} (change number {})",
                    changes.added.len(),
                    changes.removed.len(),
                    changes.till
                );
            }
            if changes.since == changes.till {
                self.cut_short.lock().remove(name);
            }
            if changes.since == changes.till || !advances {
                return Ok(Some(pages));
            }
            if pages >= MAX_PAGES_PER_ROUND {
                let message = format!(
                    "{}: segment {name}: the change numbers do not converge: the last page went \
                     from since {} to till {}, still no since == till after {}; stopped until \
                     the next poll",
                    self.api.segment_changes_url(name, since, till),
                    changes.since,
                    changes.till,
                    count(pages, "page", "pages")
                );
                if self.cut_short.lock().insert(name.to_string()) {
                    log::warn!("{message} (said once until they converge)");
                } else {
                    log::debug!("{message}");
                }
                return Ok(Some(pages));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_outside_the_sets_are_archived() {
        let (mut c, _) = SplitChanges::parse(
            r#"{"ff":{"d":[{"name":"a","sets":["backend"]},{"name":"b","sets":["other"]},
                {"name":"c"},{"name":"d","sets":["x","front"]}],"s":-1,"t":1}}"#,
            "t",
        )
        .unwrap();
        drop_flags_outside(&mut c, &["backend".into(), "front".into()]);
        let status: Vec<Option<&str>> = c.flags.d.iter().map(|f| f.status.as_deref()).collect();
        assert_eq!(
            status,
            vec![None, Some("ARCHIVED"), Some("ARCHIVED"), None],
            "a and d are in the filter"
        );
    }
}
