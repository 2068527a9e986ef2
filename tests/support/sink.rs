//! A loopback HTTP server that reads every request and answers 200, for the tests and
//! benches that need somewhere to deliver to; it stops when dropped.

use std::sync::Arc;
use std::thread::JoinHandle;

/// The server and the thread answering it.
pub(crate) struct Sink {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Binds 127.0.0.1 on a free port and starts answering.
    pub(crate) fn start() -> Sink {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                // Read through and dropped: `io::copy` reuses one stack buffer, where
                // `read_to_end` would zero every byte of a growing `Vec` (about 200
                // instructions a delivered impression, on the cores the benches measure).
                let _ = std::io::copy(request.as_reader(), &mut std::io::sink());
                let _ = request.respond(tiny_http::Response::empty(200));
            }
        });
        Sink {
            server,
            thread: Some(thread),
        }
    }

    /// Base URL for `events_url`: `http://127.0.0.1:<port>/api`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/api", self.server.server_addr())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
