//! QUIC and TLS configuration with pinned Ed25519 keys.
//!
//! breakglass has no certificate authority: the relay and every member are known by an
//! Ed25519 public key, and that key is the whole identity. Both sides therefore present a
//! throw-away self-signed X.509 certificate built from their Ed25519 signing key, and each
//! side looks only at the certificate's SubjectPublicKeyInfo. The client accepts the relay
//! when that key equals the key it pinned; the relay accepts any client holding a
//! well-formed Ed25519 key and leaves admission against the roster to its caller, which
//! reads the key with [`peer_key`] before any application data. In both directions the
//! TLS 1.3 `CertificateVerify` signature, checked against the same key, proves possession
//! of the private half; the certificate's own self-signature, subject, validity dates and
//! host names are ignored because they add nothing a pinned key does not already say.
//!
//! Only TLS 1.3, only the Ed25519 signature scheme, only the `breakglass/1` ALPN, no 0-RTT
//! and no session resumption: every connection runs a full handshake, so every connection
//! proves both keys afresh. No process-wide crypto provider is installed; each config
//! carries the *ring* provider explicitly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerIncompatible,
    PeerMisbehaved, SignatureScheme,
};

/// The one application protocol both sides offer and require.
pub const ALPN: &[u8] = b"breakglass/1";

/// The server name clients pass to [`quinn::Endpoint::connect_with`]. Nothing checks it:
/// the relay is recognised by its pinned key alone.
pub const SERVER_NAME: &str = "breakglass-relay";

/// A connection with no traffic for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Clients ping this often so a quiet connection outlives [`IDLE_TIMEOUT`] and NAT bindings.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The HKDF label of the stateless-reset key; no other key is derived with it.
const RESET_KEY_LABEL: &[u8] = b"breakglass/v1 quic stateless reset";

/// The HKDF label of the connection-id generator's key.
const CID_KEY_LABEL: &[u8] = b"breakglass/v1 quic connection id";

/// Bidirectional streams a peer may have open at once.
const MAX_BIDI_STREAMS: u32 = 64;

/// Unidirectional streams the relay lets a client open: none, clients only make requests.
const MAX_UNI_STREAMS_FROM_CLIENT: u32 = 0;

/// Unidirectional streams a client lets the relay open: none, the relay only answers.
const MAX_UNI_STREAMS_FROM_RELAY: u32 = 0;

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key (RFC 8410 §4): SEQUENCE (42 bytes)
/// { SEQUENCE { OID 1.3.101.112 }, BIT STRING (33 bytes, no unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What can go wrong building the transport or reading a peer's key.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The signing key could not be encoded as PKCS#8.
    #[error("cannot encode the key as pkcs#8")]
    KeyEncoding(#[from] ed25519_dalek::pkcs8::Error),
    /// rcgen could not build the self-signed certificate.
    #[error("cannot build the self-signed certificate")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("tls configuration refused")]
    Tls(#[from] rustls::Error),
    /// The crypto provider lacks the cipher suite QUIC needs for initial packets.
    #[error("no quic initial cipher suite")]
    InitialCipherSuite(#[from] NoInitialCipherSuite),
    /// The UDP socket could not be opened.
    #[error("cannot open the udp socket")]
    Socket(#[from] std::io::Error),
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// The peer sent a certificate chain where one self-signed certificate was expected.
    #[error("the peer sent more than one certificate")]
    UnexpectedChain,
    /// The peer's certificate is not well-formed X.509.
    #[error("the peer certificate is malformed")]
    MalformedCertificate(#[source] rustls::Error),
    /// The peer's certificate does not carry an Ed25519 key.
    #[error("the peer certificate does not carry an ed25519 key")]
    NotEd25519,
    /// The peer's Ed25519 key is not a valid curve point.
    #[error("the peer ed25519 key is invalid")]
    InvalidKey,
    /// The relay presented a key other than the pinned one.
    #[error("the relay key does not match the pinned key")]
    PinMismatch,
}

/// Builds the relay's QUIC server configuration: a fresh self-signed certificate for
/// `relay_key`, mandatory Ed25519 client certificates, TLS 1.3 and [`ALPN`] only.
///
/// # Errors
///
/// Fails when the certificate cannot be built or rustls or quinn refuse the configuration;
/// neither happens with a valid key and the *ring* provider.
pub fn server_config(relay_key: &SigningKey) -> Result<quinn::ServerConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyEd25519Client {
        algorithms: provider.signature_verification_algorithms,
    });
    let (cert, key) = self_signed(relay_key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No 0-RTT, and no tickets or session cache, so nobody skips the full handshake.
    tls.max_early_data_size = 0;
    tls.send_tls13_tickets = 0;
    tls.session_storage = Arc::new(NoServerSessionStorage {});

    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(IdleTimeout::from(idle_timeout_ms())))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS_FROM_CLIENT));
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The key a client pinned for its relay, and the key the relay actually presented.
///
/// Kept by the caller of [`client_config`] so that after a failed connect it can report
/// both fingerprints. All connections made with one [`quinn::ClientConfig`] share the
/// slot, so it holds the key from the most recent handshake; use one config per relay and
/// do not connect concurrently with it if the report must be exact.
#[derive(Clone, Debug)]
pub struct PinnedRelay {
    pinned: VerifyingKey,
    seen: Arc<Mutex<Seen>>,
}

/// What the relay's certificate held in the most recent handshake.
#[derive(Clone, Copy, Debug)]
enum Seen {
    /// No certificate seen yet.
    Nothing,
    /// An Ed25519 key, matching the pin or not.
    Key(VerifyingKey),
    /// A certificate without a usable Ed25519 key.
    Unusable,
}

impl PinnedRelay {
    /// The relay key this client pinned.
    pub fn pinned(&self) -> VerifyingKey {
        self.pinned
    }

    /// The Ed25519 key the relay's certificate carried in the latest handshake, if any.
    ///
    /// This is the key the relay *presented*; possession is proven only when the handshake
    /// also succeeded.
    pub fn seen_key(&self) -> Option<VerifyingKey> {
        match self.seen() {
            Seen::Key(key) => Some(key),
            Seen::Nothing | Seen::Unusable => None,
        }
    }

    /// Whether the relay presented something other than the pinned key: another Ed25519
    /// key, or a certificate with no usable Ed25519 key at all.
    pub fn mismatch(&self) -> bool {
        match self.seen() {
            Seen::Key(key) => key != self.pinned,
            Seen::Unusable => true,
            Seen::Nothing => false,
        }
    }

    fn seen(&self) -> Seen {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Builds a client's QUIC configuration: a fresh self-signed certificate for `member_key`,
/// and a verifier that accepts the relay only if it proves possession of `pinned_relay`.
///
/// Connect with [`SERVER_NAME`]; the name is not checked.
///
/// # Errors
///
/// Fails when the certificate cannot be built or rustls or quinn refuse the configuration;
/// neither happens with a valid key and the *ring* provider.
pub fn client_config(
    member_key: &SigningKey,
    pinned_relay: VerifyingKey,
) -> Result<(quinn::ClientConfig, PinnedRelay), TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pin = PinnedRelay {
        pinned: pinned_relay,
        seen: Arc::new(Mutex::new(Seen::Nothing)),
    };
    let verifier = Arc::new(PinnedRelayVerifier {
        pin: pin.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let (cert, key) = self_signed(member_key)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    tls.resumption = rustls::client::Resumption::disabled();
    // The name is a constant, so sending it tells an observer nothing; leaving it out
    // makes the handshake carry no name at all.
    tls.enable_sni = false;

    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(IdleTimeout::from(idle_timeout_ms())))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS_FROM_RELAY));
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok((config, pin))
}

/// The Ed25519 key the peer of an established connection proved it holds.
///
/// On the relay this is the member key to check against the roster before reading any
/// application data.
///
/// # Errors
///
/// [`TransportError::NoPeerCertificate`] when the handshake carried no certificate, and
/// the certificate errors of [`TransportError`] when it is not a single Ed25519 one (which
/// the verifiers in this module already refuse during the handshake).
pub fn peer_key(conn: &quinn::Connection) -> Result<VerifyingKey, TransportError> {
    let identity = conn
        .peer_identity()
        .ok_or(TransportError::NoPeerCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| TransportError::NoPeerCertificate)?;
    match certs.as_slice() {
        [] => Err(TransportError::NoPeerCertificate),
        [cert] => ed25519_key(cert),
        [_, _, ..] => Err(TransportError::UnexpectedChain),
    }
}

/// Opens the relay's QUIC endpoint on `addr` with [`server_config`].
///
/// Must be called inside a Tokio runtime.
///
/// # Errors
///
/// The errors of [`server_config`], and [`TransportError::Socket`] when the address cannot
/// be bound.
pub fn server_endpoint(
    addr: SocketAddr,
    relay_key: &SigningKey,
) -> Result<quinn::Endpoint, TransportError> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime found"))?;
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key(relay_key)));
    let cid_key = cid_key(relay_key);
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let server_config = server_config(relay_key)?;
    Ok(quinn::Endpoint::new(
        endpoint_config,
        Some(server_config),
        socket,
        runtime,
    )?)
}

/// The key the relay's stateless-reset tokens are made with, derived from the relay's key.
///
/// quinn's default is a random key per start, so a relay restarted after a crash could not
/// answer the packets of its old connections with a reset its clients accept, and they
/// would notice only at the idle timeout. With the key derived from the relay's own key,
/// the restarted relay makes the same tokens and clients learn of the restart at once.
fn reset_key(relay_key: &SigningKey) -> ring::hmac::Key {
    let prk = hkdf_prk(relay_key);
    let okm = prk
        .expand(&[RESET_KEY_LABEL], ring::hmac::HMAC_SHA256)
        .expect("an HMAC-SHA256 key is within HKDF-SHA256's output limit");
    ring::hmac::Key::from(okm)
}

/// The key of the connection-id generator, derived from the relay's key for the same
/// reason: quinn drops a packet whose connection id its generator does not recognise
/// before it considers a reset, and its default generator takes a random key per start.
fn cid_key(relay_key: &SigningKey) -> u64 {
    let prk = hkdf_prk(relay_key);
    let mut bytes = [0u8; 8];
    prk.expand(&[CID_KEY_LABEL], CidKeyLen)
        .and_then(|okm| okm.fill(&mut bytes))
        .expect("eight bytes are within HKDF-SHA256's output limit");
    u64::from_le_bytes(bytes)
}

/// The length of [`cid_key`]'s output, as *ring*'s HKDF asks for it.
struct CidKeyLen;

impl ring::hkdf::KeyType for CidKeyLen {
    fn len(&self) -> usize {
        8
    }
}

/// HKDF-SHA256 extracted from the relay's secret key, for the labels above.
fn hkdf_prk(relay_key: &SigningKey) -> ring::hkdf::Prk {
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(relay_key.as_bytes())
}

/// Opens a client QUIC endpoint bound to `bind` (port 0 for any).
///
/// It has no default configuration: connect with
/// `endpoint.connect_with(config, relay_addr, SERVER_NAME)` and a config from
/// [`client_config`]. Must be called inside a Tokio runtime.
///
/// # Errors
///
/// [`TransportError::Socket`] when the address cannot be bound.
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
    Ok(quinn::Endpoint::client(bind)?)
}

fn idle_timeout_ms() -> VarInt {
    let ms = u32::try_from(IDLE_TIMEOUT.as_millis()).expect("the idle timeout is a few seconds");
    VarInt::from_u32(ms)
}

/// A self-signed certificate for `key` and the key in the form rustls signs with.
fn self_signed(
    key: &SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TransportError> {
    // The PKCS#8 document is zeroized on drop; the copies rcgen and rustls keep are not.
    let document = key.to_pkcs8_der()?;
    let pkcs8 = PrivatePkcs8KeyDer::from(document.as_bytes().to_vec());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "breakglass");
    let cert = params.self_signed(&key_pair)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The Ed25519 key in a certificate's SubjectPublicKeyInfo.
///
/// webpki parses the certificate and hands back the SPKI; anything but the exact 44-byte
/// Ed25519 encoding is refused, so no further DER parsing is needed.
fn ed25519_key(cert: &CertificateDer<'_>) -> Result<VerifyingKey, TransportError> {
    let parsed = ParsedCertificate::try_from(cert).map_err(TransportError::MalformedCertificate)?;
    ed25519_key_from_spki(parsed.subject_public_key_info().as_ref())
}

fn ed25519_key_from_spki(spki: &[u8]) -> Result<VerifyingKey, TransportError> {
    let key: &[u8; 32] = spki
        .strip_prefix(ED25519_SPKI_PREFIX.as_slice())
        .and_then(|rest| rest.try_into().ok())
        .ok_or(TransportError::NotEd25519)?;
    VerifyingKey::from_bytes(key).map_err(|_| TransportError::InvalidKey)
}

/// Carries one of our errors through rustls, so the handshake failure names it.
fn refuse(error: TransportError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// Checks a TLS 1.3 `CertificateVerify` signature, Ed25519 only.
fn verify_ed25519_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
}

/// The client's check of the relay: its certificate must carry the pinned key.
#[derive(Debug)]
struct PinnedRelayVerifier {
    pin: PinnedRelay,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedRelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = ed25519_key(end_entity);
        *self.pin.seen.lock().unwrap_or_else(PoisonError::into_inner) = match presented {
            Ok(key) => Seen::Key(key),
            Err(_) => Seen::Unusable,
        };
        let key = presented.map_err(refuse)?;
        if key != self.pin.pinned {
            return Err(refuse(TransportError::PinMismatch));
        }
        if !intermediates.is_empty() {
            return Err(refuse(TransportError::UnexpectedChain));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519_tls13(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The relay's check of a client: any single Ed25519 certificate. Possession of the key is
/// proven by the TLS 1.3 signature; membership is the caller's check.
#[derive(Debug)]
struct AnyEd25519Client {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyEd25519Client {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(refuse(TransportError::UnexpectedChain));
        }
        ed25519_key(end_entity).map_err(refuse)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519_tls13(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    const WAIT: Duration = Duration::from_secs(10);

    fn random_key() -> SigningKey {
        let mut seed = [0u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut seed)
            .expect("the system random source works");
        SigningKey::from_bytes(&seed)
    }

    /// A relay endpoint on loopback and its address.
    fn relay(key: &SigningKey) -> (quinn::Endpoint, SocketAddr) {
        let endpoint = server_endpoint(LOOPBACK, key).expect("relay endpoint");
        let addr = endpoint.local_addr().expect("relay address");
        (endpoint, addr)
    }

    /// Accepts one connection; `Err` when the relay refused the handshake.
    async fn accept_one(
        endpoint: &quinn::Endpoint,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let incoming = tokio::time::timeout(WAIT, endpoint.accept())
            .await
            .expect("a client arrives in time")
            .expect("the endpoint is open");
        tokio::time::timeout(WAIT, incoming)
            .await
            .expect("the handshake ends in time")
    }

    async fn connect(
        config: quinn::ClientConfig,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        let endpoint = client_endpoint(LOOPBACK).expect("client endpoint");
        let connecting = endpoint
            .connect_with(config, addr, SERVER_NAME)
            .expect("connect starts");
        tokio::time::timeout(WAIT, connecting)
            .await
            .expect("the handshake ends in time")
    }

    #[tokio::test]
    async fn a_pinned_client_echoes_and_the_relay_sees_its_key() {
        let relay_key = random_key();
        let member_key = random_key();
        let (server, addr) = relay(&relay_key);
        let (config, pin) = client_config(&member_key, relay_key.verifying_key()).expect("config");

        let relay_side = tokio::spawn(async move {
            let conn = accept_one(&server).await.expect("relay accepts");
            let key = peer_key(&conn).expect("client key");
            let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
            let bytes = recv.read_to_end(1024).await.expect("request");
            send.write_all(&bytes).await.expect("echo");
            send.finish().expect("finish");
            conn.closed().await;
            key
        });

        let conn = connect(config, addr).await.expect("client connects");
        assert_eq!(
            peer_key(&conn).expect("relay key"),
            relay_key.verifying_key()
        );
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        send.write_all(b"break the glass").await.expect("send");
        send.finish().expect("finish");
        let echoed = tokio::time::timeout(WAIT, recv.read_to_end(1024))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(echoed, b"break the glass");
        conn.close(0u32.into(), b"done");

        let seen = relay_side.await.expect("relay task");
        assert_eq!(seen, member_key.verifying_key());
        assert!(!pin.mismatch());
        assert_eq!(pin.seen_key(), Some(relay_key.verifying_key()));
    }

    #[tokio::test]
    async fn a_client_pinning_another_key_is_refused_and_sees_the_real_one() {
        let relay_key = random_key();
        let wrong_pin = random_key().verifying_key();
        let (server, addr) = relay(&relay_key);
        let (config, pin) = client_config(&random_key(), wrong_pin).expect("config");

        let relay_side = tokio::spawn(async move { accept_one(&server).await.is_err() });
        let result = connect(config, addr).await;

        // The pin check, not some other failure, must be what stopped the handshake.
        match result {
            Err(quinn::ConnectionError::TransportError(error)) => {
                assert!(error.reason.contains("PinMismatch"), "{error}");
            }
            other => panic!("expected a pin mismatch, got {other:?}"),
        }
        assert!(pin.mismatch());
        assert_eq!(pin.pinned(), wrong_pin);
        assert_eq!(pin.seen_key(), Some(relay_key.verifying_key()));
        assert!(
            relay_side.await.expect("relay task"),
            "relay kept the connection"
        );
    }

    #[tokio::test]
    async fn both_sides_negotiate_the_breakglass_alpn() {
        let relay_key = random_key();
        let (server, addr) = relay(&relay_key);
        let (config, _pin) =
            client_config(&random_key(), relay_key.verifying_key()).expect("config");

        let relay_side = tokio::spawn(async move {
            let conn = accept_one(&server).await.expect("relay accepts");
            negotiated_alpn(&conn)
        });
        let conn = connect(config, addr).await.expect("client connects");

        assert_eq!(negotiated_alpn(&conn).as_deref(), Some(ALPN));
        let relay_alpn = relay_side.await.expect("relay task");
        assert_eq!(relay_alpn.as_deref(), Some(ALPN));
    }

    fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
        conn.handshake_data()?
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .ok()?
            .protocol
    }

    #[tokio::test]
    async fn a_client_offering_another_alpn_is_refused() {
        let relay_key = random_key();
        let (server, addr) = relay(&relay_key);
        let tls = hand_built_client(relay_key.verifying_key(), b"other/1");
        let config = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(tls).expect("quic config"),
        ));

        let relay_side = tokio::spawn(async move { accept_one(&server).await.is_err() });
        assert!(
            connect(config, addr).await.is_err(),
            "connected with a foreign alpn"
        );
        assert!(relay_side.await.expect("relay task"));
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_refused() {
        let relay_key = random_key();
        let (server, addr) = relay(&relay_key);
        let tls = hand_built_client(relay_key.verifying_key(), ALPN);
        let config = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(tls).expect("quic config"),
        ));

        let relay_side = tokio::spawn(async move { accept_one(&server).await.is_err() });
        // In TLS 1.3 the client may finish its side of the handshake before the relay
        // rejects it, so the refusal can surface on connect or on first use.
        if let Ok(conn) = connect(config, addr).await {
            let closed = tokio::time::timeout(WAIT, conn.closed())
                .await
                .expect("the relay closes the connection in time");
            assert!(
                matches!(closed, quinn::ConnectionError::ConnectionClosed(_)),
                "expected the relay to close, got {closed}"
            );
        }
        assert!(
            relay_side.await.expect("relay task"),
            "relay accepted no certificate"
        );
    }

    /// A client config with the pinning verifier but no client certificate.
    fn hand_built_client(pinned: VerifyingKey, alpn: &[u8]) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedRelayVerifier {
            pin: PinnedRelay {
                pinned,
                seen: Arc::new(Mutex::new(Seen::Nothing)),
            },
            algorithms: provider.signature_verification_algorithms,
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports tls 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        tls
    }

    #[test]
    fn the_certificate_carries_exactly_the_signing_key() {
        let key = random_key();
        let (cert, _) = self_signed(&key).expect("certificate");
        assert_eq!(ed25519_key(&cert).expect("key"), key.verifying_key());
    }

    #[test]
    fn an_spki_that_is_not_exactly_ed25519_is_refused() {
        let key = random_key().verifying_key();
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.as_bytes());
        assert_eq!(ed25519_key_from_spki(&spki).expect("valid spki"), key);

        let mut longer = spki.clone();
        longer.push(0);
        assert!(matches!(
            ed25519_key_from_spki(&longer),
            Err(TransportError::NotEd25519)
        ));
        assert!(matches!(
            ed25519_key_from_spki(&spki[..spki.len() - 1]),
            Err(TransportError::NotEd25519)
        ));
        let mut x25519 = spki.clone();
        x25519[8] = 0x6e; // OID 1.3.101.110, X25519
        assert!(matches!(
            ed25519_key_from_spki(&x25519),
            Err(TransportError::NotEd25519)
        ));
    }

    #[test]
    fn a_pin_reports_a_mismatch_only_after_seeing_another_key() {
        let pinned = random_key().verifying_key();
        let pin = PinnedRelay {
            pinned,
            seen: Arc::new(Mutex::new(Seen::Nothing)),
        };
        assert!(!pin.mismatch());
        *pin.seen.lock().expect("not poisoned") = Seen::Key(pinned);
        assert!(!pin.mismatch());
        *pin.seen.lock().expect("not poisoned") = Seen::Unusable;
        assert!(pin.mismatch());
        assert_eq!(pin.seen_key(), None);
    }
}
