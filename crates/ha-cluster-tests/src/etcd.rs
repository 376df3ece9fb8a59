//! An external etcd cluster for `etcd3:` tests: `pgwarden etcd` member processes started with
//! etcd's own flags, on loopback ports bound from 0, in a temporary directory; optionally
//! serving clients only over TLS with client certificate auth ([`EtcdCluster::start_tls`]).
//! Every member still running is killed by PID in `Drop` (a paused one is resumed first by
//! its guard, or killed while stopped: SIGKILL ends a stopped process too).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::tls::{CertificateFiles, Certificates};
use crate::{free_port, pgwarden_binary};

/// One `pgwarden etcd` member.
#[derive(Debug)]
pub struct EtcdMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// `http` or `https` (client URLs; peers always talk plaintext here).
    scheme: &'static str,
    log_path: PathBuf,
    child: Option<Child>,
}

impl EtcdMember {
    /// `127.0.0.1:port` of the member's client API (an `etcd3.hosts` entry).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The member's client URL: `https://` when the cluster serves clients over TLS.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.host())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL and reap (a member host dying); a no-op when not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP until the guard drops (a hung member: its connections stay open and it
    /// answers nothing); the guard resumes it with SIGCONT, also when a test fails half-way.
    pub fn pause(&self) -> anyhow::Result<PausedMember> {
        let child = self.child.as_ref().context("the member is not running")?;
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        kill(pid, Signal::SIGSTOP).with_context(|| format!("SIGSTOP {}", self.name))?;
        Ok(PausedMember { pid })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A member stopped with SIGSTOP; dropping this resumes it.
#[derive(Debug)]
pub struct PausedMember {
    pid: Pid,
}

impl Drop for PausedMember {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGCONT);
    }
}

/// A new etcd cluster of `pgwarden etcd` members.
#[derive(Debug)]
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    /// With TLS: the certificates the members serve, which the test's own clients trust and
    /// present (the members refuse clients without a certificate signed by the CA).
    tls: Option<Certificates>,
    /// Dropped after the members (field order), so processes stop before their files go.
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members forming one new cluster and waits until each serves a
    /// linearizable read (the cluster has a leader).
    pub async fn start(size: usize, timeout: Duration) -> anyhow::Result<EtcdCluster> {
        Self::start_with(size, timeout, None).await
    }

    /// As [`EtcdCluster::start`], but the members serve clients only over TLS on `https://`
    /// client URLs (`--cert-file`, `--key-file`, `--trusted-ca-file` from `files`, and
    /// `--client-cert-auth`), with the certificates `certificates` (written as `files`).
    pub async fn start_tls(
        size: usize,
        timeout: Duration,
        certificates: Certificates,
        files: CertificateFiles,
    ) -> anyhow::Result<EtcdCluster> {
        Self::start_with(size, timeout, Some((certificates, files))).await
    }

    async fn start_with(
        size: usize,
        timeout: Duration,
        tls: Option<(Certificates, CertificateFiles)>,
    ) -> anyhow::Result<EtcdCluster> {
        let binary = pgwarden_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("pgwarden-etcd-")
            .tempdir()?;
        let ports = (1..=size)
            .map(|index| Ok((format!("e{index}"), free_port()?, free_port()?)))
            .collect::<anyhow::Result<Vec<(String, u16, u16)>>>()?;
        let initial_cluster: Vec<String> = ports
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
            .collect();
        let initial_cluster = initial_cluster.join(",");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tls_flags: Vec<String> = tls
            .as_ref()
            .map(|(_, files)| {
                vec![
                    format!("--cert-file={}", files.cert.display()),
                    format!("--key-file={}", files.key.display()),
                    format!("--trusted-ca-file={}", files.ca.display()),
                    "--client-cert-auth".to_owned(),
                ]
            })
            .unwrap_or_default();
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            tls: tls.map(|(certificates, _)| certificates),
            dir,
        };
        for (name, client_port, peer_port) in ports {
            let log_path = cluster.dir.path().join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("create {}", log_path.display()))?;
            let client_url = format!("{scheme}://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let child = Command::new(&binary)
                .arg("etcd")
                .arg(format!("--name={name}"))
                .arg(format!(
                    "--data-dir={}",
                    cluster.dir.path().join(&name).display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=pgwarden-ha-etcd3")
                .args(&tls_flags)
                .env("RUST_LOG", "info,openraft=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawn pgwarden etcd for {name}"))?;
            cluster.members.push(EtcdMember {
                name,
                client_port,
                peer_port,
                scheme,
                log_path,
                child: Some(child),
            });
        }
        cluster.wait_ready(timeout).await?;
        Ok(cluster)
    }

    /// The temporary directory holding every member's data and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `host:port` of every member's client API (for `etcd3.hosts`).
    pub fn hosts(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::host).collect()
    }

    /// A client balancing over every member (with TLS: trusting the CA and presenting the
    /// member certificate).
    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        let endpoints: Vec<String> = self.members.iter().map(EtcdMember::endpoint).collect();
        etcd_client::Client::connect(endpoints, self.connect_options())
            .await
            .context("connect to the etcd cluster")
    }

    /// The connect options the test's clients need: TLS with a client certificate, if the
    /// members serve TLS.
    pub fn connect_options(&self) -> Option<etcd_client::ConnectOptions> {
        let certificates = self.tls.as_ref()?;
        Some(etcd_client::ConnectOptions::new().with_tls(certificates.client_tls(true)))
    }

    /// Waits until every running member answers a linearizable read.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for member in self.members.iter().filter(|member| member.is_running()) {
            loop {
                let probe = async {
                    let mut client =
                        etcd_client::Client::connect([member.endpoint()], self.connect_options())
                            .await?;
                    client.get("pgwarden-ha-ready", None).await
                };
                match tokio::time::timeout(Duration::from_secs(2), probe).await {
                    Ok(Ok(_)) => break,
                    Ok(Err(_)) | Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(Err(error)) => bail!(
                        "etcd member {} not ready within {timeout:?}: {error}\n{}",
                        member.name,
                        self.logs()
                    ),
                    Err(_) => bail!(
                        "etcd member {} not ready within {timeout:?}\n{}",
                        member.name,
                        self.logs()
                    ),
                }
            }
        }
        Ok(())
    }

    /// The tail of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for member in &self.members {
            let log = member.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            out.push_str(&format!("--- etcd {} ---\n", member.name));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}
