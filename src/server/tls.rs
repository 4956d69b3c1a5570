//! TLS: the rustls server configuration from `--tls-cert` and `--tls-key`,
//! offering HTTP/2 and HTTP/1.1 by ALPN, and the connection that speaks it
//! (`LeanTls`).

mod lean;

pub use self::lean::LeanTls;

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The configuration for the certificate chain and key in these PEM files.
pub fn config(cert: &Path, key: &Path) -> std::io::Result<Arc<ServerConfig>> {
    let invalid = |what: &Path, error: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: {error}", what.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| invalid(cert, &error))?;
    if chain.is_empty() {
        return Err(invalid(cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| invalid(key, &error))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(cert, &error))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| invalid(cert, &error))?;
    // HTTP/2 first: a browser then holds every inbox of an origin on one
    // connection, past HTTP/1.1's six.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
