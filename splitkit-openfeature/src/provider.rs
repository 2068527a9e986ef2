//! The provider: a splitkit client behind OpenFeature's `FeatureProvider`.

use std::time::Duration;

use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{EvaluationContext, EvaluationError, EvaluationResult, StructValue};
use splitkit::Client;

use crate::tracking::{SplitTracker, TrackingEventDetails};
use crate::{context, error, resolve};

/// The provider's name in OpenFeature ([`ProviderMetadata`]), as the official providers name
/// themselves.
pub const PROVIDER_NAME: &str = "Split";

/// How long [`FeatureProvider::initialize`] waits for the client to be ready unless
/// [`SplitProviderBuilder::ready_timeout`] says otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The traffic type of tracked events whose context names none, unless
/// [`SplitProviderBuilder::traffic_type`] says otherwise (as the official JavaScript
/// provider does).
pub const DEFAULT_TRAFFIC_TYPE: &str = "user";

/// An OpenFeature provider backed by a splitkit [`Client`].
///
/// Every resolution is one [`Client::evaluate`]: the targeting key is the matching key, the
/// context's [`BUCKETING_KEY_FIELD`](crate::BUCKETING_KEY_FIELD) the bucketing key and the
/// other fields the [attributes](crate::attributes); the treatment is the variant and the
/// label gives the reason (see the [crate documentation](crate) for the tables). Each
/// evaluation records its impression, as `get_treatment` does.
///
/// The provider owns the client's lifecycle: [`FeatureProvider::initialize`] waits for it to
/// be ready, [`FeatureProvider::status`] follows its readiness, and [`SplitProvider::shutdown`]
/// or dropping the provider destroys it (delivering what is queued first). OpenFeature's
/// `shutdown` drops the providers it holds, so it destroys the client too.
///
/// # Examples
/// ```
/// use open_feature::{EvaluationContext, OpenFeature};
/// use splitkit_openfeature::SplitProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = splitkit::Client::builder("localhost")
///     .split_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flags.json"))
///     .build()?;
/// let mut api = OpenFeature::default();
/// api.set_provider(SplitProvider::new(client)).await;
///
/// let features = api.create_client();
/// let context = EvaluationContext::default().with_targeting_key("qa_alice");
/// // An error (an unknown flag, a treatment that is not a boolean...) gives the default.
/// let on = features.get_bool_value("new_checkout", Some(&context), None).await.unwrap_or(false);
/// assert!(on);
/// api.shutdown().await; // destroys the splitkit client
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SplitProvider {
    client: Client,
    metadata: ProviderMetadata,
    tracker: SplitTracker,
    ready_timeout: Duration,
    shutdown_timeout: Duration,
    /// Whether [`FeatureProvider::initialize`] found the client not ready in time (why is
    /// logged).
    init_failed: bool,
}

/// Builds a [`SplitProvider`]: [`SplitProvider::builder`].
#[derive(Debug)]
pub struct SplitProviderBuilder {
    client: Client,
    ready_timeout: Duration,
    shutdown_timeout: Duration,
    traffic_type: String,
}

impl SplitProviderBuilder {
    /// A builder for a provider on `client`, with the defaults.
    pub fn new(client: Client) -> SplitProviderBuilder {
        SplitProviderBuilder {
            ready_timeout: DEFAULT_READY_TIMEOUT,
            shutdown_timeout: client.config().shutdown_timeout(),
            traffic_type: DEFAULT_TRAFFIC_TYPE.to_string(),
            client,
        }
    }

    /// How long [`FeatureProvider::initialize`] waits for the client to be ready. Default
    /// [`DEFAULT_READY_TIMEOUT`]. A client not ready by then keeps loading in the background;
    /// the provider's status is `Error` until it is ready, and resolutions answer
    /// `PROVIDER_NOT_READY`.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long shutdown (and drop) gives the client to deliver what is queued. Default: the
    /// client's own [`shutdown_timeout`](splitkit::ClientBuilder::shutdown_timeout).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The traffic type of tracked events whose context has no
    /// [`TRAFFIC_TYPE_FIELD`](crate::TRAFFIC_TYPE_FIELD). Default [`DEFAULT_TRAFFIC_TYPE`].
    pub fn traffic_type(mut self, traffic_type: impl Into<String>) -> Self {
        self.traffic_type = traffic_type.into();
        self
    }

    /// The provider.
    pub fn build(self) -> SplitProvider {
        SplitProvider {
            metadata: ProviderMetadata::new(PROVIDER_NAME),
            tracker: SplitTracker::new(self.client.clone(), self.traffic_type),
            client: self.client,
            ready_timeout: self.ready_timeout,
            shutdown_timeout: self.shutdown_timeout,
            init_failed: false,
        }
    }
}

impl SplitProvider {
    /// A provider on `client` with the defaults.
    pub fn new(client: Client) -> SplitProvider {
        SplitProviderBuilder::new(client).build()
    }

    /// A builder for a provider on `client`; same as [`SplitProviderBuilder::new`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// # let client = splitkit::Client::builder("localhost")
    /// #     .split_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flags.json")).build()?;
    /// let provider = splitkit_openfeature::SplitProvider::builder(client)
    ///     .ready_timeout(Duration::from_secs(3))
    ///     .traffic_type("account")
    ///     .build();
    /// # drop(provider);
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn builder(client: Client) -> SplitProviderBuilder {
        SplitProviderBuilder::new(client)
    }

    /// The splitkit client behind the provider.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A handle that tracks events through this provider's client, with its traffic type.
    /// Keep one before handing the provider to OpenFeature, which takes it by value (the
    /// SDK 0.3 has no tracking API of its own yet). Once the provider is dropped, the client
    /// is destroyed and tracking answers `PROVIDER_NOT_READY`.
    pub fn tracker(&self) -> SplitTracker {
        self.tracker.clone()
    }

    /// Records that the context's targeting key did `event_type`: [`SplitTracker::track`].
    ///
    /// # Errors
    /// As [`SplitTracker::track`].
    pub fn track(
        &self,
        event_type: &str,
        context: &EvaluationContext,
        details: Option<&TrackingEventDetails>,
    ) -> EvaluationResult<()> {
        self.tracker.track(event_type, context, details)
    }

    /// Destroys the client: what is queued (impressions, events) is delivered within the
    /// shutdown timeout, then its background threads stop. Returns false when something
    /// could not be delivered in time ([`Client::destroy`]). Idempotent; dropping the
    /// provider does the same.
    pub fn shutdown(&self) -> bool {
        self.client.destroy(self.shutdown_timeout)
    }

    /// One resolution: the key and attributes from the context, the evaluation, the reason
    /// from the label, then `value` reads the treatment (and its configuration).
    fn resolve<T>(
        &self,
        flag: &str,
        context: &EvaluationContext,
        value: impl FnOnce(&str, Option<&str>) -> Result<T, EvaluationError>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let key = context::key(context)?;
        let attributes = context::attributes(context);
        let details = if attributes.is_empty() {
            self.client.evaluate(key, flag, None)
        } else {
            self.client.evaluate(key, flag, Some(&attributes))
        };
        let Some(label) = &details.label else {
            return Err(self.refused(flag));
        };
        let reason = resolve::reason(flag, label, &details)?;
        let value = value(&details.treatment, details.config.as_deref())?;
        Ok(ResolutionDetails {
            value,
            reason: Some(reason),
            flag_metadata: Some(resolve::metadata(
                label,
                details.change_number,
                details.config,
            )),
            variant: Some(details.treatment.into()),
        })
    }

    /// Why the client answered without a label: destroyed, or it refused the input.
    fn refused(&self, flag: &str) -> EvaluationError {
        if self.client.is_destroyed() {
            error::not_ready("the splitkit client has been destroyed".into())
        } else if flag.trim().is_empty() {
            error::flag_not_found(flag)
        } else {
            error::invalid_context(format!(
                "flag {flag}: splitkit refused the key (keys have at most {} characters)",
                splitkit::limits::MAX_KEY_LENGTH
            ))
        }
    }

    /// Waits for readiness on a thread of its own, so that the caller's executor is not
    /// blocked; the result comes back through a one-shot channel.
    async fn wait_until_ready(&self) -> Result<(), splitkit::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let client = self.client.clone();
        let timeout = self.ready_timeout;
        let spawned = std::thread::Builder::new()
            .name("splitkit-openfeature-ready".into())
            .spawn(move || {
                let _ = tx.send(client.block_until_ready(timeout));
            });
        match spawned {
            Ok(thread) => {
                let result = rx.await;
                // The thread has sent (or failed to): it is ending.
                if thread.join().is_err() {
                    log::warn!("the thread waiting for readiness panicked");
                }
                result.unwrap_or_else(|_| self.client.block_until_ready(Duration::ZERO))
            }
            Err(e) => {
                log::warn!("cannot start a thread to wait for readiness ({e}); waiting here");
                self.client.block_until_ready(self.ready_timeout)
            }
        }
    }
}

impl Drop for SplitProvider {
    /// Destroys the client with the shutdown timeout (blocking the dropping thread until what
    /// is queued is delivered, or the timeout passes).
    fn drop(&mut self) {
        if !self.client.is_destroyed() {
            self.shutdown();
        }
    }
}

#[open_feature::async_trait]
impl FeatureProvider for SplitProvider {
    /// Waits until the client has definitions, at most the
    /// [ready timeout](SplitProviderBuilder::ready_timeout) (at once in localhost mode).
    /// The wait runs on a thread of its own, so the executor is free meanwhile.
    async fn initialize(&mut self, _context: &EvaluationContext) {
        if self.client.is_ready() {
            self.init_failed = false;
            return;
        }
        match self.wait_until_ready().await {
            Ok(()) => self.init_failed = false,
            Err(e) => {
                log::warn!("the Split provider is not ready: {e}");
                self.init_failed = true;
            }
        }
    }

    /// `Ready` while the client is ready; `Error` when initialization found it not ready in
    /// time (until it becomes ready, as it keeps loading); `NotReady` before that, and
    /// once the client is destroyed.
    fn status(&self) -> ProviderStatus {
        if self.client.is_destroyed() {
            ProviderStatus::NotReady
        } else if self.client.is_ready() {
            ProviderStatus::Ready
        } else if self.init_failed {
            ProviderStatus::Error
        } else {
            ProviderStatus::NotReady
        }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, evaluation_context, |t, _| {
            resolve::boolean(flag_key, t)
        })
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(flag_key, evaluation_context, |t, _| {
            resolve::integer(flag_key, t)
        })
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, evaluation_context, |t, _| {
            resolve::float(flag_key, t)
        })
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, evaluation_context, |t, _| Ok(t.to_string()))
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, evaluation_context, |t, config| {
            resolve::structure(flag_key, t, config)
        })
    }
}
