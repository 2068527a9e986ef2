//! Initialization waits for readiness (bounded), the status follows the client, and
//! shutdown, or dropping the provider, destroys the client after delivering what it queued.

use std::time::{Duration, Instant};

use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{EvaluationContext, EvaluationErrorCode};
use splitkit::{Client, Properties};
use splitkit_openfeature::{SplitProvider, TrackingEventDetails};

use crate::common::{api, code, constant, exact, user};
use crate::server::{Server, bulk_items, eventually, not_ready_until_opened, remote};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn set_provider_waits_until_the_client_is_ready() {
    let server = Server::start();
    let gate = not_ready_until_opened(&server);
    let client = remote(&server, "sdk-key").build().expect("a client");
    assert!(!client.is_ready());
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            gate.open();
        })
    };
    let started = Instant::now();
    let (_api, of) = api(SplitProvider::builder(client.clone())
        .ready_timeout(WAIT)
        .build())
    .await;
    let waited = started.elapsed();
    opener.join().expect("the opener");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < WAIT, "{waited:?}");
    assert!(client.is_ready());
    // Flag `f` of the test backend: `on` for key `a`.
    assert_eq!(
        of.get_bool_value("f", Some(&user("a")), None).await,
        Ok(true)
    );
    assert_eq!(
        of.get_bool_value("f", Some(&user("b")), None).await,
        Ok(false)
    );
}

#[tokio::test]
async fn a_client_not_ready_in_time_is_an_error_until_it_is_ready() {
    let server = Server::start();
    let gate = not_ready_until_opened(&server);
    let client = remote(&server, "sdk-key").build().expect("a client");
    let mut provider = SplitProvider::builder(client.clone())
        .ready_timeout(Duration::from_millis(200))
        .build();
    assert_eq!(provider.status(), ProviderStatus::NotReady);
    let started = Instant::now();
    provider.initialize(&EvaluationContext::default()).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(provider.status(), ProviderStatus::Error);
    assert_eq!(
        code(provider.resolve_bool_value("f", &user("a")).await),
        EvaluationErrorCode::ProviderNotReady
    );

    // Through the SDK: the same error, and the caller's default.
    let (_api, of) = api(provider).await;
    let r = of.get_bool_value("f", Some(&user("a")), None).await;
    assert_eq!(code(r.clone()), EvaluationErrorCode::ProviderNotReady);
    assert!(!r.unwrap_or(false));

    // The client keeps loading; once it is ready, so is the provider.
    gate.open();
    assert!(eventually(WAIT, || client.is_ready()));
    assert_eq!(
        of.get_bool_value("f", Some(&user("a")), None).await,
        Ok(true)
    );
}

#[tokio::test]
async fn the_status_follows_the_client_and_shutdown_ends_it() {
    let client = exact(&[constant("f", "on", None)])
        .build()
        .expect("a client");
    let mut provider = SplitProvider::new(client.clone());
    provider.initialize(&EvaluationContext::default()).await;
    assert_eq!(provider.status(), ProviderStatus::Ready);
    assert_eq!(provider.metadata().name, "Split");
    assert!(provider.shutdown());
    assert!(client.is_destroyed());
    assert_eq!(provider.status(), ProviderStatus::NotReady);
    assert_eq!(
        code(provider.resolve_bool_value("f", &user("k")).await),
        EvaluationErrorCode::ProviderNotReady
    );
    assert!(provider.shutdown(), "idempotent");
}

/// A localhost client on `f` (always `on`) and `g` (always `blue`) delivering impressions and
/// events to `server`, with periodic sends far off: only shutdown sends.
fn delivering(server: &Server) -> Client {
    exact(&[constant("f", "on", None), constant("g", "blue", None)])
        .events_url(server.url("/events"))
        .telemetry_url(server.url("/telemetry"))
        .events_push_rate(Duration::from_secs(3600))
        .impressions_refresh_rate(Duration::from_secs(3600))
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .expect("a client")
}

#[tokio::test]
async fn shutting_the_sdk_down_delivers_impressions_and_events() {
    let server = Server::start();
    let client = delivering(&server);
    let provider = SplitProvider::builder(client.clone())
        .traffic_type("account")
        .build();
    let tracker = provider.tracker();
    let (mut api, of) = api(provider).await;
    assert_eq!(
        of.get_bool_value("f", Some(&user("ann")), None).await,
        Ok(true)
    );
    assert_eq!(
        of.get_string_value("g", Some(&user("bob")), None).await,
        Ok("blue".to_string())
    );
    let details = TrackingEventDetails {
        value: Some(9.5),
        properties: Properties::new().with("plan", "pro"),
    };
    tracker
        .track("checkout", &user("ann"), Some(&details))
        .expect("tracked");
    assert!(
        server.requests_to("/events/").is_empty(),
        "nothing sent yet"
    );

    api.shutdown().await; // drops the provider
    assert!(client.is_destroyed());
    let impressions: Vec<(String, String)> = server
        .requests_to("/events/testImpressions/bulk")
        .iter()
        .flat_map(bulk_items)
        .map(|(f, i)| (f, i["k"].as_str().unwrap_or_default().to_string()))
        .collect();
    assert_eq!(
        impressions,
        vec![
            ("f".to_string(), "ann".to_string()),
            ("g".to_string(), "bob".to_string())
        ]
    );
    let events: Vec<serde_json::Value> = server
        .requests_to("/events/events/bulk")
        .iter()
        .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (
            &e["key"],
            &e["trafficTypeName"],
            &e["eventTypeId"],
            &e["value"]
        ),
        (
            &"ann".into(),
            &"account".into(),
            &"checkout".into(),
            &9.5.into()
        )
    );
    assert_eq!(e["properties"]["plan"], "pro");
    assert_eq!(
        code(tracker.track("late", &user("ann"), None)),
        EvaluationErrorCode::ProviderNotReady
    );
}

#[tokio::test]
async fn replacing_the_provider_destroys_the_old_client() {
    let server = Server::start();
    let first = delivering(&server);
    let (mut api, of) = api(SplitProvider::new(first.clone())).await;
    assert_eq!(
        of.get_bool_value("f", Some(&user("ann")), None).await,
        Ok(true)
    );
    let second = exact(&[constant("f", "off", None)])
        .build()
        .expect("a client");
    api.set_provider(SplitProvider::new(second.clone())).await;
    assert!(first.is_destroyed());
    assert_eq!(
        server.requests_to("/events/testImpressions/bulk").len(),
        1,
        "the old client delivered its impression"
    );
    assert_eq!(
        of.get_bool_value("f", Some(&user("ann")), None).await,
        Ok(false)
    );
    assert!(!second.is_destroyed());
}
