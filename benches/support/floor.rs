//! The work no engine can skip on the standard workload, written out by hand: the flag
//! looked up by name, the key in the 10-key whitelist set, the plan in the rule's 2-item
//! list, and murmur3 of the key for the rollout. What an engine costs beyond it is its own
//! overhead; the performance issue's goals are set as multiples of it.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;
use splitkit::bucketing::murmur3_hash;

use crate::workload::{RULE_PLANS, SEED};

/// The flag table and the whitelist (the rule's list is `RULE_PLANS`).
pub(crate) struct Floor<'a> {
    flags: HashMap<String, usize, RandomState>,
    whitelist: HashSet<&'a str, RandomState>,
}

impl<'a> Floor<'a> {
    /// The workload's flag under `flag`, whitelisting `whitelist`.
    pub(crate) fn new(flag: &str, whitelist: &[&'a str]) -> Floor<'a> {
        let mut flags = HashMap::default();
        flags.insert(flag.to_string(), 1);
        Floor {
            flags,
            whitelist: whitelist.iter().copied().collect(),
        }
    }

    /// The unavoidable work of evaluating `flag` for `key` on `plan`: a number that depends
    /// on every step, so that none can be optimised away.
    #[inline]
    pub(crate) fn evaluate(&self, flag: &str, key: &str, plan: &str) -> usize {
        let f = self.flags.get(flag).copied().unwrap_or(0);
        f + if self.whitelist.contains(key) {
            1
        } else if RULE_PLANS.contains(&plan) {
            2
        } else {
            murmur3_hash(key, SEED) as usize % 100
        }
    }
}
