//! Change notifications for applications: [`Client::updates`](crate::Client::updates).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use parking_lot::Mutex;

use crate::storage::Snapshot;

/// Updates a subscriber's channel holds before further ones are dropped (with a warning): a
/// subscriber that does not read never stalls synchronization.
pub(crate) const SUBSCRIBER_CAPACITY: usize = 1024;

/// What happened to a client's definitions, as [`Client::updates`](crate::Client::updates)
/// hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// The client is ready: flags and the segments they use are loaded (sent at once to a
    /// subscriber of a client that is ready already).
    Ready,
    /// Definitions changed: a poll, a streamed update or kill, or a localhost reload.
    Definitions(DefinitionsUpdate),
}

/// One change of definitions: the flags added, changed, killed or removed, and the segments
/// whose members changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DefinitionsUpdate {
    /// The flags that changed, sorted by name.
    pub flags: Vec<FlagChange>,
    /// The segments (standard and rule-based) whose definition or members changed, sorted.
    pub segments: Vec<String>,
    /// The flags' change number after the update.
    pub change_number: i64,
}

/// One flag of a [`DefinitionsUpdate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlagChange {
    /// The flag.
    pub name: String,
    /// Its change number now; `None` when it was removed.
    pub change_number: Option<i64>,
    /// Whether it is killed now (and was not before).
    pub killed: bool,
}

impl FlagChange {
    /// True when the flag was removed (archived, or left the flag sets filter).
    pub fn removed(&self) -> bool {
        self.change_number.is_none()
    }
}

/// The subscribers of one client.
#[derive(Debug, Default)]
pub(crate) struct UpdatesHub {
    inner: Mutex<Subscribers>,
}

#[derive(Debug, Default)]
struct Subscribers {
    /// Each subscriber, and whether it was told [`Update::Ready`] (it is told once).
    each: Vec<(Sender<Update>, bool)>,
    /// Whether [`Update::Ready`] was published: a later subscriber is told at once. Kept
    /// under the lock of the list, so that a subscriber is told by exactly one of the two.
    ready: bool,
}

impl UpdatesHub {
    /// A new subscriber's channel; it gets [`Update::Ready`] at once when the client is
    /// ready already.
    pub(crate) fn subscribe(&self) -> Receiver<Update> {
        let (tx, rx) = bounded(SUBSCRIBER_CAPACITY);
        let mut subscribers = self.inner.lock();
        let told = subscribers.ready && tx.try_send(Update::Ready).is_ok();
        subscribers.each.push((tx, told));
        rx
    }

    /// Hands `update` to every subscriber without waiting (`Ready` only to those not told
    /// yet, and to every later subscriber); drops gone subscribers.
    pub(crate) fn publish(&self, update: &Update) {
        let ready = *update == Update::Ready;
        let mut subscribers = self.inner.lock();
        subscribers.ready |= ready;
        subscribers.each.retain_mut(|(s, told)| {
            if ready && *told {
                return true;
            }
            match s.try_send(update.clone()) {
                Ok(()) => {
                    *told |= ready;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    log::warn!(
                        "an updates subscriber has not read its last {SUBSCRIBER_CAPACITY} updates; this one is dropped for it"
                    );
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }

    /// Publishes what changed between two snapshots, if anything did.
    pub(crate) fn changed(&self, old: &Snapshot, new: &Snapshot) {
        if self.inner.lock().each.is_empty() {
            return;
        }
        if let Some(update) = diff(old, new) {
            self.publish(&Update::Definitions(update));
        }
    }
}

/// What changed from `old` to `new` (compiled definitions are shared between snapshots, so
/// what did not change is the same allocation).
fn diff(old: &Snapshot, new: &Snapshot) -> Option<DefinitionsUpdate> {
    let mut flags: Vec<FlagChange> = new
        .flags
        .iter()
        .filter(|(name, f)| old.flags.get(*name).is_none_or(|o| !Arc::ptr_eq(o, f)))
        .map(|(name, f)| FlagChange {
            name: name.clone(),
            change_number: Some(f.change_number),
            killed: f.killed && !old.flags.get(name).is_some_and(|o| o.killed),
        })
        .collect();
    flags.extend(
        old.flags
            .keys()
            .filter(|n| !new.flags.contains_key(*n))
            .map(|n| FlagChange {
                name: n.clone(),
                change_number: None,
                killed: false,
            }),
    );
    flags.sort_by(|a, b| a.name.cmp(&b.name));
    let mut segments: Vec<String> = new
        .segments
        .iter()
        .filter(|(n, s)| old.segments.get(*n).is_none_or(|o| !Arc::ptr_eq(o, s)))
        .map(|(n, _)| n.clone())
        .chain(
            new.rule_based
                .iter()
                .filter(|(n, r)| old.rule_based.get(*n).is_none_or(|o| !Arc::ptr_eq(o, r)))
                .map(|(n, _)| n.clone()),
        )
        .chain(
            old.segments
                .keys()
                .filter(|n| !new.segments.contains_key(*n))
                .cloned(),
        )
        .chain(
            old.rule_based
                .keys()
                .filter(|n| !new.rule_based.contains_key(*n))
                .cloned(),
        )
        .collect();
    segments.sort();
    segments.dedup();
    (!flags.is_empty() || !segments.is_empty()).then(|| DefinitionsUpdate {
        flags,
        segments,
        change_number: new.change_number(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(flags: &str, t: i64) -> String {
        format!(r#"{{"ff":{{"d":[{flags}],"s":-1,"t":{t}}},"rbs":{{"d":[],"s":-1,"t":-1}}}}"#)
    }

    #[test]
    fn a_diff_names_added_changed_killed_and_removed_flags_and_changed_segments() {
        let (a, _) = Snapshot::from_json(
            &doc(r#"{"name":"keep","changeNumber":1},{"name":"kill","changeNumber":1},{"name":"gone","changeNumber":1}"#, 1),
            "a",
        )
        .unwrap();
        let a = a.with_segment("beta", ["x"]);
        let (b, _) = a.apply_changes(
            &crate::definitions::SplitChanges::parse(
                &doc(r#"{"name":"kill","changeNumber":2,"killed":true},{"name":"gone","status":"ARCHIVED"},{"name":"new","changeNumber":2}"#, 2),
                "b",
            )
            .unwrap()
            .0,
        );
        let b = b.with_segment("beta", ["x", "y"]);
        let d = diff(&a, &b).unwrap();
        let got: Vec<(&str, Option<i64>, bool)> = d
            .flags
            .iter()
            .map(|f| (f.name.as_str(), f.change_number, f.killed))
            .collect();
        assert_eq!(
            got,
            [
                ("gone", None, false),
                ("kill", Some(2), true),
                ("new", Some(2), false)
            ]
        );
        assert!(d.flags[0].removed());
        assert_eq!(d.segments, ["beta"]);
        assert_eq!(d.change_number, 2);
        assert_eq!(diff(&b, &b), None, "nothing changed");
    }

    #[test]
    fn subscribers_get_every_update_and_a_full_one_never_blocks() {
        let hub = UpdatesHub::default();
        let a = hub.subscribe();
        hub.publish(&Update::Ready);
        let b = hub.subscribe();
        let (old, _) = Snapshot::from_json(&doc("", 1), "a").unwrap();
        for n in 0..SUBSCRIBER_CAPACITY + 5 {
            let new = old.with_segment(&format!("s{n}"), ["k"]);
            hub.changed(&old, &new);
        }
        assert_eq!(
            a.len(),
            SUBSCRIBER_CAPACITY,
            "full: later updates dropped, never blocked"
        );
        assert_eq!(a.try_recv(), Ok(Update::Ready), "told when it happened");
        assert_eq!(
            b.try_recv(),
            Ok(Update::Ready),
            "a ready client says so at once"
        );
        drop(b);
        hub.changed(&old, &old.with_segment("last", ["k"]));
        assert_eq!(
            hub.inner.lock().each.len(),
            1,
            "a gone subscriber is dropped"
        );

        let c = hub.subscribe();
        hub.publish(&Update::Ready);
        hub.publish(&Update::Ready);
        assert_eq!(
            (c.try_recv(), c.try_recv().is_err()),
            (Ok(Update::Ready), true),
            "told once"
        );
    }
}
