//! TLS material of a member: a certificate and key in PEM, the CA that peers (or clients) must be
//! signed by, and whether the other side must present a certificate.
//!
//! [`TlsFiles::check`] parses everything up front, so a bad file is refused at start with an
//! error that says which part is at fault ([`TlsError`]), never at the first connection.
//! The same material builds the rustls configurations of the peer transport ([`PeerTls`]) and
//! of other listeners ([`TlsFiles::rustls_server_config`]); listeners take them through
//! [`TlsFiles::watch`], so rotated files are used from the next handshake on, as etcd does.
//! The crypto provider is always ring: one provider for the whole process.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reloading::Reloading;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Which part of the TLS material is unusable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate PEM holds no certificate or does not parse.
    #[error("no usable PEM certificate: {0}")]
    Certificate(String),
    /// The key PEM holds no private key or does not parse, or the key does not match the certificate.
    #[error("no usable PEM private key: {0}")]
    Key(String),
    /// The trusted CA PEM holds no certificate usable as a trust anchor.
    #[error("no usable PEM CA certificate: {0}")]
    TrustedCa(String),
    /// A file named by a setting cannot be read or used (the message names setting and path).
    #[error("{0}")]
    Files(String),
}

/// PEM contents of one side's TLS setup (etcd's `--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, or their `--peer-` forms).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This member's certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// CA certificates the other side's certificate must chain to.
    pub trusted_ca_pem: Option<Vec<u8>>,
    /// The other side must present a certificate signed by `trusted_ca_pem` (refused at the handshake otherwise).
    pub client_cert_auth: bool,
    /// Where the material was read from, so a listener re-reads it when the files change
    /// ([`TlsFiles::watch`]); `None` for material given in memory.
    pub sources: Option<TlsSources>,
}

/// The files a [`TlsFiles`] was read from, and what the operator calls them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSources {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trusted_ca: Option<PathBuf>,
    pub names: TlsSettingNames,
}

impl std::fmt::Debug for TlsFiles {
    /// Never prints the key.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsFiles")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("trusted_ca", &self.trusted_ca_pem.is_some())
            .field("client_cert_auth", &self.client_cert_auth)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// What one side's TLS settings are called where the operator gave them — `pgwarden etcd`'s
/// flags (`cert-file`, shown as `--cert-file`) or `pgwarden run`'s keys (`raft.cert_file`) —
/// so that [`TlsSettings`] errors name the setting at fault in the operator's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSettingNames {
    pub cert: &'static str,
    pub key: &'static str,
    pub trusted_ca: &'static str,
    pub client_cert_auth: &'static str,
    /// Put before a name inside a reason: `"--"` for flags, `""` for configuration keys.
    pub shown_with: &'static str,
}

impl TlsSettingNames {
    fn shown(&self, name: &str) -> String {
        format!("{}{name}", self.shown_with)
    }
}

/// One side's TLS settings (client or peer) as given: the file paths and `client_cert_auth`.
#[derive(Debug, Clone, Copy)]
pub struct TlsSettings<'a> {
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub trusted_ca: Option<&'a Path>,
    pub client_cert_auth: bool,
}

/// A TLS setting that cannot be used: which one (as named in [`TlsSettingNames`]) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct TlsSettingError {
    pub setting: &'static str,
    pub reason: String,
}

impl TlsSettings<'_> {
    /// The rules every side follows, without reading a file: certificate and key come
    /// together, and client certificate auth needs a CA to verify against.
    pub fn check(&self, names: &TlsSettingNames) -> Result<(), TlsSettingError> {
        let refuse = |setting, reason: String| Err(TlsSettingError { setting, reason });
        match (self.cert, self.key) {
            (Some(_), None) => {
                return refuse(
                    names.key,
                    format!("required with {}", names.shown(names.cert)),
                );
            }
            (None, Some(_)) => {
                return refuse(
                    names.cert,
                    format!("required with {}", names.shown(names.key)),
                );
            }
            _ => {}
        }
        if self.client_cert_auth && self.trusted_ca.is_none() {
            return refuse(
                names.client_cert_auth,
                format!(
                    "needs {} to verify certificates against",
                    names.shown(names.trusted_ca)
                ),
            );
        }
        Ok(())
    }

    /// Refuses a trusted CA or client certificate auth given without a certificate (they
    /// would do nothing). `pgwarden run`'s keys follow this; etcd's flags do not (etcd accepts
    /// them beside plaintext URLs, and so does `pgwarden etcd`).
    pub fn refuse_without_certificate(
        &self,
        names: &TlsSettingNames,
    ) -> Result<(), TlsSettingError> {
        if self.cert.is_some() {
            return Ok(());
        }
        let setting = if self.client_cert_auth {
            names.client_cert_auth
        } else if self.trusted_ca.is_some() {
            names.trusted_ca
        } else {
            return Ok(());
        };
        Err(TlsSettingError {
            setting,
            reason: format!(
                "needs TLS: give {} and {}",
                names.shown(names.cert),
                names.shown(names.key)
            ),
        })
    }

    /// Checks the settings, then reads and parses the files: `None` without a certificate.
    /// An unreadable file or unusable PEM is refused naming its setting and path.
    pub fn load(&self, names: &TlsSettingNames) -> Result<Option<TlsFiles>, TlsSettingError> {
        self.check(names)?;
        let (Some(cert), Some(key)) = (self.cert, self.key) else {
            return Ok(None);
        };
        let read = |setting: &'static str, path: &Path| {
            std::fs::read(path).map_err(|error| TlsSettingError {
                setting,
                reason: format!("{}: {error}", path.display()),
            })
        };
        let files = TlsFiles {
            cert_pem: read(names.cert, cert)?,
            key_pem: read(names.key, key)?,
            trusted_ca_pem: self
                .trusted_ca
                .map(|path| read(names.trusted_ca, path))
                .transpose()?,
            client_cert_auth: self.client_cert_auth,
            sources: Some(TlsSources {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                trusted_ca: self.trusted_ca.map(Path::to_path_buf),
                names: *names,
            }),
        };
        files.check().map_err(|error| {
            let (setting, path) = match &error {
                TlsError::Certificate(_) | TlsError::Files(_) => (names.cert, cert),
                TlsError::Key(_) => (names.key, key),
                TlsError::TrustedCa(_) => (names.trusted_ca, self.trusted_ca.unwrap_or(cert)),
            };
            TlsSettingError {
                setting,
                reason: format!("{}: {error}", path.display()),
            }
        })?;
        Ok(Some(files))
    }
}

/// ALPN protocols a TLS listener offers: gRPC needs `h2`; the JSON gateway also speaks HTTP/1.1.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Parses every part and checks that the key belongs to the certificate.
    pub fn check(&self) -> Result<(), TlsError> {
        self.rustls_server_config().map(|_| ())
    }

    /// What `build` makes of this material, rebuilt from the files whenever they change (see
    /// [`reloading`]): a listener asks for the current value at each handshake, so a rotated
    /// certificate, key or CA is used by the next connection, while files that cannot be used
    /// (half written, mismatched) leave the previous material in place. Material given in
    /// memory is fixed. The first value is built from the files as they are now; an error
    /// names the setting and file at fault.
    pub fn watch<T: 'static>(
        &self,
        what: &str,
        build: impl Fn(&TlsFiles) -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, TlsError> {
        let Some(sources) = self.sources.clone() else {
            return Ok(Reloading::fixed(what, build(self)?));
        };
        let mut paths = vec![sources.cert.clone(), sources.key.clone()];
        paths.extend(sources.trusted_ca.clone());
        let client_cert_auth = self.client_cert_auth;
        Reloading::new(what, paths, move || {
            let settings = TlsSettings {
                cert: Some(&sources.cert),
                key: Some(&sources.key),
                trusted_ca: sources.trusted_ca.as_deref(),
                client_cert_auth,
            };
            match settings.load(&sources.names) {
                Ok(Some(files)) => build(&files).map_err(|error| {
                    format!(
                        "{} {}: {error}",
                        sources.names.shown(sources.names.cert),
                        sources.cert.display()
                    )
                }),
                Ok(None) => Err("no certificate".to_owned()),
                Err(error) => Err(error.to_string()),
            }
        })
        .map_err(TlsError::Files)
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certificates = CertificateDer::pem_reader_iter(&mut Cursor::new(&self.cert_pem))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::Certificate(error.to_string()))?;
        if certificates.is_empty() {
            return Err(TlsError::Certificate(
                "no CERTIFICATE block found".to_owned(),
            ));
        }
        Ok(certificates)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_reader(&mut Cursor::new(&self.key_pem))
            .map_err(|error| TlsError::Key(error.to_string()))
    }

    /// The trust anchors of `trusted_ca_pem`; `None` when no CA was given.
    fn trusted_roots(&self) -> Result<Option<RootCertStore>, TlsError> {
        self.trusted_ca_pem
            .as_deref()
            .map(trust_anchors)
            .transpose()
    }

    /// A rustls server configuration offering `h2` and `http/1.1`; with `client_cert_auth` a
    /// client without a certificate chaining to `trusted_ca_pem` fails the handshake.
    pub fn rustls_server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let certificates = self.certificates()?;
        let key = self.key()?;
        let roots = self.trusted_roots()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Certificate(error.to_string()))?;
        let builder = if self.client_cert_auth {
            let roots = roots.ok_or_else(|| {
                TlsError::TrustedCa("client certificate authentication needs a CA".to_owned())
            })?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certificates, key)
            .map_err(|error| TlsError::Key(error.to_string()))?;
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A rustls client configuration for dialing peers: their certificate must chain to
    /// `trusted_ca_pem` (no CA: every handshake fails), and this certificate is presented as
    /// the client certificate. Offers `h2` only (the peer transport is gRPC).
    pub fn rustls_client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let roots = self.trusted_roots()?.unwrap_or_else(RootCertStore::empty);
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Certificate(error.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.certificates()?, self.key()?)
            .map_err(|error| TlsError::Key(error.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The trust anchors of a CA PEM: at least one certificate, each usable as a root. Also the
/// check of a CA given without a certificate of this side's own (a client that only verifies
/// its server).
pub fn trust_anchors(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let certificates = CertificateDer::pem_reader_iter(&mut Cursor::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::TrustedCa("no CERTIFICATE block found".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
    }
    Ok(roots)
}

/// TLS of the peer transport: how this member's peer server accepts connections and how its
/// peer clients dial `https://` peer URLs. The default is plaintext both ways.
#[derive(Debug, Clone, Default)]
pub struct PeerTls {
    /// Serve peers over TLS (etcd's `--peer-cert-file`/`--peer-key-file` with an https listen URL).
    pub server: Option<TlsFiles>,
    /// Dial `https://` peers with this: the peer's certificate is verified against
    /// `trusted_ca_pem`, and this member's certificate is presented as its client certificate.
    pub client: Option<TlsFiles>,
}

impl PeerTls {
    /// The peer server's TLS configuration, re-read when its files change; `None` when it
    /// serves plaintext.
    pub(crate) fn server_config(
        &self,
    ) -> Result<Option<Reloading<rustls::ServerConfig>>, TlsError> {
        self.server
            .as_ref()
            .map(|files| files.watch("peer port TLS", TlsFiles::rustls_server_config))
            .transpose()
    }

    /// The TLS configuration for dialing `https://` peers, re-read when its files change;
    /// `None` when this member has no peer certificate.
    pub(crate) fn client_config(
        &self,
    ) -> Result<Option<Reloading<rustls::ClientConfig>>, TlsError> {
        self.client
            .as_ref()
            .map(|files| files.watch("peer client TLS", TlsFiles::rustls_client_config))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: TlsSettingNames = TlsSettingNames {
        cert: "cert-file",
        key: "key-file",
        trusted_ca: "trusted-ca-file",
        client_cert_auth: "client-cert-auth",
        shown_with: "--",
    };

    fn settings<'a>(
        cert: Option<&'a str>,
        key: Option<&'a str>,
        trusted_ca: Option<&'a str>,
        client_cert_auth: bool,
    ) -> TlsSettings<'a> {
        TlsSettings {
            cert: cert.map(Path::new),
            key: key.map(Path::new),
            trusted_ca: trusted_ca.map(Path::new),
            client_cert_auth,
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_setting() {
        let refused = |s: TlsSettings<'_>| s.check(&NAMES).err().map(|e| e.to_string());
        assert_eq!(refused(settings(None, None, None, false)), None);
        assert_eq!(refused(settings(Some("c"), Some("k"), None, false)), None);
        assert_eq!(
            refused(settings(Some("c"), None, None, false)).as_deref(),
            Some("key-file: required with --cert-file")
        );
        assert_eq!(
            refused(settings(None, Some("k"), None, false)).as_deref(),
            Some("cert-file: required with --key-file")
        );
        assert_eq!(
            refused(settings(Some("c"), Some("k"), None, true)).as_deref(),
            Some("client-cert-auth: needs --trusted-ca-file to verify certificates against")
        );
        // Without a certificate these do nothing: refused only where asked.
        let plain = settings(None, None, Some("ca"), true);
        assert!(plain.check(&NAMES).is_ok());
        assert_eq!(
            plain.refuse_without_certificate(&NAMES).err(),
            Some(TlsSettingError {
                setting: "client-cert-auth",
                reason: "needs TLS: give --cert-file and --key-file".to_string(),
            })
        );
    }

    #[test]
    fn an_unreadable_file_is_refused_naming_its_setting_and_path() {
        let error = settings(Some("/nonexistent/c.pem"), Some("k"), None, false)
            .load(&NAMES)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("cert-file: /nonexistent/c.pem"),
            "{error}"
        );
        assert!(
            settings(None, None, None, false)
                .load(&NAMES)
                .unwrap()
                .is_none()
        );
    }
}
