//! Consumer mode (feature `redis`): the client reads the definitions that Split's
//! Synchronizer keeps in Redis and writes its impressions, counts, unique keys and events
//! there for the Synchronizer to post, in the Synchronizer's own key layout and formats.
//!
//! - [`definitions`]: the periodic reader that keeps the in-memory snapshot up to date;
//! - [`transport`]: the delivery workers' transport, so that retention, retries, spool
//!   and accounting are those of HTTP delivery;
//! - [`wire`]: the element formats; [`keys`]: the key names; [`connection`]: connections.

mod config;
mod connection;
mod definitions;
mod keys;
mod transport;
mod wire;

use std::sync::Arc;

pub use config::{
    DEFAULT_CLUSTER_HASH_TAG, DEFAULT_REDIS_CONNECT_TIMEOUT, DEFAULT_REDIS_REFRESH_RATE,
    DEFAULT_REDIS_TIMEOUT, RedisConfig,
};
pub(crate) use transport::{HASH, LIST, RedisTransport};
pub(crate) use wire::{
    CountElements, EventElements, UniqueKeyElements, metadata, write_impression,
};

use crate::error::Error;
use crate::periodic::Periodic;
use crate::remote::Readiness;
use crate::storage::Store;

/// Starts the definitions reader: a first read at once, then one every refresh period.
pub(crate) fn start_reader(
    config: &RedisConfig,
    store: Arc<Store>,
) -> Result<(Periodic, Arc<Readiness>), Error> {
    let readiness = Arc::new(Readiness::new());
    let mut reader = definitions::DefinitionsReader::new(
        connection::Link::new(config.clone()),
        store,
        readiness.clone(),
    );
    let periodic = Periodic::start("splitkit-redis", config.refresh_rate, move || {
        reader.refresh();
    })?;
    periodic.wake();
    Ok((periodic, readiness))
}

/// Key names, for the queues' endpoints.
pub(crate) mod queues {
    pub(crate) use super::keys::{EVENTS, IMPRESSION_COUNTS, IMPRESSIONS, UNIQUE_KEYS};
}
