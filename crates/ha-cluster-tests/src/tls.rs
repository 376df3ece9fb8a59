//! Certificates generated in the test (rcgen): a CA and one member certificate with the
//! loopback SANs (`localhost`, `127.0.0.1`), usable as server and as client certificate, so
//! one file set serves a store's TLS port and the clients that must present a certificate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use etcd_client::{Certificate, Identity, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The PEM texts of one run: a CA and the certificate every member (and client) uses.
#[derive(Debug, Clone)]
pub struct Certificates {
    pub ca_pem: String,
    pub member_cert_pem: String,
    pub member_key_pem: String,
    /// A second CA, and a member certificate it signed (for a rotation to that CA).
    pub other_ca_pem: String,
    pub other_member_cert_pem: String,
    pub other_member_key_pem: String,
}

/// Where [`Certificates::write`] put the PEM files.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed CA named `name`: its PEM and the issuer of member certificates.
fn certificate_authority(name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let ca_key = KeyPair::generate().context("generate the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).context("self-sign the CA")?;
    Ok((ca.pem(), Issuer::new(ca_params, ca_key)))
}

/// A member certificate (server and client use, loopback SANs) and its key, in PEM.
fn member_certificate(issuer: &Issuer<'static, KeyPair>) -> anyhow::Result<(String, String)> {
    let member_key = KeyPair::generate().context("generate the member key")?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, "member");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let member = params
        .signed_by(&member_key, issuer)
        .context("sign the member certificate")?;
    Ok((member.pem(), member_key.serialize_pem()))
}

impl Certificates {
    pub fn generate() -> anyhow::Result<Certificates> {
        let (ca_pem, issuer) = certificate_authority("pgwarden test CA")?;
        let (member_cert_pem, member_key_pem) = member_certificate(&issuer)?;
        let (other_ca_pem, other_issuer) = certificate_authority("pgwarden second test CA")?;
        let (other_member_cert_pem, other_member_key_pem) = member_certificate(&other_issuer)?;
        Ok(Certificates {
            ca_pem,
            member_cert_pem,
            member_key_pem,
            other_ca_pem,
            other_member_cert_pem,
            other_member_key_pem,
        })
    }

    /// Writes `ca.pem`, `member.pem` and `member-key.pem` into `dir`. The processes that read
    /// them (`pgwarden run`, `pgwarden etcd`) run as the test's user; only PostgreSQL is
    /// switched to the `postgres` OS user, and it never reads these files.
    pub fn write(&self, dir: &Path) -> anyhow::Result<CertificateFiles> {
        let files = CertificateFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("member.pem"),
            key: dir.join("member-key.pem"),
        };
        for (path, pem) in [
            (&files.ca, &self.ca_pem),
            (&files.cert, &self.member_cert_pem),
            (&files.key, &self.member_key_pem),
        ] {
            std::fs::write(path, pem).with_context(|| format!("write {}", path.display()))?;
        }
        Ok(files)
    }

    /// etcd-client TLS trusting the CA, presenting the member certificate when `identity`.
    pub fn client_tls(&self, identity: bool) -> TlsOptions {
        let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if identity {
            tls.identity(Identity::from_pem(
                &self.member_cert_pem,
                &self.member_key_pem,
            ))
        } else {
            tls
        }
    }
}
