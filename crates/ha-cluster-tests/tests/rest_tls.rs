//! HTTPS on the REST API of `pgwarden run` (`restapi.certfile`, `keyfile`, `cafile`,
//! `verify_client: required`).
//!
//! Two members serve their REST API over HTTPS only and require a client certificate signed
//! by the test CA (the certificates are generated here and shared with the store TLS tests).
//! A primary bootstraps and a replica streams, read over https; `/primary` answers 200 on the
//! primary to a client trusting the CA, nothing answers plain HTTP or a client without a
//! certificate; both members publish `https://` api_urls; and `pgwarden ctl switchover` moves
//! the primary: ctl posts to the leader over https with the member certificate (the `restapi:`
//! certificate, as Patroni falls back to it without `ctl:` keys), and the candidate's leader
//! race asks its peer's `/patroni` over https the same way. A certificate rotated on disk
//! serves the next connection without a restart.

use std::time::Duration;

use anyhow::Context;
use ha_cluster_tests::tls::Certificates;
use ha_cluster_tests::{Cluster, ClusterOptions, eventually};
use rest::client::RestClient;
use rest::tls::{ClientTls, PemIdentity, ServerVerification};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// (primary index, whether the other member streams from it), read over https.
async fn roles(cluster: &Cluster, client: &RestClient) -> Option<(usize, bool)> {
    let mut primary = None;
    let mut streaming = false;
    for (index, node) in cluster.nodes.iter().enumerate() {
        let url = format!("https://{}/patroni", node.rest_address());
        let status = client.get_json(&url, "/patroni", REQUEST_TIMEOUT).await?;
        if status["state"] == "running" && status["role"] == "primary" {
            primary = Some(index);
        } else if status["role"] == "replica" && status["replication_state"] == "streaming" {
            streaming = true;
        }
    }
    Some((primary?, streaming))
}

async fn code(client: &RestClient, url: &str, path: &str) -> Option<u16> {
    let reply = client
        .request(url, "GET", path, None, None, REQUEST_TIMEOUT)
        .await
        .ok()?;
    Some(reply.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_serve_and_call_each_other_over_https() -> anyhow::Result<()> {
    // Declared before the cluster, so the files outlive the members.
    let certificate_dir = tempfile::tempdir()?;
    let certificates = Certificates::generate()?;
    let files = certificates.write(certificate_dir.path())?;
    let restapi_yaml = format!(
        "certfile: {}\nkeyfile: {}\ncafile: {}\nverify_client: required\n",
        files.cert.display(),
        files.key.display(),
        files.ca.display()
    );
    let cluster = Cluster::start_with(
        2,
        ClusterOptions {
            restapi_yaml,
            ..ClusterOptions::default()
        },
    )?;
    let verification = ServerVerification::TrustedCa(certificates.ca_pem.as_bytes());
    let identity = PemIdentity {
        cert_pem: certificates.member_cert_pem.clone().into_bytes(),
        key_pem: certificates.member_key_pem.clone().into_bytes(),
    };
    let member_client = RestClient::new(Some(ClientTls::new(verification, Some(&identity))?));
    let anonymous_client = RestClient::new(Some(ClientTls::new(verification, None)?));
    let url = |index: usize| format!("https://{}/patroni", cluster.nodes[index].rest_address());

    // Phase 1: a primary bootstraps and the replica streams, as read over https.
    let primary = eventually(Duration::from_secs(40), || async {
        match roles(&cluster, &member_client).await? {
            (primary, true) => Some(primary),
            _ => None,
        }
    })
    .await
    .with_context(|| format!("no primary with a streaming replica:\n{}", cluster.logs()))?;
    let replica = 1 - primary;

    // Phase 2: the health checks answer over https only, to clients with a certificate.
    assert_eq!(
        code(&member_client, &url(primary), "/primary").await,
        Some(200)
    );
    assert_eq!(
        code(&member_client, &url(replica), "/primary").await,
        Some(503)
    );
    assert_eq!(
        code(&anonymous_client, &url(primary), "/primary").await,
        None,
        "verify_client: required refuses a client without a certificate"
    );
    assert_eq!(
        cluster.nodes[primary].http_status("/primary").await,
        None,
        "no plain HTTP beside HTTPS"
    );

    // Phase 3: both members publish https api_urls in their member keys.
    let view = member_client
        .get_json(&url(replica), "/cluster", REQUEST_TIMEOUT)
        .await
        .context("GET /cluster over https")?;
    let api_urls: Vec<String> = view["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|member| member["api_url"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(api_urls.len(), 2, "{view}");
    assert!(
        api_urls
            .iter()
            .all(|api_url| api_url.starts_with("https://")),
        "{api_urls:?}"
    );

    // Phase 4: `pgwarden ctl switchover` reaches the leader over https and the replica takes
    // over after asking its peer over https.
    let (leader_name, candidate) = (
        cluster.nodes[primary].spec.name.clone(),
        cluster.nodes[replica].spec.name.clone(),
    );
    let (exit, stdout, stderr) = ha_cluster_tests::ctl(
        cluster.nodes[replica].config_path(),
        &[
            "switchover",
            "--leader",
            &leader_name,
            "--candidate",
            &candidate,
            "--force",
        ],
    )?;
    assert_eq!(exit, 0, "{stdout}{stderr}\n{}", cluster.logs());
    eventually(Duration::from_secs(30), || async {
        (code(&member_client, &url(replica), "/primary").await == Some(200)).then_some(())
    })
    .await
    .with_context(|| format!("{candidate} did not become primary:\n{}", cluster.logs()))?;

    // Phase 5: the certificate and key rotated on disk (renamed into place) serve the next
    // connection without a restart: a client trusting only the new certificate's CA gets
    // answers, one trusting only the old CA no longer does. Client certificates are still
    // verified against the unchanged `cafile`.
    let rotated = cluster.nodes[primary].rest_address();
    for (path, pem) in [
        (&files.cert, &certificates.other_member_cert_pem),
        (&files.key, &certificates.other_member_key_pem),
    ] {
        let staged = path.with_extension("staged");
        std::fs::write(&staged, pem)?;
        std::fs::rename(&staged, path)?;
    }
    let new_ca = ServerVerification::TrustedCa(certificates.other_ca_pem.as_bytes());
    let new_ca_client = RestClient::new(Some(ClientTls::new(new_ca, Some(&identity))?));
    let rotated_url = format!("https://{rotated}/patroni");
    eventually(Duration::from_secs(10), || async {
        code(&new_ca_client, &rotated_url, "/patroni")
            .await
            .filter(|code| *code == 200)
    })
    .await
    .context("the rotated certificate is not served")?;
    assert_eq!(
        code(&member_client, &rotated_url, "/patroni").await,
        None,
        "the previous certificate is still served"
    );
    Ok(())
}
