//! External identity providers (`auth.issuers`): tokens signed with RS256, ES256 or
//! EdDSA by a provider whose keys an operator saved to disk, as a PEM public key or as a
//! JWKS document. Keys are read once, at start; nothing is ever fetched over the
//! network, and the `jku`, `jwk` and `x5u` headers are never followed or believed.
//!
//! Each provider has exactly one algorithm. A token is checked only with its provider's
//! algorithm and only with that provider's keys, so neither an HMAC token keyed with the
//! public key text (algorithm confusion) nor a key named by the token itself can get in.
//! Within a JWKS the token's `kid` chooses the key; only keys meant for signing with the
//! provider's algorithm are kept (a Keycloak realm publishes its encryption key in the
//! same set, and an `oct` key in a set must never verify anything).

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{AuthError, Verified, access_typ, decode, verified};
use crate::config::IssuerConfig;

/// An identity provider's keys could not be loaded; the server refuses to start. Every
/// variant names the provider, and the key file when it is about one.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The key file cannot be read. (The I/O error is part of the message rather than a
    /// `source`, so an error chain does not print it twice.)
    #[error("issuer {issuer}: cannot read {path}: {error}")]
    Read {
        issuer: String,
        path: String,
        error: std::io::Error,
    },
    /// The PEM file does not hold a public key of the provider's algorithm.
    #[error("issuer {issuer}: {path} is not a valid {algorithm} public key PEM: {detail}")]
    Pem {
        issuer: String,
        path: String,
        algorithm: String,
        detail: String,
    },
    /// The JWKS file is not a JWKS document, or one of its signing keys is broken.
    #[error("issuer {issuer}: {path} is not a usable JWKS: {detail}")]
    Jwks {
        issuer: String,
        path: String,
        detail: String,
    },
    /// A JWKS key says it is for the provider's algorithm but is of another type.
    #[error("issuer {issuer}: {path}: key {key} is marked {algorithm} but is {found}")]
    KeyType {
        issuer: String,
        path: String,
        key: String,
        algorithm: String,
        found: String,
    },
    /// No key of the JWKS can verify the provider's tokens.
    #[error("issuer {issuer}: {path} has no usable {algorithm} signing key: {detail}")]
    NoUsableKey {
        issuer: String,
        path: String,
        algorithm: String,
        detail: String,
    },
    /// The entry itself is wrong (normally caught by configuration validation first).
    #[error("issuer {issuer}: {detail}")]
    Config { issuer: String, detail: String },
}

/// One external identity provider: its one algorithm, its claim rules, its keys.
pub(super) struct ExternalIssuer {
    algorithm: Algorithm,
    validation: Validation,
    keys: Keys,
}

enum Keys {
    /// A PEM public key: the provider's only key, whatever `kid` a token names.
    Pem(DecodingKey),
    /// A JWKS: the token's `kid` chooses; a token without one may use the set's only key.
    Set {
        by_kid: HashMap<String, DecodingKey>,
        only: Option<DecodingKey>,
    },
}

impl Keys {
    fn select(&self, kid: Option<&str>) -> Result<&DecodingKey, AuthError> {
        match (self, kid) {
            (Keys::Pem(key), _) => Ok(key),
            (Keys::Set { by_kid, .. }, Some(kid)) => by_kid.get(kid).ok_or(AuthError::UnknownKey),
            (Keys::Set { only, .. }, None) => only.as_ref().ok_or(AuthError::UnknownKey),
        }
    }
}

impl ExternalIssuer {
    /// Reads the provider's key file and sets its claim rules: its algorithm only, `iss`
    /// equal to the provider, `exp`, `sub` and `iss` required, `aud` required and checked
    /// when an audience is configured, `nbf` checked, the configured leeway.
    pub(super) fn load(iss: &IssuerConfig, leeway: u64) -> Result<ExternalIssuer, AuthSetupError> {
        let config_error = |detail: &str| AuthSetupError::Config {
            issuer: iss.issuer.clone(),
            detail: detail.to_string(),
        };
        let algorithm = match iss.algorithm.as_str() {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            _ => return Err(config_error("algorithm is not one of RS256, ES256, EdDSA")),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&iss.issuer]);
        let mut required = vec!["exp", "sub", "iss"];
        match &iss.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);

        let keys = match (&iss.public_key_file, &iss.jwks_file) {
            (Some(path), None) => Keys::Pem(load_pem(&Source::new(iss, path), algorithm)?),
            (None, Some(path)) => load_jwks(&Source::new(iss, path), algorithm)?,
            _ => {
                return Err(config_error(
                    "give exactly one of public_key_file and jwks_file",
                ));
            }
        };
        Ok(ExternalIssuer {
            algorithm,
            validation,
            keys,
        })
    }

    /// Verifies a token whose `iss` names this provider.
    pub(super) fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != self.algorithm {
            return Err(AuthError::WrongAlgorithm);
        }
        // No header extension is understood here, so one marked critical must be refused
        // (RFC 7515, 4.1.11).
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let key = self.keys.select(header.kid.as_deref())?;
        let claims = decode(token, key, &self.validation)?;
        // The provider's refresh, ID or logout tokens carry the same signature.
        access_typ(header.typ.as_deref())?;
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(AuthError::InvalidClaims);
        }
        // The provider's `sid` is its own session id, not one of our refresh families, and
        // its tokens never resume one of our sessions.
        Ok(Verified {
            external: true,
            ..verified(token, claims, None, None)
        })
    }
}

/// The provider and file a loading error is about.
struct Source<'a> {
    issuer: &'a str,
    algorithm: &'a str,
    path: &'a Path,
}

impl<'a> Source<'a> {
    fn new(iss: &'a IssuerConfig, path: &'a Path) -> Source<'a> {
        Source {
            issuer: &iss.issuer,
            algorithm: &iss.algorithm,
            path,
        }
    }

    fn path(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> Result<Vec<u8>, AuthSetupError> {
        std::fs::read(self.path).map_err(|error| AuthSetupError::Read {
            issuer: self.issuer.to_string(),
            path: self.path(),
            error,
        })
    }

    fn pem_error(&self, detail: String) -> AuthSetupError {
        AuthSetupError::Pem {
            issuer: self.issuer.to_string(),
            path: self.path(),
            algorithm: self.algorithm.to_string(),
            detail,
        }
    }

    fn jwks_error(&self, detail: String) -> AuthSetupError {
        AuthSetupError::Jwks {
            issuer: self.issuer.to_string(),
            path: self.path(),
            detail,
        }
    }
}

fn load_pem(src: &Source, algorithm: Algorithm) -> Result<DecodingKey, AuthSetupError> {
    let pem = src.read()?;
    // jsonwebtoken would take an RSA private key here and then fail every token; the
    // private key has no business on the gateway anyway.
    if pem.windows(16).any(|w| w == b"PRIVATE KEY-----") {
        return Err(src.pem_error(
            "it holds a private key; give its public key (openssl pkey -in KEY -pubout)".into(),
        ));
    }
    let (key, expected) = match algorithm {
        Algorithm::RS256 => (DecodingKey::from_rsa_pem(&pem), "an RSA"),
        Algorithm::ES256 => (DecodingKey::from_ec_pem(&pem), "a P-256"),
        _ => (DecodingKey::from_ed_pem(&pem), "an Ed25519"),
    };
    let key = key.map_err(|e| {
        src.pem_error(format!(
            "{e} (expected a -----BEGIN PUBLIC KEY----- block with {expected} key)"
        ))
    })?;
    check_length(&key, algorithm).map_err(|d| src.pem_error(d))?;
    Ok(key)
}

/// Catches a key of the right family but the wrong size (a P-384 key for ES256), which
/// would otherwise only show as every token failing.
fn check_length(key: &DecodingKey, algorithm: Algorithm) -> Result<(), String> {
    let (want, name) = match algorithm {
        // An uncompressed point: 0x04, x, y.
        Algorithm::ES256 => (65, "a P-256"),
        Algorithm::EdDSA => (32, "an Ed25519"),
        _ => return Ok(()),
    };
    match key.try_get_as_bytes() {
        Ok(bytes) if bytes.len() == want => Ok(()),
        Ok(bytes) => Err(format!(
            "the public key has {} bytes, {name} key has {want}",
            bytes.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn load_jwks(src: &Source, algorithm: Algorithm) -> Result<Keys, AuthSetupError> {
    let set: JwkSet = serde_json::from_slice(&src.read()?)
        .map_err(|e| src.jwks_error(format!("not a JWKS document ({e})")))?;
    let mut usable: Vec<(Option<String>, DecodingKey)> = Vec::new();
    let mut passed_over: Vec<String> = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let name = match &jwk.common.key_id {
            Some(kid) => format!("{kid:?}"),
            None => format!("#{} (no kid)", i + 1),
        };
        match fit(jwk, algorithm) {
            Fit::Yes => {}
            Fit::Elsewhere(why) => {
                passed_over.push(format!("key {name} {why}"));
                continue;
            }
            Fit::Contradiction(found) => {
                return Err(AuthSetupError::KeyType {
                    issuer: src.issuer.to_string(),
                    path: src.path(),
                    key: name,
                    algorithm: src.algorithm.to_string(),
                    found,
                });
            }
        }
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| src.jwks_error(format!("key {name}: {e}")))?;
        check_length(&key, algorithm).map_err(|d| src.jwks_error(format!("key {name}: {d}")))?;
        if let Some(kid) = &jwk.common.key_id
            && usable.iter().any(|(k, _)| k.as_ref() == Some(kid))
        {
            return Err(src.jwks_error(format!("kid {kid:?} names two keys")));
        }
        usable.push((jwk.common.key_id.clone(), key));
    }
    for why in &passed_over {
        tracing::debug!(issuer = src.issuer, path = %src.path.display(), "JWKS {why}; not used");
    }
    let only = match usable.as_slice() {
        [(_, key)] => Some(key.clone()),
        _ => None,
    };
    let several = usable.len() > 1;
    let mut by_kid = HashMap::new();
    for (kid, key) in usable {
        match kid {
            Some(kid) => {
                by_kid.insert(kid, key);
            }
            None if several => passed_over
                .push("a key without kid cannot be chosen from a set of several".to_string()),
            None => {}
        }
    }
    if by_kid.is_empty() && only.is_none() {
        let detail = if set.keys.is_empty() {
            "the set is empty".to_string()
        } else {
            passed_over.join("; ")
        };
        return Err(AuthSetupError::NoUsableKey {
            issuer: src.issuer.to_string(),
            path: src.path(),
            algorithm: src.algorithm.to_string(),
            detail,
        });
    }
    Ok(Keys::Set { by_kid, only })
}

enum Fit {
    /// A signing key of the provider's algorithm.
    Yes,
    /// A key for something else (encryption, another algorithm); the set may hold it.
    Elsewhere(String),
    /// Marked for the provider's algorithm but of another type: the set is broken.
    Contradiction(String),
}

fn fit(jwk: &Jwk, algorithm: Algorithm) -> Fit {
    let common = &jwk.common;
    if let Some(usage) = &common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        let usage = match usage {
            PublicKeyUse::Encryption => "enc",
            PublicKeyUse::Other(other) => other.as_str(),
            PublicKeyUse::Signature => "sig",
        };
        return Fit::Elsewhere(format!("has use {usage:?}"));
    }
    if let Some(ops) = &common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Fit::Elsewhere("has key_ops without \"verify\"".into());
    }
    if let Some(declared) = common.key_algorithm
        && declared != KeyAlgorithm::from(algorithm)
    {
        return Fit::Elsewhere(match declared {
            KeyAlgorithm::UNKNOWN_ALGORITHM => "is for another algorithm".into(),
            other => format!("is for {other}"),
        });
    }
    let fits = match (&jwk.algorithm, algorithm) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if fits {
        Fit::Yes
    } else if common.key_algorithm.is_some() {
        Fit::Contradiction(key_kind(&jwk.algorithm))
    } else {
        Fit::Elsewhere(format!("is {}", key_kind(&jwk.algorithm)))
    }
}

/// "an RSA key", "an EC P-384 key", "an oct (HMAC) key", "a key of type OKP X25519".
fn key_kind(params: &AlgorithmParameters) -> String {
    let curve = |c: &EllipticCurve| match c {
        EllipticCurve::P256 => "P-256",
        EllipticCurve::P384 => "P-384",
        EllipticCurve::P521 => "P-521",
        EllipticCurve::Ed25519 => "Ed25519",
        _ => "other-curve",
    };
    match params {
        AlgorithmParameters::RSA(_) => "an RSA key".into(),
        AlgorithmParameters::EllipticCurve(p) => format!("an EC {} key", curve(&p.curve)),
        AlgorithmParameters::OctetKeyPair(p) => format!("an OKP {} key", curve(&p.curve)),
        AlgorithmParameters::OctetKey(_) => "an oct (HMAC) key".into(),
        AlgorithmParameters::Other(other) => {
            let field = |name: &str| {
                other
                    .fields
                    .get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string()
            };
            match other.fields.get("crv") {
                Some(_) => format!("a key of type {} {}", field("kty"), field("crv")),
                None => format!("a key of type {}", field("kty")),
            }
        }
        _ => "a key of an unknown type".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Key material that parses; these tests never verify a signature with it.
    fn rsa(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": "A".repeat(342), "e": "AQAB"})
    }
    fn ec(kid: &str, crv: &str) -> Value {
        json!({"kty": "EC", "kid": kid, "crv": crv, "x": "A".repeat(43), "y": "A".repeat(43)})
    }
    fn okp(kid: &str, crv: &str) -> Value {
        json!({"kty": "OKP", "kid": kid, "crv": crv, "x": "A".repeat(43)})
    }
    fn with(mut key: Value, extra: Value) -> Value {
        for (k, v) in extra.as_object().unwrap() {
            key[k] = v.clone();
        }
        key
    }

    fn load(algorithm: &str, jwks: &str) -> Result<ExternalIssuer, AuthSetupError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks).unwrap();
        ExternalIssuer::load(
            &IssuerConfig {
                issuer: "https://idp.example".into(),
                audience: None,
                algorithm: algorithm.into(),
                public_key_file: None,
                jwks_file: Some(path),
            },
            0,
        )
    }

    fn load_keys(algorithm: &str, keys: Vec<Value>) -> Result<ExternalIssuer, AuthSetupError> {
        load(algorithm, &json!({ "keys": keys }).to_string())
    }

    fn kids(issuer: &ExternalIssuer) -> (Vec<String>, bool) {
        match &issuer.keys {
            Keys::Set { by_kid, only } => {
                let mut kids: Vec<String> = by_kid.keys().cloned().collect();
                kids.sort();
                (kids, only.is_some())
            }
            Keys::Pem(_) => panic!("a JWKS loads as a set"),
        }
    }

    #[test]
    fn a_keycloak_style_set_keeps_only_the_signing_keys_of_the_algorithm() {
        let set = vec![
            with(rsa("sig"), json!({"use": "sig", "alg": "RS256"})),
            with(rsa("enc"), json!({"use": "enc", "alg": "RSA-OAEP"})),
            with(rsa("rs384"), json!({"alg": "RS384"})),
            with(rsa("ops"), json!({"key_ops": ["encrypt"]})),
            with(ec("ec", "P-256"), json!({"use": "sig", "alg": "ES256"})),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            okp("x", "X25519"),
        ];
        let rs = load_keys("RS256", set.clone()).unwrap();
        assert_eq!(kids(&rs), (vec!["sig".to_string()], true));
        let es = load_keys("ES256", set.clone()).unwrap();
        assert_eq!(kids(&es), (vec!["ec".to_string()], true));
        let err = load_keys("EdDSA", set).err().unwrap().to_string();
        assert!(err.contains("no usable EdDSA signing key"), "{err}");
        for why in [
            "key \"enc\" has use \"enc\"",
            "key \"rs384\" is for RS384",
            "key \"hmac\" is an oct (HMAC) key",
            "key \"x\" is a key of type OKP X25519",
        ] {
            assert!(err.contains(why), "{why} missing from {err}");
        }
    }

    #[test]
    fn keys_are_chosen_by_kid_and_only_a_sole_key_serves_tokens_without_one() {
        let two = load_keys("RS256", vec![rsa("a"), rsa("b")]).unwrap();
        assert!(two.keys.select(Some("a")).is_ok());
        assert_eq!(
            two.keys.select(Some("c")).err(),
            Some(AuthError::UnknownKey)
        );
        assert_eq!(two.keys.select(None).err(), Some(AuthError::UnknownKey));
        let one = load_keys("EdDSA", vec![okp("e", "Ed25519")]).unwrap();
        assert!(one.keys.select(None).is_ok());
        assert_eq!(
            one.keys.select(Some("f")).err(),
            Some(AuthError::UnknownKey)
        );
        // A hand-made set of one key without kid serves tokens without kid.
        let bare = json!({"kty": "OKP", "crv": "Ed25519", "x": "A".repeat(43)});
        let bare = load_keys("EdDSA", vec![bare]).unwrap();
        assert_eq!(kids(&bare), (vec![], true));
        // Beside another key, a key without kid cannot be reached.
        let mixed = load_keys(
            "RS256",
            vec![rsa("a"), json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})],
        );
        assert_eq!(kids(&mixed.unwrap()), (vec!["a".to_string()], false));
    }

    #[test]
    fn broken_sets_are_refused_with_the_reason() {
        let cases: Vec<(&str, String, &str)> = vec![
            ("RS256", "not json".into(), "not a JWKS document"),
            (
                "RS256",
                json!({"kes": []}).to_string(),
                "not a JWKS document",
            ),
            ("RS256", json!({"keys": []}).to_string(), "the set is empty"),
            (
                "RS256",
                json!({"keys": [ec("e", "P-256")]}).to_string(),
                "key \"e\" is an EC P-256 key",
            ),
            (
                "ES256",
                json!({"keys": [ec("e", "P-384")]}).to_string(),
                "key \"e\" is an EC P-384 key",
            ),
            (
                "RS256",
                json!({"keys": [rsa("a"), rsa("a")]}).to_string(),
                "kid \"a\" names two keys",
            ),
            (
                "EdDSA",
                json!({"keys": [{"kty": "OKP", "kid": "s", "crv": "Ed25519", "x": "AAAA"}]})
                    .to_string(),
                "key \"s\": the public key has 3 bytes, an Ed25519 key has 32",
            ),
            (
                "RS256",
                json!({"keys": [{"kty": "RSA", "kid": "b", "n": "!!", "e": "AQAB"}]}).to_string(),
                "key \"b\":",
            ),
        ];
        for (alg, text, want) in cases {
            let err = load(alg, &text).err().expect(want).to_string();
            assert!(err.contains(want), "{want} missing from {err}");
            assert!(err.contains("jwks.json"), "no path in {err}");
            assert!(err.contains("https://idp.example"), "no issuer in {err}");
        }
    }

    #[test]
    fn a_key_marked_for_the_algorithm_but_of_another_type_is_refused() {
        let lying = with(ec("k", "P-256"), json!({"alg": "RS256"}));
        let err = load_keys("RS256", vec![rsa("good"), lying]).err().unwrap();
        assert!(matches!(err, AuthSetupError::KeyType { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("key \"k\" is marked RS256 but is an EC P-256 key"),
            "{text}"
        );
        let oct = json!({"kty": "oct", "kid": "h", "alg": "EdDSA", "k": "c2VjcmV0"});
        let err = load_keys("EdDSA", vec![oct]).err().unwrap();
        assert!(matches!(err, AuthSetupError::KeyType { .. }), "{err:?}");
    }

    #[test]
    fn pem_files_must_hold_a_public_key_of_the_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let issuer = |alg: &str| IssuerConfig {
            issuer: "https://idp.example".into(),
            audience: None,
            algorithm: alg.into(),
            public_key_file: Some(path.clone()),
            jwks_file: None,
        };
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = ExternalIssuer::load(&issuer("RS256"), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("private key") && err.contains("key.pem"),
            "{err}"
        );
        std::fs::write(&path, "hello").unwrap();
        let err = ExternalIssuer::load(&issuer("EdDSA"), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("BEGIN PUBLIC KEY") && err.contains("Ed25519"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        let err = ExternalIssuer::load(&issuer("ES256"), 0).err().unwrap();
        assert!(matches!(err, AuthSetupError::Read { .. }), "{err:?}");
        let err = ExternalIssuer::load(&issuer("HS256"), 0).err().unwrap();
        assert!(matches!(err, AuthSetupError::Config { .. }), "{err:?}");
    }
}
