//! Auth: who is calling, the one permission check every request goes through, and the
//! `etcdserverpb.Auth` calls (enable/disable/status, authenticate, users, roles).
//!
//! # How transports use it
//! A [`Service`] carries its caller ([`AuthInfo`]). [`Service::new`] makes a service acting for
//! an anonymous client, so a transport that forgets auth fails closed (`USER_EMPTY` once auth
//! is enabled). For every request (or stream) a transport reads the token — gRPC metadata
//! `token`, or the HTTP `Authorization` header (an optional `Bearer ` prefix stripped; see
//! [`token_from_header`]) — and calls [`Service::for_token`], which answers
//! `INVALID_AUTH_TOKEN` for an unknown, expired or void token and otherwise returns a service
//! acting for that caller. Every request method of that service checks its own permission in
//! [`Service::check`] against the applied auth state (`mvcc`'s `Store::authorize`), with
//! etcd's errors: `USER_EMPTY` without a token while auth is enabled, `AUTH_OLD_REVISION` when
//! the auth state changed since the request was received, `PERMISSION_DENIED` otherwise.
//! Server-side recipes (Lock, Election) run as the caller. Trusted in-process users (an HA
//! agent embedding the store) use `with_caller(AuthInfo::Internal)`, which is never checked.
//!
//! # Differences from etcd
//! - Authenticate is verified against this member's applied state and the token is kept by
//!   this member only (etcd replicates simple tokens through Raft). A client that switches
//!   members gets `INVALID_AUTH_TOKEN` and authenticates again, as etcd's clients do.
//! - Writes are checked before proposing, against the local applied state, not at apply time:
//!   a permission revoked while a write is in flight does not stop that write.
//! - `Compact`, `LeaseGrant`, `LeaseTimeToLive`, `LeaseLeases`, `Alarm`, `Status` and
//!   `MemberList` are not checked, as in etcd (TimeToLive's `keys` included).

use etcd_proto::errors;
use etcd_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListResponse, AuthRoleRevokePermissionRequest,
    AuthRoleRevokePermissionResponse, AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse,
    AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, ResponseHeader,
};
use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::raft_response::Response;
use mvcc::{Access, Caller};

use super::auth_tokens::TokenOwner;
use super::{Service, unexpected};
use crate::backend::Backend;
use crate::error::ServiceError;

/// Who a service acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthInfo {
    /// Trusted in-process callers: never checked.
    Internal,
    /// A client request without a token (and what [`Service::new`] acts for): refused with
    /// `USER_EMPTY` while auth is enabled.
    Anonymous,
    /// A client with a valid token for `user`, checked at `auth_revision` (the auth revision
    /// when the request was received, as etcd does for simple tokens).
    User { name: String, auth_revision: u64 },
}

/// The token in an HTTP `Authorization` header value (the gateway's spelling), without an
/// optional `Bearer ` prefix; `None` when empty.
pub fn token_from_header(value: &str) -> Option<&str> {
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    (!token.is_empty()).then_some(token)
}

impl<B: Backend> Service<B> {
    /// The caller this service acts for.
    pub fn caller(&self) -> &AuthInfo {
        &self.caller
    }

    /// Establishes who sends a request carrying `token`. With auth disabled the token is
    /// ignored (as etcd does); an unknown, expired or void token is `INVALID_AUTH_TOKEN`.
    pub fn authorize(&self, token: Option<&str>) -> Result<AuthInfo, ServiceError> {
        let Some(token) = token.filter(|token| !token.is_empty()) else {
            return Ok(AuthInfo::Anonymous);
        };
        let (enabled, enabled_revision, auth_revision) = self.node.read(|store| {
            (
                store.auth_enabled(),
                store.auth_enabled_revision(),
                store.auth_revision(),
            )
        });
        if !enabled {
            return Ok(AuthInfo::Anonymous);
        }
        let owner = self
            .tokens
            .resolve(token)
            .ok_or(errors::INVALID_AUTH_TOKEN)?;
        let current_hash = self
            .node
            .read(|store| store.auth_user(&owner.user).map(|user| user.password_hash));
        // Void: issued in an earlier enabled period, or the user was deleted or changed its
        // password since (possibly through another member).
        if owner.issued_at_revision < enabled_revision
            || current_hash.as_deref() != Some(owner.password_hash.as_str())
        {
            self.tokens.revoke(token);
            return Err(errors::INVALID_AUTH_TOKEN.into());
        }
        Ok(AuthInfo::User {
            name: owner.user,
            auth_revision,
        })
    }

    /// This service acting for `caller`.
    pub fn with_caller(&self, caller: AuthInfo) -> Service<B> {
        let mut service = self.clone();
        service.caller = caller;
        service
    }

    /// Who sends a request without a token over a connection whose verified client
    /// certificate names `user` (its Common Name): that user while auth is enabled, as etcd
    /// does; anonymous otherwise.
    pub fn authorize_certificate_user(&self, user: &str) -> AuthInfo {
        let (enabled, auth_revision) = self
            .node
            .read(|store| (store.auth_enabled(), store.auth_revision()));
        if !enabled || user.is_empty() {
            return AuthInfo::Anonymous;
        }
        AuthInfo::User {
            name: user.to_owned(),
            auth_revision,
        }
    }

    /// [`Service::authorize`] then [`Service::with_caller`]: what a transport calls per request.
    pub fn for_token(&self, token: Option<&str>) -> Result<Service<B>, ServiceError> {
        Ok(self.with_caller(self.authorize(token)?))
    }

    /// The one permission check: may this service's caller do `access` now?
    pub fn check(&self, access: Access<'_>) -> Result<(), ServiceError> {
        let caller = match &self.caller {
            AuthInfo::Internal => return Ok(()),
            AuthInfo::Anonymous => None,
            AuthInfo::User {
                name,
                auth_revision,
            } => Some(Caller {
                user: name,
                token_revision: *auth_revision,
            }),
        };
        self.node
            .read(|store| store.authorize(caller, access))
            .map_err(ServiceError::from)
    }

    async fn propose_auth(
        &self,
        command: Command,
    ) -> Result<(Response, ResponseHeader), ServiceError> {
        self.check(Access::Admin)?;
        let response = self.propose(command).await?;
        let header = self.current_header();
        Ok((response, header))
    }

    /// bcrypt with a fresh random salt, off the async runtime (it is deliberately slow).
    async fn hash_password(&self, password: String) -> Result<String, ServiceError> {
        let cost = self.config.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|error| ServiceError::Internal(format!("hashing a password: {error}")))?
            .map_err(|error| ServiceError::Internal(format!("hashing a password: {error}")))
    }

    pub async fn auth_enable(
        &self,
        request: AuthEnableRequest,
    ) -> Result<AuthEnableResponse, ServiceError> {
        match self.propose_auth(Command::AuthEnable(request)).await? {
            (Response::AuthEnable(_), header) => Ok(AuthEnableResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("auth enable")),
        }
    }

    pub async fn auth_disable(
        &self,
        request: AuthDisableRequest,
    ) -> Result<AuthDisableResponse, ServiceError> {
        match self.propose_auth(Command::AuthDisable(request)).await? {
            (Response::AuthDisable(_), header) => {
                self.tokens.revoke_all();
                Ok(AuthDisableResponse {
                    header: Some(header),
                })
            }
            _ => Err(unexpected("auth disable")),
        }
    }

    pub async fn auth_status(&self) -> Result<AuthStatusResponse, ServiceError> {
        self.check(Access::Admin)?;
        let (enabled, auth_revision) = self
            .node
            .read(|store| (store.auth_enabled(), store.auth_revision()));
        Ok(AuthStatusResponse {
            header: Some(self.current_header()),
            enabled,
            auth_revision,
        })
    }

    /// Verifies name and password against this member's applied state and issues a simple
    /// token. Needs no token itself.
    pub async fn authenticate(
        &self,
        request: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, ServiceError> {
        let (enabled, user, auth_revision, revision) = self.node.read(|store| {
            (
                store.auth_enabled(),
                store.auth_user(&request.name),
                store.auth_revision(),
                store.revision(),
            )
        });
        if !enabled {
            return Err(errors::AUTH_NOT_ENABLED.into());
        }
        let user = user.ok_or(errors::AUTH_FAILED)?;
        if user.no_password || user.password_hash.is_empty() {
            return Err(errors::AUTH_FAILED.into());
        }
        let hash = user.password_hash.clone();
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(request.password, &hash))
            .await
            .map_err(|error| ServiceError::Internal(format!("verifying a password: {error}")))?;
        if !matches!(verified, Ok(true)) {
            return Err(errors::AUTH_FAILED.into());
        }
        let token = self.tokens.issue(
            TokenOwner {
                user: user.name,
                issued_at_revision: auth_revision,
                password_hash: user.password_hash,
            },
            u64::try_from(revision).unwrap_or_default(),
        );
        Ok(AuthenticateResponse {
            header: Some(self.current_header()),
            token,
        })
    }

    /// Hashes `password` unless the client sent a bcrypt `hashed_password` (etcd 3.5) or the
    /// user has no password; the log carries only the hash.
    async fn proposed_hash(
        &self,
        password: &mut String,
        hashed_password: &str,
    ) -> Result<String, ServiceError> {
        let password = std::mem::take(password);
        if !hashed_password.is_empty() {
            return Ok(hashed_password.to_owned());
        }
        self.hash_password(password).await
    }

    pub async fn user_add(
        &self,
        mut request: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse, ServiceError> {
        self.check(Access::Admin)?;
        if request.name.is_empty() {
            return Err(errors::USER_EMPTY.into());
        }
        let no_password = request
            .options
            .as_ref()
            .is_some_and(|options| options.no_password);
        request.hashed_password = if no_password {
            request.password.clear();
            String::new()
        } else {
            let hashed = request.hashed_password.clone();
            self.proposed_hash(&mut request.password, &hashed).await?
        };
        match self.propose_auth(Command::UserAdd(request)).await? {
            (Response::UserAdd(_), header) => Ok(AuthUserAddResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("user add")),
        }
    }

    pub async fn user_get(
        &self,
        request: AuthUserGetRequest,
    ) -> Result<AuthUserGetResponse, ServiceError> {
        self.check(Access::UserGet(&request.name))?;
        let user = self
            .node
            .read(|store| store.auth_user(&request.name))
            .ok_or(errors::USER_NOT_FOUND)?;
        Ok(AuthUserGetResponse {
            header: Some(self.current_header()),
            roles: user.roles,
        })
    }

    pub async fn user_list(&self) -> Result<AuthUserListResponse, ServiceError> {
        self.check(Access::Admin)?;
        Ok(AuthUserListResponse {
            header: Some(self.current_header()),
            users: self.node.read(|store| store.auth_user_names()),
        })
    }

    pub async fn user_delete(
        &self,
        request: AuthUserDeleteRequest,
    ) -> Result<AuthUserDeleteResponse, ServiceError> {
        let name = request.name.clone();
        match self.propose_auth(Command::UserDelete(request)).await? {
            (Response::UserDelete(_), header) => {
                self.tokens.revoke_user(&name);
                Ok(AuthUserDeleteResponse {
                    header: Some(header),
                })
            }
            _ => Err(unexpected("user delete")),
        }
    }

    pub async fn user_change_password(
        &self,
        mut request: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, ServiceError> {
        self.check(Access::Admin)?;
        if request.name.is_empty() {
            return Err(errors::USER_EMPTY.into());
        }
        let hashed = request.hashed_password.clone();
        request.hashed_password = self.proposed_hash(&mut request.password, &hashed).await?;
        let name = request.name.clone();
        match self
            .propose_auth(Command::UserChangePassword(request))
            .await?
        {
            (Response::UserChangePassword(_), header) => {
                self.tokens.revoke_user(&name);
                Ok(AuthUserChangePasswordResponse {
                    header: Some(header),
                })
            }
            _ => Err(unexpected("user change password")),
        }
    }

    pub async fn user_grant_role(
        &self,
        request: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse, ServiceError> {
        match self.propose_auth(Command::UserGrantRole(request)).await? {
            (Response::UserGrantRole(_), header) => Ok(AuthUserGrantRoleResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("user grant role")),
        }
    }

    pub async fn user_revoke_role(
        &self,
        request: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse, ServiceError> {
        match self.propose_auth(Command::UserRevokeRole(request)).await? {
            (Response::UserRevokeRole(_), header) => Ok(AuthUserRevokeRoleResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("user revoke role")),
        }
    }

    pub async fn role_add(
        &self,
        request: AuthRoleAddRequest,
    ) -> Result<AuthRoleAddResponse, ServiceError> {
        match self.propose_auth(Command::RoleAdd(request)).await? {
            (Response::RoleAdd(_), header) => Ok(AuthRoleAddResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("role add")),
        }
    }

    pub async fn role_get(
        &self,
        request: AuthRoleGetRequest,
    ) -> Result<AuthRoleGetResponse, ServiceError> {
        self.check(Access::RoleGet(&request.role))?;
        let perm = self
            .node
            .read(|store| store.auth_role(&request.role))
            .ok_or(errors::ROLE_NOT_FOUND)?;
        Ok(AuthRoleGetResponse {
            header: Some(self.current_header()),
            perm,
        })
    }

    pub async fn role_list(&self) -> Result<AuthRoleListResponse, ServiceError> {
        self.check(Access::Admin)?;
        Ok(AuthRoleListResponse {
            header: Some(self.current_header()),
            roles: self.node.read(|store| store.auth_role_names()),
        })
    }

    pub async fn role_delete(
        &self,
        request: AuthRoleDeleteRequest,
    ) -> Result<AuthRoleDeleteResponse, ServiceError> {
        match self.propose_auth(Command::RoleDelete(request)).await? {
            (Response::RoleDelete(_), header) => Ok(AuthRoleDeleteResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("role delete")),
        }
    }

    pub async fn role_grant_permission(
        &self,
        request: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse, ServiceError> {
        match self
            .propose_auth(Command::RoleGrantPermission(request))
            .await?
        {
            (Response::RoleGrantPermission(_), header) => Ok(AuthRoleGrantPermissionResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("role grant permission")),
        }
    }

    pub async fn role_revoke_permission(
        &self,
        request: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse, ServiceError> {
        match self
            .propose_auth(Command::RoleRevokePermission(request))
            .await?
        {
            (Response::RoleRevokePermission(_), header) => Ok(AuthRoleRevokePermissionResponse {
                header: Some(header),
            }),
            _ => Err(unexpected("role revoke permission")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_token_with_or_without_bearer() {
        assert_eq!(token_from_header("Bearer abc.7"), Some("abc.7"));
        assert_eq!(token_from_header("abc.7"), Some("abc.7"));
        assert_eq!(token_from_header("Bearer "), None);
        assert_eq!(token_from_header(""), None);
    }
}
