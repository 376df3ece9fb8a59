//! Certificates rotated on disk while the members run: replaced as a rotation tool replaces
//! them (each file written beside and renamed into place, the certificate before its key),
//! they serve the next connection on the client and on the peer port, without a restart.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::Certificate;
use etcd_client::GetOptions;
use etcd_client::Identity;
use etcd_client::TlsOptions;
use pgwarden_tests::Cluster;
use pgwarden_tests::cluster::connect_with;
use pgwarden_tests::eventually;
use pgwarden_tests::tls::CertifiedKey;

use super::https;

/// Bound for a member to use rotated files, and for a restarted member to catch up.
const ROTATED_WITHIN: Duration = Duration::from_secs(30);

mod cases {
    use super::*;
    use crate::tls_cluster;
    pgwarden_tests::against_both_targets!(super::tls_cluster() =>
        a_rotated_certificate_serves_the_next_connection,
    );
}

/// pgwarden only: etcd 3.4 re-reads its certificate and key at each handshake but keeps the
/// CA it started with, so its members refuse each other's certificates of the new CA
/// ("certificate signed by unknown authority") until they are restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_follow_a_rotation_to_another_ca_pgwarden() -> anyhow::Result<()> {
    pgwarden_tests::cases::run_case(
        pgwarden_tests::Target::Pgwarden,
        concat!(module_path!(), "::peers_follow_a_rotation_to_another_ca"),
        crate::tls_cluster(),
        |cluster| Box::pin(peers_follow_a_rotation_to_another_ca(cluster)),
    )
    .await
}

/// Writes `contents` beside `path` and renames it into place.
fn replace(path: &Path, contents: &str) -> anyhow::Result<()> {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, contents).with_context(|| format!("write {}", staged.display()))?;
    std::fs::rename(&staged, path).with_context(|| format!("rename onto {}", path.display()))?;
    Ok(())
}

/// Waits until the server on `port` presents `expected` to a client trusting `ca_pem`.
async fn wait_presented(
    port: u16,
    ca_pem: &str,
    identity: &CertifiedKey,
    expected: &CertifiedKey,
) -> anyhow::Result<()> {
    let expected = https::der(&expected.cert_pem)?;
    eventually(
        &format!("port {port} presents the rotated certificate"),
        ROTATED_WITHIN,
        || {
            let expected = expected.clone();
            async move {
                let presented = https::presented_certificate(port, ca_pem, Some(identity)).await?;
                ensure!(presented == expected, "still the previous certificate");
                Ok(())
            }
        },
    )
    .await
}

/// The member certificate and key replaced by another pair from the same CA: the client and
/// peer ports present the new certificate to the next connection, and clients keep working.
async fn a_rotated_certificate_serves_the_next_connection(
    cluster: &mut Cluster,
) -> anyhow::Result<()> {
    let (certificates, files) = cluster.certificates().context("TLS cluster")?.clone();
    let (client_port, peer_port) = {
        let spec = &cluster.member(0).spec;
        (spec.client_port, spec.peer_port)
    };
    let before = https::presented_certificate(
        client_port,
        &certificates.ca_pem,
        Some(&certificates.client),
    )
    .await?;
    ensure!(before == https::der(&certificates.member.cert_pem)?);

    replace(&files.member_cert, &certificates.rotated_member.cert_pem)?;
    replace(&files.member_key, &certificates.rotated_member.key_pem)?;
    for port in [client_port, peer_port] {
        wait_presented(
            port,
            &certificates.ca_pem,
            &certificates.client,
            &certificates.rotated_member,
        )
        .await?;
    }
    let mut client = cluster.member_client(0).await?;
    client.put("tls/rotated", "yes", None).await?;
    let got = client.get("tls/rotated", None).await?;
    ensure!(got.kvs().len() == 1, "{got:?}");
    Ok(())
}

/// A rotation to another CA: first the CA file trusts both CAs while the members take
/// certificates of the new one, then it trusts the new CA alone. A member restarted after
/// that accepts only peers presenting certificates of the new CA, and the others still
/// replicate to it: their peer clients re-read their certificate and CA as their servers do.
async fn peers_follow_a_rotation_to_another_ca(cluster: &mut Cluster) -> anyhow::Result<()> {
    let (certificates, files) = cluster.certificates().context("TLS cluster")?.clone();
    let client_port = cluster.member(0).spec.client_port;
    let both = format!("{}{}", certificates.ca_pem, certificates.other_ca_pem);
    replace(&files.ca, &both)?;
    replace(&files.member_cert, &certificates.other_member.cert_pem)?;
    replace(&files.member_key, &certificates.other_member.key_pem)?;
    wait_presented(
        client_port,
        &certificates.other_ca_pem,
        &certificates.other_client,
        &certificates.other_member,
    )
    .await?;
    replace(&files.ca, &certificates.other_ca_pem)?;

    cluster.member_mut(2).kill();
    cluster.restart(2)?;
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(&certificates.other_ca_pem))
        .identity(Identity::from_pem(
            &certificates.other_client.cert_pem,
            &certificates.other_client.key_pem,
        ));
    let endpoints = cluster.endpoints();
    eventually("a put under the new CA", ROTATED_WITHIN, || {
        let (endpoints, tls) = (endpoints.clone(), tls.clone());
        async move {
            let mut client = connect_with(&endpoints, Some(tls)).await?;
            client.put("tls/new-ca", "yes", None).await?;
            Ok(())
        }
    })
    .await?;
    let restarted = vec![cluster.member(2).spec.client_url()];
    eventually("the restarted member has the put", ROTATED_WITHIN, || {
        let (restarted, tls) = (restarted.clone(), tls.clone());
        async move {
            let mut client = connect_with(&restarted, Some(tls)).await?;
            let got = client
                .get("tls/new-ca", Some(GetOptions::new().with_serializable()))
                .await?;
            ensure!(got.kvs().len() == 1, "not replicated yet: {got:?}");
            Ok(())
        }
    })
    .await
}
