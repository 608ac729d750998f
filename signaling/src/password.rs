//! Argon2id password hashing on reused working memory.
//!
//! Each argon2id hash with the default parameters fills 19 MiB. Allocated afresh per hash
//! on whichever blocking thread runs it, glibc keeps those pages in a per-thread arena
//! after the free, so a registration flood that ran on a dozen pool threads left a dozen
//! × 19 MiB resident although only two hashes ever ran at once. Here the working memory
//! is taken from a small free list and put back afterwards: the memory held is the peak
//! number of concurrent hashes (bounded by the password-work semaphore in
//! [`crate::limits::Limits`]) times 19 MiB, and no more.

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::Mutex;

/// How many idle working-memory buffers are kept for the next hashes.
const KEPT_BUFFERS: usize = 8;

/// Idle argon2 working memory, reused by the next hash.
static FREE_MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash is not a PHC string this server can check.
    #[error("stored password hash is corrupt: {0}")]
    CorruptHash(String),
    /// Argon2 refused its inputs (a password or salt outside its limits).
    #[error("password hashing: {0}")]
    Hashing(String),
}

/// Runs `f` on at least `blocks` argon2 blocks of working memory from the free list.
fn with_memory<R>(blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let reused = FREE_MEMORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop();
    let mut memory = reused.unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let result = f(&mut memory);
    let mut free = FREE_MEMORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if free.len() < KEPT_BUFFERS {
        free.push(memory);
    }
    result
}

/// Computes the argon2 output of `password` for `salt` with `argon`'s parameters.
fn compute(argon: &Argon2<'_>, password: &[u8], salt: Salt<'_>) -> Result<Output, PasswordError> {
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| PasswordError::CorruptHash(e.to_string()))?;
    let params = argon.params();
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    with_memory(params.block_count(), |memory| {
        Output::init_with(output_len, |out| {
            argon
                .hash_password_into_with_memory(password, salt_bytes, out, memory)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
    })
    .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Hashes `password` with argon2id and a fresh random salt into a PHC string.
pub fn hash(password: &[u8]) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let argon = Argon2::default();
    let output = compute(&argon, password, salt.as_salt())?;
    let params = ParamsString::try_from(argon.params())
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (compared in constant time).
pub fn verify(password: &[u8], stored: &str) -> Result<bool, PasswordError> {
    let corrupt = |e: argon2::password_hash::Error| PasswordError::CorruptHash(e.to_string());
    let parsed = PasswordHash::new(stored).map_err(corrupt)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(PasswordError::CorruptHash("no salt or hash".into()));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(corrupt)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| PasswordError::CorruptHash(e.to_string()))?,
        None => Version::default(),
    };
    // The output length comes from the stored hash, so the comparison is like for like.
    let params = Params::try_from(&parsed).map_err(corrupt)?;
    let argon = Argon2::new(algorithm, version, params);
    Ok(compute(&argon, password, salt)? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn hashes_are_standard_phc_strings_that_verify_both_ways() {
        let ours = hash(b"password-123").expect("hashing succeeds");
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        // The argon2 crate's own verifier accepts ours …
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"password-123", &parsed)
                .is_ok()
        );
        // … and we accept hashes it made (the ones already stored).
        let theirs = {
            use argon2::password_hash::PasswordHasher;
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Argon2::default()
                .hash_password(b"secret-456", &salt)
                .expect("hashing succeeds")
                .to_string()
        };
        assert!(verify(b"secret-456", &theirs).expect("valid hash"));
        assert!(!verify(b"secret-457", &theirs).expect("valid hash"));
        assert!(verify(b"password-123", &ours).expect("valid hash"));
        assert!(!verify(b"", &ours).expect("valid hash"));
    }

    #[test]
    fn corrupt_hashes_are_errors_not_panics() {
        for stored in [
            "",
            "$argon2id$",
            "plain",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
        ] {
            assert!(verify(b"x", stored).is_err(), "{stored}");
        }
    }

    #[test]
    fn memory_is_reused_between_hashes() {
        hash(b"one").expect("hashing succeeds");
        hash(b"two").expect("hashing succeeds");
        let kept = FREE_MEMORY.lock().expect("not poisoned").len();
        assert!((1..=KEPT_BUFFERS).contains(&kept), "{kept} buffers kept");
    }
}
