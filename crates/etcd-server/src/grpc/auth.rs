//! `etcdserverpb.Auth`. Authentication is never enabled in pgwarden yet: AuthStatus answers
//! `enabled: false`, Authenticate answers etcd's "authentication is not enabled", AuthEnable
//! finds no root user, AuthDisable is a no-op success. The user and role store is not
//! implemented: those calls answer `Unimplemented`.

use etcd_proto::errors;
use etcd_proto::etcdserverpb::auth_server::Auth;
use etcd_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::reply;
use crate::backend::Backend;
use crate::service::Service;

pub struct AuthApi<B: Backend> {
    pub service: Service<B>,
}

fn no_user_store() -> Status {
    Status::unimplemented("pgwarden does not implement etcd users and roles yet")
}

#[tonic::async_trait]
impl<B: Backend> Auth for AuthApi<B> {
    async fn auth_enable(
        &self,
        _request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        // Enabling needs user `root` with role `root`; the user store is empty.
        Err(errors::ROOT_USER_NOT_EXIST.status())
    }

    async fn auth_disable(
        &self,
        _request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        reply(Ok(AuthDisableResponse {
            header: Some(self.service.current_header()),
        }))
    }

    async fn auth_status(
        &self,
        _request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        reply(Ok(AuthStatusResponse {
            header: Some(self.service.current_header()),
            enabled: false,
            auth_revision: 0,
        }))
    }

    async fn authenticate(
        &self,
        _request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        Err(errors::AUTH_NOT_ENABLED.status())
    }

    async fn user_add(
        &self,
        _request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        Err(no_user_store())
    }

    async fn user_get(
        &self,
        _request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        Err(no_user_store())
    }

    async fn user_list(
        &self,
        _request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        Err(no_user_store())
    }

    async fn user_delete(
        &self,
        _request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        Err(no_user_store())
    }

    async fn user_change_password(
        &self,
        _request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        Err(no_user_store())
    }

    async fn user_grant_role(
        &self,
        _request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        Err(no_user_store())
    }

    async fn user_revoke_role(
        &self,
        _request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        Err(no_user_store())
    }

    async fn role_add(
        &self,
        _request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        Err(no_user_store())
    }

    async fn role_get(
        &self,
        _request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        Err(no_user_store())
    }

    async fn role_list(
        &self,
        _request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        Err(no_user_store())
    }

    async fn role_delete(
        &self,
        _request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        Err(no_user_store())
    }

    async fn role_grant_permission(
        &self,
        _request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        Err(no_user_store())
    }

    async fn role_revoke_permission(
        &self,
        _request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        Err(no_user_store())
    }
}
