//! TLS on both ports of the embedded store of `pgwarden run` (`raft:` TLS keys).
//!
//! Three members start with `cert_file`/`key_file`/`trusted_ca_file` + `client_cert_auth` on
//! the etcd API and the `peer_` set + `peer_client_cert_auth` on the Raft port; the
//! certificates are generated here (a CA and one member certificate with the loopback SANs,
//! usable as server and client certificate). That the members form one store and bootstrap a
//! primary with two streaming replicas at all shows peer TLS both ways; then an etcd client
//! over TLS reads the leader key, a client without a certificate (and a plaintext one) is
//! refused, and `pgwarden ctl -c CONFIG list` reads the cluster over TLS from the run config.
//! A configuration naming a missing certificate file is refused at start with exit code 2.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, ConnectOptions, TlsOptions};
use ha_cluster_tests::tls::{CertificateFiles, Certificates};
use ha_cluster_tests::{Cluster, ClusterOptions, eventually, refused_at_start};

/// The `raft:` TLS lines using `files` on both ports.
fn raft_yaml(files: &CertificateFiles) -> String {
    let (ca, cert, key) = (
        files.ca.display(),
        files.cert.display(),
        files.key.display(),
    );
    format!(
        "cert_file: {cert}\nkey_file: {key}\ntrusted_ca_file: {ca}\nclient_cert_auth: true\n\
         peer_cert_file: {cert}\npeer_key_file: {key}\npeer_trusted_ca_file: {ca}\n\
         peer_client_cert_auth: true\n"
    )
}

async fn connect(endpoint: String, tls: Option<TlsOptions>) -> anyhow::Result<Client> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3));
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    Ok(Client::connect([endpoint], Some(options)).await?)
}

/// Runs `pgwarden ctl -c CONFIG ARGS`; (exit code, stdout and stderr together).
fn ctl(config: &Path, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let (code, stdout, stderr) = ha_cluster_tests::ctl(config, args)?;
    Ok((code, format!("{stdout}{stderr}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_tls_on_both_store_ports() -> anyhow::Result<()> {
    // Declared before the cluster, so the files outlive the members.
    let certificate_dir = tempfile::tempdir()?;
    let certificates = Certificates::generate()?;
    let raft_yaml = raft_yaml(&certificates.write(certificate_dir.path())?);
    let cluster = Cluster::start_with(
        3,
        ClusterOptions {
            raft_yaml,
            ..ClusterOptions::default()
        },
    )?;

    // Phase 1: the members form the store over peer TLS and bootstrap PostgreSQL.
    let primary = cluster.wait_healthy(2, Duration::from_secs(180)).await?;
    let primary_name = cluster.nodes[primary].spec.name.clone();
    let endpoint =
        |index: usize| format!("https://127.0.0.1:{}", cluster.nodes[index].spec.etcd_port);

    // Phase 2: an etcd client with the CA and a client certificate reads the leader key from
    // every member, and sees https peer and client URLs.
    for index in 0..cluster.nodes.len() {
        let mut client = connect(endpoint(index), Some(certificates.client_tls(true))).await?;
        let leader = eventually(Duration::from_secs(30), || {
            let mut client = client.clone();
            let primary_name = primary_name.clone();
            async move {
                let got = client.get("/service/demo/leader", None).await.ok()?;
                let value = got.kvs().first()?.value_str().ok()?.to_owned();
                (value == primary_name).then_some(value)
            }
        })
        .await
        .with_context(|| format!("leader key through member {index}"))?;
        assert_eq!(leader, primary_name);
        let members = client.member_list().await?;
        assert_eq!(members.members().len(), 3, "{members:?}");
        for member in members.members() {
            assert!(
                member
                    .peer_urls()
                    .iter()
                    .all(|url| url.starts_with("https://"))
                    && member
                        .client_urls()
                        .iter()
                        .all(|url| url.starts_with("https://")),
                "{member:?}"
            );
        }
    }

    // Phase 3: client_cert_auth refuses a client without a certificate, and the API serves
    // no plaintext.
    let anonymous = connect(endpoint(0), Some(certificates.client_tls(false))).await;
    if let Ok(mut anonymous) = anonymous {
        let result = anonymous.get("/service/demo/leader", None).await;
        assert!(result.is_err(), "no client certificate: {result:?}");
    }
    let plaintext = connect(
        format!("http://127.0.0.1:{}", cluster.nodes[0].spec.etcd_port),
        None,
    )
    .await;
    if let Ok(mut plaintext) = plaintext {
        let result = plaintext.get("/service/demo/leader", None).await;
        assert!(result.is_err(), "plaintext: {result:?}");
    }

    // Phase 4: `pgwarden ctl` reads the store over TLS with the run configuration's keys.
    let config = cluster.nodes[1].config_path().to_owned();
    let last = std::sync::Mutex::new(String::new());
    let listed = eventually(Duration::from_secs(60), || {
        let config = config.clone();
        let last = &last;
        async move {
            let (code, output) = ctl(&config, &["list"]).ok()?;
            if let Ok(mut last) = last.lock() {
                *last = format!("exit {code}: {output}");
            }
            (code == 0 && output.matches("streaming").count() == 2).then_some(output)
        }
    })
    .await
    .with_context(|| {
        format!(
            "ctl list over TLS; last: {}",
            last.lock().map(|l| l.clone()).unwrap_or_default()
        )
    })?;
    assert!(listed.contains(&primary_name), "{listed}");
    assert!(listed.contains("Leader"), "{listed}");
    Ok(())
}

#[test]
fn a_missing_certificate_file_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.pem");
    refused_at_start(
        dir.path(),
        &format!(
            "raft:\n  data_dir: {dir}/raft\n  self_addr: 127.0.0.1:1\n  cert_file: {missing}\n  \
             key_file: {missing}\n",
            dir = dir.path().display(),
            missing = missing.display(),
        ),
        "raft.cert_file",
        &missing,
    )
}
