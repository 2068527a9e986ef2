//! A real `redis-server` on loopback, one per test, on a free port; killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Extra arguments (cluster mode, sentinel mode).
    args: Vec<String>,
    /// While stopped: the port, kept from other tests' servers (see `dead_port`).
    held: Option<socket2::Socket>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether `redis-server` can be run here (outside CI, the Redis tests skip without it).
pub fn available() -> bool {
    crate::common::installed("redis-server", "redis-server")
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> RedisServer {
        RedisServer::with(Vec::new())
    }

    fn with(args: Vec<String>) -> RedisServer {
        let mut s = RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            args,
            held: None,
        };
        s.restart();
        s
    }

    /// A one-node Redis Cluster that serves every slot.
    pub fn cluster() -> RedisServer {
        let s = RedisServer::with(
            [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]
            .map(String::from)
            .to_vec(),
        );
        let mut c = s.conn();
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query(&mut c)
            .expect("CLUSTER ADDSLOTSRANGE");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut c)
                .expect("INFO");
            if info.contains("cluster_state:ok") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not come up: {info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A Sentinel watching `master` as `name`.
    pub fn sentinel(master: &RedisServer, name: &str) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!("sentinel monitor {name} 127.0.0.1 {} 1\n", master.port),
        )
        .expect("sentinel.conf");
        let mut s = RedisServer {
            port: free_port(),
            child: None,
            dir,
            args: vec![conf.to_string_lossy().into_owned(), "--sentinel".into()],
            held: None,
        };
        s.restart();
        s
    }

    /// Starts the server again (after [`RedisServer::stop`]) on the same port, empty.
    pub fn restart(&mut self) {
        self.held = None;
        let child = Command::new("redis-server")
            .args(&self.args)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = self.connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (what it held is lost: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Refused while stopped, as a stopped server's port is, and not taken by another.
        self.held = crate::server::unlistened(self.port).ok();
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A connection of the test's own.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// A connection, or the test fails.
    pub fn conn(&self) -> redis::Connection {
        self.connection()
            .expect("connects to the test's redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
