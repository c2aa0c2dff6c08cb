//! The domain's development CA (rcgen), certificate issuance from CSRs, and the rustls server
//! configuration: TLS 1.3 only, client certificates mandatory — checked right after the
//! handshake ([`DeferredClientVerifier`]), so that a client refused for its certificate is
//! answered UNAUTHENTICATED with the reason instead of a dropped connection.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use time::{Duration, OffsetDateTime};

use crate::error::{Result, ServerError};

/// Default validity of principals' certificates.
pub const DEFAULT_CLIENT_DAYS: u32 = 365;

/// A CA certificate and key (PEM).
#[derive(Clone)]
pub struct CaMaterial {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM. Never logged.
    pub key_pem: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for CaMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// An issued certificate with its fingerprint.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Hex SHA-256 of the DER: the identity the server binds to a principal.
    pub fingerprint: String,
    /// Expiry, ms since the epoch.
    pub not_after_ms: i64,
}

fn tls_err(e: impl std::fmt::Display) -> ServerError {
    ServerError::internal(format!("certificates: {e}"))
}

/// SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    shuyu_vault::sha256_hex(der)
}

/// Creates the domain CA.
///
/// # Errors
/// On key generation failure.
pub fn create_ca(domain_name: &str) -> Result<CaMaterial> {
    let key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Shuyu domain CA ({domain_name})"),
    );
    dn.push(DnType::OrganizationName, "Shuyu");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    let cert = params.self_signed(&key).map_err(tls_err)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
    })
}

fn issuer(ca: &CaMaterial) -> Result<Issuer<'static, KeyPair>> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(tls_err)?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).map_err(tls_err)
}

/// Issues the server's certificate for `localhost` / 127.0.0.1 / ::1 and the given names.
/// Returns the certificate and its new private key (PEM).
///
/// # Errors
/// On signing failure.
pub fn issue_server(
    ca: &CaMaterial,
    extra_names: &[String],
) -> Result<(String, zeroize::Zeroizing<String>)> {
    let key = KeyPair::generate().map_err(tls_err)?;
    let mut names = vec!["localhost".to_owned()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(tls_err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    params
        .subject_alt_names
        .push(SanType::IpAddress("::1".parse().expect("ip")));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "shuyu server");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(825);
    let cert = params.signed_by(&key, &issuer(ca)?).map_err(tls_err)?;
    Ok((cert.pem(), zeroize::Zeroizing::new(key.serialize_pem())))
}

fn client_params(principal_id: &str, days: u32) -> Result<(CertificateParams, i64)> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, principal_id);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days.clamp(1, 825)));
    let not_after_ms = (params.not_after.unix_timestamp_nanos() / 1_000_000) as i64;
    Ok((params, not_after_ms))
}

/// Signs a principal's CSR. The subject is set by the server (CN = principal id); whatever the
/// CSR asked for besides its public key is ignored.
///
/// # Errors
/// [`ServerError::InvalidArgument`] for a malformed or badly signed CSR.
pub fn issue_client_from_csr(
    ca: &CaMaterial,
    csr_pem: &str,
    principal_id: &str,
    days: u32,
) -> Result<Issued> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|_| {
        ServerError::InvalidArgument(
            "the certificate signing request is not a valid PEM CSR".into(),
        )
    })?;
    let (params, not_after_ms) = client_params(principal_id, days)?;
    let cert = params
        .signed_by(&csr.public_key, &issuer(ca)?)
        .map_err(tls_err)?;
    Ok(Issued {
        fingerprint: fingerprint(cert.der()),
        cert_pem: cert.pem(),
        not_after_ms,
    })
}

/// The client-certificate verifier of the server: the handshake proves the client holds the
/// key of the certificate it presents (its signature is checked there), and the certificate
/// itself — issued by the domain CA, in its validity period, for client authentication — is
/// checked right after, by [`DeferredClientVerifier::check`]. A connection whose certificate
/// is refused (or that presented none) then gets UNAUTHENTICATED with the reason to every
/// request, before any routing or decoding (see [`crate::audit::refusals`]); handlers also accept
/// only certificates registered to an active principal.
#[derive(Debug)]
pub struct DeferredClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl DeferredClientVerifier {
    /// The verdict on a connection's client certificates: `Ok`, or why they are refused, in
    /// words for the client and the trail.
    ///
    /// # Errors
    /// The reason.
    pub fn check(&self, certs: Option<&[CertificateDer<'_>]>) -> std::result::Result<(), String> {
        let Some((end_entity, intermediates)) = certs.and_then(|c| c.split_first()) else {
            return Err(refusal_reason(&rustls::Error::NoCertificatesPresented));
        };
        self.inner
            .verify_client_cert(end_entity, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| refusal_reason(&e))
    }
}

impl ClientCertVerifier for DeferredClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        // Checked after the handshake by `check`, which every connection goes through.
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a client certificate (or a handshake) was refused, in plain words.
pub fn refusal_reason(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let certificate = |why: &str| format!("the client certificate was refused: {why}");
    match e {
        E::NoCertificatesPresented => {
            "no client certificate was presented: connect with a principal's credentials (--as)"
                .into()
        }
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => certificate(
                "it was not issued by this domain's CA (credentials of another domain?)",
            ),
            C::Expired | C::ExpiredContext { .. } => {
                certificate("it has expired; ask an admin for a new one")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => certificate("it is not valid yet"),
            C::Revoked => certificate("it was revoked"),
            other => certificate(&format!("it is not usable ({other:?})")),
        },
        E::PeerIncompatible(_) => "the client does not speak TLS 1.3".into(),
        other => format!("the TLS handshake failed ({other})"),
    }
}

/// The rustls server configuration: TLS 1.3 only, a client certificate from the domain CA
/// required (checked after the handshake by the returned verifier), ALPN h2.
///
/// # Errors
/// If the PEM material does not parse.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Arc<rustls::ServerConfig>, Arc<DeferredClientVerifier>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(tls_err)?).map_err(tls_err)?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(tls_err)?;
    let verifier = Arc::new(DeferredClientVerifier { inner });
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(tls_err)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(tls_err)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(Arc::clone(&verifier) as Arc<dyn ClientCertVerifier>)
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Arc::new(config), verifier))
}
