//! Every HTTP request the SDK makes says who it is: `User-Agent: splitkit/<version>`, beside
//! the Split headers, whether it fetches definitions, delivers impressions, counts, unique
//! keys or events, or is an integration's (Segment, webhook).

use std::sync::Arc;
use std::time::Duration;

use splitkit::SDK_VERSION;
use splitkit::integrations::{
    DeliveryOptions, SegmentConfig, SegmentIntegration, WebhookConfig, WebhookIntegration,
};

use crate::server::{SdkBackend, Server, flag, remote};

const WAIT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("splitkit/", env!("CARGO_PKG_VERSION"));

#[test]
fn every_request_carries_the_splitkit_user_agent() {
    let server = Server::start();
    let backend = SdkBackend::new();
    backend.push_flag(flag("f1", 100, &["qa"], Some("beta"), "off"));
    backend.push_segment("beta", 5, &["carol"], &[]);
    backend.install(&server, "/sdk");
    let delivery = DeliveryOptions {
        request_timeout: Duration::from_secs(5),
        ..DeliveryOptions::default()
    };
    let segment = Arc::new(
        SegmentIntegration::new(SegmentConfig {
            endpoint: server.url("/segment"),
            delivery: delivery.clone(),
            ..SegmentConfig::new("writekey")
        })
        .expect("segment config"),
    );
    let webhook = Arc::new(
        WebhookIntegration::new(WebhookConfig {
            delivery,
            ..WebhookConfig::new(server.url("/hooks/split"))
        })
        .expect("webhook config"),
    );
    let client = remote(&server, "ua-key")
        .impression_listener(segment.clone())
        .impression_listener(webhook.clone())
        .build()
        .expect("client");
    client.block_until_ready(WAIT).expect("ready");
    assert_eq!(client.get_treatment("qa", "f1", None), "on");
    assert_eq!(client.get_treatment("carol", "f1", None), "on");
    client
        .track("qa", "user", "checkout", None, None)
        .expect("tracked");
    assert!(client.flush(WAIT));

    let requests = server.requests();
    for path in [
        "/sdk/splitChanges",
        "/sdk/segmentChanges/beta",
        "/events/testImpressions/bulk",
        "/events/events/bulk",
        "/segment/v1/batch",
        "/hooks/split",
    ] {
        assert!(
            requests.iter().any(|r| r.path == path),
            "no request to {path}: {:?}",
            requests.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
    }
    for r in &requests {
        assert_eq!(
            r.header("User-Agent"),
            Some(USER_AGENT),
            "{} {}",
            r.method,
            r.path
        );
        if r.path.starts_with("/sdk/") || r.path.starts_with("/events/") {
            assert_eq!(r.header("SplitSDKVersion"), Some(SDK_VERSION), "{}", r.path);
            assert_eq!(
                r.header("Authorization"),
                Some("Bearer ua-key"),
                "{}",
                r.path
            );
        } else {
            assert_eq!(r.header("SplitSDKVersion"), None, "{}", r.path);
        }
    }
    assert!(client.destroy(WAIT));
}
