//! SRTP session-key derivation and in-place RTP protection (RFC 3711, RFC 7714).

use super::{FastPathError, ProtectionProfile};
use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, HmacAlgorithm, Mac, RTCCrypto, StreamCipher,
    StreamCipherAlgorithm,
};

const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTP_AUTHENTICATION: u8 = 0x01;
const LABEL_SRTP_SALT: u8 = 0x02;
const AES_BLOCK: usize = 16;
const GCM_TAG_LEN: usize = 16;
const HMAC_SHA1_LEN: usize = 20;
const HMAC_SHA1_KEY_LEN: usize = 20;

/// The keyed SRTP transform of one sending direction.
pub(crate) enum RtpCipher {
    /// AEAD_AES_128_GCM / AEAD_AES_256_GCM (RFC 7714).
    Gcm {
        aead: Box<dyn AeadCipher>,
        salt: [u8; 12],
    },
    /// AES_CM_128_HMAC_SHA1_80 / _32 (RFC 3711).
    CounterModeHmac {
        keystream: Box<dyn StreamCipher>,
        mac: Box<dyn Mac>,
        salt: [u8; 14],
        tag_len: usize,
    },
}

impl RtpCipher {
    /// Derives the session keys from a master key and salt (key derivation rate 0, as
    /// DTLS-SRTP uses) and keys the primitives once.
    pub(crate) fn new(
        profile: ProtectionProfile,
        master_key: &[u8],
        master_salt: &[u8],
        crypto: &dyn RTCCrypto,
    ) -> Result<Self, FastPathError> {
        check_len("master key", profile.key_len(), master_key.len())?;
        check_len("master salt", profile.salt_len(), master_salt.len())?;
        let prf = match profile.key_len() {
            16 => BlockCipherAlgorithm::Aes128,
            _ => BlockCipherAlgorithm::Aes256,
        };
        let mut session_key = [0u8; 32];
        let session_key = &mut session_key[..master_key.len()];
        derive(
            crypto,
            prf,
            master_key,
            master_salt,
            LABEL_SRTP_ENCRYPTION,
            session_key,
        )?;
        match profile {
            ProtectionProfile::AeadAes128Gcm | ProtectionProfile::AeadAes256Gcm => {
                let algorithm = if matches!(profile, ProtectionProfile::AeadAes128Gcm) {
                    AeadAlgorithm::Aes128Gcm
                } else {
                    AeadAlgorithm::Aes256Gcm
                };
                let aead = crypto.new_aead(algorithm, session_key)?;
                let mut salt = [0u8; 12];
                derive(
                    crypto,
                    prf,
                    master_key,
                    master_salt,
                    LABEL_SRTP_SALT,
                    &mut salt,
                )?;
                Ok(Self::Gcm { aead, salt })
            }
            ProtectionProfile::Aes128CmHmacSha1_80
            | ProtectionProfile::Aes128CmHmacSha1_32
            | ProtectionProfile::Aes256CmHmacSha1_80
            | ProtectionProfile::Aes256CmHmacSha1_32 => {
                let algorithm = if profile.key_len() == 16 {
                    StreamCipherAlgorithm::Aes128Ctr
                } else {
                    StreamCipherAlgorithm::Aes256Ctr
                };
                let keystream = crypto.new_stream_cipher(algorithm, session_key)?;
                let mut auth_key = [0u8; HMAC_SHA1_KEY_LEN];
                derive(
                    crypto,
                    prf,
                    master_key,
                    master_salt,
                    LABEL_SRTP_AUTHENTICATION,
                    &mut auth_key,
                )?;
                let mac = crypto.new_hmac(HmacAlgorithm::Sha1, &auth_key)?;
                let mut salt = [0u8; 14];
                derive(
                    crypto,
                    prf,
                    master_key,
                    master_salt,
                    LABEL_SRTP_SALT,
                    &mut salt,
                )?;
                Ok(Self::CounterModeHmac {
                    keystream,
                    mac,
                    salt,
                    tag_len: profile.rtp_auth_tag_len(),
                })
            }
            other => Err(FastPathError::UnsupportedProfile(format!("{other:?}"))),
        }
    }

    /// Bytes appended after the payload.
    pub(crate) fn trailer_len(&self) -> usize {
        match self {
            Self::Gcm { .. } => GCM_TAG_LEN,
            Self::CounterModeHmac { tag_len, .. } => *tag_len,
        }
    }

    /// Protects `packet[..header_len + payload_len]` (plaintext header and payload already
    /// written) in place and writes the tag after it. `packet` is exactly
    /// `header_len + payload_len + trailer_len` bytes.
    pub(crate) fn protect(
        &mut self,
        packet: &mut [u8],
        header_len: usize,
        ssrc: u32,
        sequence_number: u16,
        roc: u32,
    ) -> Result<(), FastPathError> {
        let trailer_len = self.trailer_len();
        let body_end = packet.len() - trailer_len;
        match self {
            Self::Gcm { aead, salt } => {
                // RFC 7714 §8.1: 00 00 ‖ SSRC ‖ ROC ‖ SEQ, XOR the session salt.
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&sequence_number.to_be_bytes());
                for (byte, salt) in iv.iter_mut().zip(salt.iter()) {
                    *byte ^= salt;
                }
                let (header, rest) = packet.split_at_mut(header_len);
                let (payload, tag) = rest.split_at_mut(body_end - header_len);
                aead.seal_in_place(&iv, header, payload, tag)?;
            }
            Self::CounterModeHmac {
                keystream,
                mac,
                salt,
                tag_len,
            } => {
                // RFC 3711 §4.1.1: IV = (salt · 2^16) XOR (SSRC · 2^64) XOR (index · 2^16).
                let mut iv = [0u8; AES_BLOCK];
                iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
                iv[8..12].copy_from_slice(&roc.to_be_bytes());
                iv[12..14].copy_from_slice(&sequence_number.to_be_bytes());
                for (byte, salt) in iv.iter_mut().zip(salt.iter()) {
                    *byte ^= salt;
                }
                keystream.apply_keystream(&iv, &mut packet[header_len..body_end])?;
                // RFC 3711 §4.2: HMAC-SHA1 over the authenticated portion ‖ ROC, truncated.
                let mut full_tag = [0u8; HMAC_SHA1_LEN];
                mac.sign(&[&packet[..body_end], &roc.to_be_bytes()], &mut full_tag)?;
                packet[body_end..].copy_from_slice(&full_tag[..*tag_len]);
            }
        }
        Ok(())
    }
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), FastPathError> {
    if expected == actual {
        Ok(())
    } else {
        Err(FastPathError::KeyLength {
            what,
            expected,
            actual,
        })
    }
}

/// The AES-CM PRF of RFC 3711 §4.3.3 with `index DIV kdr = 0`: the master salt, with the label
/// XORed into its eighth byte and a 16-bit block counter appended, encrypted with the master key.
/// AES-256 profiles use the AES-256 PRF over the same 16-byte input (RFC 6188 §3, RFC 7714 §11).
fn derive(
    crypto: &dyn RTCCrypto,
    prf: BlockCipherAlgorithm,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), FastPathError> {
    let mut input = [0u8; AES_BLOCK];
    input[..master_salt.len()].copy_from_slice(master_salt);
    input[7] ^= label;
    for (counter, chunk) in out.chunks_mut(AES_BLOCK).enumerate() {
        let mut block = input;
        block[14..16].copy_from_slice(&(counter as u16).to_be_bytes());
        crypto.block_encrypt(prf, master_key, &mut block)?;
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
    Ok(())
}
