//! Who is connecting, and how many connections they (and everyone) may hold.
//!
//! The client's address is the TCP peer's, or, behind a proxy started with
//! `--trust-proxy`, the last address in `X-Forwarded-For` (the one the proxy itself saw;
//! earlier entries are whatever the client chose to send). A loopback peer without
//! `--trust-proxy` is exempt from the per-address limit: it is a local proxy (all users
//! would share its address) or a local load test.
//!
//! Limits are checked before the upgrade, so a refused client costs no session, no
//! buffers and no hub entry: just a 503 with `Retry-After`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

use crate::metrics::Refusal;

/// The TCP peer of a request, put into its extensions by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Where a request comes from, for the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// What the per-address limits count: the IPv4 address, or the IPv6 /64 network (as
    /// its first address). One subscriber usually holds a whole /64, and could otherwise
    /// take a fresh address for every connection.
    pub ip: IpAddr,
    /// Not subject to per-address limits (a loopback peer and no trusted proxy).
    pub exempt: bool,
}

impl ClientAddr {
    /// The client of a request whose peer the accept loop recorded; a request served
    /// without it (in-process tests) has nothing to count against and is exempt.
    pub fn of_request(peer: Option<SocketAddr>, headers: &HeaderMap, trust_proxy: bool) -> Self {
        match peer {
            Some(peer) => Self::of(peer, headers, trust_proxy),
            None => Self {
                ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
                exempt: true,
            },
        }
    }

    pub fn of(peer: SocketAddr, headers: &HeaderMap, trust_proxy: bool) -> Self {
        if !trust_proxy {
            return Self {
                ip: counted(peer.ip()),
                exempt: peer.ip().is_loopback(),
            };
        }
        // Only the very last entry: anything before it came from the client.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
        Self {
            ip: counted(forwarded.unwrap_or(peer.ip())),
            exempt: false,
        }
    }
}

/// The key an address is counted under: IPv4 as it is (an IPv4-mapped IPv6 address as its
/// IPv4 address), IPv6 by its /64.
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the server holds its maximum of {0} connections")]
    Total(usize),
    #[error("this address already holds its maximum of {0} connections")]
    PerAddress(usize),
}

impl Refused {
    /// Which limit refused, for `hubbub_connections_refused_total`.
    pub fn refusal(&self) -> Refusal {
        match self {
            Refused::Total(_) => Refusal::Total,
            Refused::PerAddress(_) => Refusal::PerAddress,
        }
    }
}

/// Counts open WebSocket connections, in total and per client address.
#[derive(Debug, Clone)]
pub struct Connections {
    inner: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_address: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only addresses that hold a connection: entries go when their count reaches zero.
    per_address: HashMap<IpAddr, usize>,
}

/// One counted connection; dropping it gives the place back. Held by every open
/// connection's task, so it keeps only the counts, not the limits.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    /// The address counted against, unless exempt.
    address: Option<IpAddr>,
}

impl Connections {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Counts::default())),
            max_total,
            max_per_address,
        }
    }

    /// Takes a place for a connection from `client`, if there is one.
    pub fn acquire(&self, client: ClientAddr) -> Result<Permit, Refused> {
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let address = (!client.exempt).then_some(client.ip);
        if let Some(ip) = address {
            let held = counts.per_address.entry(ip).or_insert(0);
            if *held >= self.max_per_address {
                return Err(Refused::PerAddress(self.max_per_address));
            }
            *held += 1;
        }
        counts.total += 1;
        Ok(Permit {
            counts: Arc::clone(&self.inner),
            address,
        })
    }

    /// Open connections in total.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        lock(&self.inner)
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // Every update is a counter step: a panic elsewhere cannot leave it inconsistent.
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.address
            && let Some(held) = counts.per_address.get_mut(&ip)
        {
            *held -= 1;
            if *held == 0 {
                counts.per_address.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn client(ip: &str, exempt: bool) -> ClientAddr {
        ClientAddr {
            ip: ip.parse().unwrap(),
            exempt,
        }
    }

    #[test]
    fn the_address_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        // Untrusted: the header is ignored, and a loopback peer is exempt.
        assert_eq!(
            ClientAddr::of(peer, &headers, false),
            client("127.0.0.1", true)
        );
        // Trusted: the last entry, the one the proxy saw; never exempt.
        assert_eq!(
            ClientAddr::of(peer, &headers, true),
            client("203.0.113.7", false)
        );
        // Garbage in the header falls back to the peer.
        let mut junk = HeaderMap::new();
        // An unreadable last entry is not replaced by an earlier (client-written) one.
        junk.append(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, not-an-ip"),
        );
        assert_eq!(
            ClientAddr::of(peer, &junk, true),
            client("127.0.0.1", false)
        );
        let remote: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        assert_eq!(
            ClientAddr::of(remote, &headers, false),
            client("198.51.100.1", false)
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let headers = HeaderMap::new();
        let of = |peer: &str| ClientAddr::of(peer.parse().unwrap(), &headers, false).ip;
        assert_eq!(
            of("[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:4000"),
            of("[2001:db8:1:2::7]:4001")
        );
        assert_eq!(
            of("[2001:db8:1:2::7]:4000"),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(of("[2001:db8:1:2::7]:4000"), of("[2001:db8:1:3::7]:4000"));
        assert_eq!(
            of("[::ffff:203.0.113.7]:4000"),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            of("203.0.113.7:4000"),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Behind a trusted proxy, the forwarded address is counted the same way.
        let mut forwarded = HeaderMap::new();
        forwarded.append(
            "x-forwarded-for",
            HeaderValue::from_static("2001:db8:9:9::1"),
        );
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            ClientAddr::of(peer, &forwarded, true).ip,
            "2001:db8:9:9::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn places_are_counted_per_address_and_in_total_and_given_back() {
        let connections = Connections::new(3, 2);
        let a1 = connections.acquire(client("203.0.113.1", false)).unwrap();
        let _a2 = connections.acquire(client("203.0.113.1", false)).unwrap();
        assert_eq!(
            connections
                .acquire(client("203.0.113.1", false))
                .unwrap_err(),
            Refused::PerAddress(2)
        );
        let _b = connections.acquire(client("203.0.113.2", false)).unwrap();
        assert_eq!(
            connections.acquire(client("127.0.0.1", true)).unwrap_err(),
            Refused::Total(3)
        );
        drop(a1);
        assert_eq!(connections.open(), 2);
        let _a3 = connections.acquire(client("203.0.113.1", false)).unwrap();
        assert!(connections.lock().per_address.len() == 2);
    }
}
