//! HTTPS on the REST API (`restapi:`) and to the other members (`ctl:`), with Patroni's keys:
//!
//! * `restapi.certfile` + `restapi.keyfile`: the REST API serves HTTPS only, and the member's
//!   `api_url` is `https://`. `restapi.cafile` is the CA client certificates are verified
//!   against; `restapi.verify_client` is `none` (default), `optional` (a certificate is asked
//!   for and verified when given; unsafe methods need one) or `required` (the handshake fails
//!   without one). `optional`/`required` need `cafile`; `cafile` and `verify_client` need
//!   `certfile`. `keyfile_password` (encrypted keys) and `ciphers` are refused.
//! * `ctl.cacert`, `ctl.certfile` + `ctl.keyfile`, `ctl.insecure`: how this member (the leader
//!   race) and `pgwarden ctl` reach `https://` members. As Patroni, the CA falls back to
//!   `restapi.cafile` and the client certificate to `restapi.certfile`/`keyfile`;
//!   `insecure: true` skips verifying the members' certificates.
//!
//! [`RunConfig::validate_rest_tls`] checks the combinations (no I/O); [`RunConfig::rest_server_tls`]
//! and [`RunConfig::rest_client`] read and parse the PEM files with the store's own rules
//! ([`consensus::TlsSettings`], as the `raft:` and `etcd3:` keys are), naming the key and the
//! file at fault. `RunConfig::load` calls both, so `pgwarden run` and `pgwarden ctl` refuse an
//! unusable file at start.

use std::path::PathBuf;

use consensus::TlsFiles;
use consensus::TlsSettingNames;
use consensus::TlsSettings;
use rest::client::RestClient;
use rest::tls::ClientTls;
use rest::tls::PemIdentity;
use rest::tls::ServerTls;
use rest::tls::ServerVerification;
use rest::tls::VerifyClient;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::config::RunConfig;

/// Patroni's `ctl:` section: how this member and `pgwarden ctl` reach `https://` members.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlConfig {
    /// CA certificates (PEM) the members' certificates are verified against; default
    /// `restapi.cafile`.
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// Client certificate chain (PEM) presented to the members; default `restapi.certfile`.
    #[serde(default)]
    pub certfile: Option<PathBuf>,
    /// The unencrypted private key of `certfile`; default `restapi.keyfile`.
    #[serde(default)]
    pub keyfile: Option<PathBuf>,
    /// Accepted by the parser only to be refused with a clear message.
    #[serde(default)]
    pub keyfile_password: Option<String>,
    /// Do not verify the members' certificates.
    #[serde(default)]
    pub insecure: bool,
    /// HTTP Basic credentials `pgwarden ctl` sends to the unsafe endpoints; default
    /// `restapi.authentication`.
    #[serde(default)]
    pub authentication: Option<crate::config::RestApiAuthentication>,
}

const RESTAPI_KEYS: TlsSettingNames = TlsSettingNames {
    cert: "restapi.certfile",
    key: "restapi.keyfile",
    trusted_ca: "restapi.cafile",
    client_cert_auth: "restapi.verify_client",
    shown_with: "",
};

const CTL_KEYS: TlsSettingNames = TlsSettingNames {
    cert: "ctl.certfile",
    key: "ctl.keyfile",
    trusted_ca: "ctl.cacert",
    // ctl has no such key: it only presents a certificate.
    client_cert_auth: "ctl.verify_client",
    shown_with: "",
};

const ENCRYPTED_KEYS: &str = "encrypted private keys are not supported: decrypt the key file \
     (e.g. `openssl pkey -in key.pem -out plain-key.pem`) and drop keyfile_password";

fn identity(files: &TlsFiles) -> PemIdentity {
    PemIdentity {
        cert_pem: files.cert_pem.clone(),
        key_pem: files.key_pem.clone(),
    }
}

impl RunConfig {
    /// Whether the REST API serves HTTPS (`restapi.certfile`): `api_url` is `https://`.
    pub fn rest_uses_tls(&self) -> bool {
        self.restapi.certfile.is_some()
    }

    /// `http(s)://connect_address/patroni`, published in the member key.
    pub fn api_url(&self) -> String {
        let scheme = if self.rest_uses_tls() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/patroni", self.restapi.connect_address)
    }

    fn restapi_settings(&self) -> TlsSettings<'_> {
        TlsSettings {
            cert: self.restapi.certfile.as_deref(),
            key: self.restapi.keyfile.as_deref(),
            trusted_ca: self.restapi.cafile.as_deref(),
            client_cert_auth: self.restapi.verify_client != VerifyClient::None,
        }
    }

    fn ctl_settings(&self) -> TlsSettings<'_> {
        TlsSettings {
            cert: self.ctl.certfile.as_deref(),
            key: self.ctl.keyfile.as_deref(),
            trusted_ca: self.ctl.cacert.as_deref(),
            client_cert_auth: false,
        }
    }

    /// Checks that the `restapi:` and `ctl:` TLS keys fit together (no file is read).
    pub(crate) fn validate_rest_tls(&self) -> Result<(), ConfigError> {
        if self.restapi.keyfile_password.is_some() {
            return Err(RunConfig::invalid(
                "restapi.keyfile_password",
                ENCRYPTED_KEYS,
            ));
        }
        if self.restapi.ciphers.is_some() {
            return Err(RunConfig::invalid(
                "restapi.ciphers",
                "not supported: pgwarden offers rustls's safe default cipher suites \
                 (TLS 1.2 and 1.3); drop the key",
            ));
        }
        if self.ctl.keyfile_password.is_some() {
            return Err(RunConfig::invalid("ctl.keyfile_password", ENCRYPTED_KEYS));
        }
        let restapi = self.restapi_settings();
        restapi
            .refuse_without_certificate(&RESTAPI_KEYS)
            .map_err(ConfigError::from)?;
        restapi.check(&RESTAPI_KEYS).map_err(ConfigError::from)?;
        self.ctl_settings()
            .check(&CTL_KEYS)
            .map_err(ConfigError::from)
    }

    /// The REST API's TLS (`None`: plain HTTP). Reads and parses `restapi.certfile`,
    /// `keyfile` and `cafile`; an unreadable file or unusable PEM is refused naming its key
    /// and path. The files are read again at the first handshake after one changed (a
    /// rotated certificate needs no restart; files that cannot be used keep the previous).
    pub fn rest_server_tls(&self) -> Result<Option<ServerTls>, ConfigError> {
        self.validate_rest_tls()?;
        let Some(files) = self
            .restapi_settings()
            .load(&RESTAPI_KEYS)
            .map_err(ConfigError::from)?
        else {
            return Ok(None);
        };
        let verify_client = self.restapi.verify_client;
        let config = files
            .watch("REST API TLS", move |files| {
                rest::tls::server_config(
                    &identity(files),
                    files.trusted_ca_pem.as_deref(),
                    verify_client,
                )
                .map_err(|error| consensus::TlsError::Files(error.to_string()))
            })
            .map_err(|error| RunConfig::invalid(RESTAPI_KEYS.cert, error.to_string()))?;
        Ok(Some(ServerTls::reloading(config, verify_client)))
    }

    /// The REST client for the other members: `https://` members are verified against
    /// `ctl.cacert`, else `restapi.cafile` (not at all with `ctl.insecure`), and are shown
    /// `ctl.certfile`/`keyfile`, else the REST API's own certificate. Without any CA (and not
    /// insecure) an `https://` member is refused when asked. Reads and parses the files,
    /// refusing an unusable one naming its key and path.
    pub fn rest_client(&self) -> Result<RestClient, ConfigError> {
        self.validate_rest_tls()?;
        let ctl_files = self
            .ctl_settings()
            .load(&CTL_KEYS)
            .map_err(ConfigError::from)?;
        let restapi_files = self
            .restapi_settings()
            .load(&RESTAPI_KEYS)
            .map_err(ConfigError::from)?;
        let client_identity = ctl_files.as_ref().or(restapi_files.as_ref()).map(identity);
        let trusted_ca = match (&self.ctl.cacert, &ctl_files, &restapi_files) {
            // `load` read and checked `ctl.cacert` with the ctl certificate.
            (Some(_), Some(files), _) => files.trusted_ca_pem.clone(),
            (Some(cacert), None, _) => {
                Some(crate::config::read_trusted_ca(CTL_KEYS.trusted_ca, cacert)?)
            }
            (None, _, Some(files)) => files.trusted_ca_pem.clone(),
            (None, _, None) => None,
        };
        let verification = match (&trusted_ca, self.ctl.insecure) {
            (_, true) => ServerVerification::Insecure,
            (Some(ca_pem), false) => ServerVerification::TrustedCa(ca_pem),
            (None, false) => return Ok(RestClient::default()),
        };
        let tls = ClientTls::new(verification, client_identity.as_ref()).map_err(|error| {
            let key = if self.ctl.certfile.is_some() {
                CTL_KEYS.cert
            } else {
                RESTAPI_KEYS.cert
            };
            RunConfig::invalid(key, error.to_string())
        })?;
        Ok(RestClient::new(Some(tls)))
    }
}

#[cfg(test)]
#[path = "restapi_tls_test.rs"]
mod tests;
