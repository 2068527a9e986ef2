//! Reads the definitions the Synchronizer keeps in Redis into the client's snapshot.
//!
//! Every refresh reads `SPLITIO.splits.till` and `SPLITIO.rbsegments.till` (one pipeline);
//! when either moved, every `SPLITIO.split.*` and `SPLITIO.rbsegment.*` is read again (SCAN,
//! then MGET in chunks) and compiled into a new snapshot, which keeps the segments it has.
//! Then each referenced segment's `SPLITIO.segment.{name}.till` is read (one pipeline), and the
//! members of those whose till moved (SMEMBERS). Evaluation never waits for Redis: it reads
//! the snapshot in memory.

use std::collections::HashMap;
use std::sync::Arc;

use redis::RedisError;
use serde_json::value::RawValue;

use super::connection::Link;
use super::keys::{self, Keys};
use crate::definitions::SplitChanges;
use crate::engine::FastSet;
use crate::error::Error;
use crate::remote::Readiness;
use crate::storage::Store;

/// Keys read with one MGET.
const MGET_CHUNK: usize = 500;

/// The reader's state between refreshes.
pub(crate) struct DefinitionsReader {
    link: Link,
    keys: Keys,
    store: Arc<Store>,
    readiness: Arc<Readiness>,
    /// The tills of the definitions in the snapshot (flags, rule-based segments).
    loaded: Option<(i64, i64)>,
    /// Whether the last refresh failed (to warn once per outage).
    failing: bool,
    /// Whether the missing-till warning was given.
    warned_missing: bool,
    /// Tills that were not numbers when last read, warned about once each.
    bad_tills: FastSet<String>,
}

impl DefinitionsReader {
    pub(crate) fn new(link: Link, store: Arc<Store>, readiness: Arc<Readiness>) -> Self {
        let keys = Keys::new(link.key_prefix());
        DefinitionsReader {
            link,
            keys,
            store,
            readiness,
            loaded: None,
            failing: false,
            warned_missing: false,
            bad_tills: FastSet::default(),
        }
    }

    /// One refresh; failures are logged (once per outage) and recorded for readiness.
    pub(crate) fn refresh(&mut self) {
        match self.try_refresh() {
            Ok(()) => {
                if self.failing {
                    log::info!("{}: reachable again", self.link.describe());
                    self.failing = false;
                }
            }
            Err(e) => {
                let message = format!("cannot read definitions from {}: {e}", self.link.describe());
                if !self.failing {
                    log::warn!("{message}; the last definitions read stay in use");
                    self.failing = true;
                }
                self.readiness.record_error(message);
            }
        }
    }

    fn try_refresh(&mut self) -> Result<(), RedisError> {
        let (flags_till, rb_till): (Option<String>, Option<String>) = self.link.pipeline(
            redis::pipe()
                .get(self.keys.key(keys::FLAGS_TILL))
                .get(self.keys.key(keys::RULE_BASED_TILL)),
            None,
        )?;
        let Some(flags_till) = self.till(keys::FLAGS_TILL, flags_till) else {
            let message = format!(
                "{} has no valid {}: has the Synchronizer run?",
                self.link.describe(),
                self.keys.key(keys::FLAGS_TILL)
            );
            if !self.warned_missing {
                log::warn!("{message}");
                self.warned_missing = true;
            }
            self.readiness.record_error(message);
            return Ok(());
        };
        // Rule-based segments are optional (older Synchronizers do not write them).
        let rb_till = self.till(keys::RULE_BASED_TILL, rb_till).unwrap_or(-1);
        if self.loaded != Some((flags_till, rb_till)) {
            self.load_definitions(flags_till, rb_till)?;
            self.loaded = Some((flags_till, rb_till));
        }
        self.load_segments()?;
        self.readiness.set_ready();
        Ok(())
    }

    /// A till's value, or `None` when it is missing or not a number (warned about once, by
    /// key, until it is a number again: the reader looks every second).
    fn till(&mut self, name: &str, value: Option<String>) -> Option<i64> {
        let value = value?;
        match value.trim().parse::<i64>() {
            Ok(n) => {
                self.bad_tills.remove(name);
                Some(n)
            }
            Err(_) => {
                if self.bad_tills.insert(name.to_string()) {
                    log::warn!(
                        "{}: {} is {value:?}, not a change number; ignored",
                        self.link.describe(),
                        self.keys.key(name)
                    );
                }
                None
            }
        }
    }

    /// Reads every flag and rule-based segment and swaps in a snapshot of them.
    fn load_definitions(&mut self, flags_till: i64, rb_till: i64) -> Result<(), RedisError> {
        let flags = self.read_all(keys::FLAG_PREFIX)?;
        let rule_based = self.read_all(keys::RULE_BASED_PREFIX)?;
        let mut text = String::with_capacity(
            flags
                .iter()
                .chain(&rule_based)
                .map(|(_, v)| v.len() + 1)
                .sum::<usize>()
                + 64,
        );
        text.push_str("{\"ff\":{\"d\":[");
        join(&mut text, &flags);
        text.push_str(&format!(
            "],\"s\":-1,\"t\":{flags_till}}},\"rbs\":{{\"d\":["
        ));
        join(&mut text, &rule_based);
        text.push_str(&format!("],\"s\":-1,\"t\":{rb_till}}}}}"));
        let origin = format!("{} definitions", self.link.describe());
        let (changes, problems) = match SplitChanges::parse(&text, &origin) {
            Ok(parsed) => parsed,
            Err(e) => {
                // Each value was checked to be JSON: this cannot happen short of a bug.
                log::error!("{e}");
                return Ok(());
            }
        };
        let names: HashMap<&str, &str> = flags
            .iter()
            .map(|(k, _)| (name_of(k, &self.keys, keys::FLAG_PREFIX), k.as_str()))
            .chain(
                rule_based
                    .iter()
                    .map(|(k, _)| (name_of(k, &self.keys, keys::RULE_BASED_PREFIX), k.as_str())),
            )
            .collect();
        for p in &problems {
            match p {
                Error::InvalidDefinition { flag, .. } if names.contains_key(flag.as_str()) => {
                    log::warn!("{}: skipped: {p}", names[flag.as_str()]);
                }
                _ => log::warn!("{origin}: {p}"),
            }
        }
        self.store
            .update(|current| current.replace_definitions(&changes).0);
        Ok(())
    }

    /// Every key with `prefix` (below the key prefix) and its value; values that are not
    /// JSON objects are skipped with a warning naming the key.
    fn read_all(&mut self, prefix: &str) -> Result<Vec<(String, String)>, RedisError> {
        let pattern = format!("{}*", keys::glob_escape(&self.keys.key(prefix)));
        let mut names = self.link.scan(&pattern)?;
        names.sort();
        names.dedup();
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(MGET_CHUNK) {
            let values: Vec<Option<String>> =
                self.link.query(redis::cmd("MGET").arg(chunk), None)?;
            for (key, value) in chunk.iter().zip(values) {
                // Deleted between SCAN and MGET: gone, as it should be.
                let Some(value) = value else { continue };
                match serde_json::from_str::<&RawValue>(&value) {
                    Ok(raw) if raw.get().starts_with('{') => out.push((key.clone(), value)),
                    Ok(_) => log::warn!("{key}: skipped: not a JSON object"),
                    Err(e) => log::warn!("{key}: skipped: not JSON: {e}"),
                }
            }
        }
        Ok(out)
    }

    /// Reads the tills of the segments the snapshot uses, and the members of those whose
    /// till moved.
    fn load_segments(&mut self) -> Result<(), RedisError> {
        let names = self.store.load().referenced_segments();
        if names.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for n in &names {
            pipe.get(self.keys.key(&keys::segment_till(n)));
        }
        let tills: Vec<Option<String>> = self.link.pipeline(&pipe, None)?;
        for (name, till) in names.iter().zip(tills) {
            let Some(till) = till else {
                // Not synchronized yet: the segment is empty until it is.
                continue;
            };
            let Some(till) = self.till(&keys::segment_till(name), Some(till)) else {
                continue;
            };
            if self.store.load().segment_change_number(name) == Some(till) {
                continue;
            }
            let members: Vec<String> = self.link.query(
                redis::cmd("SMEMBERS").arg(self.keys.key(&keys::segment(name))),
                None,
            )?;
            let members: FastSet<String> = members.into_iter().collect();
            self.store
                .update(|current| current.with_segment_at(name, members, till));
        }
        Ok(())
    }
}

/// Appends the values of `items`, comma separated.
fn join(text: &mut String, items: &[(String, String)]) {
    for (n, (_, v)) in items.iter().enumerate() {
        if n > 0 {
            text.push(',');
        }
        text.push_str(v);
    }
}

/// The definition name in `key` (`{prefix}SPLITIO.split.{name}`).
fn name_of<'a>(key: &'a str, keys: &Keys, prefix: &str) -> &'a str {
    key.strip_prefix(keys.key(prefix).as_str()).unwrap_or(key)
}
