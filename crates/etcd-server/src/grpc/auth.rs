//! `etcdserverpb.Auth`: thin adapters over `service::auth`. Every call but Authenticate runs as
//! the caller its token names (management needs the root role once auth is enabled).

use etcd_proto::etcdserverpb::auth_server::Auth;
use etcd_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use super::reply;
use crate::backend::Backend;
use crate::service::Service;

pub struct AuthApi<B: Backend> {
    pub service: Service<B>,
}

#[tonic::async_trait]
impl<B: Backend> Auth for AuthApi<B> {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.auth_enable(request.into_inner()).await)
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.auth_disable(request.into_inner()).await)
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.auth_status().await)
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        // Needs no token: it is how a client gets one.
        reply(self.service.authenticate(request.into_inner()).await)
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.user_add(request.into_inner()).await)
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.user_get(request.into_inner()).await)
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.user_list().await)
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.user_delete(request.into_inner()).await)
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.user_change_password(request.into_inner()).await)
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.user_grant_role(request.into_inner()).await)
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.user_revoke_role(request.into_inner()).await)
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.role_add(request.into_inner()).await)
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.role_get(request.into_inner()).await)
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.role_list().await)
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.role_delete(request.into_inner()).await)
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.role_grant_permission(request.into_inner()).await)
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let service = super::caller(&self.service, request.metadata())?;
        reply(service.role_revoke_permission(request.into_inner()).await)
    }
}
