//! The evaluation workload of `benches/evaluate.rs` written for two other Rust evaluation
//! engines, so that their cost can be set beside splitkit's in the same run: Unleash's
//! `unleash-yggdrasil` and LaunchDarkly's `launchdarkly-server-sdk-evaluation`.
//!
//! The flag is the same in all three: the 10 whitelisted keys get `on`, then a `plan` in
//! `[enterprise, pro]` rule gives `on`, then a 50/50 rollout on the key. Each peer is called
//! the cheapest way its API allows (Unleash's `is_enabled`, a boolean; LaunchDarkly's
//! `evaluate` on a flag borrowed from a map, not cloned out of a `Store` as its SDK does),
//! with the contexts built beforehand, as splitkit's attributes are (`evaluate`), or built
//! for each call from the key and plan, as an application serving a request does
//! (`evaluate_per_call`).

use std::collections::HashMap;

use launchdarkly_server_sdk_evaluation as ld;
use serde_json::json;

use crate::workload::RULE_PLANS;
use unleash_yggdrasil as unleash;

/// Unleash: the engine and one context per key.
pub(crate) struct Unleash {
    pub(crate) engine: unleash::EngineState,
    pub(crate) contexts: Vec<unleash::Context>,
}

impl Unleash {
    /// The workload flag under `flag` for `keys`, whitelisting `whitelist`; `plans[i]` is the
    /// plan of `keys[i]`.
    pub(crate) fn new(flag: &str, whitelist: &[&str], keys: &[String], plans: &[&str]) -> Unleash {
        let features: unleash::ClientFeatures = serde_json::from_value(json!({
            "version": 2,
            "features": [{
                "name": flag, "enabled": true,
                "strategies": [
                    {"name": "default", "constraints": [
                        {"contextName": "userId", "operator": "IN", "values": whitelist}]},
                    {"name": "default", "constraints": [
                        {"contextName": "plan", "operator": "IN", "values": RULE_PLANS}]},
                    {"name": "flexibleRollout", "parameters":
                        {"rollout": "50", "stickiness": "userId", "groupId": flag}}
                ]
            }]
        }))
        .expect("unleash features");
        let engine = unleash::EngineState::default();
        let warnings = engine.take_state(unleash::UpdateMessage::FullResponse(features));
        assert!(warnings.is_none(), "{warnings:?}");
        let contexts = keys
            .iter()
            .zip(plans)
            .map(|(k, p)| unleash::Context {
                user_id: Some(k.clone()),
                properties: Some(HashMap::from([("plan".to_string(), p.to_string())])),
                ..unleash::Context::default()
            })
            .collect();
        Unleash { engine, contexts }
    }

    /// Whether the flag is on for context `i`.
    #[inline]
    pub(crate) fn evaluate(&self, flag: &str, i: usize) -> bool {
        self.engine.is_enabled(flag, &self.contexts[i], &None)
    }

    /// Whether the flag is on for `key` with `plan`, the context built for this call.
    #[inline]
    pub(crate) fn evaluate_per_call(&self, flag: &str, key: &str, plan: &str) -> bool {
        let context = unleash::Context {
            user_id: Some(key.to_string()),
            properties: Some(HashMap::from([("plan".to_string(), plan.to_string())])),
            ..unleash::Context::default()
        };
        self.engine.is_enabled(flag, &context, &None)
    }
}

/// A LaunchDarkly store of one flag (the trait's `flag` clones; evaluation goes around it).
struct LdStore {
    flags: HashMap<String, ld::Flag>,
}

impl ld::Store for LdStore {
    fn flag(&self, flag_key: &str) -> Option<ld::Flag> {
        self.flags.get(flag_key).cloned()
    }

    fn segment(&self, _segment_key: &str) -> Option<ld::Segment> {
        None
    }
}

/// LaunchDarkly: the flags and one context per key.
pub(crate) struct LaunchDarkly {
    store: LdStore,
    pub(crate) contexts: Vec<ld::Context>,
}

impl LaunchDarkly {
    /// The workload flag, as [`Unleash::new`].
    pub(crate) fn new(
        flag: &str,
        whitelist: &[&str],
        keys: &[String],
        plans: &[&str],
    ) -> LaunchDarkly {
        let f: ld::Flag = serde_json::from_value(json!({
            "key": flag, "version": 1, "on": true, "salt": "checkout-salt",
            "variations": ["on", "off"], "offVariation": 1,
            "prerequisites": [],
            "targets": [{"values": whitelist, "variation": 0}],
            "contextTargets": [],
            "rules": [{"id": "plan-rule", "variation": 0, "trackEvents": false,
                       "clauses": [{"attribute": "plan", "op": "in",
                                    "values": RULE_PLANS, "negate": false}]}],
            "fallthrough": {"rollout": {"variations": [
                {"variation": 0, "weight": 50000}, {"variation": 1, "weight": 50000}]}},
            "clientSide": false, "trackEvents": false, "trackEventsFallthrough": false
        }))
        .expect("launchdarkly flag");
        let contexts = keys
            .iter()
            .zip(plans)
            .map(|(k, p)| {
                let mut b = ld::ContextBuilder::new(k.as_str());
                b.set_string("plan", *p);
                b.build().expect("launchdarkly context")
            })
            .collect();
        LaunchDarkly {
            store: LdStore {
                flags: HashMap::from([(flag.to_string(), f)]),
            },
            contexts,
        }
    }

    /// The variation's value for context `i` (`None` for a missing flag).
    #[inline]
    pub(crate) fn evaluate(&self, flag: &str, i: usize) -> Option<&str> {
        self.evaluate_in(flag, &self.contexts[i])
    }

    /// Whether the variation is `on` for `key` with `plan`, the context built for this call.
    #[inline]
    pub(crate) fn evaluate_per_call(&self, flag: &str, key: &str, plan: &str) -> bool {
        let mut b = ld::ContextBuilder::new(key);
        b.set_string("plan", plan);
        b.build()
            .is_ok_and(|context| self.evaluate_in(flag, &context) == Some("on"))
    }

    #[inline]
    fn evaluate_in<'a>(&'a self, flag: &str, context: &'a ld::Context) -> Option<&'a str> {
        let f = self.store.flags.get(flag)?;
        let detail = ld::evaluate(&self.store, f, context, None);
        match detail.value {
            Some(ld::FlagValue::Str(s)) => Some(s.as_str()),
            _ => None,
        }
    }
}
