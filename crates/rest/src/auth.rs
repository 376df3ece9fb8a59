//! Access control of the unsafe endpoints (POST, PUT, PATCH, DELETE), in Patroni's order:
//! first the allowlist (403 `Access is denied`), then, over HTTPS with `verify_client`
//! `optional` or `required`, a verified client certificate (403 `client certificate
//! required`), then HTTP Basic credentials (401 with `WWW-Authenticate: Basic
//! realm="Patroni"`). GET, HEAD and OPTIONS are open (`verify_client: required` already
//! refused a client without a certificate at the handshake).

use std::net::{IpAddr, ToSocketAddrs};

/// Who may call the unsafe endpoints (`restapi.authentication`, `restapi.allowlist`,
/// `restapi.allowlist_include_members`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// `restapi.authentication`: the only accepted Basic credentials.
    pub credentials: Option<Credentials>,
    /// `restapi.allowlist`: addresses and networks allowed to call unsafe endpoints.
    pub allowlist: Vec<IpNetwork>,
    /// `restapi.allowlist_include_members`: the members' API hosts are allowed too.
    pub allowlist_include_members: bool,
    /// HTTPS with `restapi.verify_client` `optional` or `required`: the connection must have
    /// presented a verified client certificate.
    pub client_certificate_required: bool,
}

/// A user name and password for HTTP Basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// An address with a prefix length (`10.0.0.0/8`, `::1/128`; a bare address is a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    pub address: IpAddr,
    pub prefix: u8,
}

impl IpNetwork {
    /// Parses an allowlist entry: an address, a CIDR network, or a host name (resolved now;
    /// every address it resolves to is allowed).
    pub fn parse_entry(entry: &str) -> Result<Vec<IpNetwork>, String> {
        let entry = entry.trim();
        if let Some((address, prefix)) = entry.split_once('/') {
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("allowlist entry {entry:?}: not an IP network"))?;
            let prefix: u8 = prefix
                .parse()
                .map_err(|_| format!("allowlist entry {entry:?}: bad prefix length"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(format!(
                    "allowlist entry {entry:?}: prefix longer than {max}"
                ));
            }
            return Ok(vec![IpNetwork { address, prefix }]);
        }
        if let Ok(address) = entry.parse::<IpAddr>() {
            return Ok(vec![IpNetwork::host(address)]);
        }
        let resolved = (entry, 0)
            .to_socket_addrs()
            .map_err(|error| format!("allowlist entry {entry:?}: {error}"))?;
        Ok(resolved.map(|addr| IpNetwork::host(addr.ip())).collect())
    }

    pub fn host(address: IpAddr) -> Self {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        IpNetwork { address, prefix }
    }

    pub fn contains(&self, candidate: IpAddr) -> bool {
        let candidate = canonical(candidate);
        match (canonical(self.address), candidate) {
            (IpAddr::V4(network), IpAddr::V4(candidate)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(candidate) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(candidate)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(candidate) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an unsafe request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 403 `Access is denied`: the client is not on the allowlist.
    NotAllowed,
    /// 403 `client certificate required`: no verified client certificate on the connection.
    NoClientCertificate,
    /// 401: missing or wrong Basic credentials.
    Unauthenticated,
}

impl AccessPolicy {
    /// The allowlist applies (an allowlist or `allowlist_include_members` is configured).
    pub fn restricts_addresses(&self) -> bool {
        !self.allowlist.is_empty() || self.allowlist_include_members
    }

    /// Checks an unsafe request from `peer` with its `Authorization` header; `member_hosts`
    /// are the members' API addresses (used with `allowlist_include_members`);
    /// `verified_certificate` tells whether the connection presented a client certificate the
    /// handshake verified.
    pub fn check(
        &self,
        peer: Option<IpAddr>,
        member_hosts: &[IpAddr],
        verified_certificate: bool,
        authorization: Option<&str>,
    ) -> Result<(), Denied> {
        if self.restricts_addresses() {
            let allowed = peer.is_some_and(|peer| {
                self.allowlist.iter().any(|network| network.contains(peer))
                    || (self.allowlist_include_members
                        && member_hosts
                            .iter()
                            .any(|host| canonical(*host) == canonical(peer)))
            });
            if !allowed {
                return Err(Denied::NotAllowed);
            }
        }
        if self.client_certificate_required && !verified_certificate {
            return Err(Denied::NoClientCertificate);
        }
        if let Some(credentials) = &self.credentials {
            let given = authorization
                .and_then(|value| value.strip_prefix("Basic "))
                .and_then(|encoded| base64_decode(encoded.trim()));
            let expected = format!("{}:{}", credentials.username, credentials.password);
            if given.as_deref() != Some(expected.as_bytes()) {
                return Err(Denied::Unauthenticated);
            }
        }
        Ok(())
    }
}

/// Standard base64 (with or without padding); `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation keeps the 8 bits just completed.
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// Standard base64 with padding (for clients and tests).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_base64() {
        let net = IpNetwork::parse_entry("10.1.0.0/16").unwrap_or_default();
        assert!(net[0].contains("10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(!net[0].contains("10.2.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(IpNetwork::parse_entry("10.0.0.0/40").is_err());
        assert_eq!(base64_encode(b"admin:secret"), "YWRtaW46c2VjcmV0");
        assert_eq!(
            base64_decode("YWRtaW46c2VjcmV0").as_deref(),
            Some(&b"admin:secret"[..])
        );
        assert_eq!(
            base64_decode(&base64_encode(b"ab")).as_deref(),
            Some(&b"ab"[..])
        );
    }
}
