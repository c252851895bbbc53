//! TLS trust for a controller connection: the built-in Mozilla roots, optionally the operating
//! system's trust store (`--system-ca`), the certificates of a CA file (`--ca-file`), and — the
//! reason this module exists — a self-signed certificate pinned through that CA file.
//!
//! # Self-signed certificates made with `openssl req -x509`
//!
//! `openssl req -x509` writes `basicConstraints = CA:TRUE` into the certificate it makes. When a
//! server presents such a certificate as its own (end-entity) certificate, webpki refuses it with
//! `CaUsedAsEndEntity` even when the very same certificate is a trust anchor: RFC 5280 path
//! validation does not allow a CA certificate to be the leaf. That is how most administrators
//! make a certificate for an internal Jenkins, so `--ca-file jenkins.pem` must work with it.
//!
//! The rule here: when the normal webpki verification fails, and the certificate the server
//! presented is **byte-identical** to a certificate in the CA file the administrator gave for this
//! controller, the certificate is accepted if, and only if,
//! - it is valid for the host name of the URL (webpki's own name check, subject alternative
//!   names), and
//! - the current time lies within its validity period (`notBefore`..`notAfter`).
//!
//! Why this is sound: byte identity is the strongest statement of trust there is — the
//! administrator handed us exactly this certificate for exactly this controller — and the TLS
//! handshake still proves that the server holds the certificate's private key (the handshake
//! signature is checked by webpki against the certificate's public key, as for any certificate).
//! Nothing else is relaxed: certificates merely *signed* by a CA-file certificate go through
//! webpki unchanged, the system and Mozilla roots are never pinned, and name and validity are
//! checked. This is the same trust model as SSH host keys or a browser's certificate exception.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;

/// Where trusted certificates come from.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// PEM certificates of the controller's CA file (a private CA, or the server's own
    /// self-signed certificate).
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Also trust the operating system's certificate store (corporate CAs installed there).
    pub system_ca: bool,
    /// Accept any certificate (no verification at all).
    pub insecure: bool,
}

fn config_error(problem: impl Into<String>, fix: &str) -> Error {
    Error::Config { problem: problem.into(), fix: fix.into() }
}

/// Parses a PEM bundle into certificates (at least one).
pub fn parse_pem_bundle(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    const FIX: &str = "give --ca-file a PEM file with one or more -----BEGIN CERTIFICATE----- blocks (the CA that signed the controller's certificate, or its self-signed certificate)";
    let mut certs = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        certs.push(c.map_err(|e| config_error(format!("the CA file is not valid PEM: {e}"), FIX))?);
    }
    if certs.is_empty() {
        return Err(config_error("the CA file contains no certificate", FIX));
    }
    Ok(certs)
}

/// The rustls client configuration for these trust settings.
pub fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS versions: {e}"), "this is a bug in jgate"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if trust.insecure {
        Arc::new(NoVerification { provider: provider.clone() })
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if trust.system_ca {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                return Err(config_error(
                    format!(
                        "--system-ca was given, but no certificate could be read from this machine's trust store{}",
                        if why.is_empty() { String::new() } else { format!(" ({why})") }
                    ),
                    "install the CA certificates package (e.g. ca-certificates) or set SSL_CERT_FILE, or give the CA with --ca-file instead",
                ));
            }
        }
        let mut pinned = Vec::new();
        if let Some(pem) = &trust.ca_bundle_pem {
            for c in parse_pem_bundle(pem)? {
                // A certificate webpki cannot use as an anchor (e.g. an old v1 certificate) can
                // still be pinned.
                let _ = roots.add(c.clone());
                pinned.push(c);
            }
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| config_error(format!("TLS verification settings: {e}"), "check --ca-file"))?;
        Arc::new(PinningVerifier { inner, pinned })
    };
    let mut config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// webpki, plus the exact-certificate rule of the module documentation.
#[derive(Debug)]
struct PinningVerifier {
    inner: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(v) => Ok(v),
            Err(e) => {
                if !self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
                    return Err(e);
                }
                check_pinned(end_entity, server_name, now)?;
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Name and validity period of a pinned certificate.
fn check_pinned(cert: &CertificateDer<'_>, server_name: &ServerName<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|_| CertificateError::BadEncoding)?;
    ee.verify_is_valid_for_subject_name(server_name).map_err(|_| CertificateError::NotValidForName)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| CertificateError::BadEncoding)?;
    let validity = parsed.validity();
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now < validity.not_before.timestamp() {
        return Err(CertificateError::NotValidYet.into());
    }
    if now > validity.not_after.timestamp() {
        return Err(CertificateError::Expired.into());
    }
    Ok(())
}

/// `--insecure-skip-tls-verify`: accepts any certificate (handshake signatures are still checked,
/// which proves nothing without a trusted certificate).
#[derive(Debug)]
struct NoVerification {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
