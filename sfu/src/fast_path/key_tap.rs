//! Getting the SRTP master keys a DTLS handshake negotiated, through rtc's public API.
//!
//! rtc 0.21 builds its SRTP contexts inside the DTLS handler and exposes neither the contexts
//! nor the exporter. It does take a crypto provider per peer connection
//! (`SettingEngineBuilder::with_crypto_provider`), and the DTLS exporter (RFC 5705) is computed
//! with that provider's HMAC-SHA256 as the TLS 1.2 PRF: `A(1) = HMAC(master_secret, seed)` with
//! `seed = "EXTRACTOR-dtls_srtp" ‖ client_random ‖ server_random`. [`SrtpKeyTap`] wraps the
//! provider, delegates every operation unchanged, and keeps the key and seed of that first PRF
//! round; [`SrtpKeyTap::session_keys`] then runs the same PRF and splits its output per
//! RFC 5764 §4.2. The handshake itself is untouched, and the tap costs one string comparison
//! per HMAC-SHA256 (used only during the handshake; STUN uses HMAC-SHA1, which is not wrapped).

use super::{FastPathError, ProtectionProfile};
use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::statistics::StatsSelector;
use rtc::statistics::stats::transport::RTCTransportStats;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The RFC 5764 exporter label for DTLS-SRTP keying material.
pub const DTLS_SRTP_EXPORTER_LABEL: &[u8] = b"EXTRACTOR-dtls_srtp";

/// `client_random ‖ server_random` (two 32-byte DTLS `Random` structures).
const RANDOMS_LEN: usize = 64;
const SHA256_LEN: usize = 32;

/// A master key and master salt for one direction.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKeys {
    /// The SRTP master key (16 or 32 bytes).
    pub key: Vec<u8>,
    /// The SRTP master salt (14 bytes for AES-CM, 12 for AES-GCM).
    pub salt: Vec<u8>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeys")
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("salt", &format_args!("<{} bytes>", self.salt.len()))
            .finish()
    }
}

/// The SRTP keys of one peer connection: ours (what we protect with) and the peer's.
#[derive(Debug, Clone)]
pub struct SrtpSessionKeys {
    /// The negotiated protection profile.
    pub profile: ProtectionProfile,
    /// The keys we send with (`local_*` in rtc's `srtp::config::SessionKeys`).
    pub local: MasterKeys,
    /// The keys the peer sends with.
    pub remote: MasterKeys,
}

/// What DTLS negotiated for SRTP: the profile and which side of the handshake we were.
#[derive(Debug, Clone, Copy)]
pub struct NegotiatedSrtp {
    /// The SRTP protection profile (`use_srtp` extension).
    pub profile: ProtectionProfile,
    /// Whether we were the DTLS client (`a=setup:active`); decides which exporter half is ours.
    pub is_dtls_client: bool,
}

impl NegotiatedSrtp {
    /// Reads profile and role from the engine's transport statistics (filled in when the DTLS
    /// handshake completes).
    pub fn from_transport_stats(stats: &RTCTransportStats) -> Result<Self, FastPathError> {
        let profile = match stats.srtp_cipher.as_str() {
            "SRTP_AEAD_AES_128_GCM" => ProtectionProfile::AeadAes128Gcm,
            "SRTP_AEAD_AES_256_GCM" => ProtectionProfile::AeadAes256Gcm,
            "SRTP_AES128_CM_HMAC_SHA1_80" => ProtectionProfile::Aes128CmHmacSha1_80,
            "SRTP_AES128_CM_HMAC_SHA1_32" => ProtectionProfile::Aes128CmHmacSha1_32,
            "" => return Err(FastPathError::KeysNotExported),
            other => return Err(FastPathError::UnsupportedProfile(other.to_owned())),
        };
        let is_dtls_client = match stats.dtls_role {
            RTCDtlsRole::Client => true,
            RTCDtlsRole::Server => false,
            _ => return Err(FastPathError::RoleUnknown),
        };
        Ok(Self {
            profile,
            is_dtls_client,
        })
    }

    /// Reads profile and role from a connected peer connection (one `get_stats` call: do it
    /// once, when the connection reports `Connected`).
    pub fn of_connection(
        connection: &mut RTCPeerConnection,
        now: Instant,
    ) -> Result<Self, FastPathError> {
        let report = connection.get_stats(now, StatsSelector::None);
        let transport = report.transport().ok_or(FastPathError::KeysNotExported)?;
        Self::from_transport_stats(transport)
    }
}

/// What the tap saw of the exporter's first PRF round.
struct ExporterInput {
    master_secret: Vec<u8>,
    seed: Vec<u8>,
}

type Captured = Arc<Mutex<Option<ExporterInput>>>;

/// A crypto provider wrapper that learns a peer connection's DTLS-SRTP keying material.
///
/// Use one per peer connection: give [`provider`](Self::provider) to
/// `SettingEngineBuilder::with_crypto_provider`, keep the tap, and call
/// [`session_keys`](Self::session_keys) once the connection is connected.
#[derive(Clone)]
pub struct SrtpKeyTap {
    inner: Arc<dyn RTCCryptoProvider>,
    captured: Captured,
}

impl std::fmt::Debug for SrtpKeyTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeyTap")
            .field("provider", &self.inner.name())
            .field("exported", &self.has_exported())
            .finish()
    }
}

impl SrtpKeyTap {
    /// A tap over rtc's built-in default provider (ring).
    pub fn new() -> Result<Self, FastPathError> {
        Ok(Self::wrapping(rtc::crypto::default_provider()?))
    }

    /// A tap over the given provider.
    pub fn wrapping(inner: Arc<dyn RTCCryptoProvider>) -> Self {
        Self {
            inner,
            captured: Arc::new(Mutex::new(None)),
        }
    }

    /// The provider to hand to the engine's setting engine.
    pub fn provider(&self) -> Arc<dyn RTCCryptoProvider> {
        Arc::new(TapProvider {
            inner: Arc::clone(&self.inner),
            captured: Arc::clone(&self.captured),
        })
    }

    /// The underlying provider's crypto (for building a [`super::FastPathSender`]).
    pub fn crypto(&self) -> &dyn RTCCrypto {
        self.inner.crypto()
    }

    /// Whether the engine has run the DTLS-SRTP exporter (the handshake completed).
    pub fn has_exported(&self) -> bool {
        self.captured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Re-derives the DTLS-SRTP keying material and splits it into ours and the peer's
    /// (RFC 5764 §4.2: client key, server key, client salt, server salt).
    pub fn session_keys(
        &self,
        negotiated: NegotiatedSrtp,
    ) -> Result<SrtpSessionKeys, FastPathError> {
        let profile = negotiated.profile;
        let (key_len, salt_len) = (profile.key_len(), profile.salt_len());
        let material = {
            let captured = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
            let input = captured.as_ref().ok_or(FastPathError::KeysNotExported)?;
            tls12_prf_sha256(
                self.inner.crypto(),
                &input.master_secret,
                &input.seed,
                2 * (key_len + salt_len),
            )?
        };
        let (client_key, rest) = material.split_at(key_len);
        let (server_key, rest) = rest.split_at(key_len);
        let (client_salt, server_salt) = rest.split_at(salt_len);
        let client = MasterKeys {
            key: client_key.to_vec(),
            salt: client_salt.to_vec(),
        };
        let server = MasterKeys {
            key: server_key.to_vec(),
            salt: server_salt.to_vec(),
        };
        let (local, remote) = if negotiated.is_dtls_client {
            (client, server)
        } else {
            (server, client)
        };
        Ok(SrtpSessionKeys {
            profile,
            local,
            remote,
        })
    }
}

/// `P_SHA256(secret, seed)` truncated to `len` (RFC 5246 §5); the label is part of `seed`.
fn tls12_prf_sha256(
    crypto: &dyn RTCCrypto,
    secret: &[u8],
    seed: &[u8],
    len: usize,
) -> Result<Vec<u8>, FastPathError> {
    let mut mac = crypto.new_hmac(HmacAlgorithm::Sha256, secret)?;
    let mut out = Vec::with_capacity(len + SHA256_LEN);
    let mut a = [0u8; SHA256_LEN];
    mac.sign(&[seed], &mut a)?;
    while out.len() < len {
        let mut block = [0u8; SHA256_LEN];
        mac.sign(&[&a, seed], &mut block)?;
        out.extend_from_slice(&block);
        let previous = a;
        mac.sign(&[&previous], &mut a)?;
    }
    out.truncate(len);
    Ok(out)
}

struct TapProvider {
    inner: Arc<dyn RTCCryptoProvider>,
    captured: Captured,
}

impl RTCCryptoProvider for TapProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

/// An HMAC-SHA256 that records its key and input when the input is the exporter's seed.
struct TapMac {
    inner: Box<dyn Mac>,
    key: Vec<u8>,
    captured: Captured,
}

impl TapMac {
    fn observe(&self, input: &[&[u8]]) {
        if let [seed] = input
            && seed.len() == DTLS_SRTP_EXPORTER_LABEL.len() + RANDOMS_LEN
            && seed.starts_with(DTLS_SRTP_EXPORTER_LABEL)
        {
            let mut captured = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
            *captured = Some(ExporterInput {
                master_secret: self.key.clone(),
                seed: seed.to_vec(),
            });
        }
    }
}

impl Mac for TapMac {
    fn output_len(&self) -> usize {
        self.inner.output_len()
    }

    fn sign(&mut self, input: &[&[u8]], output: &mut [u8]) -> Result<(), CryptoError> {
        self.observe(input);
        self.inner.sign(input, output)
    }

    fn verify(&mut self, input: &[&[u8]], expected: &[u8]) -> Result<(), CryptoError> {
        self.inner.verify(input, expected)
    }
}

impl RTCCrypto for TapProvider {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        let inner = self.inner.crypto().new_hmac(algorithm, key)?;
        match algorithm {
            HmacAlgorithm::Sha256 => Ok(Box::new(TapMac {
                inner,
                key: key.to_vec(),
                captured: Arc::clone(&self.captured),
            })),
            _ => Ok(inner),
        }
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5246 has no PRF test vector; this is the widely used TLS 1.2 P_SHA256 vector
    /// (IETF TLS WG list, also in Go's crypto/tls `prf_test.go` family): secret, label "test
    /// label", 100 bytes.
    #[test]
    fn prf_matches_the_tls12_sha256_test_vector() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let mut seed = b"test label".to_vec();
        seed.extend(hex("a0ba9f936cda311827a6f796ffd5198c"));
        let expected = hex(concat!(
            "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a",
            "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab",
            "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701",
            "87347b66"
        ));
        let provider = rtc::crypto::default_provider().expect("ring is enabled");
        let out = tls12_prf_sha256(provider.crypto(), &secret, &seed, 100).expect("prf");
        assert_eq!(out, expected);
    }

    #[test]
    fn keys_are_not_available_before_the_exporter_ran() {
        let tap = SrtpKeyTap::new().expect("ring is enabled");
        let negotiated = NegotiatedSrtp {
            profile: ProtectionProfile::AeadAes128Gcm,
            is_dtls_client: false,
        };
        assert!(matches!(
            tap.session_keys(negotiated),
            Err(FastPathError::KeysNotExported)
        ));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
            .collect()
    }
}
