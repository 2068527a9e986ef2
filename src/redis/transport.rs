//! [`RedisTransport`]: the delivery workers' [`Transport`] in consumer mode. A request's path
//! names the operation and the key (`list:SPLITIO.impressions`, `hash:SPLITIO.impressions.count`)
//! and its body holds one element a line (see [`super::wire`]); the answer is classified as
//! HTTP's would be, so that retention, retries, the spool and the accounting are the HTTP
//! delivery's, unchanged.

use std::fmt;
use std::time::Instant;

use parking_lot::Mutex;
use redis::RedisError;

use super::config::RedisConfig;
use super::connection::Link;
use super::keys::{Keys, QUEUE_TTL_SECONDS};
use crate::delivery::{Request, Response, Transport, TransportError};

/// Path of a list push (RPUSH of each line).
pub(crate) const LIST: &str = "list:";
/// Path of hash increments (HINCRBY of each `[field,count]` line).
pub(crate) const HASH: &str = "hash:";

/// Writes request bodies to Redis. Each worker thread takes a connection of its own from a
/// small pool (so a slow write of one worker never holds another's), opened on first use
/// and again after a failure.
pub(crate) struct RedisTransport {
    config: RedisConfig,
    keys: Keys,
    idle: Mutex<Vec<Link>>,
}

impl fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTransport")
            .field("to", &self.config.describe())
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    pub(crate) fn new(config: RedisConfig) -> RedisTransport {
        RedisTransport {
            keys: Keys::new(config.key_prefix()),
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn write(&self, link: &mut Link, request: &Request<'_>) -> Result<(), Failure> {
        let lines = request
            .body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty());
        let deadline = request.deadline;
        if let Some(name) = request.path.strip_prefix(LIST) {
            let key = self.keys.key(name);
            let elements: Vec<&[u8]> = lines.collect();
            if elements.is_empty() {
                return Ok(());
            }
            let length: usize =
                link.query(redis::cmd("RPUSH").arg(&key).arg(&elements), deadline)?;
            // The push created the key: it expires unless the Synchronizer drains it, as the
            // official SDKs set it.
            if length == elements.len() {
                link.query::<()>(
                    redis::cmd("EXPIRE").arg(&key).arg(QUEUE_TTL_SECONDS),
                    deadline,
                )?;
            }
            Ok(())
        } else if let Some(name) = request.path.strip_prefix(HASH) {
            let key = self.keys.key(name);
            let mut pipe = redis::pipe();
            let mut increments = Vec::new();
            for line in lines {
                let (field, count): (String, i64) = serde_json::from_slice(line).map_err(|e| {
                    Failure::Invalid(format!("a count line is not [field,count]: {e}"))
                })?;
                pipe.cmd("HINCRBY").arg(&key).arg(field).arg(count);
                increments.push(count);
            }
            if increments.is_empty() {
                return Ok(());
            }
            pipe.cmd("HLEN").arg(&key);
            let results: Vec<i64> = link.pipeline(&pipe, deadline)?;
            // Every field new and no other field: the increments created the hash.
            let created = results.len() == increments.len() + 1
                && results.iter().zip(&increments).all(|(r, i)| r == i)
                && results.last() == Some(&i64::try_from(increments.len()).unwrap_or(i64::MAX));
            if created {
                link.query::<()>(
                    redis::cmd("EXPIRE").arg(&key).arg(QUEUE_TTL_SECONDS),
                    deadline,
                )?;
            }
            Ok(())
        } else {
            Err(Failure::Invalid(format!(
                "unknown Redis operation {:?}",
                request.path
            )))
        }
    }
}

/// Why a write did not happen.
enum Failure {
    Redis(RedisError),
    Invalid(String),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

impl Transport for RedisTransport {
    fn post(&self, request: &Request<'_>) -> Result<Response, TransportError> {
        let mut link = self
            .idle
            .lock()
            .pop()
            .unwrap_or_else(|| Link::new(self.config.clone()));
        let result = self.write(&mut link, request);
        self.idle.lock().push(link);
        match result {
            Ok(()) => Ok(Response {
                status: 200,
                retry_after: None,
            }),
            Err(Failure::Invalid(message)) => Err(TransportError::Invalid(message.into())),
            Err(Failure::Redis(e)) => classify(e, request.deadline),
        }
    }
}

/// A Redis failure as delivery understands failures: no answer (connection, timeout) is a
/// transport error; a server error is a 503 (retried: loading, failover, out of memory, a
/// cluster resharding, a permission being fixed), except `WRONGTYPE`, which no retry can
/// fix (400: dropped with a warning).
fn classify(e: RedisError, deadline: Option<Instant>) -> Result<Response, TransportError> {
    if e.is_timeout() || deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(TransportError::Timeout(Box::new(e)));
    }
    if e.is_connection_refusal() {
        return Err(TransportError::Connect(Box::new(e)));
    }
    if e.is_io_error() || e.is_connection_dropped() {
        return Err(TransportError::Io(Box::new(e)));
    }
    let status = if e.code() == Some("WRONGTYPE") {
        log::warn!("redis: {e}");
        400
    } else {
        503
    };
    Ok(Response {
        status,
        retry_after: None,
    })
}
