//! Connection caps per client address, shared by the listeners that take
//! strangers' connections (SMTP, HTTP and WebSocket): each connection holds
//! a [`PeerSlot`] for as long as it is open, and an address already holding
//! its cap gets none — so one address cannot take every connection the
//! listener's global cap allows and have everyone else refused.
//!
//! Owns: counting connections per address. Must not touch: what a
//! listener answers when refused.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// Open connections per address, for one listener.
#[derive(Clone, Default)]
pub struct Peers(Arc<DashMap<IpAddr, usize>>);

impl Peers {
    /// A place for `ip` if it holds fewer than `max` connections.
    pub fn take(&self, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut n = self.0.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }

    /// The connections `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.0.get(&ip).map_or(0, |n| *n)
    }
}

/// A connection's place among its address's (released when dropped).
pub struct PeerSlot {
    peers: Peers,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some(mut n) = self.peers.0.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
        }
        self.peers.0.remove_if(&self.ip, |_, n| *n == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_a_place_again_once_one_is_released() {
        let peers = Peers::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let first = peers.take(a, 2).unwrap();
        let _second = peers.take(a, 2).unwrap();
        assert!(peers.take(a, 2).is_none());
        assert!(
            peers.take(b, 2).is_some(),
            "another address is not held back"
        );
        drop(first);
        assert_eq!(peers.held(a), 1);
        assert!(peers.take(a, 2).is_some());
        assert_eq!(peers.held(b), 0, "a released address is forgotten");
    }
}
