//! Consumer mode against a real `redis-server` on loopback (started here; the bench says so
//! and stops when there is none):
//!
//! 1. `get_treatment` in consumer mode beside the in-memory client (a localhost snapshot
//!    delivering to a loopback HTTP sink), both recording debug impressions: paired,
//!    interleaved bursts, medians, then criterion on each;
//! 2. how fast the worker writes impressions to Redis (pipelined RPUSH): 200,000 recorded,
//!    then flushed, timed from the first evaluation to the end of the flush.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use splitkit::{Client, ImpressionsMode, RedisConfig, Snapshot};

#[path = "../tests/support/sink.rs"]
mod sink;
use sink::Sink;

const FLAG: &str = r#"{"name":"checkout","trafficTypeName":"user","defaultTreatment":"off",
 "changeNumber":5,"algo":2,"seed":7,"trafficAllocation":100,"trafficAllocationSeed":3,"status":"ACTIVE","killed":false,
 "conditions":[
 {"conditionType":"WHITELIST","matcherGroup":{"combiner":"AND","matchers":[
   {"keySelector":null,"matcherType":"WHITELIST","negate":false,
    "whitelistMatcherData":{"whitelist":["k0","k1","k2","k3","k4","k5","k6","k7","k8","k9"]}}]},
  "partitions":[{"treatment":"on","size":100}],"label":"whitelisted"},
 {"conditionType":"ROLLOUT","matcherGroup":{"combiner":"AND","matchers":[{"keySelector":{"trafficType":"user","attribute":null},"matcherType":"ALL_KEYS","negate":false}]},
  "partitions":[{"treatment":"on","size":50},{"treatment":"off","size":50}],"label":"default rule"}]}"#;

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> Option<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child, port);
    let url = format!("redis://127.0.0.1:{port}/0");
    for _ in 0..500 {
        if let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
            let flag: serde_json::Value = serde_json::from_str(FLAG).ok()?;
            redis::pipe()
                .set("SPLITIO.split.checkout", flag.to_string())
                .set("SPLITIO.splits.till", 5)
                .query::<()>(&mut c)
                .ok()?;
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                i * 2_654_435_761 % 0xffff_ffff,
                i % 0xffff,
                i % 0xfff,
                (i * 7) % 0xfff,
                i * 31
            )
        })
        .collect()
}

fn consumer(port: u16) -> Client {
    let c = Client::builder("consumer")
        .redis(RedisConfig::host("127.0.0.1", port))
        .impressions_mode(ImpressionsMode::Debug)
        .impressions_queue_size(400_000)
        .impressions_bulk_size(5_000)
        .build()
        .expect("consumer client");
    c.block_until_ready(Duration::from_secs(5)).expect("ready");
    c
}

fn in_memory(sink: &Sink) -> Client {
    let doc = format!(r#"{{"ff":{{"d":[{FLAG}],"s":-1,"t":5}}}}"#);
    let (snapshot, _) = Snapshot::from_json(&doc, "bench").expect("doc");
    Client::builder("localhost")
        .snapshot(snapshot)
        .events_url(sink.url())
        .impressions_mode(ImpressionsMode::Debug)
        .impressions_queue_size(400_000)
        .impressions_bulk_size(5_000)
        .build()
        .expect("client")
}

/// Nanoseconds per call of one burst over `keys`.
fn burst(client: &Client, keys: &[String]) -> f64 {
    let start = Instant::now();
    for k in keys {
        std::hint::black_box(client.get_treatment(k.as_str(), "checkout", None));
    }
    start.elapsed().as_nanos() as f64 / keys.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let Some(server) = redis_server() else {
        eprintln!("redis-server is not installed or did not start: nothing to measure");
        return;
    };
    let sink = Sink::start();
    let memory = in_memory(&sink);
    let redis = consumer(server.1);
    let ks = keys(20_000);

    // 1. Paired, interleaved bursts; each queue is flushed (untimed) after its burst.
    let (mut m, mut r) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        m.push(burst(&memory, &ks));
        memory.flush(Duration::from_secs(10));
        r.push(burst(&redis, &ks));
        redis.flush(Duration::from_secs(10));
    }
    let (mm, rm) = (median(m), median(r));
    println!(
        "get_treatment, debug, bursts of {}: in-memory {mm:.1} ns, consumer {rm:.1} ns: {:.2}x",
        ks.len(),
        rm / mm
    );

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("get_treatment");
    let mut i = 0usize;
    group.bench_function("in_memory_debug", |b| {
        b.iter(|| {
            i = (i + 1) % ks.len();
            memory.get_treatment(ks[i].as_str(), "checkout", None)
        })
    });
    group.bench_function("consumer_debug", |b| {
        b.iter(|| {
            i = (i + 1) % ks.len();
            redis.get_treatment(ks[i].as_str(), "checkout", None)
        })
    });
    group.finish();
    memory.destroy(Duration::from_secs(10));
    redis.destroy(Duration::from_secs(10));

    // 2. Worker throughput: the writes to Redis.
    let many = keys(200_000);
    for _ in 0..3 {
        let client = consumer(server.1);
        let start = Instant::now();
        for k in &many {
            client.get_treatment(k.as_str(), "checkout", None);
        }
        let recorded = start.elapsed();
        assert!(client.flush(Duration::from_secs(60)), "flushed");
        let total = start.elapsed();
        let sent = client.stats().impressions.queue.sent;
        println!(
            "{sent} impressions written to redis in {:.0} ms ({:.0} ms recording): {:.0} per second",
            total.as_secs_f64() * 1e3,
            recorded.as_secs_f64() * 1e3,
            sent as f64 / total.as_secs_f64()
        );
        client.destroy(Duration::from_secs(10));
        let _: redis::RedisResult<()> =
            redis::Client::open(format!("redis://127.0.0.1:{}/0", server.1))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("DEL").arg("SPLITIO.impressions").query(&mut c));
    }
}
