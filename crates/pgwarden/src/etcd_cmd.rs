//! `pgwarden etcd`: a store-only member wired from validated etcd flags.
//!
//! Order at start: bind every listener first (so a taken port fails before any state changes),
//! start the Raft member on the peer listener, then serve the etcd API on the client listener(s).
//! Order at shutdown (SIGINT or SIGTERM, or a listener failing): cancel the one token, so client
//! listeners stop accepting and their open streams end; wait for the serving tasks; then stop the
//! Raft member, which stops openraft and the peer server.

use std::time::Duration;

use anyhow::Context;
use consensus::InitialClusterState;
use consensus::NodeConfig;
use consensus::RaftNode;
use etcd_server::ServerConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::SignalKind;
use tokio::signal::unix::signal;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client_listeners;
use crate::client_listeners::ClientListener;
use crate::etcd_flags::ClusterState;
use crate::etcd_flags::EtcdConfig;
use crate::tls_flags::LoadedTls;

/// Runs the member until a signal or a fatal serving error. `tls` holds the loaded certificates:
/// `https://` client listeners serve TLS with `tls.client`, the peer transport uses `tls.peer`.
pub async fn run(config: EtcdConfig, tls: LoadedTls) -> anyhow::Result<()> {
    if !config.ignored_flags.is_empty() {
        tracing::info!(
            "ignoring etcd flags pgwarden does not implement: {}",
            config.ignored_flags.join(" ")
        );
    }
    let peer_listener = TcpListener::bind(config.listen_peer.addr)
        .await
        .with_context(|| format!("bind --listen-peer-urls {}", config.listen_peer.url))?;
    let client_tls = tls
        .client
        .as_ref()
        .map(etcd_server::tls::ClientTls::new)
        .transpose()
        .context("client TLS (--cert-file, --key-file, --trusted-ca-file)")?;
    let mut client_listeners = Vec::new();
    for listen in &config.listen_client {
        let listener = TcpListener::bind(listen.addr)
            .await
            .with_context(|| format!("bind --listen-client-urls {}", listen.url))?;
        let tls = if listen.is_tls() {
            Some(client_tls.clone().with_context(|| {
                format!("--listen-client-urls {} needs --cert-file", listen.url)
            })?)
        } else {
            None
        };
        client_listeners.push((listen.url.clone(), ClientListener { listener, tls }));
    }

    let node = RaftNode::start_with_tls(node_config(&config), peer_listener, tls.peer)
        .await
        .context("start the Raft member")?;
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", node.member_id()),
        cluster_id = %format!("{:x}", node.cluster_id()),
        data_dir = %config.data_dir.display(),
        "Raft member started"
    );

    wait_for_own_attributes(&node, &config).await;

    let shutdown = CancellationToken::new();
    let mut serving = JoinSet::new();
    let server_config = server_config(&config);
    let urls: Vec<String> = client_listeners
        .iter()
        .map(|(url, _)| url.clone())
        .collect();
    let listeners: Vec<ClientListener> = client_listeners.into_iter().map(|(_, l)| l).collect();
    let serve_node = node.clone();
    let stop = shutdown.clone();
    serving.spawn(async move {
        let result = client_listeners::serve_all(listeners, serve_node, server_config, stop)
            .await
            .map_err(anyhow::Error::new);
        (urls.join(","), result)
    });
    // etcd prints this line when clients can connect; scripts and harnesses wait for it.
    tracing::info!(
        client_urls = %config.advertise_client_urls.join(","),
        "ready to serve client requests"
    );

    let outcome = wait_for_stop(&mut serving).await;
    shutdown.cancel();
    let teardown = async {
        while let Some(joined) = serving.join_next().await {
            if let Ok((url, Err(error))) = joined {
                tracing::error!(%url, "client listener stopped with an error: {error:#}");
            }
        }
        node.shutdown().await.context("stop the Raft member")
    };
    tokio::time::timeout(SHUTDOWN_GRACE, teardown)
        .await
        .with_context(|| format!("graceful stop took longer than {SHUTDOWN_GRACE:?}"))??;
    tracing::info!("stopped");
    outcome
}

/// Waits until the member's name and client URLs are in the replicated member list (etcd's
/// "publish", which etcd also completes before serving clients), so no client discovers this
/// member without its client URLs. Publishing needs a quorum: without one the member serves
/// anyway after [`PUBLISH_WAIT`], so its serializable reads stay available.
async fn wait_for_own_attributes(node: &RaftNode, config: &EtcdConfig) {
    let member_id = node.member_id();
    let mut status = node.watch_status();
    let published = async {
        loop {
            let done = status.borrow_and_update().members.iter().any(|member| {
                member.id == member_id
                    && member.name == config.name
                    && member.client_ur_ls == config.advertise_client_urls
            });
            if done || status.changed().await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout(PUBLISH_WAIT, published).await.is_err() {
        tracing::warn!(
            "member attributes not published within {PUBLISH_WAIT:?} (no quorum yet?); serving anyway"
        );
    }
}

/// Resolves on SIGINT/SIGTERM (Ok) or when a client listener stops on its own (Err).
async fn wait_for_stop(serving: &mut JoinSet<(String, anyhow::Result<()>)>) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    tokio::select! {
        _ = interrupt.recv() => {
            tracing::info!("SIGINT received; shutting down");
            Ok(())
        }
        _ = terminate.recv() => {
            tracing::info!("SIGTERM received; shutting down");
            Ok(())
        }
        Some(joined) = serving.join_next() => match joined {
            Ok((url, Ok(()))) => Err(anyhow::anyhow!("client listener {url} stopped unexpectedly")),
            Ok((url, Err(error))) => Err(error.context(format!("serve {url}"))),
            Err(error) => Err(anyhow::Error::new(error).context("client listener task failed")),
        },
    }
}

fn node_config(config: &EtcdConfig) -> NodeConfig {
    NodeConfig {
        name: config.name.clone(),
        data_dir: config.data_dir.clone(),
        peer_urls: config.initial_advertise_peer_urls.clone(),
        client_urls: config.advertise_client_urls.clone(),
        initial_cluster: config.initial_cluster.clone(),
        initial_cluster_state: match config.initial_cluster_state {
            ClusterState::New => InitialClusterState::New,
            ClusterState::Existing => InitialClusterState::Existing,
        },
        initial_cluster_token: config.initial_cluster_token.clone(),
        heartbeat_interval: config.heartbeat_interval,
        election_timeout: config.election_timeout,
        snapshot_count: config.snapshot_count,
        request_timeout: consensus::DEFAULT_REQUEST_TIMEOUT,
    }
}

fn server_config(config: &EtcdConfig) -> ServerConfig {
    ServerConfig {
        election_timeout: config.election_timeout,
        db_size_quota_bytes: config.quota_backend_bytes,
        auto_compaction: config.auto_compaction.clone(),
        auth_token_ttl: config.auth_token_ttl,
        ..ServerConfig::default()
    }
}

/// How long the member waits for its own attributes to be published before serving anyway.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// Upper bound on how long a graceful stop may take before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
