//! A loopback streaming service for the streaming tests and bench: it accepts server-sent
//! event connections on 127.0.0.1 (raw TCP, so that it can drop one), records each request
//! line, and writes to the current connection the events a test sends. It stops when
//! dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// The request target (`/sse?...`) of every connection, in order.
    requests: Vec<String>,
    /// The connection events go to.
    current: Option<TcpStream>,
    stopped: bool,
}

/// The streaming service.
pub struct SseServer {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SseServer {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub fn start() -> SseServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let thread = {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    if lock(&state.0).stopped {
                        return;
                    }
                    let Some(target) = request_target(&stream) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let mut out = stream;
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
                    if out
                        .write_all(head.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        continue;
                    }
                    let mut s = lock(&state.0);
                    s.requests.push(target);
                    if let Some(old) = s.current.replace(out) {
                        let _ = old.shutdown(Shutdown::Both);
                    }
                    state.1.notify_all();
                }
            })
        };
        SseServer {
            port,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`: the streaming URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request targets so far.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.0).requests.clone()
    }

    /// Waits up to `timeout` for the `n`th connection (from 1); true when it came.
    pub fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.state.0);
        while s.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .state
                .1
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// Writes raw text to the current connection; false when there is none (or it broke).
    pub fn write(&self, text: &str) -> bool {
        let mut s = lock(&self.state.0);
        match s.current.as_mut() {
            Some(c) => c
                .write_all(text.as_bytes())
                .and_then(|()| c.flush())
                .is_ok(),
            None => false,
        }
    }

    /// Sends a message event: `inner` (a notification) on `channel`, Ably-style.
    pub fn notify(&self, channel: &str, inner: &serde_json::Value) -> bool {
        self.notify_at(channel, inner, now_ms())
    }

    /// [`SseServer::notify`] with the message's timestamp.
    pub fn notify_at(&self, channel: &str, inner: &serde_json::Value, timestamp: i64) -> bool {
        let envelope = serde_json::json!({"id": "i", "clientId": "c", "timestamp": timestamp,
            "encoding": "json", "channel": channel, "data": inner.to_string()});
        self.write(&format!("id: i\nevent: message\ndata: {envelope}\n\n"))
    }

    /// Sends an occupancy message for a control channel.
    pub fn occupancy(&self, channel: &str, publishers: u64) -> bool {
        let envelope = serde_json::json!({"id": "i", "clientId": "c", "timestamp": now_ms(),
            "encoding": "json", "channel": format!("[?occupancy=metrics.publishers]{channel}"),
            "name": "[meta]occupancy",
            "data": serde_json::json!({"metrics": {"publishers": publishers}}).to_string()});
        self.write(&format!("event: message\ndata: {envelope}\n\n"))
    }

    /// Sends an error event of the service.
    pub fn error(&self, code: i64, status: u16) -> bool {
        let data = serde_json::json!({"message": "test error", "code": code, "statusCode": status});
        self.write(&format!("event: error\ndata: {data}\n\n"))
    }

    /// Drops the current connection.
    pub fn drop_connection(&self) {
        if let Some(c) = lock(&self.state.0).current.take() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for SseServer {
    fn drop(&mut self) {
        {
            let mut s = lock(&self.state.0);
            s.stopped = true;
            if let Some(c) = s.current.take() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads the request head; its target (`/sse?...`).
fn request_target(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    first.split_whitespace().nth(1).map(str::to_string)
}

/// Epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An unsigned JWT as Split's auth service hands out: these lifetime and channels.
pub fn token(lifetime_secs: i64) -> String {
    use base64::Engine;
    let iat = now_ms() / 1000;
    let channels = serde_json::json!({
        "NzM2MDI5Mzc0_MTgyNTg1MTgwNg==_splits": ["subscribe"],
        "NzM2MDI5Mzc0_MTgyNTg1MTgwNg==_segments": ["subscribe"],
        "control_pri": ["subscribe", "channel-metadata:publishers"],
        "control_sec": ["subscribe", "channel-metadata:publishers"],
    });
    let claims = serde_json::json!({"iat": iat, "exp": iat + lifetime_secs,
        "x-ably-capability": channels.to_string(), "x-ably-clientId": "clientId"});
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"sig")
    )
}

/// The channel flag notifications come on.
pub const SPLITS: &str = "NzM2MDI5Mzc0_MTgyNTg1MTgwNg==_splits";
/// The channel segment notifications come on.
pub const SEGMENTS: &str = "NzM2MDI5Mzc0_MTgyNTg1MTgwNg==_segments";
