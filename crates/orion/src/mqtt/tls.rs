//! TLS to the broker: a rustls client config (ring provider) trusting either the
//! configured CA file or the system's root certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {cause}")]
    ReadCa { path: String, cause: std::io::Error },
    #[error("CA file {path} is not valid PEM: {cause}")]
    BadPem { path: String, cause: String },
    #[error("CA file {0} holds no PEM certificate")]
    EmptyCa(String),
    #[error("CA certificate rejected: {0}")]
    BadCa(String),
    #[error("no system root certificates found; set mqtt.tls.ca_file")]
    NoRoots,
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// Builds the client configuration; `ca_file` None means the system roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|cause| TlsError::ReadCa {
                path: shown.clone(),
                cause,
            })?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|cause| TlsError::BadPem {
                    path: shown.clone(),
                    cause: cause.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsError::EmptyCa(shown));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::BadCa(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // Skip certificates this TLS stack cannot use instead of failing.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
