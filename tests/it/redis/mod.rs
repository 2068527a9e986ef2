//! Consumer mode against a real `redis-server` on loopback: definitions laid out as Split's
//! Synchronizer writes them, and what the client writes back, read as the Synchronizer
//! reads it.

mod layout;
mod server;

use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::{Value, json};
use splitkit::{Client, ImpressionsMode, RedisConfig};

use crate::common::{logs, read};
use crate::golden::{check_client, segment_documents};
use crate::server::{eventually, flag};
use layout::lay_out;
use server::{RedisServer, available};

const WAIT: Duration = Duration::from_secs(10);

/// A document of `flags`, at change number `till`.
fn doc(flags: &[Value], till: i64) -> String {
    json!({"ff": {"d": flags, "s": -1, "t": till}, "rbs": {"d": [], "s": -1, "t": -1}}).to_string()
}

/// Flag `f` (change number 7: `on` for ann, `off` for the others) under `prefix`.
fn lay_out_one_flag(redis: &RedisServer, prefix: &str) {
    lay_out(
        &mut redis.conn(),
        prefix,
        &doc(&[flag("f", 7, &["ann"], None, "off")], 7),
        &[],
    );
}

fn consumer(redis: &RedisServer, prefix: Option<&str>) -> splitkit::ClientBuilder {
    let mut config =
        RedisConfig::host("127.0.0.1", redis.port).refresh_rate(Duration::from_millis(50));
    if let Some(p) = prefix {
        config = config.prefix(p);
    }
    Client::builder("consumer")
        .redis(config)
        .machine_name("box-1")
        .machine_ip("10.0.0.7")
        .impressions_refresh_rate(Duration::from_millis(100))
}

fn ready(builder: splitkit::ClientBuilder) -> Client {
    let client = builder.build().expect("consumer client");
    client.block_until_ready(WAIT).expect("ready from redis");
    client
}

/// Every element of list `key`, parsed.
fn list(redis: &RedisServer, key: &str) -> Vec<Value> {
    let items: Vec<String> = redis.conn().lrange(key, 0, -1).expect("LRANGE");
    items
        .iter()
        .map(|s| serde_json::from_str(s).unwrap_or_else(|e| panic!("{key}: {s}: {e}")))
        .collect()
}

fn golden_in_redis(set: &str, prefix: Option<&str>) {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let text = read(&format!("golden/{set}/flags.json"));
    let key_prefix = prefix.map(|p| format!("{p}.")).unwrap_or_default();
    lay_out(
        &mut redis.conn(),
        &key_prefix,
        &text,
        &segment_documents(set),
    );
    let client = ready(consumer(&redis, prefix).impressions_mode(ImpressionsMode::None));
    check_client(&client, set);
    assert!(client.destroy(WAIT));
}

#[test]
fn golden_set_11_from_the_synchronizers_layout() {
    golden_in_redis("set-11", None);
}

#[test]
fn golden_set_12_from_the_synchronizers_layout_under_a_prefix() {
    golden_in_redis("set-12", Some("checkout"));
}

#[test]
fn debug_impressions_and_events_land_as_the_synchronizer_reads_them() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    lay_out_one_flag(&redis, "");
    let client = ready(consumer(&redis, None).impressions_mode(ImpressionsMode::Debug));
    assert_eq!(client.get_treatment("ann", "f", None), "on");
    assert_eq!(
        client.get_treatment(splitkit::Key::new("bob", "bk"), "f", None),
        "off"
    );
    assert_eq!(client.get_treatment("ann", "f", None), "on");
    let props = splitkit::Properties::new().with("plan", "pro");
    client
        .track("ann", "user", "checkout", Some(9.5), Some(&props))
        .expect("tracked");
    assert!(client.flush(WAIT), "flushed to redis");
    let meta = json!({"s": splitkit::SDK_VERSION, "i": "10.0.0.7", "n": "box-1"});
    let imps = list(&redis, "SPLITIO.impressions");
    assert_eq!(imps.len(), 3, "{imps:?}");
    for i in &imps {
        assert_eq!(i["m"], meta);
        assert_eq!(i["i"]["f"], "f");
        assert_eq!(i["i"]["c"], 7);
        assert!(i["i"]["m"].as_i64().is_some_and(|m| m > 1_600_000_000_000));
    }
    assert_eq!(
        (&imps[0]["i"]["k"], &imps[0]["i"]["t"], &imps[0]["i"]["r"]),
        (&json!("ann"), &json!("on"), &json!("whitelisted"))
    );
    assert_eq!(imps[1]["i"]["b"], "bk");
    assert_eq!(imps[1]["i"]["r"], "default rule");
    // The second impression of (ann, f, on) carries the first one's time as `pt`.
    assert_eq!(imps[2]["i"]["pt"], imps[0]["i"]["m"]);
    let ttl: i64 = redis.conn().ttl("SPLITIO.impressions").expect("TTL");
    assert!(
        (3590..=3600).contains(&ttl),
        "impressions expire in an hour: {ttl}"
    );
    let events = list(&redis, "SPLITIO.events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["m"], meta);
    assert_eq!(
        (
            &events[0]["e"]["key"],
            &events[0]["e"]["trafficTypeName"],
            &events[0]["e"]["eventTypeId"],
            &events[0]["e"]["value"],
            &events[0]["e"]["properties"]
        ),
        (
            &json!("ann"),
            &json!("user"),
            &json!("checkout"),
            &json!(9.5),
            &json!({"plan": "pro"})
        )
    );
    assert!(events[0]["e"]["timestamp"].as_i64().is_some());
    let ttl: i64 = redis.conn().ttl("SPLITIO.events").expect("TTL");
    assert!(
        (3590..=3600).contains(&ttl),
        "events expire in an hour: {ttl}"
    );
    let stats = client.stats();
    assert_eq!(stats.impressions.queue.sent, 3, "{stats}");
    assert_eq!(stats.events.queue.sent, 1, "{stats}");
    assert!(client.destroy(WAIT));
}

#[test]
fn optimized_and_none_modes_write_counts_and_unique_keys() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    lay_out(
        &mut redis.conn(),
        "",
        &doc(
            &[
                flag("f", 7, &["ann"], None, "off"),
                flag("g", 8, &[], None, "off"),
            ],
            8,
        ),
        &[],
    );
    let optimized = ready(
        consumer(&redis, None)
            .impressions_mode(ImpressionsMode::Optimized)
            .ip_addresses_enabled(false)
            .labels_enabled(false),
    );
    for _ in 0..3 {
        optimized.get_treatment("ann", "f", None);
    }
    assert!(optimized.destroy(WAIT));
    let imps = list(&redis, "SPLITIO.impressions");
    assert_eq!(imps.len(), 1, "deduplicated: {imps:?}");
    assert_eq!(
        imps[0]["m"],
        json!({"s": splitkit::SDK_VERSION, "i": "NA", "n": "NA"})
    );
    assert!(
        imps[0]["i"].get("r").is_none(),
        "labels disabled: {}",
        imps[0]
    );
    let hour = imps[0]["i"]["m"].as_i64().expect("time") / 3_600_000 * 3_600_000;
    let counts: std::collections::HashMap<String, i64> = redis
        .conn()
        .hgetall("SPLITIO.impressions.count")
        .expect("HGETALL");
    assert_eq!(
        counts,
        [(format!("f::{hour}"), 2)].into_iter().collect(),
        "the deduplicated two"
    );
    let ttl: i64 = redis.conn().ttl("SPLITIO.impressions.count").expect("TTL");
    assert!(
        (3590..=3600).contains(&ttl),
        "counts expire in an hour: {ttl}"
    );

    let none = ready(consumer(&redis, None).impressions_mode(ImpressionsMode::None));
    none.get_treatment("ann", "g", None);
    none.get_treatment("bob", "g", None);
    none.get_treatment("ann", "g", None);
    assert!(none.destroy(WAIT));
    assert_eq!(
        list(&redis, "SPLITIO.impressions").len(),
        1,
        "none mode queues none"
    );
    let uniques = list(&redis, "SPLITIO.uniquekeys");
    assert_eq!(uniques.len(), 1, "{uniques:?}");
    assert_eq!(uniques[0]["f"], "g");
    let mut keys: Vec<&str> = uniques[0]["ks"]
        .as_array()
        .expect("ks")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["ann", "bob"]);
    let counts: std::collections::HashMap<String, i64> = redis
        .conn()
        .hgetall("SPLITIO.impressions.count")
        .expect("HGETALL");
    assert_eq!(counts.get(&format!("g::{hour}")), Some(&3), "{counts:?}");
    let ttl: i64 = redis.conn().ttl("SPLITIO.uniquekeys").expect("TTL");
    assert!(
        (3590..=3600).contains(&ttl),
        "unique keys expire in an hour: {ttl}"
    );
}

#[test]
fn definitions_and_segments_follow_the_synchronizer() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let seg = json!({"name": "vip", "added": ["carol"], "removed": [], "since": -1, "till": 3});
    lay_out(
        &mut redis.conn(),
        "",
        &doc(&[flag("f", 7, &[], Some("vip"), "off")], 7),
        &[seg.to_string()],
    );
    let client = ready(consumer(&redis, None).impressions_mode(ImpressionsMode::None));
    let updates = client.updates();
    assert_eq!(client.get_treatment("carol", "f", None), "on");
    assert_eq!(client.get_treatment("dave", "f", None), "off");
    // The Synchronizer adds dave to the segment.
    let mut c = redis.conn();
    let _: () = c.sadd("SPLITIO.segment.vip", "dave").expect("SADD");
    let _: () = c.set("SPLITIO.segment.vip.till", 4).expect("SET");
    assert!(eventually(WAIT, || client.get_treatment("dave", "f", None) == "on"));
    // ... and changes the flag.
    lay_out(
        &mut c,
        "",
        &doc(&[flag("f", 9, &[], Some("vip"), "on")], 9),
        &[],
    );
    assert!(eventually(WAIT, || client.get_treatment("erin", "f", None) == "on"));
    let changed = std::iter::from_fn(|| updates.recv_timeout(Duration::from_millis(100)).ok())
        .any(|u| matches!(u, splitkit::Update::Definitions(d) if d.flags.iter().any(|f| f.name == "f" && f.change_number == Some(9))));
    assert!(changed, "subscribers hear of the change");
    // ... and archives it.
    let _: () = c.del("SPLITIO.split.f").expect("DEL");
    let _: () = c.set("SPLITIO.splits.till", 10).expect("SET");
    assert!(eventually(WAIT, || client.get_treatment("erin", "f", None)
        == "control"));
    assert!(client.destroy(WAIT));
}

#[test]
fn bad_data_is_skipped_with_a_warning_naming_the_key() {
    if !available() {
        return;
    }
    logs::start();
    let redis = RedisServer::start();
    let prefix = "bad";
    let mut c = redis.conn();
    // No till yet: not ready, and the reason names the key.
    let _: () = c
        .set(
            "bad.SPLITIO.split.good",
            layout::go_flag(&flag("good", 3, &["ann"], None, "off")).to_string(),
        )
        .expect("SET");
    let client = consumer(&redis, Some(prefix))
        .impressions_mode(ImpressionsMode::None)
        .build()
        .expect("client");
    let err = client
        .block_until_ready(Duration::from_millis(500))
        .expect_err("not ready without a till");
    assert!(err.to_string().contains("bad.SPLITIO.splits.till"), "{err}");
    // A till that is not a number is warned about once, not at every refresh.
    let _: () = c.set("bad.SPLITIO.splits.till", "soon").expect("SET");
    std::thread::sleep(Duration::from_millis(400));
    let warned = logs::any_thread("bad.SPLITIO.splits.till is \"soon\"");
    assert_eq!(warned.len(), 1, "{warned:?}");
    let _: () = c
        .set("bad.SPLITIO.split.broken", "{\"name\":\"broken\",")
        .expect("SET");
    let mut wrong = layout::go_flag(&flag("wrong", 3, &[], None, "off"));
    wrong["conditions"] = json!(7);
    let _: () = c
        .set("bad.SPLITIO.split.wrong", wrong.to_string())
        .expect("SET");
    let _: () = c.set("bad.SPLITIO.splits.till", 3).expect("SET");
    client
        .block_until_ready(WAIT)
        .expect("ready once the till is there");
    assert_eq!(client.get_treatment("ann", "good", None), "on");
    assert_eq!(client.get_treatment("ann", "broken", None), "control");
    assert_eq!(client.get_treatment("ann", "wrong", None), "control");
    let warnings = logs::any_thread("bad.SPLITIO.split.");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("bad.SPLITIO.split.broken") && w.contains("not JSON")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("bad.SPLITIO.split.wrong") && w.contains("conditions")),
        "{warnings:?}"
    );
    assert!(client.destroy(WAIT));
}

#[test]
fn a_restarted_redis_loses_no_impression() {
    if !available() {
        return;
    }
    let mut redis = RedisServer::start();
    let document = doc(&[flag("f", 7, &[], None, "on")], 7);
    lay_out(&mut redis.conn(), "", &document, &[]);
    let client = ready(consumer(&redis, None));
    let evaluate = |from: usize, to: usize| {
        for n in from..to {
            assert_eq!(
                client.get_treatment(format!("key-{n}").as_str(), "f", None),
                "on"
            );
        }
    };
    evaluate(0, 2_000);
    assert!(client.flush(WAIT));
    let before: Vec<String> = redis
        .conn()
        .lrange("SPLITIO.impressions", 0, -1)
        .expect("LRANGE");
    assert_eq!(before.len(), 2_000);
    // Redis goes away (and comes back empty, as a restarted cache does): what is recorded
    // meanwhile waits in the queue and is written when it is back.
    redis.stop();
    let started = Instant::now();
    evaluate(2_000, 12_000);
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();
    evaluate(12_000, 14_000);
    assert!(client.flush(WAIT), "delivered after the restart");
    let after: Vec<String> = redis
        .conn()
        .lrange("SPLITIO.impressions", 0, -1)
        .expect("LRANGE");
    let keys: std::collections::HashSet<String> = after
        .iter()
        .map(|s| {
            serde_json::from_str::<Value>(s).expect("JSON")["i"]["k"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        after.len(),
        12_000,
        "each once (after {:?})",
        started.elapsed()
    );
    assert!((2_000..14_000).all(|n| keys.contains(&format!("key-{n}"))));
    let stats = client.stats();
    assert_eq!(stats.impressions.queue.sent, 14_000, "{stats}");
    assert_eq!(stats.impressions.queue.dropped(), 0, "{stats}");
    // The definitions were read before the outage, and still evaluate.
    assert_eq!(client.get_treatment("z", "f", None), "on");
    assert!(client.destroy(WAIT));
}

#[test]
fn an_unreachable_redis_says_why_it_is_not_ready() {
    let dead = crate::server::dead_port();
    let client = Client::builder("consumer")
        .redis(RedisConfig::host("127.0.0.1", dead).connect_timeout(Duration::from_millis(200)))
        .build()
        .expect("builds without connecting");
    let err = client
        .block_until_ready(Duration::from_millis(500))
        .expect_err("nothing listens there");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{dead}")), "{msg}");
    assert_eq!(client.get_treatment("ann", "f", None), "control");
    // The `not ready` impression cannot be written: destroy says so, and counts it.
    assert!(!client.destroy(Duration::from_secs(1)));
    let stats = client.stats();
    assert_eq!(stats.impressions.queue.dropped_shutdown, 1, "{stats}");
    assert!(stats.impressions.is_balanced(), "{stats}");
}

#[test]
fn consumer_queues_flush_every_second_without_the_apis_minimums() {
    let client = Client::builder("consumer")
        .redis(RedisConfig::host("127.0.0.1", crate::server::dead_port()))
        .impressions_refresh_rate(Duration::from_millis(100))
        .build()
        .expect("no minimum applies to Redis");
    let c = client.config();
    assert_eq!(c.impressions_refresh_rate(), Duration::from_millis(100));
    assert_eq!(
        c.events_push_rate(),
        splitkit::defaults::CONSUMER_FLUSH_INTERVAL
    );
    assert!(c.is_consumer() && !c.is_localhost());
    client.destroy(Duration::from_millis(100));
}

#[test]
fn errors_name_the_option_and_hide_the_password() {
    let err = Client::builder("consumer")
        .redis(RedisConfig::url("http://ann:hunter2@127.0.0.1:6379"))
        .build()
        .expect_err("not a redis URL");
    let msg = err.to_string();
    assert!(
        msg.contains("redis.url") && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[test]
fn a_cluster_is_read_and_written_under_the_hash_tag() {
    if !available() {
        return;
    }
    let redis = RedisServer::cluster();
    lay_out_one_flag(&redis, "{SPLITIO}.");
    let client = ready(
        Client::builder("consumer")
            .redis(
                RedisConfig::cluster([("127.0.0.1", redis.port)])
                    .refresh_rate(Duration::from_millis(50)),
            )
            .impressions_mode(ImpressionsMode::Debug),
    );
    assert_eq!(client.get_treatment("ann", "f", None), "on");
    assert!(client.flush(WAIT));
    let imps = list(&redis, "{SPLITIO}.SPLITIO.impressions");
    assert_eq!(imps.len(), 1, "{imps:?}");
    assert_eq!(imps[0]["i"]["k"], "ann");
    assert!(client.destroy(WAIT));
}

#[test]
fn a_master_is_found_through_sentinel() {
    if !available() {
        return;
    }
    let master = RedisServer::start();
    let sentinel = RedisServer::sentinel(&master, "splitmaster");
    lay_out_one_flag(&master, "app.");
    let client = ready(
        Client::builder("consumer")
            .redis(
                RedisConfig::sentinel("splitmaster", [("127.0.0.1", sentinel.port)])
                    .prefix("app")
                    .refresh_rate(Duration::from_millis(50)),
            )
            .impressions_mode(ImpressionsMode::Debug),
    );
    assert_eq!(client.get_treatment("ann", "f", None), "on");
    assert!(client.flush(WAIT));
    assert_eq!(list(&master, "app.SPLITIO.impressions").len(), 1);
    assert!(client.destroy(WAIT));
}

#[test]
fn a_client_stopped_while_redis_is_down_spools_and_the_next_one_writes_it() {
    if !available() {
        return;
    }
    let mut redis = RedisServer::start();
    lay_out_one_flag(&redis, "");
    let spool = tempfile::tempdir().expect("tempdir");
    let first = ready(
        consumer(&redis, None)
            .impressions_mode(ImpressionsMode::Debug)
            .spool_directory(spool.path()),
    );
    redis.stop();
    for n in 0..50 {
        first.get_treatment(format!("spooled-{n}").as_str(), "f", None);
    }
    first
        .track("ann", "user", "checkout", None, None)
        .expect("tracked");
    assert!(
        !first.destroy(Duration::from_secs(1)),
        "nothing could be written"
    );
    let s = first.stats();
    assert_eq!(
        (s.impressions.queue.spooled, s.events.queue.spooled),
        (50, 1),
        "{s}"
    );
    // Redis is back (empty): the next client writes what the first one spooled.
    redis.restart();
    lay_out_one_flag(&redis, "");
    let second = ready(
        consumer(&redis, None)
            .impressions_mode(ImpressionsMode::Debug)
            .spool_directory(spool.path()),
    );
    assert!(eventually(WAIT, || {
        list(&redis, "SPLITIO.impressions").len() == 50 && list(&redis, "SPLITIO.events").len() == 1
    }));
    let keys: Vec<String> = list(&redis, "SPLITIO.impressions")
        .iter()
        .map(|i| i["i"]["k"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        keys,
        (0..50).map(|n| format!("spooled-{n}")).collect::<Vec<_>>()
    );
    assert!(second.destroy(WAIT));
}

#[test]
fn a_flag_with_impressions_disabled_is_only_counted() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let mut quiet = flag("quiet", 7, &[], None, "on");
    quiet["impressionsDisabled"] = json!(true);
    lay_out(
        &mut redis.conn(),
        "",
        &doc(&[quiet, flag("loud", 7, &[], None, "on")], 7),
        &[],
    );
    let client = ready(consumer(&redis, None).impressions_mode(ImpressionsMode::Debug));
    client.get_treatment("ann", "quiet", None);
    client.get_treatment("ann", "loud", None);
    assert!(client.destroy(WAIT));
    let imps = list(&redis, "SPLITIO.impressions");
    assert_eq!(imps.len(), 1, "{imps:?}");
    assert_eq!(imps[0]["i"]["f"], "loud");
    let counts: std::collections::HashMap<String, i64> = redis
        .conn()
        .hgetall("SPLITIO.impressions.count")
        .expect("HGETALL");
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(
        counts.keys().all(|k| k.starts_with("quiet::")),
        "{counts:?}"
    );
    let uniques = list(&redis, "SPLITIO.uniquekeys");
    assert_eq!(uniques, [json!({"f": "quiet", "ks": ["ann"]})]);
}
