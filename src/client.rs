//! The client: the API application code calls.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};
use parking_lot::Mutex;

use crate::config::{Config, Options};
use crate::engine::attributes::Attributes;
use crate::engine::evaluator::CONTROL;
use crate::engine::labels::Label;
use crate::error::Error;
use crate::localhost;
use crate::storage::{FlagView, Snapshot, Store};
use crate::validation::{check_flag_name, check_key, sanitize_flag_sets};

/// The key an evaluation is for: a matching key, and optionally a separate bucketing key.
///
/// Matchers look at the matching key; bucketing hashes the bucketing key (which defaults to
/// the matching key). A `&str` converts into a `Key` with no bucketing key.
///
/// # Examples
/// ```
/// use splitkit::Key;
/// let simple: Key<'_> = "user-1".into();
/// let split = Key::new("user-1", "account-9");
/// assert_eq!(split.bucketing_key, Some("account-9"));
/// assert_eq!(simple.matching_key, "user-1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// The key matchers look at.
    pub matching_key: &'a str,
    /// The key hashed into buckets; `None` uses the matching key.
    pub bucketing_key: Option<&'a str>,
}

impl<'a> Key<'a> {
    /// A key with separate matching and bucketing keys.
    pub fn new(matching_key: &'a str, bucketing_key: &'a str) -> Key<'a> {
        Key {
            matching_key,
            bucketing_key: Some(bucketing_key),
        }
    }
}

impl<'a> From<&'a str> for Key<'a> {
    fn from(k: &'a str) -> Self {
        Key {
            matching_key: k,
            bucketing_key: None,
        }
    }
}

impl<'a> From<&'a String> for Key<'a> {
    fn from(k: &'a String) -> Self {
        Key::from(k.as_str())
    }
}

/// A treatment with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreatmentWithConfig {
    /// The treatment.
    pub treatment: String,
    /// The treatment's configuration (a JSON text), if the flag defines one.
    pub config: Option<String>,
}

/// Everything one client evaluation decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TreatmentDetails {
    /// The treatment.
    pub treatment: String,
    /// Why; `None` only when the input was invalid or the client destroyed (then there is no
    /// impression either).
    pub label: Option<Label>,
    /// The treatment's configuration, if any.
    pub config: Option<String>,
    /// The flag's change number, when the flag exists.
    pub change_number: Option<i64>,
    /// Whether this evaluation produces an impression (every evaluation does except invalid
    /// input, a destroyed client and `definition not found`).
    pub impression: bool,
}

impl TreatmentDetails {
    fn control(label: Option<Label>, impression: bool) -> TreatmentDetails {
        TreatmentDetails {
            treatment: CONTROL.to_string(),
            label,
            config: None,
            change_number: None,
            impression,
        }
    }

    fn with_config(self) -> TreatmentWithConfig {
        TreatmentWithConfig {
            treatment: self.treatment,
            config: self.config,
        }
    }
}

/// Builds a [`Client`]: an SDK key plus options, each with a documented default, validated by
/// [`ClientBuilder::build`].
///
/// # Examples
/// ```
/// let client = splitkit::ClientBuilder::new("localhost")
///     .split_file("examples/flags.yaml")
///     .build()?;
/// client.block_until_ready(std::time::Duration::from_secs(1))?;
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    sdk_key: String,
    options: Options,
    snapshot: Option<Snapshot>,
}

impl ClientBuilder {
    /// A builder for `sdk_key`. The key `"localhost"` selects localhost mode, where flags come
    /// from a local file; it is the only mode of this release.
    pub fn new(sdk_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            sdk_key: sdk_key.into(),
            options: Options::default(),
            snapshot: None,
        }
    }

    /// Localhost flags file: `.json` (splitChanges), `.yaml`/`.yml`, or the legacy
    /// `flag treatment` lines. Default: `~/.split`.
    pub fn split_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.split_file = Some(path.into());
        self
    }

    /// Directory of segmentChanges JSON files for localhost mode. Default: none (every segment
    /// is empty).
    pub fn segment_directory(mut self, path: impl Into<PathBuf>) -> Self {
        self.options.segment_directory = Some(path.into());
        self
    }

    /// Checks the localhost file (and segment directory) for changes at this period and
    /// reloads them; a bad edit keeps the last good definitions and logs the error.
    /// Default: off. Minimum: 10 ms.
    pub fn localhost_refresh_rate(mut self, period: Duration) -> Self {
        self.options.localhost_refresh_rate = Some(period);
        self
    }

    /// Restricts the client to flags in these flag sets (names are trimmed and lower-cased;
    /// invalid names are dropped with a warning). Default: no filter.
    pub fn flag_sets_filter<S: AsRef<str>>(mut self, sets: &[S]) -> Self {
        self.options.flag_sets_filter = Some(sets.iter().map(|s| s.as_ref().to_string()).collect());
        self
    }

    /// Evaluates with these compiled definitions, exactly as given, instead of reading
    /// `split_file` (which is then ignored, and so is `segment_directory`). Useful in tests
    /// and for definitions from a source of your own. Default: none.
    ///
    /// # Examples
    /// ```
    /// let (snapshot, _) = splitkit::Snapshot::from_json(
    ///     r#"{"splits":[{"name":"f","defaultTreatment":"off"}],"since":-1,"till":1}"#, "inline")?;
    /// let client = splitkit::Client::builder("localhost").snapshot(snapshot).build()?;
    /// assert_eq!(client.get_treatment("k", "f", None), "off");
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn snapshot(mut self, snapshot: Snapshot) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// How long [`Client::destroy`] waits when the last handle is dropped. Default: 5 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.options.shutdown_timeout = Some(timeout);
        self
    }

    /// Validates the options, loads the definitions and starts the background work.
    ///
    /// # Errors
    /// [`Error::Config`] naming the option when a value is invalid; [`Error::Io`] or
    /// [`Error::Parse`] naming the file (and line or field) when the localhost file or a
    /// segment file cannot be read or parsed.
    pub fn build(self) -> Result<Client, Error> {
        let given = self.snapshot.is_some();
        let config = self.options.validate(&self.sdk_key, given)?;
        let snapshot = match self.snapshot {
            Some(s) => s,
            None => {
                let (snapshot, problems) = localhost::snapshot(&config)?;
                for p in &problems {
                    log::warn!("{p}");
                }
                snapshot
            }
        };
        let store = Arc::new(Store::new(snapshot));
        let reloader = match config.localhost_refresh_rate() {
            Some(period) if !given => Some(Reloader::start(config.clone(), store.clone(), period)?),
            _ => None,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                store,
                destroyed: AtomicBool::new(false),
                reloader: Mutex::new(reloader),
            }),
        })
    }
}

/// The splitkit client: evaluates flags for keys. Cheap to clone (`Send + Sync`); every clone
/// shares the same definitions and background work.
///
/// Dropping the last handle runs [`Client::destroy`] with the configured shutdown timeout.
///
/// # Examples
/// ```
/// use splitkit::{Attributes, ClientBuilder};
/// let client = ClientBuilder::new("localhost").split_file("examples/flags.yaml").build()?;
/// let attrs = Attributes::new().with("plan", "enterprise");
/// let treatment = client.get_treatment("ann", "new_checkout", Some(&attrs));
/// assert!(["on", "off"].contains(&treatment.as_str()));
/// client.destroy(std::time::Duration::from_secs(1));
/// assert_eq!(client.get_treatment("ann", "new_checkout", None), "control");
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Arc<Store>,
    destroyed: AtomicBool,
    reloader: Mutex<Option<Reloader>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown(self.config.shutdown_timeout);
    }
}

impl Inner {
    fn shutdown(&self, timeout: Duration) -> bool {
        self.destroyed.store(true, Ordering::SeqCst);
        let reloader = self.reloader.lock().take();
        match reloader {
            Some(r) => r.stop(timeout),
            None => true,
        }
    }
}

impl Client {
    /// A builder; same as [`ClientBuilder::new`].
    pub fn builder(sdk_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(sdk_key)
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Waits until the client has definitions to evaluate with.
    ///
    /// In localhost mode the definitions are loaded by [`ClientBuilder::build`], so this
    /// returns at once.
    ///
    /// # Errors
    /// [`Error::Destroyed`] after [`Client::destroy`].
    pub fn block_until_ready(&self, _timeout: Duration) -> Result<(), Error> {
        if self.inner.destroyed.load(Ordering::Acquire) {
            return Err(Error::Destroyed);
        }
        Ok(())
    }

    /// Stops the client: later evaluations answer `control`, background work is stopped and
    /// joined within `timeout`. Idempotent. Returns false when background work did not
    /// finish in time.
    pub fn destroy(&self, timeout: Duration) -> bool {
        self.inner.shutdown(timeout)
    }

    /// True after [`Client::destroy`].
    pub fn is_destroyed(&self) -> bool {
        self.inner.destroyed.load(Ordering::Acquire)
    }

    /// The treatment of `flag` for `key`.
    ///
    /// Invalid input, a destroyed client, an unknown flag or an internal failure give
    /// `"control"` (with a logged warning naming the problem); this never panics.
    pub fn get_treatment<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: Option<&Attributes>,
    ) -> String {
        self.evaluate_op("get_treatment", key.into(), flag, attributes)
            .treatment
    }

    /// The treatment of `flag` for `key`, with its configuration.
    pub fn get_treatment_with_config<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag: &str,
        attributes: Option<&Attributes>,
    ) -> TreatmentWithConfig {
        self.evaluate_op("get_treatment_with_config", key.into(), flag, attributes)
            .with_config()
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
        attributes: Option<&Attributes>,
    ) -> TreatmentDetails {
        self.evaluate_op("evaluate", key.into(), flag, attributes)
    }

    /// Treatments of several flags for `key`: flag name to treatment. Invalid and duplicate
    /// names are dropped (with a warning).
    pub fn get_treatments<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, String> {
        self.evaluate_many("get_treatments", key.into(), flags, attributes)
            .into_iter()
            .map(|(f, d)| (f, d.treatment))
            .collect()
    }

    /// [`Client::get_treatments`] with configurations.
    pub fn get_treatments_with_config<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flags: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.evaluate_many("get_treatments_with_config", key.into(), flags, attributes)
            .into_iter()
            .map(|(f, d)| (f, d.with_config()))
            .collect()
    }

    /// Treatments of every flag in a flag set.
    pub fn get_treatments_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: Option<&Attributes>,
    ) -> HashMap<String, String> {
        self.by_flag_sets(
            "get_treatments_by_flag_set",
            key.into(),
            &[flag_set],
            attributes,
        )
        .into_iter()
        .map(|(f, d)| (f, d.treatment))
        .collect()
    }

    /// Treatments of every flag in any of the flag sets.
    pub fn get_treatments_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, String> {
        self.by_flag_sets(
            "get_treatments_by_flag_sets",
            key.into(),
            flag_sets,
            attributes,
        )
        .into_iter()
        .map(|(f, d)| (f, d.treatment))
        .collect()
    }

    /// [`Client::get_treatments_by_flag_set`] with configurations.
    pub fn get_treatments_with_config_by_flag_set<'k>(
        &self,
        key: impl Into<Key<'k>>,
        flag_set: &str,
        attributes: Option<&Attributes>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.by_flag_sets(
            "get_treatments_with_config_by_flag_set",
            key.into(),
            &[flag_set],
            attributes,
        )
        .into_iter()
        .map(|(f, d)| (f, d.with_config()))
        .collect()
    }

    /// [`Client::get_treatments_by_flag_sets`] with configurations.
    pub fn get_treatments_with_config_by_flag_sets<'k, S: AsRef<str>>(
        &self,
        key: impl Into<Key<'k>>,
        flag_sets: &[S],
        attributes: Option<&Attributes>,
    ) -> HashMap<String, TreatmentWithConfig> {
        self.by_flag_sets(
            "get_treatments_with_config_by_flag_sets",
            key.into(),
            flag_sets,
            attributes,
        )
        .into_iter()
        .map(|(f, d)| (f, d.with_config()))
        .collect()
    }

    /// A view of the loaded definitions.
    pub fn manager(&self) -> Manager {
        Manager {
            store: self.inner.store.clone(),
        }
    }

    /// Checks the client and the key; `Err` holds the warning to log.
    fn check_call(&self, op: &str, key: &Key<'_>) -> Result<(), String> {
        if self.is_destroyed() {
            return Err(format!(
                "{op}: client has already been destroyed - no calls possible"
            ));
        }
        let name = if key.bucketing_key.is_some() {
            "matching_key"
        } else {
            "key"
        };
        check_key(op, name, key.matching_key)?;
        if let Some(b) = key.bucketing_key {
            check_key(op, "bucketing_key", b)?;
        }
        Ok(())
    }

    fn evaluate_op(
        &self,
        op: &str,
        key: Key<'_>,
        flag: &str,
        attributes: Option<&Attributes>,
    ) -> TreatmentDetails {
        if let Err(w) = self.check_call(op, &key) {
            log::warn!("{w}");
            return TreatmentDetails::control(None, false);
        }
        let Some(flag) = check_flag_name(op, flag, &mut |w| log::warn!("{w}")) else {
            return TreatmentDetails::control(None, false);
        };
        let snapshot = self.inner.store.load();
        evaluate_guarded(
            op,
            &snapshot,
            key,
            flag,
            attributes,
            Snapshot::evaluate_owned,
        )
    }

    fn evaluate_many<S: AsRef<str>>(
        &self,
        op: &str,
        key: Key<'_>,
        flags: &[S],
        attributes: Option<&Attributes>,
    ) -> Vec<(String, TreatmentDetails)> {
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
        if let Err(w) = self.check_call(op, &key) {
            log::warn!("{w}");
            return names
                .into_iter()
                .map(|n| (n.to_string(), TreatmentDetails::control(None, false)))
                .collect();
        }
        let snapshot = self.inner.store.load();
        names
            .into_iter()
            .map(|n| {
                let d =
                    evaluate_guarded(op, &snapshot, key, n, attributes, Snapshot::evaluate_owned);
                (n.to_string(), d)
            })
            .collect()
    }

    fn by_flag_sets<S: AsRef<str>>(
        &self,
        op: &str,
        key: Key<'_>,
        sets: &[S],
        attributes: Option<&Attributes>,
    ) -> Vec<(String, TreatmentDetails)> {
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
        self.evaluate_many(op, key, &flags, attributes)
    }
}

impl Snapshot {
    fn evaluate_owned(
        &self,
        key: Key<'_>,
        flag: &str,
        attributes: &Attributes,
    ) -> crate::EvaluationResult {
        self.evaluate(key.matching_key, key.bucketing_key, flag, attributes)
            .to_owned()
    }
}

/// Runs one evaluation at the API boundary: a panic inside becomes `control` with label
/// `exception` (and an impression), an unknown flag a warning and no impression.
fn evaluate_guarded(
    op: &str,
    snapshot: &Snapshot,
    key: Key<'_>,
    flag: &str,
    attributes: Option<&Attributes>,
    eval: fn(&Snapshot, Key<'_>, &str, &Attributes) -> crate::EvaluationResult,
) -> TreatmentDetails {
    static NO_ATTRIBUTES: std::sync::LazyLock<Attributes> =
        std::sync::LazyLock::new(Attributes::new);
    let attributes = attributes.unwrap_or(&NO_ATTRIBUTES);
    match catch_unwind(AssertUnwindSafe(|| eval(snapshot, key, flag, attributes))) {
        Ok(e) => {
            let impression = e.label != Label::DefinitionNotFound;
            if !impression {
                log::warn!(
                    "{op}: you passed {flag} that does not exist in this environment, please double check what feature flags exist in the Split user interface."
                );
            } else if e.label == Label::Exception {
                log::warn!(
                    "{op}: evaluation of {flag} failed (dependency chain deeper than {} or cyclic); returning control",
                    crate::MAX_DEPTH
                );
            }
            TreatmentDetails {
                treatment: e.treatment,
                label: Some(e.label),
                config: e.config,
                change_number: e.change_number,
                impression,
            }
        }
        Err(_) => {
            log::error!("{op}: evaluation of {flag} panicked; returning control");
            let change_number = snapshot.flags.get(flag).map(|f| f.change_number);
            TreatmentDetails {
                change_number,
                ..TreatmentDetails::control(Some(Label::Exception), true)
            }
        }
    }
}

/// A read-only view of the client's loaded definitions.
///
/// # Examples
/// ```
/// let client = splitkit::Client::builder("localhost").split_file("examples/flags.yaml").build()?;
/// let names = client.manager().flag_names();
/// assert!(names.contains(&"new_checkout".to_string()));
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Manager {
    store: Arc<Store>,
}

impl Manager {
    /// Names of the loaded flags, sorted.
    pub fn flag_names(&self) -> Vec<String> {
        self.store.load().flag_names()
    }

    /// A view of one flag.
    pub fn flag(&self, name: &str) -> Option<FlagView> {
        self.store.load().flag(name)
    }

    /// Views of all flags, sorted by name.
    pub fn flags(&self) -> Vec<FlagView> {
        self.store.load().flags()
    }
}

/// The localhost reload thread.
#[derive(Debug)]
struct Reloader {
    stop: Sender<()>,
    done: Receiver<()>,
    handle: JoinHandle<()>,
}

impl Reloader {
    fn start(config: Config, store: Arc<Store>, period: Duration) -> Result<Reloader, Error> {
        let (stop, stop_rx) = bounded::<()>(1);
        let (done_tx, done) = bounded::<()>(1);
        let mut last = localhost::fingerprint(&config);
        let handle = std::thread::Builder::new()
            .name("splitkit-localhost".into())
            .spawn(move || {
                let ticker = tick(period);
                loop {
                    select! {
                        recv(stop_rx) -> _ => break,
                        recv(ticker) -> _ => {
                            let now = localhost::fingerprint(&config);
                            if now == last {
                                continue;
                            }
                            last = now;
                            match localhost::snapshot(&config) {
                                Ok((snapshot, problems)) => {
                                    for p in &problems {
                                        log::warn!("{p}");
                                    }
                                    store.replace(snapshot);
                                    log::info!("reloaded {}", config.split_file().display());
                                }
                                Err(e) => log::error!("localhost reload failed, keeping the last good definitions: {e}"),
                            }
                        }
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|source| Error::Io {
                path: PathBuf::from("<thread splitkit-localhost>"),
                source,
            })?;
        Ok(Reloader { stop, done, handle })
    }

    fn stop(self, timeout: Duration) -> bool {
        let _ = self.stop.try_send(());
        if self.done.recv_timeout(timeout).is_err() {
            log::warn!("splitkit-localhost did not stop within {timeout:?}");
            return false;
        }
        if self.handle.join().is_err() {
            log::error!("splitkit-localhost panicked");
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_evaluation_answers_control_with_exception() {
        fn boom(_: &Snapshot, _: Key<'_>, _: &str, _: &Attributes) -> crate::EvaluationResult {
            panic!("injected")
        }
        let d = evaluate_guarded("t", &Snapshot::new(), "k".into(), "f", None, boom);
        assert_eq!(d.treatment, "control");
        assert_eq!(d.label, Some(Label::Exception));
        assert!(d.impression);
    }
}
