//! Last-seen-treatment traits: a `TraitsListener` on a localhost client keeps, per user, the
//! last treatment seen of each flag (the trait is named after the flag), in bounded memory.
//! Nothing is sent anywhere: the listener is built without Segment.
//!
//! Run it with `cargo run --example traits`.

use std::sync::Arc;
use std::time::Duration;

use splitkit::integrations::TraitsListener;
use splitkit::{Attributes, Client};

fn main() -> Result<(), splitkit::Error> {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    // At most 1,000 users are remembered; beyond that the least recently seen is forgotten.
    // With `Some(SegmentConfig { .. })` instead of `None`, each change would also be pushed
    // to Segment as an `identify` call.
    let traits = Arc::new(TraitsListener::new(1_000, None)?);
    let client = Client::builder("localhost")
        .split_file(format!("{examples}/flags.json"))
        .segment_directory(format!("{examples}/segments"))
        .impression_listener(traits.clone())
        .build()?;
    client.block_until_ready(Duration::from_secs(5))?;

    let users = [
        ("qa_alice", Attributes::new()),
        ("carol", Attributes::new()),
        ("erin", Attributes::new().with("plan", "enterprise")),
        ("frank", Attributes::new().with("app_version", "2.1.0")),
    ];
    for (user, attributes) in &users {
        for flag in ["new_checkout", "search_ranking", "legacy_banner"] {
            client.get_treatment(*user, flag, Some(attributes));
        }
    }
    // erin is downgraded: her trait follows the last treatment she saw.
    let free = Attributes::new().with("plan", "free");
    client.get_treatment("erin", "new_checkout", Some(&free));

    // Listeners run on a thread of their own: wait until they have seen every impression.
    client.flush(Duration::from_secs(5));

    for user in traits.keys().iter().rev() {
        println!("{user}:");
        for (flag, seen) in traits.last_seen(user) {
            println!(
                "  {flag:<16} = {:<8} (seen at {} ms)",
                seen.treatment, seen.time
            );
        }
    }
    let stats = traits.stats();
    println!(
        "\n{} impressions, {} users held (capacity {}), {} evicted",
        stats.impressions,
        stats.keys,
        traits.capacity(),
        stats.evicted
    );

    client.destroy(Duration::from_secs(5));
    Ok(())
}
