//! The endpoints and credentials of an external etcd cluster (`etcd3:`), chosen as Patroni
//! chooses them: `proxy` (a proxy in front of etcd) wins over `url`, which wins over `hosts`
//! (a list or a comma-separated string), which wins over `host`.
//!
//! A URL (`proxy`, `url`, or an entry of `hosts` written as one) gives its own scheme and may
//! carry `user:password@`; a plain `host[:port]` takes `protocol` (default http). A host
//! without a port gets etcd's client port, 2379, as in Patroni. pgwarden always talks to the
//! endpoints as given (Patroni's `use_proxies: true`); it does not learn further ones from the
//! cluster's member list. DNS SRV discovery (`srv`, `srv_suffix`) is refused.

use super::{ConfigError, Etcd3Config, HostList, RunConfig, split_host_port};

/// etcd's client port, for hosts given without one.
const DEFAULT_PORT: u16 = 2379;

/// One endpoint as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// `http` or `https`.
    scheme: String,
    /// `host:port`.
    host_port: String,
    /// `user:password@` of a URL.
    user: Option<(String, String)>,
}

impl Endpoint {
    /// Parses `entry` (a URL, or `host[:port]` taking `default_scheme`).
    fn parse(entry: &str, default_scheme: &str) -> Result<Endpoint, String> {
        let entry = entry.trim();
        let (scheme, rest) = match entry.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => (default_scheme, entry),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{entry:?}: only http:// and https:// are supported"
            ));
        }
        let rest = rest.split('/').next().unwrap_or_default();
        let (user, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => {
                let Some((name, password)) = userinfo.split_once(':') else {
                    return Err(format!("{entry:?}: the user part must be user:password"));
                };
                (Some((name.to_owned(), password.to_owned())), address)
            }
            None => (None, rest),
        };
        let host_port = if split_host_port(address).is_some() {
            address.to_owned()
        } else if !address.is_empty()
            && (!address.contains(':') || (address.starts_with('[') && address.ends_with(']')))
        {
            format!("{address}:{DEFAULT_PORT}")
        } else {
            return Err(format!("{address:?} is not host:port"));
        };
        Ok(Endpoint {
            scheme: scheme.to_owned(),
            host_port,
            user,
        })
    }

    fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.host_port)
    }
}

impl Etcd3Config {
    /// The key the endpoints come from, and its entries.
    fn endpoint_entries(&self) -> (&'static str, Vec<String>) {
        if let Some(proxy) = &self.proxy {
            return ("etcd3.proxy", vec![proxy.clone()]);
        }
        if let Some(url) = &self.url {
            return ("etcd3.url", vec![url.clone()]);
        }
        let hosts = match (&self.hosts, &self.host) {
            (Some(HostList::List(hosts)), _) => hosts.clone(),
            (Some(HostList::Text(text)), _) => text.split(',').map(str::to_owned).collect(),
            (None, Some(host)) => return ("etcd3.host", vec![host.clone()]),
            (None, None) => Vec::new(),
        };
        let hosts = hosts
            .into_iter()
            .filter(|host| !host.trim().is_empty())
            .collect();
        ("etcd3.hosts", hosts)
    }

    /// The configured endpoints, parsed; `Err` names the key and the entry at fault.
    fn parsed_endpoints(&self) -> Result<Vec<Endpoint>, ConfigError> {
        let (key, entries) = self.endpoint_entries();
        let scheme = self.protocol.as_deref().unwrap_or("http");
        entries
            .iter()
            .map(|entry| Endpoint::parse(entry, scheme).map_err(|e| RunConfig::invalid(key, e)))
            .collect()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, given) in [
            ("etcd3.srv", self.srv.is_some()),
            ("etcd3.srv_suffix", self.srv_suffix.is_some()),
        ] {
            if given {
                return Err(RunConfig::invalid(
                    key,
                    "DNS SRV discovery is not supported: list the endpoints in etcd3.hosts \
                     (or give one in etcd3.url)",
                ));
            }
        }
        match self.protocol.as_deref() {
            None | Some("http") | Some("https") => {}
            Some(other) => {
                return Err(RunConfig::invalid(
                    "etcd3.protocol",
                    format!("{other:?} is not a protocol; use http or https"),
                ));
            }
        }
        let (key, _) = self.endpoint_entries();
        let endpoints = self.parsed_endpoints()?;
        if endpoints.is_empty() {
            return Err(RunConfig::invalid(
                "etcd3.hosts",
                "at least one host:port is required",
            ));
        }
        let https = endpoints
            .iter()
            .filter(|endpoint| endpoint.scheme == "https")
            .count();
        if https != 0 && https != endpoints.len() {
            return Err(RunConfig::invalid(
                key,
                "http:// and https:// hosts are mixed: every host uses the same protocol",
            ));
        }
        match (self.protocol.as_deref(), https != 0) {
            (Some("http"), true) => {
                return Err(RunConfig::invalid(
                    "etcd3.protocol",
                    format!("http, but {key} is https://: give protocol: https or drop it"),
                ));
            }
            (Some("https"), false) => {
                return Err(RunConfig::invalid(
                    "etcd3.protocol",
                    format!("https, but {key} is http://: give protocol: http or drop it"),
                ));
            }
            _ => {}
        }
        match (&self.username, &self.password) {
            (Some(_), None) => {
                return Err(RunConfig::invalid(
                    "etcd3.password",
                    "required with etcd3.username",
                ));
            }
            (None, Some(_)) => {
                return Err(RunConfig::invalid(
                    "etcd3.username",
                    "required with etcd3.password",
                ));
            }
            _ => {}
        }
        self.validate_tls()
    }

    /// The etcd auth credentials (user name, password), when configured: `username` and
    /// `password`, else the `user:password@` of `proxy` or `url`.
    pub fn user(&self) -> Option<(String, String)> {
        if let (Some(name), Some(password)) = (&self.username, &self.password) {
            return Some((name.clone(), password.clone()));
        }
        self.parsed_endpoints()
            .ok()?
            .into_iter()
            .find_map(|endpoint| endpoint.user)
    }

    /// Whether the etcd cluster is reached over TLS: `protocol: https`, or `https://`
    /// endpoints.
    pub fn uses_tls(&self) -> bool {
        self.protocol.as_deref() == Some("https")
            || self
                .endpoints()
                .iter()
                .any(|endpoint| endpoint.starts_with("https://"))
    }

    /// `http://host:port` or `https://host:port` endpoints, without credentials or paths
    /// (empty when they do not parse: `validate` refuses that).
    pub fn endpoints(&self) -> Vec<String> {
        self.parsed_endpoints()
            .map(|endpoints| endpoints.iter().map(Endpoint::url).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (scheme, host:port, user:password) of a parsed entry, or a part of the refusal.
    type Expected = Result<
        (
            &'static str,
            &'static str,
            Option<(&'static str, &'static str)>,
        ),
        &'static str,
    >;

    #[test]
    fn entries_parse_as_patroni_reads_them() {
        let cases: &[(&str, &str, Expected)] = &[
            ("10.0.0.1:2379", "http", Ok(("http", "10.0.0.1:2379", None))),
            ("10.0.0.1", "https", Ok(("https", "10.0.0.1:2379", None))),
            (" etcd-1 ", "http", Ok(("http", "etcd-1:2379", None))),
            ("[::1]:2379", "http", Ok(("http", "[::1]:2379", None))),
            ("[::1]", "http", Ok(("http", "[::1]:2379", None))),
            (
                "https://etcd:2379/",
                "http",
                Ok(("https", "etcd:2379", None)),
            ),
            (
                "http://patroni:secret@etcd:2379",
                "http",
                Ok(("http", "etcd:2379", Some(("patroni", "secret")))),
            ),
            ("unix://etcd:2379", "http", Err("only http:// and https://")),
            ("http://patroni@etcd:2379", "http", Err("user:password")),
            ("etcd:port", "http", Err("is not host:port")),
            ("http://", "http", Err("is not host:port")),
        ];
        for (entry, scheme, expected) in cases {
            let parsed = Endpoint::parse(entry, scheme);
            match (expected, parsed) {
                (Ok((scheme, host_port, user)), Ok(endpoint)) => {
                    assert_eq!(endpoint.scheme, *scheme, "{entry}");
                    assert_eq!(endpoint.host_port, *host_port, "{entry}");
                    assert_eq!(
                        endpoint.user,
                        user.map(|(n, p)| (n.to_owned(), p.to_owned())),
                        "{entry}"
                    );
                }
                (Err(part), Err(message)) => assert!(message.contains(part), "{entry}: {message}"),
                (expected, got) => panic!("{entry}: expected {expected:?}, got {got:?}"),
            }
        }
    }
}
