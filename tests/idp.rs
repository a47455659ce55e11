//! Tokens from external identity providers, end to end over a WebSocket `auth`: RS256,
//! ES256 and EdDSA public keys from PEM files and from JWKS files, keys chosen by `kid`
//! from the provider's own set only, the algorithm pinned per provider, and key files
//! that stop the server at start. Key pairs are made at test time with the `openssl`
//! command line; every refusal is checked for its recorded reason, so a test cannot pass
//! because a token was refused for some other cause.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roomgate::auth::Verifier;
use roomgate::config::{Config, IssuerConfig};
use roomgate::protocol::now_ms;
use roomgate::store::EventFilter;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command line is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A key pair in `dir`: the private key (PKCS#8 PEM, for signing test tokens) and the
/// public key (SPKI PEM, what roomgate is given).
struct KeyPair {
    private: PathBuf,
    public: PathBuf,
}

impl KeyPair {
    fn generate(dir: &Path, name: &str, genpkey: &[&str]) -> KeyPair {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey);
        args.extend_from_slice(&["-out", path_str(&private)]);
        openssl(&args);
        openssl(&[
            "pkey",
            "-in",
            path_str(&private),
            "-pubout",
            "-out",
            path_str(&public),
        ]);
        KeyPair { private, public }
    }

    fn rsa(dir: &Path, name: &str) -> KeyPair {
        let args = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
        KeyPair::generate(dir, name, &args)
    }

    fn ed25519(dir: &Path, name: &str) -> KeyPair {
        KeyPair::generate(dir, name, &["-algorithm", "ed25519"])
    }

    fn p256(dir: &Path, name: &str) -> KeyPair {
        let args = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
        KeyPair::generate(dir, name, &args)
    }

    /// The public key as DER SubjectPublicKeyInfo.
    fn public_der(&self) -> Vec<u8> {
        let public = path_str(&self.public);
        openssl(&["pkey", "-pubin", "-in", public, "-outform", "DER"])
    }

    fn public_pem(&self) -> String {
        std::fs::read_to_string(&self.public).unwrap()
    }

    /// The public half as a JWK (`n`/`e`, `x`/`y` or `x`), with `extra` members.
    fn jwk(&self, kid: &str, extra: Value) -> Value {
        let der = self.public_der();
        let mut jwk = match der.len() {
            // Ed25519: the raw key is the last 32 bytes of the SPKI.
            44 => json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&der[12..])}),
            // P-256: the SPKI ends with the uncompressed point 04 || x || y.
            91 => {
                let point = &der[der.len() - 64..];
                json!({"kty": "EC", "crv": "P-256", "x": b64url(&point[..32]), "y": b64url(&point[32..])})
            }
            _ => {
                let public = path_str(&self.public);
                let text = openssl(&["rsa", "-pubin", "-in", public, "-noout", "-modulus"]);
                let text = String::from_utf8(text).unwrap();
                let hex = text.trim().strip_prefix("Modulus=").unwrap();
                json!({"kty": "RSA", "n": b64url(&hex::decode(hex).unwrap()), "e": "AQAB"})
            }
        };
        jwk["kid"] = json!(kid);
        for (k, v) in extra.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    fn encoding_key(&self, alg: Algorithm) -> EncodingKey {
        let pem = std::fs::read(&self.private).unwrap();
        match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .unwrap()
    }

    /// A token signed with this key under `alg`, with `kid` in the header when given.
    fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        self.sign_with_header(&header, claims)
    }

    fn sign_with_header(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding_key(header.alg)).unwrap()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Unpadded base64url.
fn b64url(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn write_jwks(dir: &Path, name: &str, keys: Vec<Value>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    path
}

// ---------------------------------------------------------------------------------------
// Servers, tokens, verdicts
// ---------------------------------------------------------------------------------------

fn pem_issuer(iss: &str, alg: &str, public: &Path, aud: Option<&str>) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        audience: aud.map(str::to_string),
        algorithm: alg.into(),
        public_key_file: Some(public.to_path_buf()),
        jwks_file: None,
    }
}

fn jwks_issuer(iss: &str, alg: &str, jwks: &Path, aud: Option<&str>) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        audience: aud.map(str::to_string),
        algorithm: alg.into(),
        public_key_file: None,
        jwks_file: Some(jwks.to_path_buf()),
    }
}

/// A server with these providers; the auth limiter is off so one test may try many tokens.
async fn server(issuers: Vec<IssuerConfig>, tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start_with(move |c| {
        c.auth.issuers = issuers;
        c.rate_limits.enabled = false;
        tweak(c);
    })
    .await
}

fn claims(iss: &str, aud: Option<&str>, sub: &str) -> Value {
    let mut c = json!({"iss": iss, "sub": sub, "iat": now_secs(), "exp": now_secs() + 600});
    if let Some(a) = aud {
        c["aud"] = json!(a);
    }
    c
}

fn with(mut claims: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// Authenticates over a new socket; returns the `auth_success` data.
async fn accepted(s: &TestServer, token: &str, sub: &str) -> Value {
    let mut c = s.client().await;
    let ok = c.auth(token).await;
    assert_eq!(ok["user"]["userId"], sub);
    ok
}

/// The token is refused with `auth_failed`, and the security event records `reason`.
async fn refused(s: &TestServer, token: &str, reason: &str) {
    refused_with(s, token, "auth_failed", reason).await;
}

/// The token is refused with error `code`, and the security event records `reason`.
async fn refused_with(s: &TestServer, token: &str, code: &str, reason: &str) {
    let mut c = s.client().await;
    c.send("auth", json!({"token": token})).await;
    c.expect_error(code).await;
    let state = s.server().state();
    state.audit.sync().await;
    let events = state
        .store
        .events(&EventFilter {
            action: Some("websocket_auth".into()),
            ..EventFilter::default()
        })
        .unwrap();
    let last = events
        .iter()
        .rev()
        .find(|e| e.result == "failure")
        .expect("a failure event");
    let recorded = last
        .metadata
        .iter()
        .find(|(k, _)| k == "reason")
        .map(|(_, v)| v.as_str());
    assert_eq!(recorded, Some(reason), "{last:?}");
}

// ---------------------------------------------------------------------------------------
// PEM keys
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn pem_keys_for_rs256_es256_and_eddsa_beside_the_shared_secret() {
    let keys = tempfile::tempdir().unwrap();
    let rsa = KeyPair::rsa(keys.path(), "rsa");
    let ed = KeyPair::ed25519(keys.path(), "ed");
    let ec = KeyPair::p256(keys.path(), "ec");
    let s = server(
        vec![
            pem_issuer("https://rsa.example", "RS256", &rsa.public, Some("rg")),
            pem_issuer("https://ed.example", "EdDSA", &ed.public, None),
            pem_issuer("https://ec.example", "ES256", &ec.public, None),
        ],
        |_| {},
    )
    .await;
    let rs = claims("https://rsa.example", Some("rg"), "rsa-user");
    accepted(&s, &rsa.sign(Algorithm::RS256, None, &rs), "rsa-user").await;
    // With a PEM key, whatever kid the token names is the one key.
    accepted(&s, &rsa.sign(Algorithm::RS256, Some("k"), &rs), "rsa-user").await;
    let eds = claims("https://ed.example", None, "ed-user");
    accepted(&s, &ed.sign(Algorithm::EdDSA, None, &eds), "ed-user").await;
    let ecs = claims("https://ec.example", None, "ec-user");
    accepted(&s, &ec.sign(Algorithm::ES256, None, &ecs), "ec-user").await;

    // The shared-secret HS256 path still works beside them, and so does its wsToken.
    let ok = accepted(&s, &token("plain"), "plain").await;
    accepted(&s, ok["wsToken"].as_str().unwrap(), "plain").await;
    // A token claiming a provider but signed with the shared secret is the provider's
    // business, and the provider does not take HS256.
    let shared = sign(&claims("https://rsa.example", Some("rg"), "x"), JWT_SECRET);
    refused(&s, &shared, "wrong_algorithm").await;
}

#[tokio::test]
async fn tokens_breaking_the_providers_rules_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let rsa = KeyPair::rsa(keys.path(), "rsa");
    let other_rsa = KeyPair::rsa(keys.path(), "other-rsa");
    let ed = KeyPair::ed25519(keys.path(), "ed");
    let other_ed = KeyPair::ed25519(keys.path(), "other-ed");
    let ec = KeyPair::p256(keys.path(), "ec");
    let other_ec = KeyPair::p256(keys.path(), "other-ec");
    let s = server(
        vec![
            pem_issuer("https://rsa.example", "RS256", &rsa.public, Some("rg")),
            pem_issuer("https://ed.example", "EdDSA", &ed.public, None),
            pem_issuer("https://ec.example", "ES256", &ec.public, None),
        ],
        |_| {},
    )
    .await;
    let rs = claims("https://rsa.example", Some("rg"), "u");
    let eds = claims("https://ed.example", None, "u");
    let ecs = claims("https://ec.example", None, "u");

    // Another key of the right kind.
    let t = other_rsa.sign(Algorithm::RS256, None, &rs);
    refused(&s, &t, "bad_signature").await;
    let t = other_ed.sign(Algorithm::EdDSA, None, &eds);
    refused(&s, &t, "bad_signature").await;
    let t = other_ec.sign(Algorithm::ES256, None, &ecs);
    refused(&s, &t, "bad_signature").await;

    // The right key under another algorithm, or another provider's algorithm.
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        refused(&s, &rsa.sign(alg, None, &rs), "wrong_algorithm").await;
    }
    refused(&s, &ed.sign(Algorithm::EdDSA, None, &rs), "wrong_algorithm").await;
    refused(
        &s,
        &rsa.sign(Algorithm::RS256, None, &eds),
        "wrong_algorithm",
    )
    .await;

    // Audience: wrong, missing, or a list without ours; a list with ours is fine.
    let wrong = with(rs.clone(), json!({"aud": "someone-else"}));
    refused(
        &s,
        &rsa.sign(Algorithm::RS256, None, &wrong),
        "wrong_audience",
    )
    .await;
    let listed = with(rs.clone(), json!({"aud": ["a", "b"]}));
    refused(
        &s,
        &rsa.sign(Algorithm::RS256, None, &listed),
        "wrong_audience",
    )
    .await;
    let missing = claims("https://rsa.example", None, "u");
    refused(
        &s,
        &rsa.sign(Algorithm::RS256, None, &missing),
        "invalid_claims",
    )
    .await;
    let ours = with(rs.clone(), json!({"aud": ["other", "rg"]}));
    accepted(&s, &rsa.sign(Algorithm::RS256, None, &ours), "u").await;

    // Time and required claims.
    let expired = with(eds.clone(), json!({"exp": now_secs() - 3600}));
    refused(&s, &ed.sign(Algorithm::EdDSA, None, &expired), "expired").await;
    let early = with(eds.clone(), json!({"nbf": now_secs() + 3600}));
    refused(
        &s,
        &ed.sign(Algorithm::EdDSA, None, &early),
        "not_yet_valid",
    )
    .await;
    let no_exp = json!({"iss": "https://ed.example", "sub": "u"});
    refused(
        &s,
        &ed.sign(Algorithm::EdDSA, None, &no_exp),
        "invalid_claims",
    )
    .await;
    let no_sub = json!({"iss": "https://ed.example", "exp": now_secs() + 600});
    refused(
        &s,
        &ed.sign(Algorithm::EdDSA, None, &no_sub),
        "invalid_claims",
    )
    .await;

    // A header extension marked critical is not understood, so it is refused.
    let mut header = Header::new(Algorithm::ES256);
    header.crit = Some(vec!["b64".into()]);
    refused(&s, &ec.sign_with_header(&header, &ecs), "malformed").await;
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let rsa = KeyPair::rsa(keys.path(), "rsa");
    let ed = KeyPair::ed25519(keys.path(), "ed");
    let ec = KeyPair::p256(keys.path(), "ec");
    let jwks = write_jwks(keys.path(), "rsa.jwks.json", vec![rsa.jwk("r1", json!({}))]);
    let s = server(
        vec![
            pem_issuer("https://rsa.example", "RS256", &rsa.public, None),
            pem_issuer("https://ed.example", "EdDSA", &ed.public, None),
            pem_issuer("https://ec.example", "ES256", &ec.public, None),
            jwks_issuer("https://jwks.example", "RS256", &jwks, None),
        ],
        |_| {},
    )
    .await;
    // Every form of the public key an attacker might use as the HMAC secret: the PEM
    // text, the DER SPKI, for RSA the PKCS#1 DER (what the verifier keeps) and the JWKS
    // text, for Ed25519 the raw key.
    let rsa_pkcs1 = openssl(&[
        "rsa",
        "-pubin",
        "-in",
        path_str(&rsa.public),
        "-RSAPublicKey_out",
        "-outform",
        "DER",
    ]);
    let jwks_text = std::fs::read(&jwks).unwrap();
    let ed_der = ed.public_der();
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "https://rsa.example",
            vec![rsa.public_pem().into_bytes(), rsa.public_der(), rsa_pkcs1],
        ),
        (
            "https://ed.example",
            vec![
                ed.public_pem().into_bytes(),
                ed_der.clone(),
                ed_der[12..].to_vec(),
            ],
        ),
        (
            "https://ec.example",
            vec![ec.public_pem().into_bytes(), ec.public_der()],
        ),
        (
            "https://jwks.example",
            vec![rsa.public_pem().into_bytes(), jwks_text],
        ),
    ];
    for (iss, secrets) in cases {
        let c = claims(iss, None, "mallory");
        for secret in secrets {
            for (alg, kid) in [(Algorithm::HS256, None), (Algorithm::HS256, Some("r1"))] {
                let mut header = Header::new(alg);
                header.kid = kid.map(str::to_string);
                let forged =
                    jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(&secret)).unwrap();
                refused(&s, &forged, "wrong_algorithm").await;
            }
        }
        // And no signature at all.
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(c.to_string().as_bytes())
        );
        refused(&s, &none, "malformed").await;
    }
}

// ---------------------------------------------------------------------------------------
// JWKS keys
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn jwks_keys_are_chosen_by_kid_from_the_set_only() {
    let keys = tempfile::tempdir().unwrap();
    let r1 = KeyPair::rsa(keys.path(), "r1");
    let r2 = KeyPair::rsa(keys.path(), "r2");
    let enc = KeyPair::rsa(keys.path(), "enc");
    let e1 = KeyPair::ed25519(keys.path(), "e1");
    let c1 = KeyPair::p256(keys.path(), "c1");
    let evil = KeyPair::rsa(keys.path(), "evil");
    let hmac = b"shared-secret-shared-secret-1234";
    // A Keycloak-like set: two signing keys, the realm's encryption key, an HMAC key.
    let rsa_jwks = write_jwks(
        keys.path(),
        "rsa.jwks.json",
        vec![
            r1.jwk("r1", json!({"use": "sig", "alg": "RS256"})),
            r2.jwk("r2", json!({"use": "sig", "alg": "RS256"})),
            enc.jwk("enc", json!({"use": "enc", "alg": "RSA-OAEP"})),
            json!({"kty": "oct", "kid": "hmac", "k": b64url(hmac)}),
        ],
    );
    let ed_jwks = write_jwks(keys.path(), "ed.jwks.json", vec![e1.jwk("e1", json!({}))]);
    let ec_jwks = write_jwks(
        keys.path(),
        "ec.jwks.json",
        vec![c1.jwk("c1", json!({"use": "sig", "alg": "ES256"}))],
    );
    let s = server(
        vec![
            jwks_issuer("https://auth0.example/", "RS256", &rsa_jwks, Some("api")),
            jwks_issuer("https://authentik.example/", "EdDSA", &ed_jwks, None),
            jwks_issuer("https://ec.example", "ES256", &ec_jwks, None),
        ],
        |_| {},
    )
    .await;
    let rc = claims("https://auth0.example/", Some("api"), "auth0|1");
    accepted(&s, &r1.sign(Algorithm::RS256, Some("r1"), &rc), "auth0|1").await;
    accepted(&s, &r2.sign(Algorithm::RS256, Some("r2"), &rc), "auth0|1").await;
    let ec = claims("https://ec.example", None, "ec-user");
    accepted(&s, &c1.sign(Algorithm::ES256, Some("c1"), &ec), "ec-user").await;

    // The right key under the other kid; an unknown kid; no kid in a set of several.
    let t = r1.sign(Algorithm::RS256, Some("r2"), &rc);
    refused(&s, &t, "bad_signature").await;
    let t = r1.sign(Algorithm::RS256, Some("nope"), &rc);
    refused(&s, &t, "unknown_key").await;
    refused(&s, &r1.sign(Algorithm::RS256, None, &rc), "unknown_key").await;
    // The encryption key is in the file but never verifies a signature.
    let t = enc.sign(Algorithm::RS256, Some("enc"), &rc);
    refused(&s, &t, "unknown_key").await;
    // Nor does the HMAC key, under its algorithm or ours.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac".into());
    let t = jsonwebtoken::encode(&header, &rc, &EncodingKey::from_secret(hmac)).unwrap();
    refused(&s, &t, "wrong_algorithm").await;

    // A key the token carries (`jwk`) or points at (`jku`, `x5u`) is never used, even
    // under a kid of the set.
    let evil_jwk: Jwk = serde_json::from_value(evil.jwk("r1", json!({}))).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("r1".into());
    header.jwk = Some(evil_jwk.clone());
    refused(&s, &evil.sign_with_header(&header, &rc), "bad_signature").await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("evil".into());
    header.jwk = Some(evil_jwk);
    header.jku = Some("http://127.0.0.1:9/keys.json".into());
    header.x5u = Some("http://127.0.0.1:9/cert.pem".into());
    refused(&s, &evil.sign_with_header(&header, &rc), "unknown_key").await;
    // With the right key those headers change nothing either.
    let ak = claims("https://authentik.example/", None, "ak-user");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("e1".into());
    header.jku = Some("http://127.0.0.1:9/keys.json".into());
    accepted(&s, &e1.sign_with_header(&header, &ak), "ak-user").await;
    // A set of one key also takes tokens without kid, but not an unknown kid.
    accepted(&s, &e1.sign(Algorithm::EdDSA, None, &ak), "ak-user").await;
    let t = e1.sign(Algorithm::EdDSA, Some("e2"), &ak);
    refused(&s, &t, "unknown_key").await;
}

// ---------------------------------------------------------------------------------------
// What an external token means
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn provider_claims_are_read_like_any_token() {
    let keys = tempfile::tempdir().unwrap();
    let kc = KeyPair::rsa(keys.path(), "kc");
    let jwks = write_jwks(
        keys.path(),
        "kc.jwks.json",
        vec![kc.jwk("kc1", json!({"use": "sig", "alg": "RS256"}))],
    );
    let realm = "https://sso.example/realms/team";
    let issuers = vec![jwks_issuer(realm, "RS256", &jwks, Some("account"))];
    // A Keycloak-shaped token: its own session id in `sid`, nested realm roles, a flat
    // `roles` claim added by a mapper.
    let kc_claims = with(
        claims(realm, Some("account"), "f1c2-uuid"),
        json!({
            "sid": "keycloak-session-1",
            "email": "ann@example.com",
            "realm_access": {"roles": ["offline_access", "boss"]},
            "roles": ["editor"],
        }),
    );
    let token = kc.sign(Algorithm::RS256, Some("kc1"), &kc_claims);

    let s = server(issuers.clone(), |_| {}).await;
    let ok = accepted(&s, &token, "f1c2-uuid").await;
    assert_eq!(ok["user"]["email"], "ann@example.com");
    assert_eq!(ok["user"]["roles"], json!(["user"]));
    // Its wsToken resumes the session like any other.
    accepted(&s, ok["wsToken"].as_str().unwrap(), "f1c2-uuid").await;
    // A live socket moves on to the provider's next token.
    let mut c = s.client().await;
    c.auth(&token).await;
    let exp = now_secs() + 1200;
    let next = kc.sign(
        Algorithm::RS256,
        Some("kc1"),
        &with(kc_claims.clone(), json!({"exp": exp})),
    );
    c.send("refresh", json!({ "token": next })).await;
    let refreshed = c.expect("token_refreshed").await;
    assert_eq!(refreshed["data"]["expiresAt"], json!(exp * 1000));
    // After a user-wide revocation, tokens the IdP issues later are taken again. The
    // IdP's `sid` is its own session id, not one of roomgate's logins; read as one, the
    // token would be refused for a login roomgate never stored.
    s.server()
        .state()
        .store
        .revoke_user_before("f1c2-uuid", now_ms())
        .unwrap();
    refused_with(&s, &token, "token_revoked", "revoked").await;
    let later = with(kc_claims.clone(), json!({"iat": now_secs() + 2}));
    accepted(
        &s,
        &kc.sign(Algorithm::RS256, Some("kc1"), &later),
        "f1c2-uuid",
    )
    .await;
    s.stop().await;

    // Roles from the flat `roles` claim only with auth.trust_role_claims.
    let s = server(issuers.clone(), |c| c.auth.trust_role_claims = true).await;
    let ok = accepted(&s, &token, "f1c2-uuid").await;
    assert_eq!(ok["user"]["roles"], json!(["user", "editor"]));
    s.stop().await;

    // The verifier's view: no refresh family, no session to resume, even when the
    // provider's token carries our wsToken claims.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.auth.issuers = issuers;
    let v = Verifier::new(&cfg, JWT_SECRET.as_bytes(), WS_SECRET.as_bytes()).unwrap();
    let ws_like = with(
        kc_claims,
        json!({"type": "websocket", "sessionId": "s-1", "jti": "j-1"}),
    );
    let verified = v
        .verify(&kc.sign(Algorithm::RS256, Some("kc1"), &ws_like))
        .unwrap();
    assert_eq!(verified.family, None);
    assert_eq!(verified.resume_session, None);
    assert_eq!(verified.jti.as_deref(), Some("j-1"));
    assert_eq!(verified.claimed_roles, vec!["editor".to_string()]);
}

/// A provider's user named like a built-in account is not that account: the token is
/// refused rather than given the account's stored roles, on `auth` and on `refresh`.
#[tokio::test]
async fn a_providers_sub_naming_a_built_in_account_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let rsa = KeyPair::rsa(keys.path(), "rsa");
    let iss = "https://rsa.example";
    let s = server(vec![pem_issuer(iss, "RS256", &rsa.public, None)], |_| {}).await;
    // The first-start `admin` account exists, with the admin role stored for it.
    let impostor = rsa.sign(Algorithm::RS256, None, &claims(iss, None, "admin"));
    refused(&s, &impostor, "sub_collides_with_account").await;
    // The provider's other users are its own, as before.
    let alice = rsa.sign(Algorithm::RS256, None, &claims(iss, None, "alice"));
    let ok = accepted(&s, &alice, "alice").await;
    assert_eq!(ok["user"]["roles"], json!(["user"]));

    // A socket of the real admin cannot move onto the provider's "admin" either.
    let login = login(s.addr, "admin", ADMIN_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let mut c = s.client().await;
    c.auth(login.json()["access_token"].as_str().unwrap()).await;
    c.send("refresh", json!({ "token": impostor })).await;
    c.expect_error("auth_failed").await;
}

// ---------------------------------------------------------------------------------------
// Key files that stop the server
// ---------------------------------------------------------------------------------------

/// A bad key file stops the start before the first admin account is made, so its
/// one-time password is not printed for a server that never ran.
#[tokio::test]
async fn a_bad_key_file_stops_the_start_before_the_admin_is_made() {
    let keys = tempfile::tempdir().unwrap();
    let missing = keys.path().join("missing.pem");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.auth.issuers = vec![pem_issuer("https://i", "RS256", &missing, None)];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert!(
        roomgate::server::Server::start(cfg.clone(), listener)
            .await
            .is_err()
    );
    let store = roomgate::store::Store::open(&cfg.data_dir, &cfg.store).unwrap();
    assert_eq!(store.account_count(), 0, "admin made by a failed start");
}

#[tokio::test]
async fn bad_key_files_stop_the_server_naming_the_file() {
    let keys = tempfile::tempdir().unwrap();
    let rsa = KeyPair::rsa(keys.path(), "rsa");
    let ed = KeyPair::ed25519(keys.path(), "ed");
    let missing = keys.path().join("missing.pem");
    let garbage = keys.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    let ed_only = write_jwks(keys.path(), "ed-only.json", vec![ed.jwk("e", json!({}))]);
    let empty = write_jwks(keys.path(), "empty.json", vec![]);
    let lying = write_jwks(
        keys.path(),
        "lying.json",
        vec![ed.jwk("e", json!({"alg": "RS256"}))],
    );
    let cases = [
        (
            pem_issuer("https://i", "RS256", &missing, None),
            "cannot read",
        ),
        (pem_issuer("https://i", "RS256", &garbage, None), "PEM"),
        // The private key instead of the public one.
        (
            pem_issuer("https://i", "RS256", &rsa.private, None),
            "private key",
        ),
        // A key of another algorithm.
        (pem_issuer("https://i", "RS256", &ed.public, None), "PEM"),
        (pem_issuer("https://i", "EdDSA", &rsa.public, None), "PEM"),
        (
            jwks_issuer("https://i", "RS256", &missing, None),
            "cannot read",
        ),
        (
            jwks_issuer("https://i", "RS256", &garbage, None),
            "not a JWKS",
        ),
        (
            jwks_issuer("https://i", "RS256", &empty, None),
            "the set is empty",
        ),
        (
            jwks_issuer("https://i", "RS256", &ed_only, None),
            "no usable RS256",
        ),
        (
            jwks_issuer("https://i", "RS256", &lying, None),
            "marked RS256",
        ),
    ];
    for (issuer, why) in cases {
        let file = issuer
            .public_key_file
            .clone()
            .or(issuer.jwks_file.clone())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.auth.issuers = vec![issuer];
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = match roomgate::server::Server::start(cfg, listener).await {
            Ok(_) => panic!("started with {}", file.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(path_str(&file)), "{err}");
        assert!(err.contains("https://i"), "{err}");
        assert!(err.contains(why), "{why} missing from {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Token typing (RFC 8725, 3.11)
// ---------------------------------------------------------------------------------------

/// An explicit `typ` other than `JWT` or `at+jwt` (any case, with or without
/// `application/`) marks a token that is not an access token (a refresh token, an ID
/// token, a logout token): refused on the shared-secret and the provider path alike. No
/// `typ` stays accepted, and so does the server's own `wsToken`.
#[tokio::test]
async fn explicitly_typed_non_access_tokens_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let rsa = KeyPair::rsa(keys.path(), "rsa");
    let s = server(
        vec![pem_issuer(
            "https://rsa.example",
            "RS256",
            &rsa.public,
            None,
        )],
        |_| {},
    )
    .await;
    let hs = |typ: Option<&str>, sub: &str| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_string);
        let c = json!({"sub": sub, "iat": now_secs(), "exp": now_secs() + 600});
        jsonwebtoken::encode(
            &header,
            &c,
            &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let rs = |typ: Option<&str>, sub: &str| {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = typ.map(str::to_string);
        rsa.sign_with_header(&header, &claims("https://rsa.example", None, sub))
    };

    for typ in [
        "rt+jwt",
        "RT+JWT",
        "id+jwt",
        "logout+jwt",
        "application/rt+jwt",
        "jose",
        "",
    ] {
        refused(&s, &hs(Some(typ), "hs-user"), "wrong_type").await;
        refused(&s, &rs(Some(typ), "rs-user"), "wrong_type").await;
    }
    for typ in [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt"),
        Some("AT+JWT"),
        Some("application/at+jwt"),
        Some("application/jwt"),
    ] {
        let ok = accepted(&s, &hs(typ, "hs-user"), "hs-user").await;
        // The wsToken keeps its own type, and resumes as before.
        accepted(&s, ok["wsToken"].as_str().unwrap(), "hs-user").await;
        accepted(&s, &rs(typ, "rs-user"), "rs-user").await;
    }
}
