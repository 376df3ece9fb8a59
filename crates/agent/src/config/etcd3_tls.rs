//! TLS to an external etcd cluster (`etcd3:`), with Patroni's keys:
//!
//! * `cacert`: required with https (`protocol: https` or `https://` hosts). The etcd servers'
//!   certificates are verified against this CA only, never the system's CA store.
//! * `cert` + `key`: a client certificate presented to etcd (for its `--client-cert-auth`);
//!   they come together. The key must be unencrypted: `key_password` is refused.
//!
//! With http the three keys would do nothing, so they are refused.
//! [`Etcd3Config::validate_tls`] checks the combinations (no I/O); [`Etcd3Config::tls`] reads
//! and parses the PEM files with the store's own rules ([`consensus::TlsSettings`], as the
//! `raft:` keys are), naming the key and the file at fault.
//! `pgwarden run` and `pgwarden ctl` both connect with [`Etcd3Config::tls`].

use crate::config::RunConfig;

use consensus::TlsSettingNames;
use consensus::TlsSettings;
use dcs::EtcdTls;

use crate::config::ConfigError;
use crate::config::Etcd3Config;

const KEYS: TlsSettingNames = TlsSettingNames {
    cert: "etcd3.cert",
    key: "etcd3.key",
    trusted_ca: "etcd3.cacert",
    // etcd3 has no such key: pgwarden only presents a certificate, the server decides.
    client_cert_auth: "etcd3.client_cert_auth",
    shown_with: "",
};

impl Etcd3Config {
    fn tls_settings(&self) -> TlsSettings<'_> {
        TlsSettings {
            cert: self.cert.as_deref(),
            key: self.key.as_deref(),
            trusted_ca: self.cacert.as_deref(),
            client_cert_auth: false,
        }
    }

    /// Checks that the TLS keys fit the protocol and each other (no file is read).
    pub(crate) fn validate_tls(&self) -> Result<(), ConfigError> {
        if self.key_password.is_some() {
            return Err(RunConfig::invalid(
                "etcd3.key_password",
                "encrypted private keys are not supported: decrypt the key file \
                 (e.g. `openssl pkey -in key.pem -out plain-key.pem`) and drop key_password",
            ));
        }
        if !self.uses_tls() {
            for (path, given) in [
                (KEYS.trusted_ca, self.cacert.is_some()),
                (KEYS.cert, self.cert.is_some()),
                (KEYS.key, self.key.is_some()),
            ] {
                if given {
                    return Err(RunConfig::invalid(
                        path,
                        "only used with protocol: https (or https:// hosts)",
                    ));
                }
            }
            return Ok(());
        }
        if self.cacert.is_none() {
            return Err(RunConfig::invalid(
                KEYS.trusted_ca,
                "required with https: pgwarden verifies the etcd servers' certificates \
                 against this CA only (not the system's CA store)",
            ));
        }
        self.tls_settings().check(&KEYS).map_err(ConfigError::from)
    }

    /// The TLS to connect with: `None` over http. Reads and parses `cacert`, and `cert` +
    /// `key` when given (the key must match the certificate); an unreadable file or unusable
    /// PEM is refused naming its key and path.
    pub fn tls(&self) -> Result<Option<EtcdTls>, ConfigError> {
        self.validate_tls()?;
        let Some(cacert) = self.cacert.as_deref() else {
            return Ok(None);
        };
        if let Some(files) = self.tls_settings().load(&KEYS).map_err(ConfigError::from)? {
            // `load` read and checked the CA too: `cacert` is set.
            let trusted_ca_pem = files.trusted_ca_pem.unwrap_or_default();
            return Ok(Some(EtcdTls {
                trusted_ca_pem,
                client_certificate: Some((files.cert_pem, files.key_pem)),
            }));
        }
        Ok(Some(EtcdTls {
            trusted_ca_pem: crate::config::read_trusted_ca(KEYS.trusted_ca, cacert)?,
            client_certificate: None,
        }))
    }
}
