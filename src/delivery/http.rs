//! The [`Transport`] trait that workers post through, and its ureq implementation.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::DeliveryError;

/// Largest response body read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// The `User-Agent` of every request the SDK makes: `splitkit/<version>`.
pub(crate) const USER_AGENT: &str = concat!("splitkit/", env!("CARGO_PKG_VERSION"));

/// The settings every ureq agent of the SDK starts from, the one place they are made:
/// `User-Agent: splitkit/<version>` ([`USER_AGENT`]), every HTTP status returned as an
/// answer (not an error), and no redirects (a redirected POST would be replayed as GET:
/// the 3xx is reported instead). Callers add their timeouts.
///
/// [`HttpTransport`] builds its agent from here, and the synchronizer's requests go
/// through that agent.
pub(crate) fn agent_config() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .user_agent(USER_AGENT)
        .http_status_as_error(false)
        .max_redirects(0)
}

/// Where a worker posts its batches: a path below the transport's base URL, plus
/// headers that only this endpoint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    path: String,
    headers: Vec<(String, String)>,
}

impl Endpoint {
    /// An endpoint at `path` (appended verbatim to the base URL, e.g. `"/events/bulk"`).
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header sent with every request to this endpoint. Default: none.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The path below the base URL.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The endpoint's own headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// One POST as the worker hands it to a [`Transport`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Request<'a> {
    /// Path below the transport's base URL.
    pub path: &'a str,
    /// The encoded body (JSON).
    pub body: &'a [u8],
    /// Endpoint-specific headers, in addition to the transport's own.
    pub headers: &'a [(String, String)],
    /// When set (during shutdown), the request must give up by this instant.
    pub deadline: Option<Instant>,
}

/// The part of an HTTP answer that delivery decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The delay the `Retry-After` header asked for (seconds or an HTTP-date), if any.
    pub retry_after: Option<Duration>,
}

impl Response {
    /// A response with `status` and no `Retry-After`.
    #[cfg(test)]
    pub fn new(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A request that produced no HTTP answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be made (refused, reset, host not found).
    #[error("could not connect")]
    Connect(#[source] BoxError),
    /// A connect or request timeout, or the request deadline, passed.
    #[error("request timed out")]
    Timeout(#[source] BoxError),
    /// An I/O or protocol failure after the connection was made.
    #[error("I/O error during request")]
    Io(#[source] BoxError),
    /// The request itself is malformed (bad URL or header); retrying cannot help.
    #[error("invalid request")]
    Invalid(#[source] BoxError),
}

impl TransportError {
    /// Whether a later attempt of the same request may succeed (everything but
    /// [`TransportError::Invalid`]).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, TransportError::Invalid(_))
    }
}

/// Posts request bodies: the one seam between delivery and the network.
///
/// [`HttpTransport`] is the real implementation; tests and integrations can supply
/// their own. A transport is shared (`Arc<dyn Transport>`) by several workers.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Posts `request.body` to `request.path` below this transport's base URL.
    ///
    /// Must return every HTTP status as `Ok` (4xx and 5xx included) and honour
    /// `request.deadline` when set.
    ///
    /// # Errors
    ///
    /// A [`TransportError`] when no HTTP answer was received.
    fn post(&self, request: &Request<'_>) -> Result<Response, TransportError>;
}

/// Settings of an [`HttpTransport`]; built with [`HttpConfig::builder`].
#[derive(Clone)]
pub struct HttpConfig {
    base_url: String,
    sdk_key: String,
    sdk_version: String,
    machine_ip: Option<String>,
    machine_name: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    gzip: bool,
    authorization: Authorization,
    sdk_headers: bool,
}

/// What the `Authorization` header carries.
#[derive(Clone, PartialEq, Eq)]
enum Authorization {
    /// `Bearer <sdk key>` (the default).
    SdkKey,
    /// A value of the caller's, e.g. `Basic …` for a third-party API.
    Value(String),
    /// No `Authorization` header.
    Omitted,
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base_url", &self.base_url)
            .field("sdk_key", &"<redacted>")
            .field("sdk_version", &self.sdk_version)
            .field("machine_ip", &self.machine_ip)
            .field("machine_name", &self.machine_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("gzip", &self.gzip)
            .field(
                "authorization",
                &match self.authorization {
                    Authorization::SdkKey => "Bearer <sdk key>",
                    Authorization::Value(_) => "<redacted>",
                    Authorization::Omitted => "none",
                },
            )
            .field("sdk_headers", &self.sdk_headers)
            .finish()
    }
}

impl HttpConfig {
    /// Default connect timeout: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default overall request timeout: 30 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default `SplitSDKVersion` header value.
    pub const DEFAULT_SDK_VERSION: &'static str = concat!("rust-", env!("CARGO_PKG_VERSION"));

    /// Starts a configuration for `base_url` (e.g. `https://events.split.io/api`)
    /// authenticated with `sdk_key`.
    pub fn builder(base_url: impl Into<String>, sdk_key: impl Into<String>) -> HttpConfigBuilder {
        HttpConfigBuilder {
            config: HttpConfig {
                base_url: base_url.into(),
                sdk_key: sdk_key.into(),
                sdk_version: Self::DEFAULT_SDK_VERSION.to_owned(),
                machine_ip: None,
                machine_name: None,
                connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
                request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
                gzip: false,
                authorization: Authorization::SdkKey,
                sdk_headers: true,
            },
        }
    }

    /// Base URL without a trailing slash.
    #[cfg(test)]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// By-value builder of [`HttpConfig`].
#[derive(Debug, Clone)]
pub struct HttpConfigBuilder {
    config: HttpConfig,
}

impl HttpConfigBuilder {
    /// `SplitSDKVersion` header value. Default: [`HttpConfig::DEFAULT_SDK_VERSION`].
    pub fn sdk_version(mut self, version: impl Into<String>) -> Self {
        self.config.sdk_version = version.into();
        self
    }

    /// `SplitSDKMachineIP` header value. Default: not sent.
    pub fn machine_ip(mut self, ip: impl Into<String>) -> Self {
        self.config.machine_ip = Some(ip.into());
        self
    }

    /// `SplitSDKMachineName` header value. Default: not sent.
    pub fn machine_name(mut self, name: impl Into<String>) -> Self {
        self.config.machine_name = Some(name.into());
        self
    }

    /// Connect timeout. Default: [`HttpConfig::DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Overall timeout of one request. Default: [`HttpConfig::DEFAULT_REQUEST_TIMEOUT`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Compress request bodies with gzip and send `Content-Encoding: gzip`.
    /// Default: false. Needs the `gzip` cargo feature.
    pub fn gzip(mut self, enabled: bool) -> Self {
        self.config.gzip = enabled;
        self
    }

    /// Sends `Authorization: <value>` instead of `Bearer <sdk key>`, for a destination
    /// that authenticates otherwise (e.g. `Basic …`). Default: `Bearer <sdk key>`.
    pub fn authorization(mut self, value: impl Into<String>) -> Self {
        self.config.authorization = Authorization::Value(value.into());
        self
    }

    /// Sends no `Authorization` header. Default: `Bearer <sdk key>`.
    pub fn no_authorization(mut self) -> Self {
        self.config.authorization = Authorization::Omitted;
        self
    }

    /// Whether the Split headers (`SplitSDKVersion`, `SplitSDKMachineIP`,
    /// `SplitSDKMachineName`) are sent; turn off for destinations other than Split.
    /// Default: true.
    pub fn sdk_headers(mut self, enabled: bool) -> Self {
        self.config.sdk_headers = enabled;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Config`] when the base URL is not an absolute `http`/`https` URL,
    /// a header value contains characters HTTP does not allow, a timeout is zero, or
    /// gzip is requested without the `gzip` feature.
    pub fn build(mut self) -> Result<HttpConfig, DeliveryError> {
        let c = &mut self.config;
        c.base_url = validate_base_url(&c.base_url)?.to_owned();
        for value in [Some(&c.sdk_key), Some(&c.sdk_version)]
            .into_iter()
            .chain([c.machine_ip.as_ref(), c.machine_name.as_ref()])
            .flatten()
        {
            if ureq::http::HeaderValue::from_str(value).is_err() {
                return Err(DeliveryError::Config(
                    "sdk key, sdk version and machine headers must be visible ASCII",
                ));
            }
        }
        if let Authorization::Value(value) = &c.authorization
            && ureq::http::HeaderValue::from_str(value).is_err()
        {
            return Err(DeliveryError::Config(
                "the authorization header must be visible ASCII",
            ));
        }
        if c.connect_timeout.is_zero() || c.request_timeout.is_zero() {
            return Err(DeliveryError::Config(
                "HTTP timeouts must be greater than zero",
            ));
        }
        if c.gzip && !cfg!(feature = "gzip") {
            return Err(DeliveryError::Config("gzip needs the `gzip` cargo feature"));
        }
        Ok(self.config)
    }
}

fn validate_base_url(url: &str) -> Result<&str, DeliveryError> {
    let trimmed = url.trim_end_matches('/');
    let valid = trimmed
        .parse::<ureq::http::Uri>()
        .ok()
        .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some());
    match valid {
        Some(_) => Ok(trimmed),
        None => Err(DeliveryError::Config(
            "base URL must be an absolute http:// or https:// URL",
        )),
    }
}

/// The ureq-based [`Transport`]: one shared connection pool for every endpoint.
///
/// Sends `User-Agent: splitkit/<version>`, `Authorization: Bearer <sdk key>` (or the value set with
/// [`HttpConfigBuilder::authorization`], or none), `Content-Type: application/json`,
/// `SplitSDKVersion` and the optional machine headers (unless
/// [`HttpConfigBuilder::sdk_headers`] is off) and each endpoint's own headers.
/// Every HTTP status is returned as a [`Response`]; `Retry-After` (seconds or an HTTP-date) is read.
#[derive(Clone)]
pub struct HttpTransport {
    agent: ureq::Agent,
    base_url: Arc<str>,
    headers: Arc<[(String, String)]>,
    request_timeout: Duration,
    gzip: bool,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base_url", &self.base_url)
            .field("request_timeout", &self.request_timeout)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport with its own connection pool, configured by `config`.
    pub fn new(config: HttpConfig) -> Self {
        let agent = agent_config()
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            .build()
            .new_agent();
        let mut headers = Vec::with_capacity(6);
        match &config.authorization {
            Authorization::SdkKey => headers.push((
                "Authorization".to_owned(),
                format!("Bearer {}", config.sdk_key),
            )),
            Authorization::Value(value) => {
                headers.push(("Authorization".to_owned(), value.clone()));
            }
            Authorization::Omitted => {}
        }
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        if config.sdk_headers {
            headers.push(("SplitSDKVersion".to_owned(), config.sdk_version.clone()));
            if let Some(ip) = &config.machine_ip {
                headers.push(("SplitSDKMachineIP".to_owned(), ip.clone()));
            }
            if let Some(name) = &config.machine_name {
                headers.push(("SplitSDKMachineName".to_owned(), name.clone()));
            }
        }
        if config.gzip {
            headers.push(("Content-Encoding".to_owned(), "gzip".to_owned()));
        }
        Self {
            agent,
            base_url: config.base_url.into(),
            headers: headers.into(),
            request_timeout: config.request_timeout,
            gzip: config.gzip,
        }
    }

    /// The same transport (connection pool, headers, timeouts) under another base URL,
    /// e.g. the telemetry host.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Config`] when `base_url` is not an absolute `http`/`https` URL.
    pub fn with_base_url(&self, base_url: &str) -> Result<Self, DeliveryError> {
        Ok(Self {
            base_url: validate_base_url(base_url)?.into(),
            ..self.clone()
        })
    }

    /// The shared connection pool, for GET requests of the synchronizer.
    pub(crate) fn agent(&self) -> ureq::Agent {
        self.agent.clone()
    }

    fn send(&self, request: &Request<'_>, body: &[u8]) -> Result<Response, TransportError> {
        let url = format!("{}{}", self.base_url, request.path);
        let mut builder = self.agent.post(&url);
        if let Some(deadline) = request.deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(TransportError::Timeout(
                    "deadline passed before sending".into(),
                ));
            }
            builder = builder
                .config()
                .timeout_global(Some(remaining.min(self.request_timeout)))
                .build();
        }
        for (name, value) in self.headers.iter().chain(request.headers) {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut response = builder.send(body).map_err(map_ureq_error)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::backoff::parse_retry_after);
        // Read (and discard) a small body so the connection goes back to the pool. ureq's
        // `limit` counts the bytes on the wire and ureq decompresses a gzip body itself, so
        // the decompressed bytes are bounded too, and never kept.
        let reader = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BODY)
            .reader();
        if let Err(e) = std::io::copy(
            &mut std::io::Read::take(reader, MAX_RESPONSE_BODY),
            &mut std::io::sink(),
        ) {
            log::debug!("ignoring unreadable response body from {url}: {e}");
        }
        Ok(Response {
            status,
            retry_after,
        })
    }
}

impl Transport for HttpTransport {
    fn post(&self, request: &Request<'_>) -> Result<Response, TransportError> {
        if self.gzip {
            let compressed = gzip(request.body)?;
            self.send(request, &compressed)
        } else {
            self.send(request, request.body)
        }
    }
}

#[cfg(feature = "gzip")]
fn gzip(body: &[u8]) -> Result<Vec<u8>, TransportError> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map_err(|e| TransportError::Io(Box::new(e)))
}

#[cfg(not(feature = "gzip"))]
fn gzip(_body: &[u8]) -> Result<Vec<u8>, TransportError> {
    // `HttpConfigBuilder::build` refuses gzip without the feature.
    Err(TransportError::Invalid("gzip feature disabled".into()))
}

fn map_ureq_error(error: ureq::Error) -> TransportError {
    use std::io::ErrorKind;
    match error {
        ureq::Error::Timeout(_) => TransportError::Timeout(Box::new(error)),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            TransportError::Connect(Box::new(error))
        }
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::AddrNotAvailable
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable => TransportError::Connect(Box::new(io)),
            ErrorKind::TimedOut | ErrorKind::WouldBlock => TransportError::Timeout(Box::new(io)),
            _ => TransportError::Io(Box::new(io)),
        },
        ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::RequireHttpsOnly(_)
        | ureq::Error::BodyExceedsLimit(_) => TransportError::Invalid(Box::new(error)),
        other => TransportError::Io(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_is_validated_and_trimmed() {
        let ok = HttpConfig::builder("http://127.0.0.1:1/api/", "k").build();
        assert_eq!(
            ok.map(|c| c.base_url().to_owned()).ok().as_deref(),
            Some("http://127.0.0.1:1/api")
        );
        for bad in ["127.0.0.1/api", "ftp://host/x", "", "http://"] {
            assert!(
                matches!(
                    HttpConfig::builder(bad, "k").build(),
                    Err(DeliveryError::Config(_))
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn header_values_and_timeouts_are_validated() {
        let bad_key = HttpConfig::builder("http://h", "bad\nkey").build();
        assert!(matches!(bad_key, Err(DeliveryError::Config(_))));
        let zero = HttpConfig::builder("http://h", "k")
            .request_timeout(Duration::ZERO)
            .build();
        assert!(matches!(zero, Err(DeliveryError::Config(_))));
    }

    #[cfg(not(feature = "gzip"))]
    #[test]
    fn gzip_needs_the_feature() {
        let config = HttpConfig::builder("http://h", "k").gzip(true).build();
        assert!(matches!(config, Err(DeliveryError::Config(rule)) if rule.contains("gzip")));
    }

    #[test]
    fn debug_output_hides_the_sdk_key() {
        let config = HttpConfig::builder("http://h", "secret-key").build();
        let text = format!("{config:?}");
        assert!(!text.contains("secret-key"), "{text}");
        if let Ok(config) = config {
            let transport = HttpTransport::new(config);
            assert!(!format!("{transport:?}").contains("secret-key"));
        }
    }

    #[test]
    fn authorization_can_be_replaced_or_omitted_and_split_headers_dropped() {
        let names = |builder: HttpConfigBuilder| -> Vec<(String, String)> {
            match builder.build() {
                Ok(config) => HttpTransport::new(config).headers.to_vec(),
                Err(e) => panic!("{e}"),
            }
        };
        let default = names(HttpConfig::builder("http://h", "k").machine_name("m"));
        assert_eq!(default[0], ("Authorization".into(), "Bearer k".into()));
        assert!(default.iter().any(|(n, _)| n == "SplitSDKMachineName"));
        let basic = names(
            HttpConfig::builder("http://h", "")
                .authorization("Basic d3JpdGVrZXk6")
                .machine_name("m")
                .sdk_headers(false),
        );
        assert_eq!(
            basic,
            vec![
                ("Authorization".into(), "Basic d3JpdGVrZXk6".into()),
                ("Content-Type".into(), "application/json".into()),
            ]
        );
        let none = names(HttpConfig::builder("http://h", "k").no_authorization());
        assert!(none.iter().all(|(n, _)| n != "Authorization"));
        let bad = HttpConfig::builder("http://h", "k")
            .authorization("Basic\nx")
            .build();
        assert!(matches!(bad, Err(DeliveryError::Config(rule)) if rule.contains("authorization")));
    }

    #[test]
    fn invalid_errors_are_not_retryable() {
        let e = map_ureq_error(ureq::Error::BadUri("x".into()));
        assert!(!e.is_retryable());
        let e = map_ureq_error(ureq::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(matches!(e, TransportError::Connect(_)));
        assert!(e.is_retryable());
    }

    #[test]
    fn past_deadline_fails_fast_without_network() {
        let config = HttpConfig::builder("http://127.0.0.1:9", "k").build();
        let Ok(config) = config else {
            panic!("valid config rejected");
        };
        let transport = HttpTransport::new(config);
        let request = Request {
            path: "/x",
            body: b"[]",
            headers: &[],
            deadline: Some(Instant::now()),
        };
        assert!(matches!(
            transport.post(&request),
            Err(TransportError::Timeout(_))
        ));
    }
}
