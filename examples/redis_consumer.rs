//! Consumer mode: a client that reads its definitions from, and writes its impressions and
//! events to, the Redis that Split's Synchronizer keeps.
//!
//! ```sh
//! redis-server --port 6379 &            # or point REDIS_URL at yours
//! cargo run --features redis --example redis_consumer
//! ```
//!
//! With no Synchronizer around, the example plays its part first: it writes one flag in the
//! Synchronizer's layout under the prefix `example` (`example.SPLITIO.split.new_checkout`,
//! `example.SPLITIO.splits.till`). Then it evaluates, tracks an event, flushes, and shows the
//! elements the Synchronizer would drain from `example.SPLITIO.impressions` and
//! `example.SPLITIO.events`.

use std::time::Duration;

use redis::Commands;
use splitkit::{Client, ImpressionsMode, RedisConfig};

const FLAG: &str = r#"{"changeNumber":7,"trafficTypeName":"user","name":"new_checkout",
"trafficAllocation":100,"trafficAllocationSeed":1,"seed":11,"status":"ACTIVE","killed":false,
"defaultTreatment":"off","algo":2,"conditions":[{"conditionType":"WHITELIST","matcherGroup":
{"combiner":"AND","matchers":[{"keySelector":null,"matcherType":"WHITELIST","negate":false,
"whitelistMatcherData":{"whitelist":["ann"]}}]},"partitions":[{"treatment":"on","size":100}],
"label":"beta testers"},{"conditionType":"ROLLOUT","matcherGroup":{"combiner":"AND","matchers":
[{"keySelector":{"trafficType":"user","attribute":null},"matcherType":"ALL_KEYS","negate":false}]},
"partitions":[{"treatment":"on","size":50},{"treatment":"off","size":50}],"label":"half"}],
"configurations":null,"sets":null,"impressionsDisabled":false,"prerequisites":null}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let mut redis = match redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no Redis at {url} ({e}): start one with `redis-server` or set REDIS_URL");
            std::process::exit(2);
        }
    };
    // What the Synchronizer would have written.
    let flag: serde_json::Value = serde_json::from_str(FLAG)?;
    let _: () = redis.set("example.SPLITIO.split.new_checkout", flag.to_string())?;
    let _: () = redis.set("example.SPLITIO.splits.till", 7)?;
    let _: () = redis.del(&["example.SPLITIO.impressions", "example.SPLITIO.events"])?;

    let client = Client::builder("consumer")
        .redis(RedisConfig::url(url.as_str()).prefix("example"))
        .impressions_mode(ImpressionsMode::Debug)
        .build()?;
    client.block_until_ready(Duration::from_secs(5))?;
    for key in ["ann", "bob", "carol"] {
        let d = client.evaluate(key, "new_checkout", None);
        println!(
            "{key}: {} ({})",
            d.treatment,
            d.label.as_ref().map_or("-", |l| l.as_str())
        );
    }
    client.track("ann", "user", "checkout", Some(42.0), None)?;
    client.flush(Duration::from_secs(5));

    let impressions: Vec<String> = redis.lrange("example.SPLITIO.impressions", 0, -1)?;
    let events: Vec<String> = redis.lrange("example.SPLITIO.events", 0, -1)?;
    println!("example.SPLITIO.impressions holds {}:", impressions.len());
    for i in &impressions {
        println!("  {i}");
    }
    println!("example.SPLITIO.events holds {}:", events.len());
    for e in &events {
        println!("  {e}");
    }
    client.destroy(Duration::from_secs(5));
    Ok(())
}
