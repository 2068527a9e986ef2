//! The fixed bounds splitkit works within: input sizes, what a queue slot holds, when a send
//! starts early.

pub use crate::config::{EVENTS_FLUSH_BYTES, MIN_LOCALHOST_REFRESH_RATE};
pub use crate::engine::evaluator::MAX_DEPTH;
pub use crate::events::{MAX_PROPERTIES, MAX_PROPERTIES_SIZE};
pub use crate::impressions::{QUEUED_IMPRESSION_BYTES, QUEUED_KEY_BYTES, UNIQUE_KEYS_EARLY_FLUSH};
pub use crate::integrations::segment::{SEGMENT_MAX_BATCH_BYTES, SEGMENT_MAX_CALL_BYTES};
pub use crate::validation::MAX_KEY_LENGTH;
