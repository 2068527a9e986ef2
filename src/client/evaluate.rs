//! Evaluations through the API: validation, readiness, the engine guarded against panics,
//! fallback treatments, the impression, and the caller's result.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::{Client, InFlight};
use crate::engine::attribute_ref::AttributesRef;
use crate::engine::attributes::Attributes;
use crate::engine::evaluator::{CONTROL, Evaluation, Names};
use crate::engine::labels::{DEFAULT_RULE, Label, default_rule_name};
use crate::impressions::{ImpressionFields, now_ms};
use crate::properties::EvaluationOptions;
use crate::storage::Snapshot;
use crate::treatment::{Key, Treatment, TreatmentDetails, TreatmentWithConfig};
use crate::validation::{check_flag_name, check_key, is_plain_key, sanitize_flag_sets};

impl Client {
    /// The treatment of `flag` for `key`.
    ///
    /// `attributes` is `None`, an [`Attributes`] (`Some(&attributes)` or `&attributes`), or
    /// pairs of names and values lent for the call, such as `&[("plan", "pro".into())]`
    /// ([`AttributesRef`]); every evaluation method takes the same.
    ///
    /// Invalid input, a destroyed client, an unknown flag or an internal failure give
    /// `"control"` (with a logged warning naming the problem); this never panics.
    pub fn get_treatment<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> Treatment {
        self.plain().get_treatment(key, flag, attributes)
    }

    /// The treatment of `flag` for `key`, with its configuration.
    pub fn get_treatment_with_config<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> TreatmentWithConfig {
        self.plain()
            .get_treatment_with_config(key, flag, attributes)
    }

    /// Everything the evaluation decided: treatment, label, configuration, change number and
    /// whether an impression is produced.
    ///
    /// # Examples
    /// ```
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.yaml").build()?;
    /// let d = client.evaluate("ann", "nonexistent_flag", None);
    /// assert_eq!(d.treatment, "control");
    /// assert_eq!(d.label.map(|l| l.to_string()).as_deref(), Some("definition not found"));
    /// assert!(!d.impression);
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn evaluate<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> TreatmentDetails {
        self.plain().evaluate(key, flag, attributes)
    }

    /// Treatments of several flags for `key`: flag name to treatment. Invalid and duplicate
    /// names are dropped (with a warning).
    pub fn get_treatments<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, Treatment> {
        self.plain().get_treatments(key, flags, attributes)
    }

    /// [`Client::get_treatments`] with configurations.
    pub fn get_treatments_with_config<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.plain()
            .get_treatments_with_config(key, flags, attributes)
    }

    /// Treatments of every flag in a flag set.
    pub fn get_treatments_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, Treatment> {
        self.plain()
            .get_treatments_by_flag_set(key, flag_set, attributes)
    }

    /// Treatments of every flag in any of the flag sets.
    pub fn get_treatments_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, Treatment> {
        self.plain()
            .get_treatments_by_flag_sets(key, flag_sets, attributes)
    }

    /// [`Client::get_treatments_by_flag_set`] with configurations.
    pub fn get_treatments_with_config_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.plain()
            .get_treatments_with_config_by_flag_set(key, flag_set, attributes)
    }

    /// [`Client::get_treatments_by_flag_sets`] with configurations.
    pub fn get_treatments_with_config_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.plain()
            .get_treatments_with_config_by_flag_sets(key, flag_sets, attributes)
    }

    /// The evaluation methods with `options` applied to every evaluation they make
    /// (impression properties, for now).
    ///
    /// # Examples
    /// ```
    /// use splitkit::{EvaluationOptions, Properties};
    /// let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
    /// let options = EvaluationOptions::new().properties(Properties::new().with("page", "cart"));
    /// let treatment = client.with_options(&options).get_treatment("qa_alice", "new_checkout", None);
    /// assert_eq!(treatment, "on");
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn with_options(&self, options: &EvaluationOptions) -> ClientWithOptions<'_> {
        ClientWithOptions {
            client: self,
            properties: options.impression_properties("with_options"),
        }
    }

    /// The evaluation methods without options.
    fn plain(&self) -> ClientWithOptions<'_> {
        ClientWithOptions {
            client: self,
            properties: None,
        }
    }

    /// Checks the client and the key; `Err` holds the warning to log. The usual call (a
    /// live client, keys that [`is_plain_key`] accepts) in line, the rest out of line.
    #[inline]
    fn check_call(&self, op: &str, key: &Key<'_>) -> Result<InFlight<'_>, String> {
        if is_plain_key(key.matching_key)
            && key.bucketing_key.is_none_or(is_plain_key)
            && let Some(guard) = self.inner.in_flight.enter(&self.inner.destroyed)
        {
            return Ok(guard);
        }
        self.check_call_slow(op, key)
    }

    #[cold]
    fn check_call_slow(&self, op: &str, key: &Key<'_>) -> Result<InFlight<'_>, String> {
        let Some(guard) = self.inner.in_flight.enter(&self.inner.destroyed) else {
            return Err(format!(
                "{op}: client has already been destroyed - no calls possible"
            ));
        };
        let name = if key.bucketing_key.is_some() {
            "matching_key"
        } else {
            "key"
        };
        check_key(op, name, key.matching_key)?;
        if let Some(b) = key.bucketing_key {
            check_key(op, "bucketing_key", b)?;
        }
        Ok(guard)
    }

    /// One evaluation through the API: validation, readiness, the engine (guarded against
    /// panics), the fallback treatment, the impression, then `shape` builds the caller's
    /// result from the borrowed outcome (so nothing is copied that the caller does not
    /// need).
    fn evaluate_op<R>(
        &self,
        properties: Option<&str>,
        op: &str,
        key: Key<'_>,
        flag: &str,
        attributes: AttributesRef<'_>,
        shape: impl FnOnce(&Outcome<'_>) -> R,
    ) -> R {
        let _in_flight = match self.check_call(op, &key) {
            Ok(g) => g,
            Err(w) => {
                log::warn!("{w}");
                return shape(&self.invalid(flag));
            }
        };
        let Some(name) = check_flag_name(op, flag, &mut |w| log::warn!("{w}")) else {
            return shape(&self.invalid(flag));
        };
        let flag = name;
        let shared = self.listener_attributes(attributes);
        if !self.is_ready() {
            let o = self.not_ready(properties, op, key, flag, shared.as_ref());
            return shape(&o);
        }
        let snapshot = self.inner.store.load();
        let mut o = evaluate_guarded(op, &snapshot, key, flag, attributes, Snapshot::evaluate_key);
        self.fallback(flag, &mut o);
        self.record(properties, key, flag, &o, shared.as_ref(), now_ms());
        shape(&o)
    }

    /// Attributes shared with the listeners (only when there are some).
    fn listener_attributes(&self, attributes: AttributesRef<'_>) -> Option<Arc<Attributes>> {
        if self.inner.config.impression_listeners.is_empty() {
            None
        } else {
            attributes.to_attributes().map(Arc::new)
        }
    }

    /// The outcome of invalid input or a destroyed client for `flag`: `control`, or its
    /// fallback treatment.
    fn invalid<'a>(&'a self, flag: &str) -> Outcome<'a> {
        let mut o = Outcome::INVALID;
        self.fallback(flag, &mut o);
        o
    }

    /// Puts the fallback treatment of `flag` in place of `control` in `o`, if there is one:
    /// one branch when no fallback is configured, the rest out of line. (In place: returned,
    /// the outcome was copied once more on every call, 16 instructions of `get_treatment`.)
    #[inline(always)]
    fn fallback<'a>(&'a self, flag: &str, o: &mut Outcome<'a>) {
        if self.inner.fallbacks.is_empty() || o.treatment != CONTROL {
            return;
        }
        self.with_fallback(flag, o);
    }

    #[cold]
    #[inline(never)]
    fn with_fallback<'a>(&'a self, flag: &str, o: &mut Outcome<'a>) {
        let fallbacks = &self.inner.fallbacks;
        let Some(f) = fallbacks.for_flag(flag) else {
            return;
        };
        let (label, label_name) = match o.label.as_deref() {
            Some(l) => {
                let (label, name) = fallbacks.label(l);
                (Some(label), name)
            }
            None => (None, None),
        };
        o.treatment = &f.treatment;
        o.label = label;
        o.config = f.config.as_deref();
        o.percentage_split = false;
        o.names.treatment = f.name;
        o.names.label = label_name;
    }

    fn not_ready(
        &self,
        properties: Option<&str>,
        op: &str,
        key: Key<'_>,
        flag: &str,
        attributes: Option<&Arc<Attributes>>,
    ) -> Outcome<'_> {
        log::warn!(
            "{op}: the SDK is not ready, results may be incorrect for feature flag {flag}. Make sure to wait for SDK readiness before using this method"
        );
        let mut o = Outcome::control(&NOT_READY, None);
        self.fallback(flag, &mut o);
        self.record(properties, key, flag, &o, attributes, now_ms());
        o
    }

    /// Records the impression of an evaluation, when it produces one.
    #[inline(always)]
    fn record(
        &self,
        properties: Option<&str>,
        key: Key<'_>,
        flag: &str,
        o: &Outcome<'_>,
        attributes: Option<&Arc<Attributes>>,
        now: i64,
    ) {
        if !o.impression {
            return;
        }
        let inner = &self.inner;
        let (label, label_name) = match o.label.as_deref() {
            Some(Label::NoRuleMatched) if inner.config.default_rule_label => {
                (Some(DEFAULT_RULE), Some(default_rule_name()))
            }
            label => (label.map(Label::as_str), o.names.label),
        };
        inner.recorder.record(
            ImpressionFields {
                key: key.matching_key,
                bucketing_key: key.bucketing_key,
                flag,
                treatment: o.treatment,
                label,
                change_number: o.change_number,
                time: now,
                disabled: o.disabled,
                properties,
            },
            Names {
                label: label_name,
                ..o.names
            },
            attributes,
        );
    }

    fn evaluate_many<S: AsRef<str>, R>(
        &self,
        properties: Option<&str>,
        op: &str,
        key: Key<'_>,
        flags: &[S],
        attributes: AttributesRef<'_>,
        shape: impl Fn(&Outcome<'_>) -> R,
    ) -> Vec<(String, R)> {
        if flags.is_empty() {
            log::warn!("{op}: flag names must be a non-empty array");
            return Vec::new();
        }
        let mut names: Vec<&str> = Vec::with_capacity(flags.len());
        for f in flags {
            if let Some(n) = check_flag_name(op, f.as_ref(), &mut |w| log::warn!("{w}"))
                && !names.contains(&n)
            {
                names.push(n);
            }
        }
        let _in_flight = match self.check_call(op, &key) {
            Ok(g) => g,
            Err(w) => {
                log::warn!("{w}");
                return names
                    .into_iter()
                    .map(|n| (n.to_string(), shape(&self.invalid(n))))
                    .collect();
            }
        };
        let shared = self.listener_attributes(attributes);
        if !self.is_ready() {
            return names
                .into_iter()
                .map(|n| {
                    let o = self.not_ready(properties, op, key, n, shared.as_ref());
                    (n.to_string(), shape(&o))
                })
                .collect();
        }
        let snapshot = self.inner.store.load();
        let now = now_ms();
        names
            .into_iter()
            .map(|n| {
                let mut o =
                    evaluate_guarded(op, &snapshot, key, n, attributes, Snapshot::evaluate_key);
                self.fallback(n, &mut o);
                self.record(properties, key, n, &o, shared.as_ref(), now);
                (n.to_string(), shape(&o))
            })
            .collect()
    }

    fn by_flag_sets<S: AsRef<str>, R>(
        &self,
        properties: Option<&str>,
        op: &str,
        key: Key<'_>,
        sets: &[S],
        attributes: AttributesRef<'_>,
        shape: impl Fn(&Outcome<'_>) -> R,
    ) -> Vec<(String, R)> {
        let mut sets = sanitize_flag_sets(op, sets, &mut |w| log::warn!("{w}"));
        let filter = self.inner.config.flag_sets_filter();
        if !filter.is_empty() {
            sets.retain(|s| {
                let ok = filter.contains(s);
                if !ok {
                    log::warn!("{op}: you passed Flag Set {s} which is not part of the configured FlagSetsFilter, ignoring Flag Set.");
                }
                ok
            });
        }
        let flags: Vec<String> = {
            let snapshot = self.inner.store.load();
            let mut names: Vec<String> = sets
                .iter()
                .flat_map(|s| snapshot.flags_in_set(s).iter().map(|n| n.to_string()))
                .collect();
            names.sort();
            names.dedup();
            names
        };
        if flags.is_empty() {
            return Vec::new();
        }
        self.evaluate_many(properties, op, key, &flags, attributes, shape)
    }
}

/// The evaluation methods of a [`Client`] with [`EvaluationOptions`] applied:
/// [`Client::with_options`]. Cheap to make; holds the checked options for its calls.
#[derive(Debug, Clone)]
pub struct ClientWithOptions<'c> {
    client: &'c Client,
    /// The impression properties as the wire carries them.
    properties: Option<String>,
}

impl ClientWithOptions<'_> {
    /// [`Client::get_treatment`], with these options.
    pub fn get_treatment<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> Treatment {
        self.client.evaluate_op(
            self.properties.as_deref(),
            "get_treatment",
            key.into(),
            flag,
            attributes.into(),
            |o| o.treatment(),
        )
    }

    /// [`Client::get_treatment_with_config`], with these options.
    pub fn get_treatment_with_config<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> TreatmentWithConfig {
        self.client.evaluate_op(
            self.properties.as_deref(),
            "get_treatment_with_config",
            key.into(),
            flag,
            attributes.into(),
            |o| o.with_config(),
        )
    }

    /// [`Client::evaluate`], with these options.
    pub fn evaluate<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> TreatmentDetails {
        self.client.evaluate_op(
            self.properties.as_deref(),
            "evaluate",
            key.into(),
            flag,
            attributes.into(),
            |o| o.details(),
        )
    }

    /// [`Client::get_treatments`], with these options.
    pub fn get_treatments<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, Treatment> {
        self.client
            .evaluate_many(
                self.properties.as_deref(),
                "get_treatments",
                key.into(),
                flags,
                attributes.into(),
                |o| o.treatment(),
            )
            .into_iter()
            .collect()
    }

    /// [`Client::get_treatments_with_config`], with these options.
    pub fn get_treatments_with_config<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.client
            .evaluate_many(
                self.properties.as_deref(),
                "get_treatments_with_config",
                key.into(),
                flags,
                attributes.into(),
                |o| o.with_config(),
            )
            .into_iter()
            .collect()
    }

    /// [`Client::get_treatments_by_flag_set`], with these options.
    pub fn get_treatments_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, Treatment> {
        self.client
            .by_flag_sets(
                self.properties.as_deref(),
                "get_treatments_by_flag_set",
                key.into(),
                &[flag_set],
                attributes.into(),
                |o| o.treatment(),
            )
            .into_iter()
            .collect()
    }

    /// [`Client::get_treatments_by_flag_sets`], with these options.
    pub fn get_treatments_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, Treatment> {
        self.client
            .by_flag_sets(
                self.properties.as_deref(),
                "get_treatments_by_flag_sets",
                key.into(),
                flag_sets,
                attributes.into(),
                |o| o.treatment(),
            )
            .into_iter()
            .collect()
    }

    /// [`Client::get_treatments_with_config_by_flag_set`], with these options.
    pub fn get_treatments_with_config_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.client
            .by_flag_sets(
                self.properties.as_deref(),
                "get_treatments_with_config_by_flag_set",
                key.into(),
                &[flag_set],
                attributes.into(),
                |o| o.with_config(),
            )
            .into_iter()
            .collect()
    }

    /// [`Client::get_treatments_with_config_by_flag_sets`], with these options.
    pub fn get_treatments_with_config_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: impl Into<AttributesRef<'k>>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.client
            .by_flag_sets(
                self.properties.as_deref(),
                "get_treatments_with_config_by_flag_sets",
                key.into(),
                flag_sets,
                attributes.into(),
                |o| o.with_config(),
            )
            .into_iter()
            .collect()
    }
}

static NOT_READY: Label = Label::NotReady;
static EXCEPTION: Label = Label::Exception;

/// What one evaluation decided, borrowing from the snapshot (or the client's fallbacks).
#[derive(Debug, Clone)]
struct Outcome<'a> {
    treatment: &'a str,
    /// `None` for invalid input or a destroyed client; owned only for the fallback label of
    /// a rule's label.
    label: Option<Cow<'a, Label>>,
    config: Option<&'a str>,
    change_number: Option<i64>,
    impression: bool,
    /// The flag has `impressionsDisabled`.
    disabled: bool,
    /// The deciding rule split keys by bucket.
    percentage_split: bool,
    /// The interned names of the flag, treatment and label, where the engine has them.
    names: Names,
}

impl<'a> Outcome<'a> {
    /// Invalid input or a destroyed client: `control`, no label, no impression.
    const INVALID: Outcome<'static> = Outcome {
        treatment: CONTROL,
        label: None,
        config: None,
        change_number: None,
        impression: false,
        disabled: false,
        percentage_split: false,
        names: Names {
            flag: None,
            treatment: None,
            label: None,
        },
    };

    /// `control` with a label, producing an impression.
    fn control(label: &'a Label, change_number: Option<i64>) -> Outcome<'a> {
        Outcome {
            label: Some(Cow::Borrowed(label)),
            change_number,
            impression: true,
            ..Outcome::INVALID
        }
    }

    /// The treatment, without a copy where it is interned.
    fn treatment(&self) -> Treatment {
        match self.names.treatment {
            Some(name) => Treatment::from_static(name.as_str()),
            None if self.treatment == CONTROL => Treatment::from_static(CONTROL),
            None => Treatment::from(self.treatment),
        }
    }

    fn with_config(&self) -> TreatmentWithConfig {
        TreatmentWithConfig {
            treatment: self.treatment(),
            config: self.config.map(str::to_string),
        }
    }

    fn details(&self) -> TreatmentDetails {
        TreatmentDetails {
            treatment: self.treatment(),
            label: self.label.as_deref().cloned(),
            config: self.config.map(str::to_string),
            change_number: self.change_number,
            impression: self.impression,
            percentage_split: self.percentage_split,
        }
    }
}

impl Snapshot {
    fn evaluate_key<'s>(
        &'s self,
        key: Key<'_>,
        flag: &str,
        attributes: AttributesRef<'_>,
    ) -> Evaluation<'s> {
        self.evaluate_ref(key.matching_key, key.bucketing_key, flag, attributes)
    }
}

/// The engine as the client calls it (swappable in tests).
type EvalFn = for<'s> fn(&'s Snapshot, Key<'_>, &str, AttributesRef<'_>) -> Evaluation<'s>;

/// Runs one evaluation at the API boundary: a panic inside becomes `control` with label
/// `exception` (and an impression), an unknown flag a warning and no impression.
#[inline(always)]
fn evaluate_guarded<'s>(
    op: &str,
    snapshot: &'s Snapshot,
    key: Key<'_>,
    flag: &str,
    attributes: AttributesRef<'_>,
    eval: EvalFn,
) -> Outcome<'s> {
    match catch_unwind(AssertUnwindSafe(|| eval(snapshot, key, flag, attributes))) {
        Ok(e) => {
            let impression = *e.label != Label::DefinitionNotFound;
            if !impression {
                log::warn!(
                    "{op}: you passed {flag} that does not exist in this environment, please double check what feature flags exist in the Split user interface."
                );
            } else if *e.label == Label::Exception {
                log::warn!(
                    "{op}: evaluation of {flag} failed (dependency chain deeper than {} or cyclic); returning control",
                    crate::limits::MAX_DEPTH
                );
            }
            Outcome {
                treatment: e.treatment,
                label: Some(Cow::Borrowed(e.label)),
                config: e.config,
                change_number: e.change_number,
                impression,
                disabled: e.impressions_disabled,
                percentage_split: e.percentage_split,
                names: e.names,
            }
        }
        Err(_) => {
            log::error!("{op}: evaluation of {flag} panicked; returning control");
            let change_number = snapshot.flags.get(flag).map(|f| f.change_number);
            Outcome::control(&EXCEPTION, change_number)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_evaluation_answers_control_with_exception() {
        fn boom<'s>(
            _: &'s Snapshot,
            _: Key<'_>,
            _: &str,
            _: AttributesRef<'_>,
        ) -> crate::Evaluation<'s> {
            panic!("injected")
        }
        let snapshot = Snapshot::new();
        let o = evaluate_guarded("t", &snapshot, "k".into(), "f", AttributesRef::NONE, boom);
        assert_eq!(o.treatment, "control");
        assert_eq!(o.label.as_deref(), Some(&Label::Exception));
        assert!(o.impression);
    }
}
