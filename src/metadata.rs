//! What the SDK says about itself and its machine: SDK version, machine IP and name.
//!
//! Detection never touches the network (no DNS query): the name is the host name the
//! operating system reports, the IP the first non-loopback IPv4 address `/etc/hosts` gives
//! that name. Both can be overridden, and are disabled by `ip_addresses_enabled(false)`.

use std::net::Ipv4Addr;

/// The SDK version string sent as `SplitSDKVersion`: `rust-<crate version>`.
pub const SDK_VERSION: &str = concat!("rust-", env!("CARGO_PKG_VERSION"));

/// Machine metadata attached to impressions and requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub(crate) ip: Option<String>,
    pub(crate) name: Option<String>,
}

impl Metadata {
    /// Detected values, with overrides applied; `enabled = false` gives neither.
    pub(crate) fn detect(enabled: bool, ip: Option<String>, name: Option<String>) -> Metadata {
        if !enabled {
            return Metadata {
                ip: None,
                name: None,
            };
        }
        let host = name.clone().or_else(hostname);
        let ip = ip.or_else(|| host.as_deref().and_then(resolve_ipv4));
        let name = host.or_else(|| ip.as_ref().map(|ip| format!("ip-{}", ip.replace('.', "-"))));
        Metadata { ip, name }
    }
}

fn hostname() -> Option<String> {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_proc
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .filter(|s| !s.is_empty())
}

fn resolve_ipv4(host: &str) -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    ipv4_in_hosts(&hosts, host)
}

/// The first non-loopback IPv4 address that a hosts file gives `host`.
fn ipv4_in_hosts(hosts: &str, host: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let ip: Ipv4Addr = words.next()?.parse().ok()?;
        (!ip.is_loopback() && !ip.is_unspecified() && words.any(|w| w == host))
            .then(|| ip.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_and_overridden() {
        assert_eq!(
            Metadata::detect(false, Some("1.2.3.4".into()), None),
            Metadata {
                ip: None,
                name: None
            }
        );
        let m = Metadata::detect(true, Some("10.0.0.7".into()), Some("box".into()));
        assert_eq!(
            (m.ip.as_deref(), m.name.as_deref()),
            (Some("10.0.0.7"), Some("box"))
        );
        assert!(SDK_VERSION.starts_with("rust-"));
        let hosts = "127.0.0.1 localhost box\n::1 box\n# 10.0.0.1 box\n172.17.0.5\tbox other\n";
        assert_eq!(ipv4_in_hosts(hosts, "box").as_deref(), Some("172.17.0.5"));
        assert_eq!(ipv4_in_hosts(hosts, "nope"), None);
    }
}
