//! One connection to the configured Redis (standalone, Sentinel or Cluster), owned by one
//! background thread, opened again after a failure. Every command goes through here.

use std::time::{Duration, Instant};

use redis::cluster::{ClusterClientBuilder, ClusterConnection, cluster_pipe};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, ConnectionLike, FromRedisValue, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisError, TlsMode, Value,
};

use super::config::{RedisConfig, Topology};

/// An open connection of either kind.
enum Conn {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => c.as_mut(),
        }
    }
}

/// A lazily opened connection: [`Link::run`] opens it when needed and drops it after an
/// I/O failure, so that the next call connects again.
pub(crate) struct Link {
    config: RedisConfig,
    conn: Option<Conn>,
    /// The cluster slot of the hash tag, where every key lives (Cluster only).
    slot: Option<u16>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("to", &self.config.describe())
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Link {
    pub(crate) fn new(config: RedisConfig) -> Link {
        let slot = match config.topology {
            Topology::Cluster { .. } => Some(key_slot(config.cluster_hash_tag.as_bytes())),
            _ => None,
        };
        Link {
            config,
            conn: None,
            slot,
        }
    }

    /// The deployment, for messages.
    pub(crate) fn describe(&self) -> String {
        self.config.describe()
    }

    /// The prefix of every key (hash tag and user prefix).
    pub(crate) fn key_prefix(&self) -> String {
        self.config.key_prefix()
    }

    /// Runs `f` on the connection (opening it first), with the command timeout cut to
    /// `deadline` when one is given. A failure of the connection drops it.
    fn run<T>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(&mut Conn) -> Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        let timeout = match deadline {
            Some(d) => self
                .config
                .timeout
                .min(d.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(1)),
            None => self.config.timeout,
        };
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(open(&self.config, timeout)?),
        };
        if let Conn::Single(c) = conn {
            c.set_read_timeout(Some(timeout))?;
            c.set_write_timeout(Some(timeout))?;
        }
        let result = f(conn);
        if let Err(e) = &result
            && (e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_cluster_error())
        {
            self.conn = None;
        }
        result
    }

    /// Runs one command.
    pub(crate) fn query<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        deadline: Option<Instant>,
    ) -> Result<T, RedisError> {
        self.run(deadline, |c| cmd.query(c.as_dyn()))
    }

    /// Runs a pipeline (in Cluster mode as a cluster pipeline: every key the Synchronizer
    /// writes is in the hash tag's slot, so it goes to one node).
    pub(crate) fn pipeline<T: FromRedisValue>(
        &mut self,
        pipe: &Pipeline,
        deadline: Option<Instant>,
    ) -> Result<T, RedisError> {
        self.run(deadline, |c| match c {
            Conn::Single(c) => pipe.query(c),
            Conn::Cluster(c) => {
                let mut cluster = cluster_pipe();
                for cmd in pipe.cmd_iter() {
                    cluster.add_command(cmd.clone());
                }
                cluster.query(c)
            }
        })
    }

    /// Every key matching `pattern` (a SCAN glob), by SCAN with a large count; in Cluster
    /// mode on the master of the hash tag's slot, where the Synchronizer puts every key.
    pub(crate) fn scan(&mut self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        let slot = self.slot;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = self.run(None, |c| match (c, slot) {
                (Conn::Cluster(c), Some(slot)) => {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::new(slot, SlotAddr::Master),
                    ));
                    let value: Value = c.route_command(&cmd, route)?;
                    FromRedisValue::from_redis_value(value).map_err(RedisError::from)
                }
                (c, _) => cmd.query(c.as_dyn()),
            })?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

/// Opens a connection as configured.
fn open(config: &RedisConfig, timeout: Duration) -> Result<Conn, RedisError> {
    // A connect never outlasts the deadline of the call that needs it (shutdown's).
    let connect = config.connect_timeout.min(timeout);
    let settings = || {
        let mut s = RedisConnectionInfo::default().set_db(config.db);
        if let Some(u) = &config.username {
            s = s.set_username(u);
        }
        if let Some(p) = &config.password {
            s = s.set_password(p);
        }
        s
    };
    let addr = |host: &str, port: u16| {
        if config.tls {
            ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_string(), port)
        }
    };
    match &config.topology {
        Topology::Url(url) => {
            let info = url.as_str().into_connection_info()?;
            let mut s = info.redis_settings().clone();
            if s.password().is_none()
                && let Some(p) = &config.password
            {
                s = s.set_password(p);
            }
            if s.username().is_none()
                && let Some(u) = &config.username
            {
                s = s.set_username(u);
            }
            let client = redis::Client::open(info.set_redis_settings(s))?;
            Ok(Conn::Single(client.get_connection_with_timeout(connect)?))
        }
        Topology::Host { host, port } => {
            let info = addr(host, *port)
                .into_connection_info()?
                .set_redis_settings(settings());
            let client = redis::Client::open(info)?;
            Ok(Conn::Single(client.get_connection_with_timeout(connect)?))
        }
        Topology::Sentinel { master, sentinels } => {
            let mut b = SentinelClientBuilder::new(
                sentinels.iter().map(|(h, p)| addr(h, *p)),
                master,
                SentinelServerType::Master,
            )?
            .set_client_to_redis_db(config.db);
            if let Some(u) = &config.username {
                b = b.set_client_to_redis_username(u);
            }
            if let Some(p) = &config.password {
                b = b.set_client_to_redis_password(p);
            }
            if config.tls {
                b = b
                    .set_client_to_redis_tls_mode(TlsMode::Secure)
                    .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            }
            let client = b.build()?.get_client()?;
            Ok(Conn::Single(client.get_connection_with_timeout(connect)?))
        }
        Topology::Cluster { nodes } => {
            let mut b = ClusterClientBuilder::new(
                nodes
                    .iter()
                    .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p)),
            )
            .connection_timeout(connect)
            .response_timeout(timeout);
            if let Some(u) = &config.username {
                b = b.username(u);
            }
            if let Some(p) = &config.password {
                b = b.password(p);
            }
            if config.tls {
                b = b.tls(TlsMode::Secure);
            }
            Ok(Conn::Cluster(Box::new(b.build()?.get_connection()?)))
        }
    }
}

/// The Redis Cluster slot of `key` (CRC16-XMODEM mod 16384, of the hash tag's inside when
/// the key has one), as Redis computes it.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_are_those_redis_computes() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{SPLITIO}.SPLITIO.splits.till"),
            key_slot(b"SPLITIO")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
    }
}
