//! Quickstart: build a client on the flags shipped in `examples/`, evaluate a few flags for a
//! few users, print treatments with the label of the rule that decided, and shut down.
//!
//! Run it with `cargo run --example quickstart`.

use std::time::Duration;

use splitkit::{Attributes, Client, Key};

fn main() -> Result<(), splitkit::Error> {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    // "localhost" mode reads definitions from a file instead of Split's servers.
    let client = Client::builder("localhost")
        .split_file(format!("{examples}/flags.json"))
        .segment_directory(format!("{examples}/segments"))
        .build()?;
    client.block_until_ready(Duration::from_secs(5))?;

    let users = [
        ("qa_alice", Attributes::new()),
        ("carol", Attributes::new()),
        ("erin", Attributes::new().with("plan", "enterprise")),
        (
            "frank",
            Attributes::new()
                .with("plan", "free")
                .with("app_version", "2.1.0"),
        ),
        ("grace", Attributes::new().with("app_version", "1.9.3")),
    ];
    println!("{:<10} {:<16} {:<10} label", "user", "flag", "treatment");
    for (user, attributes) in &users {
        for flag in ["new_checkout", "search_ranking", "legacy_banner"] {
            let d = client.evaluate(*user, flag, Some(attributes));
            let label = d.label.as_ref().map_or("-", |l| l.as_str());
            println!("{user:<10} {flag:<16} {:<10} {label}", d.treatment);
        }
    }

    // A configuration travels with the treatment.
    let with_config = client.get_treatment_with_config("qa_alice", "new_checkout", None);
    println!(
        "\nqa_alice gets {} with config {:?}",
        with_config.treatment, with_config.config
    );

    // Separate matching and bucketing keys: match on the user, bucket by the account.
    let t = client.get_treatment(Key::new("henry", "account-42"), "new_checkout", None);
    println!("henry (bucketed by account-42) gets {t}");

    // Everything in a flag set at once.
    let search = client.get_treatments_by_flag_set("frank", "search", Some(&users[3].1));
    println!("flag set 'search' for frank: {search:?}");

    client.destroy(Duration::from_secs(5));
    Ok(())
}
