//! Roles and the global permissions they carry. Live, every change goes through
//! `policy`, which reloads the role table and re-evaluates every open connection.

use serde::Serialize;

use super::{AdminError, Target, valid_name};
use crate::authz::Permission;
use crate::protocol::now_ms;
use crate::store::RoleRecord;

/// A role as operators see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub name: String,
    pub permissions: Vec<String>,
    pub description: String,
    pub builtin: bool,
    pub updated_ms: u64,
}

impl From<RoleRecord> for RoleView {
    fn from(r: RoleRecord) -> Self {
        RoleView {
            name: r.name,
            permissions: r.permissions,
            description: r.description,
            builtin: r.builtin,
            updated_ms: r.updated_ms,
        }
    }
}

fn check_role_name(name: &str) -> Result<(), AdminError> {
    if valid_name(name, 64) {
        Ok(())
    } else {
        Err(AdminError::Invalid(
            "name",
            format!("{name:?} is not a role name (1-64 of A-Z a-z 0-9 _ - . :)"),
        ))
    }
}

/// Every stored role, by name.
pub fn role_list(t: &Target<'_>) -> Result<Vec<RoleView>, AdminError> {
    Ok(t.store().roles()?.into_iter().map(RoleView::from).collect())
}

/// One stored role.
pub fn role_get(t: &Target<'_>, name: &str) -> Result<RoleView, AdminError> {
    check_role_name(name)?;
    t.store()
        .role(name)?
        .map(RoleView::from)
        .ok_or_else(|| AdminError::NoRole(name.to_string()))
}

/// Creates a role or replaces its permissions (and description, when given). Permission
/// names must be known ones. Returns the role and whether it is new.
pub async fn role_put(
    t: &Target<'_>,
    name: &str,
    permissions: Vec<String>,
    description: Option<String>,
) -> Result<(RoleView, bool), AdminError> {
    check_role_name(name)?;
    let mut perms: Vec<String> = Vec::new();
    for p in permissions {
        let Some(known) = Permission::parse(&p) else {
            return Err(AdminError::Invalid(
                "permissions",
                format!("{p:?} is not a permission"),
            ));
        };
        if !perms.iter().any(|q| q == known.as_str()) {
            perms.push(known.as_str().to_string());
        }
    }
    if description.as_ref().is_some_and(|d| d.len() > 256) {
        return Err(AdminError::Invalid(
            "description",
            "at most 256 bytes".into(),
        ));
    }
    let store = t.store();
    let old = store.role(name)?;
    let created = old.is_none();
    let role = RoleRecord {
        name: name.to_string(),
        permissions: perms,
        description: description
            .or_else(|| old.as_ref().map(|o| o.description.clone()))
            .unwrap_or_default(),
        builtin: old.is_some_and(|o| o.builtin),
        updated_ms: now_ms(),
    };
    match t.live() {
        Some(state) => crate::policy::put_role(state, &role).await?,
        None => {
            store.put_role(&role)?;
            store.flush().await?;
        }
    }
    t.record("role_changed", None, &[("role", name)]);
    Ok((RoleView::from(role), created))
}

/// Deletes a role that is not built in. Users keep the name among their roles; it
/// carries no permissions any more but still counts in room ACLs that list it.
pub async fn role_delete(t: &Target<'_>, name: &str) -> Result<(), AdminError> {
    let role = role_get(t, name)?;
    if role.builtin {
        return Err(AdminError::BuiltinRole(name.to_string()));
    }
    let existed = match t.live() {
        Some(state) => crate::policy::delete_role(state, name).await?,
        None => {
            let existed = t.store().delete_role(name)?;
            t.store().flush().await?;
            existed
        }
    };
    if !existed {
        return Err(AdminError::NoRole(name.to_string()));
    }
    t.record("role_deleted", None, &[("role", name)]);
    Ok(())
}
