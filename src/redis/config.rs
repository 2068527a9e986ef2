//! [`RedisConfig`]: where the Redis that Split's Synchronizer fills is, and how to read it.

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// The Synchronizer's default hash tag for Redis Cluster (`{SPLITIO}`), prepended to the
/// prefix so that every key lives in one slot.
pub const DEFAULT_CLUSTER_HASH_TAG: &str = "{SPLITIO}";

/// Default period between two reads of `SPLITIO.splits.till` (and of the segments' tills).
pub const DEFAULT_REDIS_REFRESH_RATE: Duration = Duration::from_secs(1);

/// Default timeout for opening a connection.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default timeout for one command or pipeline (read and write).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Redis deployment to talk to.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server, by URL (`redis://` or `rediss://`).
    Url(String),
    /// One server, by host and port.
    Host { host: String, port: u16 },
    /// Sentinels, which name the current master of `master`.
    Sentinel {
        master: String,
        sentinels: Vec<(String, u16)>,
    },
    /// Cluster seed nodes (`host:port`).
    Cluster { nodes: Vec<(String, u16)> },
}

/// Consumer mode: definitions are read from, and impressions and events written to, a Redis
/// that Split's Synchronizer keeps (see [`ClientBuilder::redis`](crate::ClientBuilder::redis)).
///
/// Built from [`RedisConfig::url`], [`RedisConfig::host`], [`RedisConfig::sentinel`] or
/// [`RedisConfig::cluster`], then adjusted with the setters.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let redis = splitkit::RedisConfig::host("127.0.0.1", 6379)
///     .db(2)
///     .password("s3cret")
///     .prefix("checkout")
///     .refresh_rate(Duration::from_millis(500));
/// // The password is never printed.
/// assert!(!format!("{redis:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) tls: bool,
    pub(crate) cluster_hash_tag: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) refresh_rate: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topology = match &self.topology {
            Topology::Url(u) => format!("url {}", redact(u)),
            Topology::Host { host, port } => format!("{host}:{port}"),
            Topology::Sentinel { master, sentinels } => {
                format!("sentinel master {master:?} via {}", addrs(sentinels))
            }
            Topology::Cluster { nodes } => format!("cluster {}", addrs(nodes)),
        };
        f.debug_struct("RedisConfig")
            .field("topology", &topology)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .field("refresh_rate", &self.refresh_rate)
            .finish_non_exhaustive()
    }
}

fn addrs(list: &[(String, u16)]) -> String {
    list.iter()
        .map(|(h, p)| format!("{h}:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `url` with the password (anything between `:` and `@` of the authority) replaced.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:<redacted>{}", &url[..scheme_end + 3], &rest[at..])
        }
        None => url.to_string(),
    }
}

impl RedisConfig {
    fn with(topology: Topology) -> RedisConfig {
        RedisConfig {
            topology,
            db: 0,
            username: None,
            password: None,
            prefix: None,
            tls: false,
            cluster_hash_tag: DEFAULT_CLUSTER_HASH_TAG.to_string(),
            connect_timeout: DEFAULT_REDIS_CONNECT_TIMEOUT,
            timeout: DEFAULT_REDIS_TIMEOUT,
            refresh_rate: DEFAULT_REDIS_REFRESH_RATE,
        }
    }

    /// A standalone server by URL: `redis://[user[:password]@]host[:port][/db]`, or
    /// `rediss://` for TLS. Credentials and database in the URL win over the setters.
    pub fn url(url: impl Into<String>) -> RedisConfig {
        RedisConfig::with(Topology::Url(url.into()))
    }

    /// A standalone server by host and port.
    pub fn host(host: impl Into<String>, port: u16) -> RedisConfig {
        RedisConfig::with(Topology::Host {
            host: host.into(),
            port,
        })
    }

    /// A server found through Redis Sentinel: the sentinels' addresses and the name of the
    /// master they watch.
    pub fn sentinel<H: Into<String>>(
        master: impl Into<String>,
        sentinels: impl IntoIterator<Item = (H, u16)>,
    ) -> RedisConfig {
        RedisConfig::with(Topology::Sentinel {
            master: master.into(),
            sentinels: sentinels.into_iter().map(|(h, p)| (h.into(), p)).collect(),
        })
    }

    /// A Redis Cluster, from one or more of its nodes. Keys carry the cluster hash tag
    /// ([`RedisConfig::cluster_hash_tag`]), as the Synchronizer writes them.
    pub fn cluster<H: Into<String>>(nodes: impl IntoIterator<Item = (H, u16)>) -> RedisConfig {
        RedisConfig::with(Topology::Cluster {
            nodes: nodes.into_iter().map(|(h, p)| (h.into(), p)).collect(),
        })
    }

    /// The database number (not for Cluster). Default 0.
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// The ACL user name. Default: none.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password (never logged nor shown in errors). Default: none.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The user prefix the Synchronizer was configured with: keys are
    /// `{prefix}.SPLITIO.…`. Default: none.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// TLS to the servers (implied by a `rediss://` URL), verified against the Mozilla
    /// root certificates. Default off.
    pub fn tls(mut self, enabled: bool) -> Self {
        self.tls = enabled;
        self
    }

    /// The hash tag in front of every key in Cluster mode, as the Synchronizer's
    /// `clusterKeyHashTag`: `{…}` with at least one character inside. Default `{SPLITIO}`.
    pub fn cluster_hash_tag(mut self, tag: impl Into<String>) -> Self {
        self.cluster_hash_tag = tag.into();
        self
    }

    /// Timeout for opening a connection. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout for one command or pipeline. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the definitions are looked at: `SPLITIO.splits.till`,
    /// `SPLITIO.rbsegments.till` and each segment's till are read, and what moved is read
    /// again. Default 1 s.
    pub fn refresh_rate(mut self, period: Duration) -> Self {
        self.refresh_rate = period;
        self
    }

    /// Checks the values; errors name the option and never contain the password.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let err = |option: &'static str, message: String| Err(Error::Config { option, message });
        match &self.topology {
            Topology::Url(u) => {
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                    return err(
                        "redis.url",
                        format!("must start with redis:// or rediss://, got {:?}", redact(u)),
                    );
                }
                if redis::parse_redis_url(u).is_none() {
                    return err("redis.url", format!("{:?} is not a valid URL", redact(u)));
                }
            }
            Topology::Host { host, .. } if host.trim().is_empty() => {
                return err("redis.host", "must not be empty".into());
            }
            Topology::Host { .. } => {}
            Topology::Sentinel { master, sentinels } => {
                if master.trim().is_empty() {
                    return err("redis.sentinel", "the master name must not be empty".into());
                }
                if sentinels.is_empty() {
                    return err("redis.sentinel", "needs at least one sentinel".into());
                }
            }
            Topology::Cluster { nodes } => {
                if nodes.is_empty() {
                    return err("redis.cluster", "needs at least one node".into());
                }
                let t = &self.cluster_hash_tag;
                if t.len() < 3
                    || !t.starts_with('{')
                    || !t.ends_with('}')
                    || t.matches('{').count() != 1
                    || t.matches('}').count() != 1
                {
                    return err(
                        "redis.cluster_hash_tag",
                        format!(
                            "must be one `{{…}}` with at least one character inside, got {t:?}"
                        ),
                    );
                }
            }
        }
        if self.db < 0 {
            return err("redis.db", format!("must not be negative, got {}", self.db));
        }
        for (option, d) in [
            ("redis.connect_timeout", self.connect_timeout),
            ("redis.timeout", self.timeout),
            ("redis.refresh_rate", self.refresh_rate),
        ] {
            if d.is_zero() {
                return err(option, "must be greater than zero".into());
            }
        }
        Ok(())
    }

    /// The prefix of every key: the hash tag (Cluster), then the user prefix, then a dot,
    /// as the Synchronizer's prefixed client builds it.
    pub(crate) fn key_prefix(&self) -> String {
        let tag = match self.topology {
            Topology::Cluster { .. } => self.cluster_hash_tag.as_str(),
            _ => "",
        };
        let prefix = format!("{tag}{}", self.prefix.as_deref().unwrap_or_default());
        if prefix.is_empty() {
            prefix
        } else {
            format!("{prefix}.")
        }
    }

    /// A name for the deployment in messages (no credentials).
    pub(crate) fn describe(&self) -> String {
        match &self.topology {
            Topology::Url(u) => redact(u),
            Topology::Host { host, port } => format!("redis at {host}:{port}"),
            Topology::Sentinel { master, .. } => format!("redis master {master:?} (sentinel)"),
            Topology::Cluster { nodes } => format!("redis cluster {}", addrs(nodes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_redacted_everywhere() {
        let c = RedisConfig::url("redis://ann:hunter2@127.0.0.1:6379/3").password("hunter3");
        let shown = format!("{c:?} {}", c.describe());
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(shown.contains("ann:<redacted>@127.0.0.1:6379/3"), "{shown}");
        let bad = RedisConfig::url("http://ann:hunter2@x").validate();
        let msg = bad.expect_err("not a redis URL").to_string();
        assert!(
            msg.contains("redis.url") && !msg.contains("hunter2"),
            "{msg}"
        );
    }

    #[test]
    fn keys_are_prefixed_as_the_synchronizer_does() {
        assert_eq!(RedisConfig::host("h", 1).key_prefix(), "");
        assert_eq!(RedisConfig::host("h", 1).prefix("app").key_prefix(), "app.");
        let cluster = RedisConfig::cluster([("h", 1)]);
        assert_eq!(cluster.key_prefix(), "{SPLITIO}.");
        assert_eq!(cluster.clone().prefix("app").key_prefix(), "{SPLITIO}app.");
        let tagged = cluster.cluster_hash_tag("{x}");
        assert_eq!(tagged.key_prefix(), "{x}.");
    }

    #[test]
    fn bad_values_name_their_option() {
        let cases = [
            (RedisConfig::host(" ", 1), "redis.host"),
            (RedisConfig::host("h", 1).db(-1), "redis.db"),
            (
                RedisConfig::host("h", 1).refresh_rate(Duration::ZERO),
                "redis.refresh_rate",
            ),
            (RedisConfig::sentinel("", [("h", 1)]), "redis.sentinel"),
            (
                RedisConfig::cluster([("h", 1)]).cluster_hash_tag("SPLITIO"),
                "redis.cluster_hash_tag",
            ),
            (
                RedisConfig::cluster(Vec::<(String, u16)>::new()),
                "redis.cluster",
            ),
        ];
        for (config, option) in cases {
            let msg = config.validate().expect_err(option).to_string();
            assert!(msg.contains(option), "{msg}");
        }
    }
}
