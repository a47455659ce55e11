//! Token verification and issuance. The token's `iss` (read before any signature check,
//! only to choose the verifier) picks one of three paths, and each path has its own keys
//! and its one algorithm, never the algorithm the header asks for:
//!
//! - roomgate's own access tokens (`accounts.issuer`): HS256 with the JWT key;
//! - an external identity provider (`auth.issuers`, in `external.rs`): RS256, ES256 or
//!   EdDSA with that provider's keys only;
//! - anything else: HS256 with the shared `auth.jwt_secret`, or the server's own
//!   `wsToken` under the separate WS secret.
//!
//! Everywhere `exp` and `sub` are required, `nbf` is checked, a client token whose
//! header `typ` names something other than an access token is refused, and oversize
//! tokens are refused before any parsing. This module owns keys and claim rules; it must never log
//! a token, never fetch a key over the network, and it never reads the store:
//! revocation and sessions are the caller's (`conn`) business.

mod external;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use std::collections::HashMap;

use crate::config::Config;

pub use external::AuthSetupError;
use external::ExternalIssuer;

/// Why a token was refused. The client sees one message for all of them; the reason goes
/// to the security-event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm not allowed")]
    WrongAlgorithm,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing or invalid claim")]
    InvalidClaims,
    #[error("no key for this kid")]
    UnknownKey,
    #[error("not an access token (typ)")]
    WrongType,
}

impl AuthError {
    /// Stable reason for security events.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::TooLarge => "token_too_large",
            AuthError::Malformed => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongAlgorithm => "wrong_algorithm",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::InvalidClaims => "invalid_claims",
            AuthError::UnknownKey => "unknown_key",
            AuthError::WrongType => "wrong_type",
        }
    }
}

/// The claims roomgate reads. Optional claims are read leniently (a wrong type is
/// treated as absent) so that an unusual IdP claim never locks a user out.
#[derive(Debug, Clone, Deserialize)]
struct RawClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    jti: Option<Value>,
    #[serde(default)]
    email: Option<Value>,
    #[serde(default)]
    roles: Option<Value>,
    #[serde(default, rename = "sessionId")]
    session_id: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
    #[serde(default)]
    sid: Option<Value>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user_id: String,
    pub email: Option<String>,
    /// The `roles` claim (used only when `auth.trust_role_claims` is on).
    pub claimed_roles: Vec<String>,
    pub jti: Option<String>,
    /// `iat` in seconds; 0 when absent, so user-wide revocations always cover it.
    pub issued_at: u64,
    pub expires_at: u64,
    /// Set for a roomgate `wsToken`: the session it resumes.
    pub resume_session: Option<String>,
    /// For an access token roomgate issued: the login (refresh family) it descends from.
    pub family: Option<String>,
    /// Set for a token from an external provider (`auth.issuers`): its `sub` is the
    /// provider's name for the user, which must not be taken for a built-in account's.
    pub external: bool,
    /// Revocation keys of this token: `jti:..` when it has one, and always `sha256:..`.
    pub keys: Vec<String>,
}

impl Verified {
    /// The key sessions remember this token by.
    pub fn primary_key(&self) -> &str {
        &self.keys[0]
    }
}

#[derive(Serialize)]
struct WsClaims<'a> {
    sub: &'a str,
    #[serde(rename = "sessionId")]
    session_id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    iat: u64,
    exp: u64,
    jti: &'a str,
}

/// The claims of an access token roomgate issues.
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    roles: &'a [String],
    jti: &'a str,
    iat: u64,
    exp: u64,
    /// The refresh family (login) this token descends from.
    sid: &'a str,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct IssuedAccess {
    pub token: String,
    pub jti: String,
    pub expires_at: u64,
}

/// Verifies client JWTs and the server's `wsToken`s, and signs the latter and roomgate's
/// own access tokens.
pub struct Verifier {
    jwt_key: DecodingKey,
    jwt_encode: EncodingKey,
    ws_decode: DecodingKey,
    ws_encode: EncodingKey,
    validation: Validation,
    ws_validation: Validation,
    /// For tokens whose `iss` is roomgate's own (`accounts.issuer`), when accounts are on.
    local: Option<LocalIssuer>,
    /// External identity providers by `iss`.
    external: HashMap<String, ExternalIssuer>,
    max_token_bytes: usize,
}

struct LocalIssuer {
    issuer: String,
    audience: String,
    validation: Validation,
    access_secs: u64,
}

impl Verifier {
    /// Builds a verifier from the resolved secrets.
    pub fn new(
        config: &Config,
        jwt_secret: &[u8],
        ws_secret: &[u8],
    ) -> Result<Verifier, AuthSetupError> {
        let cfg = &config.auth;
        let accounts = &config.accounts;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = cfg.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &cfg.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        } else {
            validation.validate_aud = false;
        }
        validation.set_required_spec_claims(&required);

        let mut ws_validation = Validation::new(Algorithm::HS256);
        ws_validation.leeway = cfg.leeway_secs;
        ws_validation.validate_aud = false;
        ws_validation.set_required_spec_claims(&["exp", "sub"]);

        let local = accounts.enabled.then(|| {
            let mut v = Validation::new(Algorithm::HS256);
            v.leeway = cfg.leeway_secs;
            v.set_issuer(&[&accounts.issuer]);
            v.set_audience(&[&accounts.audience]);
            v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
            LocalIssuer {
                issuer: accounts.issuer.clone(),
                audience: accounts.audience.clone(),
                validation: v,
                access_secs: accounts.access_token_secs,
            }
        });

        let mut external = HashMap::new();
        for iss in &cfg.issuers {
            external.insert(
                iss.issuer.clone(),
                ExternalIssuer::load(iss, cfg.leeway_secs)?,
            );
        }

        Ok(Verifier {
            jwt_key: DecodingKey::from_secret(jwt_secret),
            jwt_encode: EncodingKey::from_secret(jwt_secret),
            local,
            external,
            ws_decode: DecodingKey::from_secret(ws_secret),
            ws_encode: EncodingKey::from_secret(ws_secret),
            validation,
            ws_validation,
            max_token_bytes: cfg.max_token_bytes,
        })
    }

    /// Verifies a token presented in `auth`: a client JWT, or a `wsToken` to resume a session.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge);
        }
        let issuer = peek_issuer(token);
        if let Some(local) = &self.local
            && issuer.as_deref() == Some(local.issuer.as_str())
        {
            return self.verify_local(token, local);
        }
        if let Some(ext) = issuer.as_deref().and_then(|i| self.external.get(i)) {
            return ext.verify(token);
        }
        let claims = match decode(token, &self.jwt_key, &self.validation) {
            Ok(c) if is_ws_token(&c) => {
                // Signed with the client key but claiming to be ours: only believe it when
                // the WS key (which clients never hold) verifies it too.
                decode(token, &self.ws_decode, &self.ws_validation)?
            }
            Ok(c) => c,
            Err(AuthError::BadSignature) => {
                let c = decode(token, &self.ws_decode, &self.ws_validation)?;
                if !is_ws_token(&c) {
                    return Err(AuthError::BadSignature);
                }
                c
            }
            Err(e) => return Err(e),
        };
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(AuthError::InvalidClaims);
        }
        // Our own wsToken is told apart by its claim under the WS key; any other token
        // here is a client's access token and must not say it is something else.
        if !is_ws_token(&claims) {
            check_access_typ(token)?;
        }
        let resume_session = if is_ws_token(&claims) {
            match &claims.session_id {
                Some(Value::String(s)) => Some(s.clone()),
                _ => return Err(AuthError::InvalidClaims),
            }
        } else {
            None
        };
        Ok(verified(token, claims, resume_session, None))
    }

    /// An access token roomgate issued: HS256 with the JWT key, `typ` `at+jwt`, roomgate's
    /// own `iss` and `aud`, and the login it descends from in `sid`.
    fn verify_local(&self, token: &str, local: &LocalIssuer) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let claims = decode(token, &self.jwt_key, &local.validation)?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(AuthError::InvalidClaims);
        }
        let family = match &claims.sid {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(AuthError::InvalidClaims),
        };
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(AuthError::InvalidClaims);
        }
        Ok(verified(token, claims, None, Some(family)))
    }

    /// Signs an access token for a built-in account.
    pub fn issue_access_token(
        &self,
        sub: &str,
        email: Option<&str>,
        roles: &[String],
        family: &str,
        now_secs: u64,
    ) -> Result<IssuedAccess, jsonwebtoken::errors::Error> {
        let Some(local) = &self.local else {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidIssuer.into());
        };
        let jti = random_hex(16);
        let exp = now_secs + local.access_secs;
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        let token = jsonwebtoken::encode(
            &header,
            &AccessClaims {
                iss: &local.issuer,
                aud: &local.audience,
                sub,
                email,
                roles,
                jti: &jti,
                iat: now_secs,
                exp,
                sid: family,
            },
            &self.jwt_encode,
        )?;
        Ok(IssuedAccess {
            token,
            jti,
            expires_at: exp,
        })
    }

    /// Signs a `wsToken` for a session (seed `generateWSToken`).
    pub fn issue_ws_token(
        &self,
        user_id: &str,
        session_id: &str,
        now_secs: u64,
        life_secs: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let jti = random_hex(16);
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &WsClaims {
                sub: user_id,
                session_id,
                kind: "websocket",
                iat: now_secs,
                exp: now_secs + life_secs,
                jti: &jti,
            },
            &self.ws_encode,
        )
    }
}

/// Refuses a token whose header names a type other than an access token (RFC 8725,
/// 3.11): a refresh, ID or logout token signed with the same key must not open a socket.
/// `JWT` and `at+jwt` (RFC 9068) pass, in any case and with or without the
/// `application/` prefix (RFC 7515, 4.1.9); a token without `typ` passes too, as most
/// issuers send none.
fn check_access_typ(token: &str) -> Result<(), AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
    access_typ(header.typ.as_deref())
}

pub(crate) fn access_typ(typ: Option<&str>) -> Result<(), AuthError> {
    let Some(typ) = typ else {
        return Ok(());
    };
    let lower = typ.to_ascii_lowercase();
    let bare = lower.strip_prefix("application/").unwrap_or(&lower);
    if bare == "jwt" || bare == "at+jwt" {
        Ok(())
    } else {
        Err(AuthError::WrongType)
    }
}

/// The `iss` claim of a token, read without verifying it, to pick the verifier.
fn peek_issuer(token: &str) -> Option<String> {
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// The `sub` claim of a token that failed verification, read without trusting it: the
/// user it claims to be, for the log's keyed hash only (never for a decision).
pub fn claimed_subject(token: &str) -> Option<String> {
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token).ok()?;
    claims
        .get("sub")?
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .map(str::to_string)
}

fn verified(
    token: &str,
    claims: RawClaims,
    resume_session: Option<String>,
    family: Option<String>,
) -> Verified {
    let jti = match claims.jti {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Some(s),
        _ => None,
    };
    let mut keys = Vec::with_capacity(2);
    if let Some(j) = &jti {
        keys.push(format!("jti:{j}"));
    }
    keys.push(digest_key(token));
    if let Some(f) = &family {
        keys.push(format!("family:{f}"));
    }
    Verified {
        user_id: claims.sub,
        email: match claims.email {
            Some(Value::String(s)) if s.len() <= 320 => Some(s),
            _ => None,
        },
        claimed_roles: match claims.roles {
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        jti,
        issued_at: claims.iat.and_then(|v| v.as_u64()).unwrap_or(0),
        expires_at: claims.exp,
        resume_session,
        family,
        external: false,
        keys,
    }
}

fn is_ws_token(c: &RawClaims) -> bool {
    matches!(&c.kind, Some(Value::String(k)) if k == "websocket")
}

fn decode(token: &str, key: &DecodingKey, v: &Validation) -> Result<RawClaims, AuthError> {
    jsonwebtoken::decode::<RawClaims>(token, key, v)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm => AuthError::WrongAlgorithm,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::InvalidSubject => AuthError::InvalidClaims,
            ErrorKind::Json(_) => AuthError::InvalidClaims,
            _ => AuthError::Malformed,
        })
}

/// The digest revocation key of a token: `sha256:<hex>`.
pub fn digest_key(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// What revoking a token presented by the operator touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationTarget {
    /// Revocation keys: `jti:..` when it has one, and always `sha256:..`.
    pub keys: Vec<String>,
    /// The token's `exp`, when readable.
    pub exp: Option<u64>,
    /// For a roomgate `wsToken`, the session it resumes (revoked with it).
    pub session_id: Option<String>,
}

/// Reads a token the operator wants revoked, without checking its signature (the
/// operator may hold a token signed by an IdP key roomgate has not got). Garbage still
/// gets a digest key, so anything presented can be refused.
pub fn revocation_target(token: &str) -> RevocationTarget {
    let mut t = RevocationTarget::default();
    if let Ok(c) = jsonwebtoken::dangerous::insecure_decode::<Value>(token) {
        if let Some(Value::String(j)) = c.claims.get("jti")
            && !j.is_empty()
        {
            t.keys.push(format!("jti:{j}"));
        }
        t.exp = c.claims.get("exp").and_then(Value::as_u64);
        if c.claims.get("type").and_then(Value::as_str) == Some("websocket") {
            t.session_id = c
                .claims
                .get("sessionId")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
    }
    t.keys.push(digest_key(token));
    t
}

/// What `roomgate token` puts in a development token: the claims a shared-secret (HS256)
/// client token carries, as an application's backend would sign them.
pub struct TestToken<'a> {
    pub sub: &'a str,
    pub email: Option<&'a str>,
    pub roles: &'a [String],
    /// `auth.issuer` and `auth.audience`, which the verifier then requires.
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub now_secs: u64,
    pub ttl_secs: u64,
}

/// Signs a shared-secret client token with `secret`; its `jti` is random so that it can be
/// revoked on its own.
pub fn mint_test_token(
    secret: &[u8],
    t: &TestToken<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut claims = serde_json::json!({
        "sub": t.sub,
        "iat": t.now_secs,
        "exp": t.now_secs.saturating_add(t.ttl_secs),
        "jti": random_hex(16),
    });
    if let Some(email) = t.email {
        claims["email"] = email.into();
    }
    if !t.roles.is_empty() {
        claims["roles"] = t.roles.into();
    }
    if let Some(iss) = t.issuer {
        claims["iss"] = iss.into();
    }
    if let Some(aud) = t.audience {
        claims["aud"] = aud.into();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}
