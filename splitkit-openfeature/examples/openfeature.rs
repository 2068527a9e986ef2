//! OpenFeature with splitkit: the provider on the repository's `examples/flags.json`
//! (localhost mode), a few users evaluated through the SDK's client with the reason and label
//! of each answer, a structure from a treatment's configuration, an event tracked, and
//! shutdown.
//!
//! Run it with `cargo run -p splitkit-openfeature --example openfeature`.

use open_feature::{EvaluationContext, FlagMetadataValue, OpenFeature, StructValue};
use splitkit::Properties;
use splitkit_openfeature::{METADATA_LABEL, SplitProvider, TrackingEventDetails};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), splitkit::Error> {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    // "localhost" mode reads definitions from a file instead of Split's servers.
    let client = splitkit::Client::builder("localhost")
        .split_file(format!("{examples}/flags.json"))
        .segment_directory(format!("{examples}/segments"))
        .build()?;
    let provider = SplitProvider::new(client);
    let tracker = provider.tracker();

    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(provider).await; // waits until the client is ready
    let features = api.create_client();

    let users = [
        EvaluationContext::default().with_targeting_key("qa_alice"),
        EvaluationContext::default().with_targeting_key("carol"),
        EvaluationContext::default()
            .with_targeting_key("erin")
            .with_custom_field("plan", "enterprise"),
        EvaluationContext::default()
            .with_targeting_key("frank")
            .with_custom_field("plan", "free")
            .with_custom_field("app_version", "2.1.0"),
    ];
    println!(
        "{:<10} {:<16} {:<9} {:<16} label",
        "user", "flag", "variant", "reason"
    );
    for context in &users {
        let user = context.targeting_key.as_deref().unwrap_or_default();
        for flag in ["new_checkout", "search_ranking"] {
            match features.get_string_details(flag, Some(context), None).await {
                Ok(d) => {
                    let label = match d.flag_metadata.values.get(METADATA_LABEL) {
                        Some(FlagMetadataValue::String(l)) => l.as_str(),
                        _ => "-",
                    };
                    let reason = d.reason.map(|r| r.to_string()).unwrap_or_default();
                    println!("{user:<10} {flag:<16} {:<9} {reason:<16} {label}", d.value);
                }
                Err(e) => println!("{user:<10} {flag:<16} error {e:?}"),
            }
        }
    }
    // The same flag as a boolean: `on` is true.
    let on = features
        .get_bool_value("new_checkout", Some(&users[0]), None)
        .await
        .unwrap_or(false);
    println!("new_checkout for qa_alice as a boolean: {on}");

    // A structure: the configuration of the treatment.
    let checkout: StructValue = features
        .get_struct_value("new_checkout", Some(&users[0]), None)
        .await
        .unwrap_or_default();
    println!(
        "new_checkout configuration for qa_alice: {:?}",
        checkout.fields
    );

    // Errors carry a code; the default stands in for the value.
    let missing = features
        .get_bool_value("no_such_flag", Some(&users[0]), None)
        .await;
    println!(
        "no_such_flag: {missing:?} -> {}",
        missing.clone().unwrap_or(false)
    );

    let details = TrackingEventDetails {
        value: Some(42.0),
        properties: Properties::new().with("plan", "enterprise"),
    };
    if let Err(e) = tracker.track("checkout", &users[2], Some(&details)) {
        println!("track: {e:?}");
    }

    // Drops the provider: the client delivers what it queued (nowhere, in localhost mode
    // without an events URL) and stops.
    api.shutdown().await;
    Ok(())
}
