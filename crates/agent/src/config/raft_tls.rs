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
//! reads and parses the PEM files; both with the store's own rules ([`consensus::TlsSettings`],
//! shared with `pgwarden etcd`'s flags).
//! Both name the key at fault (and the file), so `pgwarden run` and `pgwarden ctl` refuse a
//! bad configuration at start.

use consensus::TlsFiles;
use consensus::TlsSettingNames;
use consensus::TlsSettings;

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

const CLIENT_KEYS: TlsSettingNames = TlsSettingNames {
    cert: "raft.cert_file",
    key: "raft.key_file",
    trusted_ca: "raft.trusted_ca_file",
    client_cert_auth: "raft.client_cert_auth",
    shown_with: "",
};

const PEER_KEYS: TlsSettingNames = TlsSettingNames {
    cert: "raft.peer_cert_file",
    key: "raft.peer_key_file",
    trusted_ca: "raft.peer_trusted_ca_file",
    client_cert_auth: "raft.peer_client_cert_auth",
    shown_with: "",
};

impl RaftConfig {
    /// Whether the etcd API serves TLS (clients use `https://`).
    pub fn api_uses_tls(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Whether the Raft port serves TLS and partners are dialed over TLS.
    pub fn peer_uses_tls(&self) -> bool {
        self.peer_cert_file.is_some()
    }

    fn client_side(&self) -> TlsSettings<'_> {
        TlsSettings {
            cert: self.cert_file.as_deref(),
            key: self.key_file.as_deref(),
            trusted_ca: self.trusted_ca_file.as_deref(),
            client_cert_auth: self.client_cert_auth,
        }
    }

    fn peer_side(&self) -> TlsSettings<'_> {
        TlsSettings {
            cert: self.peer_cert_file.as_deref(),
            key: self.peer_key_file.as_deref(),
            trusted_ca: self.peer_trusted_ca_file.as_deref(),
            client_cert_auth: self.peer_client_cert_auth,
        }
    }

    /// Checks that the TLS keys fit together (no file is read).
    pub fn validate_tls(&self) -> Result<(), ConfigError> {
        for (side, names) in [
            (self.client_side(), &CLIENT_KEYS),
            (self.peer_side(), &PEER_KEYS),
        ] {
            side.refuse_without_certificate(names)
                .map_err(ConfigError::from)?;
            side.check(names).map_err(ConfigError::from)?;
        }
        let peer = self.peer_side();
        if peer.cert.is_some() && peer.trusted_ca.is_none() {
            return Err(ConfigError::Invalid {
                path: PEER_KEYS.trusted_ca.to_owned(),
                reason: format!(
                    "required with {}: partners are dialed over TLS and their certificates \
                     are verified against it",
                    PEER_KEYS.cert
                ),
            });
        }
        Ok(())
    }

    /// Reads and parses every configured TLS file (after [`Self::validate_tls`]); an
    /// unreadable file or unusable PEM is refused naming its key and path.
    pub fn load_tls(&self) -> Result<RaftTls, ConfigError> {
        self.validate_tls()?;
        Ok(RaftTls {
            client: self
                .client_side()
                .load(&CLIENT_KEYS)
                .map_err(ConfigError::from)?,
            peer: self
                .peer_side()
                .load(&PEER_KEYS)
                .map_err(ConfigError::from)?,
        })
    }
}

#[cfg(test)]
#[path = "raft_tls_test.rs"]
mod tests;
