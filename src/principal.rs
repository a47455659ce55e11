//! Who a verified token speaks for, decided the same way wherever a token is accepted:
//! the WebSocket `auth` and `refresh`, a connection's re-evaluation after a rights
//! change, and the admin API's bearer authentication. It owns two questions: is the
//! token revoked (by one of its keys, or by a user-wide cut-off), and which roles and
//! global permissions does its user act with. It reads the store and the role table; it
//! never writes anything and never verifies signatures (that is `auth`'s job).

use crate::auth::Verified;
use crate::authz::{Permissions, RoleTable};
use crate::config::AuthConfig;
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// Whether a token from an external provider names a built-in account in its `sub`:
/// stored roles, grants and sessions are keyed by user id, so the provider's "admin"
/// would otherwise act as roomgate's own `admin`. Such tokens are refused.
pub fn foreign_sub_collides(store: &Store, v: &Verified) -> Result<bool, StoreError> {
    Ok(v.external && store.account(&v.user_id)?.is_some())
}

/// The roles and permissions a user acts with: the default roles, the stored grants, and
/// the token's `roles` claim when `auth.trust_role_claims` is on; permissions from the
/// role table plus the user's own.
pub fn roles_for(
    state: &AppState,
    user_id: &str,
    claimed: &[String],
) -> Result<(Vec<String>, Permissions), StoreError> {
    roles_from(
        &state.cfg.auth,
        &state.store,
        &state.roles,
        user_id,
        claimed,
    )
}

/// [`roles_for`] from its parts, for a stopped server (the CLI's own role table).
pub fn roles_from(
    cfg: &AuthConfig,
    store: &Store,
    table: &RoleTable,
    user_id: &str,
    claimed: &[String],
) -> Result<(Vec<String>, Permissions), StoreError> {
    let grants = store.user_grants(user_id)?;
    let mut roles = cfg.default_roles.clone();
    let mut extra = grants.roles;
    if cfg.trust_role_claims {
        extra.extend(claimed.iter().cloned());
    }
    for r in extra {
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    let permissions = table.permissions(&roles, &grants.permissions);
    Ok((roles, permissions))
}

/// Whether any of `keys` (the token's revocation keys, plus any the caller adds; the
/// `session:` ones are registry handles, not revocations), a missing refresh family, or
/// a user-wide cut-off refuses the token.
pub fn is_revoked(store: &Store, v: &Verified, keys: &[String]) -> Result<bool, StoreError> {
    for key in keys.iter().filter(|k| !k.starts_with("session:")) {
        if store.is_token_revoked(key)? {
            return Ok(true);
        }
    }
    // A login (refresh family) that is gone, swept once its last access token has
    // expired or never stored, has ended: so have its access tokens (they carry its
    // `family:` key) and the sessions they opened (resumed with it too).
    for family in keys.iter().filter_map(|k| k.strip_prefix("family:")) {
        if store.family(family)?.is_none() {
            return Ok(true);
        }
    }
    let Some(cutoff) = store.user_revoked_before(&v.user_id)? else {
        return Ok(false);
    };
    // roomgate's own tokens are judged by when their login began (ms), so a login
    // right after a password change is not caught by `iat`'s whole-second rounding.
    if let Some(family) = &v.family {
        return Ok(store.family(family)?.is_none_or(|f| f.created_ms <= cutoff));
    }
    Ok(v.issued_at.saturating_mul(1000) <= cutoff)
}
