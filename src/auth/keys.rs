//! API keys: `ob_<prefix>_<secret>` with a 12-character visible prefix and a 32-byte random
//! secret (base64url). The database keeps the prefix and the SHA-256 of the whole key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "ob_";
const PREFIX_LEN: usize = 12;
const SECRET_BYTES: usize = 32;
/// Length of the base64url encoding of the secret.
const SECRET_LEN: usize = 43;

pub struct NewKey {
    /// The whole key, shown to the client once.
    pub key: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

pub fn generate() -> NewKey {
    let mut rng = rand::thread_rng();
    let prefix: String = (&mut rng)
        .sample_iter(&Alphanumeric)
        .take(PREFIX_LEN)
        .map(|c| (c as char).to_ascii_lowercase())
        .collect();
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut secret);
    let key = format!("{KEY_PREFIX}{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = hash(&key);
    NewKey { key, prefix, hash }
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `key` has the shape of an onebase API key (checked before any database access).
pub fn is_well_formed(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
        return false;
    };
    let Some((prefix, secret)) = rest.split_once('_') else {
        return false;
    };
    prefix.len() == PREFIX_LEN
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Constant-time comparison of two hashes.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(&a.key), "{}", a.key);
        assert_ne!(a.key, b.key);
        assert_eq!(a.hash, hash(&a.key));
        assert!(a.key.starts_with(&format!("ob_{}_", a.prefix)));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for key in [
            "",
            "ob_",
            "ob_short_x",
            "sk-abc",
            "ob_ABCDEFGHIJKL_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(!is_well_formed(key), "{key}");
        }
    }
}
