//! etcd's auth store as replicated data: the enabled flag, the auth revision, users (bcrypt
//! password hashes, never plaintext) and roles with their key-range permissions.
//!
//! Apply follows etcd's `server/auth/store.go`: every successful change bumps the auth revision,
//! which invalidates tokens issued before it (a client then sees `AUTH_OLD_REVISION` and
//! authenticates again). Hashing happens before proposing, so apply only stores what the log
//! carries. The `root` role needs no definition to be granted and cannot be deleted or revoked
//! from `root` while auth is enabled. Permission checks live in `auth_check`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use etcd_proto::authpb::Permission;
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthUserAddRequest,
    AuthUserAddResponse, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse,
    AuthUserDeleteRequest, AuthUserDeleteResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse,
};

use crate::store::{Store, header};

/// The user that must exist, holding [`ROOT_ROLE`], before auth can be enabled.
pub const ROOT_USER: &str = "root";
/// The role that is granted every permission on every key and all admin operations.
pub const ROOT_ROLE: &str = "root";

/// One user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct User {
    /// bcrypt hash (`$2b$...`) as proposed; empty for a user added with `no_password`.
    pub password_hash: String,
    /// The user cannot authenticate with a password (etcd `UserAddOptions.no_password`).
    pub no_password: bool,
    pub roles: BTreeSet<String>,
}

/// The replicated auth state. A new store has auth disabled at auth revision 1, as etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthState {
    pub enabled: bool,
    /// Bumped by every successful auth change; tokens carry the revision they were issued at.
    pub revision: u64,
    /// The auth revision auth was last enabled at (0: never). Tokens issued before it belong
    /// to an earlier enabled period and are void, as etcd drops all tokens on enable/disable.
    pub enabled_revision: u64,
    pub users: BTreeMap<String, User>,
    /// Each role's permissions, sorted by (key, range_end), at most one per (key, range_end).
    pub roles: BTreeMap<String, Vec<Permission>>,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            enabled: false,
            revision: 1,
            enabled_revision: 0,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// A user as the API answers it, password hash included for verification by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub name: String,
    /// bcrypt hash; empty when `no_password`.
    pub password_hash: String,
    pub no_password: bool,
    /// Granted roles, sorted.
    pub roles: Vec<String>,
}

/// A permission range is valid when it names a key and its end, if any, is after the key or
/// is `"\0"` (every key from `key` on).
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == b"\0" || key < range_end)
}

impl Store {
    /// True when requests must carry a valid token and are checked against permissions.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled
    }

    /// The auth revision: tokens issued before it are stale.
    pub fn auth_revision(&self) -> u64 {
        self.auth.revision
    }

    /// The auth revision auth was last enabled at (0: never); tokens issued before it are void.
    pub fn auth_enabled_revision(&self) -> u64 {
        self.auth.enabled_revision
    }

    pub fn auth_user(&self, name: &str) -> Option<UserView> {
        self.auth.users.get(name).map(|user| UserView {
            name: name.to_owned(),
            password_hash: user.password_hash.clone(),
            no_password: user.no_password,
            roles: user.roles.iter().cloned().collect(),
        })
    }

    /// User names, sorted.
    pub fn auth_user_names(&self) -> Vec<String> {
        self.auth.users.keys().cloned().collect()
    }

    /// A role's permissions, or `None` when the role is not defined.
    pub fn auth_role(&self, name: &str) -> Option<Vec<Permission>> {
        self.auth.roles.get(name).cloned()
    }

    /// Role names, sorted.
    pub fn auth_role_names(&self) -> Vec<String> {
        self.auth.roles.keys().cloned().collect()
    }

    fn bump_auth_revision(&mut self) {
        self.auth.revision += 1;
    }

    pub(crate) fn apply_auth_enable(
        &mut self,
        _request: &AuthEnableRequest,
    ) -> Result<AuthEnableResponse, EtcdError> {
        if !self.auth.enabled {
            let root = self
                .auth
                .users
                .get(ROOT_USER)
                .ok_or(errors::ROOT_USER_NOT_EXIST)?;
            if !root.roles.contains(ROOT_ROLE) {
                return Err(errors::ROOT_ROLE_NOT_EXIST);
            }
            self.auth.enabled = true;
            self.bump_auth_revision();
            self.auth.enabled_revision = self.auth.revision;
        }
        Ok(AuthEnableResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_auth_disable(
        &mut self,
        _request: &AuthDisableRequest,
    ) -> Result<AuthDisableResponse, EtcdError> {
        if self.auth.enabled {
            self.auth.enabled = false;
            self.bump_auth_revision();
        }
        Ok(AuthDisableResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_user_add(
        &mut self,
        request: &AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse, EtcdError> {
        if request.name.is_empty() {
            return Err(errors::USER_EMPTY);
        }
        if self.auth.users.contains_key(&request.name) {
            return Err(errors::USER_ALREADY_EXIST);
        }
        let no_password = request
            .options
            .as_ref()
            .is_some_and(|options| options.no_password);
        let password_hash = if no_password {
            String::new()
        } else {
            request.hashed_password.clone()
        };
        self.auth.users.insert(
            request.name.clone(),
            User {
                password_hash,
                no_password,
                roles: BTreeSet::new(),
            },
        );
        self.bump_auth_revision();
        Ok(AuthUserAddResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_user_delete(
        &mut self,
        request: &AuthUserDeleteRequest,
    ) -> Result<AuthUserDeleteResponse, EtcdError> {
        if request.name.is_empty() {
            return Err(errors::USER_EMPTY);
        }
        if self.auth.enabled && request.name == ROOT_USER {
            return Err(errors::INVALID_AUTH_MGMT);
        }
        if self.auth.users.remove(&request.name).is_none() {
            return Err(errors::USER_NOT_FOUND);
        }
        self.bump_auth_revision();
        Ok(AuthUserDeleteResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_user_change_password(
        &mut self,
        request: &AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, EtcdError> {
        if request.name.is_empty() {
            return Err(errors::USER_EMPTY);
        }
        let user = self
            .auth
            .users
            .get_mut(&request.name)
            .ok_or(errors::USER_NOT_FOUND)?;
        user.password_hash = request.hashed_password.clone();
        user.no_password = false;
        self.bump_auth_revision();
        Ok(AuthUserChangePasswordResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_user_grant_role(
        &mut self,
        request: &AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse, EtcdError> {
        if request.user.is_empty() {
            return Err(errors::USER_EMPTY);
        }
        if request.role != ROOT_ROLE && !self.auth.roles.contains_key(&request.role) {
            // Checked after the user, as etcd does.
            if !self.auth.users.contains_key(&request.user) {
                return Err(errors::USER_NOT_FOUND);
            }
            return Err(errors::ROLE_NOT_FOUND);
        }
        let user = self
            .auth
            .users
            .get_mut(&request.user)
            .ok_or(errors::USER_NOT_FOUND)?;
        // Granting a role the user already has is accepted and changes nothing (etcd 3.4).
        if user.roles.insert(request.role.clone()) {
            self.bump_auth_revision();
        }
        Ok(AuthUserGrantRoleResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_user_revoke_role(
        &mut self,
        request: &AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse, EtcdError> {
        if request.name.is_empty() {
            return Err(errors::USER_EMPTY);
        }
        if self.auth.enabled && request.name == ROOT_USER && request.role == ROOT_ROLE {
            return Err(errors::INVALID_AUTH_MGMT);
        }
        let user = self
            .auth
            .users
            .get_mut(&request.name)
            .ok_or(errors::USER_NOT_FOUND)?;
        if !user.roles.remove(&request.role) {
            return Err(errors::ROLE_NOT_GRANTED);
        }
        self.bump_auth_revision();
        Ok(AuthUserRevokeRoleResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_role_add(
        &mut self,
        request: &AuthRoleAddRequest,
    ) -> Result<AuthRoleAddResponse, EtcdError> {
        if request.name.is_empty() {
            return Err(errors::ROLE_EMPTY);
        }
        if self.auth.roles.contains_key(&request.name) {
            return Err(errors::ROLE_ALREADY_EXIST);
        }
        self.auth.roles.insert(request.name.clone(), Vec::new());
        self.bump_auth_revision();
        Ok(AuthRoleAddResponse {
            header: header(self.revision),
        })
    }

    /// Deleting a role also revokes it from every user holding it.
    pub(crate) fn apply_role_delete(
        &mut self,
        request: &AuthRoleDeleteRequest,
    ) -> Result<AuthRoleDeleteResponse, EtcdError> {
        if request.role.is_empty() {
            return Err(errors::ROLE_EMPTY);
        }
        if self.auth.enabled && request.role == ROOT_ROLE {
            return Err(errors::INVALID_AUTH_MGMT);
        }
        if self.auth.roles.remove(&request.role).is_none() {
            return Err(errors::ROLE_NOT_FOUND);
        }
        for user in self.auth.users.values_mut() {
            user.roles.remove(&request.role);
        }
        self.bump_auth_revision();
        Ok(AuthRoleDeleteResponse {
            header: header(self.revision),
        })
    }

    /// Grants a permission, replacing the type of an existing one on the same range.
    pub(crate) fn apply_role_grant_permission(
        &mut self,
        request: &AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse, EtcdError> {
        if request.name.is_empty() {
            return Err(errors::ROLE_EMPTY);
        }
        let permission = request.perm.as_ref().ok_or(errors::PERMISSION_NOT_GIVEN)?;
        if !(0..=2).contains(&permission.perm_type) {
            return Err(errors::PERMISSION_NOT_GIVEN);
        }
        if !valid_permission_range(&permission.key, &permission.range_end) {
            return Err(errors::INVALID_AUTH_MGMT);
        }
        let permissions = self
            .auth
            .roles
            .get_mut(&request.name)
            .ok_or(errors::ROLE_NOT_FOUND)?;
        let position = permissions.binary_search_by(|existing| {
            (&existing.key[..], &existing.range_end[..])
                .cmp(&(&permission.key[..], &permission.range_end[..]))
        });
        match position {
            Ok(index) => permissions[index].perm_type = permission.perm_type,
            Err(index) => permissions.insert(
                index,
                Permission {
                    perm_type: permission.perm_type,
                    key: Bytes::copy_from_slice(&permission.key),
                    range_end: Bytes::copy_from_slice(&permission.range_end),
                },
            ),
        }
        self.bump_auth_revision();
        Ok(AuthRoleGrantPermissionResponse {
            header: header(self.revision),
        })
    }

    pub(crate) fn apply_role_revoke_permission(
        &mut self,
        request: &AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse, EtcdError> {
        if request.role.is_empty() {
            return Err(errors::ROLE_EMPTY);
        }
        let permissions = self
            .auth
            .roles
            .get_mut(&request.role)
            .ok_or(errors::ROLE_NOT_FOUND)?;
        let position = permissions.iter().position(|existing| {
            existing.key == request.key && existing.range_end == request.range_end
        });
        let Some(index) = position else {
            return Err(errors::PERMISSION_NOT_GRANTED);
        };
        permissions.remove(index);
        self.bump_auth_revision();
        Ok(AuthRoleRevokePermissionResponse {
            header: header(self.revision),
        })
    }
}
