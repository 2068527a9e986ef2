//! Storage of compiled definitions: an immutable [`Snapshot`] behind an atomically swapped
//! pointer ([`Store`]).

mod snapshot;
mod store;

pub use snapshot::{FlagView, Snapshot};
pub use store::{IntoSnapshot, SnapshotGuard, Store};
