//! The outbound address policy (SSRF protection): connectors never reach private, loopback,
//! link-local, cloud-metadata or otherwise non-public addresses, judged on the address a
//! name RESOLVED to (so a DNS name pointing inside cannot sneak through), unless the
//! operator allow-listed the network (`[network] allow = ["10.1.0.0/16"]`).

use std::net::IpAddr;

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address may not be reached, or `None` when it is public.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                Some("private")
            } else if a.is_link_local() {
                Some("link-local (cloud metadata lives here)")
            } else if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || o[0] == 0 {
                Some("not a unicast address")
            } else if o[0] >= 240 || (o[0] == 192 && o[1] == 0 && o[2] == 0) {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            let seg = a.segments();
            if a.is_loopback() {
                Some("loopback")
            } else if a.is_unspecified() || a.is_multicast() {
                Some("not a unicast address")
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                Some("private")
            } else if (seg[0] & 0xffc0) == 0xfe80 {
                Some("link-local (cloud metadata lives here)")
            } else if seg[0] == 0xfd00 && seg[1] == 0x0ec2 {
                Some("cloud metadata")
            } else {
                None
            }
        }
    }
}

/// The policy connectors apply: `forbidden` unless the address is allow-listed.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    /// `allow` as validated by the configuration (invalid entries are skipped).
    pub fn new(allow: &[String]) -> Self {
        AddressPolicy {
            allow: allow.iter().filter_map(|s| IpNet::parse(s).ok()).collect(),
        }
    }

    /// Everything allowed: for tests that talk to servers on loopback.
    pub fn allow_all() -> Self {
        AddressPolicy {
            allow: vec![
                IpNet::parse("0.0.0.0/0").expect("valid"),
                IpNet::parse("::/0").expect("valid"),
            ],
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match forbidden(ip) {
            Some(why) if !self.allow.iter().any(|n| n.contains(ip)) => Err(format!(
                "refusing to connect to {ip}: a {why} address (allow it under [network] allow if this is intended)"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        let p = AddressPolicy::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
        ] {
            assert!(p.check(ip(bad)).is_err(), "{bad} allowed");
        }
        for good in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "8.8.8.8",
        ] {
            assert!(p.check(ip(good)).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn allow_list_opens_only_its_networks() {
        let p = AddressPolicy::new(&["10.1.0.0/16".into(), "::1".into()]);
        assert!(p.check(ip("10.1.200.3")).is_ok());
        assert!(p.check(ip("10.2.0.1")).is_err());
        assert!(p.check(ip("::1")).is_ok());
        assert!(p.check(ip("127.0.0.1")).is_err());
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("nope").is_err());
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
    }
}
