//! The HTTP side of synchronization: `GET splitChanges` and `GET segmentChanges/{name}` against
//! Split's SDK API (or any compatible proxy), with the official SDKs' headers and query
//! parameters (SPLIT_SEMANTICS.md §1.1, §1.4, §5.2).

use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

use crate::definitions::{SegmentChanges, SplitChanges};
use crate::error::Error;

use super::config::SyncConfig;
use crate::backoff::parse_retry_after;

/// The spec version sent as `s=`: rule-based segments included.
pub(crate) const SPEC_VERSION: &str = "1.3";
/// The `SplitSDKVersion` header value.
pub(crate) const SDK_VERSION: &str = concat!("rust-", env!("CARGO_PKG_VERSION"));
/// Bytes read from a body at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Why a request failed. Messages name the URL and never contain the SDK key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// No connection could be made (refused, unknown host, reset).
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// What the network layer said.
        message: String,
    },
    /// The request did not complete within the request timeout.
    #[error("no complete answer from {url} within {} (request timeout)", crate::text::duration(*timeout))]
    Timeout {
        /// The request URL.
        url: String,
        /// The request timeout.
        timeout: Duration,
    },
    /// 401 or 403: the SDK key was rejected.
    #[error(
        "the server answered HTTP {status} to {url}: the SDK key was rejected (check that it is a server-side SDK key of this environment)"
    )]
    Unauthorized {
        /// The request URL.
        url: String,
        /// 401 or 403.
        status: u16,
    },
    /// A status worth retrying: 5xx, 408 or 429.
    #[error("the server answered HTTP {status} to {url}{}", retry_after.map(|d| format!(" (Retry-After: {}s)", d.as_secs())).unwrap_or_default())]
    Unavailable {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The server's `Retry-After` (seconds or an HTTP-date), when given.
        retry_after: Option<Duration>,
    },
    /// Any other non-2xx status: retrying soon would not help.
    #[error("the server answered HTTP {status} to {url}")]
    Rejected {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than `max_response_bytes` (counted after decompression); reading
    /// stopped there and nothing of it was applied.
    #[error(
        "the answer of {url} is larger than {} (max_response_bytes, counted after decompression); nothing applied",
        crate::text::count(*limit, "byte", "bytes")
    )]
    TooLarge {
        /// The request URL.
        url: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The body could not be read or is not the expected document; nothing of it was applied.
    #[error("malformed response, nothing applied: {0}")]
    Malformed(Error),
    /// The request could not even be made (an invalid URL, for instance).
    #[error("cannot send a request to {url}: {message}")]
    Invalid {
        /// The request URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// Another transport failure (TLS, protocol), retried.
    #[error("request to {url} failed: {message}")]
    Transport {
        /// The request URL.
        url: String,
        /// What the HTTP client said.
        message: String,
    },
}

impl FetchError {
    /// True for a rejected SDK key: the synchronizer stops instead of retrying.
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self, FetchError::Unauthorized { .. })
    }

    /// True for failures that are retried with backoff (network, timeouts, 5xx, 408, 429,
    /// malformed bodies, which a proxy or CDN may serve for a moment).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            FetchError::Unreachable { .. }
                | FetchError::Timeout { .. }
                | FetchError::Unavailable { .. }
                | FetchError::Malformed(_)
                | FetchError::Transport { .. }
        )
    }

    /// The server's `Retry-After`, if it sent one.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A client of the SDK API: base URL, headers, request timeout. `Debug` never shows the key.
#[derive(Clone)]
pub(crate) struct SdkApi {
    agent: ureq::Agent,
    base_url: String,
    headers: Vec<(&'static str, String)>,
    timeout: Duration,
    /// Largest body accepted, after decompression.
    max_body: u64,
}

impl fmt::Debug for SdkApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkApi")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl SdkApi {
    /// A client for `config`'s URL, key and timeout, sending through `agent`.
    pub(crate) fn new(config: &SyncConfig, agent: ureq::Agent) -> SdkApi {
        let mut headers = vec![
            ("Authorization", format!("Bearer {}", config.sdk_key.trim())),
            ("SplitSDKVersion", SDK_VERSION.to_string()),
            ("Accept-Encoding", "gzip".to_string()),
            ("Cache-Control", "no-cache".to_string()),
        ];
        let usable = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty() && *v != "NA" && *v != "unknown")
                .map(str::to_string)
        };
        if let Some(ip) = usable(&config.machine_ip) {
            headers.push(("SplitSDKMachineIP", ip));
        }
        if let Some(name) = usable(&config.machine_name) {
            headers.push(("SplitSDKMachineName", name));
        }
        SdkApi {
            agent,
            base_url: config.base_url().to_string(),
            headers,
            timeout: config.request_timeout,
            max_body: config.max_response_bytes,
        }
    }

    /// The base URL, without a trailing slash.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `{base}/splitChanges?s=1.3&since=..&rbSince=..[&sets=a,b][&till=..]`, parameters in
    /// Go's order. `sets` must be sanitized (they only contain `[a-z0-9_]`); `till` asks for
    /// that change number past a CDN's cache.
    pub(crate) fn split_changes_url(
        &self,
        since: i64,
        rb_since: i64,
        sets: &[String],
        till: Option<i64>,
    ) -> String {
        let mut url = format!(
            "{}/splitChanges?s={SPEC_VERSION}&since={since}&rbSince={rb_since}",
            self.base_url
        );
        if !sets.is_empty() {
            url.push_str("&sets=");
            url.push_str(&sets.join(","));
        }
        if let Some(till) = till {
            url.push_str(&format!("&till={till}"));
        }
        url
    }

    /// `{base}/segmentChanges/{name}?since=N[&till=M]`, the name percent-encoded.
    pub(crate) fn segment_changes_url(&self, name: &str, since: i64, till: Option<i64>) -> String {
        let mut url = format!(
            "{}/segmentChanges/{}?since={since}",
            self.base_url,
            encode_path_segment(name)
        );
        if let Some(till) = till {
            url.push_str(&format!("&till={till}"));
        }
        url
    }

    /// Fetches one page of flag and rule-based segment changes. The broken definitions of the
    /// page are returned beside it (each naming the flag and field); the page itself is
    /// rejected whole when it is not a splitChanges document.
    pub(crate) fn fetch_split_changes(
        &self,
        since: i64,
        rb_since: i64,
        sets: &[String],
        till: Option<i64>,
    ) -> Result<(SplitChanges, Vec<Error>, String), FetchError> {
        let url = self.split_changes_url(since, rb_since, sets, till);
        let body = self.get(&url)?;
        let (changes, problems) =
            SplitChanges::parse(&body, &url).map_err(FetchError::Malformed)?;
        Ok((changes, problems, url))
    }

    /// Fetches one page of a segment's changes. Keys that are not strings are returned as
    /// problems beside it (each naming the URL, line and field); the page is rejected whole
    /// when it is not a segmentChanges document.
    pub(crate) fn fetch_segment_changes(
        &self,
        name: &str,
        since: i64,
        till: Option<i64>,
    ) -> Result<(SegmentChanges, Vec<Error>), FetchError> {
        let url = self.segment_changes_url(name, since, till);
        let body = self.get(&url)?;
        let (mut changes, problems) =
            SegmentChanges::parse(&body, &url).map_err(FetchError::Malformed)?;
        changes.name = name.to_string();
        Ok((changes, problems))
    }

    /// The streaming credential: `GET {auth}/v2/auth?s=1.3` (the SDK key as bearer, the SDK
    /// headers), the body as text.
    pub(crate) fn fetch_auth(&self, auth: &str) -> Result<String, FetchError> {
        self.get(&format!(
            "{}/v2/auth?s={SPEC_VERSION}",
            auth.trim().trim_end_matches('/')
        ))
    }

    /// Opens a server-sent event stream at `url` (the SDK headers, the last four characters
    /// of the key as `SplitSDKClientKey`): the body, to read as events arrive. No overall
    /// timeout applies (the stream is long-lived); the connection timeout does.
    pub(crate) fn open_stream(
        &self,
        url: &str,
        redacted: &str,
    ) -> Result<impl std::io::Read + Send + use<>, FetchError> {
        let mut request = self
            .agent
            .get(url)
            .config()
            .timeout_global(None)
            .timeout_per_call(None)
            .timeout_recv_body(None)
            .http_status_as_error(false)
            .build()
            .header("Accept", "text/event-stream");
        for (name, value) in &self.headers {
            match *name {
                "Authorization" => {
                    let key = value.trim_start_matches("Bearer ");
                    let tail: String = key
                        .chars()
                        .rev()
                        .take(4)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    request = request.header("SplitSDKClientKey", tail);
                }
                "Accept-Encoding" => {}
                _ => request = request.header(*name, value.as_str()),
            }
        }
        let response = request.call().map_err(|e| self.classify(redacted, e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(status_error(redacted, status, response.headers()));
        }
        Ok(response.into_body().into_reader())
    }

    /// One GET: the body as text, decompressed when gzip.
    fn get(&self, url: &str) -> Result<String, FetchError> {
        let mut request = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build();
        for (name, value) in &self.headers {
            request = request.header(*name, value.as_str());
        }
        let mut response = request.call().map_err(|e| self.classify(url, e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(status_error(url, status, response.headers()));
        }
        // With its `gzip` feature (on by default) ureq decompresses a `Content-Encoding: gzip`
        // body itself and removes the header; its `limit` counts the bytes on the wire, so the
        // decompressed size is bounded here, while reading.
        let gzip_header = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
        let length = response.body().content_length();
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .reader();
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            limit: self.max_body,
        };
        let bytes = read_bounded(&mut reader, self.max_body, length)
            .map_err(|e| self.classify(url, ureq::Error::from(e)))?
            .ok_or_else(too_large)?;
        decode_body(bytes, gzip_header, url, self.max_body)
    }

    fn classify(&self, url: &str, e: ureq::Error) -> FetchError {
        let url = url.to_string();
        match e {
            ureq::Error::Timeout(_) => FetchError::Timeout {
                url,
                timeout: self.timeout,
            },
            ureq::Error::HostNotFound => FetchError::Unreachable {
                url,
                message: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => FetchError::Unreachable {
                url,
                message: "connection failed".into(),
            },
            ureq::Error::Io(io) => {
                use std::io::ErrorKind as K;
                match io.kind() {
                    K::TimedOut | K::WouldBlock => FetchError::Timeout {
                        url,
                        timeout: self.timeout,
                    },
                    K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::AddrNotAvailable
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NetworkDown => FetchError::Unreachable {
                        url,
                        message: io.to_string(),
                    },
                    _ => FetchError::Transport {
                        url,
                        message: io.to_string(),
                    },
                }
            }
            ureq::Error::BodyExceedsLimit(limit) => FetchError::TooLarge { url, limit },
            ureq::Error::Decompress(encoding, e) => FetchError::Malformed(Error::Parse {
                origin: url,
                line: None,
                message: format!("cannot decompress the {encoding} body: {e}"),
            }),
            e @ (ureq::Error::BadUri(_)
            | ureq::Error::Http(_)
            | ureq::Error::RequireHttpsOnly(_)
            | ureq::Error::InvalidProxyUrl
            | ureq::Error::TlsRequired) => FetchError::Invalid {
                url,
                message: e.to_string(),
            },
            other => FetchError::Transport {
                url,
                message: other.to_string(),
            },
        }
    }
}

/// What an answer other than 2xx means: the key refused (401, 403), the service unavailable
/// for now (408, 429, 5xx, with the delay its `Retry-After` asks for), or the request refused.
fn status_error(url: &str, status: u16, headers: &ureq::http::HeaderMap) -> FetchError {
    let url = url.to_string();
    match status {
        401 | 403 => FetchError::Unauthorized { url, status },
        408 | 429 | 500..=599 => FetchError::Unavailable {
            url,
            status,
            retry_after: headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after),
        },
        _ => FetchError::Rejected { url, status },
    }
}

/// Reads `reader` to its end into a buffer of at most `limit` bytes; `Ok(None)` as soon as
/// the body turns out to be larger (at once when its announced `length` is).
///
/// The buffer grows by doubling, but never past `limit`: a body of `limit` bytes is held in
/// `limit` bytes, not in up to twice as many as `read_to_end` would reserve, and a larger one
/// is never held at all beyond `limit` bytes and one chunk.
pub(crate) fn read_bounded(
    reader: &mut impl Read,
    limit: u64,
    length: Option<u64>,
) -> io::Result<Option<Vec<u8>>> {
    if length.is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let initial = length
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(limit);
    let mut out = Vec::with_capacity(initial);
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(Some(out)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n > limit - out.len() {
            return Ok(None);
        }
        if out.capacity() - out.len() < n {
            let target = (out.len() + n)
                .max(out.capacity().saturating_mul(2))
                .max(READ_CHUNK)
                .min(limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// The body as text: gunzipped when the server said `Content-Encoding: gzip` and the HTTP
/// client did not already decompress it, or when it starts with the gzip magic bytes (a
/// server that compressed twice, or without saying so). Decompression stops beyond `limit`
/// bytes.
pub(crate) fn decode_body(
    bytes: Vec<u8>,
    gzip_header: bool,
    url: &str,
    limit: u64,
) -> Result<String, FetchError> {
    let malformed = |message: String| {
        FetchError::Malformed(Error::Parse {
            origin: url.to_string(),
            line: None,
            message,
        })
    };
    let bytes = if gzip_header || bytes.starts_with(&[0x1f, 0x8b]) {
        let mut decoder = flate2::read::MultiGzDecoder::new(bytes.as_slice());
        read_bounded(&mut decoder, limit, None)
            .map_err(|e| malformed(format!("cannot decompress the gzip body: {e}")))?
            .ok_or_else(|| FetchError::TooLarge {
                url: url.to_string(),
                limit,
            })?
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|e| malformed(format!("body is not UTF-8: {e}")))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (a path segment, or a
/// query value).
pub(crate) fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn api() -> SdkApi {
        let mut c = SyncConfig::for_tests("http://127.0.0.1:9/api/", "secret-key");
        c.machine_ip = Some("10.0.0.1".into());
        c.machine_name = Some("NA".into());
        SdkApi::new(&c, ureq::Agent::new_with_defaults())
    }

    #[test]
    fn urls_have_go_parameter_order() {
        let a = api();
        assert_eq!(
            a.split_changes_url(-1, -1, &[], None),
            "http://127.0.0.1:9/api/splitChanges?s=1.3&since=-1&rbSince=-1"
        );
        assert_eq!(
            a.split_changes_url(5, 7, &["a".into(), "b_c".into()], None),
            "http://127.0.0.1:9/api/splitChanges?s=1.3&since=5&rbSince=7&sets=a,b_c"
        );
        assert_eq!(
            a.split_changes_url(5, 7, &[], Some(9)),
            "http://127.0.0.1:9/api/splitChanges?s=1.3&since=5&rbSince=7&till=9"
        );
        assert_eq!(
            a.segment_changes_url("beta testers/é", 3, None),
            "http://127.0.0.1:9/api/segmentChanges/beta%20testers%2F%C3%A9?since=3"
        );
        assert_eq!(
            a.segment_changes_url("s", 3, Some(4)),
            "http://127.0.0.1:9/api/segmentChanges/s?since=3&till=4"
        );
    }

    #[test]
    fn headers_and_debug_do_not_leak_the_key() {
        let a = api();
        assert!(!format!("{a:?}").contains("secret-key"));
        let names: Vec<&str> = a.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            vec![
                "Authorization",
                "SplitSDKVersion",
                "Accept-Encoding",
                "Cache-Control",
                "SplitSDKMachineIP"
            ]
        );
        assert_eq!(
            a.headers[1].1,
            format!("rust-{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn bodies_plain_or_gzip() {
        let json = r#"{"ff":{"d":[],"s":1,"t":1}}"#;
        let limit = 1 << 20;
        assert_eq!(decode_body(json.into(), false, "u", limit).unwrap(), json);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(json.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode_body(gz.clone(), true, "u", limit).unwrap(), json);
        assert_eq!(decode_body(gz, false, "u", limit).unwrap(), json);
        let e = decode_body(b"not gzip".to_vec(), true, "http://x/y", limit).unwrap_err();
        assert!(matches!(e, FetchError::Malformed(_)));
        assert!(e.to_string().contains("http://x/y"), "{e}");
        assert!(decode_body(vec![0xff, 0xfe], false, "u", limit).is_err());
    }

    /// A body of gzip members of zeros: `members` MiB once decompressed, about a thousandth
    /// of that compressed.
    fn gzip_bomb(members: usize) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 1 << 20]).unwrap();
        let member = gz.finish().unwrap();
        member.repeat(members)
    }

    #[test]
    fn a_body_is_held_in_at_most_the_limit() {
        // Exactly at the limit: accepted, in a buffer no larger than the limit.
        for (len, limit) in [(0, 10), (10, 10), (100_000, 100_000), (100_001, 1 << 20)] {
            let body = vec![b'x'; len];
            let out = read_bounded(&mut body.as_slice(), limit, None)
                .unwrap()
                .unwrap();
            assert_eq!(out.len(), len);
            assert!(
                out.capacity() as u64 <= limit,
                "{} > {limit}",
                out.capacity()
            );
        }
        // One byte more: refused, whatever the announced length.
        let body = vec![b'x'; 100_001];
        assert!(
            read_bounded(&mut body.as_slice(), 100_000, None)
                .unwrap()
                .is_none()
        );
        assert!(
            read_bounded(&mut [].as_slice(), 100_000, Some(100_001))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        // 8 MiB once decompressed, about 8 KiB sent.
        let bomb = gzip_bomb(8);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let e = decode_body(bomb, false, "http://h/api/splitChanges", 1 << 20).unwrap_err();
        assert!(matches!(e, FetchError::TooLarge { limit, .. } if limit == 1 << 20));
        let msg = e.to_string();
        assert!(
            msg.contains("http://h/api/splitChanges") && msg.contains("1,048,576 bytes"),
            "{msg}"
        );
        assert!(msg.contains("max_response_bytes"), "{msg}");
        assert!(!e.is_transient() && !e.is_fatal());
    }

    #[test]
    fn classification() {
        let u = |status| FetchError::Unavailable {
            url: "u".into(),
            status,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert!(u(503).is_transient() && !u(503).is_fatal());
        assert_eq!(u(429).retry_after(), Some(Duration::from_secs(2)));
        assert!(u(429).to_string().contains("Retry-After: 2s"));
        let auth = FetchError::Unauthorized {
            url: "u".into(),
            status: 401,
        };
        assert!(auth.is_fatal() && !auth.is_transient());
        let rejected = FetchError::Rejected {
            url: "u".into(),
            status: 404,
        };
        assert!(!rejected.is_fatal() && !rejected.is_transient());
    }
}
