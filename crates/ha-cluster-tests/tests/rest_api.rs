//! Patroni's REST API on a live three-member cluster: the health checks answer by role,
//! `PATCH /config` changes the stored configuration and PostgreSQL follows, `POST /restart`
//! restarts a replica's PostgreSQL (a new postmaster), `POST /reload` is accepted, and
//! `POST /switchover` hands the primary role to the named replica and answers once it has;
//! a scheduled switchover waits for its time (and can be deleted before).

use std::time::Duration;

use anyhow::Context;
use ha_cluster_tests::eventually;
use ha_cluster_tests::{Cluster, http_get_json};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request with a JSON body → (status code, body). `Connection: close`.
async fn request(
    address: &str,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{method} {path} on {address}: no answer within {timeout:?}"))??;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("{method} {path}: no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

const SHORT: Duration = Duration::from_secs(5);

/// The UTC time `ahead` from now as ISO 8601 (`date -u`), for `scheduled_at`.
fn utc_in(ahead: Duration) -> anyhow::Result<String> {
    let output = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("+{} seconds", ahead.as_secs()),
            "+%Y-%m-%dT%H:%M:%S+00:00",
        ])
        .output()
        .context("run date")?;
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_on_a_live_cluster() -> anyhow::Result<()> {
    let cluster = Cluster::start(3)?;
    let primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    let replicas: Vec<usize> = (0..3).filter(|index| *index != primary).collect();
    let address = |index: usize| cluster.nodes[index].rest_address();

    // Phase 1: the health checks answer by role (GET, and OPTIONS as HAProxy sends it).
    for index in 0..3 {
        let is_primary = index == primary;
        for (path, expected) in [
            ("/primary", if is_primary { 200 } else { 503 }),
            ("/replica", if is_primary { 503 } else { 200 }),
            ("/read-only", 200),
            ("/health", 200),
        ] {
            for method in ["GET", "OPTIONS"] {
                let (code, _) = request(&address(index), method, path, "", SHORT).await?;
                assert_eq!(
                    code, expected,
                    "{method} {path} on {} (primary: {is_primary})",
                    cluster.nodes[index].spec.name
                );
            }
        }
    }
    let cluster_json = http_get_json(&address(replicas[0]), "/cluster")
        .await
        .context("GET /cluster")?;
    let members = cluster_json["members"].as_array().context("members")?;
    assert_eq!(members.len(), 3, "{cluster_json}");
    let leaders: Vec<&serde_json::Value> = members
        .iter()
        .filter(|member| member["role"] == "leader")
        .collect();
    assert_eq!(leaders.len(), 1, "{cluster_json}");
    assert_eq!(
        leaders[0]["name"],
        cluster.nodes[primary].spec.name.as_str()
    );
    let (code, metrics) = request(&address(primary), "GET", "/metrics", "", SHORT).await?;
    assert_eq!(code, 200);
    for name in [
        "patroni_primary",
        "pgwarden_store_leader",
        "pgwarden_lease_time_left_seconds",
    ] {
        let sample = format!(
            "{name}{{scope=\"demo\",name=\"{}\"}}",
            cluster.nodes[primary].spec.name
        );
        assert!(
            metrics.contains(&sample),
            "{sample} missing from\n{metrics}"
        );
    }

    // Phase 2: PATCH /config reaches the store and PostgreSQL.
    let (code, body) = request(
        &address(replicas[0]),
        "PATCH",
        "/config",
        r#"{"postgresql":{"parameters":{"work_mem":"9MB"}}}"#,
        SHORT,
    )
    .await?;
    assert_eq!(code, 200, "PATCH /config: {body}");
    let config = http_get_json(&address(primary), "/config")
        .await
        .context("GET /config")?;
    assert_eq!(
        config["postgresql"]["parameters"]["work_mem"],
        json!("9MB"),
        "{config}"
    );
    eventually(Duration::from_secs(60), || async {
        let shown = cluster.nodes[primary].query("SHOW work_mem").await.ok()?;
        (shown.as_deref() == Some("9MB")).then_some(())
    })
    .await
    .with_context(|| format!("work_mem on the primary\n{}", cluster.logs()))?;
    let (code, body) = request(&address(primary), "PATCH", "/config", "{oops", SHORT).await?;
    assert_eq!(code, 400, "malformed PATCH: {body}");

    // Phase 3: POST /restart on a replica starts a new postmaster, which streams again; a
    // restart whose conditions do not hold (role primary) changes nothing.
    let replica = replicas[0];
    let old_pid = cluster.nodes[replica]
        .postmaster_pid()
        .context("the replica's postmaster.pid")?;
    let (code, body) = request(
        &address(replica),
        "POST",
        "/restart",
        r#"{"role": "primary"}"#,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(code, 503, "POST /restart role=primary on a replica: {body}");
    assert_eq!(cluster.nodes[replica].postmaster_pid(), Some(old_pid));
    let (code, body) = request(
        &address(replica),
        "POST",
        "/restart",
        "",
        Duration::from_secs(120),
    )
    .await?;
    assert_eq!(code, 200, "POST /restart: {body}\n{}", cluster.logs());
    let new_pid = cluster.nodes[replica].postmaster_pid();
    assert!(
        new_pid.is_some_and(|pid| pid != old_pid),
        "postmaster pid {old_pid} -> {new_pid:?}"
    );
    cluster
        .wait_streaming(replica, Duration::from_secs(60))
        .await?;

    // Phase 4: POST /reload is accepted (Patroni answers 202 `reload scheduled`).
    let (code, body) = request(
        &address(primary),
        "POST",
        "/reload",
        "",
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(code, 202, "POST /reload: {body}");

    // Phase 5: POST /switchover to the other replica answers once it leads.
    let candidate = replicas[1];
    let switchover = json!({
        "leader": cluster.nodes[primary].spec.name,
        "candidate": cluster.nodes[candidate].spec.name,
    })
    .to_string();
    let (code, body) = request(
        &address(candidate),
        "POST",
        "/switchover",
        &switchover,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(code, 200, "POST /switchover: {body}\n{}", cluster.logs());
    assert_eq!(
        body,
        format!(
            "Successfully switched over to \"{}\"",
            cluster.nodes[candidate].spec.name
        )
    );
    let new_primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    assert_eq!(new_primary, candidate, "{}", cluster.logs());
    let (code, _) = request(&address(candidate), "GET", "/primary", "", SHORT).await?;
    assert_eq!(code, 200);
    let (code, _) = request(&address(primary), "GET", "/replica", "", SHORT).await?;
    assert_eq!(code, 200, "the former primary serves as a replica");

    // Phase 6: a switchover scheduled in the future is shown by /cluster and can be deleted;
    // one scheduled a few seconds ahead happens then, not before.
    let back = json!({
        "leader": cluster.nodes[candidate].spec.name,
        "candidate": cluster.nodes[primary].spec.name,
        "scheduled_at": utc_in(Duration::from_secs(3600))?,
    })
    .to_string();
    let (code, body) = request(&address(primary), "POST", "/switchover", &back, SHORT).await?;
    assert_eq!(code, 202, "scheduled switchover: {body}");
    let view = http_get_json(&address(primary), "/cluster")
        .await
        .context("GET /cluster")?;
    assert_eq!(
        view["scheduled_switchover"]["to"],
        cluster.nodes[primary].spec.name.as_str(),
        "{view}"
    );
    let (code, body) = request(&address(primary), "DELETE", "/switchover", "", SHORT).await?;
    assert_eq!(code, 200, "DELETE /switchover: {body}");
    let (code, _) = request(&address(primary), "DELETE", "/switchover", "", SHORT).await?;
    assert_eq!(code, 404, "nothing left to delete");
    let soon = json!({
        "leader": cluster.nodes[candidate].spec.name,
        "candidate": cluster.nodes[primary].spec.name,
        "scheduled_at": utc_in(Duration::from_secs(4))?,
    })
    .to_string();
    let (code, body) = request(&address(primary), "POST", "/switchover", &soon, SHORT).await?;
    assert_eq!(code, 202, "scheduled switchover: {body}");
    let (code, _) = request(&address(candidate), "GET", "/primary", "", SHORT).await?;
    assert_eq!(code, 200, "the leader waits for the scheduled time");
    eventually(Duration::from_secs(60), || async {
        (cluster.nodes[primary].http_status("/primary").await == Some(200)).then_some(())
    })
    .await
    .with_context(|| format!("scheduled switchover back\n{}", cluster.logs()))?;
    cluster.wait_healthy(2, Duration::from_secs(120)).await?;

    let history = http_get_json(&address(primary), "/history")
        .await
        .context("GET /history")?;
    assert!(
        history
            .as_array()
            .is_some_and(|entries| !entries.is_empty()),
        "{history}"
    );
    Ok(())
}
