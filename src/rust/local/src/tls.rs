//! The emulator's TLS: a throw-away CA and a leaf certificate for 127.0.0.1/localhost.
//!
//! A separate CA (rather than a self-signed leaf) keeps every TLS stack happy: webpki
//! (rustls, reqwest, azure_core) and OpenSSL (R's curl) all accept a CA as trust anchor.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the listener needs (the rustls config) and what clients need (the CA to trust).
pub struct Tls {
    pub server_config: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    /// The leaf certificate (followed by the CA) and its key, for other local servers
    /// that should be trusted through the same CA (Azurite).
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn generate() -> Result<Tls, String> {
    let err = |e: rcgen::Error| format!("cannot generate the local TLS certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "serveRless local Azure CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let ca_pem = ca_cert.pem();

    let leaf_key = KeyPair::generate().map_err(err)?;
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

    let cert_pem = format!("{}{}", leaf_cert.pem(), ca_pem);
    let key_pem = leaf_key.serialize_pem();
    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    // HTTP/1.1 only: the listener speaks nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        server_config: Arc::new(config),
        ca_pem,
        ca_der: ca_cert.der().clone(),
        cert_pem,
        key_pem,
    })
}
