//! API keys for the admin HTTP API: `rgk_` followed by 64 hex characters (256 random
//! bits), shown once at creation and stored only as a SHA-256 digest with a name, scopes
//! (permission names, checked against `authz::Permission`), the creation time and the
//! last use. A revoked key is deleted, so the next request with it finds nothing.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AdminError, Target, valid_name};
use crate::authz::Permission;
use crate::protocol::now_ms;
use crate::store::{ApiKeyRecord, Store, StoreError};

/// Every API key starts with this, so it is recognisable in a header and in a leak scan.
pub const API_KEY_PREFIX: &str = "rgk_";

/// Hex characters after the prefix.
const KEY_HEX_LEN: usize = 64;

/// An API key as lists show it (never the key or its digest).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_ms: u64,
    /// 0 when never used.
    pub last_used_ms: u64,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(k: ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name,
            scopes: k.scopes,
            created_ms: k.created_ms,
            last_used_ms: k.last_used_ms,
        }
    }
}

/// A new key: the only time the key itself is shown.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    pub key: String,
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key named `name` carrying `scopes`.
pub async fn apikey_create(
    t: &Target<'_>,
    name: &str,
    scopes: &[String],
) -> Result<CreatedApiKey, AdminError> {
    if !valid_name(name, 64) {
        return Err(AdminError::Invalid(
            "name",
            format!("{name:?} must be 1-64 of A-Z a-z 0-9 _ - . :"),
        ));
    }
    let mut checked: Vec<String> = Vec::new();
    for s in scopes {
        let Some(p) = Permission::parse(s.trim()) else {
            return Err(AdminError::Invalid(
                "scopes",
                format!("{s:?} is not a permission"),
            ));
        };
        if !checked.iter().any(|c| c == p.as_str()) {
            checked.push(p.as_str().to_string());
        }
    }
    if checked.is_empty() {
        return Err(AdminError::Invalid(
            "scopes",
            "give at least one permission".into(),
        ));
    }
    let key = format!(
        "{API_KEY_PREFIX}{}",
        crate::auth::random_hex(KEY_HEX_LEN / 2)
    );
    let record = ApiKeyRecord {
        id: crate::auth::random_hex(8),
        name: name.to_string(),
        digest: digest(&key),
        scopes: checked,
        created_ms: now_ms(),
        last_used_ms: 0,
    };
    if !t.store().create_api_key(&record)? {
        return Err(AdminError::ApiKeyExists(name.to_string()));
    }
    t.store().flush().await?;
    t.record(
        "apikey_created",
        None,
        &[("keyId", &record.id), ("name", name)],
    );
    Ok(CreatedApiKey {
        view: ApiKeyView::from(record),
        key,
    })
}

/// Every key, by name.
pub fn apikey_list(t: &Target<'_>) -> Result<Vec<ApiKeyView>, AdminError> {
    let mut keys: Vec<ApiKeyView> = t
        .store()
        .api_keys()?
        .into_iter()
        .map(ApiKeyView::from)
        .collect();
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(keys)
}

/// Revokes (deletes) the key with this name or id; the next request with it gets 401.
pub async fn apikey_revoke(t: &Target<'_>, name_or_id: &str) -> Result<ApiKeyView, AdminError> {
    let found = t
        .store()
        .api_keys()?
        .into_iter()
        .find(|k| k.name == name_or_id || k.id == name_or_id);
    let Some(record) = found else {
        return Err(AdminError::NoApiKey(name_or_id.to_string()));
    };
    if !t.store().delete_api_key(&record)? {
        return Err(AdminError::NoApiKey(name_or_id.to_string()));
    }
    t.store().flush().await?;
    t.record(
        "apikey_revoked",
        None,
        &[("keyId", &record.id), ("name", &record.name)],
    );
    Ok(ApiKeyView::from(record))
}

/// The stored key a presented one names, if any. Its last use is recorded when the
/// stored time is older than `touch_every_ms`, so a busy key costs a write a minute, not
/// one per request.
pub fn authenticate_api_key(
    store: &Store,
    presented: &str,
    touch_every_ms: u64,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let well_formed = presented
        .strip_prefix(API_KEY_PREFIX)
        .is_some_and(|hex| hex.len() == KEY_HEX_LEN && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Ok(None);
    }
    let d = digest(presented);
    let Some(record) = store.api_key_by_digest(&d)? else {
        return Ok(None);
    };
    let now = now_ms();
    if now.saturating_sub(record.last_used_ms) >= touch_every_ms {
        store.touch_api_key(&d, now)?;
    }
    Ok(Some(record))
}
