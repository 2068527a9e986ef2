//! Tracking: OpenFeature's `track(event, context, details)` as a splitkit event.

use std::sync::Arc;

use open_feature::{EvaluationContext, EvaluationResult};
use splitkit::{Client, Properties};

use crate::{context, error};

/// What a tracked event carries besides its type: a value and properties (OpenFeature's
/// tracking event details).
///
/// # Examples
/// ```
/// use splitkit::Properties;
/// use splitkit_openfeature::TrackingEventDetails;
/// let details = TrackingEventDetails {
///     value: Some(42.5),
///     properties: Properties::new().with("plan", "pro").with("items", 3),
/// };
/// # let _ = details;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackingEventDetails {
    /// The event's value (a price, a duration...), if it has one.
    pub value: Option<f64>,
    /// The event's properties: strings, numbers, booleans or null.
    pub properties: Properties,
}

/// Tracks events through a provider's client: [`SplitProvider::tracker`](crate::SplitProvider::tracker).
///
/// Cheap to clone; it does not keep the client from being destroyed when the provider goes.
///
/// # Examples
/// ```
/// use open_feature::EvaluationContext;
/// use splitkit_openfeature::{SplitProvider, TrackingEventDetails};
///
/// let client = splitkit::Client::builder("localhost")
///     .split_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flags.json"))
///     .build()?;
/// let provider = SplitProvider::new(client);
/// let tracker = provider.tracker();
/// let context = EvaluationContext::default().with_targeting_key("user-42");
/// let details = TrackingEventDetails { value: Some(19.9), ..Default::default() };
/// assert!(tracker.track("checkout", &context, Some(&details)).is_ok());
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SplitTracker {
    client: Client,
    traffic_type: Arc<str>,
}

impl SplitTracker {
    pub(crate) fn new(client: Client, traffic_type: String) -> SplitTracker {
        SplitTracker {
            client,
            traffic_type: traffic_type.into(),
        }
    }

    /// Records that the context's targeting key did `event_type`, now ([`Client::track`]):
    /// the traffic type is the context's
    /// [`TRAFFIC_TYPE_FIELD`](crate::TRAFFIC_TYPE_FIELD) when it is a non-blank string, else
    /// the provider's ([`SplitProviderBuilder::traffic_type`](crate::SplitProviderBuilder::traffic_type));
    /// value and properties come from `details`. The event is queued without blocking and
    /// delivered by the client.
    ///
    /// # Errors
    /// `TARGETING_KEY_MISSING` without a targeting key; `INVALID_CONTEXT` when the traffic
    /// type field is not a string; `PROVIDER_NOT_READY` once the client is destroyed;
    /// `General("invalid event")` when splitkit refuses the event (the message says which
    /// rule: event type, traffic type, value, properties size).
    pub fn track(
        &self,
        event_type: &str,
        context: &EvaluationContext,
        details: Option<&TrackingEventDetails>,
    ) -> EvaluationResult<()> {
        let key = context::targeting_key(context)?;
        let traffic_type = context::traffic_type(context, &self.traffic_type)?;
        let value = details.and_then(|d| d.value);
        let properties = details.map(|d| &d.properties).filter(|p| !p.is_empty());
        self.client
            .track(key, traffic_type, event_type, value, properties)
            .map_err(|e| match e {
                splitkit::Error::Destroyed => {
                    error::not_ready("the splitkit client has been destroyed".into())
                }
                other => error::general("invalid event", other.to_string()),
            })
    }
}
