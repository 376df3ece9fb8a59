//! TLS of the embedded store (`raft:`), with etcd's TLS flag names as keys:
//!
//! * `cert_file` + `key_file`: the etcd API (`etcd_api`, gRPC and the JSON gateway on one
//!   port) serves only TLS; `trusted_ca_file` is the CA client certificates are checked
//!   against, and `client_cert_auth: true` refuses clients without such a certificate.
//! * `peer_cert_file` + `peer_key_file`: the Raft port serves only TLS and the partners are
//!   dialed over TLS (their peer URLs become `https://`), presenting this certificate;
//!   `peer_trusted_ca_file` is required, since the partners' certificates are verified against
//!   it; `peer_client_cert_auth: true` refuses Raft connections without a certificate it signed.
//!
//! [`RaftConfig::validate_tls`] checks the combinations (no I/O); [`RaftConfig::load_tls`]
//! reads and parses the PEM files with the store's own parser ([`consensus::TlsFiles`]).
//! Both name the key at fault (and the file), so `pgwarden run` and `pgwarden ctl` refuse a
//! bad configuration at start.

use std::path::Path;

use consensus::TlsError;
use consensus::TlsFiles;

use crate::config::ConfigError;
use crate::config::RaftConfig;

/// The loaded TLS material of the embedded store; `None` on a side means plaintext.
#[derive(Debug, Clone, Default)]
pub struct RaftTls {
    /// The etcd API listener's certificate, key, CA and `client_cert_auth`.
    pub client: Option<TlsFiles>,
    /// The Raft port's (served and presented when dialing partners).
    pub peer: Option<TlsFiles>,
}

/// The keys of one side, so one check serves both.
struct SideKeys {
    cert: &'static str,
    key: &'static str,
    trusted_ca: &'static str,
    client_cert_auth: &'static str,
}

const CLIENT_KEYS: SideKeys = SideKeys {
    cert: "raft.cert_file",
    key: "raft.key_file",
    trusted_ca: "raft.trusted_ca_file",
    client_cert_auth: "raft.client_cert_auth",
};

const PEER_KEYS: SideKeys = SideKeys {
    cert: "raft.peer_cert_file",
    key: "raft.peer_key_file",
    trusted_ca: "raft.peer_trusted_ca_file",
    client_cert_auth: "raft.peer_client_cert_auth",
};

/// One side's values.
struct Side<'a> {
    keys: &'static SideKeys,
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
    trusted_ca: Option<&'a Path>,
    client_cert_auth: bool,
}

fn invalid(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl RaftConfig {
    /// Whether the etcd API serves TLS (clients use `https://`).
    pub fn api_uses_tls(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether the Raft port serves TLS and partners are dialed over TLS.
    pub fn peer_uses_tls(&self) -> bool {
        self.peer_cert_file.is_some()
    }

    fn client_side(&self) -> Side<'_> {
        Side {
            keys: &CLIENT_KEYS,
            cert: self.cert_file.as_deref(),
            key: self.key_file.as_deref(),
            trusted_ca: self.trusted_ca_file.as_deref(),
            client_cert_auth: self.client_cert_auth,
        }
    }

    fn peer_side(&self) -> Side<'_> {
        Side {
            keys: &PEER_KEYS,
            cert: self.peer_cert_file.as_deref(),
            key: self.peer_key_file.as_deref(),
            trusted_ca: self.peer_trusted_ca_file.as_deref(),
            client_cert_auth: self.peer_client_cert_auth,
        }
    }

    /// Checks that the TLS keys fit together (no file is read).
    pub fn validate_tls(&self) -> Result<(), ConfigError> {
        self.client_side().validate()?;
        let peer = self.peer_side();
        peer.validate()?;
        if peer.cert.is_some() && peer.trusted_ca.is_none() {
            return Err(invalid(
                PEER_KEYS.trusted_ca,
                format!(
                    "required with {}: partners are dialed over TLS and their certificates \
                     are verified against it",
                    PEER_KEYS.cert
                ),
            ));
        }
        Ok(())
    }

    /// Reads and parses every configured TLS file (after [`Self::validate_tls`]); an
    /// unreadable file or unusable PEM is refused naming its key and path.
    pub fn load_tls(&self) -> Result<RaftTls, ConfigError> {
        self.validate_tls()?;
        Ok(RaftTls {
            client: self.client_side().load()?,
            peer: self.peer_side().load()?,
        })
    }
}

impl Side<'_> {
    fn validate(&self) -> Result<(), ConfigError> {
        let keys = self.keys;
        match (self.cert, self.key) {
            (Some(_), None) => {
                return Err(invalid(keys.key, format!("required with {}", keys.cert)));
            }
            (None, Some(_)) => {
                return Err(invalid(keys.cert, format!("required with {}", keys.key)));
            }
            _ => {}
        }
        if self.cert.is_none() {
            if self.client_cert_auth {
                return Err(invalid(
                    keys.client_cert_auth,
                    format!("needs TLS: give {} and {}", keys.cert, keys.key),
                ));
            }
            if self.trusted_ca.is_some() {
                return Err(invalid(
                    keys.trusted_ca,
                    format!("needs TLS: give {} and {}", keys.cert, keys.key),
                ));
            }
        }
        if self.client_cert_auth && self.trusted_ca.is_none() {
            return Err(invalid(
                keys.client_cert_auth,
                format!("needs {} to verify certificates against", keys.trusted_ca),
            ));
        }
        Ok(())
    }

    fn load(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let (Some(cert), Some(key)) = (self.cert, self.key) else {
            return Ok(None);
        };
        let keys = self.keys;
        let files = TlsFiles {
            cert_pem: read(keys.cert, cert)?,
            key_pem: read(keys.key, key)?,
            trusted_ca_pem: self
                .trusted_ca
                .map(|path| read(keys.trusted_ca, path))
                .transpose()?,
            client_cert_auth: self.client_cert_auth,
        };
        files.check().map_err(|error| {
            let (key_name, path) = match &error {
                TlsError::Certificate(_) => (keys.cert, cert),
                TlsError::Key(_) => (keys.key, key),
                TlsError::TrustedCa(_) => (keys.trusted_ca, self.trusted_ca.unwrap_or(cert)),
            };
            invalid(key_name, format!("{}: {error}", path.display()))
        })?;
        Ok(Some(files))
    }
}

fn read(key_name: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| invalid(key_name, format!("{}: {error}", path.display())))
}

#[cfg(test)]
#[path = "raft_tls_test.rs"]
mod tests;
