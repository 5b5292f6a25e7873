//! Dialing one upstream endpoint: TCP (with TLS verified against the system roots or
//! `client-ssl-ca`, and the vhost's client certificate when it names one) or a unix socket.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

use super::stream::{Stream, UpstreamIo};
use crate::model::{Upstream, Vhost};

/// Why a proxy mount's upstream cannot be set up from the config.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("upstream name: {0}")]
    Name(String),
    /// `reason` names the file.
    #[error("{key}: {reason}")]
    File { key: &'static str, path: PathBuf, reason: String },
    #[error("client certificate: {0}")]
    ClientCert(rustls::Error),
    #[error("upstream host is not a valid header")]
    Host,
}

enum Target {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// Dials one endpoint, whatever URI a pool asks for.
#[derive(Clone)]
pub struct Connector {
    target: Arc<Target>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Connector {
    /// A connector for `upstream`; `tls`: speak TLS, with that vhost's client settings.
    pub fn new(upstream: &Upstream, tls: Option<&Vhost>, timeout: Duration) -> Result<Self, SetupError> {
        let target = match upstream {
            Upstream::Tcp { host, port } => Target::Tcp(host.clone(), *port),
            Upstream::Unix(p) => Target::Unix(p.clone()),
        };
        let tls = if let Some(vhost) = tls {
            let name = match upstream {
                Upstream::Tcp { host, .. } => host.clone(),
                Upstream::Unix(_) => "localhost".to_string(),
            };
            let server_name = ServerName::try_from(name).map_err(|e| SetupError::Name(e.to_string()))?;
            Some((TlsConnector::from(client_tls(vhost)?), server_name))
        } else {
            None
        };
        Ok(Connector { target: Arc::new(target), tls, timeout })
    }

    /// A new connection, within the timeout, as hyper's client takes it.
    pub async fn dial(&self) -> io::Result<UpstreamIo> {
        Ok(UpstreamIo(TokioIo::new(self.open().await?)))
    }

    /// A new connection, within the timeout.
    pub async fn open(&self) -> io::Result<Stream> {
        let connect = async {
            Ok(match &*self.target {
                Target::Tcp(host, port) => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    let _ = s.set_nodelay(true);
                    match &self.tls {
                        Some((c, name)) => Stream::Tls(Box::new(c.connect(name.clone(), s).await?)),
                        None => Stream::Tcp(s),
                    }
                }
                Target::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
            })
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
    }
}

/// The client side TLS for `https://` origins: `client-ssl-ca` or the system roots, and the
/// vhost's client certificate when it names one.
fn client_tls(v: &Vhost) -> Result<Arc<rustls::ClientConfig>, SetupError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let file_err = |key, path: &PathBuf, e: &dyn std::fmt::Display| SetupError::File {
        key,
        path: path.clone(),
        reason: format!("{}: {e}", path.display()),
    };
    // Regular files of at most MAX_CONFIG_FILE: `/dev/zero` or a FIFO fails here, at once.
    let read = |key, path: &PathBuf| {
        crate::files::read_config_file(path, crate::files::MAX_CONFIG_FILE).map_err(|e| SetupError::File {
            key,
            path: path.clone(),
            reason: e.to_string(),
        })
    };
    let mut roots = rustls::RootCertStore::empty();
    match &v.client_ssl_ca {
        Some(ca) => {
            let pem = read("client-ssl-ca", ca)?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| file_err("client-ssl-ca", ca, &e))?;
                roots.add(c).map_err(|e| file_err("client-ssl-ca", ca, &e))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match (&v.client_ssl_cert, &v.client_ssl_key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(&read("client-ssl-cert", cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_err("client-ssl-cert", cert, &e))?;
            let key = PrivateKeyDer::from_pem_slice(&read("client-ssl-key", key)?)
                .map_err(|e| file_err("client-ssl-key", key, &e))?;
            builder.with_client_auth_cert(chain, key).map_err(SetupError::ClientCert)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
