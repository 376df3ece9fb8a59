//! KV: put, range (prefix, from-key, limit, sort, keys/count only, revisions, filters), delete, and the
//! request errors of Put and Range.

use anyhow::Context;
use anyhow::ensure;
use etcd_client::DeleteOptions;
use etcd_client::GetOptions;
use etcd_client::GetResponse;
use etcd_client::LeaseGrantOptions;
use etcd_client::PutOptions;
use etcd_client::SortOrder;
use etcd_client::SortTarget;
use pgwarden_tests::Cluster;
use pgwarden_tests::grpc::expect_status;
use tonic::Code;

pgwarden_tests::against_both_targets!(1 => put_get_and_revisions, range_queries, delete_range, request_errors);

fn keys(response: &GetResponse) -> Vec<String> {
    response
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> anyhow::Result<i64> {
    Ok(header.context("response without header")?.revision())
}

async fn put_get_and_revisions(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;

    // A new cluster is at revision 1; each write takes the next revision.
    let empty = client.get("a", None).await?;
    ensure!(
        revision_of(empty.header())? == 1,
        "new cluster revision: {empty:?}"
    );
    ensure!(empty.kvs().is_empty() && empty.count() == 0);

    let first = client.put("a", "1", None).await?;
    ensure!(revision_of(first.header())? == 2, "{first:?}");
    ensure!(first.prev_key().is_none());
    let header = first.header().context("header")?;
    ensure!(header.cluster_id() != 0 && header.member_id() != 0 && header.raft_term() >= 1);

    let second = client
        .put("a", "2", Some(PutOptions::new().with_prev_key()))
        .await?;
    ensure!(revision_of(second.header())? == 3);
    let prev = second.prev_key().context("prev_kv requested")?;
    ensure!(prev.value() == b"1" && prev.mod_revision() == 2 && prev.version() == 1);

    let got = client.get("a", None).await?;
    let kv = &got.kvs()[0];
    ensure!(kv.key() == b"a" && kv.value() == b"2");
    ensure!(kv.create_revision() == 2 && kv.mod_revision() == 3 && kv.version() == 2);
    ensure!(kv.lease() == 0 && got.count() == 1 && !got.more());

    // Reading at an older revision sees the value of then; the header still carries the current revision.
    let old = client
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await?;
    ensure!(old.kvs()[0].value() == b"1" && old.kvs()[0].version() == 1);
    ensure!(
        revision_of(old.header())? == 3,
        "range header.revision is the current one"
    );

    // ignore_value keeps the value but bumps version and mod_revision.
    client
        .put("a", "", Some(PutOptions::new().with_ignore_value()))
        .await?;
    let kept = client.get("a", None).await?;
    ensure!(kept.kvs()[0].value() == b"2" && kept.kvs()[0].version() == 3);

    // ignore_lease keeps the key's lease; lease=0 otherwise detaches it.
    let lease = client.lease_grant(60, None).await?.id();
    client
        .put("l", "x", Some(PutOptions::new().with_lease(lease)))
        .await?;
    client
        .put("l", "y", Some(PutOptions::new().with_ignore_lease()))
        .await?;
    let with_lease = client.get("l", None).await?;
    ensure!(with_lease.kvs()[0].lease() == lease && with_lease.kvs()[0].value() == b"y");
    client.put("l", "z", None).await?;
    ensure!(client.get("l", None).await?.kvs()[0].lease() == 0);

    // A serializable read answers from the member's own state.
    let serializable = client
        .get("a", Some(GetOptions::new().with_serializable()))
        .await?;
    ensure!(serializable.kvs()[0].value() == b"2");

    // Values are bytes, not strings.
    client
        .put(vec![0xffu8, 0x00], vec![0u8, 159, 146, 150], None)
        .await?;
    let binary = client.get(vec![0xffu8, 0x00], None).await?;
    ensure!(binary.kvs()[0].value() == [0u8, 159, 146, 150]);
    Ok(())
}

async fn range_queries(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    // Revisions: a=2 b=3 c=4 d=5 foo/1=6 foo/2=7 foo/3=8, then b rewritten at 9.
    for (key, value) in [
        ("a", "v5"),
        ("b", "v1"),
        ("c", "v4"),
        ("d", "v2"),
        ("foo/1", "f1"),
        ("foo/2", "f2"),
        ("foo/3", "f3"),
        ("b", "v9"),
    ] {
        client.put(key, value, None).await?;
    }
    let prefix = client
        .get("foo/", Some(GetOptions::new().with_prefix()))
        .await?;
    ensure!(keys(&prefix) == ["foo/1", "foo/2", "foo/3"], "{prefix:?}");

    let from_key = client
        .get("c", Some(GetOptions::new().with_from_key()))
        .await?;
    ensure!(keys(&from_key) == ["c", "d", "foo/1", "foo/2", "foo/3"]);

    let range = client
        .get("b", Some(GetOptions::new().with_range("d")))
        .await?;
    ensure!(keys(&range) == ["b", "c"]);

    let all = client
        .get("", Some(GetOptions::new().with_all_keys()))
        .await?;
    ensure!(all.count() == 7);

    // limit: `more` says whether keys were left out; `count` ignores the limit.
    let limited = client
        .get("", Some(GetOptions::new().with_all_keys().with_limit(2)))
        .await?;
    ensure!(keys(&limited) == ["a", "b"] && limited.more() && limited.count() == 7);
    let exact = client
        .get("foo/", Some(GetOptions::new().with_prefix().with_limit(3)))
        .await?;
    ensure!(!exact.more() && exact.count() == 3);

    let descending = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await?;
    ensure!(keys(&descending)[0] == "foo/3");
    let by_value = client
        .get(
            "a",
            Some(
                GetOptions::new()
                    .with_range("e")
                    .with_sort(SortTarget::Value, SortOrder::Ascend),
            ),
        )
        .await?;
    ensure!(
        keys(&by_value) == ["d", "c", "a", "b"],
        "{:?}",
        keys(&by_value)
    );
    // The lock/election recipes: first and last created in a range (sort CREATE + limit 1).
    let first_created = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1),
            ),
        )
        .await?;
    ensure!(keys(&first_created) == ["a"]);
    let last_modified = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_sort(SortTarget::Mod, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await?;
    ensure!(keys(&last_modified) == ["b"]);
    // Sorting by version with order NONE sorts ascending (etcd treats it as ASCEND).
    let by_version = client
        .get(
            "a",
            Some(
                GetOptions::new()
                    .with_range("c")
                    .with_sort(SortTarget::Version, SortOrder::None),
            ),
        )
        .await?;
    ensure!(keys(&by_version) == ["a", "b"]);

    let keys_only = client
        .get(
            "foo/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await?;
    ensure!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));
    ensure!(keys_only.kvs()[0].mod_revision() == 6 && keys_only.kvs()[0].version() == 1);

    let count_only = client
        .get(
            "foo/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    ensure!(count_only.kvs().is_empty() && count_only.count() == 3);

    // A range at an older revision sees the keyspace of then.
    let at_five = client
        .get("", Some(GetOptions::new().with_all_keys().with_revision(5)))
        .await?;
    ensure!(keys(&at_five) == ["a", "b", "c", "d"]);
    ensure!(at_five.kvs()[1].value() == b"v1");

    // Revision filters prune after the range (bounds inclusive); `count` still counts the whole range.
    let filtered = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_min_mod_revision(4)
                    .with_max_mod_revision(7),
            ),
        )
        .await?;
    ensure!(
        keys(&filtered) == ["c", "d", "foo/1", "foo/2"],
        "{:?}",
        keys(&filtered)
    );
    ensure!(
        filtered.count() == 7,
        "count ignores the filters: {filtered:?}"
    );
    let created = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_min_create_revision(3)
                    .with_max_create_revision(3),
            ),
        )
        .await?;
    ensure!(keys(&created) == ["b"]);
    Ok(())
}

async fn delete_range(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    for key in ["k1", "k2", "k3", "other"] {
        client.put(key, "v", None).await?;
    }
    // Revision 5 now. Deleting one key with prev_kv returns it.
    let one = client
        .delete("k1", Some(DeleteOptions::new().with_prev_key()))
        .await?;
    ensure!(one.deleted() == 1 && revision_of(one.header())? == 6);
    ensure!(one.prev_kvs().len() == 1 && one.prev_kvs()[0].key() == b"k1");

    // Several keys go in one revision.
    let many = client
        .delete("k", Some(DeleteOptions::new().with_prefix()))
        .await?;
    ensure!(many.deleted() == 2 && revision_of(many.header())? == 7);
    ensure!(many.prev_kvs().is_empty(), "prev_kvs only when asked");

    // Deleting nothing does not take a revision.
    let none = client.delete("k1", None).await?;
    ensure!(none.deleted() == 0 && revision_of(none.header())? == 7);

    // A deleted key comes back as a new incarnation.
    let put = client.put("k1", "again", None).await?;
    ensure!(revision_of(put.header())? == 8);
    let again = client.get("k1", None).await?;
    ensure!(again.kvs()[0].version() == 1 && again.kvs()[0].create_revision() == 8);

    let range = client
        .delete("a", Some(DeleteOptions::new().with_range("p")))
        .await?;
    ensure!(range.deleted() == 2, "k1 and other: {range:?}");
    Ok(())
}

async fn request_errors(cluster: &mut Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client().await?;
    let no_key = "etcdserver: key is not provided";
    expect_status(
        client.put("", "v", None).await,
        Code::InvalidArgument,
        no_key,
    )?;
    expect_status(client.get("", None).await, Code::InvalidArgument, no_key)?;
    expect_status(client.delete("", None).await, Code::InvalidArgument, no_key)?;

    expect_status(
        client
            .put("missing", "", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    )?;
    expect_status(
        client
            .put("missing", "v", Some(PutOptions::new().with_ignore_lease()))
            .await,
        Code::InvalidArgument,
        "etcdserver: key not found",
    )?;
    client.put("present", "v", None).await?;
    expect_status(
        client
            .put("present", "v", Some(PutOptions::new().with_ignore_value()))
            .await,
        Code::InvalidArgument,
        "etcdserver: value is provided",
    )?;
    expect_status(
        client
            .put(
                "present",
                "v",
                Some(PutOptions::new().with_ignore_lease().with_lease(42)),
            )
            .await,
        Code::InvalidArgument,
        "etcdserver: lease is provided",
    )?;
    expect_status(
        client
            .put("present", "v", Some(PutOptions::new().with_lease(0x1234)))
            .await,
        Code::NotFound,
        "etcdserver: requested lease not found",
    )?;
    expect_status(
        client
            .get("present", Some(GetOptions::new().with_revision(1000)))
            .await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    )?;
    // None of the refused requests wrote anything: only the one put took a revision.
    let after = client.get("present", None).await?;
    ensure!(revision_of(after.header())? == 2, "{after:?}");

    // A lease with a chosen ID that exists already.
    client
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(777)))
        .await?;
    expect_status(
        client
            .lease_grant(60, Some(LeaseGrantOptions::new().with_id(777)))
            .await,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    )?;
    Ok(())
}
