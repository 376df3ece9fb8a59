//! etcd's HTTP JSON gateway: every `/v3/...` route of etcd's grpc-gateway, served in-process
//! over the same [`Service`] as the gRPC adapters (no loopback gRPC hop), on the client port.
//!
//! Each route is `POST` with the whole request message as the JSON body, in the proto3 JSON
//! mapping generated from etcd's protos ([`json`]); `/v3beta/...` and `/v3alpha/...` are
//! aliases of `/v3/...` for clients that pick the prefix from `/version`. Unary replies are
//! the response message; errors are `{"error", "code", "message", "details"}` with the HTTP
//! status grpc-gateway gives the gRPC code. Streaming routes ([`streams`]) reply with
//! newline-delimited `{"result": ...}` objects. The `Authorization` header (optional
//! `Bearer ` prefix) is the caller's auth token ([`json::Caller`]).
//!
//! Every call but Authenticate first resolves the token into the service acting for that
//! caller ([`Service::for_token`]), so the service layer's permission checks apply exactly as
//! they do to gRPC calls.
//!
//! Must not know: tonic transports or gRPC framing — the only gRPC type here is the status
//! (code + message) that errors already are.

pub mod json;
pub mod splitter;
pub mod streams;
pub mod unary;

use axum::Router;
use axum::routing::{any, post};
use etcd_proto::etcdserverpb::*;
use etcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use etcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use self::unary::{method_not_allowed, not_found, status, unary, unary_without_token};
use crate::backend::Backend;
use crate::error::ServiceError;
use crate::service::Service;
use crate::service::recipes::MISSING_LEADER_KEY;

/// The prefixes the gateway answers under: etcd ≥ 3.4's `/v3`, and the older `/v3beta`
/// (3.3) and `/v3alpha` (3.0–3.2) that etcd still rewrites to `/v3`.
pub const PREFIXES: [&str; 3] = ["/v3", "/v3beta", "/v3alpha"];

/// The gateway's routes under every prefix, ready to merge with the gRPC and plain HTTP routes
/// on one listener. Unknown paths under a prefix answer 404 with an error body.
pub fn router<B: Backend>(service: Service<B>) -> Router {
    let api = routes::<B>();
    let mut router = Router::new();
    for prefix in PREFIXES {
        router = router.nest(prefix, api.clone());
    }
    router.with_state(service)
}

/// A route that decodes `$request`, calls the service layer's `$method` for the caller (the
/// token resolved first) and encodes its response.
macro_rules! call {
    ($method:ident, $request:ty) => {
        unary(|service: Service<B>, request: $request| async move {
            service.$method(request).await.map_err(status)
        })
    };
    ($method:ident without request, $request:ty) => {
        unary(|service: Service<B>, _: $request| async move {
            service.$method().await.map_err(status)
        })
    };
}

fn leader_key(leader: Option<LeaderKey>) -> Result<LeaderKey, tonic::Status> {
    leader.ok_or_else(|| status(ServiceError::Internal(MISSING_LEADER_KEY.to_owned())))
}

/// Every route of etcd-api.md §1.1, relative to a prefix.
fn routes<B: Backend>() -> Router<Service<B>> {
    Router::new()
        // KV
        .route("/kv/range", call!(range, RangeRequest))
        .route("/kv/put", call!(put, PutRequest))
        .route("/kv/deleterange", call!(delete_range, DeleteRangeRequest))
        .route("/kv/txn", call!(txn, TxnRequest))
        .route("/kv/compaction", call!(compact, CompactionRequest))
        // Watch
        .route(
            "/watch",
            post(streams::watch::<B>).fallback(method_not_allowed),
        )
        // Lease
        .route("/lease/grant", call!(lease_grant, LeaseGrantRequest))
        .route("/lease/revoke", lease_revoke::<B>())
        .route("/kv/lease/revoke", lease_revoke::<B>())
        .route(
            "/lease/keepalive",
            post(streams::lease_keep_alive::<B>).fallback(method_not_allowed),
        )
        .route("/lease/timetolive", lease_time_to_live::<B>())
        .route("/kv/lease/timetolive", lease_time_to_live::<B>())
        .route("/lease/leases", lease_leases::<B>())
        .route("/kv/lease/leases", lease_leases::<B>())
        // Cluster
        .route("/cluster/member/add", call!(member_add, MemberAddRequest))
        .route(
            "/cluster/member/remove",
            call!(member_remove, MemberRemoveRequest),
        )
        .route(
            "/cluster/member/update",
            call!(member_update, MemberUpdateRequest),
        )
        .route(
            "/cluster/member/list",
            call!(member_list, MemberListRequest),
        )
        .route(
            "/cluster/member/promote",
            call!(member_promote, MemberPromoteRequest),
        )
        // Maintenance
        .route("/maintenance/alarm", call!(alarm, AlarmRequest))
        .route(
            "/maintenance/status",
            call!(status without request, StatusRequest),
        )
        .route(
            "/maintenance/defragment",
            call!(defragment without request, DefragmentRequest),
        )
        .route(
            "/maintenance/hash",
            call!(hash without request, HashRequest),
        )
        .route("/maintenance/hashkv", call!(hash_kv, HashKvRequest))
        .route(
            "/maintenance/snapshot",
            post(streams::snapshot::<B>).fallback(method_not_allowed),
        )
        .route(
            "/maintenance/transfer-leadership",
            call!(move_leader, MoveLeaderRequest),
        )
        .route(
            "/maintenance/downgrade",
            unary(|_: Service<B>, _: DowngradeRequest| async move {
                Err::<DowngradeResponse, _>(tonic::Status::unimplemented(
                    "downgrade is not supported by pgwarden",
                ))
            }),
        )
        // Auth
        .route("/auth/enable", call!(auth_enable, AuthEnableRequest))
        .route("/auth/disable", call!(auth_disable, AuthDisableRequest))
        .route(
            "/auth/status",
            call!(auth_status without request, AuthStatusRequest),
        )
        .route(
            "/auth/authenticate",
            unary_without_token(
                |service: Service<B>, request: AuthenticateRequest| async move {
                    service.authenticate(request).await.map_err(status)
                },
            ),
        )
        .route("/auth/user/add", call!(user_add, AuthUserAddRequest))
        .route("/auth/user/get", call!(user_get, AuthUserGetRequest))
        .route(
            "/auth/user/list",
            call!(user_list without request, AuthUserListRequest),
        )
        .route(
            "/auth/user/delete",
            call!(user_delete, AuthUserDeleteRequest),
        )
        .route(
            "/auth/user/changepw",
            call!(user_change_password, AuthUserChangePasswordRequest),
        )
        .route(
            "/auth/user/grant",
            call!(user_grant_role, AuthUserGrantRoleRequest),
        )
        .route(
            "/auth/user/revoke",
            call!(user_revoke_role, AuthUserRevokeRoleRequest),
        )
        .route("/auth/role/add", call!(role_add, AuthRoleAddRequest))
        .route("/auth/role/get", call!(role_get, AuthRoleGetRequest))
        .route(
            "/auth/role/list",
            call!(role_list without request, AuthRoleListRequest),
        )
        .route(
            "/auth/role/delete",
            call!(role_delete, AuthRoleDeleteRequest),
        )
        .route(
            "/auth/role/grant",
            call!(role_grant_permission, AuthRoleGrantPermissionRequest),
        )
        .route(
            "/auth/role/revoke",
            call!(role_revoke_permission, AuthRoleRevokePermissionRequest),
        )
        // Lock
        .route(
            "/lock/lock",
            unary(|service: Service<B>, request: LockRequest| async move {
                let (header, key) = service
                    .lock(request.name, request.lease)
                    .await
                    .map_err(status)?;
                Ok(LockResponse {
                    header: Some(service.header(header.revision)),
                    key,
                })
            }),
        )
        .route(
            "/lock/unlock",
            unary(|service: Service<B>, request: UnlockRequest| async move {
                let header = service.unlock(request.key).await.map_err(status)?;
                Ok(UnlockResponse {
                    header: Some(header),
                })
            }),
        )
        // Election
        .route(
            "/election/campaign",
            unary(|service: Service<B>, request: CampaignRequest| async move {
                let name = request.name.clone();
                let (header, key, rev, lease) = service
                    .campaign(request.name, request.lease, request.value)
                    .await
                    .map_err(status)?;
                Ok(CampaignResponse {
                    header: Some(service.header(header.revision)),
                    leader: Some(LeaderKey {
                        name,
                        key,
                        rev,
                        lease,
                    }),
                })
            }),
        )
        .route(
            "/election/proclaim",
            unary(|service: Service<B>, request: ProclaimRequest| async move {
                let leader = leader_key(request.leader)?;
                let header = service
                    .proclaim(leader.key, leader.rev, leader.lease, request.value)
                    .await
                    .map_err(status)?;
                Ok(ProclaimResponse {
                    header: Some(header),
                })
            }),
        )
        .route(
            "/election/leader",
            unary(|service: Service<B>, request: LeaderRequest| async move {
                let (header, kv) = service
                    .election_leader(&request.name)
                    .await
                    .map_err(status)?;
                Ok(LeaderResponse {
                    header: Some(header),
                    kv: Some(kv),
                })
            }),
        )
        .route(
            "/election/observe",
            post(streams::observe::<B>).fallback(method_not_allowed),
        )
        .route(
            "/election/resign",
            unary(|service: Service<B>, request: ResignRequest| async move {
                let leader = leader_key(request.leader)?;
                let header = service
                    .resign(leader.key, leader.rev)
                    .await
                    .map_err(status)?;
                Ok(ResignResponse {
                    header: Some(header),
                })
            }),
        )
        .route("/{*path}", any(not_found))
}

fn lease_revoke<B: Backend>() -> axum::routing::MethodRouter<Service<B>> {
    call!(lease_revoke, LeaseRevokeRequest)
}

fn lease_time_to_live<B: Backend>() -> axum::routing::MethodRouter<Service<B>> {
    unary(
        |service: Service<B>, request: LeaseTimeToLiveRequest| async move {
            service
                .lease_time_to_live(request, false)
                .await
                .map_err(status)
        },
    )
}

fn lease_leases<B: Backend>() -> axum::routing::MethodRouter<Service<B>> {
    call!(lease_leases without request, LeaseLeasesRequest)
}
