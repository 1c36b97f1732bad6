//! Mutual TLS with rustls and the ring provider. There is no plaintext mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::BrokerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM {expected}: {detail}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        detail: String,
    },
    #[error("private key {path} is readable by group or others (mode {mode:03o}); run `chmod 600 {path}` and keep it owned by the agent's user")]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("TLS setup")]
    Rustls(#[from] rustls::Error),
}

/// Builds the client config from `broker.ca_file`, `broker.cert_file` and `broker.key_file`.
pub fn client_config(broker: &BrokerConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("broker.ca_file", &broker.ca_file)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: "broker.ca_file",
            path: broker.ca_file.clone(),
            expected: "CA certificate",
            detail: e.to_string(),
        })?;
    }
    let chain = read_certs("broker.cert_file", &broker.cert_file)?;
    let key = read_private_key(&broker.key_file)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |detail: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        expected: "certificate",
        detail,
    };
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Reads the key only if its mode keeps it private: a key others can read is not a secret.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "broker.key_file";
    let read_error = |source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_error)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyExposed {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        what,
        path: path.to_owned(),
        expected: "private key",
        detail: e.to_string(),
    })
}
