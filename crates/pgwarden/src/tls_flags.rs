//! etcd's TLS flags for the client and peer ports, their checks, and loading the PEM files.
//!
//! An `https://` URL in `--listen-client-urls` serves that listener over TLS with `--cert-file`
//! and `--key-file`; `--client-cert-auth` makes clients present a certificate signed by
//! `--trusted-ca-file` (refused at the handshake otherwise). The `--peer-` forms do the same for
//! the peer listener, and `https://` peer URLs (advertised or in `--initial-cluster`) are dialed
//! over TLS: the peer's certificate is verified against `--peer-trusted-ca-file` and this member
//! presents its own peer certificate.
//!
//! [`TlsFlags::validate`] is pure (flag combinations only); [`load`] reads and parses the files,
//! and both name the flag (and file) at fault, so `pgwarden etcd` exits 2 before binding anything.
//! Certificates are never generated: `--auto-tls` and `--peer-auto-tls` are refused.

use std::path::PathBuf;

use clap::ArgAction;
use clap::Args;
use consensus::PeerTls;
use consensus::TlsFiles;
use consensus::TlsSettingError;
use consensus::TlsSettingNames;
use consensus::TlsSettings;

use crate::etcd_flags::FlagError;

/// etcd's TLS flags (Go-style booleans: `--client-cert-auth` or `--client-cert-auth=true`).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsFlags {
    /// Path to the client server TLS certificate file (PEM; chain, leaf first).
    #[arg(long, value_name = "PATH", env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,

    /// Path to the client server TLS key file (PEM).
    #[arg(long, value_name = "PATH", env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,

    /// Path to the client server TLS trusted CA certificate file (verifies client certificates).
    #[arg(long, value_name = "PATH", env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Refuse clients without a certificate signed by --trusted-ca-file; with auth enabled, a
    /// request without a token acts as the user named by the certificate's Common Name.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, env = "ETCD_CLIENT_CERT_AUTH")]
    pub client_cert_auth: bool,

    /// Generated self-signed client certificates: not supported (give --cert-file and --key-file).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, env = "ETCD_AUTO_TLS")]
    pub auto_tls: bool,

    /// Path to the peer server TLS certificate file (PEM); also the peer client certificate.
    #[arg(long, value_name = "PATH", env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,

    /// Path to the peer server TLS key file (PEM).
    #[arg(long, value_name = "PATH", env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,

    /// Path to the peer TLS trusted CA file: peers' certificates are verified against it.
    #[arg(long, value_name = "PATH", env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Refuse peers without a certificate signed by --peer-trusted-ca-file.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, env = "ETCD_PEER_CLIENT_CERT_AUTH")]
    pub peer_client_cert_auth: bool,

    /// Generated self-signed peer certificates: not supported (give --peer-cert-file and --peer-key-file).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value_t = false, action = ArgAction::Set, env = "ETCD_PEER_AUTO_TLS")]
    pub peer_auto_tls: bool,
}

/// The file paths of one side (client or peer) once the flags are known to fit together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
}

/// Validated TLS settings: `None` on a side means that side has no certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub client: Option<TlsPaths>,
    pub peer: Option<TlsPaths>,
}

/// Flag names of one side, so one check serves both.
struct SideFlags {
    names: TlsSettingNames,
    auto_tls: &'static str,
}

const CLIENT_FLAGS: SideFlags = SideFlags {
    names: TlsSettingNames {
        cert: "cert-file",
        key: "key-file",
        trusted_ca: "trusted-ca-file",
        client_cert_auth: "client-cert-auth",
        shown_with: "--",
    },
    auto_tls: "auto-tls",
};

const PEER_FLAGS: SideFlags = SideFlags {
    names: TlsSettingNames {
        cert: "peer-cert-file",
        key: "peer-key-file",
        trusted_ca: "peer-trusted-ca-file",
        client_cert_auth: "peer-client-cert-auth",
        shown_with: "--",
    },
    auto_tls: "peer-auto-tls",
};

fn flag_error(error: TlsSettingError) -> FlagError {
    FlagError::new(error.setting, error.reason)
}

/// Where a side's `https://` URLs appear: (flag, first https URL).
pub type HttpsUse = Option<(&'static str, String)>;

impl TlsFlags {
    /// Checks the flag combinations. `client_https` / `peer_https` name the first flag that
    /// gives an `https://` URL for that side's listener; `peer_dial_https` the first https peer
    /// URL this member dials (which needs a CA to verify the peer).
    pub fn validate(
        &self,
        client_https: HttpsUse,
        peer_https: HttpsUse,
        peer_dial_https: HttpsUse,
    ) -> Result<TlsConfig, FlagError> {
        let client = side(
            &CLIENT_FLAGS,
            (
                &self.cert_file,
                &self.key_file,
                &self.trusted_ca_file,
                self.client_cert_auth,
                self.auto_tls,
            ),
            client_https,
        )?;
        let peer = side(
            &PEER_FLAGS,
            (
                &self.peer_cert_file,
                &self.peer_key_file,
                &self.peer_trusted_ca_file,
                self.peer_client_cert_auth,
                self.peer_auto_tls,
            ),
            peer_https.or(peer_dial_https.clone()),
        )?;
        if let Some((flag, url)) = peer_dial_https
            && peer
                .as_ref()
                .is_none_or(|paths| paths.trusted_ca_file.is_none())
        {
            return Err(FlagError::new(
                flag,
                format!(
                    "{url} is dialed over TLS: give --peer-trusted-ca-file to verify peers \
                     (pgwarden does not use the system's CA store)"
                ),
            ));
        }
        Ok(TlsConfig { client, peer })
    }
}

type SideValues<'a> = (
    &'a Option<PathBuf>,
    &'a Option<PathBuf>,
    &'a Option<PathBuf>,
    bool,
    bool,
);

fn side(
    flags: &SideFlags,
    (cert, key, trusted_ca, client_cert_auth, auto_tls): SideValues<'_>,
    https: HttpsUse,
) -> Result<Option<TlsPaths>, FlagError> {
    let names = &flags.names;
    if auto_tls {
        return Err(FlagError::new(
            flags.auto_tls,
            format!(
                "pgwarden does not generate certificates; give --{} and --{}",
                names.cert, names.key
            ),
        ));
    }
    let settings = TlsSettings {
        cert: cert.as_deref(),
        key: key.as_deref(),
        trusted_ca: trusted_ca.as_deref(),
        client_cert_auth,
    };
    settings.check(names).map_err(flag_error)?;
    let paths = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsPaths {
            cert_file: cert.clone(),
            key_file: key.clone(),
            trusted_ca_file: trusted_ca.clone(),
            client_cert_auth,
        }),
        _ => None,
    };
    if let Some((flag, url)) = https
        && paths.is_none()
    {
        return Err(FlagError::new(
            flag,
            format!("{url} uses TLS: give --{} and --{}", names.cert, names.key),
        ));
    }
    Ok(paths)
}

/// The loaded PEM material of both sides.
#[derive(Debug, Clone, Default)]
pub struct LoadedTls {
    /// TLS of every `https://` client listener.
    pub client: Option<TlsFiles>,
    pub peer: PeerTls,
}

/// Reads and parses every TLS file; an unreadable or unusable file is refused naming its flag.
pub fn load(config: &TlsConfig, peer_listener_tls: bool) -> Result<LoadedTls, FlagError> {
    let client = config
        .client
        .as_ref()
        .map(|paths| load_side(&CLIENT_FLAGS, paths))
        .transpose()?;
    let peer_files = config
        .peer
        .as_ref()
        .map(|paths| load_side(&PEER_FLAGS, paths))
        .transpose()?;
    let peer = PeerTls {
        server: peer_files.clone().filter(|_| peer_listener_tls),
        client: peer_files,
    };
    Ok(LoadedTls { client, peer })
}

fn load_side(flags: &SideFlags, paths: &TlsPaths) -> Result<TlsFiles, FlagError> {
    let settings = TlsSettings {
        cert: Some(&paths.cert_file),
        key: Some(&paths.key_file),
        trusted_ca: paths.trusted_ca_file.as_deref(),
        client_cert_auth: paths.client_cert_auth,
    };
    settings
        .load(&flags.names)
        .map_err(flag_error)?
        .ok_or_else(|| FlagError::new(flags.names.cert, "no certificate given"))
}
