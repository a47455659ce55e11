//! Built-in TLS: the certificate chain and key from PEM files, served by rustls (TLS 1.2
//! and 1.3 only, ring provider, ALPN `http/1.1`). The certificate lives behind a resolver
//! that can be swapped while the server runs, so a renewed certificate (SIGHUP, or a
//! change of the files' modification times) applies to new handshakes without touching
//! connections already open. A reload that fails keeps the certificate in use and says
//! why in the log. This module never logs key material and never reads a file on the
//! handshake path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: {detail}")]
    Cert { path: String, detail: String },
    #[error("TLS key file {path}: {detail}")]
    Key { path: String, detail: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The files a certificate comes from, and their modification times when last loaded.
struct Source {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// Hands rustls the current certificate; replaced whole on reload.
#[derive(Debug)]
struct Resolver {
    /// Locking rule: read per handshake (an `Arc` clone), written on reload only.
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The server's TLS state: the acceptor for new connections and the reloadable
/// certificate behind it.
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    source: Source,
    provider: Arc<CryptoProvider>,
    /// Modification times of (cert, key) at the last load, for change polling.
    loaded_mtimes: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Tls {
    /// Loads the certificate chain and key; refuses files that are missing, empty, not
    /// PEM, or a key that does not match the certificate.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let source = Source {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
        };
        let mtimes = source.mtimes();
        let key = source.certified_key(&provider)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            source,
            provider,
            loaded_mtimes: RwLock::new(mtimes),
        })
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again and, if they hold a valid pair, uses it for every new
    /// handshake. Open connections keep the session they negotiated.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mtimes = self.source.mtimes();
        let key = self.source.certified_key(&self.provider)?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        *self
            .loaded_mtimes
            .write()
            .unwrap_or_else(|p| p.into_inner()) = mtimes;
        Ok(())
    }

    /// Whether either file changed since the last load.
    pub fn changed_on_disk(&self) -> bool {
        let loaded = *self.loaded_mtimes.read().unwrap_or_else(|p| p.into_inner());
        self.source.mtimes() != loaded
    }
}

impl Source {
    fn mtimes(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (m(&self.cert_file), m(&self.key_file))
    }

    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert_err = |detail: String| TlsError::Cert {
            path: self.cert_file.display().to_string(),
            detail,
        };
        let key_err = |detail: String| TlsError::Key {
            path: self.key_file.display().to_string(),
            detail,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .map_err(|e| cert_err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| cert_err(e.to_string()))?;
        if chain.is_empty() {
            return Err(cert_err("no CERTIFICATE block found".into()));
        }
        let key =
            PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| key_err(e.to_string()))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_err(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|e| key_err(format!("does not match the certificate: {e}")))?;
        Ok(certified)
    }
}
