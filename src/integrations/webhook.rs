//! Impressions POSTed to a URL of yours, in the schema of Split's impressions webhook.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ArrayBatcher, DeliveryOptions, Encoded, IntegrationStats, config_error, start_worker};
use crate::delivery::{Endpoint, HttpConfig, HttpTransport, Worker};
use crate::engine::attributes::Attributes;
use crate::error::Error;
use crate::impressions::{Impression, ImpressionListener, SdkMetadata, write_int, write_json_str};

/// Settings of a [`WebhookIntegration`].
///
/// # Examples
/// ```
/// use splitkit::integrations::WebhookConfig;
///
/// let config = WebhookConfig {
///     environment_name: Some("production".into()),
///     headers: vec![("Authorization".into(), "Bearer hook-secret".into())],
///     ..WebhookConfig::new("https://hooks.example.com/split/impressions")
/// };
/// assert_eq!(config.gzip, cfg!(feature = "gzip"));
/// ```
#[derive(Clone)]
pub struct WebhookConfig {
    /// Where batches are POSTed: an absolute `http`/`https` URL, used exactly as given
    /// (path and query included). Required.
    pub url: String,
    /// The `environmentId` of each impression. Default: none (`null`).
    pub environment_id: Option<String>,
    /// The `environmentName` of each impression. Default: none (`null`).
    pub environment_name: Option<String>,
    /// Headers sent with every request, e.g. an `Authorization` of the receiver's. No
    /// `Authorization` header is sent otherwise. Default: none.
    pub headers: Vec<(String, String)>,
    /// Whether bodies are gzip-compressed (`Content-Encoding: gzip`), as Split's own webhook
    /// does. Default: true when the `gzip` feature is on (the default).
    pub gzip: bool,
    /// Queue, batching, retries and shutdown.
    pub delivery: DeliveryOptions,
}

impl WebhookConfig {
    /// A configuration for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            environment_id: None,
            environment_name: None,
            headers: Vec::new(),
            gzip: cfg!(feature = "gzip"),
            delivery: DeliveryOptions::default(),
        }
    }
}

impl Default for WebhookConfig {
    /// No URL (invalid until one is set), every other default.
    fn default() -> Self {
        WebhookConfig::new("")
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("environment_id", &self.environment_id)
            .field("environment_name", &self.environment_name)
            .field("headers (values redacted)", &header_names)
            .field("gzip", &self.gzip)
            .field("delivery", &self.delivery)
            .finish()
    }
}

/// POSTs batches of impressions to a URL as a JSON array, in the schema of Split's own
/// impressions webhook, so receivers written for it work unchanged:
///
/// ```json
/// [{"key":"qa_alice","split":"new_checkout","environmentId":null,"environmentName":"production",
///   "treatment":"on","time":1700000000123,"bucketingKey":"qa_alice","label":"whitelisted",
///   "machineName":"web-1","machineIp":"10.0.0.1","splitVersionNumber":1700000000000,
///   "sdk":"rust","sdkVersion":"0.1.0"}]
/// ```
///
/// An impression given [properties](crate::EvaluationOptions::properties) also has
/// `properties`: the properties object's JSON text, as a string, as on Split's wire.
///
/// Every object has all thirteen fields; those without a value are `null` (`label` with
/// labels disabled, machine fields when not reported, `splitVersionNumber` when unknown,
/// environment fields when not configured). `bucketingKey` is the key that was hashed: the
/// bucketing key, or the matching key when none was given. `sdk` and `sdkVersion` split
/// [`SdkMetadata::sdk_version`] (`rust-0.1.0`) at its first `-`.
///
/// Bodies are gzip-compressed unless [`WebhookConfig::gzip`] is off; only a 2xx answer
/// counts as delivered, with the retry rules of the [module](crate::integrations).
///
/// # Examples
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use splitkit::Client;
/// use splitkit::integrations::{WebhookConfig, WebhookIntegration};
///
/// let webhook = Arc::new(WebhookIntegration::new(WebhookConfig::new(
///     "https://hooks.example.com/split/impressions",
/// ))?);
/// let client = Client::builder("localhost")
///     .split_file("examples/flags.json")
///     .impression_listener(webhook.clone())
///     .build()?;
/// client.get_treatment("qa_alice", "new_checkout", None);
/// client.flush(Duration::from_secs(5)); // delivered to the webhook too
/// # Ok::<(), splitkit::Error>(())
/// ```
pub struct WebhookIntegration {
    worker: Worker<Encoded>,
    environment_id: Option<String>,
    environment_name: Option<String>,
    received: AtomicU64,
}

impl fmt::Debug for WebhookIntegration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookIntegration")
            .field("environment_id", &self.environment_id)
            .field("environment_name", &self.environment_name)
            .finish_non_exhaustive()
    }
}

/// The URL split into the transport's base (`scheme://authority`) and the request path
/// (path and query, as given).
fn split_url(url: &str) -> Option<(String, String)> {
    let uri = url.parse::<ureq::http::Uri>().ok()?;
    let scheme = uri
        .scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    let authority = uri.authority()?.as_str();
    if uri.host().is_none_or(str::is_empty) {
        return None;
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Some((format!("{scheme}://{authority}"), path))
}

impl WebhookIntegration {
    /// Validates `config` and starts the worker (thread `splitkit-webhook`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the field when the URL is not an absolute `http`/`https`
    /// URL, a header name or value is not valid HTTP, gzip is asked for without the `gzip`
    /// feature, or a delivery option is out of range; [`Error::Io`] when the thread cannot
    /// be started.
    ///
    /// # Examples
    /// ```
    /// use splitkit::Error;
    /// use splitkit::integrations::{WebhookConfig, WebhookIntegration};
    ///
    /// let err = WebhookIntegration::new(WebhookConfig::new("hooks.example.com")).unwrap_err();
    /// assert!(matches!(err, Error::Config { option: "WebhookConfig::url", .. }));
    /// ```
    pub fn new(config: WebhookConfig) -> Result<WebhookIntegration, Error> {
        let Some((base, path)) = split_url(&config.url) else {
            return Err(Error::Config {
                option: "WebhookConfig::url",
                message: format!(
                    "must be an absolute http:// or https:// URL, got {:?}",
                    config.url
                ),
            });
        };
        let mut endpoint = Endpoint::new(path);
        for (name, value) in &config.headers {
            let name_ok = ureq::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
            if !name_ok || ureq::http::HeaderValue::from_str(value).is_err() {
                return Err(Error::Config {
                    option: "WebhookConfig::headers",
                    message: format!("header {name:?} is not a valid HTTP header name and value"),
                });
            }
            let reserved = ["content-type", "content-encoding", "content-length"];
            if reserved.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                return Err(Error::Config {
                    option: "WebhookConfig::headers",
                    message: format!("header {name:?} is set by the integration"),
                });
            }
            endpoint = endpoint.header(name.as_str(), value.as_str());
        }
        let http = config
            .delivery
            .http(HttpConfig::builder(base, ""))
            .no_authorization()
            .sdk_headers(false)
            .gzip(config.gzip)
            .build()
            .map_err(|e| config_error("WebhookConfig::url", e))?;
        let worker = start_worker(
            config
                .delivery
                .worker_config("webhook", usize::MAX, 0, "WebhookConfig::delivery")?,
            ArrayBatcher {
                open: b"[",
                close: |out| out.push(b']'),
            },
            HttpTransport::new(http),
            endpoint,
        )?;
        Ok(WebhookIntegration {
            worker,
            environment_id: config.environment_id,
            environment_name: config.environment_name,
            received: AtomicU64::new(0),
        })
    }

    /// Waits until every impression queued before this call is delivered or dropped and
    /// counted; false if that took longer than `timeout`. Call
    /// [`Client::flush`](crate::Client::flush) first to have every impression recorded so
    /// far reach this integration.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.worker.flush(timeout)
    }

    /// Stops accepting impressions, delivers what is queued and stops the worker within
    /// `timeout`; true when it stopped in time. Idempotent. Dropping the integration does
    /// the same with [`DeliveryOptions::shutdown_timeout`].
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.worker.shutdown(timeout)
    }

    /// The delivery counters.
    pub fn stats(&self) -> IntegrationStats {
        let received = self.received.load(Ordering::Relaxed);
        IntegrationStats {
            received,
            dropped_oversized: 0,
            delivery: self.worker.stats(),
        }
    }
}

/// Appends `value` as a JSON string, or `null`.
fn write_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => write_json_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// One impression as an object of Split's webhook schema.
fn encode(
    impression: &Impression,
    metadata: &SdkMetadata,
    environment_id: Option<&str>,
    environment_name: Option<&str>,
) -> Vec<u8> {
    let (sdk, sdk_version) = metadata
        .sdk_version
        .split_once('-')
        .unwrap_or((metadata.sdk_version, ""));
    let mut out = Vec::with_capacity(320 + impression.heap_bytes());
    out.extend_from_slice(br#"{"key":"#);
    write_json_str(&mut out, impression.key());
    out.extend_from_slice(br#","split":"#);
    write_json_str(&mut out, impression.flag());
    out.extend_from_slice(br#","environmentId":"#);
    write_opt_str(&mut out, environment_id);
    out.extend_from_slice(br#","environmentName":"#);
    write_opt_str(&mut out, environment_name);
    out.extend_from_slice(br#","treatment":"#);
    write_json_str(&mut out, impression.treatment());
    out.extend_from_slice(br#","time":"#);
    write_int(&mut out, impression.time());
    out.extend_from_slice(br#","bucketingKey":"#);
    write_json_str(
        &mut out,
        impression.bucketing_key().unwrap_or(impression.key()),
    );
    out.extend_from_slice(br#","label":"#);
    write_opt_str(&mut out, impression.label());
    out.extend_from_slice(br#","machineName":"#);
    write_opt_str(&mut out, metadata.machine_name.as_deref());
    out.extend_from_slice(br#","machineIp":"#);
    write_opt_str(&mut out, metadata.machine_ip.as_deref());
    out.extend_from_slice(br#","splitVersionNumber":"#);
    match impression.change_number() {
        Some(c) => write_int(&mut out, c),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","sdk":"#);
    write_json_str(&mut out, sdk);
    out.extend_from_slice(br#","sdkVersion":"#);
    write_json_str(&mut out, sdk_version);
    if let Some(properties) = impression.properties() {
        // As on Split's wire: the properties object's JSON text, as a string.
        out.extend_from_slice(br#","properties":"#);
        write_json_str(&mut out, properties);
    }
    out.push(b'}');
    out
}

impl ImpressionListener for WebhookIntegration {
    fn on_impression(
        &self,
        impression: &Impression,
        _: Option<&Attributes>,
        metadata: &SdkMetadata,
    ) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let object = encode(
            impression,
            metadata,
            self.environment_id.as_deref(),
            self.environment_name.as_deref(),
        );
        self.worker.push(object.into_boxed_slice());
    }

    fn flush(&self, timeout: Duration) -> bool {
        WebhookIntegration::flush(self, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impressions::ImpressionFields;

    #[test]
    fn urls_keep_path_and_query() {
        assert_eq!(
            split_url("https://h.example:8443/a/b/?x=1"),
            Some(("https://h.example:8443".into(), "/a/b/?x=1".into()))
        );
        assert_eq!(
            split_url("http://127.0.0.1:9"),
            Some(("http://127.0.0.1:9".into(), "/".into()))
        );
        for bad in ["", "h.example/x", "ftp://h/x", "http://", "/relative"] {
            assert_eq!(split_url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn object_has_every_field_of_the_schema() {
        let fields = ImpressionFields {
            key: "u",
            bucketing_key: None,
            flag: "f",
            treatment: "on",
            label: None,
            change_number: None,
            time: 5,
            disabled: false,
            properties: None,
        };
        let i = Impression::new(fields);
        let meta = SdkMetadata {
            sdk_version: "rust-1.2.3",
            machine_ip: None,
            machine_name: Some("web".into()),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&encode(&i, &meta, None, Some("prod"))).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({
                "key": "u", "split": "f", "environmentId": null, "environmentName": "prod",
                "treatment": "on", "time": 5, "bucketingKey": "u", "label": null,
                "machineName": "web", "machineIp": null, "splitVersionNumber": null,
                "sdk": "rust", "sdkVersion": "1.2.3"
            })
        );
        let with = Impression::new(ImpressionFields {
            properties: Some(r#"{"page":"cart"}"#),
            ..fields
        });
        let v: serde_json::Value =
            serde_json::from_slice(&encode(&with, &meta, None, None)).unwrap_or_default();
        assert_eq!(
            v["properties"], r#"{"page":"cart"}"#,
            "a string, as on Split's wire"
        );
    }

    #[test]
    fn reserved_and_invalid_headers_are_refused() {
        for headers in [
            vec![("Content-Type".to_string(), "text/plain".to_string())],
            vec![("Bad Name".to_string(), "v".to_string())],
            vec![("X-Ok".to_string(), "line\nbreak".to_string())],
        ] {
            let config = WebhookConfig {
                headers,
                ..WebhookConfig::new("http://127.0.0.1:9/hook")
            };
            assert!(matches!(
                WebhookIntegration::new(config),
                Err(Error::Config {
                    option: "WebhookConfig::headers",
                    ..
                })
            ));
        }
    }
}
