//! An N-member cluster of real processes in a temporary directory.

use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use etcd_client::Client;
use etcd_client::ConnectOptions;
use etcd_client::TlsOptions;
use tempfile::TempDir;

use crate::member::Member;
use crate::member::MemberSpec;
use crate::ports::free_ports;
use crate::target::Target;
use crate::tls::CertificateFiles;
use crate::tls::TestCertificates;
use crate::wait::eventually;

/// How many times a cluster start is retried with fresh ports after "address already in use".
const START_ATTEMPTS: usize = 3;
/// How long a fresh cluster gets to elect a leader and answer reads.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Client-side deadline of every request made through [`Cluster::client`].
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Shape and timing of a cluster; the defaults are etcd's.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub members: usize,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_count: u64,
    /// TLS on every member's client and peer ports with client certificate authentication on
    /// both (certificates generated for the cluster, see `tls`); `https://` URLs throughout.
    pub tls: bool,
}

/// A member count alone means etcd's default timings.
impl From<usize> for ClusterOptions {
    fn from(members: usize) -> Self {
        Self::members(members)
    }
}

impl ClusterOptions {
    pub fn members(members: usize) -> Self {
        Self {
            members,
            heartbeat_ms: 100,
            election_ms: 1000,
            snapshot_count: 10_000,
            tls: false,
        }
    }

    /// TLS on both ports of every member (see [`ClusterOptions::tls`]).
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn snapshot_count(mut self, snapshot_count: u64) -> Self {
        self.snapshot_count = snapshot_count;
        self
    }
}

/// Running members plus their temporary directory. Dropping it kills every member and removes the files.
pub struct Cluster {
    pub target: Target,
    pub options: ClusterOptions,
    members: Vec<Member>,
    token: String,
    /// The cluster's certificates and their files, when it runs TLS.
    certificates: Option<(TestCertificates, CertificateFiles)>,
    // Declared last: dropped after the members, so processes die before their data dirs are removed.
    dir: TempDir,
}

impl Cluster {
    /// Starts the members with etcd's flags and waits until each answers Status with a leader and a
    /// linearizable read succeeds. Retries the whole start with new ports when a port was taken.
    pub async fn start(target: Target, options: ClusterOptions) -> anyhow::Result<Cluster> {
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = Self::spawn(target, options.clone())?;
            match cluster.wait_ready().await {
                Ok(()) => return Ok(cluster),
                Err(error) if cluster.port_was_taken() => {
                    tracing::warn!(attempt, %error, "a port was taken; restarting the cluster on new ports");
                    last_error = Some(error);
                }
                Err(error) => {
                    return Err(error.context(format!(
                        "start a {}-member {target} cluster\n{}",
                        options.members,
                        cluster.log_tails()
                    )));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no start attempt was made")))
            .context("start a cluster: ports kept being taken")
    }

    fn spawn(target: Target, options: ClusterOptions) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgwarden-{target}-"))
            .tempdir()
            .context("create the cluster directory")?;
        let ports = free_ports(options.members * 2)?;
        let token = unique_token();
        let certificates = if options.tls {
            let generated = TestCertificates::generate()?;
            let files = generated.write(dir.path())?;
            Some((generated, files))
        } else {
            None
        };
        let scheme = if options.tls { "https" } else { "http" };
        let extra_flags = certificates
            .as_ref()
            .map(|(_, files)| files.member_flags())
            .unwrap_or_default();
        let names: Vec<String> = (1..=options.members).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}={scheme}://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let spec = MemberSpec {
                name: name.clone(),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("{name}.etcd")),
                log_path: dir.path().join(format!("{name}.log")),
                initial_cluster: initial_cluster.clone(),
                initial_cluster_state: "new",
                initial_cluster_token: token.clone(),
                heartbeat_ms: options.heartbeat_ms,
                election_ms: options.election_ms,
                snapshot_count: options.snapshot_count,
                scheme,
                extra_flags: extra_flags.clone(),
            };
            members.push(Member::new(target, spec));
        }
        let mut cluster = Cluster {
            target,
            options,
            members,
            token,
            certificates,
            dir,
        };
        for member in &mut cluster.members {
            member.spawn()?;
        }
        Ok(cluster)
    }

    /// Every running member answers Status with a known leader, and a linearizable read succeeds.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let endpoints: Vec<(usize, String)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, member)| member.is_running())
            .map(|(i, member)| (i, member.spec.client_url()))
            .collect();
        let tls = self.client_tls();
        for (index, endpoint) in endpoints {
            let name = self.members[index].spec.name.clone();
            let members = &mut self.members;
            // The probe answers Ok(Err(..)) when the member exited: waiting longer cannot help.
            let outcome = eventually(&format!("{name} to have a leader"), READY_TIMEOUT, || {
                let exited = members[index].exited();
                let endpoint = endpoint.clone();
                let name = name.clone();
                let tls = tls.clone();
                async move {
                    if let Some(status) = exited {
                        return Ok(Err(anyhow::anyhow!("{name} exited during start: {status}")));
                    }
                    let mut client = connect_with(&[endpoint], tls).await?;
                    let status = client.status().await?;
                    anyhow::ensure!(status.leader() != 0, "no leader yet");
                    client.get("pgwarden-test-ready", None).await?;
                    Ok(Ok(()))
                }
            })
            .await?;
            outcome?;
        }
        Ok(())
    }

    fn port_was_taken(&self) -> bool {
        self.members
            .iter()
            .any(|member| member.log_contains("address already in use"))
    }

    /// The last log lines of every member, for failure messages.
    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|member| {
                format!(
                    "--- {} log tail ---\n{}",
                    member.spec.name,
                    member.log_tail()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member(&self, index: usize) -> &Member {
        &self.members[index]
    }

    pub fn member_mut(&mut self, index: usize) -> &mut Member {
        &mut self.members[index]
    }

    /// Client URLs of the members that are running.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| member.is_running())
            .map(|member| member.spec.client_url())
            .collect()
    }

    /// `127.0.0.1:port` of every running member: the endpoint form without a scheme.
    pub fn bare_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| member.is_running())
            .map(|member| format!("127.0.0.1:{}", member.spec.client_port))
            .collect()
    }

    /// A client over every running member (with the `root` client certificate on a TLS cluster).
    pub async fn client(&self) -> anyhow::Result<Client> {
        connect_with(&self.endpoints(), self.client_tls()).await
    }

    /// A client pinned to one member.
    pub async fn member_client(&self, index: usize) -> anyhow::Result<Client> {
        connect_with(&[self.members[index].spec.client_url()], self.client_tls()).await
    }

    /// The etcd-client TLS options of a TLS cluster: its CA and the `root` client certificate.
    pub fn client_tls(&self) -> Option<TlsOptions> {
        self.certificates
            .as_ref()
            .map(|(generated, _)| generated.client_tls())
    }

    /// The certificates of a TLS cluster and where their files are.
    pub fn certificates(&self) -> Option<&(TestCertificates, CertificateFiles)> {
        self.certificates.as_ref()
    }

    /// Index of the member every running member names as leader (waits until they agree).
    pub async fn leader_index(&self) -> anyhow::Result<usize> {
        eventually(
            "the members to agree on a leader",
            READY_TIMEOUT,
            || async {
                let mut leader = None;
                let mut ids = Vec::new();
                for (index, member) in self.members.iter().enumerate() {
                    if !member.is_running() {
                        continue;
                    }
                    let mut client =
                        connect_with(&[member.spec.client_url()], self.client_tls()).await?;
                    let status = client.status().await?;
                    let header = status.header().context("status without header")?;
                    ids.push((index, header.member_id()));
                    anyhow::ensure!(status.leader() != 0, "{} has no leader", member.spec.name);
                    match leader {
                        None => leader = Some(status.leader()),
                        Some(known) => anyhow::ensure!(known == status.leader(), "leaders differ"),
                    }
                }
                let leader = leader.context("no member is running")?;
                ids.iter()
                    .find(|(_, id)| *id == leader)
                    .map(|(index, _)| *index)
                    .context("the leader is not a running member")
            },
        )
        .await
    }

    /// Member ID (as the server reports it in headers) of one member.
    pub async fn member_id(&self, index: usize) -> anyhow::Result<u64> {
        let mut client = self.member_client(index).await?;
        let status = client.status().await?;
        Ok(status
            .header()
            .context("status without header")?
            .member_id())
    }

    /// Restarts a stopped member with its original flags (its data dir makes the initial-cluster flags moot).
    pub fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.members[index].spawn()
    }

    /// Prepares (but does not start) a member that will join with `--initial-cluster-state=existing`.
    /// Call `MemberAdd` with its peer URL first, then [`Cluster::start_joining`].
    pub fn prepare_joining(&mut self, name: &str) -> anyhow::Result<usize> {
        let ports = free_ports(2)?;
        let spec = MemberSpec {
            name: name.to_owned(),
            client_port: ports[0],
            peer_port: ports[1],
            data_dir: self.dir.path().join(format!("{name}.etcd")),
            log_path: self.dir.path().join(format!("{name}.log")),
            initial_cluster: String::new(),
            initial_cluster_state: "existing",
            initial_cluster_token: self.token.clone(),
            heartbeat_ms: self.options.heartbeat_ms,
            election_ms: self.options.election_ms,
            snapshot_count: self.options.snapshot_count,
            scheme: if self.options.tls { "https" } else { "http" },
            extra_flags: self
                .certificates
                .as_ref()
                .map(|(_, files)| files.member_flags())
                .unwrap_or_default(),
        };
        self.members.push(Member::new(self.target, spec));
        Ok(self.members.len() - 1)
    }

    /// Starts a prepared member; `initial_cluster` is every voter's `name=peer URL`, itself included.
    pub fn start_joining(&mut self, index: usize, initial_cluster: &str) -> anyhow::Result<()> {
        self.members[index].spec.initial_cluster = initial_cluster.to_owned();
        self.members[index].spawn()
    }

    /// `name=peer URL` of the given members, comma-separated.
    pub fn initial_cluster_of(&self, indexes: &[usize]) -> String {
        indexes
            .iter()
            .map(|&i| {
                let spec = &self.members[i].spec;
                format!("{}={}", spec.name, spec.peer_url())
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        for member in &mut self.members {
            member.kill();
        }
    }
}

/// Connects with the harness's deadlines; connection is lazy, so this succeeds before servers answer.
pub async fn connect(endpoints: &[String]) -> anyhow::Result<Client> {
    connect_with(endpoints, None).await
}

/// [`connect`], over TLS with `tls` when given (for `https://` endpoints).
pub async fn connect_with(endpoints: &[String], tls: Option<TlsOptions>) -> anyhow::Result<Client> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(CLIENT_TIMEOUT);
    if let Some(tls) = tls {
        options = options.with_tls(tls);
    }
    Client::connect(endpoints, Some(options))
        .await
        .with_context(|| format!("connect to {endpoints:?}"))
}

/// A cluster token unique to this start, so concurrent clusters never accept each other's peers.
fn unique_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("pgwarden-test-{}-{nanos}", std::process::id())
}
