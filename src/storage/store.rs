use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, Guard};

use super::Snapshot;
use crate::updates::UpdatesHub;

/// Holds the current [`Snapshot`] and swaps in new ones atomically.
///
/// Readers ([`Store::load`]) never block and never take a lock a writer holds; writers build a
/// whole new snapshot and publish it in one pointer swap, so a reader sees either the old or
/// the new definitions, never half an update. Concurrent writers are serialised by
/// [`Store::update`].
///
/// # Examples
/// ```
/// use splitkit::{Attributes, Snapshot, Store};
/// let store = Store::new(Snapshot::new());
/// store.update(|s| s.with_segment("beta", ["ann"]));
/// let snap = store.load();
/// assert_eq!(snap.evaluate("ann", None, "missing", &Attributes::new()).treatment, "control");
/// ```
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    writer: parking_lot::Mutex<()>,
    /// Told what changed at every swap (a client's subscribers).
    observer: OnceLock<Arc<UpdatesHub>>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(Snapshot::new())
    }
}

impl Store {
    /// A store holding `snapshot`.
    pub fn new(snapshot: Snapshot) -> Store {
        Store {
            current: ArcSwap::from_pointee(snapshot),
            writer: parking_lot::Mutex::new(()),
            observer: OnceLock::new(),
        }
    }

    /// The current snapshot, for reading. Cheap and lock-free; hold it only for the
    /// duration of a read.
    #[inline]
    pub fn load(&self) -> SnapshotGuard {
        SnapshotGuard(self.current.load())
    }

    /// The current snapshot as an `Arc`, to keep beyond a short read.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        let _w = self.writer.lock();
        self.swap(snapshot);
    }

    /// Publishes `next` (the writer lock held) and tells the observer what changed.
    fn swap(&self, next: Snapshot) {
        let next = Arc::new(next);
        let old = self.current.swap(Arc::clone(&next));
        if let Some(hub) = self.observer.get() {
            hub.changed(&old, &next);
        }
    }

    /// Tells `hub` what changes at every later swap (once; later calls are ignored).
    pub(crate) fn observe(&self, hub: Arc<UpdatesHub>) {
        let _ = self.observer.set(hub);
    }

    /// Builds a new snapshot from the current one and publishes it. Writers are serialised,
    /// so no update is lost; readers are never blocked.
    pub fn update<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R::Output
    where
        R: IntoSnapshot,
    {
        let _w = self.writer.lock();
        let current = self.current.load_full();
        let (next, out) = f(&current).into_snapshot();
        self.swap(next);
        out
    }

    /// [`Store::update`] where the current snapshot may already be right: `f` answers
    /// `None`, and nothing is swapped (or copied, or told to the observer).
    pub(crate) fn update_if<T>(
        &self,
        f: impl FnOnce(&Snapshot) -> Option<(Snapshot, T)>,
    ) -> Option<T> {
        let _w = self.writer.lock();
        let current = self.current.load_full();
        let (next, out) = f(&current)?;
        self.swap(next);
        Some(out)
    }
}

/// A snapshot borrowed from a [`Store`] for one read ([`Store::load`]); it dereferences to
/// the [`Snapshot`]. Holding it keeps that snapshot alive, so drop it once the read is done
/// (take [`Store::snapshot`] to keep one).
pub struct SnapshotGuard(Guard<Arc<Snapshot>>);

impl std::ops::Deref for SnapshotGuard {
    type Target = Snapshot;

    #[inline]
    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

impl std::fmt::Debug for SnapshotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SnapshotGuard").field(&**self).finish()
    }
}

/// What an update closure may return: a snapshot, or a snapshot and a value to hand back
/// (such as the problems found while compiling).
pub trait IntoSnapshot {
    /// The value handed back by [`Store::update`].
    type Output;
    /// Splits into the snapshot and the value.
    fn into_snapshot(self) -> (Snapshot, Self::Output);
}

impl IntoSnapshot for Snapshot {
    type Output = ();
    fn into_snapshot(self) -> (Snapshot, ()) {
        (self, ())
    }
}

impl<T> IntoSnapshot for (Snapshot, T) {
    type Output = T;
    fn into_snapshot(self) -> (Snapshot, T) {
        self
    }
}
