//! Tracking: the key, the traffic type (the context's or the provider's), the value and the
//! properties of an event, and what is refused.

use std::time::Duration;

use open_feature::{EvaluationContext, EvaluationErrorCode};
use serde_json::Value;
use splitkit::Properties;
use splitkit_openfeature::{SplitProvider, TrackingEventDetails};

use crate::common::{code, constant, exact, user};
use crate::server::Server;

#[test]
fn events_carry_the_key_traffic_type_value_and_properties() {
    let server = Server::start();
    let client = exact(&[constant("f", "on", None)])
        .events_url(server.url("/events"))
        .events_push_rate(Duration::from_secs(3600))
        .build()
        .expect("a client");
    let provider = SplitProvider::new(client.clone());
    let tracker = provider.tracker();

    // The provider's traffic type (default `user`), no details.
    provider
        .track("viewed", &user("ann"), None)
        .expect("tracked");
    // The context's traffic type; a value and properties.
    let details = TrackingEventDetails {
        value: Some(3.0),
        properties: Properties::new().with("items", 2).with("gift", true),
    };
    let account = user("acme").with_custom_field("trafficType", "account");
    tracker
        .track("purchase", &account, Some(&details))
        .expect("tracked");
    // A blank traffic type field falls back to the provider's.
    let blank = user("bob").with_custom_field("trafficType", " ");
    tracker.track("viewed", &blank, None).expect("tracked");

    assert!(client.flush(Duration::from_secs(5)));
    let events: Vec<Value> = server
        .requests_to("/events/events/bulk")
        .iter()
        .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
        .collect();
    let summary: Vec<(String, String, String, Value, Value)> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (
                s("key"),
                s("trafficTypeName"),
                s("eventTypeId"),
                e["value"].clone(),
                e["properties"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "ann".into(),
                "user".into(),
                "viewed".into(),
                Value::Null,
                Value::Null
            ),
            (
                "acme".into(),
                "account".into(),
                "purchase".into(),
                3.0.into(),
                serde_json::json!({"gift": true, "items": 2})
            ),
            (
                "bob".into(),
                "user".into(),
                "viewed".into(),
                Value::Null,
                Value::Null
            ),
        ]
    );
    drop(provider);
    assert!(client.is_destroyed());
}

#[test]
fn tracking_without_a_key_or_with_a_bad_event_is_refused() {
    let client = exact(&[constant("f", "on", None)])
        .build()
        .expect("a client");
    let provider = SplitProvider::new(client.clone());
    assert_eq!(
        code(provider.track("viewed", &EvaluationContext::default(), None)),
        EvaluationErrorCode::TargetingKeyMissing
    );
    let numeric = user("ann").with_custom_field("trafficType", 5);
    assert_eq!(
        code(provider.track("viewed", &numeric, None)),
        EvaluationErrorCode::InvalidContext
    );
    let refused = provider.track("not an event type!", &user("ann"), None);
    let e = refused.expect_err("refused");
    assert_eq!(e.code, EvaluationErrorCode::General("invalid event".into()));
    assert!(
        e.message.as_deref().unwrap_or_default().contains("event"),
        "{e:?}"
    );
    assert_eq!(client.stats().events.tracked, 0);
    assert_eq!(client.stats().events.rejected, 1);
}
