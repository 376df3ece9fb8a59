//! Txn: every compare target and result, missing-key rules, range compares, nested txns, and the
//! duplicate-key and op-limit errors.

use anyhow::Context;
use anyhow::bail;
use anyhow::ensure;
use etcd_client::Compare;
use etcd_client::CompareOp;
use etcd_client::DeleteOptions;
use etcd_client::GetOptions;
use etcd_client::PutOptions;
use etcd_client::Txn;
use etcd_client::TxnOp;
use etcd_client::TxnOpResponse;
use pgwarden_tests::Cluster;
use pgwarden_tests::grpc::expect_status;
use tonic::Code;

pgwarden_tests::against_both_targets!(1 => compare_targets_and_results, branches_and_nesting, txn_errors);

/// Runs a txn with one compare and reports which branch ran.
async fn holds(client: &mut etcd_client::Client, compare: Compare) -> anyhow::Result<bool> {
    Ok(client.txn(Txn::new().when([compare])).await?.succeeded())
}

async fn compare_targets_and_results(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let lease = client.lease_grant(60, None).await?.id();
    client.put("k", "b", None).await?; // revision 2: a lease grant takes no revision
    client
        .put("k", "b", Some(PutOptions::new().with_lease(lease)))
        .await?; // revision 3, version 2
    let kv = client.get("k", None).await?.kvs()[0].clone();
    ensure!(
        kv.create_revision() == 2 && kv.mod_revision() == 3 && kv.version() == 2,
        "{kv:?}"
    );

    use CompareOp::{Equal, Greater, Less, NotEqual};
    let cases: Vec<(Compare, bool)> = vec![
        (Compare::version("k", Equal, 2), true),
        (Compare::version("k", Greater, 1), true),
        (Compare::version("k", Less, 2), false),
        (Compare::version("k", NotEqual, 2), false),
        (Compare::create_revision("k", Equal, 2), true),
        (Compare::create_revision("k", Less, 3), true),
        (Compare::create_revision("k", Greater, 2), false),
        (Compare::mod_revision("k", Equal, 3), true),
        (Compare::mod_revision("k", NotEqual, 2), true),
        (Compare::mod_revision("k", Greater, 3), false),
        (Compare::value("k", Equal, "b"), true),
        (Compare::value("k", Greater, "a"), true),
        (Compare::value("k", Less, "c"), true),
        (Compare::value("k", Less, "b"), false),
        (Compare::value("k", NotEqual, "b"), false),
        (Compare::lease("k", Equal, lease), true),
        (Compare::lease("k", NotEqual, 0), true),
        (Compare::lease("k", Greater, lease), false),
        // A missing key compares as a zero KeyValue: the "absent" idiom.
        (Compare::create_revision("absent", Equal, 0), true),
        (Compare::version("absent", Equal, 0), true),
        (Compare::mod_revision("absent", Less, 1), true),
        (Compare::lease("absent", Equal, 0), true),
        // VALUE compares on a missing key are always false, even NOT_EQUAL.
        (Compare::value("absent", NotEqual, "x"), false),
        (Compare::value("absent", Equal, ""), false),
    ];
    for (compare, expected) in cases {
        let description = format!("{compare:?}");
        let actual = holds(&mut client, compare).await?;
        ensure!(
            actual == expected,
            "{description}: expected {expected}, got {actual}"
        );
    }

    // Range compares must hold for every key in the range.
    client.put("r/1", "x", None).await?;
    client.put("r/2", "x", None).await?;
    ensure!(holds(&mut client, Compare::value("r/", Equal, "x").with_prefix()).await?);
    client.put("r/3", "y", None).await?;
    ensure!(!holds(&mut client, Compare::value("r/", Equal, "x").with_prefix()).await?);
    ensure!(holds(&mut client, Compare::version("r/", Equal, 1).with_prefix()).await?);
    ensure!(
        holds(
            &mut client,
            Compare::create_revision("r/1", Greater, 0).with_range("r/3")
        )
        .await?
    );
    Ok(())
}

async fn branches_and_nesting(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    client.put("x", "1", None).await?; // revision 2

    // Success branch: ops run in order, a range sees earlier writes of the same txn.
    let txn = Txn::new()
        .when([Compare::value("x", CompareOp::Equal, "1")])
        .and_then([
            TxnOp::put("x", "2", Some(PutOptions::new().with_prev_key())),
            TxnOp::put("y", "1", None),
            TxnOp::get("x", None),
            TxnOp::delete("nothing", None),
        ])
        .or_else([TxnOp::get("x", None)]);
    let response = client.txn(txn).await?;
    ensure!(response.succeeded());
    ensure!(
        response.header().context("header")?.revision() == 3,
        "one revision per txn"
    );
    let responses = response.op_responses();
    ensure!(responses.len() == 4);
    match &responses[0] {
        TxnOpResponse::Put(put) => {
            ensure!(put.prev_key().map(|kv| kv.value()) == Some(b"1".as_slice()))
        }
        other => bail!("expected a put response, got {other:?}"),
    }
    match &responses[2] {
        TxnOpResponse::Get(get) => {
            ensure!(get.kvs()[0].value() == b"2" && get.kvs()[0].mod_revision() == 3)
        }
        other => bail!("expected a range response, got {other:?}"),
    }
    match &responses[3] {
        TxnOpResponse::Delete(delete) => ensure!(delete.deleted() == 0),
        other => bail!("expected a delete response, got {other:?}"),
    }
    let y = client.get("y", None).await?;
    ensure!(
        y.kvs()[0].create_revision() == 3,
        "both keys share the txn's revision"
    );

    // Failure branch; a read-only txn takes no revision.
    let failed = client
        .txn(
            Txn::new()
                .when([Compare::value("x", CompareOp::Equal, "1")])
                .and_then([TxnOp::put("x", "never", None)])
                .or_else([TxnOp::get("x", None)]),
        )
        .await?;
    ensure!(!failed.succeeded());
    ensure!(failed.header().context("header")?.revision() == 3);
    match &failed.op_responses()[0] {
        TxnOpResponse::Get(get) => ensure!(get.kvs()[0].value() == b"2"),
        other => bail!("expected a range response, got {other:?}"),
    }

    // Nested txn. etcd-api.md says its compares see the parent branch's earlier writes, but etcd 3.4
    // evaluates every compare of the txn tree against the state before the txn (compareToPath runs
    // before any op): etcd wins, so the nested compare fails here and the else branch runs.
    let nested = Txn::new()
        .when([Compare::create_revision("lock", CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put("lock", "me", None),
            TxnOp::txn(
                Txn::new()
                    .when([Compare::value("lock", CompareOp::Equal, "me")])
                    .and_then([TxnOp::put("inner", "then", None)])
                    .or_else([TxnOp::put("inner", "else", None)]),
            ),
        ]);
    let response = client.txn(nested).await?;
    ensure!(response.succeeded());
    match &response.op_responses()[1] {
        TxnOpResponse::Txn(inner) => {
            ensure!(
                !inner.succeeded(),
                "the nested compare saw the state before the txn"
            );
            ensure!(inner.op_responses().len() == 1);
        }
        other => bail!("expected a txn response, got {other:?}"),
    }
    ensure!(client.get("inner", None).await?.kvs()[0].value() == b"else");
    ensure!(client.get("inner", None).await?.kvs()[0].mod_revision() == 4);

    // An empty txn succeeds and writes nothing.
    let empty = client.txn(Txn::new()).await?;
    ensure!(empty.succeeded() && empty.header().context("header")?.revision() == 4);
    Ok(())
}

async fn txn_errors(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let duplicate = "etcdserver: duplicate key given in txn request";
    expect_status(
        client
            .txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]))
            .await,
        Code::InvalidArgument,
        duplicate,
    )?;
    expect_status(
        client
            .txn(Txn::new().and_then([
                TxnOp::put("d/1", "1", None),
                TxnOp::delete("d/", Some(DeleteOptions::new().with_prefix())),
            ]))
            .await,
        Code::InvalidArgument,
        duplicate,
    )?;
    // A put in a nested txn counts against the parent branch.
    expect_status(
        client
            .txn(Txn::new().and_then([
                TxnOp::put("n", "1", None),
                TxnOp::txn(Txn::new().and_then([TxnOp::put("n", "2", None)])),
            ]))
            .await,
        Code::InvalidArgument,
        duplicate,
    )?;
    // The same key in a nested txn's then and else is fine (they exclude each other);
    // so are overlapping deletes, and reads of written keys.
    client
        .txn(
            Txn::new().and_then([TxnOp::txn(
                Txn::new()
                    .and_then([TxnOp::put("n", "then", None)])
                    .or_else([TxnOp::put("n", "else", None)]),
            )]),
        )
        .await?;
    client
        .txn(Txn::new().and_then([
            TxnOp::delete("a", Some(DeleteOptions::new().with_range("c"))),
            TxnOp::delete("b", Some(DeleteOptions::new().with_range("d"))),
            TxnOp::put("z", "1", None),
            TxnOp::get("z", None),
        ]))
        .await?;
    // The same key in success and failure is fine too.
    client
        .txn(
            Txn::new()
                .and_then([TxnOp::put("s", "1", None)])
                .or_else([TxnOp::put("s", "2", None)]),
        )
        .await?;

    // At most 128 operations per branch (etcd's default --max-txn-ops).
    let puts = |count: usize| -> Vec<TxnOp> {
        (0..count)
            .map(|i| TxnOp::put(format!("many/{i:03}"), "v", None))
            .collect()
    };
    client.txn(Txn::new().and_then(puts(128))).await?;
    expect_status(
        client.txn(Txn::new().and_then(puts(129))).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    )?;
    let compares: Vec<Compare> = (0..129)
        .map(|i| Compare::version(format!("many/{i:03}"), CompareOp::Greater, -1))
        .collect();
    expect_status(
        client.txn(Txn::new().when(compares)).await,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    )?;
    let count = client
        .get(
            "many/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    ensure!(count.count() == 128, "the refused txn wrote nothing");

    // An empty key inside a txn is refused like a plain request.
    expect_status(
        client
            .txn(Txn::new().and_then([TxnOp::put("", "v", None)]))
            .await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    )?;
    Ok(())
}
