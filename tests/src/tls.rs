//! Certificates made for one test run, and the TLS flags and clients that use them.
//!
//! Everything is generated in the test (no checked-in keys): a CA, one certificate every member
//! uses for its client and peer ports (SANs `127.0.0.1` and `localhost`, usable as server and as
//! client certificate, as etcd members use theirs), a client certificate with Common Name `root`
//! (etcd's certificate-based auth names the user by it), and a second, unrelated CA with its own
//! client certificate that the members must refuse.

use std::path::Path;
use std::path::PathBuf;

use anyhow::Context;
use etcd_client::Certificate;
use etcd_client::Identity;
use etcd_client::TlsOptions;
use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::DnType;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::Issuer;
use rcgen::KeyPair;
use rcgen::KeyUsagePurpose;
use rcgen::SanType;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The PEM material of one TLS test run.
#[derive(Debug, Clone)]
pub struct TestCertificates {
    pub ca_pem: String,
    /// Every member's client and peer certificate.
    pub member: CertifiedKey,
    /// What a rotation puts in place of `member`: another key and certificate from the same CA.
    pub rotated_member: CertifiedKey,
    /// A client certificate with Common Name `root`, signed by the CA.
    pub client: CertifiedKey,
    /// A CA the members do not trust.
    pub other_ca_pem: String,
    /// A client certificate (Common Name `root`) signed by the untrusted CA.
    pub other_client: CertifiedKey,
    /// A member certificate signed by the untrusted CA (for a rotation to that CA).
    pub other_member: CertifiedKey,
}

/// Where [`TestCertificates::write`] put the files.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub ca: PathBuf,
    pub member_cert: PathBuf,
    pub member_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

impl TestCertificates {
    pub fn generate() -> anyhow::Result<TestCertificates> {
        let (ca_pem, ca) = certificate_authority("pgwarden test CA")?;
        let (other_ca_pem, other_ca) = certificate_authority("untrusted test CA")?;
        Ok(TestCertificates {
            ca_pem,
            member: leaf(&ca, "member", true)?,
            rotated_member: leaf(&ca, "member-rotated", true)?,
            client: leaf(&ca, "root", false)?,
            other_ca_pem,
            other_client: leaf(&other_ca, "root", false)?,
            other_member: leaf(&other_ca, "member", true)?,
        })
    }

    /// Writes every PEM into `dir` (keys readable by the owner only).
    pub fn write(&self, dir: &Path) -> anyhow::Result<CertificateFiles> {
        let files = CertificateFiles {
            ca: dir.join("ca.pem"),
            member_cert: dir.join("member.pem"),
            member_key: dir.join("member-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
            other_ca: dir.join("other-ca.pem"),
            other_client_cert: dir.join("other-client.pem"),
            other_client_key: dir.join("other-client-key.pem"),
        };
        let contents = [
            (&files.ca, &self.ca_pem),
            (&files.member_cert, &self.member.cert_pem),
            (&files.member_key, &self.member.key_pem),
            (&files.client_cert, &self.client.cert_pem),
            (&files.client_key, &self.client.key_pem),
            (&files.other_ca, &self.other_ca_pem),
            (&files.other_client_cert, &self.other_client.cert_pem),
            (&files.other_client_key, &self.other_client.key_pem),
        ];
        for (path, pem) in contents {
            std::fs::write(path, pem).with_context(|| format!("write {}", path.display()))?;
        }
        Ok(files)
    }

    /// etcd-client TLS options: trust the test CA and present the `root` client certificate.
    pub fn client_tls(&self) -> TlsOptions {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(
                &self.client.cert_pem,
                &self.client.key_pem,
            ))
    }
}

impl CertificateFiles {
    /// etcd's flags for TLS on both ports with client certificate authentication on both.
    pub fn member_flags(&self) -> Vec<String> {
        let cert = self.member_cert.display();
        let key = self.member_key.display();
        let ca = self.ca.display();
        vec![
            format!("--cert-file={cert}"),
            format!("--key-file={key}"),
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth".to_owned(),
            format!("--peer-cert-file={cert}"),
            format!("--peer-key-file={key}"),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".to_owned(),
        ]
    }
}

/// A self-signed CA: its PEM and the issuer that signs leaves.
fn certificate_authority(name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate().context("generate a CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let certificate = params.self_signed(&key).context("self-sign the CA")?;
    Ok((certificate.pem(), Issuer::new(params, key)))
}

/// A leaf certificate signed by `issuer`; a member's (`server`) also carries the loopback SANs.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    server: bool,
) -> anyhow::Result<CertifiedKey> {
    let key = KeyPair::generate().context("generate a key")?;
    let names = if server {
        vec!["localhost".to_owned()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(names).context("certificate parameters")?;
    if server {
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let certificate = params
        .signed_by(&key, issuer)
        .with_context(|| format!("sign the {common_name} certificate"))?;
    Ok(CertifiedKey {
        cert_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    })
}
