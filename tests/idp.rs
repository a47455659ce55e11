//! Tokens from external identity providers: RS256, ES256 and EdDSA public keys from PEM
//! files and from JWKS files (keys chosen by `kid` from that set only). Keys are made at
//! test time with the `openssl` command line.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roomgate::config::IssuerConfig;
use serde_json::{Value, json};

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A private key (PKCS#8 PEM) and its public key (SPKI PEM) in `dir`.
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", private.to_str().unwrap()]);
    openssl(&args);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (private, public)
}

fn rsa(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    keypair(
        dir,
        name,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    )
}

fn ed25519(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    keypair(dir, name, &["-algorithm", "ed25519"])
}

fn p256(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    keypair(
        dir,
        name,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

fn b64url(bytes: &[u8]) -> String {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | *b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn rsa_jwk(public: &Path, kid: &str) -> Value {
    let text = String::from_utf8(openssl(&[
        "rsa",
        "-pubin",
        "-in",
        public.to_str().unwrap(),
        "-noout",
        "-modulus",
    ]))
    .unwrap();
    let hex = text.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(&n), "e": "AQAB"})
}

fn ed_jwk(public: &Path, kid: &str) -> Value {
    let der = openssl(&[
        "pkey",
        "-pubin",
        "-in",
        public.to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let x = &der[der.len() - 32..];
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "x": b64url(x)})
}

fn sign_with(alg: Algorithm, private: &Path, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(private).unwrap();
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(iss: &str, aud: Option<&str>, sub: &str) -> Value {
    let mut c = json!({"iss": iss, "sub": sub, "iat": now_secs(), "exp": now_secs() + 600});
    if let Some(a) = aud {
        c["aud"] = json!(a);
    }
    c
}

fn issuer(
    iss: &str,
    alg: &str,
    pem: Option<&Path>,
    jwks: Option<&Path>,
    aud: Option<&str>,
) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        audience: aud.map(str::to_string),
        algorithm: alg.into(),
        public_key_file: pem.map(Path::to_path_buf),
        jwks_file: jwks.map(Path::to_path_buf),
    }
}

async fn accepted(s: &TestServer, token: &str, sub: &str) {
    let mut c = s.client().await;
    let ok = c.auth(token).await;
    assert_eq!(ok["user"]["userId"], sub);
}

async fn refused(s: &TestServer, token: &str) {
    let mut c = s.client().await;
    c.send("auth", json!({"token": token})).await;
    c.expect_error("auth_failed").await;
}

#[tokio::test]
async fn pem_keys_for_rs256_es256_and_eddsa() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa_priv, rsa_pub) = rsa(keys.path(), "rsa");
    let (ed_priv, ed_pub) = ed25519(keys.path(), "ed");
    let (ec_priv, ec_pub) = p256(keys.path(), "ec");
    let (other_priv, _) = rsa(keys.path(), "other");
    let (rp, ep, cp) = (rsa_pub.clone(), ed_pub.clone(), ec_pub.clone());
    let s = TestServer::start_with(move |c| {
        c.auth.issuers = vec![
            issuer(
                "https://rsa.example",
                "RS256",
                Some(&rp),
                None,
                Some("roomgate"),
            ),
            issuer("https://ed.example", "EdDSA", Some(&ep), None, None),
            issuer("https://ec.example", "ES256", Some(&cp), None, None),
        ];
    })
    .await;
    let rs = claims("https://rsa.example", Some("roomgate"), "kc-user");
    accepted(
        &s,
        &sign_with(Algorithm::RS256, &rsa_priv, None, &rs),
        "kc-user",
    )
    .await;
    accepted(
        &s,
        &sign_with(
            Algorithm::EdDSA,
            &ed_priv,
            None,
            &claims("https://ed.example", None, "ed-user"),
        ),
        "ed-user",
    )
    .await;
    accepted(
        &s,
        &sign_with(
            Algorithm::ES256,
            &ec_priv,
            None,
            &claims("https://ec.example", None, "ec-user"),
        ),
        "ec-user",
    )
    .await;
    // Another key, another RSA algorithm, a wrong or missing audience: refused.
    refused(&s, &sign_with(Algorithm::RS256, &other_priv, None, &rs)).await;
    refused(&s, &sign_with(Algorithm::RS384, &rsa_priv, None, &rs)).await;
    refused(&s, &sign_with(Algorithm::PS256, &rsa_priv, None, &rs)).await;
    let wrong_aud = claims("https://rsa.example", Some("someone-else"), "kc-user");
    refused(
        &s,
        &sign_with(Algorithm::RS256, &rsa_priv, None, &wrong_aud),
    )
    .await;
    let no_aud = claims("https://rsa.example", None, "kc-user");
    refused(&s, &sign_with(Algorithm::RS256, &rsa_priv, None, &no_aud)).await;
    // An EdDSA key does not verify for the RSA issuer.
    let ed_as_rsa = sign_with(Algorithm::EdDSA, &ed_priv, None, &rs);
    refused(&s, &ed_as_rsa).await;
    // The shared-secret HS256 path still works beside them.
    accepted(&s, &token("plain"), "plain").await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_material_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (_, rsa_pub) = rsa(keys.path(), "rsa");
    let (_, ed_pub) = ed25519(keys.path(), "ed");
    let (rp, ep) = (rsa_pub.clone(), ed_pub.clone());
    let s = TestServer::start_with(move |c| {
        c.auth.issuers = vec![
            issuer("https://rsa.example", "RS256", Some(&rp), None, None),
            issuer("https://ed.example", "EdDSA", Some(&ep), None, None),
        ];
    })
    .await;
    for (iss, public) in [
        ("https://rsa.example", &rsa_pub),
        ("https://ed.example", &ed_pub),
    ] {
        let pem = std::fs::read_to_string(public).unwrap();
        let der = openssl(&[
            "pkey",
            "-pubin",
            "-in",
            public.to_str().unwrap(),
            "-outform",
            "DER",
        ]);
        let c = claims(iss, None, "mallory");
        for secret in [pem.as_bytes(), &der[..]] {
            let forged = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &c,
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            refused(&s, &forged).await;
        }
    }
}

#[tokio::test]
async fn jwks_keys_are_chosen_by_kid_from_the_set_only() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa_priv, rsa_pub) = rsa(keys.path(), "rsa");
    let (rsa2_priv, rsa2_pub) = rsa(keys.path(), "rsa2");
    let (ed_priv, ed_pub) = ed25519(keys.path(), "ed");
    let rsa_jwks = keys.path().join("rsa.jwks.json");
    std::fs::write(
        &rsa_jwks,
        json!({"keys": [
            rsa_jwk(&rsa_pub, "r1"),
            rsa_jwk(&rsa2_pub, "r2"),
            // An HMAC key in the set must never verify anything.
            {"kty": "oct", "kid": "hmac", "k": b64url(b"shared-secret-shared-secret-1234")},
        ]})
        .to_string(),
    )
    .unwrap();
    let ed_jwks = keys.path().join("ed.jwks.json");
    std::fs::write(
        &ed_jwks,
        json!({"keys": [ed_jwk(&ed_pub, "e1")]}).to_string(),
    )
    .unwrap();
    let (rj, ej) = (rsa_jwks.clone(), ed_jwks.clone());
    let s = TestServer::start_with(move |c| {
        c.auth.issuers = vec![
            issuer("https://auth0.example/", "RS256", None, Some(&rj), None),
            issuer("https://authentik.example/", "EdDSA", None, Some(&ej), None),
        ];
    })
    .await;
    let rc = claims("https://auth0.example/", None, "auth0|1");
    accepted(
        &s,
        &sign_with(Algorithm::RS256, &rsa_priv, Some("r1"), &rc),
        "auth0|1",
    )
    .await;
    accepted(
        &s,
        &sign_with(Algorithm::RS256, &rsa2_priv, Some("r2"), &rc),
        "auth0|1",
    )
    .await;
    // The right key under the other kid, an unknown kid, no kid in a set of two: refused.
    refused(&s, &sign_with(Algorithm::RS256, &rsa_priv, Some("r2"), &rc)).await;
    refused(
        &s,
        &sign_with(Algorithm::RS256, &rsa_priv, Some("nope"), &rc),
    )
    .await;
    refused(&s, &sign_with(Algorithm::RS256, &rsa_priv, None, &rc)).await;
    let hmac = jsonwebtoken::encode(
        &{
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some("hmac".into());
            h
        },
        &rc,
        &EncodingKey::from_secret(b"shared-secret-shared-secret-1234"),
    )
    .unwrap();
    refused(&s, &hmac).await;
    // A `jku` header pointing elsewhere changes nothing: keys come from the file only.
    let ec = claims("https://authentik.example/", None, "ak-user");
    let pem = std::fs::read(&ed_priv).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("e1".into());
    header.jku = Some("http://127.0.0.2/keys.json".into());
    let with_jku =
        jsonwebtoken::encode(&header, &ec, &EncodingKey::from_ed_pem(&pem).unwrap()).unwrap();
    accepted(&s, &with_jku, "ak-user").await;
    // A set with a single key also takes tokens without kid.
    accepted(
        &s,
        &sign_with(Algorithm::EdDSA, &ed_priv, None, &ec),
        "ak-user",
    )
    .await;
}

#[tokio::test]
async fn unreadable_key_files_stop_the_server_with_the_path() {
    let keys = tempfile::tempdir().unwrap();
    let garbage = keys.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    let missing = keys.path().join("missing.pem");
    for (file, jwks) in [(&missing, false), (&garbage, false), (&garbage, true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.auth.issuers = vec![issuer(
            "https://idp.example",
            "RS256",
            (!jwks).then_some(file.as_path()),
            jwks.then_some(file.as_path()),
            None,
        )];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = match roomgate::server::Server::start(cfg, listener).await {
            Ok(_) => panic!("started with a bad key file"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(file.to_str().unwrap()), "{err}");
    }
}
