//! TLS at the door, for the hosts whose credential the door sets (issue 18,
//! point 2). A command in the jail speaks TLS to the door as if it were the
//! host: the door answers with a certificate for that host signed by its
//! own authority, reads the request in clear, sets the header, and sends
//! the request on over real TLS, checked against the system's trust store.
//!
//! The authority is made when the daemon starts and lives only in its
//! memory: its key is never written anywhere, so nothing outside this one
//! process can sign for it, and a restart makes a new one. Only the jail
//! trusts it (toold puts its certificate in the bundle the jail's commands
//! are pointed to). Its certificate may sign for server names only, not
//! for other authorities (path length 0).
//!
//! Every other host is tunnelled end to end (plain `CONNECT`): the door
//! never sees its plaintext, and a command checks the real certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};

/// How many hosts' certificates are kept made (a new one costs one
/// signature; the list is cleared when full).
const LEAVES_KEPT: usize = 256;
/// A client starts its handshake at once.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why TLS at the door failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the door's certificate authority: {0}")]
    Authority(#[from] rcgen::Error),
    #[error("cannot use a certificate: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the TLS server name (SNI) {sni:?} is not the host the tunnel was opened to ({host})")]
    OtherServerName { sni: String, host: String },
    #[error("the client's TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("the client's TLS handshake did not come in time")]
    HandshakeTimeout,
    #[error("{0} is not a name TLS can be spoken to")]
    BadName(String),
    #[error("upstream TLS to {host} failed: {source}")]
    Upstream { host: String, source: std::io::Error },
}

/// The door's certificate authority, and the certificates it made.
pub struct Authority {
    certificate_pem: String,
    certificate: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// One key for every host's certificate (made at start too).
    leaf_key: KeyPair,
    leaf_signing: Arc<dyn rustls::sign::SigningKey>,
    leaves: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    provider: Arc<CryptoProvider>,
}

impl Authority {
    /// A new authority, its key only in this process's memory.
    pub fn generate() -> Result<Authority, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "OxiBot egress door (trusted inside the jail only)");
        params.distinguished_name.push(DnType::OrganizationName, "OxiBot");
        // It signs server certificates, never another authority.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let leaf_key = KeyPair::generate()?;
        let provider = provider();
        let leaf_signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())))?;
        Ok(Authority {
            certificate_pem: certificate.pem(),
            certificate: certificate.der().clone(),
            issuer: Issuer::new(params, key),
            leaf_key,
            leaf_signing,
            leaves: Mutex::default(),
            provider,
        })
    }

    /// The authority's certificate (no key), for the jail's trust store.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A certificate for `host` (a name or an address), made once.
    fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let mut leaves = self.leaves.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(made) = leaves.get(&host) {
            return Ok(made.clone());
        }
        let mut params = CertificateParams::new(vec![host.clone()])?;
        params.distinguished_name.push(DnType::CommonName, host.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&self.leaf_key, &self.issuer)?;
        let made = Arc::new(CertifiedKey::new(
            vec![leaf.der().clone(), self.certificate.clone()],
            self.leaf_signing.clone(),
        ));
        if leaves.len() >= LEAVES_KEPT {
            leaves.clear();
        }
        leaves.insert(host, made.clone());
        Ok(made)
    }

    /// Answers the client's TLS as `host`. The name the client asks for
    /// (SNI), when it gives one, must be that host: a tunnel opened to
    /// one host does not speak for another.
    pub async fn accept<C>(&self, client: C, host: &str) -> Result<tokio_rustls::server::TlsStream<C>, TlsError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = async {
            let start = tokio_rustls::LazyConfigAcceptor::new(Acceptor::default(), client)
                .await
                .map_err(TlsError::Handshake)?;
            if let Some(sni) = start.client_hello().server_name() {
                if !crate::same_host(sni, host) {
                    return Err(TlsError::OtherServerName {
                        sni: sni.chars().take(253).collect(),
                        host: host.to_string(),
                    });
                }
            }
            let mut config = ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(OneHost(self.leaf(host)?)));
            // One request per connection, in HTTP/1.1: the door reads it.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            start.into_stream(Arc::new(config)).await.map_err(TlsError::Handshake)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| TlsError::HandshakeTimeout)?
    }
}

/// The one certificate a terminated connection is answered with.
#[derive(Debug)]
struct OneHost(Arc<CertifiedKey>);

impl ResolvesServerCert for OneHost {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The system's trust anchors (read once, before the daemon's sandbox
/// closes the filesystem). Unreadable ones are skipped; none at all
/// leaves only the configured extra ones.
pub fn system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!("system trust store: {e}");
    }
    found.certs
}

/// How the door checks the real hosts it speaks TLS to: the system's
/// anchors, and the extra ones configured (`tools.exec.upstreamCaFile`,
/// PEM). Returns how many extra anchors were taken.
pub fn upstream_config(
    system: &[CertificateDer<'static>],
    extra_pem: &str,
) -> Result<(Arc<ClientConfig>, usize), TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system.iter().cloned());
    let mut extra = 0;
    for cert in CertificateDer::pem_slice_iter(extra_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Rustls(rustls::Error::General(format!("extra CA: {e}"))))?;
        roots.add(cert)?;
        extra += 1;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), extra))
}

/// Real TLS to `host` over `tcp`, its certificate checked for `host`.
pub async fn connect_upstream(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_string()).map_err(|_| TlsError::BadName(host.to_string()))?;
    let connecting = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(TlsError::Upstream {
            host: host.to_string(),
            source,
        }),
        Err(_) => Err(TlsError::Upstream {
            host: host.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no TLS answer"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_signs_hosts_and_keeps_its_key() {
        let authority = Authority::generate().unwrap();
        let pem = authority.certificate_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!pem.contains("PRIVATE KEY"));
        let a = authority.leaf("api.github.com").unwrap();
        let again = authority.leaf("API.github.com").unwrap();
        assert!(Arc::ptr_eq(&a, &again), "made once per host");
        assert_eq!(a.cert.len(), 2, "the host's certificate, then the authority's");
        assert!(authority.leaf("127.0.0.1").is_ok());
        // Each start is a new authority.
        assert_ne!(Authority::generate().unwrap().certificate_pem(), pem);
    }

    #[test]
    fn a_bad_extra_anchor_is_an_error_and_good_ones_count() {
        let authority = Authority::generate().unwrap();
        let (_, n) = upstream_config(&[], authority.certificate_pem()).unwrap();
        assert_eq!(n, 1);
        let (_, n) = upstream_config(&[], "").unwrap();
        assert_eq!(n, 0);
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(upstream_config(&[], broken).is_err());
    }
}
