//! Auth apply and permission rules, as tables: each case applies commands and expects etcd's
//! answer (or error) and the resulting auth revision.

use etcd_proto::authpb::permission::Type;
use etcd_proto::authpb::{Permission, UserAddOptions};
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGrantRoleRequest,
    AuthUserRevokeRoleRequest, RangeRequest, request_op,
};
use etcd_proto::raftcmd::RaftCommand;
use etcd_proto::raftcmd::raft_command::Command;

use super::helpers::*;
use crate::{Access, Caller, Store};

pub fn auth_enable() -> RaftCommand {
    cmd(Command::AuthEnable(AuthEnableRequest {}))
}

pub fn auth_disable() -> RaftCommand {
    cmd(Command::AuthDisable(AuthDisableRequest {}))
}

pub fn user_add(name: &str, hash: &str) -> RaftCommand {
    cmd(Command::UserAdd(AuthUserAddRequest {
        name: name.to_owned(),
        hashed_password: hash.to_owned(),
        ..Default::default()
    }))
}

pub fn user_add_no_password(name: &str) -> RaftCommand {
    cmd(Command::UserAdd(AuthUserAddRequest {
        name: name.to_owned(),
        options: Some(UserAddOptions { no_password: true }),
        ..Default::default()
    }))
}

pub fn user_delete(name: &str) -> RaftCommand {
    cmd(Command::UserDelete(AuthUserDeleteRequest {
        name: name.to_owned(),
    }))
}

pub fn user_grant_role(user: &str, role: &str) -> RaftCommand {
    cmd(Command::UserGrantRole(AuthUserGrantRoleRequest {
        user: user.to_owned(),
        role: role.to_owned(),
    }))
}

pub fn user_revoke_role(user: &str, role: &str) -> RaftCommand {
    cmd(Command::UserRevokeRole(AuthUserRevokeRoleRequest {
        name: user.to_owned(),
        role: role.to_owned(),
    }))
}

pub fn role_add(name: &str) -> RaftCommand {
    cmd(Command::RoleAdd(AuthRoleAddRequest {
        name: name.to_owned(),
    }))
}

pub fn role_delete(name: &str) -> RaftCommand {
    cmd(Command::RoleDelete(AuthRoleDeleteRequest {
        role: name.to_owned(),
    }))
}

pub fn grant_permission(role: &str, kind: Type, key: &str, range_end: &str) -> RaftCommand {
    cmd(Command::RoleGrantPermission(
        AuthRoleGrantPermissionRequest {
            name: role.to_owned(),
            perm: Some(Permission {
                perm_type: kind as i32,
                key: b(key),
                range_end: b(range_end),
            }),
        },
    ))
}

pub fn revoke_permission(role: &str, key: &str, range_end: &str) -> RaftCommand {
    cmd(Command::RoleRevokePermission(
        AuthRoleRevokePermissionRequest {
            role: role.to_owned(),
            key: b(key),
            range_end: b(range_end),
        },
    ))
}

pub fn change_password(name: &str, hash: &str) -> RaftCommand {
    cmd(Command::UserChangePassword(AuthUserChangePasswordRequest {
        name: name.to_owned(),
        hashed_password: hash.to_owned(),
        ..Default::default()
    }))
}

/// Applies `command` and returns the refusal, if any; a refusal changes nothing.
pub fn apply_auth(store: &mut Store, command: RaftCommand) -> Option<EtcdError> {
    let before = store.clone();
    let applied = store.apply(&command);
    let refusal = refused(&applied);
    if refusal.is_some() {
        assert_eq!(*store, before, "a refused command changed the store");
    }
    assert!(
        applied.events.is_empty(),
        "auth commands make no watch events"
    );
    assert_eq!(
        applied.revision,
        before.revision(),
        "auth commands keep the kv revision"
    );
    refusal
}

pub fn expect_auth_ok(store: &mut Store, command: RaftCommand) {
    let description = format!("{command:?}");
    if let Some(error) = apply_auth(store, command) {
        panic!("{description} refused: {error:?}");
    }
}

/// root (root role) and alice (role `app`: READ on `/app/` prefix, READWRITE on `/app/rw/`
/// prefix, WRITE on key `w`), auth enabled.
fn enabled_store() -> Store {
    let mut store = Store::new();
    for command in [
        user_add("root", "hash-root"),
        user_grant_role("root", "root"),
        user_add("alice", "hash-alice"),
        role_add("app"),
        grant_permission("app", Type::Read, "/app/", "/app0"),
        grant_permission("app", Type::Readwrite, "/app/rw/", "/app/rw0"),
        grant_permission("app", Type::Write, "w", ""),
        user_grant_role("alice", "app"),
        auth_enable(),
    ] {
        expect_auth_ok(&mut store, command);
    }
    store
}

fn caller(store: &Store, user: &str) -> Option<Caller<'static>> {
    let user: &'static str = Box::leak(user.to_owned().into_boxed_str());
    Some(Caller {
        user,
        token_revision: store.auth_revision(),
    })
}

/// Leaked so table rows can borrow it for the whole test.
fn range(key: &str, range_end: &str) -> &'static RangeRequest {
    Box::leak(Box::new(RangeRequest {
        key: b(key),
        range_end: b(range_end),
        ..Default::default()
    }))
}

fn compare_value(key: &str, value: &str) -> etcd_proto::etcdserverpb::Compare {
    use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
    compare(
        key,
        CompareTarget::Value,
        CompareResult::Equal,
        TargetUnion::Value(b(value)),
    )
}

#[test]
fn enable_needs_root_user_with_root_role() {
    let mut store = Store::new();
    assert_eq!(store.auth_revision(), 1);
    assert_eq!(
        apply_auth(&mut store, auth_enable()),
        Some(errors::ROOT_USER_NOT_EXIST)
    );
    expect_auth_ok(&mut store, user_add("root", "h"));
    assert_eq!(
        apply_auth(&mut store, auth_enable()),
        Some(errors::ROOT_ROLE_NOT_EXIST)
    );
    // The root role needs no definition to be granted.
    expect_auth_ok(&mut store, user_grant_role("root", "root"));
    let revision = store.auth_revision();
    expect_auth_ok(&mut store, auth_enable());
    assert!(store.auth_enabled());
    assert_eq!(store.auth_revision(), revision + 1);
    assert_eq!(store.auth_enabled_revision(), revision + 1);
    // Enabling again is accepted and changes nothing.
    expect_auth_ok(&mut store, auth_enable());
    assert_eq!(store.auth_revision(), revision + 1);
    expect_auth_ok(&mut store, auth_disable());
    assert!(!store.auth_enabled());
    assert_eq!(store.auth_revision(), revision + 2);
    expect_auth_ok(&mut store, auth_disable());
    assert_eq!(store.auth_revision(), revision + 2);
}

#[test]
fn user_and_role_management_errors() {
    let mut store = enabled_store();
    let cases: Vec<(RaftCommand, Option<EtcdError>)> = vec![
        (user_add("", "h"), Some(errors::USER_EMPTY)),
        (user_add("alice", "h"), Some(errors::USER_ALREADY_EXIST)),
        (user_delete("nobody"), Some(errors::USER_NOT_FOUND)),
        (user_delete("root"), Some(errors::INVALID_AUTH_MGMT)),
        (
            user_grant_role("nobody", "app"),
            Some(errors::USER_NOT_FOUND),
        ),
        (
            user_grant_role("alice", "nope"),
            Some(errors::ROLE_NOT_FOUND),
        ),
        (
            user_revoke_role("alice", "nope"),
            Some(errors::ROLE_NOT_GRANTED),
        ),
        (
            user_revoke_role("root", "root"),
            Some(errors::INVALID_AUTH_MGMT),
        ),
        (role_add(""), Some(errors::ROLE_EMPTY)),
        (role_add("app"), Some(errors::ROLE_ALREADY_EXIST)),
        (role_delete("nope"), Some(errors::ROLE_NOT_FOUND)),
        (role_delete("root"), Some(errors::INVALID_AUTH_MGMT)),
        (
            grant_permission("nope", Type::Read, "k", ""),
            Some(errors::ROLE_NOT_FOUND),
        ),
        (
            grant_permission("app", Type::Read, "", ""),
            Some(errors::INVALID_AUTH_MGMT),
        ),
        (
            grant_permission("app", Type::Read, "b", "a"),
            Some(errors::INVALID_AUTH_MGMT),
        ),
        (
            revoke_permission("app", "zz", ""),
            Some(errors::PERMISSION_NOT_GRANTED),
        ),
        (
            revoke_permission("nope", "w", ""),
            Some(errors::ROLE_NOT_FOUND),
        ),
        (change_password("nobody", "h"), Some(errors::USER_NOT_FOUND)),
        (change_password("alice", "new-hash"), None),
        (user_grant_role("alice", "app"), None),
    ];
    for (command, expected) in cases {
        let description = format!("{command:?}");
        assert_eq!(apply_auth(&mut store, command), expected, "{description}");
    }
    assert_eq!(
        store.auth_user("alice").expect("alice").password_hash,
        "new-hash"
    );
}

#[test]
fn every_change_bumps_the_auth_revision_and_stales_tokens() {
    let mut store = enabled_store();
    let old = caller(&store, "alice");
    let read = range("/app/x", "");
    assert_eq!(store.authorize(old, Access::Range(read)), Ok(()));
    expect_auth_ok(&mut store, role_add("other"));
    assert_eq!(
        store.authorize(old, Access::Range(read)),
        Err(errors::AUTH_OLD_REVISION)
    );
    assert_eq!(
        store.authorize(caller(&store, "alice"), Access::Range(read)),
        Ok(())
    );
}

#[test]
fn role_delete_revokes_it_from_users_and_grant_replaces_type() {
    let mut store = enabled_store();
    expect_auth_ok(
        &mut store,
        grant_permission("app", Type::Readwrite, "w", ""),
    );
    let permissions = store.auth_role("app").expect("app");
    assert_eq!(permissions.len(), 3, "same range replaced, not added");
    assert!(permissions.iter().any(
        |permission| permission.key == b("w") && permission.perm_type == Type::Readwrite as i32
    ));
    expect_auth_ok(&mut store, revoke_permission("app", "w", ""));
    assert_eq!(store.auth_role("app").expect("app").len(), 2);
    expect_auth_ok(&mut store, role_delete("app"));
    assert!(store.auth_user("alice").expect("alice").roles.is_empty());
    assert_eq!(store.auth_role_names(), Vec::<String>::new());
}

#[test]
fn permission_table() {
    let store = enabled_store();
    let alice = caller(&store, "alice");
    let root = caller(&store, "root");
    let put_w = put("w", "v");
    let put_app = put("/app/x", "v");
    let put_rw = put("/app/rw/x", "v");
    let mut put_w_prev = put("w", "v");
    put_w_prev.prev_kv = true;
    let delete_rw = delete("/app/rw/", "/app/rw0");
    let delete_app = delete("/app/", "/app0");
    let whole = range("", "\0");
    let cases: Vec<(Option<Caller<'_>>, Access<'_>, Result<(), EtcdError>)> = vec![
        (None, Access::Range(whole), Err(errors::USER_EMPTY)),
        (root, Access::Range(whole), Ok(())),
        (root, Access::Admin, Ok(())),
        (alice, Access::Admin, Err(errors::PERMISSION_DENIED)),
        (
            caller(&store, "ghost"),
            Access::Range(whole),
            Err(errors::PERMISSION_DENIED),
        ),
        (alice, Access::Range(whole), Err(errors::PERMISSION_DENIED)),
        (alice, Access::Range(range("/app/", "/app0")), Ok(())),
        (alice, Access::Range(range("/app/a", "/app/b")), Ok(())),
        // Ranges reaching past the granted prefix, or open-ended, are refused.
        (
            alice,
            Access::Range(range("/app/", "/app1")),
            Err(errors::PERMISSION_DENIED),
        ),
        (
            alice,
            Access::Range(range("/app/", "\0")),
            Err(errors::PERMISSION_DENIED),
        ),
        (
            alice,
            Access::Range(range("/other", "")),
            Err(errors::PERMISSION_DENIED),
        ),
        // WRITE alone does not allow reading.
        (
            alice,
            Access::Range(range("w", "")),
            Err(errors::PERMISSION_DENIED),
        ),
        (alice, Access::Put(&put_w), Ok(())),
        (
            alice,
            Access::Put(&put_w_prev),
            Err(errors::PERMISSION_DENIED),
        ),
        (alice, Access::Put(&put_app), Err(errors::PERMISSION_DENIED)),
        (alice, Access::Put(&put_rw), Ok(())),
        (alice, Access::DeleteRange(&delete_rw), Ok(())),
        (
            alice,
            Access::DeleteRange(&delete_app),
            Err(errors::PERMISSION_DENIED),
        ),
        (
            alice,
            Access::Watch {
                key: b"/app/",
                range_end: b"/app0",
            },
            Ok(()),
        ),
        (
            alice,
            Access::Watch {
                key: b"/",
                range_end: b"0",
            },
            Err(errors::PERMISSION_DENIED),
        ),
        (alice, Access::UserGet("alice"), Ok(())),
        (
            alice,
            Access::UserGet("root"),
            Err(errors::PERMISSION_DENIED),
        ),
        (alice, Access::RoleGet("app"), Ok(())),
        (
            alice,
            Access::RoleGet("root"),
            Err(errors::PERMISSION_DENIED),
        ),
    ];
    for (who, access, expected) in cases {
        assert_eq!(store.authorize(who, access), expected, "{who:?} {access:?}");
    }
}

#[test]
fn txn_checks_compares_both_branches_and_nested_txns() {
    let store = enabled_store();
    let alice = caller(&store, "alice");
    let readable = txn(
        vec![compare_value("/app/a", "x")],
        vec![op_get(range("/app/b", "").clone())],
        vec![op_put(put("/app/rw/k", "v"))],
    );
    assert_eq!(store.authorize(alice, Access::Txn(&readable)), Ok(()));
    let compare_outside = txn(vec![compare_value("/x", "x")], vec![], vec![]);
    let failure_writes_read_only = txn(vec![], vec![], vec![op_put(put("/app/a", "v"))]);
    let nested = txn(
        vec![],
        vec![etcd_proto::etcdserverpb::RequestOp {
            request: Some(request_op::Request::RequestTxn(txn(
                vec![],
                vec![op_delete(delete("/app/a", ""))],
                vec![],
            ))),
        }],
        vec![],
    );
    for refused in [compare_outside, failure_writes_read_only, nested] {
        assert_eq!(
            store.authorize(alice, Access::Txn(&refused)),
            Err(errors::PERMISSION_DENIED),
            "{refused:?}"
        );
    }
}

#[test]
fn lease_revoke_and_leased_put_need_write_on_attached_keys() {
    let mut store = Store::new();
    store.apply(&grant(5, 60));
    do_put(&mut store, put_lease("/app/rw/k", "v", 5)).expect("put");
    do_put(&mut store, put_lease("/secret", "v", 5)).expect("put");
    for command in [
        user_add("root", "h"),
        user_grant_role("root", "root"),
        user_add("alice", "h"),
        role_add("app"),
        grant_permission("app", Type::Readwrite, "/app/", "/app0"),
        user_grant_role("alice", "app"),
        auth_enable(),
    ] {
        expect_auth_ok(&mut store, command);
    }
    let alice = caller(&store, "alice");
    assert_eq!(
        store.authorize(alice, Access::LeaseRevoke(5)),
        Err(errors::PERMISSION_DENIED)
    );
    assert_eq!(
        store.authorize(alice, Access::Put(&put_lease("/app/x", "v", 5))),
        Err(errors::PERMISSION_DENIED)
    );
    // An unknown lease has no keys; apply answers it with LEASE_NOT_FOUND.
    assert_eq!(store.authorize(alice, Access::LeaseRevoke(99)), Ok(()));
    do_delete(&mut store, delete("/secret", "")).expect("delete");
    assert_eq!(store.authorize(alice, Access::LeaseRevoke(5)), Ok(()));
}

#[test]
fn disabled_auth_allows_everything_and_same_log_gives_same_state() {
    let store = Store::new();
    assert_eq!(store.authorize(None, Access::Admin), Ok(()));
    assert_eq!(enabled_store(), enabled_store());
    let decoded = Store::decode_snapshot(&enabled_store().encode_snapshot()).expect("decode");
    assert_eq!(decoded, enabled_store());
}
